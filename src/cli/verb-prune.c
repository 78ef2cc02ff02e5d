/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus prune [--older-than D]: remove the files `nucleus run` kept (<state dir>/runs/) for
 * pods that are no longer live, optionally only those older than D. Pods the node still runs
 * keep theirs; when the node cannot be asked, nothing younger than a day is touched.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc-util.h"
#include "cli-pod.h"
#include "cli-runs.h"
#include "cli.h"
#include "client-settings.h"
#include "escape.h"
#include "json-util.h"
#include "log.h"
#include "string-util.h"
#include "time-util.h"

#define PRUNE_NODE_DOWN_MIN_AGE_USEC (86400 * USEC_PER_SEC)

static void usage(void) {
        printf("Usage: nucleus prune [OPTIONS]\n\n"
               "Remove the node's ended pods (records and directories), the snapshots of ended pods,\n"
               "and what 'nucleus run' kept (patches, audit log copies in <state dir>/runs/) for\n"
               "pods that are no longer live. An ended pod keeps its record while it has snapshots.\n\n"
               "Options:\n"
               "      --older-than D      Only what is older than D: 90s, 30m, 12h, 7d, 2w (default: all)\n"
               "      --output FORMAT     text (default) or json ({\"ok\", \"pods\": [ids removed from the\n"
               "                          node], \"snapshots\": [ids], \"removed\": [run files],\n"
               "                          \"bytes\"})\n"
               "  -h, --help              Show this help\n");
}

int verb_prune(int argc, char **argv) {
        enum {
                ARG_OLDER_THAN = 0x100,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "older-than", required_argument, NULL, ARG_OLDER_THAN },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_json_ json_t *list = NULL, *live = json_array(), *removed = json_array();
        _cleanup_free_ char *err = NULL;
        OutputMode output = OUTPUT_TEXT;
        usec_t age = 0;
        uint64_t bytes = 0;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (ch) {
                case ARG_OLDER_THAN:
                        if (cli_parse_duration(optarg, &age) < 0) {
                                _cleanup_free_ char *vis = string_make_visible(optarg);
                                return cli_usage_error(
                                        "prune",
                                        "--older-than: '%s' is not a duration like 90s, 30m, 12h, 7d",
                                        vis);
                        }
                        break;
                default:
                        r = cli_option_common(ch, usage, &output);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        if (optind < argc)
                return cli_usage_error("prune", "unexpected argument '%s'", argv[optind]);

        /* Live pods keep their files. A node we cannot ask might run any of them: then only
         * files older than a day go. */
        r = client_open_default(&c, &err);
        if (r >= 0) {
                _cleanup_client_error_ ClientError e = {};
                r = client_call_json(c, "GET", "/v1/pods", NULL, &list, &e);
                if (r < 0)
                        err = client_error_describe(&e);
        }
        if (r < 0) {
                log_warning(
                        "cannot list the node's pods (%s); keeping files younger than a day",
                        err ?: strerror(-r));
                age = NUCLEUS_MAX(age, PRUNE_NODE_DOWN_MIN_AGE_USEC);
        } else {
                size_t i;
                json_t *p;
                json_array_foreach(json_object_get(list, "pods"), i, p) {
                        if (!cli_pod_state_ended(json_string_value(json_object_get(p, "state"))))
                                json_array_append(live, json_object_get(p, "id"));
                }
        }

        /* The node forgets its ended pods older than D (record and directory). */
        _cleanup_json_ json_t *pods_removed = NULL, *snaps_removed = NULL;
        if (c && list) {
                _cleanup_client_error_ ClientError e = {};
                _cleanup_json_ json_t *body = json_pack(
                                              "{s:I}", "older_than_seconds", (json_int_t) (age / USEC_PER_SEC)),
                                      *ans = NULL;
                if (client_call_json(c, "POST", "/v1/pods/prune", body, &ans, &e) < 0) {
                        _cleanup_free_ char *d = client_error_describe(&e);
                        log_warning("the node did not prune its ended pods: %s", d);
                } else {
                        if (json_is_array(json_object_get(ans, "removed")))
                                pods_removed = json_incref(json_object_get(ans, "removed"));
                        if (json_is_array(json_object_get(ans, "snapshots")))
                                snaps_removed = json_incref(json_object_get(ans, "snapshots"));
                }
        }

        usec_t now = now_usec(CLOCK_REALTIME);
        r = cli_runs_remove(NULL, age < now ? now - age : 0, live, removed, &bytes);
        if (r < 0)
                return cli_fail(output, "io_error", "removing run files: %s", strerror(-r));
        if (output == OUTPUT_JSON) {
                _cleanup_json_ json_t *doc = json_pack(
                        "{s:b, s:O, s:I, s:o, s:o}",
                        "ok",
                        true,
                        "removed",
                        removed,
                        "bytes",
                        (json_int_t) bytes,
                        "pods",
                        pods_removed ? json_incref(pods_removed) : json_array(),
                        "snapshots",
                        snaps_removed ? json_incref(snaps_removed) : json_array());
                return cli_print_json(doc) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        }
        if (snaps_removed && json_array_size(snaps_removed) > 0)
                printf("removed %zu snapshot%s of ended pods from the node\n",
                       json_array_size(snaps_removed),
                       json_array_size(snaps_removed) == 1 ? "" : "s");
        if (pods_removed)
                printf("removed %zu ended pod%s from the node\n",
                       json_array_size(pods_removed),
                       json_array_size(pods_removed) == 1 ? "" : "s");
        printf("removed %zu run file%s (%llu KiB)\n",
               json_array_size(removed),
               json_array_size(removed) == 1 ? "" : "s",
               (unsigned long long) ((bytes + 1023) / 1024));
        return CLI_EXIT_OK;
}
