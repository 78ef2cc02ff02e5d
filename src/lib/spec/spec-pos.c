/* SPDX-License-Identifier: Apache-2.0 */
/* Position side table for parsed documents (see spec-pos.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "spec-pos.h"
#include "string-util.h"

void spec_pos_add(SpecPosTable *t, const char *path, unsigned line, unsigned col) {
        if (t->n == t->cap) {
                t->cap = t->cap ? t->cap * 2 : 32;
                t->items = xreallocarray(t->items, t->cap, sizeof(SpecPos));
        }
        t->items[t->n++] = (SpecPos){ .path = xstrdup(path), .line = line, .col = col };
}

bool spec_pos_find(const SpecPosTable *t, const char *path, unsigned *ret_line, unsigned *ret_col) {
        if (!t || !path)
                return false;
        _cleanup_free_ char *p = xstrdup(path);
        for (;;) {
                for (size_t i = t->n; i > 0; i--)
                        if (streq(t->items[i - 1].path, p)) {
                                *ret_line = t->items[i - 1].line;
                                *ret_col = t->items[i - 1].col;
                                return true;
                        }
                char *dot = strrchr(p, '.'), *br = strrchr(p, '[');
                char *cut = dot > br ? dot : br;
                if (!cut)
                        return false;
                *cut = 0;
        }
}

void spec_pos_done(SpecPosTable *t) {
        for (size_t i = 0; i < t->n; i++)
                free(t->items[i].path);
        free(t->items);
        *t = (SpecPosTable){};
}

char *spec_error(const char *file, const SpecPosTable *t, const char *path, const char *fmt, ...) {
        va_list ap;
        unsigned line = 0, col = 0;
        va_start(ap, fmt);
        _cleanup_free_ char *msg = xvasprintf(fmt, ap);
        va_end(ap);
        _cleanup_free_ char *where = NULL;
        if (spec_pos_find(t, path, &line, &col))
                where = xasprintf("%s%s%u:%u: ", file ? file : "", file ? ":" : "", line, col);
        else
                where = xasprintf("%s%s", file ? file : "", file ? ": " : "");
        return xasprintf("%s%s%s%s", where, isempty(path) ? "" : path, isempty(path) ? "" : ": ", msg);
}

char *spec_path_key(const char *parent, const char *key) {
        return isempty(parent) ? xstrdup(key) : xasprintf("%s.%s", parent, key);
}

char *spec_path_index(const char *parent, size_t i) {
        return xasprintf("%s[%zu]", parent ? parent : "", i);
}
