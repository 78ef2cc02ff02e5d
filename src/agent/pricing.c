/* SPDX-License-Identifier: Apache-2.0 */
/* Token pricing in integer micro-dollars; see pricing.h. Inputs come from flags and config. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "pricing.h"

#define PRICING_MAX_USD UINT64_C(1000000000000)

int pricing_parse_usd(const char *s, uint64_t *ret_micros) {
        uint64_t whole = 0, frac = 0;
        unsigned frac_digits = 0;
        const char *p = s;
        bool any = false;

        if (!s || !*s)
                return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++) {
                whole = whole * 10 + (uint64_t) (*p - '0');
                if (whole > PRICING_MAX_USD)
                        return -ERANGE;
                any = true;
        }
        if (*p == '.') {
                p++;
                for (; *p >= '0' && *p <= '9'; p++) {
                        if (++frac_digits > 6)
                                return -EINVAL;
                        frac = frac * 10 + (uint64_t) (*p - '0');
                        any = true;
                }
                if (frac_digits == 0)
                        return -EINVAL;
        }
        if (*p != 0 || !any)
                return -EINVAL;
        for (; frac_digits < 6; frac_digits++)
                frac *= 10;
        *ret_micros = whole * 1000000 + frac;
        return 0;
}

char *pricing_format_usd(char buf[static 32], uint64_t micros) {
        char frac[8];
        snprintf(frac, sizeof frac, "%06llu", (unsigned long long) (micros % 1000000));
        size_t l = 6;
        while (l > 2 && frac[l - 1] == '0')
                frac[--l] = 0;
        snprintf(buf, 32, "$%llu.%s", (unsigned long long) (micros / 1000000), frac);
        return buf;
}

uint64_t pricing_cost_micros(
        uint64_t input_tokens,
        uint64_t output_tokens,
        uint64_t in_price_micros_per_mtok,
        uint64_t out_price_micros_per_mtok) {
        /* 128-bit intermediate: tokens * price can exceed 64 bits for absurd inputs. */
        unsigned __int128 t = (unsigned __int128) input_tokens * in_price_micros_per_mtok +
                (unsigned __int128) output_tokens * out_price_micros_per_mtok;
        t = (t + 999999) / 1000000;
        return t > UINT64_MAX ? UINT64_MAX : (uint64_t) t;
}
