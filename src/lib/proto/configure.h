/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The configure contract: everything the node tells a pod's proxy once, before any other
 * request (docs/proxy.md "configure"). One typed struct, built by the node from what it keeps
 * (its Policy, the pod's deadline, limits, costs, env, ...), sent as JSON, and parsed by the
 * proxy into the same struct before anything is applied. The parser trusts nothing: it is
 * strict (unknown keys, wrong types, out-of-range values and duplicate names are errors naming
 * the JSON path) and fuzzed (tests/fuzz/fuzz-configure.c).
 *
 * The deadline is one number: time_remaining, counted from when the proxy receives the
 * message. The node computes it from the pod's deadline (created + timeout) when it sends,
 * so the time the VM took to boot is not given twice; the policy's time window already equals
 * the pod's timeout (the node folds it in), and the proxy still takes the smaller of the two.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "macro.h"
#include "policy.h"
#include "time-util.h"

#define CONFIGURE_ENV_MAX 64u
#define CONFIGURE_DNS_MAX 256u
#define CONFIGURE_SEED_SIZE 32u /* bytes of entropy for the guest's CRNG */
#define CONFIGURE_KEY_SIZE 32u  /* Ed25519 public key */
/* The proxy's max_file_bytes when configure sets none (the node sizes tool-call bodies by it). */
#define CONFIGURE_DEFAULT_MAX_FILE_BYTES (UINT64_C(16) * 1024 * 1024)

/* Limits the node may set (all optional; each >= 1 and under its own cap). */
typedef enum ConfigureLimit {
        CONFIGURE_LIMIT_MAX_READ_BYTES,
        CONFIGURE_LIMIT_MAX_FILE_BYTES,
        CONFIGURE_LIMIT_MAX_OUTPUT_BYTES,
        CONFIGURE_LIMIT_MAX_IMPORT_BYTES,
        CONFIGURE_LIMIT_MAX_LIST_ENTRIES,
        CONFIGURE_LIMIT_MAX_WALK_ENTRIES,
        CONFIGURE_LIMIT_MAX_GREP_MATCHES,
        CONFIGURE_LIMIT_MAX_GREP_FILE_BYTES,
        CONFIGURE_LIMIT_COMMAND_TIMEOUT_SECONDS,
        CONFIGURE_LIMIT_MAX_COMMAND_TIMEOUT_SECONDS,
        CONFIGURE_LIMIT_MAX_PROCESSES,
        CONFIGURE_LIMIT_MAX_OPEN_FILES,
        CONFIGURE_LIMIT_MAX_FILE_SIZE_BYTES,
        CONFIGURE_LIMIT_MAX_ADDRESS_SPACE_BYTES,
        CONFIGURE_LIMIT_MAX_CONCURRENT_COMMANDS,
        _CONFIGURE_LIMIT_MAX,
        _CONFIGURE_LIMIT_INVALID = -EINVAL,
} ConfigureLimit;

/* The JSON name of a limit ("max_read_bytes") and its cap. */
const char *configure_limit_to_string(ConfigureLimit l);
ConfigureLimit configure_limit_from_string(const char *s);
uint64_t configure_limit_cap(ConfigureLimit l);

/* The pod's network as the guest configures it (a cold pod's also on the kernel command line,
 * nucleus.net=ADDRESS/PREFIX,GATEWAY,DNS; IPv4 literals). The proxy applies it when the NIC
 * does not have it yet (a pod claimed from the warm pool, a restored child). */
typedef struct ConfigureNet {
        char *address; /* "10.201.0.6/30" */
        char *gateway; /* "10.201.0.5" */
        char *dns;     /* "10.201.0.5" */
} ConfigureNet;

typedef struct Configure {
        char *pod_id; /* pod_id_valid() (id-util.h); approval tokens are bound to it */
        Policy *policy;
        usec_t time_remaining; /* the deadline, from receipt; USEC_INFINITY: the policy's window only */
        usec_t wall_clock;     /* CLOCK_REALTIME at the node when sent; 0: not given */
        bool have_seed;
        uint8_t entropy_seed[CONFIGURE_SEED_SIZE]; /* for the guest's CRNG; never logged or digested */
        uint64_t limits[_CONFIGURE_LIMIT_MAX];     /* 0: not given (the proxy's default) */
        bool have_base_cost, have_run_cost;
        uint64_t base_cost_usd_micros;           /* charged for every side effect */
        uint64_t run_cost_usd_micros_per_second; /* run: reserved for the timeout, settled on use */
        bool have_approver;
        uint8_t approver_key[CONFIGURE_KEY_SIZE];
        char **env;       /* NAME=value (strv, NULL when none) */
        char **dns_allow; /* web_fetch hosts, host or host:port (strv, NULL when none) */
        bool have_net;
        ConfigureNet net;
} Configure;

Configure *configure_free(Configure *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Configure *, configure_free);

/* Parse the args of a configure request. Exactly one of "policy" (object) or "profile"
 * (name) gives the policy. Returns 0 and a new Configure, or -EINVAL with *reterr naming the
 * JSON path ("$.limits.max_read_bytes: ..."). */
int configure_from_json(const json_t *args, Configure **ret, char **reterr);

/* The message for c (a new reference): the policy always as an object. */
json_t *configure_to_json(const Configure *c);

/* The handshake of a pod restored from a snapshot (docs/snapshot.md): op "reconfigure", sent
 * to a proxy that is already configured (it ran in the parent). Only what must be fresh in the
 * child: pod_id, policy (the proxy refuses one looser than its current policy), time_remaining_ms,
 * wall_clock_unix_ms and entropy_seed, the last two required (a child must not keep the
 * parent's clock or random state), and network, optional: the child's own address, gateway and
 * DNS when the parent had a NIC (the guest re-addresses it). Other keys are refused (limits,
 * costs, env and dns_allow are the parent's and stay). Returns 0 and a Configure with only
 * those fields, or -EINVAL with *reterr naming the JSON path. */
int reconfigure_from_json(const json_t *args, Configure **ret, char **reterr);
/* The reconfigure message for c (a new reference): the fields above (network when have_net). */
json_t *reconfigure_to_json(const Configure *c);

/* Is name an environment variable configure may set for commands? (Syntax, not one the
 * proxy sets itself, and policy_env_name_allowed().) */
bool configure_env_name_ok(const char *name);
