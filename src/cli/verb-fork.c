/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus fork POD [-n N] [--snapshot ID] (POST /v1/pods/ID/fork): start N pods from a
 * snapshot of a running pod (a new one unless --snapshot names one), each with its own id,
 * deadline and audit log and an equal share of the pod's remaining budget (docs/snapshot.md).
 * Prints the new pods' ids, one per line.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "cli-api.h"
#include "json-util.h"
#include "log.h"
#include "parse-util.h"
#include "string-util.h"

static void fork_usage(void) {
        printf("Usage: nucleus fork POD [OPTIONS]\n\n"
               "Start pods from a snapshot of POD: each sees the pod's files and running state, gets\n"
               "a new id, deadline and audit log (which names POD and the snapshot), a reseeded\n"
               "random generator and the node's clock, the same policy, and an equal share of what\n"
               "is left of POD's budget (POD keeps one share). POD may have ended if it has a\n"
               "snapshot (taken with 'nucleus snapshot POD' while it ran): the children then share\n"
               "what POD left at its end (one share stays for later forks). Prints the new pods'\n"
               "ids.\n\n"
               "Options:\n"
               "  -n, --count N           How many pods (1-16, default 1)\n"
               "      --snapshot ID       Fork from this snapshot of POD (default: take one now; the\n"
               "                          newest when POD has ended)\n"
               "      --output FORMAT     text (default) or json (the node's answer)\n"
               "  -h, --help              Show this help\n");
}

int verb_fork(int argc, char **argv) {
        enum {
                ARG_SNAPSHOT = 0x100,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "count", required_argument, NULL, 'n' },
                { "snapshot", required_argument, NULL, ARG_SNAPSHOT },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        OutputMode mode = OUTPUT_TEXT;
        _cleanup_free_ char *pod_id = NULL;
        const char *pod, *snapshot = NULL;
        uint32_t count = 1;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "hn:", options, NULL)) >= 0) {
                if (ch == 'n') {
                        if (safe_atou32(optarg, &count) < 0 || count < 1 || count > 16)
                                return cli_usage_error("fork", "--count: expected 1-16, not '%s'", optarg);
                        continue;
                }
                if (ch == ARG_SNAPSHOT) {
                        if (strlen(optarg) != 36 || strspn(optarg, "0123456789abcdef-") != 36)
                                return cli_usage_error("fork", "--snapshot: expected a snapshot id");
                        snapshot = optarg;
                        continue;
                }
                r = cli_option_common(ch, fork_usage, &mode);
                if (r != CLI_OPTION_CONTINUE)
                        return r;
        }
        r = cli_api_open_pod_operand(argc, argv, mode, &c, &pod, &pod_id);
        if (r != 0)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:I}", "count", (json_int_t) count);
        if (snapshot)
                json_object_set_new(body, "snapshot", json_string(snapshot));
        _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/fork", pod);
        r = cli_api_call(c, "POST", path, "application/json", text, strlen(text), &resp, &e);
        if (r < 0)
                return cli_api_fail(mode, &e, &resp);
        _cleanup_json_ json_t *j = cli_api_answer(&resp);
        if (!j)
                return cli_fail(mode, "internal", "the node's answer is not a JSON object");
        if (mode == OUTPUT_JSON)
                return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        size_t i;
        json_t *k;
        json_array_foreach(json_object_get(j, "children"), i, k)
                printf("%s\n", json_string_value(json_object_get(k, "id")) ?: "-");
        const char *why = json_string_value(json_object_get(j, "error"));
        if (why)
                log_warning("Not every pod started: %s", why);
        return CLI_EXIT_OK;
}
