/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus ps: the node's pods (signed GET /v1/pods), live ones by default, every pod the node
 * still lists with -a, one state with --state. Node answers are untrusted: printed made
 * visible.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "cli-pod.h"
#include "cli.h"
#include "client-settings.h"
#include "escape.h"
#include "json-util.h"
#include "string-util.h"

static const char *const pod_states[] = {
        "pending", "booting", "configuring", "running", "stopping", "exited", "failed", NULL,
};

static void usage(void) {
        printf("Usage: nucleus ps [OPTIONS]\n\n"
               "List the node's pods: the live ones (not exited or failed) unless -a.\n\n"
               "Options:\n"
               "  -a, --all               Also the ended pods (exited, failed) the node still keeps\n"
               "      --state STATE       Only pods in STATE: pending, booting, configuring, running,\n"
               "                          stopping, exited or failed\n"
               "      --output FORMAT     text (default) or json ({\"pods\": [...]}, the node's pod "
               "objects)\n"
               "  -h, --help              Show this help\n");
}

static char *field(json_t *o, const char *k) {
        json_t *v = json_object_get(o, k);
        if (json_is_string(v))
                return string_make_visible(json_string_value(v));
        if (json_is_integer(v))
                return xasprintf("%lld", (long long) json_integer_value(v));
        return xstrdup("-");
}

/* One line for the node's warm pool (GET /v1/pool), when it has one: pooled pods are not
 * user pods (no id to use), so they are summed up, not listed. Text output only; a node
 * without the route prints nothing. */
static void print_pool_line(NucleusClient *c) {
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *res = NULL;
        _cleanup_free_ char *line = NULL;
        if (client_call_json(c, "GET", "/v1/pool", NULL, &res, &e) < 0)
                return;
        size_t i;
        json_t *img;
        json_array_foreach(json_object_get(res, "images"), i, img) {
                json_int_t size = json_integer_value(json_object_get(img, "size"));
                if (size <= 0)
                        continue;
                _cleanup_free_ char *name = string_make_visible(
                        json_string_value(json_object_get(img, "image")) ?: "?");
                char *next = xasprintf(
                        "%s%s%s %lld/%lld ready",
                        line ?: "",
                        line ? ", " : "",
                        name,
                        (long long) json_integer_value(json_object_get(img, "ready")),
                        (long long) size);
                free(line);
                line = next;
        }
        if (line)
                printf("\nwarm pool: %s (pooled pods are claimed by create; nucleus doctor has more)\n", line);
}

int verb_ps(int argc, char **argv) {
        enum {
                ARG_STATE = 0x100,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "all", no_argument, NULL, 'a' },
                { "state", required_argument, NULL, ARG_STATE },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *res = NULL, *shown = json_array();
        _cleanup_free_ char *err = NULL;
        OutputMode output = OUTPUT_TEXT;
        const char *state = NULL;
        bool all = false;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "ha", options, NULL)) >= 0)
                switch (ch) {
                case 'a':
                        all = true;
                        break;
                case ARG_STATE: {
                        bool known = false;
                        for (size_t i = 0; pod_states[i]; i++)
                                known = known || streq(pod_states[i], optarg);
                        if (!known) {
                                _cleanup_free_ char *vis = string_make_visible(optarg),
                                                    *l = strv_join((char **) pod_states, ", ");
                                return cli_usage_error("ps", "--state: '%s' is not a pod state (%s)", vis, l);
                        }
                        state = optarg;
                        break;
                }
                default:
                        r = cli_option_common(ch, usage, &output);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        if (optind < argc)
                return cli_usage_error("ps", "unexpected argument '%s'", argv[optind]);

        r = client_open_default(&c, &err);
        if (r < 0)
                return cli_fail(output, "io_error", "%s", err ?: strerror(-r));
        r = client_call_json(c, "GET", "/v1/pods", NULL, &res, &e);
        if (r < 0) {
                _cleanup_free_ char *d = client_error_describe(&e);
                return cli_fail(output, e.kind ?: "internal", "%s", d);
        }
        json_t *pods = json_is_array(res) ? res : json_object_get(res, "pods");
        size_t i;
        json_t *p;
        json_array_foreach(pods, i, p) {
                const char *st = json_string_value(json_object_get(p, "state"));
                if (state ? !streq_ptr(st, state) : (!all && cli_pod_state_ended(st)))
                        continue;
                json_array_append(shown, p);
        }
        if (output == OUTPUT_JSON) {
                _cleanup_json_ json_t *doc = json_pack("{s:O}", "pods", shown);
                return cli_print_json(doc) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        }
        printf("%-38s %-20s %-12s %-24s %s\n", "ID", "NAME", "STATE", "CREATED", "REASON");
        json_array_foreach(shown, i, p) {
                _cleanup_free_ char *id = field(p, "id"), *name = field(p, "name"), *st = field(p, "state"),
                                    *created = field(p, "created"), *reason = field(p, "reason");
                printf("%-38s %-20s %-12s %-24s %s\n", id, name, st, created, reason);
        }
        print_pool_line(c);
        return CLI_EXIT_OK;
}
