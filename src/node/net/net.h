/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-pod network isolation for nucleus-node (DESIGN.md §9, docs/network.md): a network
 * namespace holding the VMM's tap, a bridge and a veth to the host with NAT out; one nftables
 * table per pod (default drop, IPv4 and IPv6); a dnsmasq that answers only dns_allow names and
 * feeds their answers into an nftables set; a drift check; cleanup. Runs as root on the host.
 * The spec's network section is untrusted input: every entry is parsed and validated here.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

/* ---- Policy (the spec's `network` section, parsed) ---------------------------------------- */

typedef enum NetEntryProto {
        NET_ENTRY_PROTO_ANY, /* with a port: tcp and udp; without: every protocol */
        NET_ENTRY_PROTO_TCP,
        NET_ENTRY_PROTO_UDP,
        _NET_ENTRY_PROTO_MAX,
        _NET_ENTRY_PROTO_INVALID = -EINVAL,
} NetEntryProto;

typedef struct NetEntry {
        int family;       /* AF_INET or AF_INET6 */
        uint8_t addr[16]; /* network address, host bits clear; IPv4 uses the first 4 bytes */
        uint8_t prefix;   /* 0..32 (IPv4) or 0..128 (IPv6) */
        uint16_t port;    /* destination port; 0 = any */
        NetEntryProto proto;
} NetEntry;

typedef struct NetPolicy {
        NetEntry *allow; /* egress allowed to these (deny wins) */
        size_t n_allow;
        NetEntry *deny; /* egress dropped to these, always */
        size_t n_deny;
        char **dns_allow;            /* strv of normalised names: lower case, no trailing dot, optional
                                      * leading "*." (= every name strictly below, not the name itself) */
        unsigned dns_wildcard_names; /* distinct names the pod may resolve under each "*." entry;
                                      * 0 = the node's setting (NetConfig) */
        char **setup_hosts;          /* strv of normalised names (as dns_allow) resolvable and reachable only
                                      * while the setup window is open (net_pod_setup_window); never one
                                      * dns_allow already matches; NULL or empty = no setup window */
} NetPolicy;

#define NET_ENTRY_MAX_LEN 128U      /* longest accepted allow/deny entry text */
#define NET_POLICY_MAX_ENTRIES 256U /* per list (allow, deny, dns_allow) */

/* Parse one allow/deny entry.
 * Arguments: text: "ADDR[/PREFIX][:PORT][/tcp|/udp]" for IPv4; IPv6 as "ADDR[/PREFIX]" or, with a
 *            port, "[ADDR[/PREFIX]]:PORT[/tcp|/udp]"; a bare "ADDR[/PREFIX]/tcp" is allowed too.
 * Returns: 0 and *ret; -EINVAL with *reterr (malloc'd, may be NULL) naming the problem.
 * Notes: host bits set under the prefix, port 0, hostnames and anything else odd are errors. */
int net_entry_parse(const char *text, NetEntry *ret, char **reterr);
/* Format as nft would accept it ("10.0.0.0/8", "2001:db8::/32"); buf >= 64 bytes. */
void net_entry_format_addr(const NetEntry *e, char *buf, size_t size);

/* Validate and normalise one dns_allow name ("api.example.com", "*.example.com").
 * Returns: 0 and a malloc'd normalised copy; -EINVAL with *reterr. */
int net_dns_name_normalize(const char *text, char **ret, char **reterr);

/* True if host (a DNS name, any case, trailing dot allowed) matches the dns_allow list, with the
 * same rules dnsmasq is configured with: "example.com" matches only example.com; "*.example.com"
 * matches every name below example.com but not example.com. web_fetch uses the same function. */
bool net_dns_name_allowed(char *const *dns_allow, const char *host);

/* Build a NetPolicy from string lists (as the spec holds them). Any NULL list is empty.
 * Returns: 0 and *ret (free with net_policy_free); -EINVAL/-E2BIG with *reterr naming the list,
 * the index and the problem ("network.allow[2]: port out of range"). */
