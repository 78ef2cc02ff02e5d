/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node's view of a PodSpec. Parsing and validation are src/lib/spec's (podspec_parse:
 * YAML or JSON, strict); this turns the result into the few plain values the node acts on and
 * the `configure` request for the proxy. Kept apart from net.h on purpose (both headers define
 * a NetProto type).
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct NodeSpec {
        json_t *json;   /* canonical JSON of the spec, defaults filled in (audit digest, API) */
        json_t *policy; /* the enforced policy as JSON (profile/inline, overrides met) */
        char *name;     /* metadata.name or NULL */
        int driver;     /* VmmDriver, or -1 for the node's default */
        uint64_t timeout_seconds;
        unsigned vcpus;
        uint64_t memory_mib, scratch_mib;
        bool has_network;
        char **allow, **deny, **dns_allow; /* rule texts as written (strv, never NULL) */
        unsigned dns_wildcard_names;       /* 0: the node's [net] dns_wildcard_names */
        char *image;                       /* image name */
        uint64_t base_cost_usd_micros, cost_per_second_usd_micros;
        char **env; /* NAME=value */
} NodeSpec;

/* Parse a request body (YAML or JSON). Returns 0, or -EINVAL/-EBADMSG/-EFBIG with *reterr
 * "request body:LINE:COL: key.path: problem". */
int nodespec_parse(const char *body, size_t n, NodeSpec **ret, char **reterr);
NodeSpec *nodespec_free(NodeSpec *s);
static inline void nodespec_freep(NodeSpec **s) {
        if (*s)
                *s = nodespec_free(*s);
}
/* images_dir itself for the image "default", else images_dir/<name>. Caller frees. */
char *nodespec_image_dir(const NodeSpec *s, const char *images_dir);
/* Args of the proxy's configure (docs/proxy.md). approver_pub: 32 bytes or NULL. */
json_t *nodespec_configure_args(const NodeSpec *s, const char *pod_id, const uint8_t *approver_pub);
