/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus snapshot POD (POST /v1/pods/ID/snapshot): save a running pod's VM state and disk on
 * the node (docs/snapshot.md); --list shows the pod's snapshots. Prints the snapshot id.
 * nucleus snapshot rm ID (DELETE /v1/snapshots/ID) removes one.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "cli-api.h"
#include "json-util.h"
#include "log.h"
#include "string-util.h"

static void snapshot_usage(void) {
        printf("Usage: nucleus snapshot POD [OPTIONS]\n"
               "       nucleus snapshot rm ID\n\n"
               "Save a running pod (its VM's memory and devices, its workspace disk) on the node, for\n"
               "'nucleus fork'. The pod must be idle: a call or command in flight is\n"
               "refused. Pods with a network and the local driver cannot be snapshotted. A snapshot\n"
               "outlives its pod (fork it after the pod ended: the children share what the pod left\n"
               "of its budget) until 'nucleus snapshot rm ID', 'nucleus prune', the node's\n"
               "[snapshots] caps or a node restart. Prints the snapshot id.\n\n"
               "Options:\n"
               "      --list              List the pod's snapshots instead\n"
               "      --output FORMAT     text (default) or json (the snapshot's metadata)\n"
               "  -h, --help              Show this help\n");
}

int verb_snapshot(int argc, char **argv) {
        enum {
                ARG_LIST = 0x100,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "list", no_argument, NULL, ARG_LIST },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        OutputMode mode = OUTPUT_TEXT;
        _cleanup_free_ char *pod_id = NULL;
        const char *pod;
        bool list = false;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (ch == ARG_LIST) {
                        list = true;
                        continue;
                }
                r = cli_option_common(ch, snapshot_usage, &mode);
                if (r != CLI_OPTION_CONTINUE)
                        return r;
        }
        if (optind + 2 == argc && streq(argv[optind], "rm")) {
                const char *id = argv[optind + 1];
                if (strlen(id) != 36 || strspn(id, "0123456789abcdef-") != 36)
                        return cli_usage_error("snapshot", "rm: expected a snapshot id, not '%s'", id);
                r = cli_api_open(mode, &c);
                if (r != 0)
                        return r;
                _cleanup_free_ char *rm_path = xasprintf("/v1/snapshots/%s", id);
                if (cli_api_call(c, "DELETE", rm_path, NULL, NULL, 0, &resp, &e) < 0)
                        return cli_api_fail(mode, &e, &resp);
                _cleanup_json_ json_t *j = cli_api_answer(&resp);
                if (mode == OUTPUT_JSON && j)
                        return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
                printf("removed snapshot %s\n", id);
                return CLI_EXIT_OK;
        }
        r = cli_api_open_pod_operand(argc, argv, mode, &c, &pod, &pod_id);
        if (r != 0)
                return r;
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/%s", pod, list ? "snapshots" : "snapshot");
        r = list ? cli_api_call(c, "GET", path, NULL, NULL, 0, &resp, &e)
                 : cli_api_call(c, "POST", path, "application/json", "{}", 2, &resp, &e);
        if (r < 0)
                return cli_api_fail(mode, &e, &resp);
        _cleanup_json_ json_t *j = cli_api_answer(&resp);
        if (!j)
                return cli_fail(mode, "internal", "the node's answer is not a JSON object");
        if (mode == OUTPUT_JSON)
                return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        if (!list) {
                printf("%s\n", json_string_value(json_object_get(j, "id")) ?: "-");
                return CLI_EXIT_OK;
        }
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(j, "snapshots"), i, s)
                printf("%s  %s  %lld MiB state\n",
                       json_string_value(json_object_get(s, "id")) ?: "-",
                       json_string_value(json_object_get(s, "created")) ?: "-",
                       (long long) (json_integer_value(json_object_get(s, "state_bytes")) >> 20));
        return CLI_EXIT_OK;
}
