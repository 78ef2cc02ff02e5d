/* SPDX-License-Identifier: Apache-2.0 */
/* Policy files: load (JSON or TOML), write TOML, print (cli-policy.h). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "alloc-util.h"
#include "cli-policy.h"
#include "fd-util.h"
#include "json-util.h"
#include "string-util.h"
#include "toml.h"

#define CLI_POLICY_FILE_MAX (1024U * 1024U)

int cli_policy_file_load_setup(const char *path, Policy **ret, json_t **ret_setup, char **reterr) {
        _cleanup_free_ char *data = NULL, *err = NULL;
        _cleanup_json_ json_t *j = NULL;
        size_t n;
        int r = read_full_file_at(AT_FDCWD, path, CLI_POLICY_FILE_MAX, &data, &n);
        if (r < 0) {
                *reterr = xasprintf("%s: cannot read: %s", path, strerror(-r));
                return r;
        }
        if (endswith(path, ".toml")) {
                r = toml_parse(data, n, path, &j, NULL, &err);
                if (r < 0) {
                        *reterr = err ? TAKE_PTR(err) : xasprintf("%s: invalid TOML", path);
                        return r;
                }
        } else if (json_parse_strict(data, n, CLI_POLICY_FILE_MAX, &j, &err) < 0 || !json_is_object(j)) {
                *reterr = xasprintf("%s: %s", path, err ?: "a JSON object expected");
                return -EINVAL;
        }
        /* [setup] is for `nucleus run` (the setup step before the agent), not part of the policy
         * the pod enforces: taken out here, handed to the caller that asked for it. */
        _cleanup_json_ json_t *setup = json_incref(json_object_get(j, "setup"));
        if (setup)
                (void) json_object_del(j, "setup");
        r = policy_from_json(j, ret, &err);
        if (r < 0) {
                *reterr = xasprintf("%s: %s", path, err ?: "invalid policy");
                return r;
        }
        if (ret_setup)
                *ret_setup = TAKE_PTR(setup);
        return 0;
}

int cli_policy_file_load(const char *path, Policy **ret, char **reterr) {
        return cli_policy_file_load_setup(path, ret, NULL, reterr);
}

/* ---- TOML ---- */

static void toml_string(FILE *f, const char *s) {
        fputc('"', f);
        for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
                if (*c == '"' || *c == '\\')
                        fprintf(f, "\\%c", *c);
                else if (*c == '\n')
                        fputs("\\n", f);
                else if (*c == '\t')
                        fputs("\\t", f);
                else if (*c < 0x20 || *c == 0x7f)
                        fprintf(f, "\\u%04x", *c);
                else
                        fputc(*c, f);
        }
        fputc('"', f);
}

static int toml_value(FILE *f, const json_t *v, const char *key, bool one_line, char **reterr);

static int toml_inline(FILE *f, const json_t *o, char **reterr) {
        const char *k;
        json_t *v;
        bool first = true;
        fputc('{', f);
        json_object_foreach((json_t *) o, k, v) {
                fprintf(f, "%s", first ? " " : ", ");
                toml_string(f, k);
                fputs(" = ", f);
                if (toml_value(f, v, k, true, reterr) < 0)
                        return -EINVAL;
                first = false;
        }
        fputs(first ? "}" : " }", f);
        return 0;
}

/* An inline table must fit on one line (TOML 1.0), so arrays inside one stay on it too. */
static int toml_value(FILE *f, const json_t *v, const char *key, bool one_line, char **reterr) {
        size_t i;
        json_t *e;
        switch (json_typeof(v)) {
        case JSON_STRING:
                toml_string(f, json_string_value(v));
                return 0;
        case JSON_INTEGER:
                fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                return 0;
        case JSON_TRUE:
        case JSON_FALSE:
                fputs(json_is_true(v) ? "true" : "false", f);
                return 0;
        case JSON_ARRAY:
                if (json_array_size(v) == 0) {
                        fputs("[]", f);
                        return 0;
                }
                fputs(one_line ? "[" : "[\n", f);
                json_array_foreach(v, i, e) {
                        fputs(one_line ? (i > 0 ? ", " : "") : "    ", f);
                        if (toml_value(f, e, key, one_line, reterr) < 0)
                                return -EINVAL;
                        if (!one_line)
                                fputs(",\n", f);
                }
                fputs("]", f);
                return 0;
        case JSON_OBJECT:
                return toml_inline(f, v, reterr);
        default:
                *reterr = xasprintf(
                        "'%s' has no value TOML can write (a policy without a time limit: use --format "
                        "json)",
                        key);
                return -EINVAL;
        }
}

