/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Config files (docs/config.md): the CLI's config.toml and the node's node.toml. Both are
 * parsed with our strict TOML subset and checked against a field table: unknown keys, wrong
 * types and out-of-range values are errors naming FILE:LINE:COL. Each loader returns a struct
 * with defaults applied and remembers where every value came from (default, file:line, or a
 * command-line flag) so `nucleus config` can show it. Secrets never live in these files: only
 * paths to secret files and names of environment variables.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum ConfigSource {
        CONFIG_SOURCE_DEFAULT,
        CONFIG_SOURCE_FILE,
        CONFIG_SOURCE_FLAG,
        _CONFIG_SOURCE_MAX,
        _CONFIG_SOURCE_INVALID = -22,
} ConfigSource;

typedef struct ConfigOrigin {
        ConfigSource source;
        unsigned line; /* CONFIG_SOURCE_FILE: 1-based line in the loaded file */
} ConfigOrigin;

/* ---- CLI config ($XDG_CONFIG_HOME/nucleus/config.toml) ------------------------------------ */

typedef enum CliConfigField {
        CLI_DEFAULT_PROFILE,
        CLI_VM_NAME,
        CLI_VM_AUTO_START,
        CLI_VM_CPUS,
        CLI_VM_MEMORY_GIB,
        CLI_VM_DISK_GIB,
        CLI_NODE_URL,
        CLI_NODE_ACTOR,
        CLI_BUDGET_MAX_COST_USD,
        CLI_BUDGET_MAX_INPUT_TOKENS,
        CLI_BUDGET_MAX_OUTPUT_TOKENS,
        CLI_BUDGET_TIMEOUT_SECONDS,
        CLI_MODEL_PROVIDER,
        CLI_MODEL_BASE_URL,
        CLI_MODEL_MODEL,
        CLI_MODEL_API_KEY_ENV,
        CLI_MODEL_PRICE_IN,
        CLI_MODEL_PRICE_OUT,
        CLI_MODEL_CONNECT_TIMEOUT,
        CLI_MODEL_IDLE_TIMEOUT,
        CLI_IMAGES_DEFAULT,
        CLI_IMAGES_PACKAGES,
        CLI_IMAGES_NAMED,
        CLI_AUTH_SECRETS_DIR,
        CLI_APPROVALS_WEBHOOK,
        _CLI_CONFIG_FIELD_MAX,
} CliConfigField;

typedef struct CliConfig {
        char *path;            /* file loaded, NULL when none existed (all defaults) */
        char *default_profile; /* "default_profile", default "restrictive" */
        struct {
                char *name;          /* "nucleus": Lima VM name (macOS) */
                bool auto_start;     /* true */
                uint32_t cpus;       /* 4, 1..64 */
                uint32_t memory_gib; /* 8, 1..512 */
                uint32_t disk_gib;   /* 50, 10..4096 */
        } vm;
        struct {
                char *url;   /* "http://127.0.0.1:8080" */
                char *actor; /* "nucleus-cli" (X-Nucleus-Actor) */
        } node;
        struct {
                uint64_t max_cost_usd_micros; /* 5.0 USD */
                uint64_t max_input_tokens;    /* 100000 */
                uint64_t max_output_tokens;   /* 10000 */
                uint64_t timeout_seconds;     /* 3600, 1..86400 */
        } budget;
        struct {
                char *provider; /* "openai" | "anthropic"; default "openai" */
                char *base_url; /* default per provider: https://api.openai.com/v1 | https://api.anthropic.com */
                char *model;       /* default per provider: gpt-4o-mini | claude-sonnet-4-5 */
                char *api_key_env; /* NAME of the env var holding the key: OPENAI_API_KEY | ANTHROPIC_API_KEY */
                uint64_t price_in_per_mtok_usd_micros;  /* per million input tokens; default per provider */
                uint64_t price_out_per_mtok_usd_micros; /* per million output tokens */
                uint64_t connect_timeout_seconds;       /* 30, 1..600; never past the run's deadline */
                uint64_t idle_timeout_seconds;          /* 120, 1..3600: longest silence of the model */
        } model;
        struct {
                char *default_image; /* "default" */
                char **packages;     /* extra Debian packages for `nucleus setup` rootfs builds (strv) */
                json_t *named;       /* [images.NAME] packages = [...]: named images to build,
                                      * {"NAME": {"packages": [...], "line": N}}; {} by default */
        } images;
        struct {
                char *secrets_dir; /* NULL = secret_dir_default() */
        } auth;
        struct {
                char *webhook; /* "" = none: where pending approvals are posted (docs/approvals.md) */
        } approvals;
        ConfigOrigin origins[_CLI_CONFIG_FIELD_MAX];
} CliConfig;