int net_policy_from_strv(
        char *const *allow, char *const *deny, char *const *dns_allow, NetPolicy **ret, char **reterr);
NetPolicy *net_policy_free(NetPolicy *p);

/* Give the policy the package-index hosts of a setup step (docs/network.md "The setup window").
 * Arguments: hosts: names as in dns_allow (validated and normalised here; NULL = none).
 * Returns: 0; -EINVAL/-E2BIG with *reterr naming the entry ("setup.hosts[1]: ...").
 * Notes: a host dns_allow already matches is dropped (it is open anyway); a host whose base name
 *        is also the base of a dns_allow entry of the other kind ("pypi.org" beside
 *        "*.pypi.org") is refused: dnsmasq could not tell which set its answers belong to. */
int net_policy_set_setup_hosts(NetPolicy *p, char *const *hosts, char **reterr);
DEFINE_TRIVIAL_CLEANUP_FUNC(NetPolicy *, net_policy_free);

/* ---- Node-wide configuration ------------------------------------------------------------- */

/* Called on the pod's DNS filter thread for every query it refuses. reason: "malformed", "type"
 * (not A/AAAA of class IN), "not_allowed" (not on dns_allow), "wildcard_budget" (a new name under
 * a wildcard whose budget of `limit` distinct names is spent). name: the lower-cased name asked
 * (letters, digits, '-', '_', '.'; other bytes shown as '?'; "" when unparsed); entry: the
 * dns_allow entry charged (NULL when none). detail: false once the pod's first refusals were
 * reported in detail (count it, do not audit it). Must not block. */
typedef void (*NetDnsEventCallback)(
        void *userdata, const char *reason, const char *name, const char *entry, unsigned limit, bool detail);

typedef struct NetConfig {
        const char *state_dir;         /* directory for allocations and per-pod files (created 0700);
                                        * default "/var/lib/nucleus/net" */
        const char *pool;              /* IPv4 CIDR split into /29 blocks, prefix 8..26; default
                                        * "10.201.0.0/16" */
        const char *dns_upstream;      /* IPv4 address dnsmasq forwards allowed names to; NULL = first
                                        * non-loopback IPv4 nameserver in /etc/resolv.conf */
        uint16_t dns_upstream_port;    /* 0 = 53 */
        uid_t tap_uid;                 /* owner of the tap (the VMM's user); (uid_t)-1 = root only */
        gid_t tap_gid;                 /* (gid_t)-1 = none */
        unsigned dns_wildcard_names;   /* default per-pod budget of distinct names under each
                                        * wildcard dns_allow entry; 0 = 16 */
        NetDnsEventCallback dns_event; /* may be NULL */
        void *dns_event_userdata;
} NetConfig;

#define NET_CONFIG_NULL                        \
        ((NetConfig){ .state_dir = NULL,       \
                      .pool = NULL,            \
                      .dns_upstream = NULL,    \
                      .dns_upstream_port = 0,  \
                      .tap_uid = (uid_t) -1,   \
                      .tap_gid = (gid_t) -1,   \
                      .dns_wildcard_names = 0, \
                      .dns_event = NULL,       \
                      .dns_event_userdata = NULL })

/* ---- Per-pod network ----------------------------------------------------------------------- */

typedef struct NetPod NetPod;

/* Everything the node needs to start the VM. Strings are owned by the NetPod. */
typedef struct NetPodInfo {
        const char *netns_name; /* "nucleus-<short>" (also /run/netns/<name>) */
        const char *netns_path; /* "/run/netns/nucleus-<short>" */
        int netns_fd;           /* O_RDONLY|O_CLOEXEC fd of the namespace; owned by the NetPod */
        const char *tap;        /* tap device inside the namespace, "nut-<short>" */
        const char *mac;        /* guest MAC "06:xx:xx:xx:xx:xx" (locally administered) */
        const char *guest_addr; /* e.g. "10.201.0.6" */
        unsigned guest_prefix;  /* 30 */
        const char *gateway;    /* bridge address, also the DNS server, e.g. "10.201.0.5" */
        const char *dns;        /* DNS server for the guest (= gateway) */
        const char *cmdline;    /* "nucleus.net=10.201.0.6/30,10.201.0.5,10.201.0.5" */
        const char *host_veth;  /* host side veth, "nuh-<short>" */
        const char *host_table; /* nft table on the host, "inet nucleus_<short>" */
        bool parked;            /* net_pod_park: the addresses, host_veth and host_table are NULL and
                                 * cmdline is "nucleus.net=parked" until net_pod_unpark */
} NetPodInfo;

