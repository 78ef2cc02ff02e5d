/* SPDX-License-Identifier: Apache-2.0 */
/* Small string helpers and NULL-terminated string vectors (strv). Pure; no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "escape.h"
#include "macro.h"

static inline bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}
static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
static inline bool isempty(const char *s) {
        return !s || !*s;
}
/* Returns pointer after prefix if s starts with prefix, else NULL. */
char *startswith(const char *s, const char *prefix) _pure_;
char *endswith(const char *s, const char *suffix) _pure_;

/* Lower-case hex encode; returns a new string. */
char *hexmem(const void *p, size_t n);
/* Decode exactly len hex chars (even) into a new buffer. -EINVAL on bad input. */
int unhexmem(const char *s, size_t len, void **ret, size_t *ret_len);

/* Constant-time comparison of n bytes; true when equal. */
bool memeq_consttime(const void *a, const void *b, size_t n);

/* True if s contains a byte < 0x20 or 0x7f (control characters). */
bool string_has_cc(const char *s, const char *ok);

/* strv: NULL-terminated arrays of malloc'd strings. */
char **strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);
#define _cleanup_strv_free_ _cleanup_(strv_freep)
size_t strv_length(char *const *l) _pure_;
/* Appends a copy / takes ownership of value. Aborts on OOM. */
void strv_extend(char ***l, const char *value);
void strv_consume(char ***l, char *value);
bool strv_contains(char *const *l, const char *s) _pure_;
char **strv_copy(char *const *l);
/* Join with separator; returns a new string. */
char *strv_join(char *const *l, const char *sep);
/* Sort in place with strcmp, and drop adjacent duplicates. */
void strv_sort_uniq(char **l);

#define STRV_FOREACH(s, l) for (char *const *s = (l); s && *s; s++)

/* True if s is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool utf8_is_valid(const char *s) _pure_;
/* Replace every byte that is not part of a valid UTF-8 sequence with '?', in place, so the
 * text can go into a JSON string (jansson refuses invalid UTF-8). Returns s. */
char *utf8_make_valid(char *s);
