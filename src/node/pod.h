/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pods: the table, the state machine (pending → booting → configuring → running → stopping →
 * exited | failed), the boot sequence, termination (deadline, DELETE, VMM crash, shutdown) and
 * the per-pod audit log that only the node writes.
 */
#pragma once
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "approval-queue.h"
#include "audit.h"
#include "channel.h"
#include "fork-budget.h"
#include "node.h"
#include "nodespec.h"
#include "time-util.h"
#include "vmm/vmm.h"

typedef enum PodState {
        POD_PENDING,
        POD_BOOTING,
        POD_CONFIGURING,
        POD_RUNNING,
        POD_STOPPING,
        POD_EXITED,
        POD_FAILED,
        _POD_STATE_MAX,
        _POD_STATE_INVALID = -EINVAL,
} PodState;

const char *pod_state_to_string(PodState s);
PodState pod_state_from_string(const char *s);

typedef struct PodSub PodSub;   /* a live /events subscriber */
typedef struct PodFork PodFork; /* where a forked pod comes from (pod-snapshot.c) */

/* A credential scoped to one pod (docs/api.md "Scoped credentials"): a key id and a 32-byte
 * secret, minted by the node, held in memory only (a node restart ends every pod and with it
 * every credential), valid while the pod has not ended. POD credentials sign the pod's own
 * tool, status, event, lease and approval-queue routes; RUN credentials only its budget
 * reserve and settle routes. */
typedef enum PodCredScope {
        POD_CRED_POD,
        POD_CRED_RUN,
        _POD_CRED_SCOPE_MAX,
} PodCredScope;

#define POD_CREDENTIALS_MAX 16
#define POD_CRED_KEY_ID_MAX 80

typedef struct PodCredential {
        char key_id[POD_CRED_KEY_ID_MAX + 1]; /* "pod-<pod id>-<16 hex>" or "run-<pod id>-<16 hex>" */
        uint8_t secret[32];
        PodCredScope scope;
} PodCredential;
typedef struct NetPod NetPod;

struct Pod {
        Node *node;               /* the node it runs on; its lock guards the fields marked so */
        unsigned n_ref;           /* under node->lock */
        unsigned api_connections; /* __atomic: API connections its credentials authenticated (api.c) */
        unsigned api_big_bodies;  /* __atomic: its tool calls with a body over max_body_bytes in flight */
        char id[37];              /* uuid v4, lower case */
        char *name;               /* metadata.name or NULL */
        PodState state;           /* under node->lock */
        char *reason;             /* why it ended (exited/failed), or NULL */
        char *reason_kind;        /* error kind for calls after the end ("time_violation", ...) */
        VmmDriver driver;
        NodeSpec *spec;    /* the validated spec */
        char *dir;         /* <state_dir>/pods/<id>, 0700 */
        usec_t created_rt; /* CLOCK_REALTIME */
        usec_t created_mono;
        usec_t timeout;            /* pod lifetime */
        usec_t deadline_mono;      /* created_mono + timeout */
        usec_t ended_rt;           /* 0 while alive */
        usec_t lease_grace;        /* under node->lock: 0 = not leased; else ended after this long
                                    * without a renewal (POST .../lease) */
        usec_t lease_renewed_mono; /* under node->lock: last renewal (or creation) */
        unsigned vcpus;
        uint64_t memory_mib, scratch_mib;
        char *policy_sha256;      /* from the proxy's configure answer */
        char *configure_sha256;   /* same: digest of the whole effective configuration, or NULL */
        Vmm *vm;                  /* set once started; freed with the pod */
        Channel *channel;         /* set once connected; shut down at the end, freed with the pod */
        NetPod *net;              /* the per-pod network (src/node/net), or NULL */
        pthread_mutex_t net_lock; /* serialises the network hand-over, drift checks and teardown */
        char *cgroup_dir;         /* created cgroup, or NULL */
        bool weak;                /* local driver */
        bool terminating;         /* someone runs pod_terminate */
        bool setup_started;       /* under node->lock: POST /setup was called (it runs once) */
        bool setup_running;       /* under node->lock: its commands are running (tool calls wait) */
        bool agent_acted;         /* under node->lock: a tool call other than status or charge was
                                   * let through (the proxy's setup phase is over from then on) */
        bool deadline_fired;      /* the supervisor queued the deadline termination */
        bool events_closed;       /* the final "end" event was published */
        AuditLog *audit;          /* signed, chained log (src/lib/audit); sealed at the end */
        pthread_mutex_t audit_lock;
        PodSub *subs; /* /events subscribers, under node->lock */
        uint64_t budget_spent_micro_usd;
        uint64_t n_guest_events; /* event frames received; capped (POD_GUEST_EVENTS_MAX) */
        /* Guest event limiter (pod_on_event; under node->lock): token bucket, records written,
         * drops by reason (rate, size, total) not yet reported in the audit log. */
        uint64_t guest_tokens_milli;
        usec_t guest_tokens_at;
        uint64_t n_guest_recorded;
        uint64_t guest_dropped[3];
        usec_t guest_dropped_reported_at;
        ApprovalQueue *approvals; /* pending approvals (approval-queue.h); closed at the end */
        /* The warm pool (pod-pool.c). A pooled pod is booted ahead with the node's default
         * shape, kept out of pods[] (the API never sees it) and has no spec, audit log or
         * network until create claims it. */
        bool pooled;         /* under node->lock: in the pool */
        bool pool_ready;     /* under node->lock: its proxy answered; claimable */
        bool claimed;        /* this pod was claimed from the pool (set once, at claim) */
        bool pool_restored;  /* restored from the pool's snapshot, not booted: its configure must
                              * reseed the guest CRNG and set its clock */
        bool pool_lost;      /* under node->lock: pooled, its channel closed or went silent */
        char *pool_image;    /* the image a pooled pod was booted with */
        json_t *pool_events; /* under node->lock: guest events that arrived while pooled */
        PodCredential creds[POD_CREDENTIALS_MAX]; /* under node->lock; wiped when freed */
        size_t n_creds;
        /* Model-call reservations on the pod's budget (api-budget.c, docs/api.md "Budget
         * reserve and settle"), under budget_lock. */
        pthread_mutex_t budget_lock;
        struct PodReservation *resv;
        size_t n_resv;
        uint64_t resv_micros; /* sum of the held reservations */
        /* Under budget_lock: everything the node charged this pod's meter (settled and expired
         * model-call reservations, its children's shares), counted by the node itself: the
         * proxy's meter is the guest's word, and what it reports as left is never believed
         * above the policy's maximum less this (fork_budget_remainder, budget reserve). */
        ForkBudget charged;
        unsigned n_children;  /* children forked from it so far (atomic; names their names) */
        PodFork *fork;        /* restored from a snapshot instead of booted, or NULL */
        unsigned n_snapshots; /* under node->lock: its snapshots on disk; an ended pod keeps its
                               * record (no prune, no retention) while it has any */
        /* What an ended pod's snapshots may still hand out to forks (docs/snapshot.md "Budget"),
         * under budget_lock: its remainder at its end (reservations counted as spent), less the
         * shares forks of it took since. Under node->lock (an ended pod's meter no longer
         * moves). escrow_set false: the end could not read the remainder, so its forks get
         * nothing; escrow_unknown says why. */
        ForkBudget escrow;
        bool escrow_set;
        char *escrow_unknown;
};

