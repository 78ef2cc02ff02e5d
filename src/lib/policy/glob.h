/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Path glob matching with the reference semantics (spec-permissions §5.2): whole-string match,
 * "**" / "**" "/" / "*" / "?" and everything else literal (no classes, braces or escapes).
 * Input is untrusted: linear-time DP, no recursion, no allocation beyond O(len(text)).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

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
