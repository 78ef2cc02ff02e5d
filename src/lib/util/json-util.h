/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jansson helpers: cleanup attribute, bounded loading from untrusted text (no duplicate keys,
 * a size cap), and typed getters used by strict parsers.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "macro.h"

/* jansson >= 2.9 provides json_decrefp() and json_auto_t; we name the attribute. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* Parse untrusted JSON text of n bytes (n <= max, else -EFBIG) rejecting duplicate keys
 * (JSON_REJECT_DUPLICATES) and NUL bytes in strings. On error, *reterr (if non-NULL)
 * gets a malloc'd "line L, column C: message". */
int json_parse_strict(const char *text, size_t n, size_t max, json_t **ret, char **reterr);

/* Canonical JSON text: keys sorted, compact separators, UTF-8 kept. Caller frees. */
char *json_dump_canonical(const json_t *j);
