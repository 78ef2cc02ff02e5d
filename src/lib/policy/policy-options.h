/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Option grammars of the programs the command analysis knows, and one generic getopt-style
 * scanner driven by them. A program's short options are parsed with its real grammar (which
 * letters take a value, attached or as the next word), so an option hidden inside a cluster
 * (`-vo ProxyCommand=...`, `-Im code`) is found and a value that happens to contain a letter
 * (`-i key_o`) is not mistaken for one. Not a public API (policy-command.c and the tests).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "policy.h"

typedef enum OptGrammarFlags {
        OPT_GRAMMAR_POSIX = 1 << 0,   /* options end at the first operand (script, command) */
        OPT_GRAMMAR_PLUS = 1 << 1,    /* "+x" words are option clusters too (shells) */
        OPT_GRAMMAR_OLD_TAR = 1 << 2, /* a first word without '-' is a cluster ("tar xIf P A") */
} OptGrammarFlags;

/*
 * optstring, getopt style:
 *   "x"    flag
 *   "x:"   required value: the rest of the word, else the next word
 *   "x::"  optional value: the rest of the word only (possibly empty)
 *   "x#"   optional attached number (digits), after which the cluster goes on
 *   "x;"   value from the next word, and the cluster goes on (`bash -oc xtrace` is -o xtrace
 *          and -c; old-style tar letters behave the same way)
 */
typedef struct OptGrammar {
        const char *program;            /* basename; a trailing '*' matches any suffix */
        const char *subcommand;         /* git subcommand, or NULL */
        const char *optstring;          /* see above */
        const char *danger;             /* letters that run a program, code or write files */
        const char *const *long_danger; /* long names (getopt abbreviations match) doing the same */
        const char *const *long_values; /* long names that take the next word without "=" */
        unsigned flags;                 /* OptGrammarFlags */
        const char *why;                /* what the dangerous options do (messages) */
} OptGrammar;

/* The table (static), and its size. */
const OptGrammar *opt_grammars(size_t *ret_n);
/* The grammar for program (a basename) and git subcommand sub (NULL for none), or NULL. */
const OptGrammar *opt_grammar_find(const char *program, const char *sub);

typedef enum OptLetterKind {
        OPT_LETTER_UNKNOWN,
        OPT_LETTER_FLAG,
        OPT_LETTER_VALUE,    /* ':' */
        OPT_LETTER_OPTIONAL, /* '::' */
        OPT_LETTER_NUMBER,   /* '#' */
        OPT_LETTER_NEXT,     /* ';' */
} OptLetterKind;

OptLetterKind opt_letter_kind(const char *optstring, char c);

typedef enum OptItemKind {
        OPT_ITEM_SHORT,   /* letter (+ value) */
        OPT_ITEM_LONG,    /* name/name_len (+ value) */
        OPT_ITEM_OPERAND, /* word */
        OPT_ITEM_UNKNOWN, /* letter not in the grammar */
} OptItemKind;

typedef struct OptItem {
        OptItemKind kind;
        char letter;
        const char *name; /* long name without "--" (not NUL-terminated at name_len) */
        size_t name_len;
        const char *value; /* option value, or NULL */
        const char *word;  /* the word the item came from */
        size_t index;      /* its index in argv */
} OptItem;

/* Called per item: < 0 stops (failure), > 0 stops after this item, 0 goes on. */
typedef int (*OptVisitFn)(const OptItem *it, void *userdata);

/* Scan argv[start..] with grammar g. Long options never take the next word unless listed in
 * g->long_values, so an unknown long option cannot hide the word after it. With
 * OPT_GRAMMAR_POSIX the first operand is reported and ends the scan; otherwise operands are
 * reported and scanning goes on ("--" makes the rest operands). Returns the index of the
 * first word not consumed: the first operand (POSIX), the word after "--" (POSIX), the word
 * after the item a callback stopped at, or strv_length(argv). A negative callback return is
 * passed back as SIZE_MAX. */
size_t opt_scan(const OptGrammar *g, char *const *argv, size_t start, OptVisitFn fn, void *userdata);

/* Long option word "--name[=v]" matching one of names exactly or as a getopt abbreviation
 * (>= 2 characters). */
bool opt_long_matches(const char *name, size_t len, const char *const *names);
