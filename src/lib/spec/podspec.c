/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PodSpec parsing, validation and serialization (see podspec.h, docs/podspec.md). Both YAML
 * and JSON become one json_t tree that a single strict validator checks; positions come from
 * a side table filled by the YAML reader. Everything in the document is untrusted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "podspec.h"
#include "spec-pos.h"
#include "string-util.h"
#include "yaml-json.h"

static const char *const pod_driver_table[_POD_DRIVER_MAX] = {
        [POD_DRIVER_DEFAULT] = "default",
        [POD_DRIVER_QEMU] = "qemu",
        [POD_DRIVER_FIRECRACKER] = "firecracker",
        [POD_DRIVER_LOCAL] = "local",
};

DEFINE_STRING_TABLE_LOOKUP(pod_driver, PodDriver)

typedef struct Ctx {
        const char *file;
        const SpecPosTable *pos;
        char *err;
} Ctx;

_printf_(3, 4) static int bad(Ctx *c, const char *path, const char *fmt, ...) {
        va_list ap;
        if (c->err)
                return -EINVAL;
        va_start(ap, fmt);
        _cleanup_free_ char *m = xvasprintf(fmt, ap);
        va_end(ap);
        c->err = spec_error(c->file, c->pos, path, "%s", m);
        return -EINVAL;
}

static const char *type_name(const json_t *v) {
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "a mapping";
        case JSON_ARRAY:
                return "a list";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
                return "an integer";
        case JSON_REAL:
                return "a number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a boolean";
        case JSON_NULL:
                return "null";
        default:
                return "?";
        }
}

static int check_keys(Ctx *c, const json_t *obj, const char *path, const char *const *allowed) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *) obj, key, v) {
                bool ok = false;
                for (const char *const *a = allowed; *a; a++)
                        if (streq(*a, key))
                                ok = true;
                if (!ok) {
                        _cleanup_free_ char *kp = spec_path_key(path, key);
                        _cleanup_free_ char *list = strv_join((char **) allowed, ", ");
                        return bad(c, kp, "unknown key (allowed here: %s)", list);
                }
        }
        return 0;
}

static int need_object(Ctx *c, const json_t *v, const char *path) {
        if (!json_is_object(v))
                return bad(c, path, "must be a mapping, not %s", type_name(v));
        return 0;
}

static int get_string(Ctx *c, const json_t *v, const char *path, size_t max, const char **ret) {
        if (!json_is_string(v))
                return bad(c, path, "must be a string, not %s", type_name(v));
        const char *s = json_string_value(v);
        if (strlen(s) != json_string_length(v))
                return bad(c, path, "must not contain NUL characters");
        if (json_string_length(v) > max)
                return bad(c, path, "must be at most %zu characters", max);
        *ret = s;
        return 0;
}

static int get_uint_range(Ctx *c, const json_t *v, const char *path, uint64_t min, uint64_t max, uint64_t *ret) {
        if (!json_is_integer(v))
                return bad(c, path, "must be an integer, not %s", type_name(v));
        json_int_t i = json_integer_value(v);
        if (i < 0 || (uint64_t) i < min || (uint64_t) i > max)
                return bad(c, path, "must be %" PRIu64 "..%" PRIu64, min, max);
        *ret = (uint64_t) i;
        return 0;
}

/* USD amount (integer or decimal, >= 0, <= max_usd) to micro-USD, rounded to nearest. */
static int get_usd(Ctx *c, const json_t *v, const char *path, double max_usd, uint64_t *ret) {
        if (!json_is_number(v))
                return bad(c, path, "must be a number of US dollars, not %s", type_name(v));
        double d = json_number_value(v);
        if (!isfinite(d) || d < 0 || d > max_usd)
                return bad(c, path, "must be 0..%g (US dollars)", max_usd);
        *ret = (uint64_t) llround(d * 1e6);
        return 0;
}

/* ---- network (rule and DNS-name grammar in podspec-net.c) ----------------------------- */