/* The guest's kernel command line value for a NIC without an address (src/guest/init). */
#define NET_CMDLINE_PARKED "parked"

/* Set up the pod's network.
 * Arguments: config: node settings (NULL fields take defaults); pod_id: the pod's id (1..128
 *            printable ASCII, no '/'); policy: the parsed network section (must not be NULL:
 *            a pod without one gets no network at all and must not call this).
 * Returns: 0 and *ret (tear down with net_pod_teardown); -errno on failure, with everything
 *          created so far removed again. *reterr (may be NULL) gets a message naming the step.
 * Notes: order is fail-closed: the namespace's ruleset (policy drop) is applied before any link
 *        exists; the host table (NAT, host input drop) before the veth is up; dnsmasq last. The
 *        drift baseline is taken at the end. The address block is claimed in
 *        <state_dir>/alloc/<index> (O_EXCL) and released by teardown. Not thread-safe per pod. */
int net_pod_setup(
        const NetConfig *config, const char *pod_id, const NetPolicy *policy, NetPod **ret, char **reterr);

/* The network of a pod booted ahead for the warm pool (docs/node.md "Warm pool"): the pod's
 * namespace (named from pod_id, as net_pod_setup names it) holding only the pod's tap and a
 * drop-everything nftables table (input, forward and output policy drop, no rule), its address
 * block claimed and nothing else: no bridge, veth, address, route, host table or dnsmasq, so
 * the guest on the tap reaches nothing. The VMM joins it and opens the tap as for a cold pod
 * (net_pod_open_tap); the guest's command line carries "nucleus.net=parked".
 * Returns: 0 and *ret (net_pod_unpark at the claim, or net_pod_teardown); -errno with nothing
 * left and *reterr naming the step. Not thread-safe per pod. */
int net_pod_park(const NetConfig *config, const char *pod_id, NetPod **ret, char **reterr);

/* At the claim: give a parked network the pod's policy, exactly as net_pod_setup builds it for
 * a cold pod (the pod's ruleset replaces the parked table in one transaction before any link
 * is added; then bridge around the existing tap, veth, host table, routes, dnsmasq and the DNS
 * filter, drift baselines), and fill the addresses of net_pod_info.
 * Returns: 0; -EINVAL when pod is not parked; -errno with *reterr: the pod must then be ended
 * (net_pod_teardown removes whatever was built). */
int net_pod_unpark(NetPod *pod, const NetConfig *config, const NetPolicy *policy, char **reterr);

/* Read-only view of the pod's network; valid until net_pod_teardown. */
const NetPodInfo *net_pod_info(const NetPod *pod);

/* Enter the pod's namespace. Call in a forked child right before exec'ing the VMM, so the VMM
 * can open the tap by name (-netdev tap,ifname=<tap>,script=no,downscript=no) and any traffic
 * of its own meets the namespace's output policy (drop).
 * Returns: 0 or -errno (the child must then _exit, never exec in the host namespace). */
int net_pod_enter(const NetPod *pod);

/* Alternative to net_pod_enter: open the tap in the namespace from the calling thread and
 * return the fd (O_CLOEXEC cleared by the caller before exec if passed as -netdev tap,fd=N).
 * vnet_hdr: set IFF_VNET_HDR. Returns fd >= 0 or -errno. The calling thread's namespace is
 * restored before returning. */
int net_pod_open_tap(const NetPod *pod, bool vnet_hdr);

