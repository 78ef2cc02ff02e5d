/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The state of one pod's network, shared by the files of the network library that act on
 * the host: net.c (the pod's setup: the address block, the namespace, veth, bridge and tap,
 * and teardown), net-nft.c (nftables: applying rulesets, snapshots and the drift monitor),
 * net-dnsmasq.c (dnsmasq and the guest's DNS filter) and net-cleanup.c (removing what a pod
 * left, at teardown, after a failed setup and at node start).
 */
#pragma once

#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "macro.h"
#include "net-dnsfilter.h"
#include "net-internal.h"
#include "process-util.h"

#define NET_DEFAULT_STATE_DIR "/var/lib/nucleus/net"
#define NET_DEFAULT_POOL "10.201.0.0/16"
#define NET_NETNS_DIR "/run/netns"

static inline void closedirp_net(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

struct NetPod {
        NetPlan plan;
        NetPodInfo info;
        char netns_path[64];
        char gw[INET_ADDRSTRLEN];
        char guest[INET_ADDRSTRLEN];
        char cmdline[128];
        char host_table_full[48];
        int netns_fd;
        bool parked; /* net_pod_park: only the namespace, its tap and a drop-everything table */
        PidRef dnsmasq;
        NetDnsProxy *dns_filter; /* the guest's DNS goes here first; dnsmasq is behind it */
        NetDnsFilter *filter;    /* the filter's judge (owned by dns_filter), for the setup window */
        char *state_dir;         /* <state>/pods/<short> */
        char *alloc_path;
        char *baseline_pod;  /* normalised `nft -j list ruleset` in the namespace */
        char *baseline_host; /* normalised `nft -j list table inet <host_table>` */
        /* drift monitor (net_pod_monitor_start); joined by teardown */
        bool monitor_running;
        pthread_t monitor;
        int monitor_stop_fd; /* eventfd: written by teardown to stop the thread */
        uint64_t monitor_period_usec;
        NetDriftCallback monitor_cb;
        void *monitor_userdata;
};

/* Sets *reterr (when reterr is given and not yet set) and returns r. */
int net_set_err(char **reterr, int r, const char *fmt, ...) _printf_(3, 4);
const char *net_cfg_state_dir(const NetConfig *c);

/* ---- nftables (net-nft.c) ---- */

int net_nft_apply(int netns_fd, const char *ruleset, char **reterr);
/* The normalised `nft -j list` of the namespace's ruleset (table NULL) or of the host table. */
int net_nft_snapshot(int netns_fd, const char *table, char **ret, char **reterr);
int net_host_table_del(const char *table);
void net_monitor_stop(NetPod *pod);

/* ---- DNS (net-dnsmasq.c) ---- */

/* First IPv4 nameserver in /etc/resolv.conf that is not loopback (the namespace cannot reach
 * the host's loopback). */
int net_resolv_conf_upstream(struct in_addr *ret);
int net_start_dnsmasq(NetPod *pod, const NetPolicy *policy, char **reterr);
/* The guest's DNS filter (net-dnsfilter.c): a thread of ours with sockets in the namespace, on
 * the gateway's port 53; it forwards only judged, rebuilt queries to dnsmasq on 127.0.0.1:53. */
int net_start_dns_filter(NetPod *pod, const NetConfig *config, const NetPolicy *policy, char **reterr);
/* A dnsmasq that outlived its namespace (the namespace is gone but the process is not): found
 * by its pid file, killed only if its command line names this pod's state dir. */
void net_kill_dnsmasq_by_pidfile(const char *pod_state_dir);

/* ---- cleanup (net-cleanup.c) ---- */

/* Remove everything named by plan; used by teardown, failed setup and stale cleanup. */
int net_plan_remove(const NetPlan *plan, const char *pod_state_dir, const char *alloc_path);
