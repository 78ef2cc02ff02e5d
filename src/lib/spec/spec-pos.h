/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Source positions for parsed documents: a side table from a value's path
 * ("spec.resources.vcpus", "spec.network.allow[2]") to the line and column where its key (or,
 * for array items, the item) appears, so schema checks run on a json_t tree can still report
 * "FILE:LINE:COL: path: problem".
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

typedef struct SpecPos {
        char *path;
        unsigned line; /* 1-based */
        unsigned col;  /* 1-based */
} SpecPos;

typedef struct SpecPosTable {
        SpecPos *items;
        size_t n, cap;
} SpecPosTable;

void spec_pos_add(SpecPosTable *t, const char *path, unsigned line, unsigned col);
/* Exact path, else the nearest recorded ancestor ("a.b[3].c" -> "a.b[3]" -> "a.b" -> "a"). */
bool spec_pos_find(const SpecPosTable *t, const char *path, unsigned *ret_line, unsigned *ret_col);
void spec_pos_done(SpecPosTable *t);

/* "FILE:LINE:COL: PATH: MESSAGE" (position omitted when unknown, file omitted when NULL,
 * path omitted when empty). Returns a malloc'd string. */
char *spec_error(const char *file, const SpecPosTable *t, const char *path, const char *fmt, ...)
        _printf_(4, 5);
/* Child path helpers: "a" + "b" -> "a.b" (or "b" at the root); "a" + 3 -> "a[3]". */
char *spec_path_key(const char *parent, const char *key);
char *spec_path_index(const char *parent, size_t i);