/* Default path: $XDG_CONFIG_HOME/nucleus/config.toml or ~/.config/nucleus/config.toml (the same
 * on macOS, fixing the reference's split). -ENOENT without HOME. */
int cli_config_default_path(char **ret);

/*
 * cli_config_load: load path (NULL = the default path). A missing file gives all defaults
 * unless must_exist. Returns 0 and *ret, or -errno with *reterr ("FILE:LINE:COL: key: ...").
 */
int cli_config_load(const char *path, bool must_exist, CliConfig **ret, char **reterr);
CliConfig *cli_config_free(CliConfig *c);

/* Override one value from a command-line flag ("node.url", "budget.max_cost_usd", ...): the
 * value text is parsed per the field's type; origin becomes CONFIG_SOURCE_FLAG. */
int cli_config_set(CliConfig *c, const char *key, const char *value, char **reterr);

/* {"key": {"value": ..., "source": "default"|"file"|"flag", "line": N?}, ...} with dotted keys,
 * for `nucleus config --output json`; with_origins false gives {"key": value}. */
json_t *cli_config_to_json(const CliConfig *c, bool with_origins);

/* ---- Node config (/etc/nucleus/node.toml) ------------------------------------------------ */

typedef enum NodeConfigField {
        NODE_LISTEN,
        NODE_METRICS_LISTEN,
        NODE_STATE_DIR,
        NODE_IMAGES_DIR,
        NODE_DRIVER,
        NODE_ACCEL,
        NODE_MAX_PODS,
        NODE_MAX_BODY_BYTES,
        NODE_MAX_UPLOAD_BYTES,
        NODE_MAX_TOOL_BODY_BYTES,
        NODE_DEFAULT_TIMEOUT,
        NODE_MAX_TIMEOUT,
        NODE_QEMU_BINARY,
        NODE_FIRECRACKER_BINARY,
        NODE_SECRET_FILE,
        NODE_APPROVER_PUBLIC_KEY_FILE,
        NODE_AUDIT_SIGNING_KEY_FILE,
        NODE_NET_POOL,
        NODE_NET_ENABLED,
        NODE_NET_DNS_UPSTREAM,
        NODE_NET_DNS_WILDCARD_NAMES,
        NODE_LEASE_GRACE,
        NODE_LIVENESS_TIMEOUT,
        NODE_KEEP_ENDED,
        NODE_KEEP_ENDED_SECONDS,
        NODE_TCG_TB_MIB,
        NODE_KSM,
        NODE_POOL_IMAGES,
        NODE_POOL_MEMORY_BUDGET,
        NODE_POOL_RESTORE,
        NODE_SNAPSHOTS_MAX_COUNT,
        NODE_SNAPSHOTS_MAX_MIB,
        NODE_POOL_NETWORK,
        _NODE_CONFIG_FIELD_MAX,
} NodeConfigField;