/* Open or close the pod's setup window: while open, the DNS filter also admits the policy's
 * setup_hosts and their answers (set setup4/setup6) are reachable through the gate set
 * setup_open (tcp, udp); closing refuses those names again and, in one transaction, empties the
 * gate and both sets, so nothing they resolved to stays reachable, not even an answer dnsmasq
 * adds after the close.
 * Returns: 0; -EINVAL when the pod has no setup hosts; -errno when filling or emptying the sets
 *          failed (the caller must then end the pod: fail closed).
 * Notes: flows already established stay up until they end: close only after every process of
 *        the setup step is gone (the proxy runs each in a PID namespace that dies with it). */
int net_pod_setup_window(NetPod *pod, bool open);

/* Compare the namespace's ruleset and the pod's host table with what setup applied.
 * Returns: 0 when identical (dnsmasq's additions to the DNS sets are ignored); 1 when they
 *          differ (the node must kill the pod with reason "network policy drift"); -errno when
 *          the check itself failed (treat like drift: fail closed). *reterr (may be NULL) gets
 *          a short description of the first difference. Blocking: runs `nft` twice (~20 ms).
 * Notes: never concurrently with net_pod_teardown of the same pod (hold the pod's reference).
 *        Elements of the DNS sets are not compared (dnsmasq adds them at any time), so an element
 *        added there by hand on the host is not detected. */
int net_pod_check_drift(NetPod *pod, char **reterr);

/* Called from the monitor thread when the check finds drift (result 1) or fails (-errno); detail
 * says what changed. Called at most once per monitor; the monitor stops afterwards. The callback
 * must only schedule the pod's end (e.g. the node's async terminate with reason "network policy
 * drift"): it must not block for long, and may call net_pod_teardown only as its last action. */
typedef void (*NetDriftCallback)(void *userdata, int result, const char *detail);

/* Start a thread that runs net_pod_check_drift every period_usec (>= 100 ms; 2 s is a good
 * default) and calls cb on the first difference or failure.
 * Returns: 0, -EINVAL (bad arguments, already running) or -errno.
 * Notes: net_pod_teardown stops and joins the thread before touching anything, so the check can
 *        never run on a half-removed pod. */
int net_pod_monitor_start(NetPod *pod, uint64_t period_usec, NetDriftCallback cb, void *userdata);

/* Remove everything setup created: dnsmasq, host table, veth (and with it the host route),
 * namespace (tap and bridge die with it), allocation and per-pod files. Kill the VMM first.
 * Returns: 0, or the first -errno (everything is still attempted; the allocation record is then
 * kept, so net_cleanup_stale at the next node start retries). Frees pod; accepts NULL. */
int net_pod_teardown(NetPod *pod);

/* At node start: remove what an earlier run recorded in config->state_dir (allocations whose
 * namespace, links, tables, dnsmasq remain). With all=true, also every nucleus-* namespace,
 * nuh-* link and nucleus_* host table on the machine, whoever made them (doctor --fix; do not
 * use when several nodes share the host). Processes still inside a namespace are SIGKILLed.
 * Returns: number of pods cleaned (>= 0) or -errno. */
int net_cleanup_stale(const NetConfig *config, bool all);

/* Remove whatever the network of one pod (by its id) left on the machine: processes in its
 * namespace (and its dnsmasq, matched by pid file and command line), host table, veth,
 * namespace, per-pod files and the allocation record naming it. For a node restart that knows
 * the ids of the pods an earlier run had live; nothing of other pods is touched.
 * Returns: 1 if anything of the pod was found, 0 if nothing was, -errno if removal failed (the
 * allocation record is then kept so a later call retries). */
int net_cleanup_pod(const NetConfig *config, const char *pod_id);

/* ---- doctor ---------------------------------------------------------------------------------- */

typedef struct NetDoctorCheck {
        char name[32]; /* "nftables", "dnsmasq", "dnsmasq-nftset", "ip-forward", "netns" */
        bool ok;
        char detail[224]; /* human readable: what was found or what to do */
} NetDoctorCheck;

/* Run the checks without changing anything. Returns the number of checks written (<= n). */
size_t net_doctor_checks(const NetConfig *config, NetDoctorCheck *checks, size_t n);
