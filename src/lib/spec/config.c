/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CLI and node config loaders (see config.h, docs/config.md): one field table per file, a
 * generic strict loader over the TOML tree, and origin tracking per field. Config files are
 * operator-written but still parsed as untrusted text.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "config.h"
#include "escape.h"
#include "fd-util.h"
#include "json-util.h"
#include "parse-util.h"
#include "policy.h"
#include "spec-pos.h"
#include "string-util.h"
#include "toml.h"

static const char *const config_source_table[_CONFIG_SOURCE_MAX] = {
        [CONFIG_SOURCE_DEFAULT] = "default",
        [CONFIG_SOURCE_FILE] = "file",
        [CONFIG_SOURCE_FLAG] = "flag",
};

DEFINE_STRING_TABLE_LOOKUP(config_source, ConfigSource)

typedef enum FieldType {
        FT_STRING, /* printable text */
        FT_BOOL,
        FT_U32,
        FT_U64,
        FT_USD,          /* number of USD -> micro-USD */
        FT_STRV,         /* list of strings */
        FT_ENUM,         /* one of choices */
        FT_LISTEN,       /* HOST:PORT */
        FT_ABSPATH,      /* absolute path */
        FT_URL,          /* http:// or https:// */
        FT_ENVNAME,      /* [A-Z_][A-Z0-9_]* */
        FT_CIDR4,        /* IPv4 CIDR */
        FT_PROFILE,      /* policy profile name */
        FT_NAME,         /* [a-z0-9][a-z0-9._-]* (image / VM names) */
        FT_BINARY,       /* program name or absolute path */
        FT_OPTPATH,      /* absolute path or empty (= automatic) */
        FT_OPTIPV4,      /* IPv4 address or empty (= automatic) */
        FT_COUNTS,       /* table of image name -> count min..max (json_t * object) */
        FT_IMAGE_TABLES, /* [SECTION.NAME] tables, one per image name (json_t * object); the
                          * field's key is "SECTION.NAME" */
} FieldType;

typedef struct Field {
        const char *key; /* "section.key" or "key" */
        FieldType type;
        size_t offset;
        uint64_t min, max;
        const char *def_str;
        uint64_t def_num;
        const char *const *choices;
} Field;

static const char *const providers[] = { "openai", "anthropic", NULL };
static const char *const drivers[] = { "qemu", "firecracker", "local", NULL };
static const char *const accels[] = { "auto", "kvm", "tcg", NULL };
static const char *const pool_restores[] = { "auto", "off", NULL };

#define CF(k, t, member, ...) \
        { .key = (k), .type = (t), .offset = offsetof(CliConfig, member), __VA_ARGS__ }
static const Field cli_fields[_CLI_CONFIG_FIELD_MAX] = {
        [CLI_DEFAULT_PROFILE] = CF("default_profile", FT_PROFILE, default_profile, .def_str = "restrictive"),
        [CLI_VM_NAME] = CF("vm.name", FT_NAME, vm.name, .def_str = "nucleus"),
        [CLI_VM_AUTO_START] = CF("vm.auto_start", FT_BOOL, vm.auto_start, .def_num = 1),
        [CLI_VM_CPUS] = CF("vm.cpus", FT_U32, vm.cpus, .min = 1, .max = 64, .def_num = 4),
        [CLI_VM_MEMORY_GIB] = CF("vm.memory_gib", FT_U32, vm.memory_gib, .min = 1, .max = 512, .def_num = 8),
        [CLI_VM_DISK_GIB] = CF("vm.disk_gib", FT_U32, vm.disk_gib, .min = 10, .max = 4096, .def_num = 50),
        [CLI_NODE_URL] = CF("node.url", FT_URL, node.url, .def_str = "http://127.0.0.1:8080"),
        [CLI_NODE_ACTOR] = CF("node.actor", FT_STRING, node.actor, .max = 256, .def_str = "nucleus-cli"),
        [CLI_BUDGET_MAX_COST_USD] = CF(
                "budget.max_cost_usd",
                FT_USD,
                budget.max_cost_usd_micros,
                .max = UINT64_C(1000000000000),
                .def_num = 5000000),
        [CLI_BUDGET_MAX_INPUT_TOKENS] = CF(
                "budget.max_input_tokens",
                FT_U64,
                budget.max_input_tokens,
                .max = UINT64_C(1) << 40,
                .def_num = 100000),
        [CLI_BUDGET_MAX_OUTPUT_TOKENS] = CF(
                "budget.max_output_tokens",
                FT_U64,
                budget.max_output_tokens,
                .max = UINT64_C(1) << 40,
                .def_num = 10000),
        [CLI_BUDGET_TIMEOUT_SECONDS] = CF(
                "budget.timeout_seconds", FT_U64, budget.timeout_seconds, .min = 1, .max = 86400, .def_num = 3600),
        [CLI_MODEL_PROVIDER] = CF(
                "model.provider", FT_ENUM, model.provider, .def_str = "openai", .choices = providers),
        [CLI_MODEL_BASE_URL] = CF(
                "model.base_url", FT_URL, model.base_url, .def_str = "https://api.openai.com/v1"),
        [CLI_MODEL_MODEL] = CF("model.model", FT_STRING, model.model, .max = 128, .def_str = "gpt-4o-mini"),
        [CLI_MODEL_API_KEY_ENV] = CF(
                "model.api_key_env", FT_ENVNAME, model.api_key_env, .def_str = "OPENAI_API_KEY"),
        [CLI_MODEL_PRICE_IN] = CF(
                "model.price_in_per_mtok_usd",
                FT_USD,
                model.price_in_per_mtok_usd_micros,
                .max = UINT64_C(1000000000),
                .def_num = 150000),
        [CLI_MODEL_PRICE_OUT] = CF(
                "model.price_out_per_mtok_usd",
                FT_USD,
                model.price_out_per_mtok_usd_micros,
                .max = UINT64_C(1000000000),
                .def_num = 600000),
        [CLI_MODEL_CONNECT_TIMEOUT] = CF(
                "model.connect_timeout_seconds",
                FT_U64,
                model.connect_timeout_seconds,
                .min = 1,
                .max = 600,
                .def_num = 30),
        [CLI_MODEL_IDLE_TIMEOUT] = CF(
                "model.idle_timeout_seconds",
                FT_U64,
                model.idle_timeout_seconds,
                .min = 1,
                .max = 3600,
                .def_num = 120),
        [CLI_IMAGES_DEFAULT] = CF("images.default", FT_NAME, images.default_image, .def_str = "default"),
        [CLI_IMAGES_PACKAGES] = CF("images.packages", FT_STRV, images.packages, .max = 128),
        [CLI_IMAGES_NAMED] = CF("images.NAME", FT_IMAGE_TABLES, images.named, .max = 128),
        [CLI_AUTH_SECRETS_DIR] = CF("auth.secrets_dir", FT_OPTPATH, auth.secrets_dir, .def_str = ""),
        [CLI_APPROVALS_WEBHOOK] = CF("approvals.webhook", FT_URL, approvals.webhook, .def_str = ""),
};
#undef CF