static int parse_rules(Ctx *c, const json_t *v, const char *path, NetRule **ret, size_t *ret_n) {
        if (!json_is_array(v))
                return bad(c, path, "must be a list, not %s", type_name(v));
        size_t n = json_array_size(v);
        if (n > PODSPEC_NET_RULES_MAX)
                return bad(c, path, "at most %u entries", PODSPEC_NET_RULES_MAX);
        NetRule *rules = xnew0(NetRule, n + 1);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *ip = spec_path_index(path, i), *err = NULL;
                const char *s;
                int r = get_string(c, json_array_get(v, i), ip, 128, &s);
                if (r >= 0 && podspec_parse_net_rule(s, &rules[i], &err) < 0)
                        r = bad(c, ip, "%s", err);
                if (r < 0) {
                        for (size_t k = 0; k < i; k++)
                                net_rule_done(&rules[k]);
                        free(rules);
                        return r;
                }
        }
        *ret = rules;
        *ret_n = n;
        return 0;
}

/* ---- env ------------------------------------------------------------------------------- */

bool podspec_env_name_refused(const char *name) {
        _cleanup_free_ char *u = xstrdup(name);
        for (char *p = u; *p; p++)
                if (*p >= 'a' && *p <= 'z')
                        *p = (char) (*p - 32);
        static const char *const exact[] = {
                "ENV",
                "BASH_ENV",
                "PAGER",
                "NODE_OPTIONS",
                "PATH",
                "IFS",
                "SHELLOPTS",
                "BASHOPTS",
                "PS4",
                "PROMPT_COMMAND",
                "RUBYOPT",
                "RUBYLIB",
                "NODE_PATH",
                "JAVA_TOOL_OPTIONS",
                "_JAVA_OPTIONS",
                "LESSOPEN",
                "LESSCLOSE",
                "EDITOR",
                "VISUAL",
                "HOME",
                "SSH_AUTH_SOCK",
                "GCONV_PATH",
                "HOSTALIASES",
                "LOCALDOMAIN",
                "RES_OPTIONS",
                "TMPDIR",
                NULL,
        };
        static const char *const prefixes[] = { "LD_",        "GIT_",    "PYTHON", "PERL5",
                                                "PERL_",      "AWS_",    "DYLD_",  "NUCLEUS_",
                                                "BASH_FUNC_", "GOOGLE_", "AZURE_", NULL };
        static const char *const suffixes[] = { "_KEY", "_TOKEN",       "_KEYS", "_TOKENS",
                                                "_PAT", "_CREDENTIALS", NULL };
        static const char *const infixes[] = { "SECRET",  "PASSWORD", "PASSWD", "CREDENTIAL", "PRIVATE",
                                               "API_KEY", "APIKEY",   "AUTH",   NULL };
        for (const char *const *p = exact; *p; p++)
                if (streq(u, *p))
                        return true;
        for (const char *const *p = prefixes; *p; p++)
                if (startswith(u, *p))
                        return true;
        for (const char *const *p = suffixes; *p; p++)
                if (endswith(u, *p))
                        return true;
        for (const char *const *p = infixes; *p; p++)
                if (strstr(u, *p))
                        return true;
        return false;
}

static bool env_name_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > 128 || (s[0] >= '0' && s[0] <= '9'))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
                        return false;
        return true;
}

/* ---- the spec -------------------------------------------------------------------------- */

PodSpec *podspec_free(PodSpec *s) {
        if (!s)
                return NULL;
        free(s->name);
        strv_free(s->label_keys);
        strv_free(s->label_values);
        free(s->policy_profile);
        json_decref(s->policy_inline);
        policy_free(s->policy);
        for (size_t i = 0; i < s->n_allow; i++)
                net_rule_done(&s->allow[i]);
        free(s->allow);
        for (size_t i = 0; i < s->n_deny; i++)
                net_rule_done(&s->deny[i]);
        free(s->deny);
        strv_free(s->dns_allow);
        strv_free(s->setup_hosts);
        free(s->image);
        strv_free(s->env);
        free(s);
        return NULL;
}

static bool dns_label_ok(const char *s, size_t max) {
        size_t n = strlen(s);
        if (n == 0 || n > max || s[0] == '-' || s[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
                        return false;
        return true;
}

static bool image_name_ok(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > 64 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
                      s[i] == '_' || s[i] == '-'))
                        return false;
        return !strstr(s, "..");
}

