/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the pod files share among themselves (pod.c, pod-boot.c, pod-events.c,
 * pod-supervisor.c); the rest of the node uses pod.h only.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>

#include "net.h"
#include "pod.h"
#include "vmm.h"
#include "pool-shape.h"

static inline bool pod_state_is_final(PodState s) {
        return s == POD_EXITED || s == POD_FAILED;
}

static inline bool pod_state_is_live(PodState s) {
        return !pod_state_is_final(s);
}

/* pod.c */
void pod_free(Pod *p);
/* A new random pod id (uuid v4). */
void pod_make_id(char ret[37]);
/* One line to the daemon's log and to <pod>/node.log. */
_printf_(3, 4) void pod_log(Pod *p, int level, const char *fmt, ...);
void pod_set_state(Pod *p, PodState s);
/* Remove everything in the pod dir except the audit log and the logs. */
void pod_dir_prune(const char *dir);
/* Write p's record (pod_to_json) to <pod dir>/state.json, atomically. */
void pod_write_state_file(Pod *p);
/* Like pod_terminate_async, consuming a reference the caller already holds. */
void pod_terminate_async_take(Pod *p, PodState final, const char *reason, const char *kind);

/* Apply [pods] keep_ended / keep_ended_seconds (supervisor; at most every 10 s). */
void pod_retention(Node *n);

/* pod-events.c */
void pod_broadcast_locked(Pod *p, const char *event, json_t *data);
void pod_wake_subs_locked(Pod *p);
/* Lifecycle records: op "pod_<event>", decision "info", the detail text hashed as the result. */
void pod_audit_lifecycle(Pod *p, const char *event, const char *detail, const char *kind);
/* Append the guest-event drop report if anything was dropped since the last one (force:
 * regardless of the report interval). */
void pod_guest_drops_report(Pod *p, bool force);
/* Channel callback: one event frame from the guest. */
void pod_on_event(void *userdata, json_t *ev);
/* The string value of v when it is 64 lower-case hex characters, else NULL. */
const char *hex64_or_null(json_t *v);

/* pod-boot.c */
void *pod_boot_thread(void *userdata);
/* Configure the proxy for p's spec (the pod must have its channel); records the configure. */
int pod_configure(Pod *p, char **reterr);
/* Channel callback: the channel closed (a running pod fails with the cause). */
void pod_on_close(void *userdata, int error);
/* Channel liveness callback: a running guest silent for the bound fails its pod. */
void pod_on_dead(void *userdata, usec_t silent);
/* The pod answered configure: running, liveness watched, ready time and record. */
void pod_now_running(Pod *p);
/* What every VMM start of p shares (a cold boot, a warm-pool boot, a fork's restore): its
 * cgroup (when the node has a cgroup root and p runs in a VM; without one p runs unlimited,
 * said in the log) and the launch description in *ret, whose strings borrow from n, p and
 * image_dir. Callers add the network and restore fields. */
void pod_launch_prepare(Node *n, Pod *p, const char *image_dir, VmmLaunch *ret);
/* Whether p is being terminated (someone runs pod_terminate). */
bool pod_stopping(Pod *p);
/* Start p's VMM from l and publish it as p->vm (and *ret). Returns <0 with *reterr set, else 1
 * when p began terminating before or while the VMM started (a VMM that started is stopped
 * again; the caller just returns), or 0. */
int pod_vmm_start(Node *n, Pod *p, VmmDriver driver, const VmmLaunch *l, Vmm **ret, char **reterr);
/* Build p's network (net_pod_setup) and attach it: 0; 1 when p began ending meanwhile (the
 * network is torn down again, the caller stops); -errno with *reterr. */
int pod_net_build(Pod *p, const NetPolicy *netpol, char **reterr);
/* The NIC part of l from p's network (nothing without one): namespace, tap, MAC, command line. */
void pod_launch_net(Pod *p, VmmLaunch *l);
/* Fill c's network from p's (nothing without one, or while it is parked). */
void pod_configure_net(Pod *p, Configure *c);
/* The network library's settings for p (its DNS refusals are counted and audited on p). */
void pod_net_config(Node *n, Pod *p, NetConfig *ret);
/* p's network policy from its spec: 1 and *ret, 0 and NULL when the pod gets no NIC (no
 * network section, no setup hosts), -errno with *reterr naming the spec entry. */
int pod_net_policy(Pod *p, NetPolicy **ret, char **reterr);
/* Start p's channel reader on fd (the channel owns fd from here on) and publish it as
 * p->channel. Returns <0 with *reterr set, else 1 when p began terminating meanwhile (the
 * caller shuts the channel down or lets the pod's end do it) or 0. */
int pod_channel_publish(Node *n, Pod *p, int fd, Channel **ret, char **reterr);

/* pod-pool.c */
/* Take a claimable pooled pod of shape want out of the pool (under node->lock). Returns it
 * with the pool's reference (now the caller's), or NULL and *ret_miss: "disabled" (no pool for
 * the image), "empty" (none ready) or the shape field that differs. */
Pod *pod_pool_take_locked(Node *n, const PoolShape *want, const char **ret_miss);
/* After pod_create consumed a claim (hit) or missed: count it, wake the refill. */
void pod_pool_note(Node *n, bool hit, const char *miss);
/* Keep a guest event of a pooled pod for its claim (pod_on_event). True when kept/dropped. */
bool pod_pool_stash_event(Pod *p, json_t *ev);
/* The channel of p closed: true when p is pooled (the pool then replaces it). */
bool pod_pool_channel_lost(Pod *p);
/* The claimed pod's thread: the stashed guest events, configure, running. */
void *pod_claim_thread(void *userdata);
/* Does this pod dir (of an earlier run) belong to a pooled pod? (its "pool" marker) */
bool pod_pool_dir_is_pooled(int dfd);
#define POD_POOL_MARKER "pool"

/* pod-snapshot.c */
void *pod_fork_boot_thread(void *userdata);
PodFork *pod_fork_free(PodFork *f);
/* What the first audit record of a forked pod says about its origin (new reference). */
json_t *pod_fork_origin_json(const PodFork *f);
/* The warm pool's snapshot (docs/node.md "Warm pool"): one per image and shape, of the first
 * pod the pool booted, under <state_dir>/pool-snapshots; later refills restore it. On the
 * pool thread only. pod_pool_snapshot_find returns its dir (malloc'd) when [pool] restore is
 * on, the shape is qemu without a network, nic is false and a snapshot of the current image
 * exists (one of a rebuilt image is removed), and its scratch copy in *ret_scratch, else NULL.
 * pod_pool_snapshot_take snapshots the ready, unclaimed pooled pod p when there is none yet (a failure is
 * logged; refills keep booting). pod_pool_snapshot_load feeds a VM started with its scratch.img the saved
 * state. pod_pool_snapshot_discard removes one (a restore that failed); pod_pool_snapshots_remove all (node
 * start, pool stop). */
char *pod_pool_snapshot_find(
        Node *n, const char *image_dir, const char *image, const PoolShape *s, bool nic, char **ret_scratch);
void pod_pool_snapshot_take(Node *n, Pod *p, const char *image_dir, const char *image, const PoolShape *s);
int pod_pool_snapshot_load(Vmm *vm, const char *dir, usec_t timeout, char **reterr);
void pod_pool_snapshot_discard(Node *n, const char *dir);
void pod_pool_snapshots_remove(Node *n);
