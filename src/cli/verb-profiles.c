/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus profiles: the permission profiles of src/lib/policy with their capabilities. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "cli-opt.h"
#include "cli.h"
#include "json-util.h"
#include "policy.h"
#include "string-util.h"

static void usage(void) {
        printf("Usage: nucleus profiles [OPTIONS]\n\n"
               "List the permission profiles, their capability levels and what needs approval.\n\n"
               "Options:\n"
               "      --output FORMAT     text (default) or json\n"
               "  -h, --help              Show this help\n");
}

int verb_profiles(int argc, char **argv) {
        OutputMode output = OUTPUT_TEXT;
        int r;

        bool done;
        r = cli_parse_simple_no_args(argc, argv, usage, &output, &done);
        if (done)
                return r;

        _cleanup_json_ json_t *list = json_array();
        for (const char *const *n = policy_profile_names(); n && *n; n++) {
                _cleanup_(policy_freep) Policy *p = NULL;
                r = policy_profile_new(*n, &p);
                if (r < 0) {
                        fprintf(stderr, "nucleus profiles: cannot build profile '%s'.\n", *n);
                        return CLI_EXIT_FAILURE;
                }
                json_t *pj = policy_to_json(p);
                json_t *o = json_pack(
                        "{s:s,s:s,s:O*,s:O*}",
                        "name",
                        *n,
                        "description",
                        p->description ?: "",
                        "capabilities",
                        json_object_get(pj, "capabilities"),
                        "obligations",
                        json_object_get(pj, "obligations"));
                json_decref(pj);
                if (o)
                        json_array_append_new(list, o);
        }

        if (output == OUTPUT_JSON) {
                _cleanup_json_ json_t *doc = json_pack("{s:O}", "profiles", list);
                return cli_print_json(doc) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        }
        size_t i;
        json_t *o;
        json_array_foreach(list, i, o) {
                printf("%s\n    %s\n",
                       json_string_value(json_object_get(o, "name")),
                       json_string_value(json_object_get(o, "description")));
                json_t *caps = json_object_get(o, "capabilities");
                const char *k;
                json_t *v;
                printf("    capabilities:");
                bool any = false;
                json_object_foreach(caps, k, v) {
                        const char *lvl = json_string_value(v);
                        if (lvl && !streq(lvl, "never")) {
                                printf(" %s=%s", k, lvl);
                                any = true;
                        }
                }
                printf("%s\n", any ? "" : " none");
                /* obligations is {"approvals": ["op", ...]} (policy_to_json). */
                json_t *appr = json_object_get(json_object_get(o, "obligations"), "approvals");
                if (json_is_array(appr) && json_array_size(appr) > 0) {
                        size_t j;
                        json_t *a;
                        printf("    needs approval:");
                        json_array_foreach(appr, j, a) {
                                _cleanup_free_ char *t = string_make_visible(json_string_value(a) ?: "?");
                                printf("%s %s", j > 0 ? "," : "", t);
                        }
                        printf("\n");
                }
        }
        printf("\nUse one with: nucleus run --profile NAME \"task\"\n");
        return CLI_EXIT_OK;
}
