/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy <-> JSON. The parser is strict: unknown keys, wrong types, bad spellings, over-long
 * strings and lists are refused with the JSON path of the offending value. Input is untrusted
 * (it arrives over the node API and the guest channel). Output is canonical: sorted keys and
 * sets, integers only, compact separators, so its SHA-256 identifies the policy.
 */
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "glob.h"
#include "json-util.h"
#include "policy-internal.h"
#include "string-util.h"
#include "words.h"

#define POLICY_JSON_MAX_TEXT (1024U * 1024U)
#define POLICY_JSON_MAX_LIST 1024U
#define POLICY_JSON_MAX_STRING 4096U
#define POLICY_JSON_MAX_RULE_ARGS 64U
#define POLICY_JSON_MAX_SECONDS (UINT64_MAX / USEC_PER_SEC - 1)

typedef struct ParseCtx {
        char *err; /* first error, "<path>: <message>" */
} ParseCtx;

_printf_(3, 4) static int fail(ParseCtx *c, const char *path, const char *fmt, ...) {
        va_list ap;
        _cleanup_free_ char *m = NULL;
        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                abort();
        va_end(ap);
        if (!c->err && asprintf(&c->err, "%s: %s", path, m) < 0)
                abort();
        return -EINVAL;
}

static char *path_key(const char *path, const char *key) {
        char *s;
        if (asprintf(&s, "%s.%s", path, key) < 0)
                abort();
        return s;
}

static char *path_index(const char *path, size_t i) {
        char *s;
        if (asprintf(&s, "%s[%zu]", path, i) < 0)
                abort();
        return s;
}

/* Reject keys of obj not in allowed (NULL-terminated). */
static int check_keys(ParseCtx *c, const char *path, const json_t *obj, const char *const *allowed) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *) obj, k, v) {
                bool ok = false;
                for (const char *const *a = allowed; *a; a++)
                        if (streq(*a, k))
                                ok = true;
                if (!ok) {
                        _cleanup_free_ char *vis = string_make_visible(k);
                        return fail(c, path, "unknown key \"%s\"", vis);
                }
        }
        return 0;
}

static int get_object(ParseCtx *c, const char *path, const json_t *v) {
        if (!json_is_object(v))
                return fail(c, path, "expected an object");
        return 0;
}

static int get_string(ParseCtx *c, const char *path, const json_t *v, bool nonempty, const char **ret) {
        if (!json_is_string(v))
                return fail(c, path, "expected a string");
        size_t n = json_string_length(v);
        const char *s = json_string_value(v);
        if (n > POLICY_JSON_MAX_STRING)
                return fail(c, path, "string longer than %u bytes", POLICY_JSON_MAX_STRING);
        if (strlen(s) != n)
                return fail(c, path, "string contains a NUL byte");
        if (nonempty && n == 0)
                return fail(c, path, "expected a non-empty string");
        *ret = s;
        return 0;
}

static int get_bool(ParseCtx *c, const char *path, const json_t *v, bool *ret) {
        if (!json_is_boolean(v))
                return fail(c, path, "expected true or false");
        *ret = json_is_true(v);
        return 0;
}

static int get_u64(ParseCtx *c, const char *path, const json_t *v, uint64_t max, uint64_t *ret) {
        if (!json_is_integer(v))
                return fail(c, path, "expected a non-negative integer");
        json_int_t i = json_integer_value(v);
        if (i < 0 || (uint64_t) i > max)
                return fail(c, path, "integer out of range (0..%llu)", (unsigned long long) max);
        *ret = (uint64_t) i;
        return 0;
}

typedef enum StringKind {
        STRING_GLOB,
        STRING_COMMAND,
} StringKind;

static int parse_string_set(ParseCtx *c, const char *path, const json_t *v, StringKind kind, char ***ret) {
        _cleanup_strv_free_ char **set = xnew0(char *, 1);
        size_t i;
        json_t *e;
        if (!json_is_array(v))
                return fail(c, path, "expected an array of strings");
        if (json_array_size(v) > POLICY_JSON_MAX_LIST)
                return fail(c, path, "more than %u entries", POLICY_JSON_MAX_LIST);
        json_array_foreach(v, i, e) {
                _cleanup_free_ char *p = path_index(path, i);
                const char *s;
                if (get_string(c, p, e, true, &s) < 0)
                        return -EINVAL;
                if (kind == STRING_COMMAND) {
                        _cleanup_strv_free_ char **w = NULL;
                        if (words_split(s, &w, NULL) < 0 || strv_length(w) == 0)
                                return fail(c, p, "not a valid command (unbalanced quotes or empty)");
                }
                strv_extend(&set, s);
        }
        strv_sort_uniq(set);
        *ret = TAKE_PTR(set);
        return 0;
}

