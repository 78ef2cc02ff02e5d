/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of the network library shared between its files and its unit tests: the address
 * plan of one pod, the pure generators (nft rulesets, dnsmasq argv) and the drift normaliser.
 * Pure functions here do no I/O; inputs were validated by net-entry.c.
 */
#pragma once

#include <jansson.h>
#include <netinet/in.h>

#include "net.h"

#define NET_SHORT_LEN 10U       /* hex chars of SHA-256(pod id) used in names; "nuh-" + 10 <= 15 */
#define NET_POD_TABLE "nucleus" /* table name inside the pod's namespace (family inet) */
#define NET_SET_DNS4 "dns4"
#define NET_SET_DNS6 "dns6"
#define NET_SET_SETUP4 "setup4" /* answers for setup hosts: reachable only while the window is open */
#define NET_SET_SETUP6 "setup6"
/* The window's gate: tcp and udp while it is open, empty otherwise. The setup sets alone cannot
 * be the gate: dnsmasq may add an answer to them after the close (a query forwarded before). */
#define NET_SET_SETUP_OPEN "setup_open"
#define NET_DNSMASQ_PORT 53U /* dnsmasq's port on the namespace's 127.0.0.1, behind the filter */

/* Addresses and names of one pod. Block B (a /29 of the pool): B+0/30 transit (host veth B+1,
 * namespace veth B+2), B+4/30 guest link (bridge/gateway B+5, guest B+6). No address is a
 * network or broadcast address of its /30. */
typedef struct NetPlan {
        char short_id[NET_SHORT_LEN + 1];
        char netns[32];      /* nucleus-<short> */
        char host_veth[16];  /* nuh-<short> */
        char ns_veth[16];    /* nun-<short> */
        char bridge[16];     /* nub-<short> */
        char tap[16];        /* nut-<short> */
        char host_table[32]; /* nucleus_<short> (family inet, host namespace) */
        char mac[18];
        uint32_t pool_base; /* host byte order */
        unsigned pool_prefix;
        uint32_t index; /* block index in the pool */
        struct in_addr host_addr, ns_addr, gw_addr, guest_addr, guest_net, transit_net;
        struct in_addr dns_upstream;
        uint16_t dns_upstream_port;
        bool dns;   /* dnsmasq runs (dns_allow or setup_hosts non-empty) */
        bool setup; /* the policy has setup hosts: sets setup4/setup6 and their accept rules */
} NetPlan;

/* Fill names and MAC from the pod id (SHA-256 based). Returns 0 or -EINVAL (bad id). */
int net_plan_names(NetPlan *plan, const char *pod_id);
/* Fill addresses for block index in pool (base/prefix host order). -ERANGE if out of pool. */
int net_plan_addresses(NetPlan *plan, uint32_t pool_base, unsigned pool_prefix, uint32_t index);
/* Number of /29 blocks in the pool. */
uint32_t net_pool_blocks(unsigned pool_prefix);
/* Parse "a.b.c.d/len" as a pool (8 <= len <= 26, host bits clear). */
int net_pool_parse(const char *text, uint32_t *ret_base, unsigned *ret_prefix);

/* The ruleset applied inside the pod's namespace (one `nft -f` transaction; it deletes a
 * previous table of the same name first). Caller frees. */
char *net_ruleset_pod(const NetPlan *plan, const NetPolicy *policy);
/* The ruleset of a parked namespace (a warm pool pod's, before its claim): table NET_POD_TABLE
 * with input, forward and output all policy drop and no rule. Caller frees. */
char *net_ruleset_parked(void);
/* The host table: input drop from the pod's veth, forward/anti-spoof, masquerade. */
char *net_ruleset_host(const NetPlan *plan);

/* dnsmasq argv (argv[0] = binary path given). pid_file/log_file inside the pod's state dir. */
char **net_dnsmasq_argv(
        const NetPlan *plan,
        const NetPolicy *policy,
        const char *binary,
        const char *pid_file,
        const char *log_file);

/* Normalise `nft -j list ...` output for drift comparison: drop metainfo and handles, drop the
 * elements of the DNS sets in the pod table (dnsmasq adds to them), sort nothing else.
 * Returns a canonical JSON string (caller frees), or NULL on unparsable input. */
char *net_ruleset_normalize(const char *json_text, size_t n);

/* Special-purpose ranges denied unless an allow entry lies inside one of them. */
typedef struct NetSpecialRange {
        int family;
        const char *cidr;
} NetSpecialRange;
extern const NetSpecialRange net_special_ranges[];
extern const size_t net_n_special_ranges;

/* True if entry e lies entirely inside range r (same family). */
bool net_entry_inside(const NetEntry *e, const NetEntry *r);

/* Absolute path of nft, ip or dnsmasq (/usr/sbin, /sbin, /usr/bin, /bin), or NULL. Thread-safe. */
const char *net_find_program(const char *name);