#define NF(k, t, member, ...) \
        { .key = (k), .type = (t), .offset = offsetof(NodeConfig, member), __VA_ARGS__ }
static const Field node_fields[_NODE_CONFIG_FIELD_MAX] = {
        [NODE_LISTEN] = NF("node.listen", FT_LISTEN, listen, .def_str = "127.0.0.1:8080"),
        [NODE_METRICS_LISTEN] = NF(
                "node.metrics_listen", FT_LISTEN, metrics_listen, .def_str = "127.0.0.1:9080"),
        [NODE_STATE_DIR] = NF("node.state_dir", FT_ABSPATH, state_dir, .def_str = "/var/lib/nucleus"),
        [NODE_IMAGES_DIR] = NF("node.images_dir", FT_ABSPATH, images_dir, .def_str = "/var/lib/nucleus/images"),
        [NODE_DRIVER] = NF("pods.driver", FT_ENUM, driver, .def_str = "qemu", .choices = drivers),
        [NODE_ACCEL] = NF("pods.accel", FT_ENUM, accel, .def_str = "auto", .choices = accels),
        [NODE_MAX_PODS] = NF("pods.max_pods", FT_U32, max_pods, .min = 1, .max = 1024, .def_num = 16),
        [NODE_MAX_BODY_BYTES] = NF(
                "node.max_body_bytes",
                FT_U64,
                max_body_bytes,
                .min = 1024,
                .max = UINT64_C(1073741824),
                .def_num = 10485760),
        [NODE_MAX_UPLOAD_BYTES] = NF(
                "node.max_upload_bytes",
                FT_U64,
                max_upload_bytes,
                .min = UINT64_C(1048576),
                .max = UINT64_C(1099511627776),
                .def_num = 268435456),
        [NODE_MAX_TOOL_BODY_BYTES] = NF(
                "node.max_tool_body_bytes",
                FT_U64,
                max_tool_body_bytes,
                .min = UINT64_C(1048576),
                .max = UINT64_C(1073741824),
                .def_num = 67108864),
        [NODE_DEFAULT_TIMEOUT] = NF(
                "pods.default_timeout_seconds",
                FT_U64,
                default_timeout_seconds,
                .min = 1,
                .max = 86400,
                .def_num = 3600),
        [NODE_MAX_TIMEOUT] = NF(
                "pods.max_timeout_seconds", FT_U64, max_timeout_seconds, .min = 1, .max = 86400, .def_num = 86400),
        [NODE_QEMU_BINARY] = NF("pods.qemu_binary", FT_BINARY, qemu_binary, .def_str = "qemu-system-x86_64"),
        [NODE_FIRECRACKER_BINARY] = NF(
                "pods.firecracker_binary", FT_BINARY, firecracker_binary, .def_str = "firecracker"),
        [NODE_SECRET_FILE] = NF(
                "secrets.node_secret_file",
                FT_ABSPATH,
                node_secret_file,
                .def_str = "/etc/nucleus/secrets/node.key"),
        [NODE_APPROVER_PUBLIC_KEY_FILE] = NF(
                "secrets.approver_public_key_file",
                FT_ABSPATH,
                approver_public_key_file,
                .def_str = "/etc/nucleus/secrets/approver.pub"),
        [NODE_AUDIT_SIGNING_KEY_FILE] = NF(
                "secrets.audit_signing_key_file",
                FT_ABSPATH,
                audit_signing_key_file,
                .def_str = "/etc/nucleus/secrets/audit.key"),
        [NODE_NET_POOL] = NF("net.pool", FT_CIDR4, net_pool, .def_str = "10.201.0.0/16"),
        [NODE_NET_ENABLED] = NF("net.enabled", FT_BOOL, net_enabled, .def_num = 1),
        [NODE_NET_DNS_UPSTREAM] = NF("net.dns_upstream", FT_OPTIPV4, net_dns_upstream, .def_str = ""),
        [NODE_NET_DNS_WILDCARD_NAMES] = NF(
                "net.dns_wildcard_names", FT_U32, net_dns_wildcard_names, .min = 1, .max = 4096, .def_num = 16),
        [NODE_LEASE_GRACE] = NF(
                "pods.lease_grace_seconds", FT_U32, lease_grace_seconds, .min = 1, .max = 3600, .def_num = 30),
        [NODE_LIVENESS_TIMEOUT] = NF(
                "pods.liveness_timeout_seconds",
                FT_U32,
                liveness_timeout_seconds,
                .min = 1,
                .max = 3600,
                .def_num = 15),
        [NODE_KEEP_ENDED] = NF("pods.keep_ended", FT_U32, keep_ended, .min = 0, .max = 100000, .def_num = 100),
        [NODE_KEEP_ENDED_SECONDS] = NF(
                "pods.keep_ended_seconds",
                FT_U64,
                keep_ended_seconds,
                .min = 0,
                .max = UINT64_C(315360000),
                .def_num = 604800),
        [NODE_TCG_TB_MIB] = NF("pods.tcg_tb_mib", FT_U32, tcg_tb_mib, .min = 4, .max = 2048, .def_num = 32),
        [NODE_KSM] = NF("pods.ksm", FT_BOOL, ksm, .def_num = 0),
        [NODE_POOL_IMAGES] = NF("pool.images", FT_COUNTS, pool_images, .min = 0, .max = 64),
        [NODE_POOL_MEMORY_BUDGET] = NF(
                "pool.memory_budget_mib", FT_U64, pool_memory_budget_mib, .min = 0, .max = 1048576, .def_num = 4096),
        [NODE_POOL_RESTORE] = NF(
                "pool.restore", FT_ENUM, pool_restore, .def_str = "auto", .choices = pool_restores),
        [NODE_SNAPSHOTS_MAX_COUNT] = NF(
                "snapshots.max_count", FT_U32, snapshots_max_count, .min = 0, .max = 10000, .def_num = 32),
        [NODE_SNAPSHOTS_MAX_MIB] = NF(
                "snapshots.max_mib", FT_U64, snapshots_max_mib, .min = 0, .max = 16777216, .def_num = 16384),
        [NODE_POOL_NETWORK] = NF("pool.network", FT_BOOL, pool_network, .def_num = 0),
};
#undef NF