char *cli_policy_to_toml(const Policy *p, char **reterr) {
        _cleanup_json_ json_t *j = policy_to_json(p);
        char *buf = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&buf, &n);
        const char *k;
        json_t *v;
        int r = 0;
        if (!f)
                abort();
        fprintf(f,
                "# Nucleus policy%s%s. Edit, then: nucleus run --config FILE \"task\"\n",
                p->name ? " from profile " : "",
                p->name ?: "");
        fputs("# Schema: docs/policy.md (the JSON keys as TOML tables).\n\n", f);
        /* Scalars first: they belong to the root table. */
        json_object_foreach(j, k, v) {
                if (json_is_object(v) || json_is_null(v))
                        continue;
                fprintf(f, "%s = ", k);
                if ((r = toml_value(f, v, k, false, reterr)) < 0)
                        break;
                fputc('\n', f);
        }
        json_object_foreach(j, k, v) {
                const char *k2;
                json_t *v2;
                if (r < 0 || !json_is_object(v))
                        continue;
                fprintf(f, "\n[%s]\n", k);
                json_object_foreach(v, k2, v2) {
                        if (json_is_null(v2)) {
                                *reterr = xasprintf(
                                        "'%s.%s' is null, which TOML cannot write (use --format json)", k, k2);
                                r = -EINVAL;
                                break;
                        }
                        fprintf(f, "%s = ", k2);
                        if ((r = toml_value(f, v2, k2, false, reterr)) < 0)
                                break;
                        fputc('\n', f);
                }
        }
        fclose(f);
        if (r < 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

/* ---- printing ---- */

static void print_list(FILE *f, const char *label, char *const *l) {
        fprintf(f, "  %s:", label);
        if (!l || !l[0]) {
                fputs(" (none)\n", f);
                return;
        }
        fputc('\n', f);
        STRV_FOREACH(s, l) {
                _cleanup_free_ char *vis = string_make_visible(*s);
                fprintf(f, "    %s\n", vis);
        }
}

static void print_rules(FILE *f, const char *label, const CommandRules *r) {
        if (r->n_rules == 0)
                return;
        fprintf(f, "  %s:\n", label);
        for (size_t i = 0; i < r->n_rules; i++) {
                const CommandRule *rule = &r->rules[i];
                _cleanup_free_ char *prog = string_make_visible(rule->program);
                fprintf(f, "    %s", prog);
                for (size_t a = 0; a < rule->n_args; a++) {
                        const ArgPattern *ap = &rule->args[a];
                        if (ap->type == ARG_PATTERN_EXACT) {
                                _cleanup_free_ char *x = string_make_visible(ap->exact);
                                fprintf(f, " %s", x);
                        } else
                                fputs(ap->type == ARG_PATTERN_ANY ? " <any>" : " <any...>", f);
                }
                fputc('\n', f);
        }
}

static void print_usd(FILE *f, uint64_t micros) {
        fprintf(f,
                "$%llu.%06llu",
                (unsigned long long) (micros / 1000000),
                (unsigned long long) (micros % 1000000));
}

void cli_policy_print(FILE *f, const Policy *p) {
        _cleanup_free_ char *name = string_make_visible(p->name ?: "(custom)");
        _cleanup_free_ char *desc = string_make_visible(p->description ?: "");
        fprintf(f, "%s\n    %s\n\ncapabilities:\n", name, desc);
        for (Operation op = 0; op < _OPERATION_MAX; op++)
                fprintf(f,
                        "  %-12s %s%s\n",
                        operation_to_string(op),
                        cap_level_to_string(p->capabilities.level[op]),
                        p->obligations & OBLIGATION(op) ? " (needs approval)" : "");
        fprintf(f,
                "\npaths:\n  %s\n",
                p->paths.unrestricted ? "every path, except blocked" : "only allowed paths");
        if (!p->paths.unrestricted)
                print_list(f, "allowed", p->paths.allowed);
        print_list(f, "blocked", p->paths.blocked);
        fputs("  (writes to a '.git' component are always refused)\n", f);
        fprintf(f,
                "\ncommands:\n  %s\n",
                p->commands.unrestricted ? "any command, except blocked"
                                         : "only allowed commands (an allowed string matches a command that "
                                           "starts "
                                           "with its words)");
        if (!p->commands.unrestricted) {
                print_list(f, "allowed", p->commands.allowed);
                print_rules(f, "allowed rules", &p->commands.allowed_rules);
        }
        print_list(f, "blocked", p->commands.blocked);
        print_rules(f, "blocked rules", &p->commands.blocked_rules);
        fputs("  (inline code, shells and interpreters are judged by docs/policy.md step 4)\n", f);
        fputs("\nbudget:\n  cost ", f);
        print_usd(f, p->max_usd_micros);
        fprintf(f,
                ", input tokens %llu, output tokens %llu\n",
                (unsigned long long) p->max_input_tokens,
                (unsigned long long) p->max_output_tokens);
        if (p->max_duration_usec == USEC_INFINITY)
                fputs("time window: none\n", f);
        else
                fprintf(f, "time window: %llu s\n", (unsigned long long) (p->max_duration_usec / USEC_PER_SEC));
}
