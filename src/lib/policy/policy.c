/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy product: sets, lattice operations (meet/join/leq) with "unrestricted" as an explicit
 * top, trifecta normalization, and the operation and path decisions. Paths handed to the
 * decision API are untrusted strings; they are normalized lexically, never resolved here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "alloc-util.h"
#include "glob.h"
#include "policy-internal.h"
#include "string-util.h"

/* ---- string sets ---- */

char **string_set_new(const char *const *items) {
        char **s = xnew0(char *, 1);
        for (const char *const *i = items; i && *i; i++)
                strv_extend(&s, *i);
        strv_sort_uniq(s);
        return s;
}

void string_set_add(char ***s, const char *item) {
        if (strv_contains(*s, item))
                return;
        strv_extend(s, item);
        strv_sort_uniq(*s);
}

char **string_set_intersect(char *const *a, char *const *b) {
        char **r = xnew0(char *, 1);
        STRV_FOREACH(i, a)
                if (strv_contains(b, *i))
                        strv_extend(&r, *i);
        strv_sort_uniq(r);
        return r;
}

char **string_set_union(char *const *a, char *const *b) {
        char **r = xnew0(char *, 1);
        STRV_FOREACH(i, a)
                strv_extend(&r, *i);
        STRV_FOREACH(i, b)
                strv_extend(&r, *i);
        strv_sort_uniq(r);
        return r;
}

bool string_set_subset(char *const *a, char *const *b) {
        STRV_FOREACH(i, a)
                if (!strv_contains(b, *i))
                        return false;
        return true;
}

bool string_set_equal(char *const *a, char *const *b) {
        return string_set_subset(a, b) && string_set_subset(b, a);
}

/* ---- command rules ---- */

void command_rule_done(CommandRule *r) {
        if (!r)
                return;
        free(r->program);
        for (size_t i = 0; i < r->n_args; i++)
                free(r->args[i].exact);
        free(r->args);
        *r = (CommandRule){};
}

void command_rule_init(CommandRule *r, const char *program, const char *const *args) {
        size_t n = 0;
        while (args && args[n])
                n++;
        *r = (CommandRule){ .program = xstrdup(program), .n_args = n };
        r->args = xnew0(ArgPattern, NUCLEUS_MAX(n, (size_t) 1));
        for (size_t i = 0; i < n; i++) {
                if (streq(args[i], "any"))
                        r->args[i].type = ARG_PATTERN_ANY;
                else if (streq(args[i], "any_remaining"))
                        r->args[i].type = ARG_PATTERN_ANY_REMAINING;
                else {
                        assert(args[i][0] == '=');
                        r->args[i].type = ARG_PATTERN_EXACT;
                        r->args[i].exact = xstrdup(args[i] + 1);
                }
        }
}

static void command_rule_copy(CommandRule *dst, const CommandRule *src) {
        *dst = (CommandRule){ .program = xstrdup(src->program), .n_args = src->n_args };
        dst->args = xnew0(ArgPattern, NUCLEUS_MAX(src->n_args, (size_t) 1));
        for (size_t i = 0; i < src->n_args; i++) {
                dst->args[i].type = src->args[i].type;
                dst->args[i].exact = src->args[i].exact ? xstrdup(src->args[i].exact) : NULL;
        }
}

int command_rule_compare(const CommandRule *a, const CommandRule *b) {
        int c = strcmp(a->program, b->program);
        if (c != 0)
                return c;
        for (size_t i = 0; i < a->n_args && i < b->n_args; i++) {
                if (a->args[i].type != b->args[i].type)
                        return a->args[i].type < b->args[i].type ? -1 : 1;
                if (a->args[i].type == ARG_PATTERN_EXACT) {
                        c = strcmp(a->args[i].exact, b->args[i].exact);
                        if (c != 0)
                                return c;
                }
        }
        return a->n_args < b->n_args ? -1 : a->n_args > b->n_args ? 1 : 0;
}

static bool command_rules_contains(const CommandRules *r, const CommandRule *rule) {
        for (size_t i = 0; i < r->n_rules; i++)
                if (command_rule_compare(&r->rules[i], rule) == 0)
                        return true;
        return false;
}

static int rule_cmp_qsort(const void *a, const void *b) {
        return command_rule_compare(a, b);
}