static int parse_rule(ParseCtx *c, const char *path, const json_t *v, CommandRule *ret) {
        static const char *const keys[] = { "program", "args", NULL };
        const char *program;
        json_t *args, *e;
        size_t i;
        if (get_object(c, path, v) < 0 || check_keys(c, path, v, keys) < 0)
                return -EINVAL;
        _cleanup_free_ char *pp = path_key(path, "program");
        json_t *pv = json_object_get(v, "program");
        if (!pv)
                return fail(c, path, "missing key \"program\"");
        if (get_string(c, pp, pv, true, &program) < 0)
                return -EINVAL;
        if (strchr(program, '/'))
                return fail(c, pp, "expected a program name without '/' (rules match the basename)");
        _cleanup_free_ char *ap = path_key(path, "args");
        args = json_object_get(v, "args");
        if (args && !json_is_array(args))
                return fail(c, ap, "expected an array");
        if (args && json_array_size(args) > POLICY_JSON_MAX_RULE_ARGS)
                return fail(c, ap, "more than %u entries", POLICY_JSON_MAX_RULE_ARGS);
        CommandRule r = { .program = xstrdup(program) };
        r.n_args = args ? json_array_size(args) : 0;
        r.args = xnew0(ArgPattern, NUCLEUS_MAX(r.n_args, (size_t) 1));
        json_array_foreach(args, i, e) {
                _cleanup_free_ char *ep = path_index(ap, i);
                if (json_is_string(e) && streq(json_string_value(e), "any"))
                        r.args[i].type = ARG_PATTERN_ANY;
                else if (json_is_string(e) && streq(json_string_value(e), "any_remaining"))
                        r.args[i].type = ARG_PATTERN_ANY_REMAINING;
                else if (json_is_object(e)) {
                        static const char *const ekeys[] = { "exact", NULL };
                        const char *s;
                        json_t *x = json_object_get(e, "exact");
                        _cleanup_free_ char *xp = path_key(ep, "exact");
                        if (check_keys(c, ep, e, ekeys) < 0 ||
                            (!x && fail(c, ep, "missing key \"exact\"") < 0) ||
                            get_string(c, xp, x, false, &s) < 0) {
                                command_rule_done(&r);
                                return -EINVAL;
                        }
                        r.args[i].type = ARG_PATTERN_EXACT;
                        r.args[i].exact = xstrdup(s);
                } else {
                        command_rule_done(&r);
                        return fail(c, ep, "expected \"any\", \"any_remaining\" or {\"exact\": string}");
                }
        }
        *ret = r;
        return 0;
}

static int parse_rules(ParseCtx *c, const char *path, const json_t *v, CommandRules *ret) {
        CommandRules rules = {};
        size_t i;
        json_t *e;
        if (!json_is_array(v))
                return fail(c, path, "expected an array of rules");
        if (json_array_size(v) > POLICY_JSON_MAX_LIST)
                return fail(c, path, "more than %u entries", POLICY_JSON_MAX_LIST);
        json_array_foreach(v, i, e) {
                _cleanup_free_ char *p = path_index(path, i);
                CommandRule r;
                if (parse_rule(c, p, e, &r) < 0) {
                        command_rules_done(&rules);
                        return -EINVAL;
                }
                command_rules_add(&rules, &r);
                command_rule_done(&r);
        }
        *ret = rules;
        return 0;
}

static int parse_capabilities(ParseCtx *c, const json_t *v, Capabilities *ret) {
        const char *path = "$.capabilities";
        const char *k;
        json_t *e;
        bool seen[_OPERATION_MAX] = {};
        if (get_object(c, path, v) < 0)
                return -EINVAL;
        json_object_foreach((json_t *) v, k, e) {
                Operation op = operation_from_string(k);
                _cleanup_free_ char *vis = string_make_visible(k);
                if (op < 0)
                        return fail(c, path, "unknown key \"%s\"", vis);
                _cleanup_free_ char *p = path_key(path, k);
                const char *s;
                if (get_string(c, p, e, true, &s) < 0)
                        return -EINVAL;
                CapLevel l = cap_level_from_string(s);
                if (l < 0)
                        return fail(c, p, "expected \"never\", \"low_risk\" or \"always\"");
                ret->level[op] = l;
                seen[op] = true;
        }
        for (Operation op = 0; op < _OPERATION_MAX; op++)
                if (!seen[op])
                        return fail(c, path, "missing key \"%s\"", operation_to_string(op));
        return 0;
}

