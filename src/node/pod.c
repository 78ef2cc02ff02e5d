/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pod table and lifecycle. A pod is created pending by the API, booted on its own thread
 * (pod-boot.c: VMM start, channel connect, configure), supervised (pod-supervisor.c: VMM pidfd,
 * deadline, network drift) and terminated exactly once (here). Everything the guest sends is
 * untrusted; the node alone writes the audit log (pod-events.c).
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <time.h>
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
#include "pod-internal.h"

static const char *const pod_state_table[_POD_STATE_MAX] = {
        [POD_PENDING] = "pending", [POD_BOOTING] = "booting",   [POD_CONFIGURING] = "configuring",
        [POD_RUNNING] = "running", [POD_STOPPING] = "stopping", [POD_EXITED] = "exited",
        [POD_FAILED] = "failed",
};
DEFINE_STRING_TABLE_LOOKUP(pod_state, PodState);

Pod *pod_ref(Pod *p) {
        pthread_mutex_lock(&p->node->lock);
        p->n_ref++;
        pthread_mutex_unlock(&p->node->lock);
        return p;
}

void pod_free(Pod *p) {
        p->channel = channel_free(p->channel);
        p->vm = vmm_free(p->vm);
        if (p->net)
                (void) net_pod_teardown(TAKE_PTR(p->net));
        p->audit = audit_log_free(p->audit);
        p->approvals = approval_queue_free(p->approvals);
        p->fork = pod_fork_free(p->fork);
        nodespec_free(p->spec);
        free(p->name);
        free(p->reason);
        free(p->reason_kind);
        free(p->dir);
        free(p->policy_sha256);
        free(p->configure_sha256);
        free(p->cgroup_dir);
        free(p->pool_image);
        free(p->escrow_unknown);
        json_decref(p->pool_events);
        pthread_mutex_destroy(&p->audit_lock);
        pthread_mutex_destroy(&p->net_lock);
        pthread_mutex_destroy(&p->budget_lock);
        free(p->resv);
        explicit_bzero_safe(p->creds, sizeof p->creds);
        free(p);
}