/* Check a string value for its type; NULL if fine, else a malloc'd problem. */

char *config_check_listen(const char *s) {
        const char *colon = strrchr(s, ':');
        uint32_t port;
        if (!colon || colon == s || safe_atou32(colon + 1, &port) < 0 || port == 0 || port > 65535)
                return xstrdup("must be HOST:PORT (IPv6 as [ADDR]:PORT), port 1..65535");
        _cleanup_free_ char *host = xstrndup(s, (size_t) (colon - s));
        uint8_t buf[16];
        if (host[0] == '[') {
                size_t hl = strlen(host);
                if (hl < 3 || host[hl - 1] != ']')
                        return xstrdup("must be HOST:PORT (IPv6 as [ADDR]:PORT)");
                host[hl - 1] = 0;
                if (inet_pton(AF_INET6, host + 1, buf) != 1)
                        return xstrdup("host must be an IP address");
        } else if (inet_pton(AF_INET, host, buf) != 1)
                return xstrdup("host must be an IPv4 address (IPv6 as [ADDR]:PORT)");
        return NULL;
}

static char *check_string(const Field *f, const char *s) {
        size_t n = strlen(s);
        if (n > 4096)
                return xstrdup("must be at most 4096 characters");
        if (string_has_cc(s, NULL))
                return xstrdup("must not contain control characters");
        switch (f->type) {
        case FT_STRING:
                if (f->max && n > f->max)
                        return xasprintf("must be at most %" PRIu64 " characters", f->max);
                return NULL;
        case FT_ENUM: {
                for (const char *const *c = f->choices; *c; c++)
                        if (streq(*c, s))
                                return NULL;
                _cleanup_free_ char *l = strv_join((char **) f->choices, ", ");
                return xasprintf("must be one of: %s", l);
        }
        case FT_PROFILE:
                return policy_profile_canonical_name(s) ? NULL : xasprintf("unknown policy profile '%s'", s);
        case FT_NAME:
                if (n == 0 || n > 64 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')) ||
                    strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") != n || strstr(s, ".."))
                        return xstrdup("must match [a-z0-9][a-z0-9._-]* (at most 64 characters)");
                return NULL;
        case FT_URL:
                if ((!startswith(s, "http://") && !startswith(s, "https://")) || strpbrk(s, " \"'<>\\"))
                        return xstrdup("must be an http:// or https:// URL");
                return NULL;
        case FT_ENVNAME:
                if (n == 0 || n > 128 || (s[0] >= '0' && s[0] <= '9') ||
                    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != n)
                        return xstrdup("must be an environment variable NAME ([A-Z_][A-Z0-9_]*), not a "
                                       "secret");
                return NULL;
        case FT_ABSPATH:
        case FT_OPTPATH:
                if (f->type == FT_OPTPATH && n == 0)
                        return NULL;
                if (s[0] != '/' || strstr(s, "/../") || endswith(s, "/.."))
                        return xstrdup("must be an absolute path without '..'");
                return NULL;
        case FT_BINARY:
                if (n == 0 || (strchr(s, '/') && s[0] != '/'))
                        return xstrdup("must be a program name or an absolute path");
                return NULL;
        case FT_LISTEN:
                return config_check_listen(s);
        case FT_OPTIPV4: {
                uint8_t a[4];
                if (n > 0 && inet_pton(AF_INET, s, a) != 1)
                        return xstrdup("must be an IPv4 address (or empty: the first IPv4 nameserver in "
                                       "/etc/resolv.conf)");
                return NULL;
        }
        case FT_CIDR4: {
                const char *slash = strchr(s, '/');
                uint32_t prefix;
                uint8_t a[4];
                if (!slash || safe_atou32(slash + 1, &prefix) < 0 || prefix < 8 || prefix > 28)
                        return xstrdup("must be an IPv4 CIDR with a prefix of 8..28");
                _cleanup_free_ char *addr = xstrndup(s, (size_t) (slash - s));
                if (inet_pton(AF_INET, addr, a) != 1)
                        return xstrdup("must be an IPv4 CIDR");
                uint32_t v = (uint32_t) a[0] << 24 | (uint32_t) a[1] << 16 | (uint32_t) a[2] << 8 | a[3];
                if (v & (prefix == 32 ? 0 : (0xffffffffu >> prefix)))
                        return xstrdup("address has bits set beyond the prefix");
                return NULL;
        }
        default:
                return xstrdup("internal: not a string field");
        }
}

static void field_set_default(const Field *f, void *base) {
        char *p = (char *) base + f->offset;
        switch (f->type) {
        case FT_BOOL:
                *(bool *) p = f->def_num != 0;
                break;
        case FT_U32:
                *(uint32_t *) p = (uint32_t) f->def_num;
                break;
        case FT_U64:
        case FT_USD:
                *(uint64_t *) p = f->def_num;
                break;
        case FT_STRV:
                *(char ***) p = strv_free(*(char ***) p);
                break;
        case FT_COUNTS:
        case FT_IMAGE_TABLES:
                json_decref(*(json_t **) p);
                *(json_t **) p = json_object();
                break;
        default:
                free(*(char **) p);
                *(char **) p = f->def_str ? xstrdup(f->def_str) : NULL;
                break;
        }
}

static void field_free(const Field *f, void *base) {
        char *p = (char *) base + f->offset;
        if (f->type == FT_STRV)
                *(char ***) p = strv_free(*(char ***) p);
        else if (f->type == FT_COUNTS || f->type == FT_IMAGE_TABLES) {
                json_decref(*(json_t **) p);
                *(json_t **) p = NULL;
        } else if (f->type != FT_BOOL && f->type != FT_U32 && f->type != FT_U64 && f->type != FT_USD)
                *(char **) p = mfree(*(char **) p);
}

/* Apply a JSON value to a field; *ret_problem gets a malloc'd message on error. */
static int field_apply_json(const Field *f, void *base, const json_t *v, char **ret_problem) {
        char *p = (char *) base + f->offset;
        switch (f->type) {
        case FT_BOOL:
                if (!json_is_boolean(v)) {
                        *ret_problem = xstrdup("must be true or false");
                        return -EINVAL;
                }
                *(bool *) p = json_is_true(v);
                return 0;
        case FT_U32:
        case FT_U64: {
                if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                    (uint64_t) json_integer_value(v) < f->min || (uint64_t) json_integer_value(v) > f->max) {
                        *ret_problem = xasprintf("must be an integer %" PRIu64 "..%" PRIu64, f->min, f->max);
                        return -EINVAL;
                }
                if (f->type == FT_U32)
                        *(uint32_t *) p = (uint32_t) json_integer_value(v);
                else
                        *(uint64_t *) p = (uint64_t) json_integer_value(v);
                return 0;
        }
        case FT_USD: {
                double d = json_is_number(v) ? json_number_value(v) : -1;
                if (!json_is_number(v) || !isfinite(d) || d < 0 || d * 1e6 > (double) f->max) {
                        *ret_problem = xasprintf(
                                "must be a number of US dollars, 0..%g", (double) f->max / 1e6);
                        return -EINVAL;
                }
                *(uint64_t *) p = (uint64_t) llround(d * 1e6);
                return 0;
        }
        case FT_STRV: {
                if (!json_is_array(v) || json_array_size(v) > f->max) {
                        *ret_problem = xasprintf("must be a list of at most %" PRIu64 " strings", f->max);
                        return -EINVAL;
                }
                _cleanup_strv_free_ char **l = NULL;
                for (size_t i = 0; i < json_array_size(v); i++) {
                        json_t *x = json_array_get(v, i);
                        if (!json_is_string(x) || json_string_length(x) == 0 || json_string_length(x) > 128 ||
                            strspn(json_string_value(x), "abcdefghijklmnopqrstuvwxyz0123456789.+-:") !=
                                    json_string_length(x)) {
                                *ret_problem = xasprintf("item %zu must be a package name", i);
                                return -EINVAL;
                        }
                        strv_extend(&l, json_string_value(x));
                }
                strv_free(*(char ***) p);
                *(char ***) p = TAKE_PTR(l);
                return 0;
        }
        case FT_COUNTS: {
                /* { NAME = N, ... }: each NAME an image name, each N an integer min..max. */
                if (!json_is_object(v) || json_object_size(v) > 64) {
                        *ret_problem = xstrdup("must be a table of image names to counts (at most 64 "
                                               "images)");
                        return -EINVAL;
                }
                const char *name;
                json_t *x;
                Field name_field = { .type = FT_NAME };
                json_object_foreach((json_t *) v, name, x) {
                        _cleanup_free_ char *bad = check_string(&name_field, name);
                        if (bad) {
                                *ret_problem = xasprintf("image name '%s' %s", name, bad);
                                return -EINVAL;
                        }
                        if (!json_is_integer(x) || json_integer_value(x) < 0 ||
                            (uint64_t) json_integer_value(x) < f->min ||
                            (uint64_t) json_integer_value(x) > f->max) {
                                *ret_problem = xasprintf(
                                        "%s: must be an integer %" PRIu64 "..%" PRIu64, name, f->min, f->max);
                                return -EINVAL;
                        }
                }
                json_decref(*(json_t **) p);
                *(json_t **) p = json_deep_copy(v);
                return 0;
        }
        case FT_IMAGE_TABLES:
                *ret_problem = xstrdup("set in config.toml as [images.NAME] tables with packages = [...]");
                return -EINVAL;
        default: {
                if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
                        *ret_problem = xstrdup("must be a string");
                        return -EINVAL;
                }
                char *problem = check_string(f, json_string_value(v));
                if (problem) {
                        *ret_problem = problem;
                        return -EINVAL;
                }
                free(*(char **) p);
                *(char **) p = xstrdup(json_string_value(v));
                return 0;
        }
        }
}

