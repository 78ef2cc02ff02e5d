/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pod table and lifecycle. A pod is created pending by the API, booted on its own thread
 * (VMM start, channel connect, configure), supervised (VMM pidfd, deadline) and terminated
 * exactly once. Everything the guest sends is untrusted; the node alone writes the audit log.
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
#include "json-util.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
#include "net.h"
#include "node-util.h"
#include "pod.h"
#include "nodespec.h"
#include "string-util.h"

static const char *const pod_state_table[_POD_STATE_MAX] = {
        [POD_PENDING] = "pending", [POD_BOOTING] = "booting",   [POD_CONFIGURING] = "configuring",
        [POD_RUNNING] = "running", [POD_STOPPING] = "stopping", [POD_EXITED] = "exited",
        [POD_FAILED] = "failed",
};
DEFINE_STRING_TABLE_LOOKUP(pod_state, PodState);

struct PodSub {
        char **queue; /* pending SSE chunks */
        size_t n_queue;
        bool overflow;
        pthread_cond_t cond;
        PodSub *next;
};
#define POD_SUB_QUEUE_MAX 1024u

static pthread_t supervisor_thread;
static bool supervisor_running;

static bool pod_state_is_final(PodState s) {
        return s == POD_EXITED || s == POD_FAILED;
}

static bool pod_state_is_live(PodState s) {
        return !pod_state_is_final(s);
}

Pod *pod_ref(Pod *p) {
        pthread_mutex_lock(&node_global->lock);
        p->n_ref++;
        pthread_mutex_unlock(&node_global->lock);
        return p;
}

static void pod_free(Pod *p) {
        p->channel = channel_free(p->channel);
        p->vm = vmm_free(p->vm);
        if (p->net)
                (void) net_pod_teardown(TAKE_PTR(p->net));
        p->audit = audit_log_free(p->audit);
        nodespec_free(p->spec);
        free(p->name);
        free(p->reason);
        free(p->reason_kind);
        free(p->dir);
        free(p->policy_sha256);
        free(p->configure_sha256);
        free(p->cgroup_dir);
        pthread_mutex_destroy(&p->audit_lock);
        pthread_mutex_destroy(&p->net_lock);
        free(p);
}

Pod *pod_unref(Pod *p) {
        bool last;
        if (!p)
                return NULL;
        pthread_mutex_lock(&node_global->lock);
        assert(p->n_ref > 0);
        last = --p->n_ref == 0;
        pthread_mutex_unlock(&node_global->lock);
        if (last)
                pod_free(p);
        return NULL;
}

Pod *pod_find(Node *n, const char *id) {
        Pod *found = NULL;
        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; i < n->n_pods; i++)
                if (streq(n->pods[i]->id, id)) {
                        found = n->pods[i];
                        found->n_ref++;
                        break;
                }
        pthread_mutex_unlock(&n->lock);
        return found;
}

unsigned pod_count_live_locked(Node *n) {
        unsigned c = 0;
        for (size_t i = 0; i < n->n_pods; i++)
                if (pod_state_is_live(n->pods[i]->state))
                        c++;
        return c;
}

/* ---- events (SSE) ---------------------------------------------------------------------- */

