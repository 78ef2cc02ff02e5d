/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PodSpec: what a client asks the node to run (docs/podspec.md). Parsed from YAML or JSON into
 * one struct, validated strictly (unknown keys, wrong types, out-of-range values and duplicate
 * keys are errors with FILE:LINE:COL and the key path), and serialized back to canonical JSON.
 * Input is untrusted (it arrives over the node API).
 *
 *   apiVersion: nucleus/v1
 *   kind: Pod
 *   metadata: {name: fix-bug-42, labels: {team: infra}}
 *   spec:
 *     policy: fix-issue                # or {profile: NAME | inline: {...}, max_cost_usd: 1.5, ...}
 *     timeout_seconds: 3600
 *     resources: {vcpus: 1, memory_mib: 512, scratch_mib: 2048}
 *     network: {allow: ["140.82.112.0/20:443/tcp"], deny: [], dns_allow: ["github.com", "*.github.com"]}
 *     setup: {hosts: ["pypi.org", "files.pythonhosted.org"]}
 *     image: default
 *     driver: qemu
 *     budget_model: {base_cost_usd: 0.000001, cost_per_second_usd: 0.0001}
 *     env: {RUST_LOG: info}
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

#define PODSPEC_API_VERSION "nucleus/v1"
#define PODSPEC_KIND "Pod"
#define PODSPEC_MAX_SIZE (1024U * 1024U)

#define PODSPEC_TIMEOUT_MAX 86400U
#define PODSPEC_LEASE_GRACE_MAX 3600U /* spec.lease.grace_seconds: 1..this */
#define PODSPEC_VCPUS_DEFAULT 1U
#define PODSPEC_VCPUS_MAX 32U
#define PODSPEC_MEMORY_MIB_DEFAULT 512U
#define PODSPEC_MEMORY_MIB_MIN 128U
#define PODSPEC_MEMORY_MIB_MAX 65536U
#define PODSPEC_SCRATCH_MIB_DEFAULT 2048U
#define PODSPEC_SCRATCH_MIB_MIN 64U
#define PODSPEC_SCRATCH_MIB_MAX 1048576U
#define PODSPEC_IMAGE_DEFAULT "default"
#define PODSPEC_NET_RULES_MAX 256U
#define PODSPEC_DNS_ALLOW_MAX 256U
#define PODSPEC_SETUP_HOSTS_MAX 32U
#define PODSPEC_ENV_MAX 64U
#define PODSPEC_ENV_VALUE_MAX 4096U
#define PODSPEC_LABELS_MAX 32U

typedef enum PodDriver {
        POD_DRIVER_DEFAULT, /* not given: the node's default driver */
        POD_DRIVER_QEMU,
        POD_DRIVER_FIRECRACKER,
        POD_DRIVER_LOCAL,
        _POD_DRIVER_MAX,
        _POD_DRIVER_INVALID = -22,
} PodDriver;

/* "default", "qemu", "firecracker", "local" */
const char *pod_driver_to_string(PodDriver d);
PodDriver pod_driver_from_string(const char *s);

typedef enum NetProto {
        NET_PROTO_ANY,
        NET_PROTO_TCP,
        NET_PROTO_UDP,
        _NET_PROTO_MAX,
        _NET_PROTO_INVALID = -22,
} NetProto;

/* One allow/deny entry: ADDR[/PREFIX][:PORT][/tcp|/udp]; IPv6 with a port is bracketed:
 * "[2001:db8::/32]:443/tcp". Host bits beyond the prefix must be zero. */
typedef struct NetRule {
        int family;       /* AF_INET or AF_INET6 */
        uint8_t addr[16]; /* network address (first 4 bytes for IPv4) */
        unsigned prefix;  /* 0..32 or 0..128 */
        uint16_t port;    /* 0 = any port */
        NetProto proto;   /* NET_PROTO_ANY unless given */
        char *text;       /* the entry as written */
} NetRule;