/* Parse flag text into a JSON value for the field's type. */
static json_t *field_text_to_json(const Field *f, const char *text) {
        uint64_t u;
        switch (f->type) {
        case FT_BOOL:
                if (streq(text, "true") || streq(text, "yes") || streq(text, "1"))
                        return json_true();
                if (streq(text, "false") || streq(text, "no") || streq(text, "0"))
                        return json_false();
                return json_string(text); /* type error reported by apply */
        case FT_U32:
        case FT_U64:
                if (safe_atou64(text, &u) < 0 || u > INT64_MAX)
                        return json_string(text);
                return json_integer((json_int_t) u);
        case FT_USD:
                if (parse_micros(text, &u) < 0)
                        return json_string(text);
                return json_real((double) u / 1e6);
        case FT_STRV: {
                json_t *a = json_array();
                _cleanup_free_ char *copy = xstrdup(text);
                char *save = NULL;
                for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                        json_array_append_new(a, json_string(t));
                return a;
        }
        case FT_COUNTS: {
                /* "NAME=N,NAME=N" */
                json_t *o = json_object();
                _cleanup_free_ char *copy = xstrdup(text);
                char *save = NULL;
                for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                        char *eq = strchr(t, '=');
                        if (!eq || safe_atou64(eq + 1, &u) < 0 || u > INT64_MAX) {
                                json_decref(o);
                                return json_string(text); /* type error reported by apply */
                        }
                        *eq = 0;
                        json_object_set_new(o, t, json_integer((json_int_t) u));
                }
                return o;
        }
        default:
                return json_string(text);
        }
}

