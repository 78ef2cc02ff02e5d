/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus profiles: the permission profiles of src/lib/policy: list them, show one whole
 * (commands included), export one as a policy file to edit and pass to `nucleus run --config`. */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "cli-opt.h"
#include "cli-policy.h"
#include "cli.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "policy.h"
#include "string-util.h"

static void usage(void) {
        printf("Usage: nucleus profiles [OPTIONS]\n"
               "       nucleus profiles show NAME|--config FILE [--output text|json]\n"
               "       nucleus profiles export NAME [--format toml|json] [-o FILE]\n\n"
               "List the permission profiles, their capability levels and what needs approval;\n"
               "show one whole policy (paths, command rules, budget); or write one as a policy file\n"
               "to edit and pass to `nucleus run --config FILE`.\n\n"
               "Options:\n"
               "      --output FORMAT     text (default) or json\n"
               "  -c, --config FILE       show: a policy file (.toml or .json) instead of a profile\n"
               "      --format FORMAT     export: toml (default) or json\n"
               "  -o, --out FILE          export: write FILE (default: standard output)\n"
               "  -h, --help              Show this help\n");
}

static int load_named(const char *name, Policy **ret) {
        int r = policy_profile_new(name, ret);
        if (r < 0) {
                _cleanup_free_ char *list = strv_join((char *const *) policy_profile_names(), ", ");
                _cleanup_free_ char *vis = string_make_visible(name);
                return cli_usage_error("profiles", "unknown profile '%s' (known: %s)", vis, list);
        }
        return 0;
}

static int profiles_show_or_export(int argc, char **argv, bool export) {
        enum {
                ARG_FORMAT = 0x100
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "config", required_argument, NULL, 'c' },
                { "format", required_argument, NULL, ARG_FORMAT },
                { "out", required_argument, NULL, 'o' },
                {},
        };
        OutputMode output = OUTPUT_TEXT;
        const char *config = NULL, *format = "toml", *out = NULL;
        int c, r;
        optind = 0; /* a full getopt reset: main.c parsed another argv */
        while ((c = getopt_long(argc, argv, "hc:o:", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        config = optarg;
                        break;
                case ARG_FORMAT:
                        if (!streq(optarg, "toml") && !streq(optarg, "json"))
                                return cli_usage_error(
                                        "profiles", "--format: 'toml' or 'json', not '%s'", optarg);
                        format = optarg;
                        break;
                case 'o':
                        out = optarg;
                        break;
                default:
                        r = cli_option_common(c, usage, &output);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        }
        if (export && (config || output != OUTPUT_TEXT))
                return cli_usage_error("profiles", "export takes a profile NAME, --format and -o");
        if (!export && (out || !streq(format, "toml")))
                return cli_usage_error("profiles", "--format and -o are for 'profiles export'");
        if ((optind < argc) == !!config || argc - optind > 1)
                return cli_usage_error(
                        "profiles", "give one profile NAME%s", export ? "" : " or --config FILE");

        _cleanup_(policy_freep) Policy *p = NULL;
        if (config) {
                _cleanup_free_ char *err = NULL;
                r = cli_policy_file_load(config, &p, &err);
                if (r < 0)
                        return cli_fail(output, "invalid_policy", "%s", err);
        } else if ((r = load_named(argv[optind], &p)) != 0)
                return r;

        if (!export) {
                if (output == OUTPUT_JSON) {
                        _cleanup_json_ json_t *j = policy_to_json(p);
                        return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
                }
                cli_policy_print(stdout, p);
                return CLI_EXIT_OK;
        }
        _cleanup_free_ char *text = NULL, *err = NULL;
        if (streq(format, "json")) {
                _cleanup_json_ json_t *j = policy_to_json(p);
                text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                if (text) {
                        char *t = xasprintf("%s\n", text);
                        free(text);
                        text = t;
                }
        } else
                text = cli_policy_to_toml(p, &err);
        if (!text)
                return cli_fail(output, "internal", "cannot write the policy: %s", err ?: "out of memory");
        if (!out)
                return fputs(text, stdout) < 0 || fflush(stdout) != 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        r = write_file_atomic_at(AT_FDCWD, out, text, strlen(text), 0644);
        if (r < 0)
                return cli_fail(output, "io_error", "%s: cannot write: %s", out, strerror(-r));
        fprintf(stderr, "Wrote %s. Edit it, then: nucleus run --config %s \"task\"\n", out, out);
        return CLI_EXIT_OK;
}

int verb_profiles(int argc, char **argv) {
        OutputMode output = OUTPUT_TEXT;
        int r;

        if (argc > 1 && (streq(argv[1], "show") || streq(argv[1], "export")))
                return profiles_show_or_export(argc - 1, argv + 1, streq(argv[1], "export"));

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
        printf("\nUse one with: nucleus run --profile NAME \"task\"\n"
               "Everything one allows (commands too): nucleus profiles show NAME\n"
               "As a policy file to edit: nucleus profiles export NAME -o policy.toml\n");
        return CLI_EXIT_OK;
}
