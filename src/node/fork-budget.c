/* SPDX-License-Identifier: Apache-2.0 */
/* Budget shares of a fork and the snapshot cap's choice (fork-budget.h). */
#include <errno.h>
#include <string.h>

#include "fork-budget.h"

static uint64_t sub0(uint64_t a, uint64_t b) {
        return a > b ? a - b : 0;
}

static uint64_t min64(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

static uint64_t max64(uint64_t a, uint64_t b) {
        return a > b ? a : b;
}

ForkBudget fork_budget_remainder(
        uint64_t left_usd_micros,
        uint64_t reserved_usd_micros,
        uint64_t max_usd_micros,
        const ForkBudget *given,
        uint64_t max_input_tokens,
        uint64_t used_input_tokens,
        uint64_t max_output_tokens,
        uint64_t used_output_tokens) {
        static const ForkBudget none = {};
        if (!given)
                given = &none;
        uint64_t left = min64(left_usd_micros, sub0(max_usd_micros, given->usd_micros));
        return (ForkBudget){
                .usd_micros = sub0(left, reserved_usd_micros),
                .input_tokens = sub0(max_input_tokens, max64(used_input_tokens, given->input_tokens)),
                .output_tokens = sub0(max_output_tokens, max64(used_output_tokens, given->output_tokens)),
        };
}

static uint64_t add_sat(uint64_t a, uint64_t b) {
        uint64_t r;
        return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

void fork_budget_add(ForkBudget *to, const ForkBudget *add) {
        to->usd_micros = add_sat(to->usd_micros, add->usd_micros);
        to->input_tokens = add_sat(to->input_tokens, add->input_tokens);
        to->output_tokens = add_sat(to->output_tokens, add->output_tokens);
}

int fork_budget_split(const ForkBudget *have, unsigned count, ForkBudget *ret_share, ForkBudget *ret_keeps) {
        if (count == 0)
                return -EINVAL;
        uint64_t parts = (uint64_t) count + 1;
        ForkBudget share = {
                .usd_micros = have->usd_micros / parts,
                .input_tokens = have->input_tokens / parts,
                .output_tokens = have->output_tokens / parts,
        };
        if (share.usd_micros == 0)
                return -EDQUOT;
        *ret_share = share;
        *ret_keeps = (ForkBudget){
                .usd_micros = have->usd_micros - share.usd_micros * count,
                .input_tokens = have->input_tokens - share.input_tokens * count,
                .output_tokens = have->output_tokens - share.output_tokens * count,
        };
        return 0;
}

/* The oldest entry not yet chosen nor pinned whose parent_ended is ended, or n. */
static size_t oldest(const SnapshotCapEntry *e, size_t n, const bool *remove, bool ended) {
        size_t best = n;
        for (size_t i = 0; i < n; i++)
                if (!remove[i] && !e[i].pinned && e[i].parent_ended == ended &&
                    (best == n || e[i].created_usec < e[best].created_usec))
                        best = i;
        return best;
}

int snapshot_cap_choose(
        const SnapshotCapEntry *e, size_t n, uint64_t max_count, uint64_t max_bytes, bool *remove) {
        uint64_t count = n, bytes = 0;
        memset(remove, 0, n * sizeof *remove);
        for (size_t i = 0; i < n; i++)
                bytes += e[i].bytes;
        while ((max_count && count > max_count) || (max_bytes && bytes > max_bytes)) {
                size_t i = oldest(e, n, remove, true);
                if (i == n)
                        i = oldest(e, n, remove, false);
                if (i == n)
                        return -ENOSPC;
                remove[i] = true;
                count--;
                bytes -= e[i].bytes;
        }
        return 0;
}