static json_t *field_to_json(const Field *f, const void *base) {
        const char *p = (const char *) base + f->offset;
        switch (f->type) {
        case FT_BOOL:
                return json_boolean(*(const bool *) p);
        case FT_U32:
                return json_integer(*(const uint32_t *) p);
        case FT_U64:
                return json_integer((json_int_t) * (const uint64_t *) p);
        case FT_USD:
                return json_real((double) *(const uint64_t *) p / 1e6);
        case FT_STRV: {
                json_t *a = json_array();
                STRV_FOREACH(s, *(char **const *) p)
                        json_array_append_new(a, json_string(*s));
                return a;
        }
        case FT_COUNTS:
        case FT_IMAGE_TABLES:
                return *(json_t *const *) p ? json_deep_copy(*(json_t *const *) p) : json_object();
        default:
                return *(char *const *) p ? json_string(*(char *const *) p) : json_null();
        }
}

typedef struct Schema {
        const Field *fields;
        size_t n;
} Schema;

static const Field *schema_find(const Schema *s, const char *key) {
        for (size_t i = 0; i < s->n; i++)
                if (streq(s->fields[i].key, key))
                        return &s->fields[i];
        return NULL;
}

/* A Debian package name (Debian Policy 5.6.7): lower-case letters, digits, '+', '-' and '.',
 * at least two characters, starting with a letter or digit. No ":arch" qualifier: the image
 * builder installs for the guest's one architecture. */
