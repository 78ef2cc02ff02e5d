/* SPDX-License-Identifier: Apache-2.0 */
/* The configure contract (configure.h): to and from JSON. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "configure.h"
#include "id-util.h"
#include "json-util.h"
#include "string-util.h"

#define CONFIGURE_TIME_MAX_MS (UINT64_C(30) * 86400 * 1000) /* 30 days */
#define CONFIGURE_COST_MAX UINT64_C(1000000000)
#define CONFIGURE_ENV_VALUE_MAX 4096u

static const struct {
        const char *name;
        uint64_t cap;
} limit_table[_CONFIGURE_LIMIT_MAX] = {
        [CONFIGURE_LIMIT_MAX_READ_BYTES] = { "max_read_bytes", 512 * 1024 },
        [CONFIGURE_LIMIT_MAX_FILE_BYTES] = { "max_file_bytes", 64 * 1024 * 1024 },
        [CONFIGURE_LIMIT_MAX_OUTPUT_BYTES] = { "max_output_bytes", 256 * 1024 },
        [CONFIGURE_LIMIT_MAX_IMPORT_BYTES] = { "max_import_bytes", UINT64_C(64) << 30 },
        [CONFIGURE_LIMIT_MAX_LIST_ENTRIES] = { "max_list_entries", 100000 },
        [CONFIGURE_LIMIT_MAX_WALK_ENTRIES] = { "max_walk_entries", 10000000 },
        [CONFIGURE_LIMIT_MAX_GREP_MATCHES] = { "max_grep_matches", 10000 },
        [CONFIGURE_LIMIT_MAX_GREP_FILE_BYTES] = { "max_grep_file_bytes", 256 * 1024 * 1024 },
        [CONFIGURE_LIMIT_COMMAND_TIMEOUT_SECONDS] = { "command_timeout_seconds", 86400 },
        [CONFIGURE_LIMIT_MAX_COMMAND_TIMEOUT_SECONDS] = { "max_command_timeout_seconds", 86400 },
        [CONFIGURE_LIMIT_MAX_PROCESSES] = { "max_processes", 65536 },
        [CONFIGURE_LIMIT_MAX_OPEN_FILES] = { "max_open_files", 65536 },
        [CONFIGURE_LIMIT_MAX_FILE_SIZE_BYTES] = { "max_file_size_bytes", UINT64_C(1) << 40 },
        [CONFIGURE_LIMIT_MAX_ADDRESS_SPACE_BYTES] = { "max_address_space_bytes", UINT64_C(1) << 40 },
        [CONFIGURE_LIMIT_MAX_CONCURRENT_COMMANDS] = { "max_concurrent_commands", 64 },
};

const char *configure_limit_to_string(ConfigureLimit l) {
        return (int) l >= 0 && l < _CONFIGURE_LIMIT_MAX ? limit_table[l].name : NULL;
}

ConfigureLimit configure_limit_from_string(const char *s) {
        for (ConfigureLimit l = 0; l < _CONFIGURE_LIMIT_MAX; l++)
                if (streq(limit_table[l].name, s))
                        return l;
        return _CONFIGURE_LIMIT_INVALID;
}

uint64_t configure_limit_cap(ConfigureLimit l) {
        return (int) l >= 0 && l < _CONFIGURE_LIMIT_MAX ? limit_table[l].cap : 0;
}

Configure *configure_free(Configure *c) {
        if (!c)
                return NULL;
        free(c->pod_id);
        policy_free(c->policy);
        explicit_bzero_safe(c->entropy_seed, sizeof c->entropy_seed);
        strv_free(c->env);
        strv_free(c->dns_allow);
        free(c->net.address);
        free(c->net.gateway);
        free(c->net.dns);
        free(c);
        return NULL;
}

/* The names the proxy sets itself for every command; configure cannot override them. */
static const char *const fixed_env[] = { "PATH",    "HOME",  "LANG", "TERM", "USER",
                                         "LOGNAME", "SHELL", "PWD",  NULL };

