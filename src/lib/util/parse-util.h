/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checked number parsing for untrusted text. Whole-string, base 10, no leading '+', no
 * whitespace, no overflow. Returns 0 and writes *ret, or -EINVAL (syntax) / -ERANGE.
 */
#pragma once

#include <stdint.h>

int safe_atou64(const char *s, uint64_t *ret);
int safe_atou32(const char *s, uint32_t *ret);
int safe_atoi64(const char *s, int64_t *ret);
int safe_atoi32(const char *s, int32_t *ret);
/* "1.50" -> 1500000 micro-units; up to 6 decimals, non-negative. */
int parse_micros(const char *s, uint64_t *ret);