static void pod_broadcast_locked(Pod *p, const char *event, json_t *data) {
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

PodSub *pod_subscribe(Pod *p) {
        PodSub *s = xnew0(PodSub, 1);
        pthread_cond_init(&s->cond, NULL);
        pthread_mutex_lock(&node_global->lock);
        s->next = p->subs;
        p->subs = s;
        pthread_mutex_unlock(&node_global->lock);
        return s;
}

int pod_sub_next(Pod *p, PodSub *s, usec_t timeout, char **ret) {
        struct timespec ts;
        int r = 0;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        usec_t end = (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000 + timeout;
        pthread_mutex_lock(&node_global->lock);
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
                if (pthread_cond_timedwait(&s->cond, &node_global->lock, &abs) == ETIMEDOUT) {
                        r = 0;
                        break;
                }
        }
        pthread_mutex_unlock(&node_global->lock);
        return r;
}

void pod_unsubscribe(Pod *p, PodSub *s) {
        if (!s)
                return;
        pthread_mutex_lock(&node_global->lock);
        for (PodSub **pp = &p->subs; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        break;
                }
        pthread_mutex_unlock(&node_global->lock);
        for (size_t i = 0; i < s->n_queue; i++)
                free(s->queue[i]);
        free(s->queue);
        pthread_cond_destroy(&s->cond);
        free(s);
}

static void pod_wake_subs_locked(Pod *p) {
        for (PodSub *s = p->subs; s; s = s->next)
                pthread_cond_signal(&s->cond);
}

/* ---- audit --------------------------------------------------------------------------------- */

void pod_audit(Pod *p, const AuditEvent *ev) {
        uint64_t seq = 0;
        int r;

        pthread_mutex_lock(&p->audit_lock);
        r = p->audit ? audit_log_append(p->audit, ev, &seq) : -EBADF;
        pthread_mutex_unlock(&p->audit_lock);
        if (r < 0) {
                metrics_audit_error();
                log_error_errno(r, "pod %s: audit append of '%s' failed: %m", p->id, ev->op);
                return;
        }
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
        pthread_mutex_lock(&node_global->lock);
        pod_broadcast_locked(p, "audit", j);
        pthread_mutex_unlock(&node_global->lock);
}

/* Lifecycle records: op "pod_<event>", decision "info", the detail text hashed as the result. */
static void pod_audit_lifecycle(Pod *p, const char *event, const char *detail, const char *kind) {
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

/* ---- the pod's node log ---------------------------------------------------------------------- */

/* One line to the daemon's log and to <pod>/node.log (kept after the pod ends; part of
 * GET .../logs), so a pod's own history is readable without the node's journal. */
_printf_(3, 4) static void pod_log(Pod *p, int level, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL, *line = NULL, *path = NULL;
        char ts[32];
        va_list ap;

        va_start(ap, fmt);
        msg = xvasprintf(fmt, ap);
        va_end(ap);
        log_full(level, "pod %s: %s", p->id, msg);
        line = xasprintf("%s %s\n", format_timestamp_rfc3339(ts, now_usec(CLOCK_REALTIME)), msg);
        path = xasprintf("%s/node.log", p->dir);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0)
                (void) loop_write(fd, line, strlen(line));
}

/* ---- state ------------------------------------------------------------------------------- */

static void pod_set_state(Pod *p, PodState s) {
        pthread_mutex_lock(&node_global->lock);
        if (!p->terminating || s == POD_STOPPING || pod_state_is_final(s))
                p->state = s;
        pod_wake_subs_locked(p);
        pthread_mutex_unlock(&node_global->lock);
        node_wake(node_global);
}

json_t *pod_to_json(Pod *p) {
        char created[32], deadline[32], ended[32];
        json_t *j;

        pthread_mutex_lock(&node_global->lock);
        usec_t deadline_rt = p->created_rt + p->timeout;
        j = json_pack(
                "{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I}",
                "id",
                p->id,
                "state",
                pod_state_to_string(p->state),
                "driver",
                vmm_driver_to_string(p->driver),
                "created",
                format_timestamp_rfc3339(created, p->created_rt),
                "deadline",
                format_timestamp_rfc3339(deadline, deadline_rt),
                "vcpus",
                (json_int_t) p->vcpus,
                "memory_mib",
                (json_int_t) p->memory_mib,
                "timeout_seconds",
                (json_int_t) (p->timeout / USEC_PER_SEC));
        json_object_set_new(j, "name", p->name ? json_string(p->name) : json_null());
        if (p->reason)
                json_object_set_new(j, "reason", json_string(p->reason));
        if (p->reason_kind)
                json_object_set_new(j, "reason_kind", json_string(p->reason_kind));
        if (p->ended_rt)
                json_object_set_new(j, "ended", json_string(format_timestamp_rfc3339(ended, p->ended_rt)));
        if (p->policy_sha256)
                json_object_set_new(j, "policy_sha256", json_string(p->policy_sha256));
        if (p->configure_sha256)
                json_object_set_new(j, "configure_sha256", json_string(p->configure_sha256));
        if (p->vm)
                json_object_set_new(j, "accel", json_string(vmm_accel(p->vm)));
        json_object_set_new(j, "network", json_boolean(p->spec->has_network));
        if (p->net)
                json_object_set_new(j, "netns", json_string(net_pod_info(p->net)->netns_name));
        if (p->budget_spent_micro_usd)
                json_object_set_new(
                        j, "budget_spent_usd_micros", json_integer((json_int_t) p->budget_spent_micro_usd));
        if (p->weak)
                json_object_set_new(
                        j,
                        "warning",
                        json_string("driver local: the proxy runs on the host in bubblewrap; weaker "
                                    "isolation than a microVM"));
        pthread_mutex_unlock(&node_global->lock);
        return j;
}

/* ---- termination ------------------------------------------------------------------------ */

/* Remove everything in the pod dir except the audit log and the logs. */
static void pod_dir_prune(const char *dir) {
        static const char *const keep[] = { "audit.jsonl", "console.log", "node.log", "state.json" };
        int dfd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (dfd < 0)
                return;
        DIR *d = fdopendir(dfd);
        if (!d) {
                safe_close(dfd);
                return;
        }
        for (struct dirent *de; (de = readdir(d));) {
                bool kept = false;
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                for (size_t i = 0; i < ELEMENTSOF(keep); i++)
                        if (streq(de->d_name, keep[i]))
                                kept = true;
                if (kept)
                        continue;
                _cleanup_free_ char *p = xasprintf("%s/%s", dir, de->d_name);
                (void) node_rm_rf(p);
        }
        closedir(d);
}

static void pod_write_state_file(Pod *p) {
        _cleanup_json_ json_t *j = pod_to_json(p);
        _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        _cleanup_close_ int dfd = open(p->dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (dfd >= 0 && text)
                (void) write_file_atomic_at(dfd, "state.json", text, strlen(text), 0600);
}

static void pod_guest_drops_report(Pod *p, bool force);

void pod_terminate(Pod *p, PodState final, const char *reason, const char *kind) {
        Channel *ch;
        Vmm *vm;
        PodState was;

        pthread_mutex_lock(&node_global->lock);
        if (p->terminating || pod_state_is_final(p->state)) {
                pthread_mutex_unlock(&node_global->lock);
                return;
        }
        p->terminating = true;
        was = p->state;
        p->state = POD_STOPPING;
        free(p->reason);
        p->reason = xstrdup(reason);
        free(p->reason_kind);
        p->reason_kind = kind ? xstrdup(kind) : NULL;
        ch = p->channel;
        vm = p->vm;
        pod_wake_subs_locked(p);
        pthread_mutex_unlock(&node_global->lock);

        pod_log(p, LOG_INFO, "stopping (%s, was %s)", reason, pod_state_to_string(was));
        /* Last word with a live proxy: what the pod spent (for metrics and the pod object). */
        if (ch && was == POD_RUNNING) {
                ChannelReply rep = {};
                if (channel_call(ch, "status", NULL, 0, NULL, 0, 2 * USEC_PER_SEC, 0, &rep) >= 0) {
                        json_t *used = json_object_get(
                                json_object_get(rep.response, "budget"), "used_usd_micros");
                        if (json_is_integer(used) && json_integer_value(used) > 0) {
                                pthread_mutex_lock(&node_global->lock);
                                p->budget_spent_micro_usd = (uint64_t) json_integer_value(used);
                                pthread_mutex_unlock(&node_global->lock);
                                metrics_budget_spent((uint64_t) json_integer_value(used));
                        }
                        channel_reply_done(&rep);
                }
        }
        /* Fail every waiter on the channel first, then end the VM. */
        if (ch)
                channel_shutdown(ch);
        if (vm) {
                int r = vmm_stop(vm);
                if (r > 0)
                        log_debug("pod %s: VMM ended with status %d", p->id, r);
        }
        pthread_mutex_lock(&p->net_lock); /* serialises with the drift check */
        if (p->net) {
                int r = net_pod_teardown(TAKE_PTR(p->net));
                if (r < 0)
                        log_warning_errno(r, "pod %s: network teardown incomplete: %m", p->id);
        }
        pthread_mutex_unlock(&p->net_lock);
        if (p->cgroup_dir)
                (void) cgroup_pod_remove(p->cgroup_dir);

        pthread_mutex_lock(&node_global->lock);
        p->state = final;
        p->ended_rt = now_usec(CLOCK_REALTIME);
        pthread_mutex_unlock(&node_global->lock);

        pod_guest_drops_report(p, true);
        pod_audit_lifecycle(p, final == POD_FAILED ? "failed" : "exited", reason, kind);
        pthread_mutex_lock(&p->audit_lock);
        if (p->audit) {
                int r = audit_log_seal(p->audit);
                if (r < 0) {
                        metrics_audit_error();
                        log_error_errno(r, "pod %s: sealing the audit log failed: %m", p->id);
                }
        }
        pthread_mutex_unlock(&p->audit_lock);
        pod_dir_prune(p->dir);
        pod_write_state_file(p);

        pthread_mutex_lock(&node_global->lock);
        {
                _cleanup_json_ json_t *ev = json_pack(
                        "{s:s,s:s,s:s}", "id", p->id, "state", pod_state_to_string(final), "reason", reason);
                pod_broadcast_locked(p, "end", ev);
        }
        p->events_closed = true;
        pod_wake_subs_locked(p);
        pthread_mutex_unlock(&node_global->lock);
        pod_log(p, LOG_INFO, "%s (%s)", pod_state_to_string(final), reason);
        node_wake(node_global);
}

typedef struct TerminateJob {
        Pod *pod;
        PodState final;
        char *reason;
        char *kind;
} TerminateJob;

static void *terminate_thread(void *userdata) {
        TerminateJob *j = userdata;
        pod_terminate(j->pod, j->final, j->reason, j->kind);
        pod_unref(j->pod);
        free(j->reason);
        free(j->kind);
        free(j);
        return NULL;
}

/* Like pod_terminate_async, consuming a reference the caller already holds. */
static void pod_terminate_async_take(Pod *p, PodState final, const char *reason, const char *kind) {
        TerminateJob *j = xnew0(TerminateJob, 1);
        pthread_attr_t attr;
        pthread_t t;

        j->pod = p;
        j->final = final;
        j->reason = xstrdup(reason);
        j->kind = kind ? xstrdup(kind) : NULL;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, terminate_thread, j) != 0)
                terminate_thread(j);
        pthread_attr_destroy(&attr);
}

