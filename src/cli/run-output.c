/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus run: the summary printed after the run (--output json builds its document in
 * verb-run.c from the same values).
 */
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "pricing.h"
#include "run-internal.h"
#include "string-util.h"

json_t *run_strv_to_json(char *const *l) {
        json_t *a = json_array();
        STRV_FOREACH(s, l)
                json_array_append_new(a, json_string(*s));
        return a;
}

void run_print_summary(
        const char *pod,
        const AgentStats *st,
        const char *patch_path,
        const AgentPatch *patch,
        const char *diffstat,
        bool applied,
        const char *apply_note,
        const char *audit_path,
        const RunContext *c,
        json_t *model_calls) {
        char usd[32];
        fprintf(stderr, "\n--- nucleus run summary ---\n");
        fprintf(stderr, "pod:         %s (deleted)\n", pod);
        _cleanup_free_ char *detail = string_make_visible(st->stop_detail ?: "");
        fprintf(stderr, "stopped:     %s: %s\n", agent_stop_to_string(st->stop), detail);
        fprintf(stderr, "turns:       %u\n", st->turns);
        fprintf(stderr,
                "tokens:      %llu in, %llu out\n",
                (unsigned long long) st->input_tokens,
                (unsigned long long) st->output_tokens);
        fprintf(stderr, "model cost:  %s\n", pricing_format_usd(usd, st->cost_micros));
        if (json_array_size(model_calls) > 0) {
                RunGatewayTotals t;
                run_gateway_totals(model_calls, &t);
                fprintf(stderr,
                        "model calls: %u through the gateway (%s charged to the pod, %u refused)\n",
                        t.calls,
                        pricing_format_usd(usd, t.cost_micros),
                        t.refused);
        }
        fprintf(stderr, "tool calls:  %u (%u denied", st->tool_calls, st->denials);
        const char *k;
        json_t *v;
        bool first = true;
        json_object_foreach(st->denials_by_kind, k, v) {
                fprintf(stderr, "%s%s %lld", first ? ": " : ", ", k, (long long) json_integer_value(v));
                first = false;
        }
        fprintf(stderr, ")\n");
        if (c->approvals_granted + c->approvals_refused > 0)
                fprintf(stderr,
                        "approvals:   %u granted, %u refused\n",
                        c->approvals_granted,
                        c->approvals_refused);
        if (!patch_path)
                fprintf(stderr, "patch:       not available\n");
        else if (!patch->patch || patch->size == 0)
                fprintf(stderr, "patch:       no changes\n");
        else {
                fprintf(stderr, "patch:       %s\n", patch_path);
                if (diffstat) {
                        _cleanup_free_ char *vis = escape_text(diffstat, strlen(diffstat), ESCAPE_KEEP_NEWLINE);
                        fputs(vis, stderr);
                        if (!endswith(vis, "\n"))
                                fputc('\n', stderr);
                }
                agent_patch_print_flags(patch, "FLAGGED:     ");
                fprintf(stderr,
                        "applied:     %s%s%s\n",
                        applied ? "yes" : "no",
                        apply_note ? " - " : "",
                        apply_note ? apply_note : "");
        }
        if (audit_path)
                fprintf(stderr, "audit log:   %s\n", audit_path);
}