static int parse_obligations(ParseCtx *c, const json_t *v, Obligations *ret) {
        static const char *const keys[] = { "approvals", NULL };
        const char *path = "$.obligations", *apath = "$.obligations.approvals";
        json_t *a, *e;
        size_t i;
        *ret = 0;
        if (get_object(c, path, v) < 0 || check_keys(c, path, v, keys) < 0)
                return -EINVAL;
        a = json_object_get(v, "approvals");
        if (!a)
                return 0;
        if (!json_is_array(a))
                return fail(c, apath, "expected an array of operation names");
        if (json_array_size(a) > POLICY_JSON_MAX_LIST)
                return fail(c, apath, "more than %u entries", POLICY_JSON_MAX_LIST);
        json_array_foreach(a, i, e) {
                _cleanup_free_ char *p = path_index(apath, i);
                const char *s;
                if (get_string(c, p, e, true, &s) < 0)
                        return -EINVAL;
                Operation op = operation_from_string(s);
                if (op < 0)
                        return fail(c, p, "unknown operation (expected e.g. \"git_push\")");
                *ret |= OBLIGATION(op);
        }
        return 0;
}

static int parse_unrestricted_allowed(
        ParseCtx *c, const char *path, const json_t *v, StringKind kind, bool *ret_u, char ***ret_allowed) {
        json_t *u = json_object_get(v, "unrestricted"), *a = json_object_get(v, "allowed");
        _cleanup_free_ char *up = path_key(path, "unrestricted"), *ap = path_key(path, "allowed");
        *ret_u = false;
        if (u && get_bool(c, up, u, ret_u) < 0)
                return -EINVAL;
        if (a) {
                if (parse_string_set(c, ap, a, kind, ret_allowed) < 0)
                        return -EINVAL;
        } else
                *ret_allowed = xnew0(char *, 1);
        if (*ret_u && strv_length(*ret_allowed) > 0)
                return fail(c, ap, "must be empty when \"unrestricted\" is true");
        return 0;
}

static int parse_paths(ParseCtx *c, const json_t *v, PathPolicy *ret) {
        static const char *const keys[] = { "unrestricted", "allowed", "blocked", NULL };
        const char *path = "$.paths";
        if (get_object(c, path, v) < 0 || check_keys(c, path, v, keys) < 0)
                return -EINVAL;
        if (parse_unrestricted_allowed(c, path, v, STRING_GLOB, &ret->unrestricted, &ret->allowed) < 0)
                return -EINVAL;
        json_t *b = json_object_get(v, "blocked");
        if (b)
                return parse_string_set(c, "$.paths.blocked", b, STRING_GLOB, &ret->blocked);
        ret->blocked = xnew0(char *, 1);
        return 0;
}

static int parse_commands(ParseCtx *c, const json_t *v, CommandPolicy *ret) {
        static const char *const keys[] = { "unrestricted",  "allowed",       "blocked",
                                            "allowed_rules", "blocked_rules", NULL };
        const char *path = "$.commands";
        json_t *e;
        if (get_object(c, path, v) < 0 || check_keys(c, path, v, keys) < 0)
                return -EINVAL;
        if (parse_unrestricted_allowed(c, path, v, STRING_COMMAND, &ret->unrestricted, &ret->allowed) < 0)
                return -EINVAL;
        e = json_object_get(v, "blocked");
        if (e) {
                if (parse_string_set(c, "$.commands.blocked", e, STRING_COMMAND, &ret->blocked) < 0)
                        return -EINVAL;
        } else
                ret->blocked = xnew0(char *, 1);
        e = json_object_get(v, "allowed_rules");
        if (e && parse_rules(c, "$.commands.allowed_rules", e, &ret->allowed_rules) < 0)
                return -EINVAL;
        if (ret->unrestricted && ret->allowed_rules.n_rules > 0)
                return fail(c, "$.commands.allowed_rules", "must be empty when \"unrestricted\" is true");
        e = json_object_get(v, "blocked_rules");
        if (e && parse_rules(c, "$.commands.blocked_rules", e, &ret->blocked_rules) < 0)
                return -EINVAL;
        return 0;
}