void command_rules_add(CommandRules *r, const CommandRule *rule) {
        if (command_rules_contains(r, rule))
                return;
        r->rules = xrealloc(r->rules, (r->n_rules + 1) * sizeof(CommandRule));
        command_rule_copy(&r->rules[r->n_rules++], rule);
        qsort(r->rules, r->n_rules, sizeof(CommandRule), rule_cmp_qsort);
}

void command_rules_done(CommandRules *r) {
        for (size_t i = 0; i < r->n_rules; i++)
                command_rule_done(&r->rules[i]);
        free(r->rules);
        *r = (CommandRules){};
}

void command_rules_copy(CommandRules *dst, const CommandRules *src) {
        *dst = (CommandRules){};
        for (size_t i = 0; i < src->n_rules; i++)
                command_rules_add(dst, &src->rules[i]);
}

CommandRules command_rules_intersect(const CommandRules *a, const CommandRules *b) {
        CommandRules r = {};
        for (size_t i = 0; i < a->n_rules; i++)
                if (command_rules_contains(b, &a->rules[i]))
                        command_rules_add(&r, &a->rules[i]);
        return r;
}

CommandRules command_rules_union(const CommandRules *a, const CommandRules *b) {
        CommandRules r = {};
        for (size_t i = 0; i < a->n_rules; i++)
                command_rules_add(&r, &a->rules[i]);
        for (size_t i = 0; i < b->n_rules; i++)
                command_rules_add(&r, &b->rules[i]);
        return r;
}

bool command_rules_subset(const CommandRules *a, const CommandRules *b) {
        for (size_t i = 0; i < a->n_rules; i++)
                if (!command_rules_contains(b, &a->rules[i]))
                        return false;
        return true;
}

bool command_rules_equal(const CommandRules *a, const CommandRules *b) {
        return command_rules_subset(a, b) && command_rules_subset(b, a);
}

bool command_rule_matches(const CommandRule *r, char *const *words) {
        if (!words || !words[0] || words[0][0] != r->program[0] || !streq(words[0], r->program))
                return false;
        size_t n = strv_length(words), idx = 1;
        for (size_t i = 0; i < r->n_args; i++) {
                switch (r->args[i].type) {
                case ARG_PATTERN_ANY_REMAINING:
                        return true;
                case ARG_PATTERN_ANY:
                        if (idx >= n)
                                return false;
                        idx++;
                        break;
                case ARG_PATTERN_EXACT:
                        if (idx >= n || !streq(words[idx], r->args[i].exact))
                                return false;
                        idx++;
                        break;
                default:
                        return false;
                }
        }
        return true;
}

/* ---- components ---- */

void path_policy_done(PathPolicy *p) {
        p->allowed = strv_free(p->allowed);
        p->blocked = strv_free(p->blocked);
}

void command_policy_done(CommandPolicy *c) {
        c->allowed = strv_free(c->allowed);
        c->blocked = strv_free(c->blocked);
        command_rules_done(&c->allowed_rules);
        command_rules_done(&c->blocked_rules);
}

void command_policy_copy(CommandPolicy *dst, const CommandPolicy *src) {
        dst->unrestricted = src->unrestricted;
        dst->allowed = string_set_new((const char *const *) src->allowed);
        dst->blocked = string_set_new((const char *const *) src->blocked);
        command_rules_copy(&dst->allowed_rules, &src->allowed_rules);
        command_rules_copy(&dst->blocked_rules, &src->blocked_rules);
}

Policy *policy_new_empty(void) {
        Policy *p = xnew0(Policy, 1);
        p->description = xstrdup("");
        p->paths.allowed = xnew0(char *, 1);
        p->paths.blocked = xnew0(char *, 1);
        p->commands.allowed = xnew0(char *, 1);
        p->commands.blocked = xnew0(char *, 1);
        p->trifecta = true;
        return p;
}

Policy *policy_free(Policy *p) {
        if (!p)
                return NULL;
        free(p->name);
        free(p->description);
        path_policy_done(&p->paths);
        command_policy_done(&p->commands);
        policy_compiled_free(p->compiled);
        free(p);
        return NULL;
}

