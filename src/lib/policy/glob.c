/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Glob matcher (spec-permissions §5.2) as a linear DP over the text: the pattern is compiled
 * into tokens and each token maps the set of reachable text offsets to the next set, so any
 * pattern runs in O(len(pattern) * len(text)) with no backtracking blow-up. Untrusted input.
 */
#include <stdint.h>
#include <string.h>

#include "alloc-util.h"
#include "glob.h"

static size_t utf8_len(unsigned char c) {
        if (c < 0x80)
                return 1;
        if ((c & 0xE0) == 0xC0)
                return 2;
        if ((c & 0xF0) == 0xE0)
                return 3;
        if ((c & 0xF8) == 0xF0)
                return 4;
        return 1; /* stray continuation / invalid byte: one byte is one "character" */
}

bool glob_match_n(const char *pattern, size_t plen, const char *text, size_t tlen) {
        if (!pattern || !text || plen > GLOB_MAX_LEN || tlen > GLOB_MAX_LEN)
                return false;
        if ((plen == 2 && memcmp(pattern, "**", 2) == 0) || (plen == 4 && memcmp(pattern, "**/*", 4) == 0))
                return true;

        _cleanup_free_ bool *cur = xnew0(bool, tlen + 1);
        _cleanup_free_ bool *nxt = xnew0(bool, tlen + 1);
        cur[0] = true;

        for (size_t p = 0; p < plen;) {
                memset(nxt, 0, (tlen + 1) * sizeof(bool));
                bool any = false;
                if (pattern[p] == '*' && p + 1 < plen && pattern[p + 1] == '*') {
                        if (p + 2 < plen && pattern[p + 2] == '/') {
                                /* "**" "/": nothing, or anything ending in '/' */
                                bool seen = false;
                                for (size_t i = 0; i <= tlen; i++) {
                                        if (i > 0 && text[i - 1] == '/' && seen)
                                                nxt[i] = true;
                                        if (cur[i]) {
                                                nxt[i] = true;
                                                seen = true;
                                        }
                                }
                                p += 3;
                        } else {
                                bool seen = false;
                                for (size_t i = 0; i <= tlen; i++) {
                                        seen = seen || cur[i];
                                        nxt[i] = seen;
                                }
                                p += 2;
                        }
                } else if (pattern[p] == '*') {
                        for (size_t i = 0; i <= tlen; i++)
                                nxt[i] = cur[i] || (i > 0 && nxt[i - 1] && text[i - 1] != '/');
                        p += 1;
                } else if (pattern[p] == '?') {
                        for (size_t i = 0; i < tlen; i++) {
                                if (!cur[i] || text[i] == '/')
                                        continue;
                                size_t l = utf8_len((unsigned char) text[i]);
                                if (i + l <= tlen)
                                        nxt[i + l] = true;
                        }
                        p += 1;
                } else {
                        char c = pattern[p];
                        for (size_t i = 0; i < tlen; i++)
                                if (cur[i] && text[i] == c)
                                        nxt[i + 1] = true;
                        p += 1;
                }
                for (size_t i = 0; i <= tlen && !any; i++)
                        any = nxt[i];
                if (!any)
                        return false;
                bool *t = cur;
                cur = nxt;
                nxt = t;
        }
        return cur[tlen];
}

bool glob_match(const char *pattern, const char *text) {
        if (!pattern || !text)
                return false;
        return glob_match_n(pattern, strlen(pattern), text, strlen(text));
}