static int parse_budget(ParseCtx *c, const json_t *v, Policy *p) {
        static const char *const keys[] = {
                "max_usd_micros", "max_cost_usd", "max_input_tokens", "max_output_tokens", NULL
        };
        const char *path = "$.budget";
        json_t *micros, *usd, *e;
        if (get_object(c, path, v) < 0 || check_keys(c, path, v, keys) < 0)
                return -EINVAL;
        micros = json_object_get(v, "max_usd_micros");
        usd = json_object_get(v, "max_cost_usd");
        if (micros && usd)
                return fail(c, path, "give either \"max_usd_micros\" or \"max_cost_usd\", not both");
        if (micros) {
                if (get_u64(c, "$.budget.max_usd_micros", micros, (uint64_t) INT64_MAX, &p->max_usd_micros) < 0)
                        return -EINVAL;
        } else if (usd) {
                const char *s;
                if (get_string(c, "$.budget.max_cost_usd", usd, true, &s) < 0)
                        return -EINVAL;
                if (budget_parse_usd(s, &p->max_usd_micros) < 0 || p->max_usd_micros > (uint64_t) INT64_MAX)
                        return fail(
                                c,
                                "$.budget.max_cost_usd",
                                "expected a decimal string like \"2.5\" (at most 6 fraction digits)");
        } else
                return fail(c, path, "missing key \"max_usd_micros\"");
        e = json_object_get(v, "max_input_tokens");
        if (!e)
                return fail(c, path, "missing key \"max_input_tokens\"");
        if (get_u64(c, "$.budget.max_input_tokens", e, (uint64_t) INT64_MAX, &p->max_input_tokens) < 0)
                return -EINVAL;
        e = json_object_get(v, "max_output_tokens");
        if (!e)
                return fail(c, path, "missing key \"max_output_tokens\"");
        return get_u64(c, "$.budget.max_output_tokens", e, (uint64_t) INT64_MAX, &p->max_output_tokens);
}

static int parse_time(ParseCtx *c, const json_t *v, Policy *p) {
        static const char *const keys[] = { "max_duration_seconds", NULL };
        const char *path = "$.time";
        json_t *e;
        uint64_t secs;
        if (get_object(c, path, v) < 0 || check_keys(c, path, v, keys) < 0)
                return -EINVAL;
        e = json_object_get(v, "max_duration_seconds");
        if (!e)
                return fail(c, path, "missing key \"max_duration_seconds\"");
        if (json_is_null(e)) {
                p->max_duration_usec = USEC_INFINITY;
                return 0;
        }
        if (get_u64(c, "$.time.max_duration_seconds", e, POLICY_JSON_MAX_SECONDS, &secs) < 0)
                return -EINVAL;
        p->max_duration_usec = secs * USEC_PER_SEC;
        return 0;
}

int policy_from_json(const json_t *j, Policy **ret, char **reterr) {
        static const char *const keys[] = { "name",        "description", "capabilities",
                                            "obligations", "paths",       "commands",
                                            "budget",      "time",        "trifecta_constraint",
                                            NULL };
        static const char *const required[] = { "capabilities", "paths", "commands", "budget", "time", NULL };
        ParseCtx c = {};
        _cleanup_(policy_freep) Policy *p = NULL;
        json_t *e;
        int r = -EINVAL;

        if (!ret)
                return -EINVAL;
        if (!j || get_object(&c, "$", j) < 0 || check_keys(&c, "$", j, keys) < 0)
                goto fail;
        for (const char *const *k = required; *k; k++)
                if (!json_object_get(j, *k)) {
                        (void) fail(&c, "$", "missing key \"%s\"", *k);
                        goto fail;
                }
        p = xnew0(Policy, 1);
        p->trifecta = true;
        e = json_object_get(j, "name");
        if (e && !json_is_null(e)) {
                const char *s;
                if (get_string(&c, "$.name", e, true, &s) < 0)
                        goto fail;
                p->name = xstrdup(s);
        }
        e = json_object_get(j, "description");
        if (e) {
                const char *s;
                if (get_string(&c, "$.description", e, false, &s) < 0)
                        goto fail;
                p->description = xstrdup(s);
        } else
                p->description = xstrdup("");
        if (parse_capabilities(&c, json_object_get(j, "capabilities"), &p->capabilities) < 0)
                goto fail;
        e = json_object_get(j, "obligations");
        if (e && parse_obligations(&c, e, &p->obligations) < 0)
                goto fail;
        if (parse_paths(&c, json_object_get(j, "paths"), &p->paths) < 0)
                goto fail;
        if (parse_commands(&c, json_object_get(j, "commands"), &p->commands) < 0)
                goto fail;
        if (parse_budget(&c, json_object_get(j, "budget"), p) < 0)
                goto fail;
        if (parse_time(&c, json_object_get(j, "time"), p) < 0)
                goto fail;
        e = json_object_get(j, "trifecta_constraint");
        if (e) {
                bool ignored;
                /* Accepted for parity, but ignored: a policy from outside always enforces the
                 * trifecta rule (spec-permissions §3.4, adversarial test 1). */
                if (get_bool(&c, "$.trifecta_constraint", e, &ignored) < 0)
                        goto fail;
        }
        p->trifecta = true;
        policy_normalize(p);
        *ret = TAKE_PTR(p);
        return 0;
fail:
        if (reterr)
                *reterr = c.err ? TAKE_PTR(c.err) : xstrdup("$: invalid policy");
        free(c.err);
        return r;
}

