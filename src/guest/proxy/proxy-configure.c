/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The configure op: accepted exactly once, before anything else. Its JSON comes from the node
 * (trusted to pick the policy, but still parsed strictly: a malformed configure must not leave
 * a half-configured proxy). Schema in docs/proxy.md.
 */
#include <errno.h>
#include <string.h>

#include "alloc-util.h"
#include "json-util.h"
#include "log.h"
#include "proxy.h"
#include "string-util.h"

#define CONFIG_MAX_ENV 64U
#define CONFIG_MAX_DNS 256U

static bool pod_id_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > APPROVAL_POD_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
                        return false;
        return true;
}

static bool env_name_valid(const char *s) {
        if (!s[0] || strlen(s) > 128 || (s[0] >= '0' && s[0] <= '9'))
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
                      *c == '_'))
                        return false;
        return true;
}

/* The fixed environment names the proxy sets itself; configure cannot override them. */
static const char *const fixed_env[] = { "PATH",    "HOME",  "LANG", "TERM", "USER",
                                         "LOGNAME", "SHELL", "PWD",  NULL };

typedef struct LimitKey {
        const char *name;
        size_t offset;
        uint64_t max;
        bool seconds; /* value in seconds, stored in usec */
} LimitKey;

static const LimitKey limit_keys[] = {
        { "max_read_bytes", offsetof(ProxyLimits, max_read_bytes), 512 * 1024, false },
        { "max_file_bytes", offsetof(ProxyLimits, max_file_bytes), 64 * 1024 * 1024, false },
        { "max_output_bytes", offsetof(ProxyLimits, max_output_bytes), 256 * 1024, false },
        { "max_import_bytes", offsetof(ProxyLimits, max_import_bytes), UINT64_C(64) << 30, false },
        { "max_list_entries", offsetof(ProxyLimits, max_list_entries), 100000, false },
        { "max_walk_entries", offsetof(ProxyLimits, max_walk_entries), 10000000, false },
        { "max_grep_matches", offsetof(ProxyLimits, max_grep_matches), 10000, false },
        { "max_grep_file_bytes", offsetof(ProxyLimits, max_grep_file_bytes), 256 * 1024 * 1024, false },
        { "command_timeout_seconds", offsetof(ProxyLimits, default_command_timeout), 86400, true },
        { "max_command_timeout_seconds", offsetof(ProxyLimits, max_command_timeout), 86400, true },
        { "max_processes", offsetof(ProxyLimits, rlimit_nproc), 65536, false },
        { "max_open_files", offsetof(ProxyLimits, rlimit_nofile), 65536, false },
        { "max_file_size_bytes", offsetof(ProxyLimits, rlimit_fsize), UINT64_C(1) << 40, false },
        { "max_address_space_bytes", offsetof(ProxyLimits, rlimit_as), UINT64_C(1) << 40, false },
        { "max_concurrent_commands", offsetof(ProxyLimits, max_concurrent_jobs), 64, false },
};

static int parse_limits(Proxy *p, json_t *lim, char **reterr) {
        const char *key;
        json_t *v;
        if (!json_is_object(lim)) {
                *reterr = xstrdup("$.limits: expected an object");
                return -EINVAL;
        }
        json_object_foreach(lim, key, v) {
                const LimitKey *k = NULL;
                for (size_t i = 0; i < ELEMENTSOF(limit_keys); i++)
                        if (streq(limit_keys[i].name, key))
                                k = &limit_keys[i];
                if (!k) {
                        _cleanup_free_ char *vis = string_make_visible(key);
                        *reterr = xasprintf("$.limits.%s: unknown key", vis);
                        return -EINVAL;
                }
                if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                    (uint64_t) json_integer_value(v) > k->max) {
                        *reterr = xasprintf(
                                "$.limits.%s: expected an integer in 1..%llu", key, (unsigned long long) k->max);
                        return -EINVAL;
                }
                uint64_t val = (uint64_t) json_integer_value(v);
                if (k->seconds)
                        val *= USEC_PER_SEC;
                memcpy((uint8_t *) &p->limits + k->offset, &val, sizeof val);
        }
        return 0;
}

