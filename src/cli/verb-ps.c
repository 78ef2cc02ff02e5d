/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus ps: the node's pods (signed GET /v1/pods). Node answers are untrusted: printed made visible. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "cli-opt.h"
#include "cli.h"
#include "client-settings.h"
#include "json-util.h"
#include "string-util.h"

static void usage(void) {
        printf("Usage: nucleus ps [OPTIONS]\n\n"
               "List the node's pods.\n\n"
               "Options:\n"
               "      --output FORMAT     text (default) or json\n"
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

int verb_ps(int argc, char **argv) {
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *res = NULL;
        _cleanup_free_ char *err = NULL;
        OutputMode output = OUTPUT_TEXT;
        bool done;
        int r;

        r = cli_parse_simple_no_args(argc, argv, usage, &output, &done);
        if (done)
                return r;
        r = client_open_default(&c, &err);
        if (r < 0) {
                fprintf(stderr, "nucleus ps: %s\n", err ?: strerror(-r));
                return CLI_EXIT_FAILURE;
        }
        r = client_call_json(c, "GET", "/v1/pods", NULL, &res, &e);
        if (r < 0) {
                _cleanup_free_ char *d = client_error_describe(&e);
                fprintf(stderr, "nucleus ps: %s\n", d);
                if (output == OUTPUT_JSON) {
                        _cleanup_json_ json_t *j = json_pack(
                                "{s:s,s:s}", "error", e.message ?: "", "kind", e.kind ?: "internal");
                        (void) cli_print_json(j);
                }
                return CLI_EXIT_FAILURE;
        }
        if (output == OUTPUT_JSON)
                return cli_print_json(res) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        json_t *pods = json_is_array(res) ? res : json_object_get(res, "pods");
        printf("%-38s %-20s %-12s %-24s %s\n", "ID", "NAME", "STATE", "CREATED", "REASON");
        size_t i;
        json_t *p;
        json_array_foreach(pods, i, p) {
                _cleanup_free_ char *id = field(p, "id"), *name = field(p, "name"),
                                    *state = field(p, "state"), *created = field(p, "created"),
                                    *reason = field(p, "reason");
                printf("%-38s %-20s %-12s %-24s %s\n", id, name, state, created, reason);
        }
        return CLI_EXIT_OK;
}
