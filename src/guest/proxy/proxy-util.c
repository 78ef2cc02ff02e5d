/* SPDX-License-Identifier: Apache-2.0 */
/* Argument parsing and encoding helpers for proxy operations. Arguments are untrusted JSON:
 * every lookup checks the type and range and fails the request with invalid_request. */
#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "alloc-util.h"
#include "proxy.h"
#include "string-util.h"

int args_check_keys(Request *req, const char *const *allowed) {
        const char *key;
        json_t *v;
        json_object_foreach(req->args, key, v) {
                bool ok = false;
                for (const char *const *a = allowed; *a; a++)
                        if (streq(*a, key))
                                ok = true;
                if (!ok) {
                        _cleanup_free_ char *vis = string_make_visible(key);
                        request_fail(
                                req, ERROR_KIND_INVALID_REQUEST, "%s: unknown argument '%s'", req->op, vis);
                        return -EINVAL;
                }
        }
        return 0;
}

int args_get_string(Request *req, const char *key, bool required, const char **ret) {
        json_t *v = json_object_get(req->args, key);
        if (!v) {
                if (required) {
                        request_fail(
                                req, ERROR_KIND_INVALID_REQUEST, "%s: argument '%s' is required", req->op, key);
                        return -EINVAL;
                }
                *ret = NULL;
                return 0;
        }
        if (!json_is_string(v)) {
                request_fail(
                        req, ERROR_KIND_INVALID_REQUEST, "%s: argument '%s' must be a string", req->op, key);
                return -EINVAL;
        }
        if (strlen(json_string_value(v)) != json_string_length(v)) {
                request_fail(
                        req, ERROR_KIND_INVALID_REQUEST, "%s: argument '%s' contains a NUL byte", req->op, key);
                return -EINVAL;
        }
        *ret = json_string_value(v);
        return 0;
}

int args_get_bool(Request *req, const char *key, bool def, bool *ret) {
        json_t *v = json_object_get(req->args, key);
        if (!v) {
                *ret = def;
                return 0;
        }
        if (!json_is_boolean(v)) {
                request_fail(
                        req, ERROR_KIND_INVALID_REQUEST, "%s: argument '%s' must be a boolean", req->op, key);
                return -EINVAL;
        }
        *ret = json_is_true(v);
        return 0;
}

int args_get_u64(Request *req, const char *key, uint64_t def, uint64_t max, uint64_t *ret) {
        json_t *v = json_object_get(req->args, key);
        if (!v) {
                *ret = def;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t) json_integer_value(v) > max) {
                request_fail(
                        req,
                        ERROR_KIND_INVALID_REQUEST,
                        "%s: argument '%s' must be an integer between 0 and %llu",
                        req->op,
                        key,
                        (unsigned long long) max);
                return -EINVAL;
        }
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

char *base64_encode(const void *p, size_t n) {
        size_t m = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
        char *s = xmalloc(m);
        sodium_bin2base64(s, m, p, n, sodium_base64_VARIANT_ORIGINAL);
        return s;
}

int base64_decode(const char *s, size_t len, size_t max, uint8_t **ret, size_t *ret_n) {
        size_t cap = len / 4 * 3 + 3;
        if (cap > max + 3)
                return -EFBIG;
        _cleanup_free_ uint8_t *b = xmalloc(cap + 1);
        size_t n;
        if (sodium_base642bin(b, cap, s, len, NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
                return -EINVAL;
        if (n > max)
                return -EFBIG;
        *ret = TAKE_PTR(b);
        *ret_n = n;
        return 0;
}

bool utf8_valid(const char *s, size_t n) {
        const uint8_t *p = (const uint8_t *) s;
        size_t i = 0;
        while (i < n) {
                uint8_t c = p[i];
                size_t k;
                uint32_t cp;
                if (c == 0)
                        return false;
                if (c < 0x80) {
                        i++;
                        continue;
                } else if ((c & 0xe0) == 0xc0) {
                        k = 1, cp = c & 0x1f;
                } else if ((c & 0xf0) == 0xe0) {
                        k = 2, cp = c & 0x0f;
                } else if ((c & 0xf8) == 0xf0) {
                        k = 3, cp = c & 0x07;
                } else
                        return false;
                for (size_t j = 1; j <= k; j++) {
                        if (i + j >= n || (p[i + j] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (p[i + j] & 0x3f);
                }
                if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
                    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += k + 1;
        }
        return true;
}

void json_set_bytes(json_t *obj, const char *key, const void *p, size_t n) {
        if (utf8_valid(p, n)) {
                json_object_set_new(obj, key, json_stringn(p, n));
                return;
        }
        _cleanup_free_ char *k = xasprintf("%s_base64", key);
        _cleanup_free_ char *b = base64_encode(p, n);
        json_object_set_new(obj, k, json_string(b));
}

void proxy_init_defaults(Proxy *p) {
        p->cfg.limits = (ProxyLimits){
                .max_read_bytes = 512 * 1024,
                .max_file_bytes = CONFIGURE_DEFAULT_MAX_FILE_BYTES,
                .max_output_bytes = 256 * 1024,
                .max_import_bytes = UINT64_C(4) << 30,
                .max_list_entries = 10000,
                .max_walk_entries = 200000,
                .max_grep_matches = 1000,
                .max_grep_file_bytes = 8 * 1024 * 1024,
                .default_command_timeout = 120 * USEC_PER_SEC,
                .max_command_timeout = 3600 * USEC_PER_SEC,
                .rlimit_nproc = 1024,
                .rlimit_nofile = 4096,
                .rlimit_fsize = UINT64_C(4) << 30,
                .rlimit_as = UINT64_C(8) << 30,
                .max_concurrent_jobs = 8,
        };
        p->cfg.costs = (ProxyCosts){ .base_usd_micros = 1, .run_usd_micros_per_second = 100 };
}

char *proxy_baseline_dir(Proxy *p) {
        return xasprintf("%s/baseline.git", p->state_dir);
}