Policy *policy_copy(const Policy *p) {
        Policy *c = xnew0(Policy, 1);
        c->name = p->name ? xstrdup(p->name) : NULL;
        c->description = xstrdup(p->description ? p->description : "");
        c->capabilities = p->capabilities;
        c->obligations = p->obligations;
        c->paths.unrestricted = p->paths.unrestricted;
        c->paths.allowed = string_set_new((const char *const *) p->paths.allowed);
        c->paths.blocked = string_set_new((const char *const *) p->paths.blocked);
        command_policy_copy(&c->commands, &p->commands);
        c->max_usd_micros = p->max_usd_micros;
        c->max_input_tokens = p->max_input_tokens;
        c->max_output_tokens = p->max_output_tokens;
        c->max_duration_usec = p->max_duration_usec;
        c->trifecta = p->trifecta;
        policy_compile(c);
        return c;
}

void policy_normalize(Policy *p) {
        if (p->trifecta)
                p->obligations |= capabilities_trifecta_obligations(&p->capabilities);
        p->obligations &= OBLIGATIONS_ALL;
        policy_compile(p);
}

/* Allowlists: unrestricted is top. meet: intersection (top is the identity); join: union
 * (top absorbs). Unlike the reference (spec-permissions §5.6 bugs 1-3), an empty
 * intersection means "nothing allowed", never "everything". */
static void allowlist_meet(bool au, char *const *a, bool bu, char *const *b, bool *ret_u, char ***ret) {
        *ret_u = au && bu;
        if (au && bu)
                *ret = xnew0(char *, 1);
        else if (au)
                *ret = string_set_new((const char *const *) b);
        else if (bu)
                *ret = string_set_new((const char *const *) a);
        else
                *ret = string_set_intersect(a, b);
}

static void allowlist_join(bool au, char *const *a, bool bu, char *const *b, bool *ret_u, char ***ret) {
        *ret_u = au || bu;
        *ret = *ret_u ? xnew0(char *, 1) : string_set_union(a, b);
}

static bool allowlist_leq(bool au, char *const *a, bool bu, char *const *b) {
        if (bu)
                return true;
        if (au)
                return false;
        return string_set_subset(a, b);
}

static char *describe2(const char *op, const Policy *a, const Policy *b) {
        char *s = NULL;
        if (asprintf(
                    &s,
                    "%s(%s, %s)",
                    op,
                    a->description ? a->description : "",
                    b->description ? b->description : "") < 0)
                abort();
        return s;
}

static Policy *policy_combine(const Policy *a, const Policy *b, bool meet) {
        Policy *r = xnew0(Policy, 1);
        r->description = describe2(meet ? "meet" : "join", a, b);
        if (meet) {
                r->capabilities = capabilities_meet(&a->capabilities, &b->capabilities);
                r->obligations = a->obligations | b->obligations;
                r->trifecta = a->trifecta || b->trifecta;
                allowlist_meet(
                        a->paths.unrestricted,
                        a->paths.allowed,
                        b->paths.unrestricted,
                        b->paths.allowed,
                        &r->paths.unrestricted,
                        &r->paths.allowed);
                r->paths.blocked = string_set_union(a->paths.blocked, b->paths.blocked);
                allowlist_meet(
                        a->commands.unrestricted,
                        a->commands.allowed,
                        b->commands.unrestricted,
                        b->commands.allowed,
                        &r->commands.unrestricted,
                        &r->commands.allowed);
                if (a->commands.unrestricted && b->commands.unrestricted)
                        r->commands.allowed_rules = (CommandRules){};
                else if (a->commands.unrestricted)
                        command_rules_copy(&r->commands.allowed_rules, &b->commands.allowed_rules);
                else if (b->commands.unrestricted)
                        command_rules_copy(&r->commands.allowed_rules, &a->commands.allowed_rules);
                else
                        r->commands.allowed_rules = command_rules_intersect(
                                &a->commands.allowed_rules, &b->commands.allowed_rules);
                r->commands.blocked = string_set_union(a->commands.blocked, b->commands.blocked);
                r->commands.blocked_rules = command_rules_union(
                        &a->commands.blocked_rules, &b->commands.blocked_rules);
                r->max_usd_micros = NUCLEUS_MIN(a->max_usd_micros, b->max_usd_micros);
                r->max_input_tokens = NUCLEUS_MIN(a->max_input_tokens, b->max_input_tokens);
                r->max_output_tokens = NUCLEUS_MIN(a->max_output_tokens, b->max_output_tokens);
                r->max_duration_usec = NUCLEUS_MIN(a->max_duration_usec, b->max_duration_usec);
        } else {
                r->capabilities = capabilities_join(&a->capabilities, &b->capabilities);
                r->obligations = a->obligations & b->obligations;
                r->trifecta = a->trifecta && b->trifecta;
                allowlist_join(
                        a->paths.unrestricted,
                        a->paths.allowed,
                        b->paths.unrestricted,
                        b->paths.allowed,
                        &r->paths.unrestricted,
                        &r->paths.allowed);
                r->paths.blocked = string_set_intersect(a->paths.blocked, b->paths.blocked);
                allowlist_join(
                        a->commands.unrestricted,
                        a->commands.allowed,
                        b->commands.unrestricted,
                        b->commands.allowed,
                        &r->commands.unrestricted,
                        &r->commands.allowed);
                if (r->commands.unrestricted)
                        r->commands.allowed_rules = (CommandRules){};
                else
                        r->commands.allowed_rules = command_rules_union(
                                &a->commands.allowed_rules, &b->commands.allowed_rules);
                r->commands.blocked = string_set_intersect(a->commands.blocked, b->commands.blocked);
                r->commands.blocked_rules = command_rules_intersect(
                        &a->commands.blocked_rules, &b->commands.blocked_rules);
                r->max_usd_micros = NUCLEUS_MAX(a->max_usd_micros, b->max_usd_micros);
                r->max_input_tokens = NUCLEUS_MAX(a->max_input_tokens, b->max_input_tokens);
                r->max_output_tokens = NUCLEUS_MAX(a->max_output_tokens, b->max_output_tokens);
                r->max_duration_usec = NUCLEUS_MAX(a->max_duration_usec, b->max_duration_usec);
        }
        policy_normalize(r);
        return r;
}

