/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Path glob matching with the reference semantics (spec-permissions §5.2): whole-string match,
 * "**" / "**" "/" / "*" / "?" and everything else literal (no classes, braces or escapes).
 * Input is untrusted: linear-time DP, no recursion, no allocation (the DP lives on the stack).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest pattern / text accepted; longer input never matches (glob_match returns false). */
#define GLOB_MAX_LEN 4096U

/* True iff pattern matches the whole text.
 *   "**" + "/"  either nothing, or any characters ending in '/'
 *   "**"        any run of characters, '/' and '\n' included
 *   "*"         any run of characters except '/'
 *   "?"         exactly one UTF-8 code point that is not '/'
 * The patterns "**" and "**" "/" "*" alone match everything. */
bool glob_match(const char *pattern, const char *text);

/* Same with explicit lengths (bytes; embedded NULs are ordinary bytes). */
bool glob_match_n(const char *pattern, size_t plen, const char *text, size_t tlen);

/* A pattern compiled once (policy_compile): the shapes policies use are matched without the DP.
 *   GLOB_KIND_ALL       "**", "**" "/" "*"
 *   GLOB_KIND_LITERAL   no wildcard: the text equals it
 *   GLOB_KIND_SUFFIX    "**" "/" + literal: the text is it or ends in "/" + it
 *   GLOB_KIND_DIR       "**" "/" + literal + "/" "**": a component run "literal/" in the text
 *   GLOB_KIND_BASENAME  "**" "/" + one component with '*' only: the last component matches it
 *   GLOB_KIND_GENERAL   anything else: glob_match_n()
 * Every "**" "/"-anchored kind matches a text iff it matches some suffix of it starting at a
 * component boundary (any_depth). */
typedef enum GlobKind {
        GLOB_KIND_GENERAL,
        GLOB_KIND_ALL,
        GLOB_KIND_LITERAL,
        GLOB_KIND_SUFFIX,
        GLOB_KIND_DIR,
        GLOB_KIND_BASENAME,
} GlobKind;

typedef struct CompiledGlob {
        GlobKind kind;
        bool any_depth;      /* starts with "**" "/" (or is ALL) */
        const char *pattern; /* borrowed */
        size_t plen;
        const char *lit; /* the literal or component part, borrowed from pattern */
        size_t lit_len;
        bool lit_has_slash; /* SUFFIX/DIR: the literal spans components */
        bool one_star;      /* BASENAME: exactly one '*', split into prefix and suffix */
        size_t pre_len;     /* BASENAME with one star: bytes before it */
} CompiledGlob;

void glob_compile(const char *pattern, CompiledGlob *ret);

/* A text split once for matching many compiled globs: its components (at most
 * GLOB_TEXT_MAX_COMPONENTS are indexed; longer texts fall back to scanning). */
#define GLOB_TEXT_MAX_COMPONENTS 64U
typedef struct GlobText {
        const char *text;
        size_t len;
        unsigned n; /* components indexed, or 0 when there are too many */
        uint16_t start[GLOB_TEXT_MAX_COMPONENTS], clen[GLOB_TEXT_MAX_COMPONENTS];
} GlobText;

void glob_text_init(GlobText *t, const char *text, size_t len);
/* Same result as glob_compiled_match(g, t->text, t->len). */
bool glob_compiled_match_text(const CompiledGlob *g, const GlobText *t);
/* The index of the first of gs[0..n) that matches, or SIZE_MAX. */
size_t glob_compiled_first_match(const CompiledGlob *gs, size_t n, const GlobText *t);
/* Same result as glob_match_n(g->pattern, g->plen, text, tlen). */
bool glob_compiled_match(const CompiledGlob *g, const char *text, size_t tlen);
