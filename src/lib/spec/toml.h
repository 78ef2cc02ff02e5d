/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A strict parser for the TOML subset Nucleus config files use (no C TOML library is
 * packaged in Debian): comments, [tables] and [a."b".c] headers, bare/quoted/dotted keys,
 * basic strings with escapes (\b \t \n \f \r \" \\ \uXXXX \UXXXXXXXX), literal strings,
 * decimal integers (with _ separators), decimal floats, booleans, arrays (multi-line, trailing
 * comma) and one-line inline tables. Everything else (multi-line strings, arrays of tables,
 * dates and times, hex/octal/binary integers, inf/nan) is refused with
 * "unsupported TOML feature: ...". Duplicate keys and redefined tables are errors.
 * Input is untrusted: size, nesting and string lengths are capped.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "spec-pos.h"

#define TOML_MAX_SIZE (1024U * 1024U)
#define TOML_MAX_DEPTH 32U
#define TOML_MAX_STRING 65536U

/*
 * toml_parse: parse text into a JSON object tree (integers -> json_integer, floats ->
 * json_real, tables -> objects, arrays -> arrays).
 * Arguments: filename: used in messages only (may be NULL); pos (optional): receives the
 *   line:column of every key and array item, by dotted path.
 * Returns: 0 and *ret (new reference), or -EBADMSG/-EFBIG with *reterr (malloc'd)
 *   "FILE:LINE:COL: message".
 */
int toml_parse(const char *text, size_t n, const char *filename, json_t **ret, SpecPosTable *pos, char **reterr);
