/* SPDX-License-Identifier: Apache-2.0 */
/* Checked number parsing; see parse-util.h. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "parse-util.h"

int safe_atou64(const char *s, uint64_t *ret) {
        uint64_t v = 0;
        if (!s || !*s)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t) (*p - '0'), &v))
                        return -ERANGE;
        }
        *ret = v;
        return 0;
}

int safe_atou32(const char *s, uint32_t *ret) {
        uint64_t v;
        int r = safe_atou64(s, &v);
        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

int safe_atoi64(const char *s, int64_t *ret) {
        bool neg = false;
        uint64_t v;
        int r;

        if (s && *s == '-') {
                neg = true;
                s++;
        }
        r = safe_atou64(s, &v);
        if (r < 0)
                return r;
        if (neg) {
                if (v > (uint64_t) INT64_MAX + 1)
                        return -ERANGE;
                *ret = v == (uint64_t) INT64_MAX + 1 ? INT64_MIN : -(int64_t) v;
        } else {
                if (v > INT64_MAX)
                        return -ERANGE;
                *ret = (int64_t) v;
        }
        return 0;
}

int safe_atoi32(const char *s, int32_t *ret) {
        int64_t v;
        int r = safe_atoi64(s, &v);
        if (r < 0)
                return r;
        if (v < INT32_MIN || v > INT32_MAX)
                return -ERANGE;
        *ret = (int32_t) v;
        return 0;
}

int parse_micros(const char *s, uint64_t *ret) {
        uint64_t whole = 0, frac = 0;
        unsigned digits = 0;
        const char *p = s;
        bool any = false;

        if (!s || !*s)
                return -EINVAL;
        for (; *p && *p != '.'; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                any = true;
                if (__builtin_mul_overflow(whole, 10, &whole) ||
                    __builtin_add_overflow(whole, (uint64_t) (*p - '0'), &whole))
                        return -ERANGE;
        }
        if (*p == '.') {
                p++;
                if (!*p)
                        return -EINVAL;
                for (; *p; p++) {
                        if (*p < '0' || *p > '9')
                                return -EINVAL;
                        if (++digits > 6)
                                return -ERANGE;
                        frac = frac * 10 + (uint64_t) (*p - '0');
                        any = true;
                }
        }
        if (!any)
                return -EINVAL;
        for (; digits < 6; digits++)
                frac *= 10;
        uint64_t v;
        if (__builtin_mul_overflow(whole, 1000000, &v) || __builtin_add_overflow(v, frac, &v))
                return -ERANGE;
        *ret = v;
        return 0;
}