int policy_from_json_text(const char *text, size_t n, Policy **ret, char **reterr) {
        _cleanup_json_ json_t *j = NULL;
        int r = json_parse_strict(text, n, POLICY_JSON_MAX_TEXT, &j, reterr);
        if (r < 0)
                return r;
        return policy_from_json(j, ret, reterr);
}

static json_t *strv_to_json(char *const *l) {
        json_t *a = json_array();
        STRV_FOREACH(s, l)
                json_array_append_new(a, json_string(*s));
        return a;
}

static json_t *rules_to_json(const CommandRules *rules) {
        json_t *a = json_array();
        for (size_t i = 0; i < rules->n_rules; i++) {
                const CommandRule *r = &rules->rules[i];
                json_t *args = json_array();
                for (size_t k = 0; k < r->n_args; k++) {
                        switch (r->args[k].type) {
                        case ARG_PATTERN_ANY:
                                json_array_append_new(args, json_string("any"));
                                break;
                        case ARG_PATTERN_ANY_REMAINING:
                                json_array_append_new(args, json_string("any_remaining"));
                                break;
                        case ARG_PATTERN_EXACT:
                        default:
                                json_array_append_new(args, json_pack("{s:s}", "exact", r->args[k].exact));
                                break;
                        }
                }
                json_array_append_new(a, json_pack("{s:s,s:o}", "program", r->program, "args", args));
        }
        return a;
}

json_t *policy_to_json(const Policy *p) {
        json_t *caps = json_object(), *appr = json_array();
        for (Operation op = 0; op < _OPERATION_MAX; op++) {
                json_object_set_new(
                        caps,
                        operation_to_string(op),
                        json_string(cap_level_to_string(p->capabilities.level[op])));
                if (p->obligations & OBLIGATION(op))
                        json_array_append_new(appr, json_string(operation_to_string(op)));
        }
        json_t *time = json_object();
        json_object_set_new(
                time,
                "max_duration_seconds",
                p->max_duration_usec == USEC_INFINITY
                        ? json_null()
                        : json_integer((json_int_t) (p->max_duration_usec / USEC_PER_SEC)));
        return json_pack(
                "{s:o,s:s,s:o,s:{s:o},s:{s:b,s:o,s:o},s:{s:b,s:o,s:o,s:o,s:o},s:{s:I,s:I,s:I},s:o,s:b}",
                "name",
                p->name ? json_string(p->name) : json_null(),
                "description",
                p->description ? p->description : "",
                "capabilities",
                caps,
                "obligations",
                "approvals",
                appr,
                "paths",
                "unrestricted",
                (int) p->paths.unrestricted,
                "allowed",
                strv_to_json(p->paths.allowed),
                "blocked",
                strv_to_json(p->paths.blocked),
                "commands",
                "unrestricted",
                (int) p->commands.unrestricted,
                "allowed",
                strv_to_json(p->commands.allowed),
                "blocked",
                strv_to_json(p->commands.blocked),
                "allowed_rules",
                rules_to_json(&p->commands.allowed_rules),
                "blocked_rules",
                rules_to_json(&p->commands.blocked_rules),
                "budget",
                "max_usd_micros",
                (json_int_t) p->max_usd_micros,
                "max_input_tokens",
                (json_int_t) p->max_input_tokens,
                "max_output_tokens",
                (json_int_t) p->max_output_tokens,
                "time",
                time,
                "trifecta_constraint",
                (int) p->trifecta);
}

char *policy_canonical_json(const Policy *p) {
        _cleanup_json_ json_t *j = policy_to_json(p);
        if (!j)
                abort();
        return json_dump_canonical(j);
}

int policy_sha256(const Policy *p, char ret_hex[static 65]) {
        unsigned char h[crypto_hash_sha256_BYTES];
        _cleanup_free_ char *s = policy_canonical_json(p);
        if (!s)
                return -ENOMEM;
        if (sodium_init() < 0)
                return -EIO;
        crypto_hash_sha256(h, (const unsigned char *) s, strlen(s));
        _cleanup_free_ char *hex = hexmem(h, sizeof(h));
        memcpy(ret_hex, hex, 65);
        return 0;
}
