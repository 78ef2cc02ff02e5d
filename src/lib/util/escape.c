/* SPDX-License-Identifier: Apache-2.0 */
/* Escaping agent-controlled text for terminals, logs, JSON and pages; see escape.h. */
#include <stdio.h>
#include <string.h>
#include <unictype.h>
#include <unistr.h>

#include "alloc-util.h"
#include "escape.h"

bool escape_codepoint_is_hidden(uint32_t uc) {
        if (uc > 0x10FFFF)
                return true;
        if (uc_is_property_default_ignorable_code_point(uc))
                return true;
        uc_general_category_t hidden = uc_general_category_or(
                uc_general_category_or(UC_CATEGORY_Cc, UC_CATEGORY_Cf),
                uc_general_category_or(
                        uc_general_category_or(UC_CATEGORY_Zl, UC_CATEGORY_Zp),
                        uc_general_category_or(UC_CATEGORY_Cs, UC_CATEGORY_Cn)));
        return uc_is_general_category(uc, hidden);
}

/* Longest escapes: "\ud83f\udfff" (12 bytes, JSON) for a 4-byte sequence, "&quot;" (6) for
 * one byte, "\xNN" (4) per invalid byte: at most 6 output bytes per input byte. */
#define ESCAPE_MAX_PER_BYTE 6

static const char *escape_named(ucs4_t uc, EscapeFlags flags) {
        bool html = flags & ESCAPE_HTML;
        switch (uc) {
        case '\\':
                return flags & ESCAPE_KEEP_BACKSLASH ? NULL : "\\\\";
        case '\n':
                return flags & ESCAPE_KEEP_NEWLINE ? NULL : "\\n";
        case '\t':
                return flags & ESCAPE_KEEP_NEWLINE ? NULL : "\\t";
        case '\r':
                return "\\r";
        case '&':
                return html ? "&amp;" : NULL;
        case '<':
                return html ? "&lt;" : NULL;
        case '>':
                return html ? "&gt;" : NULL;
        case '"':
                return html ? "&quot;" : NULL;
        case '\'':
                return html ? "&#39;" : NULL;
        default:
                return NULL;
        }
}

char *escape_text(const char *s, size_t n, EscapeFlags flags) {
        char *out = xnew(char, n *ESCAPE_MAX_PER_BYTE + 1), *o = out;
        const uint8_t *p = (const uint8_t *) s, *end = p + n;

        while (p < end) {
                ucs4_t uc;
                int k = u8_mbtoucr(&uc, p, (size_t) (end - p));
                if (k < 0) { /* invalid or truncated sequence: one byte at a time */
                        if (flags & ESCAPE_JSON)
                                o = stpcpy(o, "\\ufffd");
                        else
                                o += sprintf(o, "\\x%02x", *p);
                        p++;
                        continue;
                }
                const char *named = flags & ESCAPE_JSON ? NULL : escape_named(uc, flags);
                bool raw = ((uc == '\n' || uc == '\t') && flags & ESCAPE_KEEP_NEWLINE) ||
                        (flags & ESCAPE_JSON && (uc < 0x80 || !escape_codepoint_is_hidden(uc)));
                if (named)
                        o = stpcpy(o, named);
                else if (raw || !escape_codepoint_is_hidden(uc)) {
                        memcpy(o, p, (size_t) k);
                        o += k;
                } else if (flags & ESCAPE_JSON && uc > 0xFFFF)
                        o += sprintf(
                                o,
                                "\\u%04x\\u%04x",
                                (unsigned) (0xD800 + ((uc - 0x10000) >> 10)),
                                (unsigned) (0xDC00 + ((uc - 0x10000) & 0x3FF)));
                else if (uc < 0x80)
                        o += sprintf(o, "\\x%02x", (unsigned) uc);
                else if (uc > 0xFFFF)
                        o += sprintf(o, "\\U%08x", (unsigned) uc);
                else
                        o += sprintf(o, "\\u%04x", (unsigned) uc);
                p += k;
        }
        *o = 0;
        return out;
}

char *string_make_visible(const char *s) {
        return escape_text(s, strlen(s), 0);
}

char *string_escape_html(const char *s) {
        return escape_text(s, strlen(s), ESCAPE_HTML);
}