bool configure_env_name_ok(const char *s) {
        if (!s[0] || strlen(s) > 128 || (s[0] >= '0' && s[0] <= '9'))
                return false;
        if (strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != strlen(s))
                return false;
        if (strv_contains((char **) fixed_env, s))
                return false;
        /* Names that make a child run other code (LD_PRELOAD, BASH_ENV, GIT_*, ...) never pass. */
        return policy_env_name_allowed(s);
}

_printf_(2, 3) static int fail(char **reterr, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        *reterr = xvasprintf(fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int get_u64(const json_t *v, uint64_t min, uint64_t max, uint64_t *ret) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t) json_integer_value(v) < min ||
            (uint64_t) json_integer_value(v) > max)
                return -EINVAL;
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static int get_hex(const json_t *v, uint8_t *ret, size_t n) {
        _cleanup_free_ void *b = NULL;
        size_t bn;
        if (!json_is_string(v) || json_string_length(v) != 2 * n)
                return -EINVAL;
        if (unhexmem(json_string_value(v), json_string_length(v), &b, &bn) < 0 || bn != n)
                return -EINVAL;
        memcpy(ret, b, n);
        explicit_bzero_safe(b, bn);
        return 0;
}

static int parse_limits(Configure *c, const json_t *lim, char **reterr) {
        const char *key;
        json_t *v;
        if (!json_is_object(lim))
                return fail(reterr, "$.limits: expected an object");
        json_object_foreach((json_t *) lim, key, v) {
                ConfigureLimit l = configure_limit_from_string(key);
                if ((int) l < 0) {
                        _cleanup_free_ char *vis = string_make_visible(key);
                        return fail(reterr, "$.limits.%s: unknown key", vis);
                }
                if (get_u64(v, 1, limit_table[l].cap, &c->limits[l]) < 0)
                        return fail(
                                reterr,
                                "$.limits.%s: expected an integer in 1..%llu",
                                key,
                                (unsigned long long) limit_table[l].cap);
        }
        return 0;
}

static int parse_costs(Configure *c, const json_t *v, char **reterr) {
        const char *key;
        json_t *e;
        if (!json_is_object(v))
                return fail(reterr, "$.costs: expected {\"base_usd_micros\", \"run_usd_micros_per_second\"}");
        json_object_foreach((json_t *) v, key, e) {
                uint64_t *dst;
                bool *have;
                if (streq(key, "base_usd_micros"))
                        dst = &c->base_cost_usd_micros, have = &c->have_base_cost;
                else if (streq(key, "run_usd_micros_per_second"))
                        dst = &c->run_cost_usd_micros_per_second, have = &c->have_run_cost;
                else {
                        _cleanup_free_ char *vis = string_make_visible(key);
                        return fail(reterr, "$.costs.%s: unknown key", vis);
                }
                if (get_u64(e, 0, CONFIGURE_COST_MAX, dst) < 0)
                        return fail(reterr, "$.costs.%s: expected an integer in 0..1000000000", key);
                *have = true;
        }
        return 0;
}

static int parse_env(Configure *c, const json_t *v, char **reterr) {
        const char *key;
        json_t *val;
        if (!json_is_object(v) || json_object_size(v) > CONFIGURE_ENV_MAX)
                return fail(reterr, "$.env: expected an object of at most %u string values", CONFIGURE_ENV_MAX);
        json_object_foreach((json_t *) v, key, val) {
                _cleanup_free_ char *vis = string_make_visible(key);
                if (!configure_env_name_ok(key))
                        return fail(reterr, "$.env.%s: this variable may not be passed to commands", vis);
                if (!json_is_string(val) || json_string_length(val) > CONFIGURE_ENV_VALUE_MAX ||
                    strlen(json_string_value(val)) != json_string_length(val))
                        return fail(
                                reterr,
                                "$.env.%s: expected a string of at most %u bytes without NUL",
                                vis,
                                CONFIGURE_ENV_VALUE_MAX);
                strv_consume(&c->env, xasprintf("%s=%s", key, json_string_value(val)));
        }
        strv_sort_uniq(c->env);
        return 0;
}