static int parse_metadata(Ctx *c, PodSpec *s, const json_t *m) {
        static const char *const keys[] = { "name", "labels", NULL };
        int r;
        if ((r = need_object(c, m, "metadata")) < 0 || (r = check_keys(c, m, "metadata", keys)) < 0)
                return r;
        json_t *v = json_object_get(m, "name");
        if (v && !json_is_null(v)) {
                const char *n;
                if ((r = get_string(c, v, "metadata.name", 63, &n)) < 0)
                        return r;
                if (!dns_label_ok(n, 63))
                        return bad(
                                c,
                                "metadata.name",
                                "must be lowercase letters, digits and '-', not starting or ending with "
                                "'-'");
                s->name = xstrdup(n);
        }
        v = json_object_get(m, "labels");
        if (v && !json_is_null(v)) {
                if ((r = need_object(c, v, "metadata.labels")) < 0)
                        return r;
                if (json_object_size(v) > PODSPEC_LABELS_MAX)
                        return bad(c, "metadata.labels", "at most %u labels", PODSPEC_LABELS_MAX);
                const char *key;
                json_t *lv;
                _cleanup_strv_free_ char **keys_sorted = NULL;
                json_object_foreach(v, key, lv)
                        strv_extend(&keys_sorted, key);
                strv_sort_uniq(keys_sorted);
                STRV_FOREACH(k, keys_sorted) {
                        _cleanup_free_ char *kp = spec_path_key("metadata.labels", *k);
                        const char *val;
                        if (strlen(*k) > 63 ||
                            strspn(*k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-") !=
                                    strlen(*k))
                                return bad(c, kp, "label names are [A-Za-z0-9._/-], at most 63 characters");
                        if ((r = get_string(c, json_object_get(v, *k), kp, 256, &val)) < 0)
                                return r;
                        if (string_has_cc(val, NULL))
                                return bad(c, kp, "must not contain control characters");
                        strv_extend(&s->label_keys, *k);
                        strv_extend(&s->label_values, val);
                }
        }
        return 0;
}

static int parse_policy(Ctx *c, PodSpec *s, const json_t *v) {
        int r;
        if (json_is_string(v)) {
                const char *n = json_string_value(v);
                const char *canon = policy_profile_canonical_name(n);
                if (!canon)
                        return bad(c, "spec.policy", "unknown policy profile '%s'", n);
                s->policy_profile = xstrdup(canon);
                return 0;
        }
        static const char *const keys[] = { "profile",           "inline",
                                            "max_cost_usd",      "max_input_tokens",
                                            "max_output_tokens", NULL };
        if (!json_is_object(v))
                return bad(c, "spec.policy", "must be a profile name or a mapping, not %s", type_name(v));
        if ((r = check_keys(c, v, "spec.policy", keys)) < 0)
                return r;
        json_t *prof = json_object_get(v, "profile"), *inl = json_object_get(v, "inline");
        if (!!prof == !!inl)
                return bad(c, "spec.policy", "give exactly one of 'profile' and 'inline'");
        if (prof) {
                const char *n;
                if ((r = get_string(c, prof, "spec.policy.profile", 64, &n)) < 0)
                        return r;
                const char *canon = policy_profile_canonical_name(n);
                if (!canon)
                        return bad(c, "spec.policy.profile", "unknown policy profile '%s'", n);
                s->policy_profile = xstrdup(canon);
        } else {
                if ((r = need_object(c, inl, "spec.policy.inline")) < 0)
                        return r;
                s->policy_inline = json_deep_copy(inl);
        }
        json_t *x;
        if ((x = json_object_get(v, "max_cost_usd"))) {
                if ((r = get_usd(c, x, "spec.policy.max_cost_usd", 1e6, &s->max_cost_usd_micros)) < 0)
                        return r;
                s->has_max_cost = true;
        }
        if ((x = json_object_get(v, "max_input_tokens"))) {
                if ((r = get_uint_range(
                             c, x, "spec.policy.max_input_tokens", 0, UINT64_C(1) << 40, &s->max_input_tokens)) <
                    0)
                        return r;
                s->has_max_input_tokens = true;
        }
        if ((x = json_object_get(v, "max_output_tokens"))) {
                if ((r = get_uint_range(
                             c, x, "spec.policy.max_output_tokens", 0, UINT64_C(1) << 40, &s->max_output_tokens)) <
                    0)
                        return r;
                s->has_max_output_tokens = true;
        }
        return 0;
}

static int build_policy(Ctx *c, PodSpec *s) {
        _cleanup_(policy_freep) Policy *p = NULL;
        int r;
        if (s->policy_profile) {
                r = policy_profile_new(s->policy_profile, &p);
                if (r < 0)
                        return bad(c, "spec.policy", "unknown policy profile '%s'", s->policy_profile);
        } else {
                _cleanup_free_ char *err = NULL;
                r = policy_from_json(s->policy_inline, &p, &err);
                if (r < 0)
                        return bad(c, "spec.policy.inline", "%s", err ? err : "invalid policy");
        }
        /* Overrides only tighten: a value above the base is an error, never a loosening. */
        if (s->has_max_cost) {
                if (s->max_cost_usd_micros > p->max_usd_micros)
                        return bad(
                                c,
                                "spec.policy.max_cost_usd",
                                "%.6f exceeds the policy's limit of %.6f USD (overrides can only tighten)",
                                (double) s->max_cost_usd_micros / 1e6,
                                (double) p->max_usd_micros / 1e6);
                p->max_usd_micros = s->max_cost_usd_micros;
        }
        if (s->has_max_input_tokens) {
                if (s->max_input_tokens > p->max_input_tokens)
                        return bad(
                                c,
                                "spec.policy.max_input_tokens",
                                "%" PRIu64 " exceeds the policy's limit of %" PRIu64 " (overrides can only "
                                "tighten)",
                                s->max_input_tokens,
                                p->max_input_tokens);
                p->max_input_tokens = s->max_input_tokens;
        }
        if (s->has_max_output_tokens) {
                if (s->max_output_tokens > p->max_output_tokens)
                        return bad(
                                c,
                                "spec.policy.max_output_tokens",
                                "%" PRIu64 " exceeds the policy's limit of %" PRIu64 " (overrides can only "
                                "tighten)",
                                s->max_output_tokens,
                                p->max_output_tokens);
                p->max_output_tokens = s->max_output_tokens;
        }
        /* The deadline is one number: an explicit timeout within the policy's time window
         * becomes the window; one above it is refused, naming the limit (never clamped in
         * silence). Without one the node decides (min of its default and the window). */
        if (s->has_timeout) {
                usec_t t = (usec_t) s->timeout_seconds * USEC_PER_SEC;
                if (p->max_duration_usec != USEC_INFINITY && t > p->max_duration_usec) {
                        uint64_t w = (uint64_t) (p->max_duration_usec / USEC_PER_SEC);
                        const char *prof = s->policy_profile ?: "";
                        static const char fmt[] = "%llu exceeds the policy's time window of %llu seconds "
                                                  "(time.max_duration_seconds%s%s); ask for at most "
                                                  "that, or leave timeout_seconds out";
                        return bad(
                                c,
                                "spec.timeout_seconds",
                                fmt,
                                (unsigned long long) s->timeout_seconds,
                                (unsigned long long) w,
                                *prof ? " of profile " : "",
                                prof);
                }
                p->max_duration_usec = t;
        }
        policy_normalize(p);
        s->policy = TAKE_PTR(p);
        return 0;
}

static int parse_spec(Ctx *c, PodSpec *s, const json_t *sp) {
        static const char *const keys[] = { "policy", "timeout_seconds", "resources", "network", "image",
                                            "driver", "budget_model",    "env",       "lease",   "setup",
                                            NULL };
        json_t *v;
        uint64_t u;
        int r;

        if ((r = need_object(c, sp, "spec")) < 0 || (r = check_keys(c, sp, "spec", keys)) < 0)
                return r;

        v = json_object_get(sp, "policy");
        if (!v)
                return bad(
                        c,
                        "spec",
                        "missing key 'policy' (a profile name such as \"read-only\", or an inline policy)");
        if ((r = parse_policy(c, s, v)) < 0)
                return r;

        if ((v = json_object_get(sp, "timeout_seconds"))) {
                if ((r = get_uint_range(
                             c, v, "spec.timeout_seconds", 1, PODSPEC_TIMEOUT_MAX, &s->timeout_seconds)) < 0)
                        return r;
                s->has_timeout = true;
        }

        s->vcpus = PODSPEC_VCPUS_DEFAULT;
        s->memory_mib = PODSPEC_MEMORY_MIB_DEFAULT;
        s->scratch_mib = PODSPEC_SCRATCH_MIB_DEFAULT;
        if ((v = json_object_get(sp, "resources"))) {
                static const char *const rk[] = { "vcpus", "memory_mib", "scratch_mib", NULL };
                json_t *x;
                if ((r = need_object(c, v, "spec.resources")) < 0 ||
                    (r = check_keys(c, v, "spec.resources", rk)) < 0)
                        return r;
                if ((x = json_object_get(v, "vcpus"))) {
                        if ((r = get_uint_range(c, x, "spec.resources.vcpus", 1, PODSPEC_VCPUS_MAX, &u)) < 0)
                                return r;
                        s->vcpus = (uint32_t) u;
                }
                if ((x = json_object_get(v, "memory_mib"))) {
                        if ((r = get_uint_range(
                                     c,
                                     x,
                                     "spec.resources.memory_mib",
                                     PODSPEC_MEMORY_MIB_MIN,
                                     PODSPEC_MEMORY_MIB_MAX,
                                     &u)) < 0)
                                return r;
                        s->memory_mib = (uint32_t) u;
                }
                if ((x = json_object_get(v, "scratch_mib"))) {
                        if ((r = get_uint_range(
                                     c,
                                     x,
                                     "spec.resources.scratch_mib",
                                     PODSPEC_SCRATCH_MIB_MIN,
                                     PODSPEC_SCRATCH_MIB_MAX,
                                     &u)) < 0)
                                return r;
                        s->scratch_mib = (uint32_t) u;
                }
        }

        if ((v = json_object_get(sp, "network")) && !json_is_null(v)) {
                static const char *const nk[] = { "allow", "deny", "dns_allow", "dns_wildcard_names", NULL };
                json_t *x;
                if ((r = need_object(c, v, "spec.network")) < 0 ||
                    (r = check_keys(c, v, "spec.network", nk)) < 0)
                        return r;
                s->has_network = true;
                if ((x = json_object_get(v, "allow")) &&
                    (r = parse_rules(c, x, "spec.network.allow", &s->allow, &s->n_allow)) < 0)
                        return r;
                if ((x = json_object_get(v, "deny")) &&
                    (r = parse_rules(c, x, "spec.network.deny", &s->deny, &s->n_deny)) < 0)
                        return r;
                if ((x = json_object_get(v, "dns_allow"))) {
                        if (!json_is_array(x))
                                return bad(c, "spec.network.dns_allow", "must be a list, not %s", type_name(x));
                        if (json_array_size(x) > PODSPEC_DNS_ALLOW_MAX)
                                return bad(
                                        c, "spec.network.dns_allow", "at most %u names", PODSPEC_DNS_ALLOW_MAX);
                        for (size_t i = 0; i < json_array_size(x); i++) {
                                _cleanup_free_ char *ip = spec_path_index("spec.network.dns_allow", i),
                                                    *err = NULL, *norm = NULL;
                                const char *n;
                                if ((r = get_string(c, json_array_get(x, i), ip, 253, &n)) < 0)
                                        return r;
                                if (podspec_check_dns_name(n, &norm, &err) < 0)
                                        return bad(c, ip, "%s", err);
                                if (strv_contains(s->dns_allow, norm))
                                        return bad(c, ip, "'%s' is listed twice", n);
                                strv_consume(&s->dns_allow, TAKE_PTR(norm));
                        }
                }
                if ((x = json_object_get(v, "dns_wildcard_names"))) {
                        uint64_t wn;
                        if ((r = get_uint_range(c, x, "spec.network.dns_wildcard_names", 1, 4096, &wn)) < 0)
                                return r;
                        s->dns_wildcard_names = (uint32_t) wn;
                }
        }

        if ((v = json_object_get(sp, "setup")) && !json_is_null(v)) {
                static const char *const sk[] = { "hosts", NULL };
                json_t *x;
                if ((r = need_object(c, v, "spec.setup")) < 0 || (r = check_keys(c, v, "spec.setup", sk)) < 0)
                        return r;
                if ((x = json_object_get(v, "hosts"))) {
                        if (!json_is_array(x))
                                return bad(c, "spec.setup.hosts", "must be a list, not %s", type_name(x));
                        if (json_array_size(x) > PODSPEC_SETUP_HOSTS_MAX)
                                return bad(c, "spec.setup.hosts", "at most %u names", PODSPEC_SETUP_HOSTS_MAX);
                        for (size_t i = 0; i < json_array_size(x); i++) {
                                _cleanup_free_ char *ip = spec_path_index("spec.setup.hosts", i),
                                                    *err = NULL, *norm = NULL;
                                const char *n;
                                if ((r = get_string(c, json_array_get(x, i), ip, 253, &n)) < 0)
                                        return r;
                                if (podspec_check_dns_name(n, &norm, &err) < 0)
                                        return bad(c, ip, "%s", err);
                                if (strv_contains(s->setup_hosts, norm))
                                        return bad(c, ip, "'%s' is listed twice", n);
                                strv_consume(&s->setup_hosts, TAKE_PTR(norm));
                        }
                }
        }

        v = json_object_get(sp, "image");
        if (v) {
                const char *n;
                if ((r = get_string(c, v, "spec.image", 64, &n)) < 0)
                        return r;
                if (!image_name_ok(n))
                        return bad(
                                c,
                                "spec.image",
                                "'%s' is not an image name ([a-z0-9][a-z0-9._-]*, at most 64; never a path)",
                                n);
                s->image = xstrdup(n);
        } else
                s->image = xstrdup(PODSPEC_IMAGE_DEFAULT);

        s->driver = POD_DRIVER_DEFAULT;
        if ((v = json_object_get(sp, "driver"))) {
                const char *n;
                if ((r = get_string(c, v, "spec.driver", 32, &n)) < 0)
                        return r;
                PodDriver d = pod_driver_from_string(n);
                if (d < 0 || d == POD_DRIVER_DEFAULT)
                        return bad(c, "spec.driver", "must be qemu, firecracker or local");
                s->driver = d;
        }

        if ((v = json_object_get(sp, "lease")) && !json_is_null(v)) {
                static const char *const lk[] = { "grace_seconds", NULL };
                json_t *g;
                if ((r = need_object(c, v, "spec.lease")) < 0 || (r = check_keys(c, v, "spec.lease", lk)) < 0)
                        return r;
                s->has_lease = true;
                if ((g = json_object_get(v, "grace_seconds"))) {
                        if ((r = get_uint_range(
                                     c, g, "spec.lease.grace_seconds", 1, PODSPEC_LEASE_GRACE_MAX, &u)) < 0)
                                return r;
                        s->lease_grace_seconds = (uint32_t) u;
                }
        }

        s->base_cost_usd_micros = 1;
        s->cost_per_second_usd_micros = 100;
        if ((v = json_object_get(sp, "budget_model"))) {
                static const char *const bk[] = { "base_cost_usd", "cost_per_second_usd", NULL };
                json_t *b, *ps;
                if ((r = need_object(c, v, "spec.budget_model")) < 0 ||
                    (r = check_keys(c, v, "spec.budget_model", bk)) < 0)
                        return r;
                b = json_object_get(v, "base_cost_usd");
                ps = json_object_get(v, "cost_per_second_usd");
                if (!b || !ps)
                        return bad(c, "spec.budget_model", "needs both base_cost_usd and cost_per_second_usd");
                if ((r = get_usd(c, b, "spec.budget_model.base_cost_usd", 1000, &s->base_cost_usd_micros)) < 0 ||
                    (r = get_usd(
                             c, ps, "spec.budget_model.cost_per_second_usd", 1000, &s->cost_per_second_usd_micros)) <
                            0)
                        return r;
        }

        if ((v = json_object_get(sp, "env")) && !json_is_null(v)) {
                const char *key;
                json_t *ev;
                if ((r = need_object(c, v, "spec.env")) < 0)
                        return r;
                if (json_object_size(v) > PODSPEC_ENV_MAX)
                        return bad(c, "spec.env", "at most %u variables", PODSPEC_ENV_MAX);
                json_object_foreach(v, key, ev) {
                        _cleanup_free_ char *kp = spec_path_key("spec.env", key);
                        const char *val;
                        if (!env_name_valid(key))
                                return bad(c, kp, "variable names are [A-Za-z_][A-Za-z0-9_]*, at most 128");
                        if (podspec_env_name_refused(key))
                                return bad(
                                        c,
                                        kp,
                                        "refused: the name looks like a secret or changes how programs load "
                                        "or "
                                        "run (see docs/podspec.md)");
                        if (json_is_integer(ev) || json_is_real(ev) || json_is_boolean(ev))
                                return bad(c, kp, "must be a string (quote it)");
                        if ((r = get_string(c, ev, kp, PODSPEC_ENV_VALUE_MAX, &val)) < 0)
                                return r;
                        if (string_has_cc(val, "\t"))
                                return bad(c, kp, "must not contain control characters (newlines included)");
                        strv_consume(&s->env, xasprintf("%s=%s", key, val));
                }
                strv_sort_uniq(s->env);
        }
        return build_policy(c, s);
}

static int podspec_validate(
        const json_t *j, const char *file, const SpecPosTable *pos, PodSpec **ret, char **reterr) {
        static const char *const keys[] = { "apiVersion", "kind", "metadata", "spec", NULL };
        Ctx c = { .file = file, .pos = pos };
        _cleanup_(podspec_freep) PodSpec *s = xnew0(PodSpec, 1);
        const char *str;
        json_t *v;
        int r;

        if ((r = need_object(&c, j, "")) < 0 || (r = check_keys(&c, j, "", keys)) < 0)
                goto fail;
        v = json_object_get(j, "apiVersion");
        if (!v) {
                r = bad(&c, "", "missing key 'apiVersion' (must be \"%s\")", PODSPEC_API_VERSION);
                goto fail;
        }
        if ((r = get_string(&c, v, "apiVersion", 64, &str)) < 0)
                goto fail;
        if (!streq(str, PODSPEC_API_VERSION)) {
                r = bad(&c, "apiVersion", "must be \"%s\"", PODSPEC_API_VERSION);
                goto fail;
        }
        v = json_object_get(j, "kind");
        if (!v) {
                r = bad(&c, "", "missing key 'kind' (must be \"%s\")", PODSPEC_KIND);
                goto fail;
        }
        if ((r = get_string(&c, v, "kind", 64, &str)) < 0)
                goto fail;
        if (!streq(str, PODSPEC_KIND)) {
                r = bad(&c, "kind", "must be \"%s\"", PODSPEC_KIND);
                goto fail;
        }
        if ((v = json_object_get(j, "metadata")) && !json_is_null(v) && (r = parse_metadata(&c, s, v)) < 0)
                goto fail;
        v = json_object_get(j, "spec");
        if (!v) {
                r = bad(&c, "", "missing key 'spec'");
                goto fail;
        }
        if ((r = parse_spec(&c, s, v)) < 0)
                goto fail;
        *ret = TAKE_PTR(s);
        return 0;
fail:
        if (reterr)
                *reterr = TAKE_PTR(c.err);
        free(c.err);
        return r;
}

int podspec_from_json(const json_t *j, const char *filename, PodSpec **ret, char **reterr) {
        return podspec_validate(j, filename, NULL, ret, reterr);
}

int podspec_parse_yaml(const char *text, size_t n, const char *filename, PodSpec **ret, char **reterr) {
        _cleanup_json_ json_t *j = NULL;
        SpecPosTable pos = {};
        int r = spec_yaml_to_json(text, n, filename, &j, &pos, reterr);
        if (r >= 0)
                r = podspec_validate(j, filename, &pos, ret, reterr);
        spec_pos_done(&pos);
        return r;
}

int podspec_parse_json(const char *text, size_t n, const char *filename, PodSpec **ret, char **reterr) {
        _cleanup_json_ json_t *j = NULL;
        _cleanup_free_ char *err = NULL;
        int r = json_parse_strict(text, n, PODSPEC_MAX_SIZE, &j, &err);
        if (r < 0) {
                if (reterr)
                        *reterr = xasprintf("%s%s%s", filename ? filename : "", filename ? ": " : "", err);
                return r;
        }
        return podspec_validate(j, filename, NULL, ret, reterr);
}

int podspec_parse(const char *text, size_t n, const char *filename, PodSpec **ret, char **reterr) {
        size_t i = 0;
        while (i < n && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
                i++;
        if (i < n && text[i] == '{')
                return podspec_parse_json(text, n, filename, ret, reterr);
        return podspec_parse_yaml(text, n, filename, ret, reterr);
}

int podspec_load_file(const char *path, PodSpec **ret, char **reterr) {
        _cleanup_free_ char *data = NULL;
        size_t n;
        int r = read_full_file_at(AT_FDCWD, path, PODSPEC_MAX_SIZE, &data, &n);
        if (r < 0) {
                if (reterr)
                        *reterr = xasprintf("%s: %s", path, r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
                return r;
        }
        return podspec_parse(data, n, path, ret, reterr);
}

static json_t *usd_json(uint64_t micros) {
        return json_real((double) micros / 1e6);
}

json_t *podspec_to_json(const PodSpec *s) {
        json_t *meta = json_object();
        if (s->name)
                json_object_set_new(meta, "name", json_string(s->name));
        if (s->label_keys) {
                json_t *l = json_object();
                for (size_t i = 0; s->label_keys[i]; i++)
                        json_object_set_new(l, s->label_keys[i], json_string(s->label_values[i]));
                json_object_set_new(meta, "labels", l);
        }
        json_t *pol = json_object();
        if (s->policy_profile)
                json_object_set_new(pol, "profile", json_string(s->policy_profile));
        else
                json_object_set(pol, "inline", s->policy_inline);
        if (s->has_max_cost)
                json_object_set_new(pol, "max_cost_usd", usd_json(s->max_cost_usd_micros));
        if (s->has_max_input_tokens)
                json_object_set_new(pol, "max_input_tokens", json_integer((json_int_t) s->max_input_tokens));
        if (s->has_max_output_tokens)
                json_object_set_new(pol, "max_output_tokens", json_integer((json_int_t) s->max_output_tokens));

        json_t *spec = json_pack(
                "{s:o,s:{s:I,s:I,s:I},s:s,s:{s:o,s:o}}",
                "policy",
                pol,
                "resources",
                "vcpus",
                (json_int_t) s->vcpus,
                "memory_mib",
                (json_int_t) s->memory_mib,
                "scratch_mib",
                (json_int_t) s->scratch_mib,
                "image",
                s->image,
                "budget_model",
                "base_cost_usd",
                usd_json(s->base_cost_usd_micros),
                "cost_per_second_usd",
                usd_json(s->cost_per_second_usd_micros));
        if (s->has_timeout)
                json_object_set_new(spec, "timeout_seconds", json_integer((json_int_t) s->timeout_seconds));
        if (s->driver != POD_DRIVER_DEFAULT)
                json_object_set_new(spec, "driver", json_string(pod_driver_to_string(s->driver)));
        if (s->has_network) {
                json_t *a = json_array(), *d = json_array(), *n = json_array();
                for (size_t i = 0; i < s->n_allow; i++)
                        json_array_append_new(a, json_string(s->allow[i].text));
                for (size_t i = 0; i < s->n_deny; i++)
                        json_array_append_new(d, json_string(s->deny[i].text));
                STRV_FOREACH(x, s->dns_allow)
                        json_array_append_new(n, json_string(*x));
                json_t *net = json_pack("{s:o,s:o,s:o}", "allow", a, "deny", d, "dns_allow", n);
                if (s->dns_wildcard_names)
                        json_object_set_new(net, "dns_wildcard_names", json_integer(s->dns_wildcard_names));
                json_object_set_new(spec, "network", net);
        }
        if (s->setup_hosts) {
                json_t *h = json_array();
                STRV_FOREACH(x, s->setup_hosts)
                        json_array_append_new(h, json_string(*x));
                json_object_set_new(spec, "setup", json_pack("{s:o}", "hosts", h));
        }
        if (s->env) {
                json_t *e = json_object();
                STRV_FOREACH(x, s->env) {
                        const char *eq = strchr(*x, '=');
                        _cleanup_free_ char *k = xstrndup(*x, (size_t) (eq - *x));
                        json_object_set_new(e, k, json_string(eq + 1));
                }
                json_object_set_new(spec, "env", e);
        }
        if (s->has_lease) {
                json_t *l = json_object();
                if (s->lease_grace_seconds)
                        json_object_set_new(l, "grace_seconds", json_integer(s->lease_grace_seconds));
                json_object_set_new(spec, "lease", l);
        }
        return json_pack(
                "{s:s,s:s,s:o,s:o}",
                "apiVersion",
                PODSPEC_API_VERSION,
                "kind",
                PODSPEC_KIND,
                "metadata",
                meta,
                "spec",
                spec);
}

char *podspec_to_canonical_json(const PodSpec *s) {
        _cleanup_json_ json_t *j = podspec_to_json(s);
        return json_dump_canonical(j);
}
