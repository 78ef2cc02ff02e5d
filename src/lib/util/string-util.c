/* SPDX-License-Identifier: Apache-2.0 */
/* String helpers; see string-util.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "alloc-util.h"
#include "string-util.h"

char *startswith(const char *s, const char *prefix) {
        size_t l = strlen(prefix);
        if (strncmp(s, prefix, l) != 0)
                return NULL;
        return (char *) s + l;
}

char *endswith(const char *s, const char *suffix) {
        size_t sl = strlen(s), xl = strlen(suffix);
        if (xl > sl)
                return NULL;
        if (memcmp(s + sl - xl, suffix, xl) != 0)
                return NULL;
        return (char *) s + sl - xl;
}

char *hexmem(const void *p, size_t n) {
        static const char hex[] = "0123456789abcdef";
        const uint8_t *b = p;
        char *s = xnew(char, n * 2 + 1);
        for (size_t i = 0; i < n; i++) {
                s[2 * i] = hex[b[i] >> 4];
                s[2 * i + 1] = hex[b[i] & 15];
        }
        s[n * 2] = 0;
        return s;
}

static int unhexchar(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

int unhexmem(const char *s, size_t len, void **ret, size_t *ret_len) {
        if (len % 2 != 0)
                return -EINVAL;
        _cleanup_free_ uint8_t *b = xmalloc(len / 2 + 1);
        for (size_t i = 0; i < len; i += 2) {
                int hi = unhexchar(s[i]), lo = unhexchar(s[i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                b[i / 2] = (uint8_t) ((hi << 4) | lo);
        }
        *ret = TAKE_PTR(b);
        if (ret_len)
                *ret_len = len / 2;
        return 0;
}

bool memeq_consttime(const void *a, const void *b, size_t n) {
        const volatile uint8_t *x = a, *y = b;
        uint8_t d = 0;
        for (size_t i = 0; i < n; i++)
                d |= (uint8_t) (x[i] ^ y[i]);
        return d == 0;
}

bool string_has_cc(const char *s, const char *ok) {
        for (const char *p = s; *p; p++) {
                if (ok && strchr(ok, *p))
                        continue;
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return true;
        }
        return false;
}

char **strv_free(char **l) {
        for (char **p = l; p && *p; p++)
                free(*p);
        free(l);
        return NULL;
}

size_t strv_length(char *const *l) {
        size_t n = 0;
        for (; l && l[n]; n++)
                ;
        return n;
}

void strv_consume(char ***l, char *value) {
        size_t n = strv_length(*l);
        char **m = xreallocarray(*l, n + 2, sizeof(char *));
        m[n] = value;
        m[n + 1] = NULL;
        *l = m;
}

void strv_extend(char ***l, const char *value) {
        strv_consume(l, xstrdup(value));
}

bool strv_contains(char *const *l, const char *s) {
        STRV_FOREACH(i, l)
                if (streq(*i, s))
                        return true;
        return false;
}

char **strv_copy(char *const *l) {
        char **m = xnew0(char *, strv_length(l) + 1);
        size_t i = 0;
        STRV_FOREACH(s, l)
                m[i++] = xstrdup(*s);
        return m;
}

char *strv_join(char *const *l, const char *sep) {
        size_t n = 0, sl = strlen(sep);
        STRV_FOREACH(s, l)
                n += strlen(*s) + sl;
        char *r = xmalloc(n + 1), *p = r;
        STRV_FOREACH(s, l) {
                if (p != r) {
                        memcpy(p, sep, sl);
                        p += sl;
                }
                size_t k = strlen(*s);
                memcpy(p, *s, k);
                p += k;
        }
        *p = 0;
        return r;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

void strv_sort_uniq(char **l) {
        size_t n = strv_length(l);
        if (n < 2)
                return;
        qsort(l, n, sizeof(char *), cmp_str);
        size_t w = 1;
        for (size_t i = 1; i < n; i++) {
                if (streq(l[i], l[w - 1]))
                        free(l[i]);
                else
                        l[w++] = l[i];
        }
        l[w] = NULL;
}

/* Length of the valid UTF-8 sequence at p, or 0 if it is not one. */
static size_t utf8_sequence_length(const unsigned char *p) {
        unsigned c = p[0];
        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                return (p[1] & 0xc0) == 0x80 ? 2 : 0;
        if (c >= 0xe0 && c <= 0xef) {
                if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
                        return 0;
                if (c == 0xe0 && p[1] < 0xa0) /* overlong */
                        return 0;
                if (c == 0xed && p[1] >= 0xa0) /* surrogates */
                        return 0;
                return 3;
        }
        if (c >= 0xf0 && c <= 0xf4) {
                if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
                        return 0;
                if (c == 0xf0 && p[1] < 0x90) /* overlong */
                        return 0;
                if (c == 0xf4 && p[1] >= 0x90) /* above U+10FFFF */
                        return 0;
                return 4;
        }
        return 0;
}

bool utf8_is_valid(const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                size_t n = utf8_sequence_length(p);
                if (n == 0)
                        return false;
                p += n;
        }
        return true;
}

char *utf8_make_valid(char *s) {
        for (unsigned char *p = (unsigned char *) s; *p;) {
                size_t n = utf8_sequence_length(p);
                if (n == 0) {
                        *p++ = '?';
                        continue;
                }
                p += n;
        }
        return s;
}
