/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Glob matcher (spec-permissions §5.2) as a linear DP over the text: the pattern is compiled
 * into tokens and each token maps the set of reachable text offsets to the next set, so any
 * pattern runs in O(len(pattern) * len(text)) with no backtracking blow-up. Untrusted input.
 */
#include <stdint.h>
#include <string.h>

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

        bool buf_a[GLOB_MAX_LEN + 1], buf_b[GLOB_MAX_LEN + 1];
        bool *cur = buf_a, *nxt = buf_b;
        memset(cur, 0, (tlen + 1) * sizeof(bool));
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

static bool has_wildcard(const char *s, size_t n) {
        return memchr(s, '*', n) || memchr(s, '?', n);
}

void glob_compile(const char *pattern, CompiledGlob *ret) {
        size_t plen = strlen(pattern);
        *ret = (CompiledGlob){ .kind = GLOB_KIND_GENERAL, .pattern = pattern, .plen = plen };
        if (plen > GLOB_MAX_LEN)
                return;
        if (strcmp(pattern, "**") == 0 || strcmp(pattern, "**/*") == 0) {
                ret->kind = GLOB_KIND_ALL;
                ret->any_depth = true;
                return;
        }
        if (!has_wildcard(pattern, plen)) {
                ret->kind = GLOB_KIND_LITERAL;
                ret->lit = pattern;
                ret->lit_len = plen;
                return;
        }
        if (plen < 4 || strncmp(pattern, "**/", 3) != 0)
                return;
        const char *rest = pattern + 3;
        size_t rlen = plen - 3;
        ret->lit = rest;
        if (rlen > 0 && !has_wildcard(rest, rlen)) {
                ret->kind = GLOB_KIND_SUFFIX;
                ret->lit_len = rlen;
                ret->any_depth = true;
                ret->lit_has_slash = memchr(rest, '/', rlen) != NULL;
                return;
        }
        if (rlen > 3 && strcmp(rest + rlen - 3, "/**") == 0 && !has_wildcard(rest, rlen - 3)) {
                ret->kind = GLOB_KIND_DIR;
                ret->lit_len = rlen - 3;
                ret->any_depth = true;
                ret->lit_has_slash = memchr(rest, '/', rlen - 3) != NULL;
                return;
        }
        /* One component, '*' as the only wildcard, never two in a row ("**" crosses '/'). */
        if (rlen > 0 && !memchr(rest, '/', rlen) && !memchr(rest, '?', rlen) && !strstr(rest, "**")) {
                const char *star = memchr(rest, '*', rlen);
                ret->kind = GLOB_KIND_BASENAME;
                ret->lit_len = rlen;
                ret->any_depth = true;
                ret->one_star = star && !memchr(star + 1, '*', rlen - (size_t) (star - rest) - 1);
                ret->pre_len = star ? (size_t) (star - rest) : 0;
        }
}

/* One component against a pattern whose only wildcard is '*' (which cannot meet '/', and the
 * component holds none): the classic two-pointer match with one backtrack point. */
static bool star_match(const char *p, size_t pn, const char *t, size_t tn) {
        size_t pi = 0, ti = 0, star = SIZE_MAX, mark = 0;
        while (ti < tn) {
                if (pi < pn && p[pi] == '*') {
                        star = pi++;
                        mark = ti;
                } else if (pi < pn && p[pi] == t[ti]) {
                        pi++;
                        ti++;
                } else if (star != SIZE_MAX) {
                        pi = star + 1;
                        ti = ++mark;
                } else
                        return false;
        }
        while (pi < pn && p[pi] == '*')
                pi++;
        return pi == pn;
}

