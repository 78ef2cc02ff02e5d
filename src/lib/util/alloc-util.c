/* SPDX-License-Identifier: Apache-2.0 */
/* Allocation wrappers that abort on OOM; see alloc-util.h for why that is safe here. */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "alloc-util.h"

void oom_abort(void) {
        static const char msg[] = "nucleus: out of memory, aborting\n";
        (void) !write(STDERR_FILENO, msg, sizeof(msg) - 1);
        abort();
}

void *xmalloc(size_t n) {
        void *p = malloc(n ? n : 1);
        if (!p)
                oom_abort();
        return p;
}

void *xcalloc(size_t nmemb, size_t size) {
        void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
        if (!p)
                oom_abort();
        return p;
}

void *xrealloc(void *p, size_t n) {
        void *q = realloc(p, n ? n : 1);
        if (!q)
                oom_abort();
        return q;
}

void *xreallocarray(void *p, size_t nmemb, size_t size) {
        size_t n;
        if (__builtin_mul_overflow(nmemb, size, &n))
                oom_abort();
        return xrealloc(p, n);
}

char *xstrdup(const char *s) {
        char *p = strdup(s);
        if (!p)
                oom_abort();
        return p;
}

char *xstrndup(const char *s, size_t n) {
        char *p = strndup(s, n);
        if (!p)
                oom_abort();
        return p;
}

void *xmemdup(const void *p, size_t n) {
        void *q = xmalloc(n);
        if (n)
                memcpy(q, p, n);
        return q;
}

char *xvasprintf(const char *fmt, va_list ap) {
        char *s = NULL;
        if (vasprintf(&s, fmt, ap) < 0)
                oom_abort();
        return s;
}

char *xasprintf(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char *s = xvasprintf(fmt, ap);
        va_end(ap);
        return s;
}

void explicit_bzero_safe(void *p, size_t n) {
        if (p && n)
                explicit_bzero(p, n);
}

char *erase_and_free(char *s) {
        if (!s)
                return NULL;
        explicit_bzero_safe(s, strlen(s));
        free(s);
        return NULL;
}