static int parse_dns_allow(Configure *c, const json_t *v, char **reterr) {
        size_t i;
        json_t *e;
        if (!json_is_array(v) || json_array_size(v) > CONFIGURE_DNS_MAX)
                return fail(reterr, "$.dns_allow: expected an array of at most %u names", CONFIGURE_DNS_MAX);
        json_array_foreach((json_t *) v, i, e) {
                if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) > 260 ||
                    strlen(json_string_value(e)) != json_string_length(e) ||
                    string_has_cc(json_string_value(e), NULL) || strchr(json_string_value(e), '/'))
                        return fail(reterr, "$.dns_allow[%zu]: expected a host name or host:port", i);
                strv_extend(&c->dns_allow, json_string_value(e));
        }
        return 0;
}

static bool ipv4_ok(const char *s) {
        struct in_addr a;
        return inet_pton(AF_INET, s, &a) == 1;
}

static int parse_net(Configure *c, const json_t *v, char **reterr) {
        static const char *const keys[] = { "address", "gateway", "dns", NULL };
        const char *key;
        json_t *e;
        if (!json_is_object(v))
                return fail(reterr, "$.network: expected {\"address\", \"gateway\", \"dns\"}");
        json_object_foreach((json_t *) v, key, e)
                if (!strv_contains((char **) keys, key)) {
                        _cleanup_free_ char *vis = string_make_visible(key);
                        return fail(reterr, "$.network.%s: unknown key", vis);
                }
        const char *addr = json_string_value(json_object_get(v, "address"));
        const char *gw = json_string_value(json_object_get(v, "gateway"));
        const char *dns = json_string_value(json_object_get(v, "dns"));
        const char *slash = addr ? strchr(addr, '/') : NULL;
        unsigned prefix = 0;
        if (!slash || slash - addr > 15 || strlen(slash + 1) == 0 || strlen(slash + 1) > 2 ||
            strspn(slash + 1, "0123456789") != strlen(slash + 1) ||
            (prefix = (unsigned) atoi(slash + 1)) < 1 || prefix > 32)
                return fail(reterr, "$.network.address: expected an IPv4 address/prefix (1..32)");
        _cleanup_free_ char *host = xstrndup(addr, (size_t) (slash - addr));
        if (!ipv4_ok(host))
                return fail(reterr, "$.network.address: expected an IPv4 address/prefix (1..32)");
        if (!gw || !ipv4_ok(gw))
                return fail(reterr, "$.network.gateway: expected an IPv4 address");
        if (!dns || !ipv4_ok(dns))
                return fail(reterr, "$.network.dns: expected an IPv4 address");
        c->net.address = xstrdup(addr);
        c->net.gateway = xstrdup(gw);
        c->net.dns = xstrdup(dns);
        c->have_net = true;
        return 0;
}