static int parse_config(Proxy *p, json_t *args, Policy **ret_policy, usec_t *ret_timeout, char **reterr) {
        static const char *const keys[] = { "pod_id",
                                            "policy",
                                            "profile",
                                            "timeout_seconds",
                                            "limits",
                                            "costs",
                                            "approver_public_key",
                                            "env",
                                            "dns_allow",
                                            NULL };
        const char *key;
        json_t *v;
        _cleanup_(policy_freep) Policy *pol = NULL;
        int r;

        json_object_foreach(args, key, v) {
                bool ok = false;
                for (const char *const *k = keys; *k; k++)
                        if (streq(*k, key))
                                ok = true;
                if (!ok) {
                        _cleanup_free_ char *vis = string_make_visible(key);
                        *reterr = xasprintf("$.%s: unknown key", vis);
                        return -EINVAL;
                }
        }

        v = json_object_get(args, "pod_id");
        if (!json_is_string(v) || !pod_id_valid(json_string_value(v))) {
                *reterr = xstrdup("$.pod_id: required, 1-128 characters of [A-Za-z0-9._-]");
                return -EINVAL;
        }
        p->pod_id = xstrdup(json_string_value(v));

        json_t *jp = json_object_get(args, "policy"), *jn = json_object_get(args, "profile");
        if (!!jp == !!jn) {
                *reterr = xstrdup("$: exactly one of \"policy\" (object) or \"profile\" (name) is required");
                return -EINVAL;
        }
        if (jp) {
                _cleanup_free_ char *perr = NULL;
                r = policy_from_json(jp, &pol, &perr);
                if (r < 0) {
                        *reterr = xasprintf("$.policy: %s", perr ?: "invalid policy");
                        return -EINVAL;
                }
        } else {
                if (!json_is_string(jn) || policy_profile_new(json_string_value(jn), &pol) < 0) {
                        *reterr = xstrdup("$.profile: unknown profile name");
                        return -EINVAL;
                }
        }

        usec_t timeout = pol->max_duration_usec;
        v = json_object_get(args, "timeout_seconds");
        if (v) {
                if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 30 * 86400) {
                        *reterr = xstrdup("$.timeout_seconds: expected an integer in 1..2592000");
                        return -EINVAL;
                }
                usec_t t = (usec_t) json_integer_value(v) * USEC_PER_SEC;
                if (t < timeout)
                        timeout = t;
        }

        v = json_object_get(args, "limits");
        if (v && parse_limits(p, v, reterr) < 0)
                return -EINVAL;

        v = json_object_get(args, "costs");
        if (v) {
                json_t *b, *s;
                if (!json_is_object(v) || json_object_size(v) > 2) {
                        *reterr = xstrdup("$.costs: expected {\"base_usd_micros\", "
                                          "\"run_usd_micros_per_second\"}");
                        return -EINVAL;
                }
                json_object_foreach(
                        v,
                        key,
                        b) if (!streq(key, "base_usd_micros") && !streq(key, "run_usd_micros_per_second")) {
                        *reterr = xstrdup("$.costs: unknown key");
                        return -EINVAL;
                }
                b = json_object_get(v, "base_usd_micros");
                s = json_object_get(v, "run_usd_micros_per_second");
                if ((b &&
                     (!json_is_integer(b) || json_integer_value(b) < 0 || json_integer_value(b) > 1000000000)) ||
                    (s &&
                     (!json_is_integer(s) || json_integer_value(s) < 0 || json_integer_value(s) > 1000000000))) {
                        *reterr = xstrdup("$.costs: values must be integers in 0..1000000000");
                        return -EINVAL;
                }
                if (b)
                        p->costs.base_usd_micros = (uint64_t) json_integer_value(b);
                if (s)
                        p->costs.run_usd_micros_per_second = (uint64_t) json_integer_value(s);
        }

        v = json_object_get(args, "approver_public_key");
        if (v) {
                if (!json_is_string(v) || json_string_length(v) != 2 * APPROVAL_PUBLIC_KEY_SIZE) {
                        *reterr = xstrdup("$.approver_public_key: expected 64 hex characters");
                        return -EINVAL;
                }
                _cleanup_free_ void *k = NULL;
                size_t kn;
                if (unhexmem(json_string_value(v), json_string_length(v), &k, &kn) < 0 ||
                    kn != APPROVAL_PUBLIC_KEY_SIZE) {
                        *reterr = xstrdup("$.approver_public_key: expected 64 hex characters");
                        return -EINVAL;
                }
                memcpy(p->approver_key, k, APPROVAL_PUBLIC_KEY_SIZE);
                p->have_approver = true;
        }

        v = json_object_get(args, "env");
        if (v) {
                json_t *val;
                if (!json_is_object(v) || json_object_size(v) > CONFIG_MAX_ENV) {
                        *reterr = xasprintf(
                                "$.env: expected an object of at most %u string values", CONFIG_MAX_ENV);
                        return -EINVAL;
                }
                json_object_foreach(v, key, val) {
                        _cleanup_free_ char *vis = string_make_visible(key);
                        if (!env_name_valid(key)) {
                                *reterr = xasprintf("$.env.%s: not a valid variable name", vis);
                                return -EINVAL;
                        }
                        bool fixed = false;
                        for (const char *const *f = fixed_env; *f; f++)
                                if (streq(*f, key))
                                        fixed = true;
                        /* C8: names that make a child run other code never pass. */
                        if (fixed || !policy_env_name_allowed(key)) {
                                *reterr = xasprintf(
                                        "$.env.%s: this variable may not be passed to commands", vis);
                                return -EINVAL;
                        }
                        if (!json_is_string(val) || json_string_length(val) > 4096 ||
                            strlen(json_string_value(val)) != json_string_length(val)) {
                                *reterr = xasprintf(
                                        "$.env.%s: expected a string of at most 4096 bytes without NUL", vis);
                                return -EINVAL;
                        }
                        strv_consume(&p->env, xasprintf("%s=%s", key, json_string_value(val)));
                }
        }

        v = json_object_get(args, "dns_allow");
        if (v) {
                size_t i;
                json_t *e;
                if (!json_is_array(v) || json_array_size(v) > CONFIG_MAX_DNS) {
                        *reterr = xasprintf(
                                "$.dns_allow: expected an array of at most %u names", CONFIG_MAX_DNS);
                        return -EINVAL;
                }
                json_array_foreach(v, i, e) {
                        if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) > 260 ||
                            string_has_cc(json_string_value(e), NULL) || strchr(json_string_value(e), '/')) {
                                *reterr = xasprintf("$.dns_allow[%zu]: expected a host name or host:port", i);
                                return -EINVAL;
                        }
                        strv_extend(&p->dns_allow, json_string_value(e));
                }
        }

        *ret_policy = TAKE_PTR(pol);
        *ret_timeout = timeout;
        return 0;
}