/* Create a pod from a validated spec (consumed, also on failure) and start its boot thread. Returns 0 and a
 * new reference, -EBUSY when max_pods live pods exist, other -errno with *reterr. */
int pod_create(Node *n, NodeSpec *spec, VmmDriver driver, const char *actor, Pod **ret, char **reterr);
/* Same for a pod restored from a snapshot (fork, consumed also on failure; NULL: booted). */
int pod_create_full(
        Node *n, NodeSpec *spec, VmmDriver driver, const char *actor, PodFork *fork, Pod **ret, char **reterr);
/* Look up by id (new reference) or NULL. */
Pod *pod_find(Node *n, const char *id);
Pod *pod_ref(Pod *p);
Pod *pod_unref(Pod *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Pod *, pod_unref);

/* End a pod: kill the VMM, tear down network and cgroup, append the end record, seal the
 * audit log and remove everything else the pod created. final is POD_EXITED or POD_FAILED.
 * Idempotent; the first caller's reason wins. Blocks until done (the VMM is reaped). */
void pod_terminate(Pod *p, PodState final, const char *reason, const char *kind);
/* Same, on a detached thread (supervisor use). */
void pod_terminate_async(Pod *p, PodState final, const char *reason, const char *kind);

/* State snapshot for the API (JSON object, caller decrefs). */
json_t *pod_to_json(Pod *p);

/* Renew p's lease (starting one with the node's default grace if it has none). Returns 0, or
 * -ESTALE when the pod has ended or is ending. */
int pod_lease_renew(Pod *p);

/* Mint a credential of scope for p (pod-credentials.c). Returns 0 with the key id and the
 * secret (the caller wipes it), -ESTALE when the pod has ended or is ending, -ENOSPC when p
 * holds POD_CREDENTIALS_MAX. */
int pod_credential_mint(
        Pod *p, PodCredScope scope, char ret_key_id[POD_CRED_KEY_ID_MAX + 1], uint8_t ret_secret[32]);
/* The credential with this key id: a new reference to its pod, a copy of its secret (the
 * caller wipes it) and its scope. The id is compared in constant time. -ENOENT when no pod
 * of this node holds it (never minted, or the pod's record was removed). */
int pod_credential_find(
        Node *n, const char *key_id, Pod **ret_pod, uint8_t ret_secret[32], PodCredScope *ret_scope);
/* Has p ended (or is it ending)? A credential of an ended pod is refused. */
bool pod_has_ended(Pod *p);