static bool debian_package_name_valid(const char *s) {
        size_t n = strlen(s);
        return n >= 2 && n <= 128 && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')) &&
                strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789+-.") == n;
}

/* One [images.NAME] table: only `packages`, a non-empty list of Debian package names. Returns
 * 0, or -EINVAL with the problem and the key it concerns (for its position). */
static int image_table_apply(
        const Field *f, void *base, const char *name, const json_t *v, char **ret_problem, char **ret_subkey) {
        json_t **p = (json_t **) ((char *) base + f->offset);
        Field name_field = { .type = FT_NAME };
        _cleanup_free_ char *bad = check_string(&name_field, name);
        if (bad || streq(name, "default") || streq(name, "cache")) {
                *ret_problem = xasprintf(
                        "'%s' is not an image name: %s",
                        name,
                        bad
                                ?: "'default' and 'cache' are reserved (the default image is built by "
                                   "nucleus setup with [images] packages)");
                return -EINVAL;
        }
        if (!*p)
                *p = json_object();
        if (json_object_size(*p) >= f->max) {
                *ret_problem = xasprintf("at most %" PRIu64 " [images.NAME] tables", f->max);
                return -EINVAL;
        }
        const char *k;
        json_t *x;
        json_object_foreach((json_t *) v, k, x)
                if (!streq(k, "packages")) {
                        *ret_subkey = xstrdup(k);
                        *ret_problem = xasprintf(
                                "unknown key '%s' (an [images.NAME] table takes only packages)", k);
                        return -EINVAL;
                }
        json_t *pk = json_object_get(v, "packages");
        if (!pk) {
                *ret_problem = xstrdup("packages = [...] is required (the Debian packages of this image)");
                return -EINVAL;
        }
        *ret_subkey = xstrdup("packages");
        if (!json_is_array(pk) || json_array_size(pk) == 0 || json_array_size(pk) > 256) {
                *ret_problem = xstrdup("must be a list of 1..256 Debian package names");
                return -EINVAL;
        }
        size_t i;
        json_array_foreach(pk, i, x)
                if (!json_is_string(x) || !debian_package_name_valid(json_string_value(x))) {
                        _cleanup_free_ char *shown = json_is_string(x)
                                ? string_make_visible(json_string_value(x))
                                : xstrdup("(not a string)");
                        *ret_problem = xasprintf(
                                "item %zu '%s' is not a Debian package name (lower-case letters, digits, "
                                "'+', '-' "
                                "and '.', at least two characters, starting with a letter or digit)",
                                i,
                                shown);
                        return -EINVAL;
                }
        json_object_set_new(*p, name, json_pack("{s:O}", "packages", pk));
        *ret_subkey = mfree(*ret_subkey);
        return 0;
}

