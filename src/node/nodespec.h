/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node's view of a PodSpec. Parsing and validation are src/lib/spec's (podspec_parse:
 * YAML or JSON, strict); this turns the result into the few plain values the node acts on and
 * the proxy's configure contract (src/lib/proto/configure.h). The node keeps the enforced
 * Policy itself: what it sends is built from it, and the proxy's answer is checked against its
 * digest. Kept apart from net.h on purpose (both headers define a NetProto type).
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "configure.h"
#include "policy.h"

typedef struct NodeSpec {
        json_t *json;     /* canonical JSON of the spec, defaults filled in (audit digest, API) */
        Policy *policy;   /* the enforced policy (profile/inline, overrides met, window = deadline) */
        char *name;       /* metadata.name or NULL */
        int driver;       /* VmmDriver, or -1 for the node's default */
        bool has_timeout; /* the spec named one */
        uint64_t timeout_seconds; /* the pod's deadline; after nodespec_resolve_timeout() always set */
        unsigned vcpus;
        uint64_t memory_mib, scratch_mib;
        bool has_network;
        char **allow, **deny, **dns_allow; /* rule texts as written (strv, never NULL) */
        char **setup_hosts;                /* spec.setup.hosts, normalised (strv, never NULL) */
        unsigned dns_wildcard_names;       /* 0: the node's [net] dns_wildcard_names */
        char *image;                       /* image name */
        uint64_t base_cost_usd_micros, cost_per_second_usd_micros;
        char **env;                   /* NAME=value */
        bool has_lease;               /* spec.lease: held by renewals (docs/api.md "Leases") */
        unsigned lease_grace_seconds; /* 0: the node's default */
} NodeSpec;

/* Parse a request body (YAML or JSON). Returns 0, or -EINVAL/-EBADMSG/-EFBIG with *reterr
 * "request body:LINE:COL: key.path: problem". */
int nodespec_parse(const char *body, size_t n, NodeSpec **ret, char **reterr);
NodeSpec *nodespec_free(NodeSpec *s);
static inline void nodespec_freep(NodeSpec **s) {
        if (*s)
                *s = nodespec_free(*s);
}
/* Deep copy (a forked pod starts from its parent's spec). Never fails (aborts on OOM). */
NodeSpec *nodespec_copy(const NodeSpec *s);
/* images_dir itself for the image "default", else images_dir/<name>. Caller frees. */
char *nodespec_image_dir(const NodeSpec *s, const char *images_dir);
/* The pod's deadline, one number: the spec's timeout (already within the policy's window, else
 * podspec_parse refused it), refused above the node's [pods] max_timeout_seconds; without one
 * min(default_sec, the policy's window). Sets timeout_seconds and the policy's window to it.
 * Returns 0, or -EINVAL with *reterr naming the limit. */
int nodespec_resolve_timeout(NodeSpec *s, uint64_t default_sec, uint64_t max_sec, char **reterr);
/* The proxy's configure contract for this spec (docs/proxy.md): pod id, a copy of the policy,
 * costs, env, dns_allow and the approver key (approver_pub: 32 bytes or NULL). The caller adds
 * what depends on the moment and the boot: time left, wall clock, entropy seed, network. */
Configure *nodespec_configure(const NodeSpec *s, const char *pod_id, const uint8_t *approver_pub);