typedef struct NodeConfig {
        char *path;                   /* file loaded, or NULL */
        char *listen;                 /* [node] listen = "127.0.0.1:8080" (HOST:PORT; IPv6 as [::1]:8080) */
        char *metrics_listen;         /* [node] metrics_listen = "127.0.0.1:9080" */
        char *state_dir;              /* [node] state_dir = "/var/lib/nucleus" (absolute) */
        char *images_dir;             /* [node] images_dir = "/var/lib/nucleus/images" (absolute) */
        char *driver;                 /* [pods] driver = "qemu" | "firecracker" | "local" */
        char *accel;                  /* [pods] accel = "auto" | "kvm" | "tcg" */
        uint32_t max_pods;            /* [pods] max_pods = 16, 1..1024 */
        uint64_t max_body_bytes;      /* [node] max_body_bytes = 10485760, 1024..1073741824 */
        uint64_t max_upload_bytes;    /* [node] max_upload_bytes = 268435456 (workspace tar), 1 MiB..1 TiB */
        uint64_t max_tool_body_bytes; /* [node] max_tool_body_bytes = 67108864 (one tool call), 1 MiB..1 GiB */
        uint64_t default_timeout_seconds; /* [pods] default_timeout_seconds = 3600 */
        uint64_t max_timeout_seconds;     /* [pods] max_timeout_seconds = 86400 */
        char *qemu_binary;        /* [pods] qemu_binary = "qemu-system-x86_64" (name or absolute path) */
        char *firecracker_binary; /* [pods] firecracker_binary = "firecracker" */
        char *node_secret_file;   /* [secrets] node_secret_file = "/etc/nucleus/secrets/node.key" */
        char *approver_public_key_file;    /* [secrets] approver_public_key_file = ".../approver.pub" */
        char *audit_signing_key_file;      /* [secrets] audit_signing_key_file = ".../audit.key" */
        char *net_pool;                    /* [net] pool = "10.201.0.0/16" (IPv4 CIDR carved into /30s) */
        bool net_enabled;                  /* [net] enabled = true */
        char *net_dns_upstream;            /* [net] dns_upstream = "" (IPv4 address the pods' dnsmasq
                                            * forwards allowed names to; "" = the first non-loopback
                                            * IPv4 nameserver in /etc/resolv.conf) */
        uint32_t net_dns_wildcard_names;   /* [net] dns_wildcard_names = 16, 1..4096: distinct names a
                                            * pod may resolve under each wildcard dns_allow entry */
        uint32_t lease_grace_seconds;      /* [pods] lease_grace_seconds = 30, 1..3600: a leased pod
                                            * without a renewal for this long is ended */
        uint32_t liveness_timeout_seconds; /* [pods] liveness_timeout_seconds = 15, 1..3600: a guest
                                            * silent on its channel this long fails its pod */
        uint32_t keep_ended;               /* [pods] keep_ended = 100, 0..100000: ended pods kept */
        uint64_t keep_ended_seconds;       /* [pods] keep_ended_seconds = 604800: and for how long */
        uint32_t tcg_tb_mib;               /* [pods] tcg_tb_mib = 32, 4..2048: QEMU's TCG translation
                                            * cache per pod (the most a pod's QEMU keeps of it) */
        bool ksm;                          /* [pods] ksm = false: guest RAM mergeable by the host's KSM */
        json_t *pool_images;               /* [pool.images] NAME = N (0..64): pods of image NAME booted
                                            * ahead for create to claim; {} by default (no pool) */
        uint64_t pool_memory_budget_mib;   /* [pool] memory_budget_mib = 4096: most the pool may hold */
        char *pool_restore;                /* [pool] restore = "auto" | "off": refill the pool by restoring
                                            * a snapshot of its first booted pod (qemu, no NIC) */
        uint32_t snapshots_max_count;      /* [snapshots] max_count = 32, 0..10000 (0: no cap): snapshots
                                            * kept; past it the oldest of an ended parent goes first */
        uint64_t snapshots_max_mib;        /* [snapshots] max_mib = 16384, 0..16777216 (0: no cap): the
                                            * most their files hold, MiB (state + scratch copy) */
        bool pool_network;                 /* [pool] network = false: pooled pods boot with a parked NIC
                                            * and serve only specs with a network (driver qemu) */
        ConfigOrigin origins[_NODE_CONFIG_FIELD_MAX];
} NodeConfig;

#define NODE_CONFIG_DEFAULT_PATH "/etc/nucleus/node.toml"

int node_config_load(const char *path, bool must_exist, NodeConfig **ret, char **reterr);
/* NULL when s is an address the node can listen on ([node] listen / metrics_listen: IPv4
 * HOST:PORT or [IPv6]:PORT, port 1..65535), else a new message saying what is wrong. */
char *config_check_listen(const char *s);
NodeConfig *node_config_free(NodeConfig *c);
/* Flag override, e.g. ("node.listen", "127.0.0.1:18080"). */
int node_config_set(NodeConfig *c, const char *key, const char *value, char **reterr);
json_t *node_config_to_json(const NodeConfig *c, bool with_origins);

const char *config_source_to_string(ConfigSource s);
ConfigSource config_source_from_string(const char *s);
