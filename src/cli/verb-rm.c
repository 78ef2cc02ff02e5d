/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus rm [-f] POD...: forget pods. A live pod is refused unless -f (which deletes it
 * first, like `nucleus delete`); the files `nucleus run` kept for the pod (<state
 * dir>/runs/<pod>.patch, .audit.jsonl) are removed. PODs are ids, unique id prefixes or names
 * (cli-pod.h). The node's answers are untrusted: printed made visible.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-pod.h"
#include "cli-runs.h"
#include "cli.h"
#include "client-settings.h"
#include "escape.h"
#include "json-util.h"
#include "string-util.h"
#include "time-util.h"

#define RM_STOP_WAIT_USEC (30 * USEC_PER_SEC) /* rm -f: how long a deleted pod may take to end */

static void usage(void) {
        printf("Usage: nucleus rm [OPTIONS] POD...\n\n"
               "Remove ended pods: the node's record and directory of each, and the files\n"
               "'nucleus run' kept for it (patch, audit log copy).\n"
               "POD is an id, a unique id prefix or a name.\n\n"
               "Options:\n"
               "  -f, --force             Delete a pod that is still live first (else it is refused)\n"
               "      --output FORMAT     text (default) or json ({\"ok\", \"pods\": [{id, removed,\n"
               "                          error?}]})\n"
               "  -h, --help              Show this help\n");
}

static json_t *pod_in(json_t *list, const char *id) {
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(list, "pods"), i, p)
                if (streq_ptr(json_string_value(json_object_get(p, "id")), id))
                        return p;
        return NULL;
}

/* Has the node forgotten pod? POST .../remove; a pod still stopping (after rm -f) gets a few
 * seconds to end. Returns NULL, or the problem (malloc'd). */
static char *node_remove(NucleusClient *c, const char *id) {
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/remove", id);
        usec_t until = now_usec(CLOCK_MONOTONIC) + RM_STOP_WAIT_USEC;
        for (;;) {
                _cleanup_client_error_ ClientError e = {};
                _cleanup_json_ json_t *body = json_object();
                int r = client_call_json(c, "POST", path, body, NULL, &e);
                if (r >= 0 || e.status == 404)
                        return NULL; /* removed, or already gone */
                if (e.status != 409 || now_usec(CLOCK_MONOTONIC) > until)
                        return client_error_describe(&e);
                (void) usleep(200 * 1000);
        }
}

int verb_rm(int argc, char **argv) {
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "force", no_argument, NULL, 'f' },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_json_ json_t *list = NULL, *results = json_array();
        _cleanup_free_ char *err = NULL;
        OutputMode output = OUTPUT_TEXT;
        bool force = false, ok = true;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "hf", options, NULL)) >= 0)
                switch (ch) {
                case 'f':
                        force = true;
                        break;
                default:
                        r = cli_option_common(ch, usage, &output);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        if (optind >= argc)
                return cli_usage_error("rm", "expected at least one POD");
        for (int i = optind; i < argc; i++)
                if (!cli_pod_id_valid(argv[i]))
                        return cli_usage_error(
                                "rm", "'%s' is not a pod id or name (letters, digits, '-' and '_')", argv[i]);

        r = client_open_default(&c, &err);
        if (r < 0)
                return cli_fail(output, "io_error", "%s", err ?: strerror(-r));
        {
                _cleanup_client_error_ ClientError e = {};
                r = client_call_json(c, "GET", "/v1/pods", NULL, &list, &e);
                if (r < 0) {
                        _cleanup_free_ char *d = client_error_describe(&e);
                        return cli_fail(output, e.kind ?: "io_error", "%s", d);
                }
        }

        for (int i = optind; i < argc; i++) {
                _cleanup_free_ char *id = NULL, *problem = NULL;
                _cleanup_json_ json_t *removed = json_array();
                uint64_t bytes = 0;

                r = cli_pod_resolve(c, list, argv[i], &id, &problem);
                if (r >= 0) {
                        json_t *p = pod_in(list, id);
                        const char *state = json_string_value(json_object_get(p, "state"));
                        if (p && !cli_pod_state_ended(state) && !force)
                                problem = xasprintf(
                                        "pod %s is %s: 'nucleus delete %s' first, or 'nucleus rm -f'",
                                        id,
                                        state ?: "live",
                                        id);
                        else if (p && !cli_pod_state_ended(state)) {
                                _cleanup_free_ char *path = xasprintf("/v1/pods/%s", id);
                                _cleanup_client_error_ ClientError e = {};
                                if (client_call_json(c, "DELETE", path, NULL, NULL, &e) < 0 && e.status != 404)
                                        problem = client_error_describe(&e);
                        }
                        if (!problem && p)
                                problem = node_remove(c, id);
                        if (!problem) {
                                r = cli_runs_remove(id, 0, NULL, removed, &bytes);
                                if (r < 0)
                                        problem = xasprintf("removing its run files: %s", strerror(-r));
                                else if (r == 0 && !p)
                                        problem = xasprintf("no pod '%s' (not on the node, no run files)", id);
                        }
                }
                if (problem) {
                        ok = false;
                        _cleanup_free_ char *vis = escape_text(problem, strlen(problem), ESCAPE_KEEP_NEWLINE);
                        fprintf(stderr, "nucleus rm: %s\n", vis);
                } else if (output == OUTPUT_TEXT)
                        printf("%s removed (%zu run file%s)\n",
                               id,
                               json_array_size(removed),
                               json_array_size(removed) == 1 ? "" : "s");
                json_t *res = json_pack("{s:s, s:O}", "id", id ?: argv[i], "removed", removed);
                if (problem)
                        json_object_set_new(res, "error", json_string(problem));
                json_array_append_new(results, res);
        }
        if (output == OUTPUT_JSON) {
                _cleanup_json_ json_t *doc = json_pack("{s:b, s:O}", "ok", ok, "pods", results);
                (void) cli_print_json(doc);
        }
        return ok ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}