/* Review S3: policy_sha256 attests the policy only. configure_sha256 covers everything else
 * configure decided, in canonical JSON (sorted keys, compact): the policy digest, pod id,
 * requested timeout, effective limits and costs, env, dns_allow and the approver key, so the
 * node can record and later prove the whole configuration a pod ran under. */
static void configure_digest(Proxy *p, json_t *args, char ret[static 65]) {
        const ProxyLimits *l = &p->limits;
        json_t *limits = json_pack(
                "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                "max_read_bytes",
                (json_int_t) l->max_read_bytes,
                "max_file_bytes",
                (json_int_t) l->max_file_bytes,
                "max_output_bytes",
                (json_int_t) l->max_output_bytes,
                "max_import_bytes",
                (json_int_t) l->max_import_bytes,
                "max_list_entries",
                (json_int_t) l->max_list_entries,
                "max_walk_entries",
                (json_int_t) l->max_walk_entries,
                "max_grep_matches",
                (json_int_t) l->max_grep_matches,
                "max_grep_file_bytes",
                (json_int_t) l->max_grep_file_bytes,
                "command_timeout_usec",
                (json_int_t) l->default_command_timeout,
                "max_command_timeout_usec",
                (json_int_t) l->max_command_timeout,
                "max_processes",
                (json_int_t) l->rlimit_nproc,
                "max_open_files",
                (json_int_t) l->rlimit_nofile,
                "max_file_size_bytes",
                (json_int_t) l->rlimit_fsize,
                "max_address_space_bytes",
                (json_int_t) l->rlimit_as,
                "max_concurrent_commands",
                (json_int_t) l->max_concurrent_jobs);
        json_t *env = json_array(), *dns = json_array();
        STRV_FOREACH(e, p->env)
                json_array_append_new(env, json_string(*e));
        STRV_FOREACH(d, p->dns_allow)
                json_array_append_new(dns, json_string(*d));
        _cleanup_free_ char *keyhex = p->have_approver ? hexmem(p->approver_key, sizeof p->approver_key)
                                                       : NULL;
        json_t *timeout = json_object_get(args, "timeout_seconds");
        json_t *j = json_pack(
                "{s:i, s:s, s:s, s:O, s:o, s:{s:I, s:I}, s:o, s:o, s:o}",
                "version",
                1,
                "policy_sha256",
                p->policy_sha256,
                "pod_id",
                p->pod_id,
                "timeout_seconds",
                timeout ?: json_null(),
                "limits",
                limits,
                "costs",
                "base_usd_micros",
                (json_int_t) p->costs.base_usd_micros,
                "run_usd_micros_per_second",
                (json_int_t) p->costs.run_usd_micros_per_second,
                "env",
                env,
                "dns_allow",
                dns,
                "approver_public_key",
                p->have_approver ? json_string(keyhex) : json_null());
        _cleanup_free_ char *text = json_dump_canonical(j);
        json_decref(j);
        sha256_hex(text ?: "", text ? strlen(text) : 0, ret);
}