Policy *policy_meet(const Policy *a, const Policy *b) {
        return policy_combine(a, b, true);
}

Policy *policy_join(const Policy *a, const Policy *b) {
        return policy_combine(a, b, false);
}

bool policy_leq(const Policy *a, const Policy *b) {
        if (!capabilities_leq(&a->capabilities, &b->capabilities))
                return false;
        if ((a->obligations & b->obligations) != b->obligations) /* a ⊇ b */
                return false;
        if (!allowlist_leq(a->paths.unrestricted, a->paths.allowed, b->paths.unrestricted, b->paths.allowed))
                return false;
        if (!string_set_subset(b->paths.blocked, a->paths.blocked))
                return false;
        if (!allowlist_leq(
                    a->commands.unrestricted, a->commands.allowed, b->commands.unrestricted, b->commands.allowed))
                return false;
        if (!b->commands.unrestricted) {
                if (a->commands.unrestricted)
                        return false;
                if (!command_rules_subset(&a->commands.allowed_rules, &b->commands.allowed_rules))
                        return false;
        }
        if (!string_set_subset(b->commands.blocked, a->commands.blocked))
                return false;
        if (!command_rules_subset(&b->commands.blocked_rules, &a->commands.blocked_rules))
                return false;
        return a->max_usd_micros <= b->max_usd_micros && a->max_input_tokens <= b->max_input_tokens &&
                a->max_output_tokens <= b->max_output_tokens && a->max_duration_usec <= b->max_duration_usec;
}

bool policy_narrows(const Policy *current, const Policy *next, const char **ret_why) {
        const char *why = NULL;
        if (!current || !next)
                why = "no policy";
        else if (current->trifecta && !next->trifecta)
                why = "the trifecta rule would be dropped";
        else if (
                next->max_usd_micros > current->max_usd_micros ||
                next->max_input_tokens > current->max_input_tokens ||
                next->max_output_tokens > current->max_output_tokens)
                why = "the budget would grow";
        else if (next->max_duration_usec > current->max_duration_usec)
                why = "the time window would grow";
        else if (!policy_leq(next, current))
                why = "it grants a capability, path or command the current policy does not, or drops an "
                      "approval or a block";
        if (ret_why)
                *ret_why = why;
        return !why;
}