/* Remove an ended pod's record and its snapshots: out of the table, its directory deleted.
 * Returns 0, -EBUSY while the pod is live, -EAGAIN while a child restores from one of its
 * snapshots (nothing of the record is removed then). */
int pod_remove(Pod *p);
/* Remove ended pods (in the table and, from earlier runs, in the state dir) that ended more
 * than older_than ago (0: all), or beyond the newest `keep` (keep == UINT_MAX: no count
 * limit). Returns the removed ids (strv, may be NULL). */
char **pod_prune(Node *n, usec_t older_than, unsigned keep);

/* Append one audit record (AuditEvent of src/lib/audit) and publish it to /events
 * subscribers. Errors are logged and counted in metrics and returned (-errno). */
int pod_audit(Pod *p, const AuditEvent *ev);
/* Same, returning the record's seq. Callers that act on the record having been written (the
 * request record of a call, docs/audit.md "Fail closed") must check the result. */
int pod_audit_seq(Pod *p, const AuditEvent *ev, uint64_t *ret_seq);
/* Publish one event (name, JSON data) to the pod's /events subscribers. */
void pod_publish(Pod *p, const char *event, json_t *data);

/* /events subscribers. pod_sub_next blocks up to timeout for the next line; returns 1 and a
 * malloc'd SSE chunk, 0 on timeout, -EPIPE when the pod ended and everything was delivered. */
PodSub *pod_subscribe(Pod *p);
int pod_sub_next(Pod *p, PodSub *s, usec_t timeout, char **ret);
void pod_unsubscribe(Pod *p, PodSub *s);

/* Supervisor: watches VMM pidfds and deadlines; runs on its own thread until shutdown. */
int pod_supervisor_start(Node *n);
void pod_supervisor_stop(Node *n);
/* Shutdown: terminate every live pod (reason "node shutdown"). */
void pod_terminate_all(Node *n, const char *reason);
/* At start: clean what an earlier run left under <state_dir>/pods. Returns pods cleaned. */
int pod_cleanup_stale(Node *n);
/* The warm pool (pod-pool.c, docs/node.md "Warm pool"): start its thread (a no-op without
 * [pool.images]), stop it and discard every pooled pod, describe it for GET /v1/pool. */
int pod_pool_start(Node *n);
void pod_pool_stop(Node *n);
json_t *pod_pool_to_json(Node *n);
/* Append the pool's gauges (per image) to a metrics page. */
void pod_pool_render_metrics(Node *n, FILE *f);
/* Count live pods (not exited/failed), under lock. */
unsigned pod_count_live_locked(Node *n);

/* Charges the pod's expired, unsettled model-call reservations at their amounts (api-budget.c;
 * the periodic pod checks call it). Takes budget_lock; may wait for a proxy call. */
void pod_budget_sweep(Pod *p);

/* Snapshots and forks (pod-snapshot.c, docs/snapshot.md). pod_snapshot saves a running qemu
 * pod without a network and without work in flight: returns 0 and the snapshot's metadata
 * (new reference), or -errno with *reterr (-EBUSY: work in flight; -EOPNOTSUPP: wrong
 * driver or network; -ESTALE: not running; -ENOSPC: the [snapshots] caps cannot be met).
 * pod_fork starts count pods from the snapshot snapshot_id of p (NULL: take one now, or the
 * newest when p ended), sharing p's remaining budget, or its escrow once p ended (-ESTALE: p
 * is ending, or ended without a snapshot; -EDQUOT: no budget to share). */
int pod_snapshot(Pod *p, const char *actor, json_t **ret, char **reterr);
int pod_fork(Pod *p, const char *snapshot_id, unsigned count, const char *actor, json_t **ret, char **reterr);
/* The snapshots of p (a JSON array of their metadata). */
json_t *pod_snapshots_list(Pod *p);
/* Remove the snapshots of the pod pod_id. Returns 0, or -EBUSY when a child restores from one
 * (that one stays; the others are removed). */
int pod_snapshots_remove(Node *n, const char *pod_id);
/* Remove snapshot id (DELETE /v1/snapshots/{sid}): 0 and *ret ({"removed", "parent"}, new
 * reference), -EINVAL (not an id), -ENOENT (no such snapshot), -EBUSY (a child restores from
 * it) with *reterr. */
int pod_snapshot_delete(Node *n, const char *id, json_t **ret, char **reterr);
/* Remove the snapshots of ended pods taken more than older_than ago (0: all of them).
 * Returns the removed ids (strv, may be NULL). */
char **pod_snapshots_prune(Node *n, usec_t older_than);
/* p ended (pod_terminate, after its escrow was set): its snapshots stay; say what they hold. */
void pod_snapshots_parent_ended(Pod *p);
/* At start: remove snapshots an earlier run left (their parents' records and escrow are
 * gone). */
void pod_snapshots_cleanup_stale(Node *n);
