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
 * Limits: qemu driver only; pods with a network are refused (the child would need a NIC on a
 * new tap the saved device state does not know); the parent must be running to fork (it holds
 * the budget); snapshots end with their parent.
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
};

PodFork *pod_fork_free(PodFork *f) {
        if (!f)
                return NULL;
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
        if (p->spec->has_network) {
                why = xasprintf(
                        "pod %s has a network; snapshot and fork of pods with a network are not supported "
                        "(a restored NIC would need the parent's tap and addresses)",
                        p->id);
                *ret_errno = -EOPNOTSUPP;
        } else if (p->driver != VMM_DRIVER_QEMU) {
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

static uint64_t json_u64(json_t *v) {
        return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t) json_integer_value(v) : 0;
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
        uint64_t jobs = json_u64(json_object_get(status, "jobs"));
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
        meta = json_pack(
                "{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I},s:I,s:I,s:I}",
                "id",
                id,
                "parent",
                p->id,
                "created",
                format_timestamp_rfc3339(created, now_usec(CLOCK_REALTIME)),
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
                (json_int_t) json_u64(json_object_get(budget, "max_usd_micros")),
                "used_usd_micros",
                (json_int_t) json_u64(json_object_get(budget, "used_usd_micros")),
                "left_usd_micros",
                (json_int_t) json_u64(json_object_get(budget, "left_usd_micros")),
                "input_tokens",
                (json_int_t) json_u64(json_object_get(budget, "input_tokens")),
                "output_tokens",
                (json_int_t) json_u64(json_object_get(budget, "output_tokens")),
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
        /* A pod that ended meanwhile has removed its snapshots already: this one goes too. */
        pthread_mutex_lock(&n->lock);
        bool ended = p->terminating || pod_state_is_final(p->state);
        pthread_mutex_unlock(&n->lock);
        if (ended) {
                (void) node_rm_rf(dir);
                *reterr = xasprintf("pod %s ended while it was being snapshotted", p->id);
                return -ESTALE;
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

json_t *pod_snapshots_list(Pod *p) {
        _cleanup_free_ char *root = snapshots_root(p->node);
        json_t *list = json_array();
        DIR *d = opendir(root);
        if (!d)
                return list;
        for (struct dirent *de; (de = readdir(d));) {
                _cleanup_json_ json_t *meta = NULL;
                _cleanup_free_ char *dir = NULL, *err = NULL;
                if (uuid_syntax_ok(de->d_name) && snapshot_load(p, de->d_name, &meta, &dir, &err) >= 0)
                        json_array_append(list, meta);
        }
        closedir(d);
        return list;
}

void pod_snapshots_remove(Node *n, const char *pod_id) {
        _cleanup_free_ char *root = snapshots_root(n);
        DIR *d = opendir(root);
        if (!d)
                return;
        for (struct dirent *de; (de = readdir(d));) {
                if (!uuid_syntax_ok(de->d_name))
                        continue;
                _cleanup_free_ char *path = xasprintf("%s/%s/" SNAPSHOT_META, root, de->d_name);
                _cleanup_free_ char *data = NULL;
                _cleanup_json_ json_t *j = NULL;
                json_error_t e;
                size_t len = 0;
                if (read_full_file_at(AT_FDCWD, path, 1 << 20, &data, &len) < 0 ||
                    !(j = json_loadb(data, len, 0, &e)) ||
                    !streq_ptr(json_string_value(json_object_get(j, "parent")), pod_id))
                        continue;
                _cleanup_free_ char *dir = xasprintf("%s/%s", root, de->d_name);
                (void) node_rm_rf(dir);
        }
        closedir(d);
}

void pod_snapshots_cleanup_stale(Node *n) {
        _cleanup_free_ char *root = snapshots_root(n);
        if (access(root, F_OK) < 0)
                return;
        log_info("Removing the snapshots of an earlier run (%s): their parent pods are gone", root);
        (void) node_rm_rf(root);
}

/* ---- fork ------------------------------------------------------------------------------- */

int pod_fork(Pod *p, const char *snapshot_id, unsigned count, const char *actor, json_t **ret, char **reterr) {
        Node *n = p->node;
        _cleanup_json_ json_t *meta = NULL, *status = NULL, *children = NULL, *taken = NULL;
        _cleanup_free_ char *dir = NULL, *image_dir = NULL;
        char digest[65];
        int r = 0;

        if (count < 1 || count > FORK_MAX) {
                *reterr = xasprintf("count: expected 1..%u", FORK_MAX);
                return -EINVAL;
        }
        *reterr = pod_snapshot_refusal(p, &r);
        if (*reterr)
                return r;
        pthread_mutex_lock(&n->lock);
        unsigned live = pod_count_live_locked(n);
        pthread_mutex_unlock(&n->lock);
        if (live + count > n->config.max_pods) {
                *reterr = xasprintf(
                        "pod limit: %u live pods and %u children exceed max_pods (%u)",
                        live,
                        count,
                        n->config.max_pods);
                return -EBUSY;
        }
        if (!snapshot_id) {
                r = pod_snapshot(p, actor, &taken, reterr);
                if (r < 0)
                        return r;
                snapshot_id = json_string_value(json_object_get(taken, "id"));
        }
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

        /* The budget: what the parent has left now, split into count + 1 equal shares; each
         * child gets one and the parent is charged for the ones it hands out (it keeps the
         * rest, at least one share), so the family can never spend more than it had left. Model-
         * call reservations the node holds for the parent (api-budget.c) are not the parent's to
         * give: under the same lock, they are taken off first. */
        pthread_mutex_lock(&p->budget_lock);
        r = pod_status(p, &status, reterr);
        if (r < 0) {
                pthread_mutex_unlock(&p->budget_lock);
                return r;
        }
        json_t *b = json_object_get(status, "budget");
        const Policy *pol = p->spec->policy;
        uint64_t left_usd = json_u64(json_object_get(b, "left_usd_micros"));
        left_usd = left_usd > p->resv_micros ? left_usd - p->resv_micros : 0;
        uint64_t used_in = json_u64(json_object_get(b, "input_tokens"));
        uint64_t used_out = json_u64(json_object_get(b, "output_tokens"));
        uint64_t left_in = pol->max_input_tokens > used_in ? pol->max_input_tokens - used_in : 0;
        uint64_t left_out = pol->max_output_tokens > used_out ? pol->max_output_tokens - used_out : 0;
        uint64_t share_usd = left_usd / (count + 1), share_in = left_in / (count + 1),
                 share_out = left_out / (count + 1);
        if (share_usd == 0) {
                pthread_mutex_unlock(&p->budget_lock);
                *reterr = xasprintf(
                        "pod %s has %llu micro-USD of budget left: nothing to share among %u children",
                        p->id,
                        (unsigned long long) left_usd,
                        count);
                return -EDQUOT;
        }
        {
                _cleanup_json_ json_t *args = json_pack(
                        "{s:I,s:I,s:I}",
                        "usd_micros",
                        (json_int_t) (share_usd * count),
                        "input_tokens",
                        (json_int_t) (share_in * count),
                        "output_tokens",
                        (json_int_t) (share_out * count));
                ChannelReply rep = {};
                r = channel_call(p->channel, "charge", args, 0, NULL, 0, 10 * USEC_PER_SEC, 0, &rep);
                if (r >= 0 && json_object_get(rep.response, "error"))
                        r = -EDQUOT;
                channel_reply_done(&rep);
                pthread_mutex_unlock(&p->budget_lock);
                if (r < 0) {
                        *reterr = xasprintf("cannot take the children's budget from pod %s", p->id);
                        return r;
                }
        }

        children = json_array();
        unsigned started = 0;
        _cleanup_free_ char *first_err = NULL;
        for (unsigned i = 0; i < count; i++) {
                NodeSpec *spec = nodespec_copy(p->spec);
                /* Not the parent's name (names must find one pod) nor its lease (held by the
                 * parent's client, which does not know the child). */
                spec->name = mfree(spec->name);
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
                AuditEvent ev = { .actor = actor ?: "", .op = "pod_fork", .decision = "allow", .detail = detail };
                pod_audit(p, &ev);
        }
        if (started == 0) {
                *reterr = xasprintf("no child started: %s", first_err ?: "?");
                return -EIO;
        }
        pod_log(p, LOG_INFO, "forked %u pod(s) from snapshot %s", started, snapshot_id);
        *ret = json_pack(
                "{s:s,s:s,s:O,s:{s:I,s:I,s:I},s:{s:I,s:I,s:I},s:s?}",
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
                "parent_keeps",
                "usd_micros",
                (json_int_t) (left_usd - share_usd * count),
                "input_tokens",
                (json_int_t) (left_in - share_in * count),
                "output_tokens",
                (json_int_t) (left_out - share_out * count),
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
        VmmLaunch l;
        pod_launch_prepare(n, p, image_dir, &l);
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
        pod_unref(p);
        return NULL;
}