bool policy_equal(const Policy *a, const Policy *b) {
        return capabilities_equal(&a->capabilities, &b->capabilities) && a->obligations == b->obligations &&
                a->paths.unrestricted == b->paths.unrestricted &&
                string_set_equal(a->paths.allowed, b->paths.allowed) &&
                string_set_equal(a->paths.blocked, b->paths.blocked) &&
                a->commands.unrestricted == b->commands.unrestricted &&
                string_set_equal(a->commands.allowed, b->commands.allowed) &&
                string_set_equal(a->commands.blocked, b->commands.blocked) &&
                command_rules_equal(&a->commands.allowed_rules, &b->commands.allowed_rules) &&
                command_rules_equal(&a->commands.blocked_rules, &b->commands.blocked_rules) &&
                a->max_usd_micros == b->max_usd_micros && a->max_input_tokens == b->max_input_tokens &&
                a->max_output_tokens == b->max_output_tokens &&
                a->max_duration_usec == b->max_duration_usec && a->trifecta == b->trifecta;
}

/* ---- decisions ---- */

static const char *const policy_verdict_table[_POLICY_VERDICT_MAX] = {
        [POLICY_ALLOW] = "allow",
        [POLICY_DENY] = "deny",
        [POLICY_NEEDS_APPROVAL] = "needs_approval",
};
DEFINE_STRING_TABLE_LOOKUP(policy_verdict, PolicyVerdict);

void policy_decision_done(PolicyDecision *d) {
        if (!d)
                return;
        d->message = mfree(d->message);
}

char *policy_vformat(const char *fmt, va_list ap) {
        char *m = NULL, buf[512];
        va_list aq;
        /* Into a stack buffer first: most messages fit, and one exact copy is cheaper than
         * vasprintf's growing buffer. */
        va_copy(aq, ap);
        int n = vsnprintf(buf, sizeof buf, fmt, aq);
        va_end(aq);
        if (n < 0)
                abort();
        if ((size_t) n < sizeof buf)
                return xmemdup(buf, (size_t) n + 1);
        if (vasprintf(&m, fmt, ap) < 0)
                abort();
        return m;
}

char *policy_format(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char *m = policy_vformat(fmt, ap);
        va_end(ap);
        return m;
}

void policy_decision_set(
        PolicyDecision *d, PolicyVerdict v, const char *kind, Operation op, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char *m = policy_vformat(fmt, ap);
        va_end(ap);
        free(d->message);
        *d = (PolicyDecision){ .verdict = v, .kind = kind, .operation = op, .message = m };
}

char *policy_visible(const char *s) {
        const unsigned char *c = (const unsigned char *) s;
        while (*c >= 0x20 && *c < 0x7f && *c != '\\')
                c++;
        return *c ? string_make_visible(s) : xstrdup(s);
}

void policy_decision_allow(PolicyDecision *d, Operation op) {
        free(d->message);
        *d = (PolicyDecision){ .verdict = POLICY_ALLOW, .operation = op, .message = xstrdup("allowed") };
}

Operation path_access_to_operation(PathAccess a) {
        switch (a) {
        case PATH_ACCESS_READ:
                return OPERATION_READ_FILES;
        case PATH_ACCESS_WRITE:
                return OPERATION_WRITE_FILES;
        case PATH_ACCESS_EDIT:
                return OPERATION_EDIT_FILES;
        case PATH_ACCESS_GLOB:
                return OPERATION_GLOB_SEARCH;
        case PATH_ACCESS_GREP:
                return OPERATION_GREP_SEARCH;
        default:
                return _OPERATION_INVALID;
        }
}

/* Capability stage only: fills *d with a denial and returns false when op is never. */
static bool check_capability(const Policy *p, Operation op, PolicyDecision *d) {
        if (p->capabilities.level[op] == CAP_NEVER) {
                policy_decision_set(
                        d,
                        POLICY_DENY,
                        "insufficient_capability",
                        op,
                        "insufficient capability: '%s' level is Never, need at least LowRisk",
                        operation_to_string(op));
                return false;
        }
        return true;
}

/* Obligation stage (last): needs approval when op is in obligations, else allow. The
 * trifecta obligations are added on the fly too, so a caller that mutated the policy
 * after normalizing it cannot lose them. */
static void check_obligation(const Policy *p, Operation op, PolicyDecision *d, const char *what) {
        Obligations o = p->obligations;
        if (p->trifecta)
                o |= capabilities_trifecta_obligations(&p->capabilities);
        if (o & OBLIGATION(op))
                policy_decision_set(
                        d,
                        POLICY_NEEDS_APPROVAL,
                        "approval_required",
                        op,
                        "approval required: '%s' requires human approval (%s)",
                        operation_to_string(op),
                        what);
        else
                policy_decision_set(d, POLICY_ALLOW, NULL, op, "allowed: %s", what);
}

