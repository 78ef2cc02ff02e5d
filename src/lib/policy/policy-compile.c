/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A policy's globs and command strings prepared once (issue 17): the decision functions match
 * compiled globs (glob.h) and pre-split command words instead of compiling and splitting on
 * every call. The compiled form remembers each list's address, length and last entry; a list
 * changed since is seen and the decisions interpret it directly instead.
 */
#include <string.h>

#include "alloc-util.h"
#include "policy-internal.h"
#include "string-util.h"
#include "words.h"

static void list_done(CompiledList *l) {
        free(l->globs);
        free(l->by_first);
        free(l->by_last);
        free(l->needs_slash);
        free(l->dir_key);
        for (size_t i = 0; l->words && i < l->n; i++)
                strv_free(l->words[i]);
        free(l->words);
        *l = (CompiledList){};
}

static void list_stamp(CompiledList *l, char **list) {
        l->ptr = list;
        l->n = strv_length(list);
        l->last = l->n > 0 ? list[l->n - 1] : NULL;
}

static bool list_fresh(const CompiledList *l, char *const *list) {
        if (list != l->ptr)
                return false;
        if (l->n == 0)
                return !list || !list[0];
        return list[l->n - 1] == l->last && list[l->n] == NULL;
}

/* What the last component of a text must look like for g to match it: its first byte (*first)
 * and last byte (*last), each -1 when any will do. Conservative: -1 is always correct. */
static void glob_last_component_bytes(const CompiledGlob *g, int *first, int *last) {
        *first = *last = -1;
        switch (g->kind) {
        case GLOB_KIND_SUFFIX: {
                /* The text is the literal or ends in "/" + literal: its last component is the
                 * literal's last component. */
                const char *lc = memrchr(g->lit, '/', g->lit_len);
                lc = lc ? lc + 1 : g->lit;
                size_t len = g->lit_len - (size_t) (lc - g->lit);
                if (len > 0) {
                        *first = (unsigned char) lc[0];
                        *last = (unsigned char) lc[len - 1];
                }
                break;
        }
        case GLOB_KIND_BASENAME:
                /* The last component matches the literal, whose only wildcard is '*'. */
                if (g->lit_len > 0 && g->lit[0] != '*')
                        *first = (unsigned char) g->lit[0];
                if (g->lit_len > 0 && g->lit[g->lit_len - 1] != '*')
                        *last = (unsigned char) g->lit[g->lit_len - 1];
                break;
        default:
                break;
        }
}

static void compile_globs(CompiledList *l, char **list) {
        list_stamp(l, list);
        l->globs = xnew0(CompiledGlob, l->n + 1);
        l->nw = (l->n + 63) / 64;
        l->by_first = xnew0(uint64_t, 256 * l->nw + 1);
        l->by_last = xnew0(uint64_t, 256 * l->nw + 1);
        l->needs_slash = xnew0(uint64_t, l->nw + 1);
        l->dir_key = xnew0(int8_t, l->n + 1);
        for (size_t i = 0; i < l->n; i++) {
                CompiledGlob *g = &l->globs[i];
                uint64_t bit = UINT64_C(1) << (i % 64);
                size_t w = i / 64;
                int first, last;
                glob_compile(list[i], g);
                glob_last_component_bytes(g, &first, &last);
                for (unsigned c = 0; c < 256; c++) {
                        if (first < 0 || (unsigned) first == c)
                                l->by_first[c * l->nw + w] |= bit;
                        if (last < 0 || (unsigned) last == c)
                                l->by_last[c * l->nw + w] |= bit;
                }
                /* "lit/" must occur in the text at a component boundary (glob.h): the literal's
                 * first component is then a component of the text other than its last. */
                if (g->kind == GLOB_KIND_DIR) {
                        size_t fl = strcspn(g->lit, "/");
                        if (fl > g->lit_len)
                                fl = g->lit_len;
                        l->needs_slash[w] |= bit;
                        l->dir_key[i] = fl > 0 ? (int8_t) policy_component_key(g->lit, fl) : -1;
                }
        }
}

/* Set entry i in a 256 * nw bitset table for first byte c, or for every byte when c < 0. */
static void by_first_add(uint64_t *by_first, size_t nw, size_t i, int c) {
        for (unsigned b = 0; b < 256; b++)
                if (c < 0 || (unsigned) c == b)
                        by_first[b * nw + i / 64] |= UINT64_C(1) << (i % 64);
}

static void compile_words(CompiledList *l, char **list) {
        list_stamp(l, list);
        l->words = xnew0(char **, l->n + 1);
        l->nw = (l->n + 63) / 64;
        l->by_first = xnew0(uint64_t, 256 * l->nw + 1);
        for (size_t i = 0; i < l->n; i++) {
                if (words_split(list[i], &l->words[i], NULL) < 0)
                        l->words[i] = NULL;
                const char *w0 = l->words[i] ? l->words[i][0] : NULL;
                bool cluster = w0 && w0[0] == '-' && w0[1] != 0 && w0[1] != '-';
                by_first_add(l->by_first, l->nw, i, w0 && !cluster ? (unsigned char) w0[0] : -1);
        }
}

static void compile_rules(CompiledRules *r, const CommandRules *rules) {
        r->ptr = rules->rules;
        r->n = rules->n_rules;
        r->nw = (r->n + 63) / 64;
        r->by_first = xnew0(uint64_t, 256 * r->nw + 1);
        for (size_t i = 0; i < r->n; i++)
                by_first_add(r->by_first, r->nw, i, (unsigned char) rules->rules[i].program[0]);
}

void policy_compiled_free(PolicyCompiled *c) {
        if (!c)
                return;
        list_done(&c->paths_blocked);
        list_done(&c->paths_allowed);
        list_done(&c->commands_allowed);
        list_done(&c->commands_blocked);
        free(c->rules_allowed.by_first);
        free(c->rules_blocked.by_first);
        free(c);
}

void policy_compile(Policy *p) {
        if (!p)
                return;
        policy_compiled_free(p->compiled);
        PolicyCompiled *c = xnew0(PolicyCompiled, 1);
        compile_globs(&c->paths_blocked, p->paths.blocked);
        compile_globs(&c->paths_allowed, p->paths.allowed);
        compile_words(&c->commands_allowed, p->commands.allowed);
        compile_words(&c->commands_blocked, p->commands.blocked);
        compile_rules(&c->rules_allowed, &p->commands.allowed_rules);
        compile_rules(&c->rules_blocked, &p->commands.blocked_rules);
        c->blocked_all_any_depth = true;
        for (size_t i = 0; i < c->paths_blocked.n; i++)
                c->blocked_all_any_depth = c->blocked_all_any_depth && c->paths_blocked.globs[i].any_depth;
        p->compiled = c;
        policy_compiled_cache_shell(p, c);
}

const PolicyCompiled *policy_compiled(const Policy *p) {
        const PolicyCompiled *c = p ? p->compiled : NULL;
        if (!c || !list_fresh(&c->paths_blocked, p->paths.blocked) ||
            !list_fresh(&c->paths_allowed, p->paths.allowed) ||
            !list_fresh(&c->commands_allowed, p->commands.allowed) ||
            !list_fresh(&c->commands_blocked, p->commands.blocked))
                return NULL;
        return c;
}