static int schema_load(
        const Schema *sc,
        void *base,
        ConfigOrigin *origins,
        const char *text,
        size_t n,
        const char *file,
        char **reterr) {
        _cleanup_json_ json_t *root = NULL;
        SpecPosTable pos = {};
        int r = toml_parse(text, n, file, &root, &pos, reterr);
        if (r < 0) {
                spec_pos_done(&pos);
                return r;
        }
        const char *k1, *k2;
        json_t *v1, *v2;
        json_object_foreach(root, k1, v1) {
                bool section = json_is_object(v1) && !schema_find(sc, k1);
                json_t *single = json_pack("{s:O}", k1, v1);
                json_t *iter = section ? v1 : single;
                json_object_foreach(iter, k2, v2) {
                        _cleanup_free_ char *key = section ? xasprintf("%s.%s", k1, k2) : xstrdup(k2);
                        const Field *f = schema_find(sc, key);
                        _cleanup_free_ char *problem = NULL;
                        if (!f && section && json_is_object(v2)) {
                                /* [SECTION.NAME] tables: one field stands for every NAME. */
                                _cleanup_free_ char *wild = xasprintf("%s.NAME", k1);
                                const Field *t = schema_find(sc, wild);
                                if (t && t->type == FT_IMAGE_TABLES) {
                                        _cleanup_free_ char *sub = NULL;
                                        if (image_table_apply(t, base, k2, v2, &problem, &sub) < 0) {
                                                _cleanup_free_ char *path = sub ? xasprintf("%s.%s", key, sub)
                                                                                : xstrdup(key);
                                                if (reterr)
                                                        *reterr = spec_error(file, &pos, path, "%s", problem);
                                                r = -EINVAL;
                                                break;
                                        }
                                        unsigned line = 0, col = 0;
                                        (void) spec_pos_find(&pos, key, &line, &col);
                                        json_object_set_new(
                                                json_object_get(*(json_t **) ((char *) base + t->offset), k2),
                                                "line",
                                                json_integer(line));
                                        origins[t - sc->fields] = (ConfigOrigin){ .source = CONFIG_SOURCE_FILE,
                                                                                  .line = line };
                                        continue;
                                }
                        }
                        if (!f) {
                                bool known_section = false;
                                for (size_t i = 0; i < sc->n; i++)
                                        if (startswith(sc->fields[i].key, k1) &&
                                            sc->fields[i].key[strlen(k1)] == '.')
                                                known_section = true;
                                if (endswith(k2, "api_key") || endswith(k2, "secret") || endswith(k2, "token"))
                                        problem = xstrdup("unknown key; secrets never go in config files "
                                                          "(name an "
                                                          "environment variable or a secret file instead)");
                                else if (!section && json_is_object(v2))
                                        problem = xstrdup("unknown section");
                                else
                                        problem = xstrdup(
                                                known_section || !section ? "unknown key" : "unknown section");
                                if (reterr)
                                        *reterr = spec_error(file, &pos, key, "%s", problem);
                                r = -EINVAL;
                                break;
                        }
                        if (field_apply_json(f, base, v2, &problem) < 0) {
                                if (reterr)
                                        *reterr = spec_error(file, &pos, key, "%s", problem);
                                r = -EINVAL;
                                break;
                        }
                        unsigned line = 0, col = 0;
                        (void) spec_pos_find(&pos, key, &line, &col);
                        origins[f - sc->fields] = (ConfigOrigin){ .source = CONFIG_SOURCE_FILE, .line = line };
                }
                json_decref(single);
                if (r < 0)
                        break;
        }
        spec_pos_done(&pos);
        return r;
}

static int schema_set(
        const Schema *sc, void *base, ConfigOrigin *origins, const char *key, const char *value, char **reterr) {
        const Field *f = schema_find(sc, key);
        if (!f) {
                if (reterr)
                        *reterr = xasprintf("%s: unknown config key", key);
                return -EINVAL;
        }
        _cleanup_json_ json_t *v = field_text_to_json(f, value);
        _cleanup_free_ char *problem = NULL;
        if (!v || field_apply_json(f, base, v, &problem) < 0) {
                if (reterr)
                        *reterr = xasprintf("%s: %s", key, problem ? problem : "invalid value");
                return -EINVAL;
        }
        origins[f - sc->fields] = (ConfigOrigin){ .source = CONFIG_SOURCE_FLAG };
        return 0;
}

static json_t *schema_to_json(const Schema *sc, const void *base, const ConfigOrigin *origins, bool with_origins) {
        json_t *j = json_object();
        for (size_t i = 0; i < sc->n; i++) {
                json_t *v = field_to_json(&sc->fields[i], base);
                if (with_origins) {
                        json_t *o = json_pack(
                                "{s:o,s:s}", "value", v, "source", config_source_to_string(origins[i].source));
                        if (origins[i].source == CONFIG_SOURCE_FILE && origins[i].line > 0)
                                json_object_set_new(o, "line", json_integer(origins[i].line));
                        v = o;
                }
                json_object_set_new(j, sc->fields[i].key, v);
        }
        return j;
}