/* check_obligation for a path: the text is only formatted when a message needs it. */
static void check_obligation_path(const Policy *p, Operation op, PolicyDecision *d, const char *relpath) {
        Obligations o = p->obligations;
        if (p->trifecta)
                o |= capabilities_trifecta_obligations(&p->capabilities);
        if (o & OBLIGATION(op)) {
                _cleanup_free_ char *vis = policy_visible(relpath);
                policy_decision_set(
                        d,
                        POLICY_NEEDS_APPROVAL,
                        "approval_required",
                        op,
                        "approval required: '%s' requires human approval (%s %s)",
                        operation_to_string(op),
                        operation_to_string(op),
                        vis);
        } else
                policy_decision_allow(d, op);
}

int policy_check_operation(const Policy *p, Operation op, PolicyDecision *ret) {
        if (!p || !ret || (int) op < 0 || op >= _OPERATION_MAX)
                return -EINVAL;
        *ret = (PolicyDecision){};
        if (!check_capability(p, op, ret))
                return 0;
        check_obligation(p, op, ret, operation_to_string(op));
        return 0;
}

/* Lexically normalize a workspace-relative path into out (at least strlen(path) + 1 bytes):
 * drop "" and "." components, resolve ".." against earlier components. Returns false for
 * absolute paths or a ".." above the root. */
static bool path_normalize_into(const char *path, char *out) {
        if (!path || path[0] == '/')
                return false;
        size_t o = 0;
        for (const char *p = path; *p;) {
                const char *e = strchrnul(p, '/');
                size_t l = (size_t) (e - p);
                if (l == 0 || (l == 1 && p[0] == '.'))
                        ;
                else if (l == 2 && p[0] == '.' && p[1] == '.') {
                        if (o == 0)
                                return false;
                        while (o > 0 && out[o - 1] != '/')
                                o--;
                        if (o > 0)
                                o--; /* the separator */
                } else {
                        if (o > 0)
                                out[o++] = '/';
                        memcpy(out + o, p, l);
                        o += l;
                }
                p = *e ? e + 1 : e;
        }
        out[o] = 0;
        return true;
}

static bool glob_list_match(
        const CompiledList *cl, char *const *list, const char *norm, size_t n, const char **ret_rule) {
        if (cl) {
                /* Only the globs the text's last component and its '/' leave (policy-internal.h),
                 * in list order: the first that matches is the first of the whole list. */
                const char *slash = memrchr(norm, '/', n);
                const char *base = slash ? slash + 1 : norm;
                size_t blen = n - (size_t) (base - norm);
                unsigned f = blen ? (unsigned char) base[0] : 0, l = blen ? (unsigned char) base[blen - 1] : 0;
                const uint64_t *bf = cl->by_first + f * cl->nw, *bl = cl->by_last + l * cl->nw;
                GlobText t;
                bool t_ready = false, keys_ready = false;
                uint64_t keys = 0; /* policy_component_key() of each component but the last */
                for (size_t w = 0; w < cl->nw; w++) {
                        uint64_t cand = bf[w] & bl[w] & (slash ? ~UINT64_C(0) : ~cl->needs_slash[w]);
                        for (; cand; cand &= cand - 1) {
                                size_t i = w * 64 + (size_t) __builtin_ctzll(cand);
                                if (cl->dir_key[i] >= 0 && (cl->needs_slash[w] >> (i % 64)) & 1) {
                                        if (!keys_ready) {
                                                for (const char *c = norm; c < slash;) {
                                                        const char *e = memchr(c, '/', (size_t) (slash - c));
                                                        if (!e)
                                                                e = slash;
                                                        if (e > c)
                                                                keys |= UINT64_C(1) << policy_component_key(
                                                                                c, (size_t) (e - c));
                                                        c = e + 1;
                                                }
                                                keys_ready = true;
                                        }
                                        if (!((keys >> cl->dir_key[i]) & 1))
                                                continue;
                                }
                                if (!t_ready) {
                                        glob_text_init(&t, norm, n);
                                        t_ready = true;
                                }
                                if (glob_compiled_match_text(&cl->globs[i], &t)) {
                                        *ret_rule = list[i];
                                        return true;
                                }
                        }
                }
                return false;
        }
        STRV_FOREACH(b, list)
                if (glob_match_n(*b, strlen(*b), norm, n)) {
                        *ret_rule = *b;
                        return true;
                }
        return false;
}

