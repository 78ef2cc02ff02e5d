/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pod supervision: the supervisor thread (VMM pidfds, deadlines), the network drift monitor,
 * shutdown of every pod, and the cleanup at start of what an earlier run left.
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
#include "pod-internal.h"

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
                Pod **unleased = xnew0(Pod *, n->n_pods + 1);
                size_t n_expired = 0, n_unleased = 0;
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
                        if (p->lease_grace) {
                                usec_t lease_end = p->lease_renewed_mono + p->lease_grace;
                                if (lease_end <= now) {
                                        p->deadline_fired = true; /* one termination, whichever came first */
                                        p->n_ref++;
                                        unleased[n_unleased++] = p;
                                        continue;
                                }
                                next = NUCLEUS_MIN(next, lease_end);
                        }
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
                for (size_t i = 0; i < n_unleased; i++) {
                        Pod *p = unleased[i];
                        _cleanup_free_ char *why = xasprintf(
                                "lease expired: no renewal for %" PRIu64 " s (its client is gone)",
                                (uint64_t) (p->lease_grace / USEC_PER_SEC));
                        pod_log(p, LOG_INFO, "%s", why);
                        pod_terminate_async(p, POD_EXITED, why, "lease_expired");
                        pod_unref(p);
                }
                free(unleased);
                pod_retention(n);

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
 * closed). The same pass charges expired model-call reservations (pod_budget_sweep), so a
 * gateway that died mid-call still has its reservation counted. Runs on its own thread because
 * each check runs `nft` or waits for a proxy answer. */
#define POD_DRIFT_INTERVAL (5 * USEC_PER_SEC)
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
                        if (n->pods[i]->state == POD_RUNNING && !n->pods[i]->terminating) {
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
                        pod_budget_sweep(p);
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
        if (pthread_create(&n->drift_thread, NULL, pod_drift_monitor, n) == 0)
                n->drift_running = true;
        int r = -pthread_create(&n->supervisor_thread, NULL, pod_supervisor, n);
        if (r >= 0)
                n->supervisor_running = true;
        return r;
}

void pod_supervisor_stop(Node *n) {
        if (n->drift_running) {
                (void) pthread_join(n->drift_thread, NULL);
                n->drift_running = false;
        }
        if (!n->supervisor_running)
                return;
        node_wake(n);
        (void) pthread_join(n->supervisor_thread, NULL);
        n->supervisor_running = false;
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
                if (pod_pool_dir_is_pooled(dfd)) {
                        /* A warm-pool pod never claimed: no identity, no log, nothing to keep. */
                        r = node_rm_rf(dir);
                        if (r < 0)
                                log_warning_errno(r, "Cannot remove the pool pod dir %s: %m", dir);
                        else
                                log_info("Discarded pool pod %s left by an earlier run", de->d_name);
                        cleaned++;
                        continue;
                }
                pod_dir_prune(dir);
                /* Seal what the earlier run could not; the record says why. */
                {
                        _cleanup_free_ char *ap = xasprintf("%s/audit.jsonl", dir);
                        AuditLog *a = NULL;
                        static const char why[] = "node restarted while the pod was live; cleaned up";
                        bool repaired = false;
                        if (access(ap, F_OK) >= 0 &&
                            audit_log_open_full(ap, de->d_name, n->audit_key, &a, &repaired) >= 0) {
                                /* A call in flight when the node died has a request and no
                                 * answer: it gets one that says so (a torn last line was cut
                                 * first, recorded in a signed repair record). */
                                int k = audit_log_answer_interrupted(a, ap, "interrupted by node restart");
                                if (k > 0 || repaired)
                                        log_info(
                                                "Pod %s: %d call(s) interrupted by the restart recorded%s",
                                                de->d_name,
                                                NUCLEUS_MAX(k, 0),
                                                repaired ? "; a torn last audit line was cut and recorded"
                                                         : "");
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
