/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshot and fork (docs/snapshot.md). A snapshot is a running qemu pod's VM state (QEMU
 * migration into a file, through a descriptor passed over QMP) and a copy of its scratch disk,
 * taken while the VM is paused with no call in flight, kept under
 * <state_dir>/snapshots/<id>/ with its metadata. A fork starts new pods from it: each is a new
 * QEMU fed the saved state (-incoming defer, migrate-incoming), with a new id, deadline and
 * audit log, then a handshake with its restored proxy (op "reconfigure") that sets the new
 * identity and a policy that only keeps or tightens the parent's, resets the time window,
 * sets the wall clock, reseeds the guest CRNG and clears approvals. The children share the
 * parent's remaining budget with the parent (each gets an equal share; the parent is charged
 * for what it hands out), so the family never spends more than the parent had left.
 *
 * A snapshot outlives its parent: when the parent ends, its remainder (reservations counted as
 * spent) becomes the escrow of its snapshots (Pod.escrow), and forks of the ended parent split
 * that escrow the same way. Snapshots go with `DELETE /v1/snapshots/{sid}`, prune, the caps of
 * [snapshots] (oldest of an ended parent first) or the parent's record, and at node start.
 *
 * A child of a pod with a network gets a network of its own, built as for a cold pod before
 * its QEMU starts (its namespace, tap, address block, ruleset from the same network section),
 * and reconfigure carries its address, so the guest drops the parent's and takes its own.
 *
 * Limits: qemu driver only.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cgroup.h"
#include "fd-util.h"
#include "hash-util.h"
#include "json-util.h"
#include "log.h"
#include "metrics.h"
#include "node-util.h"
#include "nodespec.h"
#include "pod-internal.h"
#include "pod.h"
#include "string-util.h"

#define SNAPSHOT_STATE "state"
#define SNAPSHOT_SCRATCH "scratch.img"
#define SNAPSHOT_META "snapshot.json"
#define FORK_MAX 16u

struct PodFork {
        char parent_id[37];
        char snapshot_id[37];
        char *snapshot_dir;
        uint64_t share_usd_micros, share_input_tokens, share_output_tokens;
        Node *busy_node; /* holds an entry of busy_node->snapshots_busy until the restore ends */
};

/* A child restores from snapshot id: it is not removed until snapshot_busy_release. Under
 * n->lock. */
static void snapshot_busy_take_locked(Node *n, const char *id) {
        strv_extend(&n->snapshots_busy, id);
}

static bool snapshot_busy_locked(Node *n, const char *id) {
        return strv_contains(n->snapshots_busy, id);
}

static void snapshot_busy_release(Node *n, const char *id) {
        pthread_mutex_lock(&n->lock);
        size_t k = strv_length(n->snapshots_busy);
        for (size_t i = 0; i < k; i++)
                if (streq(n->snapshots_busy[i], id)) {
                        free(n->snapshots_busy[i]);
                        memmove(n->snapshots_busy + i, n->snapshots_busy + i + 1, (k - i) * sizeof(char *));
                        break;
                }
        pthread_mutex_unlock(&n->lock);
}

static void pod_fork_release(PodFork *f) {
        if (f && f->busy_node) {
                snapshot_busy_release(f->busy_node, f->snapshot_id);
                f->busy_node = NULL;
        }
}

PodFork *pod_fork_free(PodFork *f) {
        if (!f)
                return NULL;
        pod_fork_release(f);
        free(f->snapshot_dir);
        free(f);
        return NULL;
}

json_t *pod_fork_origin_json(const PodFork *f) {
        return json_pack(
                "{s:s,s:s,s:{s:I,s:I,s:I}}",
                "parent",
                f->parent_id,
                "snapshot",
                f->snapshot_id,
                "budget_share",
                "usd_micros",
                (json_int_t) f->share_usd_micros,
                "input_tokens",
                (json_int_t) f->share_input_tokens,
                "output_tokens",
                (json_int_t) f->share_output_tokens);
}