/* Path rules on a normalized relative path. Returns the blocking pattern (borrowed) via
 * ret_rule, or NULL with *ret_not_allowed when no allowed pattern matches. */
static bool path_rules_allow(const Policy *p, const char *norm, const char **ret_rule) {
        const PolicyCompiled *c = policy_compiled(p);
        size_t n = strlen(norm);
        const char *a;
        if (glob_list_match(c ? &c->paths_blocked : NULL, p->paths.blocked, norm, n, ret_rule))
                return false;
        *ret_rule = NULL;
        if (p->paths.unrestricted)
                return true;
        return glob_list_match(c ? &c->paths_allowed : NULL, p->paths.allowed, norm, n, &a);
}

/* True if some component of the normalized path is ".git" (any case: case-insensitive
 * filesystems on the host treat ".GIT" as ".git" once the patch is applied). A ".git" file is a
 * gitdir pointer and a ".git" directory holds config and hooks that git runs: git itself
 * writes them through commands; the agent's file operations never may. */
bool policy_path_has_git_component(const char *norm) {
        for (const char *c = norm; c && *c;) {
                size_t l = strcspn(c, "/");
                if (l == 4 && strncasecmp(c, ".git", 4) == 0)
                        return true;
                c += l;
                if (*c == '/')
                        c++;
        }
        return false;
}

const char *policy_blocked_rule_for(const Policy *p, const char *norm) {
        return policy_blocked_rule_compiled(p, policy_compiled(p), norm);
}

const char *policy_blocked_rule_compiled(const Policy *p, const PolicyCompiled *c, const char *norm) {
        const char *rule = NULL;
        return glob_list_match(c ? &c->paths_blocked : NULL, p->paths.blocked, norm, strlen(norm), &rule)
                ? rule
                : NULL;
}

bool policy_path_allowed(const Policy *p, const char *relpath) {
        char norm[GLOB_MAX_LEN + 1];
        const char *rule;
        if (!p || !relpath || strlen(relpath) > GLOB_MAX_LEN || !path_normalize_into(relpath, norm))
                return false;
        return path_rules_allow(p, norm, &rule);
}

int policy_check_path(const Policy *p, const char *relpath, PathAccess access, PolicyDecision *ret) {
        Operation op = path_access_to_operation(access);
        const char *rule;
        char norm[GLOB_MAX_LEN + 1];
        if (!p || !relpath || !ret || op < 0)
                return -EINVAL;
        *ret = (PolicyDecision){};
        if (strlen(relpath) > GLOB_MAX_LEN) {
                /* Longer than PATH_MAX: the matcher would not judge it, so refuse it here. */
                policy_decision_set(
                        ret,
                        POLICY_DENY,
                        "path_denied",
                        op,
                        "access denied: path longer than %u bytes",
                        GLOB_MAX_LEN);
                return 0;
        }
        if (!path_normalize_into(relpath, norm)) {
                _cleanup_free_ char *vis = policy_visible(relpath);
                policy_decision_set(
                        ret,
                        POLICY_DENY,
                        "sandbox_escape",
                        op,
                        "sandbox escape: path '%s' resolves outside the workspace",
                        vis);
                return 0;
        }
        if (!check_capability(p, op, ret))
                return 0;
        if ((access == PATH_ACCESS_WRITE || access == PATH_ACCESS_EDIT) &&
            policy_path_has_git_component(norm)) {
                _cleanup_free_ char *vis = policy_visible(relpath);
                policy_decision_set(
                        ret,
                        POLICY_DENY,
                        "path_denied",
                        op,
                        "access denied: path '%s' is inside git's own data ('.git'); only git "
                        "commands may change it",
                        vis);
                return 0;
        }
        if (!path_rules_allow(p, norm, &rule)) {
                _cleanup_free_ char *vis = policy_visible(relpath);
                if (rule)
                        policy_decision_set(
                                ret,
                                POLICY_DENY,
                                "path_denied",
                                op,
                                "access denied: path '%s' blocked by policy (paths.blocked '%s')",
                                vis,
                                rule);
                else
                        policy_decision_set(
                                ret,
                                POLICY_DENY,
                                "path_denied",
                                op,
                                "access denied: path '%s' is not in paths.allowed",
                                vis);
                return 0;
        }
        check_obligation_path(p, op, ret, relpath);
        return 0;
}