int configure_from_json(const json_t *args, Configure **ret, char **reterr) {
        static const char *const keys[] = {
                "pod_id",       "policy",  "profile", "time_remaining_ms",   "wall_clock_unix_ms",
                "entropy_seed", "limits",  "costs",   "approver_public_key", "env",
                "dns_allow",    "network", NULL
        };
        _cleanup_(configure_freep) Configure *c = NULL;
        const char *key;
        json_t *v;
        uint64_t u;
        int r;

        if (!json_is_object(args))
                return fail(reterr, "$: expected an object");
        json_object_foreach((json_t *) args, key, v)
                if (!strv_contains((char **) keys, key)) {
                        _cleanup_free_ char *vis = string_make_visible(key);
                        return fail(reterr, "$.%s: unknown key", vis);
                }
        c = xnew0(Configure, 1);
        c->time_remaining = USEC_INFINITY;

        v = json_object_get(args, "pod_id");
        if (!json_is_string(v) || !pod_id_valid(json_string_value(v)))
                return fail(reterr, "$.pod_id: required, 1-128 characters of [A-Za-z0-9._-], not . or ..");
        c->pod_id = xstrdup(json_string_value(v));

        json_t *jp = json_object_get(args, "policy"), *jn = json_object_get(args, "profile");
        if (!!jp == !!jn)
                return fail(reterr, "$: exactly one of \"policy\" (object) or \"profile\" (name) is required");
        if (jp) {
                _cleanup_free_ char *perr = NULL;
                r = policy_from_json(jp, &c->policy, &perr);
                if (r < 0)
                        return fail(reterr, "$.policy: %s", perr ?: "invalid policy");
        } else if (!json_is_string(jn) || policy_profile_new(json_string_value(jn), &c->policy) < 0)
                return fail(reterr, "$.profile: unknown profile name");

        if ((v = json_object_get(args, "time_remaining_ms"))) {
                if (get_u64(v, 1, CONFIGURE_TIME_MAX_MS, &u) < 0)
                        return fail(
                                reterr,
                                "$.time_remaining_ms: expected an integer in 1..%llu",
                                (unsigned long long) CONFIGURE_TIME_MAX_MS);
                c->time_remaining = u * USEC_PER_MSEC;
        }
        if ((v = json_object_get(args, "wall_clock_unix_ms"))) {
                /* 2001-09-09 .. 2286-11-20: a clock that is plainly wrong is refused. */
                if (get_u64(v, UINT64_C(1000000000000), UINT64_C(9999999999999), &u) < 0)
                        return fail(
                                reterr, "$.wall_clock_unix_ms: expected milliseconds since 1970 (13 digits)");
                c->wall_clock = u * USEC_PER_MSEC;
        }
        if ((v = json_object_get(args, "entropy_seed"))) {
                if (get_hex(v, c->entropy_seed, sizeof c->entropy_seed) < 0)
                        return fail(
                                reterr, "$.entropy_seed: expected %u hex characters", 2 * CONFIGURE_SEED_SIZE);
                c->have_seed = true;
        }
        if ((v = json_object_get(args, "limits")) && (r = parse_limits(c, v, reterr)) < 0)
                return r;
        if ((v = json_object_get(args, "costs")) && (r = parse_costs(c, v, reterr)) < 0)
                return r;
        if ((v = json_object_get(args, "approver_public_key"))) {
                if (get_hex(v, c->approver_key, sizeof c->approver_key) < 0)
                        return fail(reterr, "$.approver_public_key: expected 64 hex characters");
                c->have_approver = true;
        }
        if ((v = json_object_get(args, "env")) && (r = parse_env(c, v, reterr)) < 0)
                return r;
        if ((v = json_object_get(args, "dns_allow")) && (r = parse_dns_allow(c, v, reterr)) < 0)
                return r;
        if ((v = json_object_get(args, "network")) && (r = parse_net(c, v, reterr)) < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

/* $.network of configure and reconfigure: {address, gateway, dns}. */
static json_t *network_to_json(const Configure *c) {
        return json_pack(
                "{s:s,s:s,s:s}", "address", c->net.address, "gateway", c->net.gateway, "dns", c->net.dns);
}

json_t *configure_to_json(const Configure *c) {
        json_t *j = json_object();
        json_object_set_new(j, "pod_id", json_string(c->pod_id));
        json_object_set_new(j, "policy", policy_to_json(c->policy));
        if (c->time_remaining != USEC_INFINITY)
                json_object_set_new(
                        j,
                        "time_remaining_ms",
                        json_integer((json_int_t) NUCLEUS_MAX(c->time_remaining / USEC_PER_MSEC, (usec_t) 1)));
        if (c->wall_clock > 0)
                json_object_set_new(
                        j, "wall_clock_unix_ms", json_integer((json_int_t) (c->wall_clock / USEC_PER_MSEC)));
        if (c->have_seed) {
                _cleanup_free_ char *hex = hexmem(c->entropy_seed, sizeof c->entropy_seed);
                json_object_set_new(j, "entropy_seed", json_string(hex));
                explicit_bzero_safe(hex, strlen(hex));
        }
        json_t *lim = json_object();
        for (ConfigureLimit l = 0; l < _CONFIGURE_LIMIT_MAX; l++)
                if (c->limits[l] > 0)
                        json_object_set_new(lim, limit_table[l].name, json_integer((json_int_t) c->limits[l]));
        if (json_object_size(lim) > 0)
                json_object_set_new(j, "limits", lim);
        else
                json_decref(lim);
        if (c->have_base_cost || c->have_run_cost) {
                json_t *costs = json_object();
                if (c->have_base_cost)
                        json_object_set_new(
                                costs, "base_usd_micros", json_integer((json_int_t) c->base_cost_usd_micros));
                if (c->have_run_cost)
                        json_object_set_new(
                                costs,
                                "run_usd_micros_per_second",
                                json_integer((json_int_t) c->run_cost_usd_micros_per_second));
                json_object_set_new(j, "costs", costs);
        }
        if (c->have_approver) {
                _cleanup_free_ char *hex = hexmem(c->approver_key, sizeof c->approver_key);
                json_object_set_new(j, "approver_public_key", json_string(hex));
        }
        if (c->env && c->env[0]) {
                json_t *env = json_object();
                STRV_FOREACH(e, c->env) {
                        const char *eq = strchr(*e, '=');
                        if (!eq)
                                continue;
                        _cleanup_free_ char *k = xstrndup(*e, (size_t) (eq - *e));
                        json_object_set_new(env, k, json_string(eq + 1));
                }
                json_object_set_new(j, "env", env);
        }
        if (c->dns_allow && c->dns_allow[0]) {
                json_t *d = json_array();
                STRV_FOREACH(n, c->dns_allow)
                        json_array_append_new(d, json_string(*n));
                json_object_set_new(j, "dns_allow", d);
        }
        if (c->have_net)
                json_object_set_new(j, "network", network_to_json(c));
        return j;
}

int reconfigure_from_json(const json_t *args, Configure **ret, char **reterr) {
        static const char *const keys[] = {
                "pod_id",  "policy", "time_remaining_ms", "wall_clock_unix_ms", "entropy_seed",
                "network", NULL
        };
        _cleanup_(configure_freep) Configure *c = NULL;
        const char *key;
        json_t *v;
        int r;

        if (!json_is_object(args))
                return fail(reterr, "$: expected an object");
        json_object_foreach((json_t *) args, key, v)
                if (!strv_contains((char **) keys, key)) {
                        _cleanup_free_ char *vis = string_make_visible(key);
                        return fail(reterr, "$.%s: not allowed in reconfigure", vis);
                }
        if (!json_object_get(args, "policy"))
                return fail(reterr, "$.policy: required (the policy as an object)");
        r = configure_from_json(args, &c, reterr);
        if (r < 0)
                return r;
        if (c->wall_clock == 0)
                return fail(reterr, "$.wall_clock_unix_ms: required (a restored guest's clock is stale)");
        if (!c->have_seed)
                return fail(
                        reterr, "$.entropy_seed: required (a restored guest holds its parent's random state)");
        *ret = TAKE_PTR(c);
        return 0;
}

json_t *reconfigure_to_json(const Configure *c) {
        json_t *j = json_object();
        json_object_set_new(j, "pod_id", json_string(c->pod_id));
        json_object_set_new(j, "policy", policy_to_json(c->policy));
        if (c->time_remaining != USEC_INFINITY)
                json_object_set_new(
                        j,
                        "time_remaining_ms",
                        json_integer((json_int_t) NUCLEUS_MAX(c->time_remaining / USEC_PER_MSEC, (usec_t) 1)));
        if (c->wall_clock > 0)
                json_object_set_new(
                        j, "wall_clock_unix_ms", json_integer((json_int_t) (c->wall_clock / USEC_PER_MSEC)));
        if (c->have_seed) {
                _cleanup_free_ char *hex = hexmem(c->entropy_seed, sizeof c->entropy_seed);
                json_object_set_new(j, "entropy_seed", json_string(hex));
                explicit_bzero_safe(hex, strlen(hex));
        }
        if (c->have_net)
                json_object_set_new(j, "network", network_to_json(c));
        return j;
}