void op_configure(Request *req) {
        Proxy *p = req->proxy;
        _cleanup_free_ char *err = NULL;
        _cleanup_(policy_freep) Policy *pol = NULL;
        usec_t timeout = USEC_INFINITY;
        int r;

        if (p->configured) {
                request_fail(
                        req,
                        ERROR_KIND_CONFLICT,
                        "configure: the proxy is already configured (policy %s)",
                        p->policy_sha256);
                return;
        }

        ProxyLimits saved_limits = p->limits;
        ProxyCosts saved_costs = p->costs;
        r = parse_config(p, req->args, &pol, &timeout, &err);
        if (r < 0) {
                /* Nothing half-applied: reset what parse_config may have set. */
                p->limits = saved_limits;
                p->costs = saved_costs;
                p->pod_id = mfree(p->pod_id);
                p->env = strv_free(p->env);
                p->dns_allow = strv_free(p->dns_allow);
                p->have_approver = false;
                explicit_bzero_safe(p->approver_key, sizeof p->approver_key);
                request_fail(req, ERROR_KIND_INVALID_REQUEST, "configure: %s", err);
                return;
        }
        if (p->limits.max_command_timeout < p->limits.default_command_timeout)
                p->limits.default_command_timeout = p->limits.max_command_timeout;

        r = budget_meter_new(pol->max_usd_micros, pol->max_input_tokens, pol->max_output_tokens, &p->budget);
        if (r < 0) {
                request_fail(req, ERROR_KIND_INTERNAL, "configure: cannot create the budget meter");
                return;
        }
        r = approval_registry_new(APPROVAL_REGISTRY_DEFAULT_CAPACITY, &p->approvals);
        if (r < 0) {
                request_fail(req, ERROR_KIND_INTERNAL, "configure: cannot create the approval registry");
                return;
        }
        (void) policy_sha256(pol, p->policy_sha256);
        time_window_start(&p->window, timeout);
        p->policy = TAKE_PTR(pol);
        proxy_resolve_implementations(RUN_DEFAULT_PATH);
        p->configured = true;
        log_info("Configured pod %s, policy %s", p->pod_id, p->policy_sha256);

        usec_t left = time_window_remaining(&p->window);
        char cfg_sha[65];
        configure_digest(p, req->args, cfg_sha);
        json_t *j = json_pack(
                "{s:s, s:s, s:s, s:o, s:b}",
                "policy_sha256",
                p->policy_sha256,
                "configure_sha256",
                cfg_sha,
                "pod_id",
                p->pod_id,
                "deadline_remaining_ms",
                left == USEC_INFINITY ? json_null() : json_integer((json_int_t) (left / USEC_PER_MSEC)),
                "approvals",
                p->have_approver);
        if (p->policy->name)
                json_object_set_new(j, "profile", json_string(p->policy->name));
        request_finish(req, j);
}