typedef struct PodSpec {
        char *name;        /* metadata.name (DNS label, <= 63), or NULL */
        char **label_keys; /* metadata.labels, sorted by key; parallel to label_values */
        char **label_values;

        /* Policy as given (for serialization) ... */
        char *policy_profile;  /* canonical profile name, or NULL when inline */
        json_t *policy_inline; /* the inline policy object as given, or NULL */
        bool has_max_cost;     /* overrides (tightening only) */
        uint64_t max_cost_usd_micros;
        bool has_max_input_tokens;
        uint64_t max_input_tokens;
        bool has_max_output_tokens;
        uint64_t max_output_tokens;
        /* ... and as enforced: profile/inline, meet overrides, time window = timeout_seconds
         * when given (a timeout above the window is refused). */
        Policy *policy;

        bool has_timeout;         /* timeout_seconds was given; else the node picks the deadline */
        uint64_t timeout_seconds; /* 1..86400 (0 when not given): the pod's deadline */
        uint32_t vcpus;           /* 1..32, default 1 */
        uint32_t memory_mib;      /* 128..65536, default 512 */
        uint32_t scratch_mib;     /* 64..1048576, default 2048 */

        bool has_network; /* false: the guest gets no NIC at all */
        NetRule *allow;
        size_t n_allow;
        NetRule *deny;
        size_t n_deny;
        char **dns_allow;            /* lowercase names, optional leading "*." (strv, may be NULL) */
        uint32_t dns_wildcard_names; /* distinct names resolvable under each "*." entry, 1..4096;
                                      * 0 = the node's [net] dns_wildcard_names */

        char **setup_hosts; /* spec.setup.hosts: package-index names (dns_allow syntax, normalised)
                             * the node opens only while the pod's setup step runs; the pod gets a
                             * NIC for them even without a network section (strv, may be NULL) */

        char *image;      /* image name ([a-z0-9][a-z0-9._-]*, <= 64), default "default" */
        PodDriver driver; /* POD_DRIVER_DEFAULT when not given */

        uint64_t base_cost_usd_micros;       /* budget_model, per command: default 1 */
        uint64_t cost_per_second_usd_micros; /* budget_model, per second of command: default 100 */

        char **env; /* "NAME=value", sorted by name; secrets and loader variables refused */

        /* spec.lease: the pod is held by its client's renew calls (POST /v1/pods/ID/lease) and
         * ended when none came for the grace period. */
        bool has_lease;
        uint32_t lease_grace_seconds; /* 1..PODSPEC_LEASE_GRACE_MAX; 0: the node's default */
} PodSpec;

PodSpec *podspec_free(PodSpec *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(PodSpec *, podspec_free);

/*
 * podspec_parse: parse a spec document. JSON when the first non-blank byte is '{', else YAML.
 * Arguments: filename: for messages only (may be NULL, e.g. "request body").
 * Returns: 0 and *ret, or -EINVAL/-EBADMSG/-EFBIG with *reterr (malloc'd), e.g.
 *   "pod.yaml:7:5: spec.resources.vcpus: must be 1..32".
 */
int podspec_parse(const char *text, size_t n, const char *filename, PodSpec **ret, char **reterr);
int podspec_parse_yaml(const char *text, size_t n, const char *filename, PodSpec **ret, char **reterr);
int podspec_parse_json(const char *text, size_t n, const char *filename, PodSpec **ret, char **reterr);
/* Read (capped at PODSPEC_MAX_SIZE) and parse a file. */
int podspec_load_file(const char *path, PodSpec **ret, char **reterr);
/* Validate an already-parsed tree (positions unknown). */
int podspec_from_json(const json_t *j, const char *filename, PodSpec **ret, char **reterr);

/* Canonical JSON object of the spec with every default filled in (parsing it gives an equal
 * spec). New reference / malloc'd text (sorted keys, compact). */
json_t *podspec_to_json(const PodSpec *s);
char *podspec_to_canonical_json(const PodSpec *s);

/* True if NAME may not be passed through spec.env (secret-looking or loader/shell-influencing:
 * see docs/podspec.md for the list). Case-insensitive. */
bool podspec_env_name_refused(const char *name);

/* Parse one network entry / DNS name (exposed for the network code and tests). */
int podspec_parse_net_rule(const char *s, NetRule *ret, char **reterr);
void net_rule_done(NetRule *r);
int podspec_check_dns_name(const char *s, char **ret_normalized, char **reterr);
