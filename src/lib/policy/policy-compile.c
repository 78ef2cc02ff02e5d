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

static void set_bit(uint8_t *set, unsigned char c) {
        set[c / 8] |= (uint8_t) (1U << (c % 8));
}

static void list_done(CompiledList *l) {
        free(l->globs);
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

static void compile_globs(CompiledList *l, char **list) {
        list_stamp(l, list);
        l->globs = xnew0(CompiledGlob, l->n + 1);
        for (size_t i = 0; i < l->n; i++) {
                CompiledGlob *g = &l->globs[i];
                glob_compile(list[i], g);
                switch (g->kind) {
                case GLOB_KIND_SUFFIX: {
                        /* The first byte of the literal's last component. */
                        const char *lc = memrchr(g->lit, '/', g->lit_len);
                        lc = lc ? lc + 1 : g->lit;
                        if (lc < g->lit + g->lit_len)
                                set_bit(l->first_bytes, (unsigned char) *lc);
                        else
                                l->any_text = true;
                        break;
                }
                case GLOB_KIND_BASENAME: {
                        const char *star = memchr(g->lit, '*', g->lit_len);
                        if (star != g->lit)
                                set_bit(l->first_bytes, (unsigned char) g->lit[0]);
                        else if (g->lit[g->lit_len - 1] != '*')
                                set_bit(l->last_bytes, (unsigned char) g->lit[g->lit_len - 1]);
                        else
                                l->any_text = true;
                        break;
                }
                case GLOB_KIND_DIR: {
                        size_t fl = strcspn(g->lit, "/");
                        if (fl > g->lit_len)
                                fl = g->lit_len;
                        l->has_dir = true;
                        if (fl == 0 || l->n_dir_keys >= ELEMENTSOF(l->dir_keys))
                                l->dir_any = true;
                        else
                                l->dir_keys[l->n_dir_keys++] =
                                        (uint16_t) (((unsigned char) g->lit[0] << 8) | (unsigned char) g->lit[fl - 1]);
                        break;
                }
                default:
                        l->any_text = true;
                }
        }
}

static void compile_words(CompiledList *l, char **list) {
        list_stamp(l, list);
        l->words = xnew0(char **, l->n + 1);
        for (size_t i = 0; i < l->n; i++)
                if (words_split(list[i], &l->words[i], NULL) < 0)
                        l->words[i] = NULL;
}

void policy_compiled_free(PolicyCompiled *c) {
        if (!c)
                return;
        list_done(&c->paths_blocked);
        list_done(&c->paths_allowed);
        list_done(&c->commands_allowed);
        list_done(&c->commands_blocked);
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
