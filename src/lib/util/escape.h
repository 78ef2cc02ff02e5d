/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one place that makes agent-controlled text safe to show: on a terminal, in a log line,
 * in JSON printed for a human, or inside an HTML page. Every character a terminal or browser
 * would not draw as itself (docs/policy.md "Showing agent text") is written as a visible
 * escape. The character classes come from libunistring, never a hand list.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True for a code point that must never reach a screen raw: general categories Cc, Cf, Zl,
 * Zp, Cs and Cn (unassigned in the library's Unicode version: a newer terminal may give it a
 * meaning we cannot judge), and every Default_Ignorable_Code_Point (soft hyphen, Hangul
 * fillers, variation selectors, tag characters, ...). */
bool escape_codepoint_is_hidden(uint32_t uc);

typedef enum EscapeFlags {
        ESCAPE_KEEP_NEWLINE = 1 << 0,   /* LF and TAB stay themselves (multi-line text: patches,
                                         * diffstats, an agent's output) */
        ESCAPE_HTML = 1 << 1,           /* also & < > " ' as character references */
        ESCAPE_KEEP_BACKSLASH = 1 << 2, /* '\\' stays itself (log lines: callers escaped already) */
        ESCAPE_JSON = 1 << 3,           /* input is JSON text: hidden code points become JSON
                                         * \\uXXXX escapes (pairs above U+FFFF); nothing else
                                         * changes, so the JSON means the same */
} EscapeFlags;

/* The escaping function. Without flags: '\\' becomes "\\\\", LF/TAB/CR "\\n" "\\t" "\\r", other
 * C0 and DEL "\\xNN", other hidden code points "\\u202e" (4 hex digits) or "\\U000e0041"
 * (above U+FFFF), and each byte that is not part of valid UTF-8 "\\xNN". Everything else is
 * copied. Reads n bytes (NULs are escaped too). Caller frees. */
char *escape_text(const char *s, size_t n, EscapeFlags flags);

/* escape_text(s, strlen(s), 0): one line for a terminal or log. Caller frees. */
char *string_make_visible(const char *s);

/* escape_text(s, strlen(s), ESCAPE_HTML): HTML text or a quoted attribute. Caller frees. */
char *string_escape_html(const char *s);
