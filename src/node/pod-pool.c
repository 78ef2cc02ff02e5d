/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The warm pool (docs/node.md "Warm pool"): per image, [pool.images] NAME = N pods booted
 * ahead with the node's default shape and left unconfigured: scratch disk made, VMM running,
 * channel connected, proxy answering pings, but no spec, no audit log, no secret and no
 * network. pod_create claims one whose shape matches (pod_pool_take_locked) and only
 * configures it; one thread here refills the pool after each claim, replaces a pooled pod
 * that dies while idle (it watches their VMMs' pidfds, as the supervisor does for pods) and
 * discards the whole pool at shutdown. A pooled pod is outside the pod table, so the API,
 * the supervisor, max_pods and the drift monitor never see it; its pod dir carries a "pool"
 * marker so that the stale cleanup of a later run removes it entirely.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cgroup.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "metrics.h"
#include "node-util.h"
#include "pod-internal.h"
#include "pod.h"
#include "string-util.h"

#define POOL_RETRY_MIN (5 * USEC_PER_SEC)
#define POOL_RETRY_MAX (300 * USEC_PER_SEC)
#define POOL_EVENTS_MAX 16u

typedef struct PodPool {
        pthread_t thread;
        bool running;
        bool stopping; /* under node->lock */
        int wake_fd;   /* eventfd: a claim, a stop */
        Pod **pods;    /* under node->lock: booting and ready pooled pods */
        size_t n_pods;
        unsigned fails;        /* consecutive failed boots (pool thread only) */
        usec_t retry_after;    /* CLOCK_MONOTONIC: no boot before this after a failure */
        uint64_t hits, misses; /* under node->lock (also in metrics) */
} PodPool;

static void pool_wake(PodPool *pl) {
        uint64_t one = 1;
        if (pl && pl->wake_fd >= 0)
                (void) !write(pl->wake_fd, &one, sizeof one);
}

/* Remove p from the list (under node->lock); true when it was there. */
static bool pool_remove_locked(PodPool *pl, Pod *p) {
        for (size_t i = 0; i < pl->n_pods; i++)
                if (pl->pods[i] == p) {
                        memmove(pl->pods + i, pl->pods + i + 1, (pl->n_pods - i - 1) * sizeof(Pod *));
                        pl->n_pods--;
                        p->pooled = false;
                        return true;
                }
        return false;
}

/* End a pooled pod that was never claimed: nothing of it is kept (it has no audit log). */
static void pool_discard(Pod *p) {
        pthread_mutex_lock(&p->node->lock);
        p->terminating = true;
        Channel *ch = p->channel;
        Vmm *vm = p->vm;
        pthread_mutex_unlock(&p->node->lock);
        if (ch)
                channel_shutdown(ch);
        if (vm)
                (void) vmm_stop(vm);
        if (p->cgroup_dir)
                (void) cgroup_pod_remove(p->cgroup_dir);
        (void) node_rm_rf(p->dir);
        pod_unref(p);
}

bool pod_pool_dir_is_pooled(int dfd) {
        /* Never a dir with an audit log: that pod was claimed (its log is kept whatever else
         * is found next to it). */
        return faccessat(dfd, POD_POOL_MARKER, F_OK, AT_SYMLINK_NOFOLLOW) >= 0 &&
                faccessat(dfd, "audit.jsonl", F_OK, AT_SYMLINK_NOFOLLOW) < 0;
}

bool pod_pool_stash_event(Pod *p, json_t *ev) {
        pthread_mutex_lock(&p->node->lock);
        bool pooled = p->pooled;
        if (pooled) {
                /* The guest's boot report arrives while the pod waits in the pool; it is recorded
                 * at the claim, as a cold pod records it during its boot. */
                if (!p->pool_events)
                        p->pool_events = json_array();
                if (json_array_size(p->pool_events) < POOL_EVENTS_MAX)
                        json_array_append(p->pool_events, ev);
        }
        pthread_mutex_unlock(&p->node->lock);
        return pooled;
}

/* A pooled pod's guest stopped answering or closed its channel (channel threads; no
 * reference held: only a pod with references is touched, as in pod_on_close). */
static bool pool_mark_lost(Pod *p) {
        pthread_mutex_lock(&p->node->lock);
        bool pooled = p->n_ref > 0 && p->pooled;
        if (pooled && !p->pool_lost) {
                p->pool_lost = true;
                p->pool_ready = false;
                pool_wake(p->node->pool);
        }
        pthread_mutex_unlock(&p->node->lock);
        return pooled;
}

bool pod_pool_channel_lost(Pod *p) {
        return pool_mark_lost(p);
}

/* Liveness while pooled (the same bound as for running pods); after the claim the pod's own. */
static void pool_on_dead(void *userdata, usec_t silent) {
        Pod *p = userdata;
        if (!pool_mark_lost(p))
                pod_on_dead(p, silent);
}

static uint64_t pool_used_mib_locked(PodPool *pl) {
        uint64_t used = 0;
        for (size_t i = 0; i < pl->n_pods; i++)
                used += pool_pod_charge_mib(pl->pods[i]->memory_mib);
        return used;
}

static void pool_shape_of(const Pod *p, PoolShape *ret) {
        *ret = (PoolShape){
                .image = p->pool_image,
                .driver = (int) p->driver,
                .vcpus = p->vcpus,
                .memory_mib = p->memory_mib,
                .scratch_mib = p->scratch_mib,
                .network = p->net != NULL, /* booted with a parked NIC */
        };
}

/* Is the VMM of p still there? (It may have died since the pool thread last looked.) */
static bool pool_pod_alive_locked(Pod *p) {
        if (!p->vm || vmm_pid(p->vm)->fd < 0)
                return false;
        siginfo_t si = {};
        if (waitid(P_PIDFD, (id_t) vmm_pid(p->vm)->fd, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
                return false;
        return si.si_pid == 0;
}

Pod *pod_pool_take_locked(Node *n, const PoolShape *want, const char **ret_miss) {
        PodPool *pl = n->pool;
        const char *mismatch = NULL;

        if (!pl || pool_target(n->config.pool_images, want->image) == 0) {
                *ret_miss = "disabled";
                return NULL;
        }
        for (size_t i = 0; i < pl->n_pods; i++) {
                Pod *p = pl->pods[i];
                PoolShape have;
                if (!p->pool_ready || p->terminating ||
                    !streq(pool_image_name(p->pool_image), pool_image_name(want->image)))
                        continue;
                pool_shape_of(p, &have);
                const char *why = pool_shape_mismatch(&have, want);
                if (why) {
                        mismatch = mismatch ?: why;
                        continue;
                }
                if (!pool_pod_alive_locked(p))
                        continue; /* the pool thread replaces it */
                pool_remove_locked(pl, p);
                p->claimed = true;
                return p;
        }
        *ret_miss = mismatch ?: "empty";
        return NULL;
}

void pod_pool_note(Node *n, bool hit, const char *miss) {
        PodPool *pl = n->pool;
        metrics_pool_claim(hit, miss);
        if (!pl)
                return;
        pthread_mutex_lock(&n->lock);
        if (hit)
                pl->hits++;
        else
                pl->misses++;
        pthread_mutex_unlock(&n->lock);
        if (hit)
                pool_wake(pl);
}

/* Boot one pooled pod of image (on the pool thread). Returns 0 once its proxy answers. */
static int pool_boot_one(Node *n, PodPool *pl, const char *image) {
        _cleanup_free_ char *err = NULL, *image_dir = NULL;
        usec_t t0 = now_usec(CLOCK_MONOTONIC);
        Pod *p = xnew0(Pod, 1);
        int r, fd = -EBADF;

        p->node = n;
        p->n_ref = 1; /* the pool's; the claiming create's after a claim */
        pod_make_id(p->id);
        p->driver = n->config.driver;
        p->weak = p->driver == VMM_DRIVER_LOCAL;
        pthread_mutex_init(&p->audit_lock, NULL);
        pthread_mutex_init(&p->net_lock, NULL);
        pthread_mutex_init(&p->budget_lock, NULL);
        p->approvals = approval_queue_new(p->id, 0);
        PoolShape shape;
        pool_default_shape(&shape, image, (int) p->driver, n->config.pool_network);
        p->vcpus = shape.vcpus;
        p->memory_mib = shape.memory_mib;
        p->scratch_mib = shape.scratch_mib;
        p->pool_image = xstrdup(image);
        p->state = POD_BOOTING;
        p->dir = xasprintf("%s/pods/%s", n->config.state_dir, p->id);

        if (mkdir(p->dir, 0700) < 0) {
                r = -errno;
                log_warning_errno(r, "Pool: cannot create pod dir %s: %m", p->dir);
                pod_free(p);
                return r;
        }
        {
                _cleanup_close_ int dfd = open(p->dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                r = dfd < 0 ? -errno : write_file_atomic_at(dfd, POD_POOL_MARKER, image, strlen(image), 0600);
                if (r >= 0 && n->vmm_uid != 0 && (fchown(dfd, 0, n->vmm_gid) < 0 || fchmod(dfd, 0710) < 0))
                        r = -errno;
                if (r < 0) {
                        log_warning_errno(r, "Pool: cannot prepare pod dir %s: %m", p->dir);
                        (void) node_rm_rf(p->dir);
                        pod_free(p);
                        return r;
                }
        }

        pthread_mutex_lock(&n->lock);
        if (pl->stopping || n->shutting_down) {
                pthread_mutex_unlock(&n->lock);
                (void) node_rm_rf(p->dir);
                pod_free(p);
                return -ECANCELED;
        }
        pl->pods = xreallocarray(pl->pods, pl->n_pods + 1, sizeof(Pod *));
        pl->pods[pl->n_pods++] = p;
        p->pooled = true;
        pthread_mutex_unlock(&n->lock);

        image_dir = streq(image, "default") ? xstrdup(n->config.images_dir)
                                            : xasprintf("%s/%s", n->config.images_dir, image);
        _cleanup_free_ char *snap_scratch = NULL, *snap = NULL;
        if (shape.network) {
                /* The namespace the pod will have, holding only its tap and a drop-everything
                 * table; the pod's network is built in it at the claim (net_pod_unpark). */
                NetConfig nc;
                pod_net_config(n, p, &nc);
                NetPod *np = NULL;
                r = net_pod_park(&nc, p->id, &np, &err);
                if (r < 0)
                        goto fail;
                pthread_mutex_lock(&p->net_lock);
                p->net = np;
                pthread_mutex_unlock(&p->net_lock);
        }
        VmmLaunch l;
        pod_launch_prepare(n, p, image_dir, &l);
        pod_launch_net(p, &l); /* "nucleus.net=parked": a NIC, no address */
        /* Restored from the snapshot of the first pod booted for this image and shape when there
         * is one ([pool] restore): under TCG a restore is several times faster than a boot. */
        snap = pod_pool_snapshot_find(n, image_dir, image, &shape, p->net != NULL, &snap_scratch);
        l.restore_scratch = snap_scratch;
        p->pool_restored = snap != NULL;
        Vmm *vm = NULL;
        r = vmm_start(p->driver, &l, &vm, &err);
        if (r < 0)
                goto fail;
        pthread_mutex_lock(&n->lock);
        p->vm = vm;
        pthread_mutex_unlock(&n->lock);

        r = vmm_connect_channel(vm, (usec_t) n->config.boot_timeout_sec * USEC_PER_SEC, &fd, &err);
        if (r < 0)
                goto fail;
        if (snap) {
                r = pod_pool_snapshot_load(vm, snap, (usec_t) n->config.boot_timeout_sec * USEC_PER_SEC, &err);
                if (r < 0) {
                        safe_close(fd);
                        pod_pool_snapshot_discard(n, snap); /* the next refill boots and takes a new one */
                        goto fail;
                }
        }
        Channel *ch = NULL;
        /* A pooled pod that began ending meanwhile is noticed below (still). */
        r = pod_channel_publish(n, p, fd, &ch, &err);
        if (r < 0)
                goto fail;

        /* Ready when the proxy itself answers (the channel socket is up long before the guest). */
        {
                _cleanup_json_ json_t *args = json_object();
                ChannelReply reply = {};
                r = channel_call(
                        ch, "ping", args, 0, NULL, 0, (usec_t) n->config.boot_timeout_sec * USEC_PER_SEC, 0, &reply);
                channel_reply_done(&reply);
                if (r < 0) {
                        err = xasprintf("the proxy did not answer: %s", strerror(-r));
                        goto fail;
                }
        }

        /* A guest that hangs while it waits is noticed and replaced like one whose VMM died. */
        r = channel_liveness_start(ch, (usec_t) n->config.liveness_sec * USEC_PER_SEC, pool_on_dead);
        if (r < 0)
                log_warning_errno(r, "Pool: pod %s: cannot watch the guest's liveness: %m", p->id);

        usec_t took = now_usec(CLOCK_MONOTONIC) - t0;
        if (!snap) /* before it is claimable: nothing else touches it meanwhile */
                pod_pool_snapshot_take(n, p, image_dir, image, &shape);
        pthread_mutex_lock(&n->lock);
        bool still = p->pooled && !p->terminating && !p->pool_lost;
        if (still)
                p->pool_ready = true;
        pthread_mutex_unlock(&n->lock);
        if (!still) {
                r = -ECANCELED;
                err = xstrdup("the pool is stopping");
                goto fail;
        }
        metrics_observe_pool_refill(took);
        log_info(
                "Pool: pod %s of image %s ready in %.2fs (%s)",
                p->id,
                image,
                (double) took / 1e6,
                snap ? "restored from the pool's snapshot" : "booted");
        return 0;

fail:
        if (r != -ECANCELED)
                log_warning("Pool: booting a pod of image %s failed: %s", image, err ?: strerror(-r));
        pthread_mutex_lock(&n->lock);
        bool ours = pool_remove_locked(pl, p);
        pthread_mutex_unlock(&n->lock);
        if (ours)
                pool_discard(p);
        return r;
}

/* The image that needs a pod most, NULL when the pool is full (or the budget is). */
static const char *pool_next_image_locked(Node *n, PodPool *pl, bool *ret_over_budget) {
        const char *name;
        json_t *v;
        uint64_t used = pool_used_mib_locked(pl);
        PoolShape shape;
        pool_default_shape(&shape, NULL, (int) n->config.driver, n->config.pool_network);
        uint64_t charge = pool_pod_charge_mib(shape.memory_mib);
        *ret_over_budget = false;
        json_object_foreach(n->config.pool_images, name, v) {
                unsigned have = 0, want = pool_target(n->config.pool_images, name);
                for (size_t i = 0; i < pl->n_pods; i++)
                        if (streq(pl->pods[i]->pool_image, name))
                                have++;
                if (have >= want)
                        continue;
                if (!pool_fits(used, charge, n->config.pool_memory_budget_mib)) {
                        *ret_over_budget = true;
                        return NULL;
                }
                return name;
        }
        return NULL;
}

static void *pool_thread(void *userdata) {
        Node *n = userdata;
        PodPool *pl = n->pool;
        bool warned_budget = false;

        for (;;) {
                usec_t now = now_usec(CLOCK_MONOTONIC);
                bool over = false;
                _cleanup_free_ char *need = NULL;

                pthread_mutex_lock(&n->lock);
                if (pl->stopping || n->shutting_down) {
                        pthread_mutex_unlock(&n->lock);
                        break;
                }
                if (now >= pl->retry_after) {
                        const char *img = pool_next_image_locked(n, pl, &over);
                        need = img ? xstrdup(img) : NULL;
                }
                Pod **lost = xnew0(Pod *, pl->n_pods + 1);
                size_t n_lost = 0;
                for (size_t i = 0; i < pl->n_pods;)
                        if (pl->pods[i]->pool_lost) {
                                lost[n_lost++] = pl->pods[i];
                                pool_remove_locked(pl, pl->pods[i]);
                        } else
                                i++;
                struct pollfd *pfds = xnew0(struct pollfd, pl->n_pods + 1);
                Pod **owners = xnew0(Pod *, pl->n_pods + 1);
                size_t k = 1;
                pfds[0] = (struct pollfd){ .fd = pl->wake_fd, .events = POLLIN };
                for (size_t i = 0; !need && i < pl->n_pods; i++) {
                        Pod *p = pl->pods[i];
                        if (!p->pool_ready || !p->vm || vmm_pid(p->vm)->fd < 0)
                                continue;
                        int fd = fcntl(vmm_pid(p->vm)->fd, F_DUPFD_CLOEXEC, 3);
                        if (fd < 0)
                                continue;
                        pfds[k] = (struct pollfd){ .fd = fd, .events = POLLIN };
                        owners[k++] = p;
                        p->n_ref++;
                }
                pthread_mutex_unlock(&n->lock);

                for (size_t i = 0; i < n_lost; i++) {
                        log_warning(
                                "Pool: idle pod %s of image %s stopped answering on its channel; replacing "
                                "it",
                                lost[i]->id,
                                lost[i]->pool_image);
                        metrics_pool_lost();
                        pool_discard(lost[i]);
                }
                free(lost);
                if (n_lost > 0) {
                        for (size_t i = 1; i < k; i++) {
                                safe_close(pfds[i].fd);
                                pod_unref(owners[i]);
                        }
                        free(pfds);
                        free(owners);
                        continue;
                }

                if (over && !warned_budget)
                        log_warning(
                                "Pool: [pool] memory_budget_mib = %" PRIu64 " is reached; the pool stays "
                                "below its [pool.images] size",
                                n->config.pool_memory_budget_mib);
                warned_budget = warned_budget || over;

                if (need) {
                        free(pfds);
                        free(owners);
                        int r = pool_boot_one(n, pl, need);
                        if (r < 0 && r != -ECANCELED) {
                                usec_t wait = NUCLEUS_MIN(
                                        POOL_RETRY_MIN << NUCLEUS_MIN(pl->fails, 6u), POOL_RETRY_MAX);
                                pl->fails++;
                                pl->retry_after = now_usec(CLOCK_MONOTONIC) + wait;
                                log_warning(
                                        "Pool: next attempt in %" PRIu64 " s",
                                        (uint64_t) (wait / USEC_PER_SEC));
                        } else if (r >= 0)
                                pl->fails = 0;
                        continue;
                }

                int timeout_ms = 1000;
                if (pl->retry_after > now)
                        timeout_ms = (int) NUCLEUS_MIN((pl->retry_after - now) / 1000 + 1, 1000u);
                int r = poll(pfds, k, timeout_ms);
                if (r > 0 && (pfds[0].revents & POLLIN)) {
                        uint64_t v;
                        (void) !read(pl->wake_fd, &v, sizeof v);
                }
                for (size_t i = 1; i < k; i++) {
                        Pod *p = owners[i];
                        siginfo_t si = {};
                        if (r > 0 && (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
                            waitid(P_PIDFD, (id_t) pfds[i].fd, &si, WEXITED | WNOHANG | WNOWAIT) >= 0 &&
                            si.si_pid != 0) {
                                pthread_mutex_lock(&n->lock);
                                bool ours = p->pooled && pool_remove_locked(pl, p);
                                pthread_mutex_unlock(&n->lock);
                                if (ours) {
                                        log_warning(
                                                "Pool: idle pod %s of image %s ended (%s %d); replacing it",
                                                p->id,
                                                p->pool_image,
                                                si.si_code == CLD_EXITED ? "status" : "signal",
                                                si.si_status);
                                        metrics_pool_lost();
                                        pool_discard(p);
                                }
                        }
                        safe_close(pfds[i].fd);
                        pod_unref(p);
                }
                free(pfds);
                free(owners);
        }

        /* Stopping: nothing of the pool outlives the node. */
        pthread_mutex_lock(&n->lock);
        Pod **list = TAKE_PTR(pl->pods);
        size_t count = pl->n_pods;
        pl->n_pods = 0;
        for (size_t i = 0; i < count; i++)
                list[i]->pooled = false;
        pthread_mutex_unlock(&n->lock);
        for (size_t i = 0; i < count; i++)
                pool_discard(list[i]);
        free(list);
        return NULL;
}

int pod_pool_start(Node *n) {
        if (!n->config.pool_images || json_object_size(n->config.pool_images) == 0)
                return 0;
        unsigned total = 0;
        const char *name;
        json_t *v;
        json_object_foreach(n->config.pool_images, name, v)
                total += pool_target(n->config.pool_images, name);
        if (total == 0)
                return 0;
        PodPool *pl = xnew0(PodPool, 1);
        pl->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (pl->wake_fd < 0) {
                int r = -errno;
                free(pl);
                return r;
        }
        n->pool = pl;
        PoolShape shape;
        pool_default_shape(&shape, NULL, (int) n->config.driver, n->config.pool_network);
        uint64_t charge = pool_pod_charge_mib(shape.memory_mib);
        if (!pool_fits(0, charge, n->config.pool_memory_budget_mib))
                log_warning(
                        "Pool: [pool] memory_budget_mib = %" PRIu64 " is below one pooled pod (%" PRIu64 " M"
                        "iB"
                        ": "
                        "gu"
                        "es"
                        "t "
                        "me"
                        "mo"
                        "ry"
                        " +"
                        " 2"
                        "56"
                        ");"
                        " t"
                        "he"
                        " p"
                        "oo"
                        "l "
                        "st"
                        "ay"
                        "s "
                        "em"
                        "pt"
                        "y",
                        n->config.pool_memory_budget_mib,
                        charge);
        int r = -pthread_create(&pl->thread, NULL, pool_thread, n);
        if (r < 0) {
                n->pool = NULL;
                safe_close(pl->wake_fd);
                free(pl);
                return r;
        }
        pl->running = true;
        if (n->config.pool_network && !shape.network)
                log_warning(
                        "Pool: [pool] network = true needs the qemu driver (pods.driver = %s): pooled pods "
                        "boot without a NIC",
                        vmm_driver_to_string(n->config.driver));
        log_info(
                "Pool: keeping %u pod(s) booted ahead ([pool.images]; budget %" PRIu64 " MiB%s)",
                total,
                n->config.pool_memory_budget_mib,
                shape.network ? "; each with a parked NIC for a spec with a network" : "");
        return 0;
}

void pod_pool_stop(Node *n) {
        PodPool *pl = n->pool;
        if (!pl)
                return;
        pthread_mutex_lock(&n->lock);
        pl->stopping = true;
        /* A pod still booting would hold the thread for up to the boot timeout: end its VMM
         * now (only a signal here; the pool thread reaps it and sees the boot fail). */
        for (size_t i = 0; i < pl->n_pods; i++) {
                Pod *p = pl->pods[i];
                p->terminating = true;
                if (p->vm && vmm_pid(p->vm)->fd >= 0)
                        (void) syscall(SYS_pidfd_send_signal, vmm_pid(p->vm)->fd, SIGKILL, NULL, 0);
        }
        pthread_mutex_unlock(&n->lock);
        pool_wake(pl);
        if (pl->running)
                (void) pthread_join(pl->thread, NULL);
        pthread_mutex_lock(&n->lock);
        n->pool = NULL;
        pthread_mutex_unlock(&n->lock);
        safe_close(pl->wake_fd);
        free(pl->pods);
        free(pl);
        pod_pool_snapshots_remove(n);
}

json_t *pod_pool_to_json(Node *n) {
        json_t *images = json_array();
        PodPool *pl = n->pool;
        const char *name;
        json_t *v;

        PoolShape shape;
        pool_default_shape(&shape, NULL, (int) n->config.driver, n->config.pool_network);
        pthread_mutex_lock(&n->lock);
        uint64_t used = pl ? pool_used_mib_locked(pl) : 0;
        if (n->config.pool_images)
                json_object_foreach(n->config.pool_images, name, v) {
                        unsigned ready = 0, booting = 0;
                        for (size_t i = 0; pl && i < pl->n_pods; i++)
                                if (streq(pl->pods[i]->pool_image, name))
                                        (void) (pl->pods[i]->pool_ready ? ready++ : booting++);
                        json_array_append_new(
                                images,
                                json_pack(
                                        "{s:s,s:i,s:i,s:i}",
                                        "image",
                                        name,
                                        "size",
                                        (int) pool_target(n->config.pool_images, name),
                                        "ready",
                                        (int) ready,
                                        "booting",
                                        (int) booting));
                }
        json_t *j = json_pack(
                "{s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:s}",
                "images",
                images,
                "memory_budget_mib",
                (json_int_t) n->config.pool_memory_budget_mib,
                "memory_used_mib",
                (json_int_t) used,
                "vcpus",
                (json_int_t) shape.vcpus,
                "memory_mib",
                (json_int_t) shape.memory_mib,
                "hits",
                (json_int_t) (pl ? pl->hits : 0),
                "misses",
                (json_int_t) (pl ? pl->misses : 0),
                "driver",
                vmm_driver_to_string(n->config.driver));
        json_object_set_new(j, "scratch_mib", json_integer((json_int_t) shape.scratch_mib));
        json_object_set_new(j, "network", json_boolean(shape.network));
        pthread_mutex_unlock(&n->lock);
        return j;
}

void pod_pool_render_metrics(Node *n, FILE *f) {
        PodPool *pl = n->pool;
        const char *name;
        json_t *v;

        fprintf(f,
                "# HELP nucleus_pool_pods Pods of the warm pool by image and state (booting, ready).\n"
                "# TYPE nucleus_pool_pods gauge\n"
                "# HELP nucleus_pool_size Pods the warm pool keeps per image ([pool.images]).\n"
                "# TYPE nucleus_pool_size gauge\n");
        pthread_mutex_lock(&n->lock);
        if (n->config.pool_images)
                json_object_foreach(n->config.pool_images, name, v) {
                        unsigned ready = 0, booting = 0;
                        for (size_t i = 0; pl && i < pl->n_pods; i++)
                                if (streq(pl->pods[i]->pool_image, name))
                                        (void) (pl->pods[i]->pool_ready ? ready++ : booting++);
                        fprintf(f,
                                "nucleus_pool_pods{image=\"%s\",state=\"ready\"} %u\n"
                                "nucleus_pool_pods{image=\"%s\",state=\"booting\"} %u\n"
                                "nucleus_pool_size{image=\"%s\"} %u\n",
                                name,
                                ready,
                                name,
                                booting,
                                name,
                                pool_target(n->config.pool_images, name));
                }
        pthread_mutex_unlock(&n->lock);
}

/* ---- the claimed pod ------------------------------------------------------------------------ */

/* A claimed pod booted with a parked NIC: build its network in the namespace it already has,
 * as a cold pod's is built, before configure gives the guest the address. */
static int pod_pool_unpark(Pod *p, char **reterr) {
        _cleanup_(net_policy_freep) NetPolicy *netpol = NULL;
        int r;

        pthread_mutex_lock(&p->net_lock);
        bool parked = p->net && net_pod_info(p->net)->parked;
        pthread_mutex_unlock(&p->net_lock);
        if (!parked)
                return 0; /* booted without a NIC */
        r = pod_net_policy(p, &netpol, reterr);
        if (r == 0) {
                *reterr = xstrdup("internal: a pooled pod with a NIC claimed for a spec without a network");
                return -EINVAL;
        }
        if (r < 0)
                return r;
        NetConfig nc;
        pod_net_config(p->node, p, &nc);
        /* Under the pod's net lock: a termination meanwhile tears the network down after this. */
        pthread_mutex_lock(&p->net_lock);
        r = p->net ? net_pod_unpark(p->net, &nc, netpol, reterr) : -ECANCELED;
        if (r >= 0)
                pod_log(p, LOG_DEBUG, "network %s plumbed at the claim", net_pod_info(p->net)->netns_name);
        pthread_mutex_unlock(&p->net_lock);
        if (r == -ECANCELED)
                *reterr = xstrdup("the pod ended during its claim");
        return r;
}

void *pod_claim_thread(void *userdata) {
        Pod *p = userdata;
        _cleanup_free_ char *err = NULL;
        size_t i;
        json_t *ev;

        pthread_mutex_lock(&p->node->lock);
        json_t *events = TAKE_PTR(p->pool_events);
        pthread_mutex_unlock(&p->node->lock);
        json_array_foreach(events, i, ev)
                pod_on_event(p, ev);
        json_decref(events);

        pthread_mutex_lock(&p->node->lock);
        bool stop = p->terminating;
        pthread_mutex_unlock(&p->node->lock);
        if (!stop) {
                int r = pod_pool_unpark(p, &err);
                if (r >= 0) {
                        pod_set_state(p, POD_CONFIGURING);
                        r = pod_configure(p, &err);
                }
                if (r >= 0)
                        pod_now_running(p);
                else {
                        pthread_mutex_lock(&p->node->lock);
                        stop = p->terminating;
                        pthread_mutex_unlock(&p->node->lock);
                        if (!stop) {
                                metrics_pod_create_failed();
                                pod_log(p, LOG_ERR, "failed to start: %s", err ?: strerror(-r));
                                pod_terminate(p, POD_FAILED, err ?: "failed to start", "internal");
                        }
                }
        }
        pod_unref(p);
        return NULL;
}
