/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Token pricing in integer micro-dollars (no floating point on money): prices are given in
 * USD per million tokens ("3", "0.15", "15.00"), costs are rounded up to the next micro-dollar.
 */
#pragma once

#include <stdint.h>

/* Parse a non-negative decimal USD amount with at most 6 fractional digits into micro-dollars.
 * Returns 0, -EINVAL (not a plain decimal, or more than 6 decimals), -ERANGE (over 10^12 USD). */
int pricing_parse_usd(const char *s, uint64_t *ret_micros);

/* Format micro-dollars as "$X.XXXXXX" trimmed to at least 2 decimals ("$0.42", "$0.000150").
 * buf must hold 32 bytes; returns buf. */
char *pricing_format_usd(char buf[static 32], uint64_t micros);

/* Cost of a model turn: ceil((in * in_price + out * out_price) / 10^6) micro-dollars, where
 * prices are micro-dollars per million tokens. Saturates at UINT64_MAX instead of overflowing. */
uint64_t pricing_cost_micros(
        uint64_t input_tokens,
        uint64_t output_tokens,
        uint64_t in_price_micros_per_mtok,
        uint64_t out_price_micros_per_mtok);
