/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pod events: the audit log appends with their /events (SSE) subscribers, and what the node
 * records of guest-reported events (validated, rate-limited and capped: a compromised guest
 * ignores the proxy's own caps).
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cgroup.h"
#include "fd-util.h"
#include "id-util.h"
#include "json-util.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
#include "net.h"
#include "node-util.h"
#include "pod.h"
#include "nodespec.h"
#include "string-util.h"
#include "pod-internal.h"

struct PodSub {
        char **queue; /* pending SSE chunks */
        size_t n_queue;
        bool overflow;
        pthread_cond_t cond;
        PodSub *next;
};
#define POD_SUB_QUEUE_MAX 1024u

/* ---- events (SSE) ---------------------------------------------------------------------- */

void pod_broadcast_locked(Pod *p, const char *event, json_t *data) {
        _cleanup_free_ char *text = NULL;
        if (!p->subs)
                return;
        text = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
                return;
        for (PodSub *s = p->subs; s; s = s->next) {
                if (s->n_queue >= POD_SUB_QUEUE_MAX) {
                        s->overflow = true;
                        continue;
                }
                s->queue = xreallocarray(s->queue, s->n_queue + 1, sizeof(char *));
                s->queue[s->n_queue++] = xasprintf("event: %s\ndata: %s\n\n", event, text);
                pthread_cond_signal(&s->cond);
        }
}

void pod_publish(Pod *p, const char *event, json_t *data) {
        pthread_mutex_lock(&p->node->lock);
        pod_broadcast_locked(p, event, data);
        pthread_mutex_unlock(&p->node->lock);
}

PodSub *pod_subscribe(Pod *p) {
        PodSub *s = xnew0(PodSub, 1);
        pthread_cond_init(&s->cond, NULL);
        pthread_mutex_lock(&p->node->lock);
        s->next = p->subs;
        p->subs = s;
        pthread_mutex_unlock(&p->node->lock);
        return s;
}

int pod_sub_next(Pod *p, PodSub *s, usec_t timeout, char **ret) {
        struct timespec ts;
        int r = 0;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        usec_t end = (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000 + timeout;
        pthread_mutex_lock(&p->node->lock);
        for (;;) {
                if (s->overflow) {
                        r = -ENOBUFS;
                        break;
                }
                if (s->n_queue > 0) {
                        *ret = s->queue[0];
                        memmove(s->queue, s->queue + 1, (s->n_queue - 1) * sizeof(char *));
                        s->n_queue--;
                        r = 1;
                        break;
                }
                if (p->events_closed) {
                        r = -EPIPE;
                        break;
                }
                struct timespec abs = { .tv_sec = (time_t) (end / USEC_PER_SEC),
                                        .tv_nsec = (long) ((end % USEC_PER_SEC) * 1000) };
                if (pthread_cond_timedwait(&s->cond, &p->node->lock, &abs) == ETIMEDOUT) {
                        r = 0;
                        break;
                }
        }
        pthread_mutex_unlock(&p->node->lock);
        return r;
}

void pod_unsubscribe(Pod *p, PodSub *s) {
        if (!s)
                return;
        pthread_mutex_lock(&p->node->lock);
        for (PodSub **pp = &p->subs; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        break;
                }
        pthread_mutex_unlock(&p->node->lock);
        for (size_t i = 0; i < s->n_queue; i++)
                free(s->queue[i]);
        free(s->queue);
        pthread_cond_destroy(&s->cond);
        free(s);
}

void pod_wake_subs_locked(Pod *p) {
        for (PodSub *s = p->subs; s; s = s->next)
                pthread_cond_signal(&s->cond);
}

/* ---- audit --------------------------------------------------------------------------------- */

int pod_audit_seq(Pod *p, const AuditEvent *ev, uint64_t *ret_seq) {
        uint64_t seq = 0;
        int r;

        pthread_mutex_lock(&p->audit_lock);
        r = p->audit ? audit_log_append(p->audit, ev, &seq) : -ESTALE;
        pthread_mutex_unlock(&p->audit_lock);
        if (r == -ESTALE) {
                /* Sealed and closed at the pod's end: nothing is recorded after the seal. */
                log_debug("pod %s: '%s' after the audit log was sealed, not recorded", p->id, ev->op);
                return r;
        }
        if (r < 0) {
                metrics_audit_error();
                log_error_errno(r, "pod %s: audit append of '%s' failed: %m", p->id, ev->op);
                return r;
        }
        if (ret_seq)
                *ret_seq = seq;
        _cleanup_json_ json_t *j = json_pack(
                "{s:I,s:s,s:s,s:s,s:s}",
                "seq",
                (json_int_t) seq,
                "pod",
                p->id,
                "actor",
                ev->actor,
                "op",
                ev->op,
                "decision",
                ev->decision);
        if (ev->kind)
                json_object_set_new(j, "kind", json_string(ev->kind));
        if (ev->args_sha256)
                json_object_set_new(j, "args_sha256", json_string(ev->args_sha256));
        if (ev->result_sha256)
                json_object_set_new(j, "result_sha256", json_string(ev->result_sha256));
        if (ev->request_seq)
                json_object_set_new(j, "request_seq", json_integer((json_int_t) ev->request_seq));
        if (ev->detail)
                json_object_set(j, "detail", (json_t *) ev->detail);
        pthread_mutex_lock(&p->node->lock);
        pod_broadcast_locked(p, "audit", j);
        pthread_mutex_unlock(&p->node->lock);
        return 0;
}

int pod_audit(Pod *p, const AuditEvent *ev) {
        return pod_audit_seq(p, ev, NULL);
}

/* Lifecycle records: op "pod_<event>", decision "info", the detail text hashed as the result. */
void pod_audit_lifecycle(Pod *p, const char *event, const char *detail, const char *kind) {
        _cleanup_free_ char *op = xasprintf("pod_%s", event);
        AuditEvent ev = {
                .actor = "node",
                .op = op,
                .decision = "info",
                .kind = kind,
                .result = detail,
                .result_len = detail ? strlen(detail) : 0,
        };
        pod_audit(p, &ev);
}

const char *hex64_or_null(json_t *v) {
        const char *s = json_string_value(v);
        if (!s || strlen(s) != 64 || strspn(s, "0123456789abcdef") != 64)
                return NULL;
        return s;
}

#define POD_GUEST_EVENTS_MAX 200000u
/* What the node records of guest-reported events (a compromised guest ignores the proxy's own
 * caps): events over POD_GUEST_EVENT_BYTES_MAX of JSON, past a token bucket of
 * POD_GUEST_EVENT_RATE per second (burst POD_GUEST_EVENT_BURST), or past
 * POD_GUEST_RECORDS_MAX records are dropped, counted, and reported in a signed
 * "guest_events_dropped" record (at most every POD_GUEST_DROP_REPORT_USEC, and at the end). */
#define POD_GUEST_EVENT_BYTES_MAX 16384u
#define POD_GUEST_EVENT_RATE 50u
#define POD_GUEST_EVENT_BURST 200u
#define POD_GUEST_RECORDS_MAX 10000u
#define POD_GUEST_DROP_REPORT_USEC (5 * USEC_PER_SEC)

static const char *const guest_drop_reason[3] = { "rate", "size", "total" };

/* Append the drop report if anything was dropped since the last one (force: regardless of the
 * report interval). The text is also in node.log; the record holds its SHA-256. */
void pod_guest_drops_report(Pod *p, bool force) {
        uint64_t d[3];
        usec_t now = now_usec(CLOCK_MONOTONIC);
        pthread_mutex_lock(&p->node->lock);
        bool due = (p->guest_dropped[0] | p->guest_dropped[1] | p->guest_dropped[2]) != 0 &&
                (force || now - p->guest_dropped_reported_at >= POD_GUEST_DROP_REPORT_USEC);
        if (due) {
                memcpy(d, p->guest_dropped, sizeof d);
                memset(p->guest_dropped, 0, sizeof p->guest_dropped);
                p->guest_dropped_reported_at = now;
        }
        pthread_mutex_unlock(&p->node->lock);
        if (!due)
                return;
        _cleanup_free_ char *text = xasprintf(
                "{\"dropped\":{\"rate\":%llu,\"size\":%llu,\"total\":%llu}}",
                (unsigned long long) d[0],
                (unsigned long long) d[1],
                (unsigned long long) d[2]);
        AuditEvent ae = { .actor = "node",
                          .op = "guest_events_dropped",
                          .decision = "info",
                          .result = text,
                          .result_len = strlen(text) };
        pod_audit(p, &ae);
        pod_log(p, LOG_WARNING, "guest events dropped: %s", text);
}

/* Admit one guest event of n bytes (JSON text)? Counts drops; under node->lock. */
static bool pod_guest_admit_locked(Pod *p, size_t n) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        int why = -1;
        if (p->guest_tokens_at == 0) {
                p->guest_tokens_milli = (uint64_t) POD_GUEST_EVENT_BURST * 1000u;
                p->guest_tokens_at = now;
        }
        uint64_t add = (now - p->guest_tokens_at) * POD_GUEST_EVENT_RATE / 1000u; /* milli-tokens */
        if (add > 0) {
                p->guest_tokens_milli = NUCLEUS_MIN(
                        p->guest_tokens_milli + add, (uint64_t) POD_GUEST_EVENT_BURST * 1000u);
                p->guest_tokens_at = now;
        }
        if (n > POD_GUEST_EVENT_BYTES_MAX)
                why = 1;
        else if (p->n_guest_recorded >= POD_GUEST_RECORDS_MAX)
                why = 2;
        else if (p->guest_tokens_milli < 1000u)
                why = 0;
        if (why >= 0) {
                p->guest_dropped[why]++;
                metrics_guest_event_dropped(guest_drop_reason[why]);
                return false;
        }
        p->guest_tokens_milli -= 1000u;
        p->n_guest_recorded++;
        return true;
}

void pod_on_event(void *userdata, json_t *ev) {
        Pod *p = userdata;
        const char *type = json_string_value(json_object_get(ev, "type"));
        const char *op = json_string_value(json_object_get(ev, "op"));
        const char *decision = json_string_value(json_object_get(ev, "decision"));
        const char *kind = json_string_value(json_object_get(ev, "kind"));
        _cleanup_free_ char *gop = NULL, *text = NULL;

        if (pod_pool_stash_event(p, ev))
                return; /* a pooled pod has no log yet: kept for its claim */

        /* A guest may not fill the host's disk through the audit log: past the cap the pod is
         * ended (its own records stop being trustworthy evidence anyway). */
        pthread_mutex_lock(&p->node->lock);
        bool flood = ++p->n_guest_events > POD_GUEST_EVENTS_MAX && p->state == POD_RUNNING &&
                !p->terminating && p->n_ref > 0;
        if (flood)
                p->n_ref++;
        pthread_mutex_unlock(&p->node->lock);
        if (flood) {
                pod_terminate_async_take(
                        p, POD_FAILED, "the guest sent more events than the audit log accepts", "too_large");
                return;
        }
        if (p->n_guest_events > POD_GUEST_EVENTS_MAX)
                return;

        /* Guest events are recorded as reported, marked actor "guest": the guest cannot write
         * the log itself, and its claims are evidence, not the node's own observation. Only
         * fields with a closed syntax are copied; everything else goes in as a digest. */
        if (!operation_name_valid(op))
                op = NULL;
        gop = xasprintf("guest.%s", op ?: (streq_ptr(type, "boot") ? "boot" : "event"));
        if (!decision || !(streq(decision, "allow") || streq(decision, "deny") || streq(decision, "error")))
                decision = "info";
        if (kind && (int) error_kind_from_string(kind) < 0)
                kind = NULL;
        text = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
        pthread_mutex_lock(&p->node->lock);
        bool admit = pod_guest_admit_locked(p, text ? strlen(text) : SIZE_MAX);
        pthread_mutex_unlock(&p->node->lock);
        pod_guest_drops_report(p, false);
        if (!admit)
                return;
        AuditEvent ae = {
                .actor = "guest",
                .op = gop,
                .decision = decision,
                .kind = kind,
                .args_sha256 = hex64_or_null(json_object_get(ev, "args_sha256")),
                .result_sha256 = hex64_or_null(json_object_get(ev, "result_sha256")),
        };
        if (!ae.result_sha256 && text) {
                ae.result = text;
                ae.result_len = strlen(text);
        }
        pod_audit(p, &ae);
}
