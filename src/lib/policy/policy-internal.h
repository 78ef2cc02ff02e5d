/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the policy implementation files. Not a public API. */
#pragma once

#include <stdarg.h>

#include "glob.h"
#include "policy.h"

/* Sorted-set helpers on strv (NULL = empty). All return new vectors. */
char **string_set_new(const char *const *items); /* copies, sorts, dedups */
char **string_set_intersect(char *const *a, char *const *b);
char **string_set_union(char *const *a, char *const *b);
bool string_set_subset(char *const *a, char *const *b); /* a ⊆ b */
bool string_set_equal(char *const *a, char *const *b);
void string_set_add(char ***s, const char *item);

/* Command rules. */
void command_rules_done(CommandRules *r);
void command_rules_copy(CommandRules *dst, const CommandRules *src);
void command_rules_add(CommandRules *r, const CommandRule *rule); /* deep copies, keeps sorted set */
CommandRules command_rules_intersect(const CommandRules *a, const CommandRules *b);
CommandRules command_rules_union(const CommandRules *a, const CommandRules *b);
bool command_rules_subset(const CommandRules *a, const CommandRules *b);
bool command_rules_equal(const CommandRules *a, const CommandRules *b);
int command_rule_compare(const CommandRule *a, const CommandRule *b);
/* Build a rule: program + args, args as "any", "any_remaining" or "=value" for exact. */
void command_rule_init(CommandRule *r, const char *program, const char *const *args);
void command_rule_done(CommandRule *r);
bool command_rule_matches(const CommandRule *r, char *const *words);

void path_policy_done(PathPolicy *p);
void command_policy_done(CommandPolicy *c);
void command_policy_copy(CommandPolicy *dst, const CommandPolicy *src);

/* An empty Policy (all never, nothing allowed, zero budget, trifecta on), for builders. */
Policy *policy_new_empty(void);

/* The block_sensitive path list and the default command presets (policy-profile.c). */
extern const char *const policy_block_sensitive[];
void command_policy_default_blocks(CommandPolicy *c);

/* string_make_visible() with a fast path: printable ASCII without '\\' is copied as is (the
 * escaping would not change it). Caller frees. */
char *policy_visible(const char *s);

/* An allow decision with the short message "allowed" (no formatting on the hot path). */
void policy_decision_allow(PolicyDecision *d, Operation op);
/* vasprintf()/asprintf() that abort on failure (messages, on the decision paths). */
char *policy_vformat(const char *fmt, va_list ap) _printf_(1, 0);
char *policy_format(const char *fmt, ...) _printf_(1, 2);
/* Allocate a decision. */
void policy_decision_set(PolicyDecision *d, PolicyVerdict v, const char *kind, Operation op, const char *fmt, ...)
        _printf_(5, 6);

/* Path helpers (policy.c). norm is a path from path_normalize_relative(). */
bool policy_path_has_git_component(const char *norm);
const char *policy_blocked_rule_for(const Policy *p, const char *norm); /* borrowed, or NULL */

/* A 6-bit key of one path component (bytes c[0..len), len > 0) for the DIR candidate sets. */
static inline unsigned policy_component_key(const char *c, size_t len) {
        return ((unsigned char) c[0] * 31U + (unsigned char) c[len - 1] * 7U + (unsigned) len) & 63U;
}

/* The compiled form of one list (policy-compile.c). */
typedef struct CompiledList {
        char **ptr;          /* the list compiled (stamp) */
        size_t n;            /* its length then */
        char *last;          /* ptr[n-1] then */
        CompiledGlob *globs; /* path lists */
        /* Candidate sets for path lists, bitsets of nw 64-bit words over the globs (bit i =
         * globs[i]): a glob can match a text only if its bit is set in by_first[f] and in
         * by_last[l], where f and l are the first and last byte of the text's last component
         * (0 when that is empty), and, for globs in needs_slash (DIR), only if some component
         * of the text other than its last has the key dir_key[i] (policy_component_key() of
         * the literal's first component; -1: any text with a '/'). A decision then tries only
         * the few globs left, in list order. */
        size_t nw;
        uint64_t *by_first, *by_last, *needs_slash; /* 256 * nw, 256 * nw, nw words */
        int8_t *dir_key;                            /* n */
        /* Command lists: each entry split (NULL when it does not split), and by_first set
         * by the first byte of its first word (every byte for an entry that does not split,
         * is empty, or starts with a short-option cluster, which blocks other spellings). */
        char ***words;
} CompiledList;

/* Command rules by the first byte of their program (by_first as in CompiledList), for the rule
 * array they were made from (ptr, n: stale when the array changed). */
typedef struct CompiledRules {
        const CommandRule *ptr;
        size_t n, nw;
        uint64_t *by_first;
} CompiledRules;

typedef struct PolicyCompiled {
        CompiledList paths_blocked, paths_allowed, commands_allowed, commands_blocked;
        CompiledRules rules_allowed, rules_blocked;
        bool blocked_all_any_depth; /* every paths.blocked glob starts with "**" "/" */
        /* policy_grants_shell() at compile time, with what it depended on (beyond the lists). */
        bool grants_shell;
        CapLevel shell_level;
        bool shell_unrestricted;
        const CommandRule *shell_rules_allowed, *shell_rules_blocked;
        size_t shell_n_allowed, shell_n_blocked;
} PolicyCompiled;

/* Fill the policy_grants_shell() cache of a fresh compilation (policy-command.c). */
void policy_compiled_cache_shell(const Policy *p, PolicyCompiled *c);

/* The compiled form when present and still matching the lists, else NULL (interpret). */
const PolicyCompiled *policy_compiled(const Policy *p);
/* policy_blocked_rule_for() with the compiled form already looked up (c may be NULL). */
const char *policy_blocked_rule_compiled(const Policy *p, const PolicyCompiled *c, const char *norm);
void policy_compiled_free(PolicyCompiled *c);
