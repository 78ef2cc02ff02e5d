/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Allocation wrappers. The x* functions abort on OOM (fail closed; STYLE.md rule 23):
 * this is safe only because every size that comes from outside is capped before any
 * allocation (rule 51). Never call them with an unchecked, attacker-chosen size.
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

_noreturn_ void oom_abort(void);

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size); /* zeroed; aborts on overflow */
void *xrealloc(void *p, size_t n);
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
/* Formatted allocation; returns a new string the caller frees. */
char *xasprintf(const char *fmt, ...) _printf_(1, 2);
char *xvasprintf(const char *fmt, va_list ap) _printf_(1, 0);

#define xnew(t, n) ((t *) xreallocarray(NULL, (n), sizeof(t)))
#define xnew0(t, n) ((t *) xcalloc((n), sizeof(t)))

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

/* Zero memory in a way the compiler cannot elide (secrets). */
void explicit_bzero_safe(void *p, size_t n);

/* Free a NUL-terminated secret string after wiping it. Returns NULL. */
char *erase_and_free(char *s);
static inline void erase_and_freep(char **s) {
        erase_and_free(*s);
}
#define _cleanup_erase_free_ _cleanup_(erase_and_freep)