bool glob_compiled_match(const CompiledGlob *g, const char *text, size_t tlen) {
        if (!text || tlen > GLOB_MAX_LEN)
                return false;
        switch (g->kind) {
        case GLOB_KIND_ALL:
                return true;
        case GLOB_KIND_LITERAL:
                return tlen == g->lit_len && memcmp(text, g->lit, tlen) == 0;
        case GLOB_KIND_SUFFIX:
                if (tlen == g->lit_len)
                        return memcmp(text, g->lit, tlen) == 0;
                return tlen > g->lit_len && text[tlen - g->lit_len - 1] == '/' &&
                        memcmp(text + tlen - g->lit_len, g->lit, g->lit_len) == 0;
        case GLOB_KIND_DIR:
                /* "lit/" at the start or after a '/'. */
                for (size_t i = 0; i + g->lit_len < tlen; i++) {
                        if (i > 0 && text[i - 1] != '/')
                                continue;
                        if (text[i + g->lit_len] == '/' && memcmp(text + i, g->lit, g->lit_len) == 0)
                                return true;
                }
                return false;
        case GLOB_KIND_BASENAME: {
                const char *slash = memrchr(text, '/', tlen);
                const char *base = slash ? slash + 1 : text;
                return star_match(g->lit, g->lit_len, base, tlen - (size_t) (base - text));
        }
        default:
                return glob_match_n(g->pattern, g->plen, text, tlen);
        }
}

void glob_text_init(GlobText *t, const char *text, size_t len) {
        t->text = text;
        t->len = len;
        t->n = 0;
        if (len > GLOB_MAX_LEN)
                return;
        for (size_t i = 0;;) {
                const char *e = memchr(text + i, '/', len - i);
                size_t end = e ? (size_t) (e - text) : len;
                if (t->n >= GLOB_TEXT_MAX_COMPONENTS) {
                        t->n = 0;
                        return;
                }
                t->start[t->n] = (uint16_t) i;
                t->clen[t->n] = (uint16_t) (end - i);
                t->n++;
                if (!e)
                        return;
                i = end + 1;
        }
}

static inline bool match_text(const CompiledGlob *g, const GlobText *t) {
        if (t->n == 0)
                return glob_compiled_match(g, t->text, t->len);
        unsigned last = t->n - 1;
        const char *base = t->text + t->start[last];
        size_t blen = t->clen[last];
        switch (g->kind) {
        case GLOB_KIND_SUFFIX:
                if (!g->lit_has_slash) /* the length and first byte reject almost every name */
                        return blen == g->lit_len && base[0] == g->lit[0] && memcmp(base, g->lit, blen) == 0;
                return glob_compiled_match(g, t->text, t->len);
        case GLOB_KIND_BASENAME:
                if (g->one_star) {
                        size_t pre = g->pre_len, suf = g->lit_len - pre - 1;
                        if (blen < pre + suf)
                                return false;
                        if ((pre > 0 && base[0] != g->lit[0]) ||
                            (suf > 0 && base[blen - 1] != g->lit[g->lit_len - 1]))
                                return false;
                        return memcmp(base, g->lit, pre) == 0 &&
                                memcmp(base + blen - suf, g->lit + pre + 1, suf) == 0;
                }
                return star_match(g->lit, g->lit_len, base, blen);
        case GLOB_KIND_DIR:
                if (g->lit_has_slash)
                        return glob_compiled_match(g, t->text, t->len);
                /* A component other than the last equal to the literal; a trailing '/' makes the
                 * last component empty, so "lit/" at the end counts too. */
                for (unsigned i = 0; i < last; i++)
                        if (t->clen[i] == g->lit_len && t->text[t->start[i]] == g->lit[0] &&
                            memcmp(t->text + t->start[i], g->lit, g->lit_len) == 0)
                                return true;
                return false;
        default:
                return glob_compiled_match(g, t->text, t->len);
        }
}

bool glob_compiled_match_text(const CompiledGlob *g, const GlobText *t) {
        return match_text(g, t);
}

size_t glob_compiled_first_match(const CompiledGlob *gs, size_t n, const GlobText *t) {
        for (size_t i = 0; i < n; i++)
                if (match_text(&gs[i], t))
                        return i;
        return SIZE_MAX;
}