Pod *pod_unref(Pod *p) {
        bool last;
        if (!p)
                return NULL;
        pthread_mutex_lock(&p->node->lock);
        assert(p->n_ref > 0);
        last = --p->n_ref == 0;
        pthread_mutex_unlock(&p->node->lock);
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

/* ---- the pod's node log ---------------------------------------------------------------------- */

/* One line to the daemon's log and to <pod>/node.log (kept after the pod ends; part of
 * GET .../logs), so a pod's own history is readable without the node's journal. */
_printf_(3, 4) void pod_log(Pod *p, int level, const char *fmt, ...) {
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

void pod_set_state(Pod *p, PodState s) {
        pthread_mutex_lock(&p->node->lock);
        if (!p->terminating || s == POD_STOPPING || pod_state_is_final(s))
                p->state = s;
        pod_wake_subs_locked(p);
        pthread_mutex_unlock(&p->node->lock);
        node_wake(p->node);
}

json_t *pod_to_json(Pod *p) {
        char created[32], deadline[32], ended[32];
        json_t *j;

        pthread_mutex_lock(&p->node->lock);
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
        /* What an upload must fit, so a client can refuse a too-large workspace before sending
         * it: the scratch disk (none under the local driver) and the node's cap. */
        if (p->driver != VMM_DRIVER_LOCAL)
                json_object_set_new(j, "scratch_mib", json_integer((json_int_t) p->scratch_mib));
        json_object_set_new(
                j, "max_upload_bytes", json_integer((json_int_t) p->node->config.max_workspace_bytes));
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
        if (p->fork) {
                _cleanup_json_ json_t *origin = pod_fork_origin_json(p->fork);
                json_object_set_new(
                        j,
                        "forked_from",
                        json_pack(
                                "{s:O,s:O}",
                                "parent",
                                json_object_get(origin, "parent"),
                                "snapshot",
                                json_object_get(origin, "snapshot")));
        }
        if (p->net)
                json_object_set_new(j, "netns", json_string(net_pod_info(p->net)->netns_name));
        if (p->budget_spent_micro_usd)
                json_object_set_new(
                        j, "budget_spent_usd_micros", json_integer((json_int_t) p->budget_spent_micro_usd));
        if (p->n_snapshots)
                json_object_set_new(j, "snapshots", json_integer((json_int_t) p->n_snapshots));
        /* What an ended pod's snapshots can still hand out to forks. */
        if (p->n_snapshots && p->ended_rt)
                json_object_set_new(
                        j,
                        "snapshot_escrow",
                        p->escrow_set ? json_pack(
                                                "{s:I,s:I,s:I}",
                                                "usd_micros",
                                                (json_int_t) p->escrow.usd_micros,
                                                "input_tokens",
                                                (json_int_t) p->escrow.input_tokens,
                                                "output_tokens",
                                                (json_int_t) p->escrow.output_tokens)
                                      : json_pack("{s:s}", "unknown", p->escrow_unknown ?: "?"));
        if (p->lease_grace && !p->ended_rt) {
                char expires[32];
                usec_t now_mono = now_usec(CLOCK_MONOTONIC), at = p->lease_renewed_mono + p->lease_grace;
                usec_t left = at > now_mono ? at - now_mono : 0;
                json_object_set_new(
                        j, "lease_grace_seconds", json_integer((json_int_t) (p->lease_grace / USEC_PER_SEC)));
                json_object_set_new(
                        j,
                        "lease_expires",
                        json_string(format_timestamp_rfc3339(expires, now_usec(CLOCK_REALTIME) + left)));
        }
        if (p->weak)
                json_object_set_new(
                        j,
                        "warning",
                        json_string("driver local: the proxy runs on the host in bubblewrap; weaker "
                                    "isolation than a microVM"));
        pthread_mutex_unlock(&p->node->lock);
        return j;
}

/* ---- termination ------------------------------------------------------------------------ */

/* Remove everything in the pod dir except the audit log and the logs. */
void pod_dir_prune(const char *dir) {
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

void pod_write_state_file(Pod *p) {
        _cleanup_json_ json_t *j = pod_to_json(p);
        _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        _cleanup_close_ int dfd = open(p->dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (dfd >= 0 && text)
                (void) write_file_atomic_at(dfd, "state.json", text, strlen(text), 0600);
}

void pod_terminate(Pod *p, PodState final, const char *reason, const char *kind) {
        Channel *ch;
        Vmm *vm;
        PodState was;

        pthread_mutex_lock(&p->node->lock);
        if (p->terminating || pod_state_is_final(p->state)) {
                pthread_mutex_unlock(&p->node->lock);
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
        pthread_mutex_unlock(&p->node->lock);

        pod_log(p, LOG_INFO, "stopping (%s, was %s)", reason, pod_state_to_string(was));
        /* Whoever waits for a decision learns now that none will come. */
        approval_queue_close(p->approvals, "the pod ended", (int64_t) time(NULL));
        /* Last word with a live proxy: what the pod spent (for metrics and the pod object) and
         * what it leaves: its remainder, less the model-call reservations the node holds for it
         * (counted as spent: a settle after the end is refused), becomes the escrow its
         * snapshots' forks share (docs/snapshot.md "Budget"). Under budget_lock, like a fork's
         * read of a running pod's remainder, so a reservation or a fork cannot slip between. */
        if (ch && was == POD_RUNNING) {
                ChannelReply rep = {};
                pthread_mutex_lock(&p->budget_lock);
                if (channel_call(ch, "status", NULL, 0, NULL, 0, 2 * USEC_PER_SEC, 0, &rep) >= 0) {
                        json_t *b = json_object_get(rep.response, "budget");
                        json_t *used = json_object_get(b, "used_usd_micros");
                        json_t *left = json_object_get(b, "left_usd_micros");
                        const Policy *pol = p->spec->policy;
                        pthread_mutex_lock(&p->node->lock);
                        if (json_is_integer(used) && json_integer_value(used) > 0)
                                p->budget_spent_micro_usd = (uint64_t) json_integer_value(used);
                        if (json_is_integer(left) && json_integer_value(left) >= 0 && pol) {
                                p->escrow = fork_budget_remainder(
                                        (uint64_t) json_integer_value(left),
                                        p->resv_micros,
                                        pol->max_usd_micros,
                                        &p->charged,
                                        pol->max_input_tokens,
                                        node_json_u64(json_object_get(b, "input_tokens")),
                                        pol->max_output_tokens,
                                        node_json_u64(json_object_get(b, "output_tokens")));
                                p->escrow_set = true;
                        }
                        pthread_mutex_unlock(&p->node->lock);
                        if (json_is_integer(used) && json_integer_value(used) > 0)
                                metrics_budget_spent((uint64_t) json_integer_value(used));
                        channel_reply_done(&rep);
                }
                pthread_mutex_unlock(&p->budget_lock);
        }
        pthread_mutex_lock(&p->node->lock);
        if (!p->escrow_set)
                p->escrow_unknown = xstrdup(
                        was != POD_RUNNING ? "the pod ended before it ran"
                                           : "its proxy did not report the budget at the end");
        pthread_mutex_unlock(&p->node->lock);
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

        pthread_mutex_lock(&p->node->lock);
        p->state = final;
        p->ended_rt = now_usec(CLOCK_REALTIME);
        pthread_mutex_unlock(&p->node->lock);

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
        /* An ended pod keeps its record, not its resources: the log's fd goes now (calls after
         * the end are refused before they would write), and so do the channel's socket and
         * threads. */
        p->audit = audit_log_free(p->audit);
        pthread_mutex_unlock(&p->audit_lock);
        if (ch)
                channel_release(ch);
        pod_dir_prune(p->dir);
        /* Its snapshots outlive it (docs/snapshot.md "Lifetime"): they fork from the escrow. */
        pod_snapshots_parent_ended(p);
        pod_write_state_file(p);

        pthread_mutex_lock(&p->node->lock);
        {
                _cleanup_json_ json_t *ev = json_pack(
                        "{s:s,s:s,s:s}", "id", p->id, "state", pod_state_to_string(final), "reason", reason);
                pod_broadcast_locked(p, "end", ev);
        }
        p->events_closed = true;
        pod_wake_subs_locked(p);
        pthread_mutex_unlock(&p->node->lock);
        pod_log(p, LOG_INFO, "%s (%s)", pod_state_to_string(final), reason);
        node_wake(p->node);
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
void pod_terminate_async_take(Pod *p, PodState final, const char *reason, const char *kind) {
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

/* ---- create ----------------------------------------------------------------------------- */

void pod_make_id(char ret[37]) {
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

int pod_lease_renew(Pod *p) {
        pthread_mutex_lock(&p->node->lock);
        if (p->terminating || pod_state_is_final(p->state)) {
                pthread_mutex_unlock(&p->node->lock);
                return -ESTALE;
        }
        if (!p->lease_grace)
                p->lease_grace = (usec_t) p->node->config.lease_grace_sec * USEC_PER_SEC;
        p->lease_renewed_mono = now_usec(CLOCK_MONOTONIC);
        pthread_mutex_unlock(&p->node->lock);
        node_wake(p->node);
        return 0;
}

static void pod_forget(Node *n, Pod *p);

/* What the spec asks of the pod itself: name, deadline, lease (the same for a cold pod and a
 * claimed one; a claimed pod's clock starts at its claim). */
static void pod_take_spec(Pod *p, NodeSpec *spec) {
        Node *n = p->node;
        p->spec = spec;
        p->name = spec->name ? xstrdup(spec->name) : NULL;
        /* The one deadline (nodespec_resolve_timeout ran at create: within the policy's window
         * and the node's limit); the policy's window equals it. */
        p->timeout = spec->timeout_seconds * USEC_PER_SEC;
        p->created_rt = now_usec(CLOCK_REALTIME);
        p->created_mono = now_usec(CLOCK_MONOTONIC);
        p->deadline_mono = p->created_mono + p->timeout;
        if (spec->has_lease)
                p->lease_grace = (usec_t) (spec->lease_grace_seconds ?: n->config.lease_grace_sec) *
                        USEC_PER_SEC;
        p->lease_renewed_mono = p->created_mono;
}

static void pod_audit_create(Pod *p, const char *actor) {
        /* The spec itself is the create call's argument: its digest binds the log to it. A
         * forked pod's first record names its parent and snapshot. */
        const char *drv = vmm_driver_to_string(p->driver);
        _cleanup_json_ json_t *origin = p->fork ? pod_fork_origin_json(p->fork) : NULL;
        AuditEvent ev = { .actor = actor ?: "",
                          .op = p->fork ? "pod_fork" : "pod_create",
                          .decision = "allow",
                          .args = p->spec->json,
                          .result = drv,
                          .result_len = strlen(drv),
                          .detail = origin };
        pod_audit(p, &ev);
}

/* Create from a pooled pod (pod-pool.c): 1 and *ret when one matched and was claimed, 0 on a
 * miss (counted with its reason), -errno when the node is full or shutting down. */
static int pod_create_claim(
        Node *n, NodeSpec *spec, VmmDriver driver, const char *actor, Pod **ret, char **reterr) {
        PoolShape want = {
                .image = spec->image,
                .driver = (int) driver,
                .vcpus = spec->vcpus ?: n->config.default_vcpus,
                .memory_mib = spec->memory_mib ?: n->config.default_memory_mib,
                .scratch_mib = spec->scratch_mib ?: n->config.default_scratch_mib,
                /* Setup hosts need the NIC a network section gets: never a pooled pod without one. */
                .network = spec->has_network || strv_length(spec->setup_hosts) > 0,
        };
        const char *miss = NULL;
        pthread_t t;
        Pod *p;

        pthread_mutex_lock(&n->lock);
        if (!n->pool || n->shutting_down || pod_count_live_locked(n) >= n->config.max_pods) {
                pthread_mutex_unlock(&n->lock);
                return 0; /* the cold path refuses it with its own message */
        }
        p = pod_pool_take_locked(n, &want, &miss);
        if (p) {
                pod_take_spec(p, spec);
                p->state = POD_PENDING;
                n->pods = xreallocarray(n->pods, n->n_pods + 1, sizeof(Pod *));
                n->pods[n->n_pods++] = p;
                p->n_ref++; /* the table's reference, next to the pool's that is now ours */
        }
        pthread_mutex_unlock(&n->lock);
        pod_pool_note(n, p != NULL, miss);
        if (!p) {
                log_debug("Pool miss (%s): booting a pod cold", miss);
                return 0;
        }

        _cleanup_free_ char *marker = xasprintf("%s/" POD_POOL_MARKER, p->dir);
        _cleanup_free_ char *audit_path = xasprintf("%s/audit.jsonl", p->dir);
        AuditLog *log = NULL;
        int r = unlink(marker) < 0 && errno != ENOENT ? -errno : 0;
        if (r < 0) {
                /* With the marker left, a restart would take the dir for an unclaimed pool pod. */
                *reterr = xasprintf("cannot remove the pool marker %s: %s", marker, strerror(-r));
                pod_terminate(p, POD_FAILED, "cannot claim the pooled pod", "internal");
                pod_forget(n, p);
                pod_unref(p);
                return r;
        }
        r = audit_log_open(audit_path, p->id, n->audit_key, &log);
        pthread_mutex_lock(&p->audit_lock);
        p->audit = log;
        pthread_mutex_unlock(&p->audit_lock);
        if (r < 0) {
                *reterr = xasprintf("cannot open the audit log %s: %s", audit_path, strerror(-r));
                pod_terminate(p, POD_FAILED, "cannot open the audit log", "internal");
                pod_forget(n, p);
                pod_unref(p);
                return r;
        }
        pod_audit_create(p, actor);
        {
                /* The one record that tells a claimed pod from a cold one: what was booted ahead. */
                _cleanup_free_ char *what = xasprintf(
                        "claimed from the warm pool: image %s, %u vCPU, %" PRIu64 " MiB, scratch %" PRIu64
                        " MiB, %s ahead without identity, secret or network%s",
                        pool_image_name(p->pool_image),
                        p->vcpus,
                        p->memory_mib,
                        p->scratch_mib,
                        p->pool_restored ? "restored from the pool's snapshot" : "booted",
                        p->net ? " (its NIC parked: no address, every packet dropped; the pod's network is "
                                 "built at the claim)"
                               : "");
                /* The shape in the clear as well: a reader of the log sees what was booted ahead
                 * (the result text is recorded as its digest). */
                _cleanup_json_ json_t *shape = json_pack(
                        "{s:s,s:I,s:I,s:I,s:b,s:s?}",
                        "image",
                        pool_image_name(p->pool_image),
                        "vcpus",
                        (json_int_t) p->vcpus,
                        "memory_mib",
                        (json_int_t) p->memory_mib,
                        "scratch_mib",
                        (json_int_t) p->scratch_mib,
                        "restored",
                        p->pool_restored,
                        "nic",
                        p->net ? "parked" : NULL);
                AuditEvent ev = { .actor = "node",
                                  .op = "pod_claim",
                                  .decision = "info",
                                  .result = what,
                                  .result_len = strlen(what),
                                  .detail = shape };
                pod_audit(p, &ev);
        }
        metrics_pod_created();
        pod_log(p, LOG_INFO, "claimed from the warm pool (image %s)", pool_image_name(p->pool_image));

        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pod_ref(p); /* the claim thread's */
        r = -pthread_create(&t, &attr, pod_claim_thread, p);
        pthread_attr_destroy(&attr);
        if (r < 0) {
                pod_unref(p);
                pod_terminate(p, POD_FAILED, "cannot start the claim thread", "internal");
        }
        node_wake(n);
        *ret = p;
        return 1;
}

int pod_create(Node *n, NodeSpec *spec, VmmDriver driver, const char *actor, Pod **ret, char **reterr) {
        return pod_create_full(n, spec, driver, actor, NULL, ret, reterr);
}

int pod_create_full(
        Node *n, NodeSpec *spec, VmmDriver driver, const char *actor, PodFork *fork, Pod **ret, char **reterr) {
        pthread_t t;
        int r;

        /* A fork restores its parent's memory: never a pooled pod. */
        if (!fork) {
                r = pod_create_claim(n, spec, driver, actor, ret, reterr);
                if (r != 0)
                        return r < 0 ? r : 0;
        }

        Pod *p = xnew0(Pod, 1);
        p->fork = fork; /* owned from here on, also on failure */
        p->node = n;
        p->n_ref = 1;
        pod_make_id(p->id);
        p->driver = driver;
        p->weak = driver == VMM_DRIVER_LOCAL;
        pthread_mutex_init(&p->audit_lock, NULL);
        pthread_mutex_init(&p->net_lock, NULL);
        pthread_mutex_init(&p->budget_lock, NULL);
        p->approvals = approval_queue_new(p->id, 0);
        p->vcpus = spec->vcpus ?: n->config.default_vcpus;
        p->memory_mib = spec->memory_mib ?: n->config.default_memory_mib;
        p->scratch_mib = spec->scratch_mib ?: n->config.default_scratch_mib;
        pod_take_spec(p, spec); /* owned from here on, also on failure */
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

        pod_audit_create(p, actor);
        metrics_pod_created();

        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pod_ref(p); /* the boot thread's */
        r = -pthread_create(&t, &attr, p->fork ? pod_fork_boot_thread : pod_boot_thread, p);
        pthread_attr_destroy(&attr);
        if (r < 0) {
                pod_unref(p);
                pod_terminate(p, POD_FAILED, "cannot start the boot thread", "internal");
        }
        node_wake(n);
        *ret = p;
        return 0;
}

/* ---- retention --------------------------------------------------------------------------- */

typedef struct Ended {
        char id[37];
        usec_t ended_rt;
        Pod *pod; /* in the table (a reference), or NULL: a record of an earlier run */
} Ended;

static int ended_newest_first(const void *a, const void *b) {
        const Ended *x = a, *y = b;
        return x->ended_rt < y->ended_rt ? 1 : x->ended_rt > y->ended_rt ? -1 : 0;
}

static bool pod_id_syntax_ok(const char *s) {
        if (strlen(s) != 36)
                return false;
        for (size_t i = 0; i < 36; i++)
                if (!(i == 8 || i == 13 || i == 18 || i == 23
                              ? s[i] == '-'
                              : (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

/* Out of the table (drops the table's reference) and its directory removed. */
static void pod_forget(Node *n, Pod *p) {
        bool was_listed = false;
        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; i < n->n_pods; i++)
                if (n->pods[i] == p) {
                        memmove(n->pods + i, n->pods + i + 1, (n->n_pods - i - 1) * sizeof(Pod *));
                        n->n_pods--;
                        was_listed = true;
                        break;
                }
        pthread_mutex_unlock(&n->lock);
        (void) node_rm_rf(p->dir);
        if (was_listed)
                pod_unref(p);
}

int pod_remove(Pod *p) {
        pthread_mutex_lock(&p->node->lock);
        bool live = p->terminating ? !pod_state_is_final(p->state) : pod_state_is_live(p->state);
        pthread_mutex_unlock(&p->node->lock);
        if (live)
                return -EBUSY;
        /* Removing the record removes what forks of it would need: its snapshots. */
        int r = pod_snapshots_remove(p->node, p->id);
        if (r < 0)
                return -EAGAIN;
        pod_log(p, LOG_INFO, "record removed");
        pod_forget(p->node, p);
        return 0;
}

char **pod_prune(Node *n, usec_t older_than, unsigned keep) {
        _cleanup_free_ Ended *list = NULL;
        size_t n_list = 0, alloc = 0;
        char **removed = NULL;

        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; i < n->n_pods; i++) {
                Pod *p = n->pods[i];
                /* An ended pod with snapshots keeps its record: forks of them need its spec
                 * and escrow. It goes with its last snapshot's removal or the next prune. */
                if (!pod_state_is_final(p->state) || !p->ended_rt || p->n_snapshots > 0)
                        continue;
                if (n_list == alloc)
                        list = xreallocarray(list, alloc = alloc ? alloc * 2 : 16, sizeof(Ended));
                list[n_list] = (Ended){ .ended_rt = p->ended_rt, .pod = p };
                memcpy(list[n_list].id, p->id, sizeof p->id);
                p->n_ref++;
                n_list++;
        }
        pthread_mutex_unlock(&n->lock);

        /* Records of earlier runs: a pod dir with state.json and nothing live in it. */
        _cleanup_free_ char *pods_dir = xasprintf("%s/pods", n->config.state_dir);
        _cleanup_close_ int dfd = open(pods_dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        int dd = dfd >= 0 ? fcntl(dfd, F_DUPFD_CLOEXEC, 3) : -1;
        DIR *d = dd >= 0 ? fdopendir(dd) : NULL;
        if (!d && dd >= 0)
                safe_close(dd);
        for (struct dirent *de; d && (de = readdir(d));) {
                struct stat st;
                if (!pod_id_syntax_ok(de->d_name))
                        continue;
                bool known = false;
                for (size_t i = 0; i < n_list && !known; i++)
                        known = streq(list[i].id, de->d_name);
                if (known)
                        continue;
                _cleanup_free_ char *sj = xasprintf("%s/state.json", de->d_name);
                if (fstatat(dfd, sj, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                pthread_mutex_lock(&n->lock);
                bool in_table = false;
                for (size_t i = 0; i < n->n_pods && !in_table; i++)
                        in_table = streq(n->pods[i]->id, de->d_name);
                pthread_mutex_unlock(&n->lock);
                if (in_table)
                        continue; /* live (or ending) pod of this run */
                if (n_list == alloc)
                        list = xreallocarray(list, alloc = alloc ? alloc * 2 : 16, sizeof(Ended));
                list[n_list] = (Ended){ .ended_rt = (usec_t) st.st_mtim.tv_sec * USEC_PER_SEC };
                memcpy(list[n_list].id, de->d_name, 37);
                n_list++;
        }
        if (d)
                closedir(d);

        if (n_list > 0) /* qsort of a NULL list is undefined even for 0 items */
                qsort(list, n_list, sizeof(Ended), ended_newest_first);
        usec_t now = now_usec(CLOCK_REALTIME);
        for (size_t i = 0; i < n_list; i++) {
                bool too_old = older_than > 0 && now > list[i].ended_rt && now - list[i].ended_rt > older_than;
                if (too_old || i >= keep) {
                        if (list[i].pod)
                                pod_forget(n, list[i].pod);
                        else {
                                _cleanup_free_ char *path = xasprintf("%s/%s", pods_dir, list[i].id);
                                (void) node_rm_rf(path);
                        }
                        strv_extend(&removed, list[i].id);
                }
                if (list[i].pod)
                        pod_unref(list[i].pod);
        }
        return removed;
}

void pod_retention(Node *n) {
        static usec_t last;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        /* Cheap enough to run often (one readdir), but there is no reason to. */
        if (last && now - last < 10 * USEC_PER_SEC)
                return;
        last = now;
        _cleanup_strv_free_ char **removed = pod_prune(
                n, n->config.keep_ended_sec * USEC_PER_SEC, n->config.keep_ended);
        if (removed)
                log_info(
                        "Retention removed %zu ended pod record(s) ([pods] keep_ended, keep_ended_seconds)",
                        strv_length(removed));
}
