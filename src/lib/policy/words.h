/* SPDX-License-Identifier: Apache-2.0 */
/*
 * POSIX-like word splitting without expansion (shell-words semantics, spec-permissions §6.3)
 * and its inverse quoting. Input is an untrusted command string; length is capped.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define WORDS_MAX_INPUT (64U * 1024U) /* bytes; longer strings give -E2BIG */
#define WORDS_MAX_WORDS 4096U         /* more words give -E2BIG */

/* Shell syntax seen OUTSIDE quotes while splitting. Inside single quotes nothing is special;
 * inside double quotes only '`' and "$(" count (a shell would expand them). */
typedef enum WordsMeta {
        WORDS_META_SEPARATOR = 1 << 0, /* ';' '&' '|' (so also "&&" "||") */
        WORDS_META_REDIRECT = 1 << 1,  /* '<' '>' */
        WORDS_META_SUBST = 1 << 2,     /* '`' or "$(" */
        WORDS_META_NEWLINE = 1 << 3,   /* an unquoted, unescaped LF between words */
        WORDS_META_SUBSHELL = 1 << 4,  /* '(' ')' */
        WORDS_META_EXPANSION = 1 << 5, /* '$' (other than "$("), '*', '?', '[', '~' at word start */
} WordsMeta;

/* Split s into words. Delimiters are space, TAB and LF; quotes and backslashes as in §6.3;
 * '#' at the start of a word starts a comment; NUL cannot occur (C string).
 * Returns 0 and a NULL-terminated strv in *ret (possibly empty), and if ret_meta is non-NULL
 * the WordsMeta flags seen; -EINVAL on unterminated quotes (or a trailing backslash inside
 * double quotes); -E2BIG when over the caps. Never writes *ret on failure. */
int words_split(const char *s, char ***ret, unsigned *ret_meta);

/* Quote one word so that words_split() gives it back ('' for the empty word). Caller frees. */
char *words_quote(const char *w);
/* Quote each word and join with single spaces. Caller frees. */
char *words_join(char *const *words);
