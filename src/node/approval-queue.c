/* SPDX-License-Identifier: Apache-2.0 */
/* Pending approvals of one pod: see approval-queue.h. */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

#include "alloc-util.h"
#include "approval-queue.h"
#include "capability.h"
#include "json-util.h"
#include "string-util.h"

typedef struct ApprovalRecord {
        char id[33];
        char *tool;
        json_t *args;
        char operation[65];
        char args_sha256[65];
        char *reason; /* the proxy's: why the call needs approval */
        char digest[65];
        int64_t created, expires, decided_at;
        ApprovalState state;
        bool deciding;
        char *scope;           /* "once" | "pod" once approved */
        char *decided_by;      /* actor */
        char *decision_reason; /* refusal reason, expiry, pod end */
} ApprovalRecord;

struct ApprovalQueue {
        pthread_mutex_t lock;
        pthread_cond_t cond; /* broadcast on every state change */
        char *pod;
        unsigned max_pending;
        bool closed;
        ApprovalRecord **records; /* oldest first */
        size_t n_records;
};

static const char *const approval_state_table[_APPROVAL_STATE_MAX] = {
        [APPROVAL_STATE_PENDING] = "pending",     [APPROVAL_STATE_APPROVED] = "approved",
        [APPROVAL_STATE_REFUSED] = "refused",     [APPROVAL_STATE_EXPIRED] = "expired",
        [APPROVAL_STATE_WITHDRAWN] = "withdrawn",
};

const char *approval_state_to_string(ApprovalState s) {
        return s >= 0 && s < _APPROVAL_STATE_MAX ? approval_state_table[s] : NULL;
}

static ApprovalRecord *record_free(ApprovalRecord *r) {
        if (!r)
                return NULL;
        free(r->tool);
        json_decref(r->args);
        free(r->reason);
        free(r->scope);
        free(r->decided_by);
        free(r->decision_reason);
        free(r);
        return NULL;
}

ApprovalQueue *approval_queue_new(const char *pod_id, unsigned max_pending) {
        ApprovalQueue *q = xnew0(ApprovalQueue, 1);
        pthread_condattr_t ca;

        pthread_mutex_init(&q->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&q->cond, &ca);
        pthread_condattr_destroy(&ca);
        q->pod = xstrdup(pod_id);
        q->max_pending = max_pending ?: APPROVAL_QUEUE_MAX_PENDING;
        return q;
}

ApprovalQueue *approval_queue_free(ApprovalQueue *q) {
        if (!q)
                return NULL;
        for (size_t i = 0; i < q->n_records; i++)
                record_free(q->records[i]);
        free(q->records);
        free(q->pod);
        pthread_cond_destroy(&q->cond);
        pthread_mutex_destroy(&q->lock);
        free(q);
        return NULL;
}

bool approval_scope_pod_offered(const char *operation) {
        switch (operation_from_string(operation)) {
        case OPERATION_READ_FILES:
        case OPERATION_GLOB_SEARCH:
        case OPERATION_GREP_SEARCH:
        case OPERATION_WEB_SEARCH:
        case OPERATION_WEB_FETCH:
                return true;
        default:
                return false;
        }
}

void approval_pending_digest(
        const char *pod,
        const char *id,
        const char *tool,
        const json_t *args,
        const char *operation,
        const char *args_sha256,
        const char *reason,
        char ret[static 65]) {
        _cleanup_json_ json_t *j = json_pack(
                "{s:O,s:s,s:s,s:s,s:s,s:s,s:s}",
                "args",
                (json_t *) args,
                "args_sha256",
                args_sha256 ?: "",
                "id",
                id,
                "operation",
                operation,
                "pod",
                pod,
                "reason",
                reason ?: "",
                "tool",
                tool);
        _cleanup_free_ char *text = j ? json_dump_canonical(j) : NULL;
        uint8_t h[crypto_hash_sha256_BYTES];

        if (!text)
                abort();
        crypto_hash_sha256(h, (const uint8_t *) text, strlen(text));
        for (size_t i = 0; i < sizeof h; i++)
                snprintf(ret + 2 * i, 3, "%02x", h[i]);
}