static int read_config_file(const char *path, bool must_exist, char **ret_data, size_t *ret_n, char **reterr) {
        int r = read_full_file_at(AT_FDCWD, path, TOML_MAX_SIZE, ret_data, ret_n);
        if (r == -ENOENT && !must_exist)
                return 0;
        if (r < 0) {
                if (reterr)
                        *reterr = xasprintf("%s: %s", path, r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
                return r;
        }
        return 1;
}

/* ---- CLI --------------------------------------------------------------------------------- */

static const Schema cli_schema = { cli_fields, _CLI_CONFIG_FIELD_MAX };

int cli_config_default_path(char **ret) {
        const char *e = secure_getenv("XDG_CONFIG_HOME");
        if (!isempty(e) && e[0] == '/') {
                *ret = xasprintf("%s/nucleus/config.toml", e);
                return 0;
        }
        e = secure_getenv("HOME");
        if (isempty(e) || e[0] != '/')
                return -ENOENT;
        *ret = xasprintf("%s/.config/nucleus/config.toml", e);
        return 0;
}

/* Provider-dependent defaults for fields the user did not set. */
static void cli_config_fixup(CliConfig *c) {
        if (!streq(c->model.provider, "anthropic"))
                return;
        struct {
                CliConfigField f;
                const char *s;
                uint64_t n;
        } d[] = {
                { CLI_MODEL_BASE_URL, "https://api.anthropic.com", 0 },
                { CLI_MODEL_MODEL, "claude-sonnet-4-5", 0 },
                { CLI_MODEL_API_KEY_ENV, "ANTHROPIC_API_KEY", 0 },
                { CLI_MODEL_PRICE_IN, NULL, 3000000 },
                { CLI_MODEL_PRICE_OUT, NULL, 15000000 },
        };
        for (size_t i = 0; i < ELEMENTSOF(d); i++) {
                if (c->origins[d[i].f].source != CONFIG_SOURCE_DEFAULT)
                        continue;
                char *p = (char *) c + cli_fields[d[i].f].offset;
                if (d[i].s) {
                        free(*(char **) p);
                        *(char **) p = xstrdup(d[i].s);
                } else
                        *(uint64_t *) p = d[i].n;
        }
}

CliConfig *cli_config_free(CliConfig *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < cli_schema.n; i++)
                field_free(&cli_fields[i], c);
        free(c->path);
        free(c);
        return NULL;
}

int cli_config_load(const char *path, bool must_exist, CliConfig **ret, char **reterr) {
        _cleanup_free_ char *def = NULL, *data = NULL;
        size_t n = 0;
        int r;
        if (!path) {
                r = cli_config_default_path(&def);
                if (r < 0) {
                        if (reterr)
                                *reterr = xstrdup("cannot locate config.toml: neither XDG_CONFIG_HOME nor "
                                                  "HOME is set");
                        return r;
                }
                path = def;
        }
        CliConfig *c = xnew0(CliConfig, 1);
        for (size_t i = 0; i < cli_schema.n; i++)
                field_set_default(&cli_fields[i], c);
        r = read_config_file(path, must_exist, &data, &n, reterr);
        if (r > 0) {
                c->path = xstrdup(path);
                r = schema_load(&cli_schema, c, c->origins, data, n, path, reterr);
        }
        if (r < 0) {
                cli_config_free(c);
                return r;
        }
        cli_config_fixup(c);
        *ret = c;
        return 0;
}

int cli_config_set(CliConfig *c, const char *key, const char *value, char **reterr) {
        int r = schema_set(&cli_schema, c, c->origins, key, value, reterr);
        if (r >= 0)
                cli_config_fixup(c);
        return r;
}

json_t *cli_config_to_json(const CliConfig *c, bool with_origins) {
        return schema_to_json(&cli_schema, c, c->origins, with_origins);
}

/* ---- Node -------------------------------------------------------------------------------- */

static const Schema node_schema = { node_fields, _NODE_CONFIG_FIELD_MAX };

NodeConfig *node_config_free(NodeConfig *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < node_schema.n; i++)
                field_free(&node_fields[i], c);
        free(c->path);
        free(c);
        return NULL;
}

static int node_config_check(NodeConfig *c, char **reterr) {
        if (c->default_timeout_seconds > c->max_timeout_seconds) {
                if (reterr)
                        *reterr = xasprintf(
                                "%s%spods.default_timeout_seconds (%" PRIu64 ") is above "
                                "pods.max_timeout_seconds "
                                "(%" PRIu64 ")",
                                c->path ? c->path : "",
                                c->path ? ": " : "",
                                c->default_timeout_seconds,
                                c->max_timeout_seconds);
                return -EINVAL;
        }
        if (streq(c->listen, c->metrics_listen)) {
                if (reterr)
                        *reterr = xasprintf("node.listen and node.metrics_listen must differ");
                return -EINVAL;
        }
        return 0;
}

int node_config_load(const char *path, bool must_exist, NodeConfig **ret, char **reterr) {
        _cleanup_free_ char *data = NULL;
        size_t n = 0;
        int r;
        if (!path)
                path = NODE_CONFIG_DEFAULT_PATH;
        NodeConfig *c = xnew0(NodeConfig, 1);
        for (size_t i = 0; i < node_schema.n; i++)
                field_set_default(&node_fields[i], c);
        r = read_config_file(path, must_exist, &data, &n, reterr);
        if (r > 0) {
                c->path = xstrdup(path);
                r = schema_load(&node_schema, c, c->origins, data, n, path, reterr);
        }
        if (r >= 0)
                r = node_config_check(c, reterr);
        if (r < 0) {
                node_config_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

int node_config_set(NodeConfig *c, const char *key, const char *value, char **reterr) {
        int r = schema_set(&node_schema, c, c->origins, key, value, reterr);
        if (r < 0)
                return r;
        return node_config_check(c, reterr);
}

json_t *node_config_to_json(const NodeConfig *c, bool with_origins) {
        return schema_to_json(&node_schema, c, c->origins, with_origins);
}