static void make_uuid(char ret[37]) {
        uint8_t b[16];
        if (getrandom(b, sizeof b, 0) != sizeof b)
                oom_abort(); /* no randomness: fail closed */
        b[6] = (uint8_t) ((b[6] & 0x0f) | 0x40);
        b[8] = (uint8_t) ((b[8] & 0x3f) | 0x80);
        _cleanup_free_ char *hex = hexmem(b, sizeof b);
        snprintf(ret, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

static bool uuid_syntax_ok(const char *s) {
        if (!s || strlen(s) != 36)
                return false;
        for (size_t i = 0; i < 36; i++)
                if (!(i == 8 || i == 13 || i == 18 || i == 23
                              ? s[i] == '-'
                              : (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static int snapshot_remove(Node *n, const char *id, const char *parent);
static int snapshots_enforce_cap(Node *n, char **reterr);

static char *snapshots_root(Node *n) {
        return xasprintf("%s/snapshots", n->config.state_dir);
}

/* The digest of the image's manifest: a snapshot restores only into the image it came from. */
static int image_digest(const char *image_dir, char ret[65]) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        _cleanup_free_ char *path = xasprintf("%s/manifest.json", image_dir);
        int r = read_full_file_at(AT_FDCWD, path, 1 << 20, &data, &len);
        if (r < 0)
                return r;
        sha256_hex(data, len, ret);
        return 0;
}

/* Why p cannot be snapshotted or forked now (malloc'd), or NULL. */
static char *pod_snapshot_refusal(Pod *p, int *ret_errno) {
        char *why = NULL;
        pthread_mutex_lock(&p->node->lock);
        if (p->driver != VMM_DRIVER_QEMU) {
                why = xasprintf(
                        "pod %s runs under the %s driver; snapshots need the qemu driver",
                        p->id,
                        vmm_driver_to_string(p->driver));
                *ret_errno = -EOPNOTSUPP;
        } else if (p->state != POD_RUNNING || p->terminating || !p->vm || !p->channel) {
                why = xasprintf("pod %s is %s, not running", p->id, pod_state_to_string(p->state));
                *ret_errno = -ESTALE;
        }
        pthread_mutex_unlock(&p->node->lock);
        return why;
}

/* The proxy's status (budget, jobs). */
static int pod_status(Pod *p, json_t **ret, char **reterr) {
        ChannelReply rep = {};
        int r = channel_call(p->channel, "status", NULL, 0, NULL, 0, 10 * USEC_PER_SEC, 0, &rep);
        if (r < 0) {
                *reterr = xasprintf("the proxy did not answer status: %s", strerror(-r));
                return r;
        }
        if (json_object_get(rep.response, "error")) {
                *reterr = xasprintf(
                        "the proxy refused status: %s",
                        json_string_value(json_object_get(rep.response, "error")) ?: "?");
                channel_reply_done(&rep);
                return -EPROTO;
        }
        *ret = json_incref(rep.response);
        channel_reply_done(&rep);
        return 0;
}

typedef struct CopyCtx {
        Vmm *vm;
        const char *dst;
} CopyCtx;

/* While the VM is paused and QEMU has flushed its disks: the scratch disk as it is now. */
static int snapshot_copy_scratch(void *userdata, char **reterr) {
        CopyCtx *c = userdata;
        _cleanup_free_ char *src_path = vmm_scratch_path(c->vm);
        /* In the VMM user's dir: no link followed, and a FIFO put there must not block this
         * thread while the VM is paused (copy_file_sparse takes only a regular file). */
        _cleanup_close_ int src = open(src_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        _cleanup_close_ int dst = open(c->dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        int r = src < 0 || dst < 0 ? -errno : copy_file_sparse(src, dst);
        if (r < 0)
                *reterr = xasprintf("cannot copy the scratch disk %s: %s", src_path, strerror(-r));
        return r;
}

int pod_snapshot(Pod *p, const char *actor, json_t **ret, char **reterr) {
        Node *n = p->node;
        _cleanup_json_ json_t *status = NULL, *meta = NULL;
        _cleanup_free_ char *root = snapshots_root(n), *dir = NULL, *image_dir = NULL;
        char id[37], digest[65];
        int r = 0;

        *reterr = pod_snapshot_refusal(p, &r);
        if (*reterr)
                return r;
        image_dir = nodespec_image_dir(p->spec, n->config.images_dir);
        if (!image_dir || image_digest(image_dir, digest) < 0) {
                *reterr = xasprintf("the pod's image (%s) has no manifest", image_dir ?: "-");
                return -ENOENT;
        }
        /* No command may run: its processes and pipes would be cut off in every child. */
        r = pod_status(p, &status, reterr);
        if (r < 0)
                return r;
        uint64_t jobs = node_json_u64(json_object_get(status, "jobs"));
        if (jobs > 0) {
                *reterr = xasprintf(
                        "pod %s has %llu command(s) running; a snapshot is taken with no call in flight",
                        p->id,
                        (unsigned long long) jobs);
                return -EBUSY;
        }
        /* No call may be in flight, and none may start until the VM runs again: a request in
         * the guest's buffers would be answered by every child. */
        r = channel_hold(p->channel);
        if (r < 0) {
                *reterr = r == -EBUSY ? xasprintf(
                                                "pod %s has a call in flight; a snapshot is taken with no "
                                                "call "
                                                "in flight (retry when it answered)",
                                                p->id)
                        : r == -EALREADY ? xasprintf("pod %s is being snapshotted already", p->id)
                                         : xasprintf("pod %s: its channel is closed", p->id);
                return r == -ECONNRESET ? -ESTALE : -EBUSY;
        }

        usec_t t0 = now_usec(CLOCK_MONOTONIC);
        make_uuid(id);
        dir = xasprintf("%s/%s", root, id);
        if ((mkdir(root, 0700) < 0 && errno != EEXIST) || mkdir(dir, 0700) < 0) {
                r = -errno;
                channel_unhold(p->channel);
                *reterr = xasprintf("cannot create %s: %s", dir, strerror(-r));
                return r;
        }
        _cleanup_free_ char *state_path = xasprintf("%s/" SNAPSHOT_STATE, dir);
        _cleanup_free_ char *scratch_path = xasprintf("%s/" SNAPSHOT_SCRATCH, dir);
        _cleanup_close_ int fd = open(state_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                r = -errno;
                *reterr = xasprintf("cannot create %s: %s", state_path, strerror(-r));
        } else {
                CopyCtx ctx = { .vm = p->vm, .dst = scratch_path };
                r = vmm_save_state(p->vm, fd, snapshot_copy_scratch, &ctx, reterr);
        }
        channel_unhold(p->channel);
        usec_t took = now_usec(CLOCK_MONOTONIC) - t0;
        if (r < 0) {
                (void) node_rm_rf(dir);
                pod_log(p, LOG_WARNING, "snapshot failed: %s", *reterr ?: strerror(-r));
                return r;
        }
        struct stat st_state = {}, st_scratch = {};
        (void) fstat(fd, &st_state);
        (void) stat(scratch_path, &st_scratch);

        json_t *budget = json_object_get(status, "budget");
        char created[32];
        usec_t created_rt = now_usec(CLOCK_REALTIME);
        meta = json_pack(
                "{s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I},s:I,s:I,s:I}",
                "id",
                id,
                "parent",
                p->id,
                "created",
                format_timestamp_rfc3339(created, created_rt),
                "created_usec",
                (json_int_t) created_rt,
                "image",
                p->spec->image ?: "default",
                "image_manifest_sha256",
                digest,
                "policy_sha256",
                p->policy_sha256 ?: "",
                "vcpus",
                (json_int_t) p->vcpus,
                "memory_mib",
                (json_int_t) p->memory_mib,
                "scratch_mib",
                (json_int_t) p->scratch_mib,
                "timeout_seconds",
                (json_int_t) (p->timeout / USEC_PER_SEC),
                "budget",
                "max_usd_micros",
                (json_int_t) node_json_u64(json_object_get(budget, "max_usd_micros")),
                "used_usd_micros",
                (json_int_t) node_json_u64(json_object_get(budget, "used_usd_micros")),
                "left_usd_micros",
                (json_int_t) node_json_u64(json_object_get(budget, "left_usd_micros")),
                "input_tokens",
                (json_int_t) node_json_u64(json_object_get(budget, "input_tokens")),
                "output_tokens",
                (json_int_t) node_json_u64(json_object_get(budget, "output_tokens")),
                "state_bytes",
                (json_int_t) st_state.st_size,
                "scratch_allocated_bytes",
                (json_int_t) (st_scratch.st_blocks * 512),
                "took_ms",
                (json_int_t) (took / USEC_PER_MSEC));
        if (!meta)
                oom_abort();
        _cleanup_free_ char *text = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
        _cleanup_close_ int dfd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        r = dfd < 0 ? -errno : write_file_atomic_at(dfd, SNAPSHOT_META, text, strlen(text), 0600);
        if (r < 0) {
                (void) node_rm_rf(dir);
                *reterr = xasprintf("cannot write %s/" SNAPSHOT_META ": %s", dir, strerror(-r));
                return r;
        }
        /* Counted with its pod, unless the pod began ending meanwhile: its end has read the
         * remainder for the snapshots it knew, and this one would be taken after its last
         * state the node trusts. */
        pthread_mutex_lock(&n->lock);
        bool ended = p->terminating || pod_state_is_final(p->state);
        if (!ended) {
                p->n_snapshots++;
                snapshot_busy_take_locked(n, id); /* not chosen by the cap below */
        }
        pthread_mutex_unlock(&n->lock);
        if (ended) {
                (void) node_rm_rf(dir);
                *reterr = xasprintf("pod %s ended while it was being snapshotted", p->id);
                return -ESTALE;
        }
        r = snapshots_enforce_cap(n, reterr);
        snapshot_busy_release(n, id);
        if (r < 0) {
                (void) snapshot_remove(n, id, p->id);
                return r;
        }
        {
                _cleanup_json_ json_t *detail = json_pack("{s:s}", "snapshot", id);
                AuditEvent ev = { .actor = actor ?: "",
                                  .op = "pod_snapshot",
                                  .decision = "allow",
                                  .args = meta,
                                  .detail = detail };
                pod_audit(p, &ev);
        }
        pod_log(p,
                LOG_INFO,
                "snapshot %s taken in %" PRIu64 " ms (state %" PRIu64 " bytes)",
                id,
                (uint64_t) (took / USEC_PER_MSEC),
                (uint64_t) st_state.st_size);
        *ret = TAKE_PTR(meta);
        return 0;
}

/* The metadata of snapshot id (new reference), checked to belong to p. */
static int snapshot_load(Pod *p, const char *id, json_t **ret, char **ret_dir, char **reterr) {
        _cleanup_free_ char *root = snapshots_root(p->node), *dir = NULL, *data = NULL;
        _cleanup_json_ json_t *meta = NULL;
        size_t len = 0;
        json_error_t e;

        if (!uuid_syntax_ok(id)) {
                *reterr = xstrdup("snapshot: expected a snapshot id (a lower-case UUID)");
                return -EINVAL;
        }
        dir = xasprintf("%s/%s", root, id);
        _cleanup_free_ char *path = xasprintf("%s/" SNAPSHOT_META, dir);
        if (read_full_file_at(AT_FDCWD, path, 1 << 20, &data, &len) < 0 ||
            !(meta = json_loadb(data, len, 0, &e)) || !json_is_object(meta)) {
                *reterr = xasprintf("no snapshot %s on this node", id);
                return -ENOENT;
        }
        if (!streq_ptr(json_string_value(json_object_get(meta, "parent")), p->id)) {
                *reterr = xasprintf("snapshot %s is not a snapshot of pod %s", id, p->id);
                return -ENOENT;
        }
        *ret = TAKE_PTR(meta);
        *ret_dir = TAKE_PTR(dir);
        return 0;
}

/* One snapshot on disk as the lifetime rules see it. */
typedef struct SnapInfo {
        char id[37];
        char parent[37];
        uint64_t created_usec;
        uint64_t bytes;
} SnapInfo;

/* Every snapshot under <state_dir>/snapshots (its metadata readable): *ret (malloc'd), count. */
static size_t snapshots_scan(Node *n, SnapInfo **ret) {
        _cleanup_free_ char *root = snapshots_root(n);
        SnapInfo *list = NULL;
        size_t k = 0, alloc = 0;
        DIR *d = opendir(root);
        for (struct dirent *de; d && (de = readdir(d));) {
                if (!uuid_syntax_ok(de->d_name))
                        continue;
                _cleanup_free_ char *path = xasprintf("%s/%s/" SNAPSHOT_META, root, de->d_name), *data = NULL;
                _cleanup_json_ json_t *j = NULL;
                json_error_t e;
                size_t len = 0;
                const char *parent;
                if (read_full_file_at(AT_FDCWD, path, 1 << 20, &data, &len) < 0 ||
                    !(j = json_loadb(data, len, 0, &e)) ||
                    !uuid_syntax_ok(parent = json_string_value(json_object_get(j, "parent"))))
                        continue;
                if (k == alloc)
                        list = xreallocarray(list, alloc = alloc ? alloc * 2 : 16, sizeof(SnapInfo));
                SnapInfo *si = &list[k++];
                memcpy(si->id, de->d_name, sizeof si->id);
                memcpy(si->parent, parent, sizeof si->parent);
                si->created_usec = node_json_u64(json_object_get(j, "created_usec"));
                si->bytes = node_json_u64(json_object_get(j, "state_bytes")) +
                        node_json_u64(json_object_get(j, "scratch_allocated_bytes"));
        }
        if (d)
                closedir(d);
        *ret = list;
        return k;
}

/* Has the pod with this id ended (or is its record gone)? Under n->lock. */
static bool parent_ended_locked(Node *n, const char *id) {
        for (size_t i = 0; i < n->n_pods; i++)
                if (streq(n->pods[i]->id, id))
                        return pod_state_is_final(n->pods[i]->state);
        return true;
}

/* Remove snapshot id of pod parent: -EBUSY while a child restores from it. */
static int snapshot_remove(Node *n, const char *id, const char *parent) {
        _cleanup_free_ char *root = snapshots_root(n);
        _cleanup_free_ char *dir = xasprintf("%s/%s", root, id),
                            *gone = xasprintf("%s/.removing-%s", root, id);
        /* Out of sight under the lock that marks snapshots busy: a fork either marked it first
         * (then it stays) or finds it gone. */
        pthread_mutex_lock(&n->lock);
        if (snapshot_busy_locked(n, id)) {
                pthread_mutex_unlock(&n->lock);
                return -EBUSY;
        }
        if (rename(dir, gone) < 0) {
                int r = -errno;
                pthread_mutex_unlock(&n->lock);
                return r;
        }
        for (size_t i = 0; i < n->n_pods; i++)
                if (streq(n->pods[i]->id, parent) && n->pods[i]->n_snapshots > 0)
                        n->pods[i]->n_snapshots--;
        pthread_mutex_unlock(&n->lock);
        (void) node_rm_rf(gone);
        log_info("Snapshot %s of pod %s removed", id, parent);
        return 0;
}

/* After a snapshot was added: remove what the caps of [snapshots] choose (fork-budget.h).
 * -ENOSPC with *reterr when they cannot be met without a pinned one. */
static int snapshots_enforce_cap(Node *n, char **reterr) {
        _cleanup_free_ SnapInfo *list = NULL;
        size_t k = snapshots_scan(n, &list);
        if (k == 0)
                return 0;
        _cleanup_free_ SnapshotCapEntry *e = xnew0(SnapshotCapEntry, k);
        _cleanup_free_ bool *rm = xnew0(bool, k);
        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; i < k; i++)
                e[i] = (SnapshotCapEntry){ .created_usec = list[i].created_usec,
                                           .bytes = list[i].bytes,
                                           .parent_ended = parent_ended_locked(n, list[i].parent),
                                           .pinned = snapshot_busy_locked(n, list[i].id) };
        pthread_mutex_unlock(&n->lock);
        int r = snapshot_cap_choose(e, k, n->config.snapshots_max_count, n->config.snapshots_max_bytes, rm);
        for (size_t i = 0; i < k; i++)
                if (rm[i] && snapshot_remove(n, list[i].id, list[i].parent) >= 0)
                        log_info(
                                "Snapshot %s removed by the cap ([snapshots] max_count %u, max_mib %" PRIu64
                                ")",
                                list[i].id,
                                n->config.snapshots_max_count,
                                n->config.snapshots_max_bytes >> 20);
        if (r < 0)
                *reterr = xasprintf(
                        "the node's snapshots would exceed [snapshots] max_count (%u) or max_mib (%" PRIu64
                        ") even without the ones it may remove (children are restoring from them); "
                        "retry later, remove snapshots (nucleus snapshot rm ID) or raise the caps",
                        n->config.snapshots_max_count,
                        n->config.snapshots_max_bytes >> 20);
        return r < 0 ? -ENOSPC : 0;
}

json_t *pod_snapshots_list(Pod *p) {
        _cleanup_free_ SnapInfo *list = NULL;
        size_t k = snapshots_scan(p->node, &list);
        json_t *out = json_array();
        for (size_t i = 0; i < k; i++) {
                _cleanup_json_ json_t *meta = NULL;
                _cleanup_free_ char *dir = NULL, *err = NULL;
                if (streq(list[i].parent, p->id) && snapshot_load(p, list[i].id, &meta, &dir, &err) >= 0)
                        json_array_append(out, meta);
        }
        return out;
}

int pod_snapshots_remove(Node *n, const char *pod_id) {
        _cleanup_free_ SnapInfo *list = NULL;
        size_t k = snapshots_scan(n, &list);
        int ret = 0;
        for (size_t i = 0; i < k; i++)
                if (streq(list[i].parent, pod_id)) {
                        int r = snapshot_remove(n, list[i].id, pod_id);
                        if (r == -EBUSY)
                                ret = r;
                }
        return ret;
}

int pod_snapshot_delete(Node *n, const char *id, json_t **ret, char **reterr) {
        _cleanup_free_ SnapInfo *list = NULL;
        size_t k = snapshots_scan(n, &list);
        if (!uuid_syntax_ok(id)) {
                *reterr = xstrdup("expected a snapshot id (a lower-case UUID)");
                return -EINVAL;
        }
        for (size_t i = 0; i < k; i++) {
                if (!streq(list[i].id, id))
                        continue;
                int r = snapshot_remove(n, id, list[i].parent);
                if (r == -EBUSY) {
                        *reterr = xasprintf("a pod is being restored from snapshot %s; retry when it runs", id);
                        return r;
                }
                if (r < 0) {
                        *reterr = xasprintf("cannot remove snapshot %s: %s", id, strerror(-r));
                        return r;
                }
                *ret = json_pack("{s:s,s:s}", "removed", id, "parent", list[i].parent);
                return 0;
        }
        *reterr = xasprintf("no snapshot %s on this node", id);
        return -ENOENT;
}

char **pod_snapshots_prune(Node *n, usec_t older_than) {
        _cleanup_free_ SnapInfo *list = NULL;
        size_t k = snapshots_scan(n, &list);
        usec_t now = now_usec(CLOCK_REALTIME);
        char **removed = NULL;
        for (size_t i = 0; i < k; i++) {
                pthread_mutex_lock(&n->lock);
                bool ended = parent_ended_locked(n, list[i].parent);
                pthread_mutex_unlock(&n->lock);
                bool old = older_than == 0 ||
                        (now > list[i].created_usec && now - list[i].created_usec > older_than);
                if (ended && old && snapshot_remove(n, list[i].id, list[i].parent) >= 0)
                        strv_extend(&removed, list[i].id);
        }
        return removed;
}

void pod_snapshots_parent_ended(Pod *p) {
        pthread_mutex_lock(&p->node->lock);
        unsigned k = p->n_snapshots;
        ForkBudget e = p->escrow;
        bool set = p->escrow_set;
        pthread_mutex_unlock(&p->node->lock);
        if (k == 0)
                return;
        if (set)
                pod_log(p,
                        LOG_INFO,
                        "%u snapshot(s) kept; forks of them share what the pod left: %" PRIu64 " micro-USD, "
                        "%" PRIu64 " input and %" PRIu64 " output tokens",
                        k,
                        e.usd_micros,
                        e.input_tokens,
                        e.output_tokens);
        else
                pod_log(p,
                        LOG_WARNING,
                        "%u snapshot(s) kept, but %s: forks of them get no budget",
                        k,
                        p->escrow_unknown ?: "the remainder is unknown");
}

void pod_snapshots_cleanup_stale(Node *n) {
        _cleanup_free_ char *root = snapshots_root(n);
        pod_pool_snapshots_remove(n);
        if (access(root, F_OK) < 0)
                return;
        /* The escrow of an ended parent lives in this run's memory, and no pod of an earlier run
         * is known to this one: their snapshots cannot be forked with a sound budget. */
        log_info(
                "Removing the snapshots of an earlier run (%s): forks need their parent's record and "
                "budget, which a restart does not keep",
                root);
        (void) node_rm_rf(root);
}

/* ---- fork ------------------------------------------------------------------------------- */

/* Entries of n->snapshots_busy the fork holds for children it has not created yet. */
typedef struct BusyHold {
        Node *n;
        char id[37];
        unsigned k;
} BusyHold;

static void busy_hold_done(BusyHold *h) {
        for (; h->k > 0; h->k--)
                snapshot_busy_release(h->n, h->id);
}

/* The newest snapshot of pod_id into ret; false when it has none. */
static bool snapshot_newest(Node *n, const char *pod_id, char ret[37]) {
        _cleanup_free_ SnapInfo *list = NULL;
        size_t k = snapshots_scan(n, &list), best = k;
        for (size_t i = 0; i < k; i++)
                if (streq(list[i].parent, pod_id) &&
                    (best == k || list[i].created_usec > list[best].created_usec))
                        best = i;
        if (best == k)
                return false;
        memcpy(ret, list[best].id, 37);
        return true;
}

/* A running parent's share for count children: its remainder now (its proxy's meter less the
 * reservations the node holds for it) split by fork_budget_split, the children's shares
 * charged to it. Under budget_lock, so no reservation or end slips between read and charge. */
static int fork_take_from_parent(
        Pod *p, unsigned count, ForkBudget *ret_share, ForkBudget *ret_keeps, char **reterr) {
        _cleanup_json_ json_t *status = NULL;
        ForkBudget share, keeps;
        pthread_mutex_lock(&p->budget_lock);
        /* Still running, under budget_lock: a pod that began ending has read its remainder for
         * its escrow under this lock and its channel is still open for a moment after; shares
         * charged now would be counted in the escrow as well. */
        pthread_mutex_lock(&p->node->lock);
        bool ending = p->terminating || p->state != POD_RUNNING;
        pthread_mutex_unlock(&p->node->lock);
        if (ending) {
                pthread_mutex_unlock(&p->budget_lock);
                *reterr = xasprintf("pod %s is ending; fork from its snapshots once it has ended", p->id);
                return -ESTALE;
        }
        int r = pod_status(p, &status, reterr);
        if (r < 0) {
                pthread_mutex_unlock(&p->budget_lock);
                return r;
        }
        json_t *b = json_object_get(status, "budget");
        const Policy *pol = p->spec->policy;
        ForkBudget have = fork_budget_remainder(
                node_json_u64(json_object_get(b, "left_usd_micros")),
                p->resv_micros,
                pol->max_usd_micros,
                &p->charged,
                pol->max_input_tokens,
                node_json_u64(json_object_get(b, "input_tokens")),
                pol->max_output_tokens,
                node_json_u64(json_object_get(b, "output_tokens")));
        if (fork_budget_split(&have, count, &share, &keeps) < 0) {
                pthread_mutex_unlock(&p->budget_lock);
                *reterr = xasprintf(
                        "pod %s has %" PRIu64 " micro-USD of budget left: nothing to share among %u "
                        "children",
                        p->id,
                        have.usd_micros,
                        count);
                return -EDQUOT;
        }
        _cleanup_json_ json_t *args = json_pack(
                "{s:I,s:I,s:I}",
                "usd_micros",
                (json_int_t) (share.usd_micros * count),
                "input_tokens",
                (json_int_t) (share.input_tokens * count),
                "output_tokens",
                (json_int_t) (share.output_tokens * count));
        ChannelReply rep = {};
        r = channel_call(p->channel, "charge", args, 0, NULL, 0, 10 * USEC_PER_SEC, 0, &rep);
        if (r >= 0 && json_object_get(rep.response, "error"))
                r = -EDQUOT;
        channel_reply_done(&rep);
        if (r >= 0) {
                ForkBudget given = { share.usd_micros * count,
                                     share.input_tokens * count,
                                     share.output_tokens * count };
                fork_budget_add(&p->charged, &given);
        }
        pthread_mutex_unlock(&p->budget_lock);
        if (r < 0) {
                *reterr = xasprintf("cannot take the children's budget from pod %s", p->id);
                return r;
        }
        *ret_share = share;
        *ret_keeps = keeps;
        return 0;
}

/* An ended parent's share for count children: out of the escrow its end left (Pod.escrow), split
 * the same way; the escrow keeps the rest for later forks. */
static int fork_take_from_escrow(
        Pod *p, unsigned count, ForkBudget *ret_share, ForkBudget *ret_keeps, char **reterr) {
        ForkBudget share, keeps;
        int r;
        pthread_mutex_lock(&p->node->lock);
        if (!p->escrow_set) {
                *reterr = xasprintf(
                        "pod %s ended, but %s; its snapshots have no budget to give a fork",
                        p->id,
                        p->escrow_unknown ?: "its remainder is unknown");
                r = -EDQUOT;
        } else if (fork_budget_split(&p->escrow, count, &share, &keeps) < 0) {
                *reterr = xasprintf(
                        "pod %s ended; its snapshots hold %" PRIu64 " micro-USD of what it left: nothing to "
                        "share among %u children",
                        p->id,
                        p->escrow.usd_micros,
                        count);
                r = -EDQUOT;
        } else {
                p->escrow = keeps;
                r = 0;
        }
        pthread_mutex_unlock(&p->node->lock);
        if (r < 0)
                return r;
        pod_write_state_file(p); /* the record shows what is left */
        *ret_share = share;
        *ret_keeps = keeps;
        return 0;
}

int pod_fork(Pod *p, const char *snapshot_id, unsigned count, const char *actor, json_t **ret, char **reterr) {
        Node *n = p->node;
        _cleanup_json_ json_t *meta = NULL, *children = NULL, *taken = NULL;
        _cleanup_free_ char *dir = NULL, *image_dir = NULL;
        _cleanup_(busy_hold_done) BusyHold hold = { .n = p->node };
        char digest[65], newest[37];
        ForkBudget share = {}, keeps = {};
        int r = 0;

        if (count < 1 || count > FORK_MAX) {
                *reterr = xasprintf("count: expected 1..%u", FORK_MAX);
                return -EINVAL;
        }
        /* A network or another driver is refused for that reason, whatever the pod's state. */
        _cleanup_free_ char *why = pod_snapshot_refusal(p, &r);
        if (why && r == -EOPNOTSUPP) {
                *reterr = TAKE_PTR(why);
                return r;
        }
        pthread_mutex_lock(&n->lock);
        bool ended = pod_state_is_final(p->state) && p->ended_rt;
        bool ending = !ended && (p->terminating || pod_state_is_final(p->state));
        unsigned n_snapshots = p->n_snapshots;
        unsigned live = pod_count_live_locked(n);
        pthread_mutex_unlock(&n->lock);
        if (ending) {
                *reterr = xasprintf("pod %s is ending; fork from its snapshots once it has ended", p->id);
                return -ESTALE;
        }
        if (ended && n_snapshots == 0) {
                *reterr = xasprintf(
                        "pod %s has ended and has no snapshot to fork from; a fork of an ended pod needs "
                        "a snapshot taken while it ran ('nucleus snapshot %s' before it ends)",
                        p->id,
                        p->id);
                return -ESTALE;
        }
        if (!ended && why) {
                *reterr = TAKE_PTR(why);
                return r;
        }
        if (live + count > n->config.max_pods) {
                *reterr = xasprintf(
                        "pod limit: %u live pods and %u children exceed max_pods (%u)",
                        live,
                        count,
                        n->config.max_pods);
                return -EBUSY;
        }
        if (!snapshot_id && ended) {
                if (!snapshot_newest(n, p->id, newest)) {
                        *reterr = xasprintf("pod %s has ended and has no snapshot to fork from", p->id);
                        return -ESTALE;
                }
                snapshot_id = newest;
        } else if (!snapshot_id) {
                r = pod_snapshot(p, actor, &taken, reterr);
                if (r < 0)
                        return r;
                snapshot_id = json_string_value(json_object_get(taken, "id"));
        }
        if (!uuid_syntax_ok(snapshot_id)) {
                *reterr = xstrdup("snapshot: expected a snapshot id (a lower-case UUID)");
                return -EINVAL;
        }
        /* Held for the children before it is read: a removal either went first (then the load
         * fails) or waits until every child has restored. */
        snprintf(hold.id, sizeof hold.id, "%s", snapshot_id);
        pthread_mutex_lock(&n->lock);
        for (; hold.k < count; hold.k++)
                snapshot_busy_take_locked(n, hold.id);
        pthread_mutex_unlock(&n->lock);
        r = snapshot_load(p, snapshot_id, &meta, &dir, reterr);
        if (r < 0)
                return r;
        image_dir = nodespec_image_dir(p->spec, n->config.images_dir);
        if (!image_dir || image_digest(image_dir, digest) < 0 ||
            !streq_ptr(json_string_value(json_object_get(meta, "image_manifest_sha256")), digest)) {
                *reterr = xasprintf(
                        "the image of snapshot %s (%s) was rebuilt since; a snapshot restores only into the "
                        "image "
                        "it was taken from",
                        snapshot_id,
                        image_dir ?: "-");
                return -ESTALE;
        }

        /* The budget: count + 1 equal shares of what the holder has, one per child; the holder
         * keeps the rest (at least one share). A running parent is charged for what it hands
         * out; an ended one's escrow shrinks by it. So the family never spends more than the
         * parent had left (docs/snapshot.md "Budget"). */
        r = ended ? fork_take_from_escrow(p, count, &share, &keeps, reterr)
                  : fork_take_from_parent(p, count, &share, &keeps, reterr);
        if (r < 0)
                return r;
        uint64_t share_usd = share.usd_micros, share_in = share.input_tokens, share_out = share.output_tokens;

        children = json_array();
        unsigned started = 0;
        _cleanup_free_ char *first_err = NULL;
        for (unsigned i = 0; i < count; i++) {
                NodeSpec *spec = nodespec_copy(p->spec);
                /* Not the parent's name (names must find one pod) but one derived from it,
                 * PARENT-fN, numbered over the parent's life; nor its lease (held by the
                 * parent's client, which does not know the child). */
                if (spec->name) {
                        unsigned k = __atomic_add_fetch(&p->n_children, 1, __ATOMIC_SEQ_CST);
                        char suffix[16];
                        int ns = snprintf(suffix, sizeof suffix, "-f%u", k);
                        size_t keep = strnlen(spec->name, 63 - (size_t) ns);
                        while (keep > 0 && spec->name[keep - 1] == '-')
                                keep--;
                        char *name = xasprintf("%.*s%s", (int) keep, spec->name, suffix);
                        free(spec->name);
                        spec->name = name;
                }
                spec->has_lease = false;
                spec->policy->max_usd_micros = share_usd;
                spec->policy->max_input_tokens = share_in;
                spec->policy->max_output_tokens = share_out;
                PodFork *f = xnew0(PodFork, 1);
                memcpy(f->parent_id, p->id, sizeof f->parent_id);
                snprintf(f->snapshot_id, sizeof f->snapshot_id, "%s", snapshot_id);
                f->snapshot_dir = xstrdup(dir);
                f->share_usd_micros = share_usd;
                f->share_input_tokens = share_in;
                f->share_output_tokens = share_out;
                f->busy_node = n; /* the hold passes to the child (released when it restored) */
                hold.k--;
                Pod *child = NULL;
                _cleanup_free_ char *err = NULL;
                r = pod_create_full(n, spec, VMM_DRIVER_QEMU, actor, f, &child, &err);
                if (r < 0) {
                        if (!first_err)
                                first_err = TAKE_PTR(err);
                        continue;
                }
                json_array_append_new(children, pod_to_json(child));
                pod_unref(child);
                started++;
        }
        {
                json_t *ids = json_array();
                size_t i;
                json_t *c;
                json_array_foreach(children, i, c)
                        json_array_append(ids, json_object_get(c, "id"));
                _cleanup_json_ json_t *detail = json_pack(
                        "{s:s,s:o,s:I,s:I,s:I}",
                        "snapshot",
                        snapshot_id,
                        "children",
                        ids,
                        "share_usd_micros",
                        (json_int_t) share_usd,
                        "share_input_tokens",
                        (json_int_t) share_in,
                        "share_output_tokens",
                        (json_int_t) share_out);
                /* An ended parent's log is sealed: the children's own first records name it. */
                AuditEvent ev = { .actor = actor ?: "", .op = "pod_fork", .decision = "allow", .detail = detail };
                if (!ended)
                        pod_audit(p, &ev);
        }
        if (started == 0) {
                *reterr = xasprintf("no child started: %s", first_err ?: "?");
                return -EIO;
        }
        pod_log(p,
                LOG_INFO,
                "forked %u pod(s) from snapshot %s%s",
                started,
                snapshot_id,
                ended ? " (of the ended pod, out of its escrow)" : "");
        *ret = json_pack(
                "{s:s,s:s,s:O,s:{s:I,s:I,s:I},s:{s:I,s:I,s:I},s:b,s:s?}",
                "parent",
                p->id,
                "snapshot",
                snapshot_id,
                "children",
                children,
                "share",
                "usd_micros",
                (json_int_t) share_usd,
                "input_tokens",
                (json_int_t) share_in,
                "output_tokens",
                (json_int_t) share_out,
                ended ? "escrow_keeps" : "parent_keeps",
                "usd_micros",
                (json_int_t) keeps.usd_micros,
                "input_tokens",
                (json_int_t) keeps.input_tokens,
                "output_tokens",
                (json_int_t) keeps.output_tokens,
                "parent_ended",
                ended,
                "error",
                first_err);
        return 0;
}

/* ---- a forked pod's boot ---------------------------------------------------------------- */

/* The handshake with the restored proxy: the child's identity and policy, a fresh window,
 * the node's clock and fresh entropy. The proxy must answer with the digest of exactly the
 * policy sent, a reseeded CRNG and a set clock. */
static int pod_reconfigure(Pod *p, char **reterr) {
        _cleanup_(configure_freep) Configure *c = xnew0(Configure, 1);
        ChannelReply reply = {};
        char want[65];
        int r;

        c->pod_id = xstrdup(p->id);
        c->policy = policy_copy(p->spec->policy);
        usec_t now = now_usec(CLOCK_MONOTONIC);
        c->time_remaining = p->deadline_mono > now + USEC_PER_MSEC ? p->deadline_mono - now : USEC_PER_MSEC;
        c->wall_clock = now_usec(CLOCK_REALTIME);
        if (getrandom(c->entropy_seed, sizeof c->entropy_seed, 0) != (ssize_t) sizeof c->entropy_seed) {
                *reterr = xstrdup("reconfigure: no entropy for the child");
                return -EIO;
        }
        c->have_seed = true;
        pod_configure_net(p, c); /* the child's own address in place of the parent's */
        if (policy_sha256(c->policy, want) < 0) {
                *reterr = xstrdup("reconfigure: cannot compute the policy's digest");
                return -EIO;
        }
        _cleanup_json_ json_t *args = reconfigure_to_json(c);
        r = channel_call(p->channel, "reconfigure", args, 0, NULL, 0, 60 * USEC_PER_SEC, 0, &reply);
        json_t *seed = json_object_get(args, "entropy_seed");
        if (json_is_string(seed))
                explicit_bzero_safe((char *) json_string_value(seed), json_string_length(seed));
        if (r < 0) {
                *reterr = xasprintf("reconfigure: no answer from the restored proxy: %s", strerror(-r));
                return r;
        }
        json_t *resp = reply.response;
        const char *err = json_string_value(json_object_get(resp, "error"));
        const char *sha = json_string_value(json_object_get(resp, "policy_sha256"));
        const char *cfg_sha = hex64_or_null(json_object_get(resp, "configure_sha256"));
        if (err || !sha) {
                *reterr = xasprintf(
                        "reconfigure refused by the restored proxy: %s (%s)",
                        err ?: "no policy_sha256 in the answer",
                        json_string_value(json_object_get(resp, "kind")) ?: "?");
                r = -EPROTO;
        } else if (!streq(sha, want)) {
                *reterr = xasprintf(
                        "reconfigure: the proxy reports policy %s, not the policy the node sent (%s)",
                        sha,
                        want);
                r = -EPROTO;
        } else if (!streq_ptr(json_string_value(json_object_get(resp, "pod_id")), p->id)) {
                *reterr = xstrdup("reconfigure: the proxy did not take the child's id");
                r = -EPROTO;
        } else if (!json_is_true(json_object_get(resp, "crng_reseeded")) || !json_is_true(json_object_get(resp, "clock_set"))) {
                *reterr = xasprintf(
                        "reconfigure: the guest could not %s; a child must not keep its parent's %s",
                        json_is_true(json_object_get(resp, "crng_reseeded")) ? "set its clock"
                                                                             : "reseed its CRNG",
                        json_is_true(json_object_get(resp, "crng_reseeded")) ? "clock" : "random state");
                r = -EPROTO;
        }
        if (r < 0) {
                channel_reply_done(&reply);
                return r;
        }
        pthread_mutex_lock(&p->node->lock);
        p->policy_sha256 = xstrdup(sha);
        p->configure_sha256 = cfg_sha ? xstrdup(cfg_sha) : NULL;
        pthread_mutex_unlock(&p->node->lock);
        {
                _cleanup_json_ json_t *detail = json_pack(
                        "{s:s,s:b,s:b}", "pod_id", p->id, "crng_reseeded", true, "clock_set", true);
                AuditEvent ev = { .actor = "node",
                                  .op = "reconfigure",
                                  .decision = "allow",
                                  .args_sha256 = cfg_sha,
                                  .result_sha256 = sha,
                                  .detail = detail };
                pod_audit(p, &ev);
        }
        channel_reply_done(&reply);
        return 0;
}

void *pod_fork_boot_thread(void *userdata) {
        Pod *p = userdata;
        Node *n = p->node;
        _cleanup_free_ char *err = NULL, *image_dir = NULL, *scratch = NULL, *state = NULL;
        usec_t t0 = now_usec(CLOCK_MONOTONIC);
        Vmm *vm = NULL;
        int r, fd = -EBADF;

        pod_set_state(p, POD_BOOTING);
        pod_audit_lifecycle(p, "booting", "restoring from a snapshot", NULL);
        pod_log(p,
                LOG_INFO,
                "restoring from snapshot %s of pod %s (%u vCPU, %" PRIu64 " MiB, deadline in %" PRIu64 " s)",
                p->fork->snapshot_id,
                p->fork->parent_id,
                p->vcpus,
                p->memory_mib,
                (uint64_t) (p->timeout / USEC_PER_SEC));
        image_dir = nodespec_image_dir(p->spec, n->config.images_dir);
        scratch = xasprintf("%s/" SNAPSHOT_SCRATCH, p->fork->snapshot_dir);
        state = xasprintf("%s/" SNAPSHOT_STATE, p->fork->snapshot_dir);
        {
                /* The parent's NIC is in the saved device state: the child needs one too, on a tap
                 * in a namespace of its own with its own address block and the same rules. */
                _cleanup_(net_policy_freep) NetPolicy *netpol = NULL;
                r = pod_net_policy(p, &netpol, &err);
                if (r < 0)
                        goto fail;
                if (netpol) {
                        r = pod_net_build(p, netpol, &err);
                        if (r < 0)
                                goto fail;
                        if (r > 0)
                                goto out;
                }
        }
        VmmLaunch l;
        pod_launch_prepare(n, p, image_dir, &l);
        pod_launch_net(p, &l);
        l.restore_scratch = scratch;
        r = pod_vmm_start(n, p, VMM_DRIVER_QEMU, &l, &vm, &err);
        if (r < 0)
                goto fail;
        if (r > 0)
                goto out;
        /* The channel first: the saved virtio-serial port says its host end is connected, and
         * so it is when the state loads, so the restored proxy keeps its connection. */
        r = vmm_connect_channel(vm, (usec_t) n->config.boot_timeout_sec * USEC_PER_SEC, &fd, &err);
        if (r < 0)
                goto fail;
        {
                _cleanup_close_ int sfd = open(state, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (sfd < 0) {
                        r = -errno;
                        err = xasprintf("cannot open the snapshot's state %s: %s", state, strerror(-r));
                        safe_close(fd);
                        goto fail;
                }
                r = vmm_load_state(vm, sfd, (usec_t) n->config.boot_timeout_sec * USEC_PER_SEC, &err);
                if (r < 0) {
                        safe_close(fd);
                        goto fail;
                }
        }
        metrics_observe_boot(now_usec(CLOCK_MONOTONIC) - t0);

        Channel *ch = NULL;
        r = pod_channel_publish(n, p, fd, &ch, &err);
        if (r < 0)
                goto fail;
        if (r > 0) {
                channel_shutdown(ch);
                goto out;
        }

        pod_set_state(p, POD_CONFIGURING);
        r = pod_reconfigure(p, &err);
        if (r < 0)
                goto fail;
        pod_set_state(p, POD_RUNNING);
        r = channel_liveness_start(ch, (usec_t) n->config.liveness_sec * USEC_PER_SEC, pod_on_dead);
        if (r < 0)
                log_warning_errno(r, "pod %s: cannot watch the guest's liveness: %m", p->id);
        metrics_observe_ready(now_usec(CLOCK_MONOTONIC) - p->created_mono);
        pod_audit_lifecycle(p, "running", vmm_accel(vm), NULL);
        pod_log(p,
                LOG_INFO,
                "running (restored from snapshot %s, accel %s, ready in %.2fs)",
                p->fork->snapshot_id,
                vmm_accel(vm),
                (double) (now_usec(CLOCK_MONOTONIC) - p->created_mono) / 1e6);
        goto out;

fail:
        if (!pod_stopping(p)) {
                metrics_pod_create_failed();
                pod_log(p, LOG_ERR, "failed to restore: %s", err ?: strerror(r < 0 ? -r : EIO));
                pod_terminate(p, POD_FAILED, err ?: "failed to restore", "internal");
        }
out:
        pod_fork_release(p->fork); /* the snapshot may go now: the child has its own copy */
        pod_unref(p);
        return NULL;
}

/* ---- the warm pool's snapshot ----------------------------------------------------------- */

#define POOL_SNAPSHOTS "pool-snapshots"

/* <state_dir>/pool-snapshots/<image>-<vcpus>-<memory MiB>-<scratch MiB>: one per image and
 * shape, or NULL for an image name that cannot be a file name. */
static char *pool_snapshot_path(Node *n, const char *image, const PoolShape *s) {
        if (isempty(image) || image[0] == '.' || strchr(image, '/'))
                return NULL;
        return xasprintf(
                "%s/" POOL_SNAPSHOTS "/%s-%u-%" PRIu64 "-%" PRIu64,
                n->config.state_dir,
                image,
                s->vcpus,
                s->memory_mib,
                s->scratch_mib);
}

static bool pool_snapshot_wanted(Node *n, const PoolShape *s, bool nic) {
        /* A NIC's device state is bound to one tap and MAC: pooled pods with one always boot. */
        return n->config.pool_restore && s->driver == VMM_DRIVER_QEMU && !s->network && !nic;
}

char *pod_pool_snapshot_find(
        Node *n, const char *image_dir, const char *image, const PoolShape *s, bool nic, char **ret_scratch) {
        if (!pool_snapshot_wanted(n, s, nic))
                return NULL;
        _cleanup_free_ char *dir = pool_snapshot_path(n, image, s);
        if (!dir)
                return NULL;
        _cleanup_free_ char *path = xasprintf("%s/" SNAPSHOT_META, dir), *data = NULL;
        _cleanup_json_ json_t *meta = NULL;
        json_error_t e;
        size_t len = 0;
        char digest[65];
        if (read_full_file_at(AT_FDCWD, path, 1 << 20, &data, &len) < 0)
                return NULL;
        if (!(meta = json_loadb(data, len, 0, &e)) || image_digest(image_dir, digest) < 0 ||
            !streq_ptr(json_string_value(json_object_get(meta, "image_manifest_sha256")), digest)) {
                log_info("Pool: the snapshot of image %s no longer matches the image; booting again", image);
                (void) node_rm_rf(dir);
                return NULL;
        }
        *ret_scratch = xasprintf("%s/" SNAPSHOT_SCRATCH, dir);
        return TAKE_PTR(dir);
}

void pod_pool_snapshot_discard(Node *n, const char *dir) {
        if (dir)
                (void) node_rm_rf(dir);
}

int pod_pool_snapshot_load(Vmm *vm, const char *dir, usec_t timeout, char **reterr) {
        _cleanup_free_ char *state = xasprintf("%s/" SNAPSHOT_STATE, dir);
        _cleanup_close_ int fd = open(state, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                int r = -errno;
                *reterr = xasprintf("cannot open the pool's snapshot %s: %s", state, strerror(-r));
                return r;
        }
        return vmm_load_state(vm, fd, timeout, reterr);
}

void pod_pool_snapshot_take(Node *n, Pod *p, const char *image_dir, const char *image, const PoolShape *s) {
        _cleanup_free_ char *dir = NULL, *root = xasprintf("%s/" POOL_SNAPSHOTS, n->config.state_dir);
        _cleanup_free_ char *tmp = NULL, *err = NULL, *state = NULL, *scratch = NULL, *meta_path = NULL;
        char digest[65];
        int r;

        if (!pool_snapshot_wanted(n, s, p->net != NULL) || !p->vm || !p->channel ||
            !(dir = pool_snapshot_path(n, image, s)))
                return;
        meta_path = xasprintf("%s/" SNAPSHOT_META, dir);
        if (access(meta_path, F_OK) == 0 || image_digest(image_dir, digest) < 0)
                return;
        tmp = xasprintf("%s/.taking-%s", root, p->id);
        if ((mkdir(root, 0700) < 0 && errno != EEXIST) || mkdir(tmp, 0700) < 0) {
                log_warning_errno(-errno, "Pool: cannot create %s: %m", tmp);
                return;
        }
        /* Nothing may be in flight (a liveness ping), and nothing may start while paused. */
        r = channel_hold(p->channel);
        if (r < 0) {
                (void) node_rm_rf(tmp);
                return; /* the next cold refill tries again */
        }
        usec_t t0 = now_usec(CLOCK_MONOTONIC);
        state = xasprintf("%s/" SNAPSHOT_STATE, tmp);
        scratch = xasprintf("%s/" SNAPSHOT_SCRATCH, tmp);
        _cleanup_close_ int fd = open(state, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                r = -errno;
        else {
                CopyCtx ctx = { .vm = p->vm, .dst = scratch };
                r = vmm_save_state(p->vm, fd, snapshot_copy_scratch, &ctx, &err);
        }
        channel_unhold(p->channel);
        usec_t took = now_usec(CLOCK_MONOTONIC) - t0;
        struct stat st = {};
        if (r >= 0)
                (void) fstat(fd, &st);
        _cleanup_json_ json_t *meta = json_pack(
                "{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I}",
                "image",
                image,
                "image_manifest_sha256",
                digest,
                "from_pod",
                p->id,
                "vcpus",
                (json_int_t) s->vcpus,
                "memory_mib",
                (json_int_t) s->memory_mib,
                "scratch_mib",
                (json_int_t) s->scratch_mib,
                "state_bytes",
                (json_int_t) st.st_size,
                "took_ms",
                (json_int_t) (took / USEC_PER_MSEC));
        _cleanup_free_ char *text = meta ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        _cleanup_close_ int dfd = -EBADF;
        if (r >= 0) {
                dfd = open(tmp, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
                r = dfd < 0 || !text ? -EIO
                                     : write_file_atomic_at(dfd, SNAPSHOT_META, text, strlen(text), 0600);
        }
        if (r >= 0 && rename(tmp, dir) < 0)
                r = -errno;
        if (r < 0) {
                log_warning(
                        "Pool: snapshot of pod %s failed (refills keep booting): %s",
                        p->id,
                        err ?: strerror(-r));
                (void) node_rm_rf(tmp);
                return;
        }
        log_info(
                "Pool: snapshot of pod %s (image %s, %" PRIu64 " MiB) taken in %" PRIu64 " ms",
                p->id,
                image,
                (uint64_t) (st.st_size >> 20),
                (uint64_t) (took / USEC_PER_MSEC));
}

void pod_pool_snapshots_remove(Node *n) {
        _cleanup_free_ char *root = xasprintf("%s/" POOL_SNAPSHOTS, n->config.state_dir);
        if (access(root, F_OK) == 0)
                (void) node_rm_rf(root);
}