static bool hex64_ok(const char *s) {
        if (!s || strlen(s) != 64)
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
                        return false;
        return true;
}

static bool tool_ok(const char *s) {
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > 32)
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || *c == '_'))
                        return false;
        return true;
}

static void format_rfc3339(int64_t t, char buf[static 32]) {
        time_t tt = (time_t) t;
        struct tm tm;
        if (!gmtime_r(&tt, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, 32, "%lld", (long long) t);
}

static json_t *record_to_json(const ApprovalQueue *q, const ApprovalRecord *r) {
        char created[32], expires[32];
        format_rfc3339(r->created, created);
        format_rfc3339(r->expires, expires);
        json_t *scopes = json_array();
        json_array_append_new(scopes, json_string("once"));
        if (approval_scope_pod_offered(r->operation))
                json_array_append_new(scopes, json_string("pod"));
        json_t *j = json_pack(
                "{s:s,s:s,s:s,s:O,s:s,s:s,s:s,s:s,s:s,s:s,s:o}",
                "id",
                r->id,
                "pod",
                q->pod,
                "tool",
                r->tool,
                "args",
                r->args,
                "operation",
                r->operation,
                "reason",
                r->reason,
                "digest",
                r->digest,
                "state",
                approval_state_to_string(r->state),
                "created",
                created,
                "expires",
                expires,
                "scopes",
                scopes);
        if (!j)
                abort();
        if (r->args_sha256[0])
                json_object_set_new(j, "args_sha256", json_string(r->args_sha256));
        if (r->scope)
                json_object_set_new(j, "scope", json_string(r->scope));
        if (r->decided_by)
                json_object_set_new(j, "decided_by", json_string(r->decided_by));
        if (r->decision_reason)
                json_object_set_new(j, "decision_reason", json_string(r->decision_reason));
        if (r->decided_at) {
                char decided[32];
                format_rfc3339(r->decided_at, decided);
                json_object_set_new(j, "decided", json_string(decided));
        }
        return j;
}

static void decide_locked(
        ApprovalQueue *q, ApprovalRecord *r, ApprovalState s, const char *by, const char *why, int64_t now) {
        r->state = s;
        r->deciding = false;
        r->decided_at = now;
        free(r->decided_by);
        r->decided_by = by ? xstrdup(by) : NULL;
        free(r->decision_reason);
        r->decision_reason = why ? xstrndup(why, APPROVAL_QUEUE_REASON_MAX) : NULL;
        pthread_cond_broadcast(&q->cond);
}

/* Drop the oldest decided records beyond APPROVAL_QUEUE_KEEP_DECIDED. */
static void trim_locked(ApprovalQueue *q) {
        size_t decided = 0;
        for (size_t i = 0; i < q->n_records; i++)
                decided += q->records[i]->state != APPROVAL_STATE_PENDING;
        for (size_t i = 0; i < q->n_records && decided > APPROVAL_QUEUE_KEEP_DECIDED;) {
                if (q->records[i]->state == APPROVAL_STATE_PENDING) {
                        i++;
                        continue;
                }
                record_free(q->records[i]);
                memmove(q->records + i, q->records + i + 1, (q->n_records - i - 1) * sizeof(q->records[0]));
                q->n_records--;
                decided--;
        }
}

static void expire_locked(ApprovalQueue *q, int64_t now) {
        for (size_t i = 0; i < q->n_records; i++) {
                ApprovalRecord *r = q->records[i];
                if (r->state == APPROVAL_STATE_PENDING && !r->deciding && now >= r->expires)
                        decide_locked(
                                q, r, APPROVAL_STATE_EXPIRED, "node", "no decision before the expiry", now);
        }
        trim_locked(q);
}

static unsigned count_pending_locked(const ApprovalQueue *q) {
        unsigned n = 0;
        for (size_t i = 0; i < q->n_records; i++)
                n += q->records[i]->state == APPROVAL_STATE_PENDING;
        return n;
}

static ApprovalRecord *find_locked(const ApprovalQueue *q, const char *id) {
        if (!id)
                return NULL;
        for (size_t i = 0; i < q->n_records; i++)
                if (streq(q->records[i]->id, id))
                        return q->records[i];
        return NULL;
}

int approval_queue_hold(
        ApprovalQueue *q,
        const char *tool,
        const json_t *args,
        const char *operation,
        const char *args_sha256,
        const char *reason,
        int64_t now,
        int64_t ttl,
        json_t **ret) {
        uint8_t rnd[16];
        int r = 0;

        if (!tool_ok(tool) || !json_is_object(args) || !operation || operation_from_string(operation) < 0 ||
            (args_sha256 && !hex64_ok(args_sha256)))
                return -EINVAL;
        if (ttl <= 0)
                ttl = APPROVAL_QUEUE_TTL_DEFAULT;
        ttl = NUCLEUS_MIN(ttl, (int64_t) APPROVAL_QUEUE_TTL_MAX);

        ApprovalRecord *a = xnew0(ApprovalRecord, 1);
        randombytes_buf(rnd, sizeof rnd);
        for (size_t i = 0; i < sizeof rnd; i++)
                snprintf(a->id + 2 * i, 3, "%02x", rnd[i]);
        a->tool = xstrdup(tool);
        a->args = json_deep_copy(args);
        snprintf(a->operation, sizeof a->operation, "%s", operation);
        snprintf(a->args_sha256, sizeof a->args_sha256, "%s", args_sha256 ?: "");
        a->reason = xstrndup(reason ?: "the policy requires a human approval", APPROVAL_QUEUE_REASON_MAX);
        a->created = now;
        a->expires = now + ttl;
        a->state = APPROVAL_STATE_PENDING;
        approval_pending_digest(
                q->pod, a->id, a->tool, a->args, a->operation, a->args_sha256, a->reason, a->digest);

        pthread_mutex_lock(&q->lock);
        expire_locked(q, now);
        if (q->closed)
                r = -ESHUTDOWN;
        else if (count_pending_locked(q) >= q->max_pending)
                r = -EBUSY;
        else {
                q->records = xrealloc(q->records, (q->n_records + 1) * sizeof(q->records[0]));
                q->records[q->n_records++] = a;
                trim_locked(q);
                *ret = record_to_json(q, a);
                a = NULL;
        }
        pthread_mutex_unlock(&q->lock);
        record_free(a);
        return r;
}

json_t *approval_queue_list(ApprovalQueue *q, bool pending_only, int64_t now) {
        json_t *arr = json_array();
        pthread_mutex_lock(&q->lock);
        expire_locked(q, now);
        for (size_t i = 0; i < q->n_records; i++)
                if (!pending_only || q->records[i]->state == APPROVAL_STATE_PENDING)
                        json_array_append_new(arr, record_to_json(q, q->records[i]));
        pthread_mutex_unlock(&q->lock);
        return arr;
}

unsigned approval_queue_count_pending(ApprovalQueue *q, int64_t now) {
        pthread_mutex_lock(&q->lock);
        expire_locked(q, now);
        unsigned n = count_pending_locked(q);
        pthread_mutex_unlock(&q->lock);
        return n;
}

int approval_queue_get(ApprovalQueue *q, const char *id, int64_t now, json_t **ret) {
        int r = -ENOENT;
        pthread_mutex_lock(&q->lock);
        expire_locked(q, now);
        ApprovalRecord *a = find_locked(q, id);
        if (a) {
                *ret = record_to_json(q, a);
                r = 0;
        }
        pthread_mutex_unlock(&q->lock);
        return r;
}

int approval_queue_wait(ApprovalQueue *q, const char *id, usec_t timeout, json_t **ret) {
        struct timespec ts;
        int r;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        usec_t end = (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000 + timeout;
        struct timespec abs = { .tv_sec = (time_t) (end / USEC_PER_SEC),
                                .tv_nsec = (long) ((end % USEC_PER_SEC) * 1000) };

        pthread_mutex_lock(&q->lock);
        for (;;) {
                expire_locked(q, (int64_t) time(NULL));
                ApprovalRecord *a = find_locked(q, id);
                if (!a) {
                        r = -ENOENT;
                        break;
                }
                if (a->state != APPROVAL_STATE_PENDING) {
                        *ret = record_to_json(q, a);
                        r = 1;
                        break;
                }
                /* Wake at least once a second so expiry is noticed without a decider. */
                clock_gettime(CLOCK_MONOTONIC, &ts);
                usec_t now_us = (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
                if (now_us >= end) {
                        *ret = record_to_json(q, a);
                        r = 0;
                        break;
                }
                usec_t step = NUCLEUS_MIN(end, now_us + USEC_PER_SEC);
                struct timespec st = { .tv_sec = (time_t) (step / USEC_PER_SEC),
                                       .tv_nsec = (long) ((step % USEC_PER_SEC) * 1000) };
                (void) pthread_cond_timedwait(&q->cond, &q->lock, step < end ? &st : &abs);
        }
        pthread_mutex_unlock(&q->lock);
        return r;
}

int approval_queue_begin_decision(
        ApprovalQueue *q, const char *id, const char *digest, int64_t now, ApprovalPendingInfo *ret) {
        int r = 0;
        pthread_mutex_lock(&q->lock);
        expire_locked(q, now);
        ApprovalRecord *a = find_locked(q, id);
        if (!a)
                r = -ENOENT;
        else if (a->state == APPROVAL_STATE_EXPIRED)
                r = -ETIME;
        else if (a->state != APPROVAL_STATE_PENDING || a->deciding)
                r = -EALREADY;
        else if (!digest || strlen(digest) != 64 || !memeq_consttime(digest, a->digest, 64))
                r = -EBADMSG;
        else {
                a->deciding = true;
                *ret = (ApprovalPendingInfo){ .expires = a->expires,
                                              .scope_pod_offered = approval_scope_pod_offered(a->operation) };
                memcpy(ret->id, a->id, sizeof ret->id);
                memcpy(ret->operation, a->operation, sizeof ret->operation);
                memcpy(ret->args_sha256, a->args_sha256, sizeof ret->args_sha256);
        }
        pthread_mutex_unlock(&q->lock);
        return r;
}

int approval_queue_finish_decision(
        ApprovalQueue *q,
        const char *id,
        bool approved,
        const char *scope,
        const char *actor,
        const char *reason,
        int64_t now,
        json_t **ret) {
        int r = 0;
        pthread_mutex_lock(&q->lock);
        ApprovalRecord *a = find_locked(q, id);
        if (!a || !a->deciding)
                r = -ENOENT;
        else {
                free(a->scope);
                a->scope = approved && scope ? xstrdup(scope) : NULL;
                decide_locked(
                        q, a, approved ? APPROVAL_STATE_APPROVED : APPROVAL_STATE_REFUSED, actor, reason, now);
                if (ret)
                        *ret = record_to_json(q, a);
                trim_locked(q);
        }
        pthread_mutex_unlock(&q->lock);
        return r;
}

void approval_queue_abort_decision(ApprovalQueue *q, const char *id) {
        pthread_mutex_lock(&q->lock);
        ApprovalRecord *a = find_locked(q, id);
        if (a && a->deciding) {
                a->deciding = false;
                pthread_cond_broadcast(&q->cond);
        }
        pthread_mutex_unlock(&q->lock);
}

int approval_queue_withdraw(ApprovalQueue *q, const char *id, int64_t now) {
        int r = 0;
        pthread_mutex_lock(&q->lock);
        ApprovalRecord *a = find_locked(q, id);
        if (!a)
                r = -ENOENT;
        else if (a->state != APPROVAL_STATE_PENDING || a->deciding)
                r = -EALREADY;
        else {
                decide_locked(q, a, APPROVAL_STATE_WITHDRAWN, "caller", "the caller stopped waiting", now);
                trim_locked(q);
        }
        pthread_mutex_unlock(&q->lock);
        return r;
}

void approval_queue_close(ApprovalQueue *q, const char *reason, int64_t now) {
        pthread_mutex_lock(&q->lock);
        q->closed = true;
        for (size_t i = 0; i < q->n_records; i++)
                if (q->records[i]->state == APPROVAL_STATE_PENDING)
                        decide_locked(q, q->records[i], APPROVAL_STATE_REFUSED, "node", reason, now);
        pthread_cond_broadcast(&q->cond);
        pthread_mutex_unlock(&q->lock);
}