void pod_terminate_async(Pod *p, PodState final, const char *reason, const char *kind) {
        pod_terminate_async_take(pod_ref(p), final, reason, kind);
}

/* ---- boot ------------------------------------------------------------------------------- */

static const char *hex64_or_null(json_t *v) {
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

static void pod_terminate_async_take(Pod *p, PodState final, const char *reason, const char *kind);

static const char *const guest_drop_reason[3] = { "rate", "size", "total" };

/* Append the drop report if anything was dropped since the last one (force: regardless of the
 * report interval). The text is also in node.log; the record holds its SHA-256. */
static void pod_guest_drops_report(Pod *p, bool force) {
        uint64_t d[3];
        usec_t now = now_usec(CLOCK_MONOTONIC);
        pthread_mutex_lock(&node_global->lock);
        bool due = (p->guest_dropped[0] | p->guest_dropped[1] | p->guest_dropped[2]) != 0 &&
                (force || now - p->guest_dropped_reported_at >= POD_GUEST_DROP_REPORT_USEC);
        if (due) {
                memcpy(d, p->guest_dropped, sizeof d);
                memset(p->guest_dropped, 0, sizeof p->guest_dropped);
                p->guest_dropped_reported_at = now;
        }
        pthread_mutex_unlock(&node_global->lock);
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

static void pod_on_event(void *userdata, json_t *ev) {
        Pod *p = userdata;
        const char *type = json_string_value(json_object_get(ev, "type"));
        const char *op = json_string_value(json_object_get(ev, "op"));
        const char *decision = json_string_value(json_object_get(ev, "decision"));
        const char *kind = json_string_value(json_object_get(ev, "kind"));
        _cleanup_free_ char *gop = NULL, *text = NULL;

        /* A guest may not fill the host's disk through the audit log: past the cap the pod is
         * ended (its own records stop being trustworthy evidence anyway). */
        pthread_mutex_lock(&node_global->lock);
        bool flood = ++p->n_guest_events > POD_GUEST_EVENTS_MAX && p->state == POD_RUNNING &&
                !p->terminating && p->n_ref > 0;
        if (flood)
                p->n_ref++;
        pthread_mutex_unlock(&node_global->lock);
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
        if (!op || strlen(op) > 32 || strspn(op, "abcdefghijklmnopqrstuvwxyz_") != strlen(op))
                op = NULL;
        gop = xasprintf("guest.%s", op ?: (streq_ptr(type, "boot") ? "boot" : "event"));
        if (!decision || !(streq(decision, "allow") || streq(decision, "deny") || streq(decision, "error")))
                decision = "info";
        if (kind && (int) error_kind_from_string(kind) < 0)
                kind = NULL;
        text = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
        pthread_mutex_lock(&node_global->lock);
        bool admit = pod_guest_admit_locked(p, text ? strlen(text) : SIZE_MAX);
        pthread_mutex_unlock(&node_global->lock);
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

/* If the VMM process has ended (or ends within wait), a reason naming how; else NULL. */
static char *pod_vmm_exit_reason(Pod *p, usec_t wait) {
        usec_t end = now_usec(CLOCK_MONOTONIC) + wait;
        int fd = -EBADF;

        pthread_mutex_lock(&node_global->lock);
        if (p->vm && vmm_pid(p->vm)->fd >= 0)
                fd = fcntl(vmm_pid(p->vm)->fd, F_DUPFD_CLOEXEC, 3);
        pthread_mutex_unlock(&node_global->lock);
        if (fd < 0)
                return NULL;
        for (;;) {
                siginfo_t si = {};
                int w = waitid(P_PIDFD, (id_t) fd, &si, WEXITED | WNOHANG | WNOWAIT);
                if (w < 0)
                        break; /* already reaped: someone else is ending the pod */
                if (si.si_pid != 0) {
                        safe_close(fd);
                        return si.si_code == CLD_EXITED
                                ? xasprintf("VMM exited unexpectedly with status %d", si.si_status)
                                : xasprintf("VMM killed by signal %s", sigabbrev_np(si.si_status) ?: "?");
                }
                if (now_usec(CLOCK_MONOTONIC) >= end)
                        break;
                (void) usleep(20 * 1000);
        }
        safe_close(fd);
        return NULL;
}

static void pod_on_close(void *userdata, int error) {
        Pod *p = userdata;
        bool live;

        /* Runs on the channel's reader thread, which holds no reference: the pod may be in
         * pod_free (n_ref 0, joining this very thread). Only a pod with references that is
         * still running is touched, and the termination job gets its reference under the
         * same lock. */
        pthread_mutex_lock(&node_global->lock);
        live = p->n_ref > 0 && p->state == POD_RUNNING && !p->terminating;
        if (live)
                p->n_ref++;
        pthread_mutex_unlock(&node_global->lock);
        if (!live)
                return;
        /* A dead VMM closes the channel too: name the cause, not the symptom. */
        _cleanup_free_ char *why = pod_vmm_exit_reason(p, 500 * USEC_PER_MSEC);
        if (!why)
                why = error < 0 ? xasprintf("channel to the guest broken: %s", strerror(-error))
                                : xstrdup("the guest closed the channel");
        pod_terminate_async_take(p, POD_FAILED, why, "internal");
}

static int pod_configure(Pod *p, char **reterr) {
        _cleanup_json_ json_t *args = NULL;
        ChannelReply reply = {};
        int r;

        args = nodespec_configure_args(
                p->spec, p->id, node_global->have_approver_pub ? node_global->approver_pub : NULL);
        json_object_set_new(args, "timeout_seconds", json_integer((json_int_t) (p->timeout / USEC_PER_SEC)));
        r = channel_call(p->channel, "configure", args, 0, NULL, 0, 60 * USEC_PER_SEC, 0, &reply);
        if (r < 0) {
                *reterr = xasprintf("configure: no answer from the proxy: %s", strerror(-r));
                return r;
        }
        const char *err = json_string_value(json_object_get(reply.response, "error"));
        const char *sha = json_string_value(json_object_get(reply.response, "policy_sha256"));
        /* configure_sha256 (proxy review S3) attests the whole configuration; an older proxy
         * may not send it, but one that does must send a well-formed digest. */
        json_t *cfg_v = json_object_get(reply.response, "configure_sha256");
        const char *cfg_sha = hex64_or_null(cfg_v);
        if (!err && cfg_v && !cfg_sha)
                err = "malformed configure_sha256 in the answer";
        if (err || !sha || strlen(sha) != 64) {
                *reterr = xasprintf(
                        "configure refused by the proxy: %s (%s)",
                        err ?: "no policy_sha256 in the answer",
                        json_string_value(json_object_get(reply.response, "kind")) ?: "?");
                channel_reply_done(&reply);
                return -EPROTO;
        }
        pthread_mutex_lock(&node_global->lock);
        p->policy_sha256 = xstrdup(sha);
        p->configure_sha256 = cfg_sha ? xstrdup(cfg_sha) : NULL;
        pthread_mutex_unlock(&node_global->lock);
        {
                /* args_sha256: the proxy's configure_sha256 when it sent one (else the digest of
                 * the arguments the node sent); result_sha256: policy_sha256. */
                AuditEvent ev = { .actor = "node",
                                  .op = "configure",
                                  .decision = "allow",
                                  .args = cfg_sha ? NULL : args,
                                  .args_sha256 = cfg_sha,
                                  .result_sha256 = sha };
                pod_audit(p, &ev);
        }
        channel_reply_done(&reply);
        return 0;
}

static bool pod_stopping(Pod *p) {
        bool r;
        pthread_mutex_lock(&node_global->lock);
        r = p->terminating;
        pthread_mutex_unlock(&node_global->lock);
        return r;
}

/* The pod's DNS filter refused a query (runs on the filter's thread): count it; audit the first
 * ones (the filter stops asking for detail after a few, so the log cannot be flooded). */
static void pod_dns_refused(
        void *userdata, const char *reason, const char *name, const char *entry, unsigned limit, bool detail) {
        Pod *p = userdata;
        metrics_dns_refused(reason);
        if (!detail)
                return;
        _cleanup_json_ json_t *d = json_pack(
                "{s:s,s:s,s:s?,s:i}", "reason", reason, "name", name, "entry", entry, "wildcard_names", (int) limit);
        AuditEvent ev = {
                .actor = "node", .op = "dns_query", .decision = "deny", .kind = "network_denied", .detail = d
        };
        pod_audit(p, &ev);
}

static void *pod_boot_thread(void *userdata) {
        Pod *p = userdata;
        Node *n = node_global;
        _cleanup_free_ char *err = NULL, *image_dir = NULL;
        _cleanup_(net_policy_freep) NetPolicy *netpol = NULL;
        usec_t t0 = now_usec(CLOCK_MONOTONIC), t_boot;
        VmmLaunch l = {};
        Vmm *vm = NULL;
        int r, fd = -EBADF;

        pod_set_state(p, POD_BOOTING);
        pod_audit_lifecycle(p, "booting", NULL, NULL);
        pod_log(p,
                LOG_DEBUG,
                "booting (driver %s, %u vCPU, %" PRIu64 " MiB, deadline in %" PRIu64 " s)",
                vmm_driver_to_string(p->driver),
                p->vcpus,
                p->memory_mib,
                (uint64_t) (p->timeout / USEC_PER_SEC));
        if (p->weak)
                pod_log(p,
                        LOG_WARNING,
                        "driver local: the proxy runs on the host in bubblewrap; this is weaker isolation "
                        "than a microVM");

        if (p->spec->has_network) {
                r = net_policy_from_strv(p->spec->allow, p->spec->deny, p->spec->dns_allow, &netpol, &err);
                if (r < 0)
                        goto fail;
                netpol->dns_wildcard_names = p->spec->dns_wildcard_names;
        }
        if (netpol && p->driver != VMM_DRIVER_LOCAL) {
                NetConfig nc = NET_CONFIG_NULL;
                nc.state_dir = n->config.net_state_dir;
                nc.pool = n->config.net_pool;
                nc.dns_upstream = n->config.net_dns_upstream;
                nc.dns_wildcard_names = n->config.net_dns_wildcard_names;
                nc.dns_event = pod_dns_refused;
                nc.dns_event_userdata = p;
                if (n->vmm_uid != 0) {
                        nc.tap_uid = n->vmm_uid;
                        nc.tap_gid = n->vmm_gid;
                }
                NetPod *np = NULL;
                r = net_pod_setup(&nc, p->id, netpol, &np, &err);
                if (r < 0)
                        goto fail;
                pthread_mutex_lock(&p->net_lock);
                pthread_mutex_lock(&n->lock);
                bool late = p->terminating;
                pthread_mutex_unlock(&n->lock);
                if (late) /* terminated while the network was being built: nobody else tears it down */
                        (void) net_pod_teardown(np);
                else
                        p->net = np;
                pthread_mutex_unlock(&p->net_lock);
                if (late)
                        goto out;
        }

        if (n->cgroup_root && p->driver != VMM_DRIVER_LOCAL) {
                r = cgroup_pod_create(n->cgroup_root, p->id, p->memory_mib, p->vcpus, 512, &p->cgroup_dir);
                if (r < 0)
                        log_warning_errno(
                                r, "pod %s: cannot create its cgroup, running without limits: %m", p->id);
        }

        image_dir = nodespec_image_dir(p->spec, n->config.images_dir);
        l = (VmmLaunch){
                .pod_id = p->id,
                .pod_dir = p->dir,
                .image_dir = image_dir,
                .accel = n->accel_in_use ?: n->config.accel,
                .vcpus = p->vcpus,
                .memory_mib = p->memory_mib,
                .scratch_mib = p->scratch_mib,
                .net_cmdline = p->net ? net_pod_info(p->net)->cmdline
                                      : (netpol ? "nucleus.net=requested" : NULL),
                .netns_path = p->net ? net_pod_info(p->net)->netns_path : NULL,
                .tap_name = p->net ? net_pod_info(p->net)->tap : NULL,
                .tap_mac = p->net ? net_pod_info(p->net)->mac : NULL,
                .net = p->net,
                .cgroup_dir = p->cgroup_dir,
                .proxy_path = n->config.proxy_path,
                .firecracker_path = n->config.firecracker_path,
                .jailer_path = n->config.jailer_path,
                .run_uid = n->vmm_uid,
                .run_gid = n->vmm_gid,
        };
        if (pod_stopping(p))
                goto out;
        r = vmm_start(p->driver, &l, &vm, &err);
        if (r < 0)
                goto fail;
        pthread_mutex_lock(&n->lock);
        p->vm = vm;
        bool stop_now = p->terminating;
        pthread_mutex_unlock(&n->lock);
        node_wake(n);
        if (stop_now) {
                (void) vmm_stop(vm);
                goto out;
        }

        r = vmm_connect_channel(vm, (usec_t) n->config.boot_timeout_sec * USEC_PER_SEC, &fd, &err);
        if (r < 0)
                goto fail;
        t_boot = now_usec(CLOCK_MONOTONIC);
        metrics_observe_boot(t_boot - t0);

        Channel *ch = NULL;
        r = channel_new(fd, pod_on_event, pod_on_close, p, &ch);
        if (r < 0) {
                err = xasprintf("cannot start the channel reader: %s", strerror(-r));
                goto fail;
        }
        pthread_mutex_lock(&n->lock);
        p->channel = ch;
        stop_now = p->terminating;
        pthread_mutex_unlock(&n->lock);
        if (stop_now) {
                channel_shutdown(ch);
                goto out;
        }

        pod_set_state(p, POD_CONFIGURING);
        r = pod_configure(p, &err);
        if (r < 0)
                goto fail;

        pod_set_state(p, POD_RUNNING);
        metrics_observe_ready(now_usec(CLOCK_MONOTONIC) - p->created_mono);
        pod_audit_lifecycle(p, "running", vmm_accel(vm), NULL);
        pod_log(p,
                LOG_INFO,
                "running (driver %s, accel %s, ready in %.1fs)",
                vmm_driver_to_string(p->driver),
                vmm_accel(vm),
                (double) (now_usec(CLOCK_MONOTONIC) - p->created_mono) / 1e6);
        goto out;

fail:
        if (!pod_stopping(p)) {
                metrics_pod_create_failed();
                pod_log(p, LOG_ERR, "failed to start: %s", err ?: strerror(r < 0 ? -r : EIO));
                pod_terminate(p, POD_FAILED, err ?: "failed to start", "internal");
        }
out:
        pod_unref(p);
        return NULL;
}

/* ---- create ----------------------------------------------------------------------------- */

static void pod_make_id(char ret[37]) {
        uint8_t b[16];
        if (getrandom(b, sizeof b, 0) != sizeof b)
                oom_abort(); /* no randomness: fail closed */
        b[6] = (uint8_t) ((b[6] & 0x0f) | 0x40);
        b[8] = (uint8_t) ((b[8] & 0x3f) | 0x80);
        snprintf(
                ret,
                37,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                b[0],
                b[1],
                b[2],
                b[3],
                b[4],
                b[5],
                b[6],
                b[7],
                b[8],
                b[9],
                b[10],
                b[11],
                b[12],
                b[13],
                b[14],
                b[15]);
}

int pod_create(Node *n, NodeSpec *spec, VmmDriver driver, const char *actor, Pod **ret, char **reterr) {
        Pod *p = xnew0(Pod, 1);
        uint64_t timeout_sec;
        pthread_t t;
        int r;

        p->n_ref = 1;
        pod_make_id(p->id);
        p->driver = driver;
        p->weak = driver == VMM_DRIVER_LOCAL;
        p->spec = spec; /* owned from here on, also on failure */
        p->name = spec->name ? xstrdup(spec->name) : NULL;
        pthread_mutex_init(&p->audit_lock, NULL);
        pthread_mutex_init(&p->net_lock, NULL);
        timeout_sec = spec->timeout_seconds ?: n->config.default_timeout_sec;
        if (timeout_sec > n->config.max_timeout_sec)
                timeout_sec = n->config.max_timeout_sec;
        p->timeout = timeout_sec * USEC_PER_SEC;
        p->vcpus = spec->vcpus ?: n->config.default_vcpus;
        p->memory_mib = spec->memory_mib ?: n->config.default_memory_mib;
        p->scratch_mib = spec->scratch_mib ?: n->config.default_scratch_mib;
        p->created_rt = now_usec(CLOCK_REALTIME);
        p->created_mono = now_usec(CLOCK_MONOTONIC);
        p->deadline_mono = p->created_mono + p->timeout;
        p->dir = xasprintf("%s/pods/%s", n->config.state_dir, p->id);

        if (mkdir(p->dir, 0700) < 0) {
                r = -errno;
                *reterr = xasprintf("cannot create pod dir %s: %s", p->dir, strerror(-r));
                pod_free(p);
                return r;
        }
        if (n->vmm_uid != 0 && (chown(p->dir, 0, n->vmm_gid) < 0 || chmod(p->dir, 0710) < 0)) {
                r = -errno;
                *reterr = xasprintf("cannot open pod dir %s to the VMM group: %s", p->dir, strerror(-r));
                (void) rmdir(p->dir);
                pod_free(p);
                return r;
        }
        _cleanup_free_ char *audit_path = xasprintf("%s/audit.jsonl", p->dir);
        r = audit_log_open(audit_path, p->id, n->audit_key, &p->audit);
        if (r < 0) {
                *reterr = xasprintf("cannot open the audit log %s: %s", audit_path, strerror(-r));
                (void) node_rm_rf(p->dir);
                pod_free(p);
                return r;
        }

        pthread_mutex_lock(&n->lock);
        if (n->shutting_down || pod_count_live_locked(n) >= n->config.max_pods) {
                bool down = n->shutting_down;
                pthread_mutex_unlock(&n->lock);
                *reterr = down ? xstrdup("the node is shutting down")
                               : xasprintf("pod limit reached: %u live pods (max_pods)", n->config.max_pods);
                p->audit = audit_log_free(p->audit);
                (void) node_rm_rf(p->dir);
                pod_free(p);
                return -EBUSY;
        }
        n->pods = xreallocarray(n->pods, n->n_pods + 1, sizeof(Pod *));
        n->pods[n->n_pods++] = p;
        p->n_ref++; /* the table's reference */
        pthread_mutex_unlock(&n->lock);

        {
                /* The spec itself is the create call's argument: its digest binds the log to it. */
                AuditEvent ev = { .actor = actor ?: "",
                                  .op = "pod_create",
                                  .decision = "allow",
                                  .args = spec->json,
                                  .result = vmm_driver_to_string(driver),
                                  .result_len = strlen(vmm_driver_to_string(driver)) };
                pod_audit(p, &ev);
        }
        metrics_pod_created();

        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pod_ref(p); /* the boot thread's */
        r = -pthread_create(&t, &attr, pod_boot_thread, p);
        pthread_attr_destroy(&attr);
        if (r < 0) {
                pod_unref(p);
                pod_terminate(p, POD_FAILED, "cannot start the boot thread", "internal");
        }
        node_wake(n);
        *ret = p;
        return 0;
}

/* ---- supervisor ------------------------------------------------------------------------- */

static void *pod_supervisor(void *userdata) {
        Node *n = userdata;

        for (;;) {
                struct pollfd *pfds = NULL;
                Pod **owners = NULL;
                size_t k = 1;
                usec_t now = now_usec(CLOCK_MONOTONIC), next = USEC_INFINITY;

                pthread_mutex_lock(&n->lock);
                if (n->shutting_down && pod_count_live_locked(n) == 0) {
                        pthread_mutex_unlock(&n->lock);
                        break;
                }
                pfds = xnew0(struct pollfd, n->n_pods + 1);
                owners = xnew0(Pod *, n->n_pods + 1);
                Pod **expired = xnew0(Pod *, n->n_pods + 1);
                size_t n_expired = 0;
                pfds[0] = (struct pollfd){ .fd = n->wake_fd, .events = POLLIN };
                for (size_t i = 0; i < n->n_pods; i++) {
                        Pod *p = n->pods[i];
                        if (p->terminating || p->deadline_fired || pod_state_is_final(p->state))
                                continue;
                        if (p->deadline_mono <= now) {
                                /* Terminated outside the lock (pod_terminate_async takes it). */
                                p->deadline_fired = true;
                                p->n_ref++;
                                expired[n_expired++] = p;
                                continue;
                        }
                        next = NUCLEUS_MIN(next, p->deadline_mono);
                        if (p->vm && vmm_pid(p->vm)->fd >= 0) {
                                /* Our own copy: the terminating thread may close the VMM's pidfd. */
                                int fd = fcntl(vmm_pid(p->vm)->fd, F_DUPFD_CLOEXEC, 3);
                                if (fd < 0)
                                        continue;
                                pfds[k] = (struct pollfd){ .fd = fd, .events = POLLIN };
                                owners[k] = p;
                                p->n_ref++;
                                k++;
                        }
                }
                pthread_mutex_unlock(&n->lock);
                for (size_t i = 0; i < n_expired; i++) {
                        pod_log(expired[i], LOG_INFO, "deadline reached");
                        pod_terminate_async(
                                expired[i],
                                POD_EXITED,
                                "deadline reached: the pod's time is up",
                                "time_violation");
                        pod_unref(expired[i]);
                }
                free(expired);

                int timeout_ms = next == USEC_INFINITY ? 1000
                                                       : (int) NUCLEUS_MIN((next - now) / 1000 + 1, 1000u);
                int r = poll(pfds, k, timeout_ms);
                if (r > 0 && (pfds[0].revents & POLLIN)) {
                        uint64_t v;
                        (void) !read(n->wake_fd, &v, sizeof v);
                }
                for (size_t i = 1; i < k; i++) {
                        if (r > 0 && (pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                                Pod *p = owners[i];
                                siginfo_t si = {};
                                bool gone = false;
                                pthread_mutex_lock(&n->lock);
                                bool alive = !p->terminating && !pod_state_is_final(p->state);
                                pthread_mutex_unlock(&n->lock);
                                if (alive &&
                                    waitid(P_PIDFD, (id_t) pfds[i].fd, &si, WEXITED | WNOHANG | WNOWAIT) >= 0 &&
                                    si.si_pid != 0)
                                        gone = true;
                                if (alive && gone) {
                                        _cleanup_free_ char *why = si.si_code == CLD_EXITED
                                                ? xasprintf("VMM exited unexpectedly with status %d", si.si_status)
                                                : xasprintf(
                                                          "VMM killed by signal %s",
                                                          sigabbrev_np(si.si_status) ?: "?");
                                        /* A guest that powers off after its proxy exits ends QEMU with 0. */
                                        pod_terminate_async(p, POD_FAILED, why, "internal");
                                }
                        }
                        safe_close(pfds[i].fd);
                        pod_unref(owners[i]);
                }
                free(pfds);
                free(owners);
        }
        return NULL;
}

/* Network drift monitor (DESIGN.md §9): every POD_DRIFT_INTERVAL, compare each running pod's
 * rulesets with what was applied; any difference, or a failed check, kills the pod (fail
 * closed). Runs on its own thread because each check runs `nft`. */
#define POD_DRIFT_INTERVAL (5 * USEC_PER_SEC)
static pthread_t drift_thread;
static bool drift_running;

static void *pod_drift_monitor(void *userdata) {
        Node *n = userdata;

        for (;;) {
                Pod **list;
                size_t k = 0;
                bool stop;

                pthread_mutex_lock(&n->lock);
                stop = n->shutting_down;
                list = xnew0(Pod *, n->n_pods + 1);
                for (size_t i = 0; !stop && i < n->n_pods; i++)
                        if (n->pods[i]->state == POD_RUNNING && n->pods[i]->net && !n->pods[i]->terminating) {
                                list[k++] = n->pods[i];
                                n->pods[i]->n_ref++;
                        }
                pthread_mutex_unlock(&n->lock);
                for (size_t i = 0; i < k; i++) {
                        Pod *p = list[i];
                        _cleanup_free_ char *err = NULL;
                        int r = 0;
                        pthread_mutex_lock(&p->net_lock);
                        if (p->net)
                                r = net_pod_check_drift(p->net, &err);
                        pthread_mutex_unlock(&p->net_lock);
                        if (r != 0) {
                                _cleanup_free_ char *why = xasprintf(
                                        "network policy drift: %s",
                                        err ?: (r < 0 ? strerror(-r) : "ruleset changed"));
                                pod_log(p, LOG_ERR, "%s; killing it", why);
                                pod_terminate_async(p, POD_FAILED, why, "network_denied");
                        }
                        pod_unref(p);
                }
                free(list);
                if (stop)
                        break;
                /* Sleep in short steps so shutdown is quick. */
                for (usec_t slept = 0; slept < POD_DRIFT_INTERVAL; slept += 100 * USEC_PER_MSEC) {
                        pthread_mutex_lock(&n->lock);
                        stop = n->shutting_down;
                        pthread_mutex_unlock(&n->lock);
                        if (stop)
                                break;
                        (void) usleep(100 * 1000);
                }
                if (stop)
                        break;
        }
        return NULL;
}

int pod_supervisor_start(Node *n) {
        if (pthread_create(&drift_thread, NULL, pod_drift_monitor, n) == 0)
                drift_running = true;
        int r = -pthread_create(&supervisor_thread, NULL, pod_supervisor, n);
        if (r >= 0)
                supervisor_running = true;
        return r;
}

void pod_supervisor_stop(Node *n) {
        if (drift_running) {
                (void) pthread_join(drift_thread, NULL);
                drift_running = false;
        }
        if (!supervisor_running)
                return;
        node_wake(n);
        (void) pthread_join(supervisor_thread, NULL);
        supervisor_running = false;
}

void pod_terminate_all(Node *n, const char *reason) {
        Pod **list;
        size_t k = 0;

        pthread_mutex_lock(&n->lock);
        n->shutting_down = true;
        list = xnew0(Pod *, n->n_pods + 1);
        for (size_t i = 0; i < n->n_pods; i++) {
                list[k++] = n->pods[i];
                n->pods[i]->n_ref++;
        }
        pthread_mutex_unlock(&n->lock);
        for (size_t i = 0; i < k; i++) {
                pod_terminate(list[i], POD_EXITED, reason, "pod_not_running");
                pod_unref(list[i]);
        }
        free(list);
        /* Boot threads that were mid-start notice `terminating` and exit; give them a moment. */
        for (int i = 0; i < 100; i++) {
                bool busy = false;
                pthread_mutex_lock(&n->lock);
                for (size_t j = 0; j < n->n_pods; j++)
                        if (n->pods[j]->n_ref > 1)
                                busy = true;
                pthread_mutex_unlock(&n->lock);
                if (!busy)
                        break;
                (void) usleep(20 * 1000);
        }
}

int pod_cleanup_stale(Node *n) {
        _cleanup_free_ char *pods_dir = xasprintf("%s/pods", n->config.state_dir);
        DIR *d = opendir(pods_dir);
        int cleaned = 0, r;

        if (!d)
                return errno == ENOENT ? 0 : -errno;
        for (struct dirent *de; (de = readdir(d));) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *dir = xasprintf("%s/%s", pods_dir, de->d_name);
                _cleanup_close_ int dfd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (dfd < 0)
                        continue;
                bool ended = faccessat(dfd, "state.json", F_OK, 0) >= 0;
                bool leftovers = faccessat(dfd, "vmm.pid", F_OK, 0) >= 0 ||
                        faccessat(dfd, "vm", F_OK, 0) >= 0 || faccessat(dfd, "workspace", F_OK, 0) >= 0;
                if (ended && !leftovers)
                        continue;
                log_info("Cleaning up pod %s left by an earlier run", de->d_name);
                (void) vmm_cleanup_stale(dfd, dir);
                {
                        /* The VMM is gone: now its network (namespace, links, tables, dnsmasq). */
                        NetConfig nc = NET_CONFIG_NULL;
                        nc.state_dir = n->config.net_state_dir;
                        nc.pool = n->config.net_pool;
                        r = net_cleanup_pod(&nc, de->d_name);
                        if (r > 0)
                                log_info("Removed the network of pod %s left by an earlier run", de->d_name);
                        else if (r < 0)
                                log_warning_errno(
                                        r, "Pod %s: stale network cleanup incomplete: %m", de->d_name);
                }
                if (n->cgroup_root) {
                        _cleanup_free_ char *cg = xasprintf("%s/pod-%s", n->cgroup_root, de->d_name);
                        (void) cgroup_pod_remove(cg);
                }
                pod_dir_prune(dir);
                /* Seal what the earlier run could not; the record says why. */
                {
                        _cleanup_free_ char *ap = xasprintf("%s/audit.jsonl", dir);
                        AuditLog *a = NULL;
                        static const char why[] = "node restarted while the pod was live; cleaned up";
                        if (access(ap, F_OK) >= 0 && audit_log_open(ap, de->d_name, n->audit_key, &a) >= 0) {
                                AuditEvent ev = { .actor = "node",
                                                  .op = "pod_failed",
                                                  .decision = "info",
                                                  .kind = "internal",
                                                  .result = why,
                                                  .result_len = strlen(why) };
                                (void) audit_log_append(a, &ev, NULL);
                                (void) audit_log_seal(a);
                                audit_log_free(a);
                        }
                }
                {
                        _cleanup_json_ json_t *st = json_pack(
                                "{s:s,s:s,s:s}",
                                "id",
                                de->d_name,
                                "state",
                                "failed",
                                "reason",
                                "node restarted while the pod was live; cleaned up");
                        _cleanup_free_ char *text = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);
                        (void) write_file_atomic_at(dfd, "state.json", text, strlen(text), 0600);
                }
                cleaned++;
        }
        closedir(d);
        return cleaned;
}
