/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pending approvals of one pod (docs/approvals.md, "The approvals queue").
 *
 * When a tool call needs a human approval and its caller asked the node to hold it
 * (`?approval=hold`), the node records a pending approval: the tool, the exact arguments the
 * caller sent, the capability and arguments digest the PROXY named, and the proxy's reason.
 * The human-facing side (terminal, `nucleus console`, a webhook approver) shows it, mints an
 * approval token with the approver key and hands it back with the pending record's digest;
 * the node never holds the approver's private key. The caller waits for the decision
 * (approval_queue_wait) and retries the call once approved.
 *
 * The queue is pure bookkeeping: token verification, the proxy hand-over and the audit
 * records are the API layer's. Every function is thread-safe (one mutex per queue). Times are
 * unix seconds (the token's clock) except wait timeouts (microseconds, monotonic).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "macro.h"
#include "time-util.h"

#define APPROVAL_QUEUE_MAX_PENDING 16U  /* per pod; more are refused (429 too_many_pending) */
#define APPROVAL_QUEUE_KEEP_DECIDED 64U /* decided records kept for GET and late waiters */
#define APPROVAL_QUEUE_TTL_DEFAULT 300  /* seconds a pending approval waits for a decision */
#define APPROVAL_QUEUE_TTL_MAX 3600
#define APPROVAL_QUEUE_REASON_MAX 512U /* bytes of a refusal reason */

typedef enum ApprovalState {
        APPROVAL_STATE_PENDING,
        APPROVAL_STATE_APPROVED,
        APPROVAL_STATE_REFUSED,
        APPROVAL_STATE_EXPIRED,
        APPROVAL_STATE_WITHDRAWN, /* the caller gave up */
        _APPROVAL_STATE_MAX,
        _APPROVAL_STATE_INVALID = -EINVAL,
} ApprovalState;

const char *approval_state_to_string(ApprovalState s);

/* What a decider needs from a pending approval to mint the token (copied out under lock). */
typedef struct ApprovalPendingInfo {
        char id[33];
        char operation[65];
        char args_sha256[65]; /* "" when the proxy named none */
        bool scope_pod_offered;
        int64_t expires;
} ApprovalPendingInfo;

typedef struct ApprovalQueue ApprovalQueue;

/* A queue for pod_id (copied). max_pending 0 = APPROVAL_QUEUE_MAX_PENDING. Aborts on OOM. */
ApprovalQueue *approval_queue_new(const char *pod_id, unsigned max_pending);
ApprovalQueue *approval_queue_free(ApprovalQueue *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(ApprovalQueue *, approval_queue_free);

/*
 * approval_queue_hold:
 *   Records a pending approval for the call (tool, args) that the proxy refused with
 *   approval_required naming `operation` (a capability), `args_sha256` (may be NULL) and
 *   `reason`. ttl in seconds (0 = default, capped at APPROVAL_QUEUE_TTL_MAX).
 *   Returns: 0 and the pending record as JSON (caller decrefs); -EBUSY when the pod already
 *   has max_pending pending approvals; -EINVAL for a malformed operation, digest or tool;
 *   -ESHUTDOWN after approval_queue_close.
 */
int approval_queue_hold(
        ApprovalQueue *q,
        const char *tool,
        const json_t *args,
        const char *operation,
        const char *args_sha256,
        const char *reason,
        int64_t now,
        int64_t ttl,
        json_t **ret);

/* All records (pending_only: just the pending ones), oldest first, as a JSON array. Expires
 * what is past its expiry first. Never NULL. */
json_t *approval_queue_list(ApprovalQueue *q, bool pending_only, int64_t now);

/* Number of pending approvals (after expiring). */
unsigned approval_queue_count_pending(ApprovalQueue *q, int64_t now);

/* One record. Returns 0 and JSON, or -ENOENT. */
int approval_queue_get(ApprovalQueue *q, const char *id, int64_t now, json_t **ret);

/*
 * approval_queue_wait:
 *   Blocks until the record is no longer pending, or timeout (µs) passes.
 *   Returns: 1 and the decided record, 0 and the still-pending record on timeout, -ENOENT.
 */
int approval_queue_wait(ApprovalQueue *q, const char *id, usec_t timeout, json_t **ret);

/*
 * approval_queue_begin_decision:
 *   Claims the pending record for one decider: checks that `digest` is the record's digest
 *   (the bytes the approver saw) and marks it as being decided, so a second decider racing
 *   with this one gets -EALREADY. Finish with approval_queue_finish_decision or give it back
 *   with approval_queue_abort_decision.
 *   Returns: 0 and *ret; -ENOENT; -EALREADY (decided, or being decided); -EBADMSG (digest
 *   differs); -ETIME (expired).
 */
int approval_queue_begin_decision(
        ApprovalQueue *q, const char *id, const char *digest, int64_t now, ApprovalPendingInfo *ret);
/* Commits a claimed decision. scope: "once" or "pod" for approvals, NULL for refusals.
 * Returns 0 and the decided record (optional ret), or -ENOENT when not claimed. */
int approval_queue_finish_decision(
        ApprovalQueue *q,
        const char *id,
        bool approved,
        const char *scope,
        const char *actor,
        const char *reason,
        int64_t now,
        json_t **ret);
void approval_queue_abort_decision(ApprovalQueue *q, const char *id);

/* The caller gave up: a pending record becomes withdrawn. Returns 0, -ENOENT, -EALREADY. */
int approval_queue_withdraw(ApprovalQueue *q, const char *id, int64_t now);

/* The pod ended (or the node stops): every pending record is refused with reason, waiters
 * wake, and later holds answer -ESHUTDOWN. */
void approval_queue_close(ApprovalQueue *q, const char *reason, int64_t now);

/*
 * approval_scope_pod_offered:
 *   True when "approve this exact call for the rest of the pod" may be offered for the
 *   capability: not for git_push, create_pr, or operations whose effect depends on the
 *   workspace's contents at the time (git_commit, run_bash, write_files, edit_files): the same
 *   argv would later do something the approver never saw.
 */
bool approval_scope_pod_offered(const char *operation);

/*
 * approval_pending_digest:
 *   Lower-case hex SHA-256 of the canonical JSON of
 *   {"args","args_sha256","id","operation","pod","reason","tool"}: the exact bytes an
 *   approver is shown, bound into the decision.
 */
void approval_pending_digest(
        const char *pod,
        const char *id,
        const char *tool,
        const json_t *args,
        const char *operation,
        const char *args_sha256,
        const char *reason,
        char ret[static 65]);
