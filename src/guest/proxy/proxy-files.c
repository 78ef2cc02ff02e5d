/* SPDX-License-Identifier: Apache-2.0 */
/*
 * File operations: read, write, edit, list, glob, grep. Every path is untrusted; it is
 * resolved by the kernel beneath the workspace root fd (proxy-path.c), the policy judges both
 * the requested and the resolved workspace-relative path, and file types and link counts are
 * checked on the opened fd, never on a name.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <dirent.h>
#include <linux/openat2.h>
#include <errno.h>
#include <fcntl.h>
#include <pcre2.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "glob.h"
#include "proxy-path.h"
#include "proxy.h"
#include "string-util.h"

#define ANSWER_BUDGET (PROTO_MAX_PAYLOAD - 64 * 1024) /* bytes of JSON we allow in an answer */

static void fail_errno(Request *req, int r, const char *what, const char *rel) {
        _cleanup_free_ char *vis = string_make_visible(rel);
        ErrorKind k = proxy_errno_kind(r);
        if (k == ERROR_KIND_SANDBOX_ESCAPE)
                request_fail(
                        req,
                        k,
                        "sandbox escape: path '%s' resolves outside the workspace (or through a link that "
                        "is refused)",
                        vis);
        else if (k == ERROR_KIND_NOT_FOUND)
                request_fail(req, k, "%s: '%s' does not exist", what, vis);
        else
                request_fail(req, k, "%s: '%s': %s", what, vis, strerror(-r));
}

/* Normalize the "path" argument. Fails the request and returns <0 on error. */
static int get_path(Request *req, const char *key, bool required, const char *def, char **ret_rel) {
        const char *path;
        ErrorKind kind;
        _cleanup_free_ char *msg = NULL;
        if (args_get_string(req, key, required, &path) < 0)
                return -EINVAL;
        if (!path)
                path = def;
        if (proxy_path_normalize(req->proxy, path, ret_rel, &kind, &msg) < 0) {
                request_fail(req, kind, "%s", msg);
                return -EINVAL;
        }
        return 0;
}

/* Execution side: a ".git" file or directory anywhere is a gitdir pointer or a
 * repository whose config, hooks and commondir git obeys (core.fsmonitor, hooks, filters run
 * programs). The file ops never create or change one, under every profile and regardless of
 * approvals; the repository's own .git is the host's business (import/export). Fails the
 * request (path_denied) and returns <0 when the path has such a component. */
static int refuse_git_write(Request *req, const char *rel) {
        if (!rel || !proxy_path_has_git_component(rel))
                return 0;
        _cleanup_free_ char *vis = string_make_visible(rel);
        request_fail(
                req,
                ERROR_KIND_PATH_DENIED,
                "%s: '%s' is inside or names a .git repository directory/pointer; the file ops never write "
                "there (git would run programs named in it)",
                req->op,
                vis);
        return -EPERM;
}

/* Judge requested and resolved paths; then run the gate. Returns 0 when allowed. */
static int judge(Request *req, const char *requested, const char *resolved, PathAccess access, uint64_t cost) {
        Policy *pol = req->proxy->cfg.policy;
        PolicyDecision d1 = {}, d2 = {};
        if (request_check_deadline(req) < 0)
                return -ETIME;
        if ((access == PATH_ACCESS_WRITE || access == PATH_ACCESS_EDIT) &&
            (refuse_git_write(req, requested) < 0 || refuse_git_write(req, resolved) < 0))
                return -EPERM;
        if (policy_check_path(pol, requested, access, &d1) < 0) {
                request_fail(req, ERROR_KIND_INTERNAL, "policy check failed");
                return -EINVAL;
        }
        if (d1.verdict != POLICY_DENY && resolved && !streq(resolved, requested)) {
                if (policy_check_path(pol, resolved, access, &d2) < 0) {
                        policy_decision_done(&d1);
                        request_fail(req, ERROR_KIND_INTERNAL, "policy check failed");
                        return -EINVAL;
                }
                if (d2.verdict == POLICY_DENY) {
                        policy_decision_done(&d1);
                        return request_gate(req, &d2, cost);
                }
                policy_decision_done(&d2);
        }
        return request_gate(req, &d1, cost);
}

/* Open an existing path beneath the root (following in-root symlinks), learn its real
 * relative path, judge it. On success *ret_fd and *ret_rel (resolved) are set. */
static int open_judged(Request *req, const char *rel, int flags, PathAccess access, int *ret_fd, char **ret_rel) {
        Proxy *p = req->proxy;
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *resolved = NULL;
        int r;

        if (request_check_deadline(req) < 0)
                return -ETIME;
        fd = proxy_openat2(p, -1, rel, flags | O_NONBLOCK | O_NOCTTY, 0, 0);
        if (fd < 0) {
                /* A refusal of the path itself beats "not found": judge the name first. */
                PolicyDecision d = {};
                if (fd != -EXDEV && fd != -ELOOP && policy_check_path(p->cfg.policy, rel, access, &d) >= 0 &&
                    d.verdict == POLICY_DENY)
                        return request_gate(req, &d, 0) < 0 ? -EPERM : -EPERM;
                policy_decision_done(&d);
                fail_errno(req, fd, req->op, rel);
                return fd;
        }
        r = proxy_fd_relpath(p, fd, rel, &resolved);
        if (r < 0) {
                fail_errno(req, r, req->op, rel);
                return r;
        }
        r = judge(req, rel, resolved, access, p->cfg.costs.base_usd_micros);
        if (r < 0)
                return r;
        *ret_fd = TAKE_FD(fd);
        *ret_rel = TAKE_PTR(resolved);
        return 0;
}

static int check_regular(Request *req, int fd, const char *rel, struct stat *ret_st) {
        struct stat st;
        _cleanup_free_ char *vis = string_make_visible(rel);
        if (fstat(fd, &st) < 0) {
                request_fail(req, ERROR_KIND_IO_ERROR, "%s: stat '%s': %m", req->op, vis);
                return -errno;
        }
        if (S_ISDIR(st.st_mode)) {
                request_fail(req, ERROR_KIND_INVALID_REQUEST, "%s: '%s' is a directory", req->op, vis);
                return -EISDIR;
        }
        if (!S_ISREG(st.st_mode)) {
                request_fail(req, ERROR_KIND_PATH_DENIED, "%s: '%s' is not a regular file", req->op, vis);
                return -EPERM;
        }
        if (st.st_nlink > 1) {
                /* A hard link may share its inode with a file outside the workspace. */
                request_fail(
                        req,
                        ERROR_KIND_PATH_DENIED,
                        "%s: '%s' has %ju hard links; hard-linked files are refused",
                        req->op,
                        vis,
                        (uintmax_t) st.st_nlink);
                return -EPERM;
        }
        *ret_st = st;
        return 0;
}

void op_read(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { "path", "offset", "length", NULL };
        _cleanup_free_ char *rel = NULL, *resolved = NULL;
        _cleanup_close_ int fd = -EBADF;
        uint64_t offset, length;
        struct stat st;

        if (args_check_keys(req, keys) < 0 || get_path(req, "path", true, NULL, &rel) < 0 ||
            args_get_u64(req, "offset", 0, INT64_MAX, &offset) < 0 ||
            args_get_u64(req, "length", p->cfg.limits.max_read_bytes, UINT64_MAX, &length) < 0)
                return;
        if (length > p->cfg.limits.max_read_bytes) {
                request_fail(
                        req,
                        ERROR_KIND_TOO_LARGE,
                        "read: length %llu exceeds the limit of %llu bytes per read",
                        (unsigned long long) length,
                        (unsigned long long) p->cfg.limits.max_read_bytes);
                return;
        }
        if (open_judged(req, rel, O_RDONLY, PATH_ACCESS_READ, &fd, &resolved) < 0)
                return;
        if (check_regular(req, fd, resolved, &st) < 0)
                return;
        _cleanup_free_ char *buf = xmalloc(length + 1);
        size_t got = 0;
        while (got < length) {
                ssize_t k = pread(fd, buf + got, length - got, (off_t) (offset + got));
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        request_fail(req, ERROR_KIND_IO_ERROR, "read: %m");
                        return;
                }
                if (k == 0)
                        break;
                got += (size_t) k;
        }
        request_settle(req, p->cfg.costs.base_usd_micros);
        json_t *j = json_pack(
                "{s:s, s:I, s:I, s:I, s:b}",
                "path",
                resolved,
                "size",
                (json_int_t) st.st_size,
                "offset",
                (json_int_t) offset,
                "length",
                (json_int_t) got,
                "eof",
                offset + got >= (uint64_t) st.st_size);
        json_set_bytes(j, "content", buf, got);
        request_finish(req, j);
}

/* Open (creating with create_dirs) the parent directory of rel; returns O_PATH dir fd. Links
 * beneath the workspace are followed (proxy-path.h says why). */
static int open_parent(Request *req, const char *parent, bool create_dirs) {
        Proxy *p = req->proxy;
        if (!create_dirs)
                return proxy_openat2(p, -1, parent, O_PATH | O_DIRECTORY, 0, 0);
        return proxy_mkdir_beneath(p, -1, parent, 0755, PROXY_MKDIR_FOLLOW_BENEATH | PROXY_MKDIR_AGENT_OWNED);
}

/* Where a write goes, decided (and judged) before its content is used. */
typedef struct WriteTarget {
        int dfd;      /* O_PATH of the parent directory, or -EBADF */
        char *leaf;   /* name in dfd */
        char *target; /* workspace-relative resolved path, for answers */
        char *parent; /* workspace-relative resolved path of dfd, as judged */
        bool exists;  /* the leaf existed (a regular file: PATH_ACCESS_EDIT was judged) */
        int fd;       /* the existing leaf opened for writing (held: its inode cannot be
                       * reused while content arrives), or -EBADF */
        mode_t mode;  /* for a new file */
} WriteTarget;

static void write_target_done(WriteTarget *t) {
        t->dfd = safe_close(t->dfd);
        t->fd = safe_close(t->fd);
        t->leaf = mfree(t->leaf);
        t->target = mfree(t->target);
        t->parent = mfree(t->parent);
}

/* Everything of a write that does not need its content: the path, the policy decision (with
 * the budget reservation), the parent directory (created with create_dirs). Returns 0 with *t
 * filled, or <0 when req has been failed. */
static int write_prepare(Request *req, const char *rel, bool create_dirs, mode_t mode, WriteTarget *t) {
        Proxy *p = req->proxy;
        _cleanup_free_ char *parent = NULL, *leaf = NULL, *parent_res = NULL;
        _cleanup_close_ int dfd = -EBADF;
        int r;

        if (proxy_path_split(rel, &parent, &leaf) < 0) {
                request_fail(req, ERROR_KIND_INVALID_REQUEST, "write: cannot write the workspace root");
                return -EINVAL;
        }
        if (request_check_deadline(req) < 0)
                return -ETIME;

        /* Judge the requested name before touching anything (mkdir -p is a side effect). */
        if (refuse_git_write(req, rel) < 0)
                return -EPERM;
        PolicyDecision pre = {};
        if (policy_check_path(p->cfg.policy, rel, PATH_ACCESS_WRITE, &pre) >= 0 &&
            pre.verdict == POLICY_DENY && !streq(pre.kind ?: "", "approval_required")) {
                PolicyDecision edit = {};
                /* Deny only if neither write nor edit would be allowed. */
                if (policy_check_path(p->cfg.policy, rel, PATH_ACCESS_EDIT, &edit) >= 0 &&
                    edit.verdict == POLICY_DENY) {
                        policy_decision_done(&edit);
                        (void) request_gate(req, &pre, 0);
                        return -EPERM;
                }
                policy_decision_done(&edit);
        }
        policy_decision_done(&pre);

        dfd = open_parent(req, parent, create_dirs);
        if (dfd < 0) {
                fail_errno(req, dfd, "write", parent);
                return dfd;
        }
        r = proxy_fd_relpath(p, dfd, parent, &parent_res);
        if (r < 0) {
                fail_errno(req, r, "write", parent);
                return r;
        }
        _cleanup_free_ char *target = streq(parent_res, ".") ? xstrdup(leaf)
                                                             : xasprintf("%s/%s", parent_res, leaf);

        struct stat st = {};
        bool exists = fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) >= 0;
        if (exists && S_ISLNK(st.st_mode)) {
                _cleanup_free_ char *vis = string_make_visible(target);
                request_fail(
                        req,
                        ERROR_KIND_PATH_DENIED,
                        "write: '%s' is a symbolic link; write to its target instead",
                        vis);
                return -ELOOP;
        }
        if (exists && S_ISDIR(st.st_mode)) {
                _cleanup_free_ char *vis = string_make_visible(target);
                request_fail(req, ERROR_KIND_INVALID_REQUEST, "write: '%s' is a directory", vis);
                return -EISDIR;
        }
        if (judge(req, rel, target, exists ? PATH_ACCESS_EDIT : PATH_ACCESS_WRITE, p->cfg.costs.base_usd_micros) <
            0)
                return -EPERM;
        _cleanup_close_ int fd = -EBADF;
        if (exists) {
                fd = openat(dfd, leaf, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
                if (fd < 0) {
                        r = -errno;
                        fail_errno(req, r, "write", target);
                        return r;
                }
                if (check_regular(req, fd, target, &st) < 0)
                        return -EPERM;
        }
        *t = (WriteTarget){
                .dfd = TAKE_FD(dfd),
                .fd = TAKE_FD(fd),
                .leaf = TAKE_PTR(leaf),
                .target = TAKE_PTR(target),
                .parent = TAKE_PTR(parent_res),
                .exists = exists,
                .mode = mode,
        };
        return 0;
}

/* Put the content in place: the existing file truncated and rewritten (its inode, owner and
 * mode kept), or a new file created exclusively and given to the agent. The leaf must still be
 * what write_prepare judged. content_sha256 is non-NULL for streamed content, which arrives
 * later (an agent command may have changed things meanwhile): then the deadline and the
 * directory's path are checked again too, and the digest goes into the answer. Consumes req. */
static void write_commit(Request *req, WriteTarget *t, const void *content, size_t n, const char *content_sha256) {
        Proxy *p = req->proxy;
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (content_sha256) {
                /* Streamed: time passed since write_prepare. The deadline still holds, and the
                 * directory must still be where its path was judged (an agent command could
                 * have renamed it under a name the policy refuses). */
                _cleanup_free_ char *now = NULL;
                if (request_check_deadline(req) < 0)
                        return;
                r = proxy_fd_relpath(p, t->dfd, t->parent, &now);
                if (r < 0 || !streq(now, t->parent)) {
                        _cleanup_free_ char *vis = string_make_visible(t->target);
                        request_fail(
                                req,
                                ERROR_KIND_CONFLICT,
                                "write: the directory of '%s' was moved while the content arrived; nothing "
                                "was written",
                                vis);
                        return;
                }
        }
        if (t->exists) {
                /* The name must still be the file opened (and judged), and that file still a
                 * regular one with one link. */
                struct stat st, now;
                fd = TAKE_FD(t->fd);
                if (check_regular(req, fd, t->target, &st) < 0)
                        return;
                if (fstatat(t->dfd, t->leaf, &now, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != now.st_dev ||
                    st.st_ino != now.st_ino) {
                        _cleanup_free_ char *vis = string_make_visible(t->target);
                        request_fail(
                                req,
                                ERROR_KIND_CONFLICT,
                                "write: '%s' was replaced while the content arrived; nothing was written",
                                vis);
                        return;
                }
                if (ftruncate(fd, 0) < 0) {
                        request_fail(req, ERROR_KIND_IO_ERROR, "write: truncate: %m");
                        return;
                }
        } else {
                fd = openat(t->dfd, t->leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, t->mode);
                if (fd < 0) {
                        if (errno == EEXIST) {
                                _cleanup_free_ char *vis = string_make_visible(t->target);
                                request_fail(
                                        req,
                                        ERROR_KIND_CONFLICT,
                                        "write: '%s' was created while the content arrived; nothing was "
                                        "written",
                                        vis);
                                return;
                        }
                        fail_errno(req, -errno, "write", t->target);
                        return;
                }
                /* Files belong to the agent, so its commands can change them too. */
                if (fchown(fd, p->agent_uid, p->agent_gid) < 0) {
                        request_fail(req, ERROR_KIND_IO_ERROR, "write: chown: %m");
                        return;
                }
                (void) fchmod(fd, t->mode);
        }
        r = loop_write(fd, content, n);
        if (r < 0) {
                request_fail(
                        req,
                        r == -EFBIG || r == -ENOSPC ? ERROR_KIND_TOO_LARGE : ERROR_KIND_IO_ERROR,
                        "write: %s",
                        strerror(-r));
                return;
        }
        request_settle(req, p->cfg.costs.base_usd_micros);
        json_t *j = json_pack(
                "{s:s, s:I, s:b}", "path", t->target, "bytes", (json_int_t) n, "created", !t->exists);
        if (content_sha256)
                json_object_set_new(j, "sha256", json_string(content_sha256));
        request_finish(req, j);
}

/* ---- write with streamed content (docs/proxy.md "Size") ----
 *
 * The node sends a write whose request would not fit one frame as the request without its
 * content ("content_bytes" and "content_sha256" instead), then the decoded bytes as data frames
 * and an end frame. Everything about the path is decided when the request arrives, before one
 * byte of content is accepted; the bytes are kept in memory (at most content_bytes, itself at
 * most max_file_bytes) and reach the file only once all of them arrived and match the digest.
 * A refused write swallows the rest of its stream. */

/* Streamed writes buffered at once (each up to max_file_bytes), and the bytes they may announce
 * together (guest memory; a lone write may always announce up to max_file_bytes). */
#define WRITE_STREAMS_MAX 4u
#define WRITE_ANNOUNCED_MAX (UINT64_C(64) * 1024 * 1024)

typedef struct WriteJob {
        Job job;
        WriteTarget t;
        uint8_t *buf;
        size_t n;         /* bytes received */
        size_t allocated; /* bytes allocated in buf */
        uint64_t want;    /* content_bytes: exactly this many must arrive */
        char want_sha256[65];
        bool failed;  /* answered (or never started): swallow the rest of the stream */
        bool counted; /* counted in write_streams and write_announced */
} WriteJob;

static unsigned write_streams;
static uint64_t write_announced; /* sum of want over the counted jobs */

static void write_job_release(WriteJob *wj) {
        if (wj->counted) {
                write_streams--;
                write_announced -= wj->want;
        }
        wj->counted = false;
        wj->buf = mfree(wj->buf);
        wj->n = wj->allocated = 0;
        write_target_done(&wj->t);
}

static void write_job_free(Job *j) {
        WriteJob *wj = (WriteJob *) j;
        write_job_release(wj);
        request_free(j->req);
        free(wj);
}

_printf_(3, 4) static void write_job_fail(WriteJob *wj, ErrorKind kind, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *msg = xvasprintf(fmt, ap);
        va_end(ap);
        Request *req = TAKE_PTR(wj->job.req);
        wj->failed = true;
        write_job_release(wj);
        if (req)
                request_fail(req, kind, "%s", msg);
}

static void write_on_frame(Job *j, Frame *f) {
        WriteJob *wj = (WriteJob *) j;
        Proxy *p = j->proxy;

        if (f->type == FRAME_CANCEL) {
                if (!wj->failed)
                        write_job_fail(
                                wj,
                                ERROR_KIND_INVALID_REQUEST,
                                "write: cancelled by the node; nothing was written");
                proxy_remove_job(p, j);
                return;
        }
        if (wj->failed) {
                if (f->type == FRAME_END)
                        proxy_remove_job(p, j);
                return;
        }
        if (f->type == FRAME_DATA) {
                if (f->length > wj->want - wj->n) {
                        write_job_fail(
                                wj,
                                ERROR_KIND_INVALID_REQUEST,
                                "write: more content arrived than the %llu bytes announced; nothing was "
                                "written",
                                (unsigned long long) wj->want);
                        return;
                }
                if (wj->n + f->length > wj->allocated) {
                        size_t a = NUCLEUS_MAX(wj->allocated * 2, (size_t) 1024 * 1024);
                        a = NUCLEUS_MIN(NUCLEUS_MAX(a, wj->n + f->length), (size_t) wj->want);
                        wj->buf = xrealloc(wj->buf, a);
                        wj->allocated = a;
                }
                if (f->length > 0)
                        memcpy(wj->buf + wj->n, f->payload, f->length);
                wj->n += f->length;
                return;
        }
        /* FRAME_END */
        char got[65];
        if (wj->n != wj->want) {
                write_job_fail(
                        wj,
                        ERROR_KIND_INVALID_REQUEST,
                        "write: the content ended after %zu of the %llu bytes announced; nothing was "
                        "written",
                        wj->n,
                        (unsigned long long) wj->want);
                proxy_remove_job(p, j);
                return;
        }
        sha256_hex(wj->buf ?: (const uint8_t *) "", wj->n, got);
        if (!streq(got, wj->want_sha256)) {
                write_job_fail(
                        wj,
                        ERROR_KIND_INVALID_REQUEST,
                        "write: the content does not match content_sha256; nothing was written");
                proxy_remove_job(p, j);
                return;
        }
        Request *req = TAKE_PTR(j->req);
        wj->failed = true;
        write_commit(req, &wj->t, wj->buf ?: (const uint8_t *) "", wj->n, got);
        write_job_release(wj);
        proxy_remove_job(p, j);
}

static bool sha256_hex_valid(const char *s) {
        return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* A write whose content follows as data frames. The job exists before anything is checked,
 * so whatever happens to the request its stream is consumed. Consumes req. */
static void write_streamed(Request *req, const char *const *keys, json_t *jn) {
        Proxy *p = req->proxy;
        _cleanup_free_ char *rel = NULL;
        const char *sha = NULL;
        bool create_dirs;
        uint64_t mode;

        WriteJob *wj = xnew0(WriteJob, 1);
        wj->job = (Job){
                .proxy = p, .stream_id = req->stream_id, .on_frame = write_on_frame, .free = write_job_free
        };
        wj->t.dfd = wj->t.fd = -EBADF;
        wj->failed = true;
        proxy_add_job(p, &wj->job);

        if (args_check_keys(req, keys) < 0 || get_path(req, "path", true, NULL, &rel) < 0 ||
            args_get_bool(req, "create_dirs", false, &create_dirs) < 0 ||
            args_get_u64(req, "mode", 0644, 0777, &mode) < 0)
                return;
        if (!json_is_integer(jn) || json_integer_value(jn) < 0) {
                request_fail(req, ERROR_KIND_INVALID_REQUEST, "write: 'content_bytes' must be an integer >= 0");
                return;
        }
        uint64_t want = (uint64_t) json_integer_value(jn);
        if (args_get_string(req, "content_sha256", true, &sha) < 0)
                return;
        if (!sha256_hex_valid(sha)) {
                request_fail(
                        req,
                        ERROR_KIND_INVALID_REQUEST,
                        "write: 'content_sha256' must be 64 lowercase hex digits");
                return;
        }
        if (want > p->cfg.limits.max_file_bytes) {
                request_fail(
                        req,
                        ERROR_KIND_TOO_LARGE,
                        "write: %llu bytes exceeds the pod's max_file_bytes of %llu; nothing was written "
                        "(a file this large cannot be written with a tool call: do not retry it)",
                        (unsigned long long) want,
                        (unsigned long long) p->cfg.limits.max_file_bytes);
                return;
        }
        if (write_streams > 0 &&
            (write_streams >= WRITE_STREAMS_MAX ||
             want > WRITE_ANNOUNCED_MAX - NUCLEUS_MIN(write_announced, WRITE_ANNOUNCED_MAX))) {
                request_fail(
                        req,
                        ERROR_KIND_CAPACITY,
                        "write: %u large writes (%llu bytes) are already receiving their content; retry "
                        "when one has ended",
                        write_streams,
                        (unsigned long long) write_announced);
                return;
        }
        WriteTarget t = { .dfd = -EBADF, .fd = -EBADF };
        if (write_prepare(req, rel, create_dirs, (mode_t) mode, &t) < 0)
                return;
        wj->t = t;
        wj->counted = true;
        wj->want = want;
        write_streams++;
        write_announced += want;
        memcpy(wj->want_sha256, sha, sizeof wj->want_sha256);
        wj->job.req = req;
        wj->failed = false;
}

void op_write(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { "path",           "content",
                                            "content_base64", "content_bytes",
                                            "content_sha256", "create_dirs",
                                            "mode",           NULL };
        _cleanup_free_ char *rel = NULL;
        _cleanup_free_ uint8_t *decoded = NULL;
        const char *content = NULL, *b64 = NULL;
        size_t n = 0;
        bool create_dirs;
        uint64_t mode;
        int r;

        json_t *jn = json_object_get(req->args, "content_bytes");
        json_t *jc = json_object_get(req->args, "content");
        if (jn && !jc && !json_object_get(req->args, "content_base64")) {
                write_streamed(req, keys, jn);
                return;
        }
        if (jn) {
                request_fail(
                        req,
                        ERROR_KIND_INVALID_REQUEST,
                        "write: exactly one of 'content', 'content_base64' or 'content_bytes' is required");
                return;
        }
        if (args_check_keys(req, keys) < 0 || get_path(req, "path", true, NULL, &rel) < 0 ||
            args_get_bool(req, "create_dirs", false, &create_dirs) < 0 ||
            args_get_u64(req, "mode", 0644, 0777, &mode) < 0)
                return;
        if (json_object_get(req->args, "content_sha256")) {
                request_fail(
                        req, ERROR_KIND_INVALID_REQUEST, "write: 'content_sha256' goes with 'content_bytes'");
                return;
        }
        if (jc && !json_is_string(jc)) {
                request_fail(req, ERROR_KIND_INVALID_REQUEST, "write: 'content' must be a string");
                return;
        }
        if (args_get_string(req, "content_base64", false, &b64) < 0)
                return;
        if (!!jc == !!b64) {
                request_fail(
                        req,
                        ERROR_KIND_INVALID_REQUEST,
                        "write: exactly one of 'content' or 'content_base64' is required");
                return;
        }
        if (jc) {
                content = json_string_value(jc);
                n = json_string_length(jc);
        } else {
                r = base64_decode(b64, strlen(b64), p->cfg.limits.max_file_bytes, &decoded, &n);
                if (r < 0) {
                        request_fail(
                                req,
                                r == -EFBIG ? ERROR_KIND_TOO_LARGE : ERROR_KIND_INVALID_REQUEST,
                                "write: bad content_base64");
                        return;
                }
                content = (const char *) decoded;
        }
        if (n > p->cfg.limits.max_file_bytes) {
                request_fail(req, ERROR_KIND_TOO_LARGE, "write: %zu bytes exceeds the limit", n);
                return;
        }
        WriteTarget t = { .dfd = -EBADF, .fd = -EBADF };
        if (write_prepare(req, rel, create_dirs, (mode_t) mode, &t) < 0)
                return;
        write_commit(req, &t, content, n, NULL);
        write_target_done(&t);
}

void op_edit(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { "path", "old", "new", NULL };
        _cleanup_free_ char *rel = NULL, *resolved = NULL, *data = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        size_t size;
        int r;

        json_t *jo = json_object_get(req->args, "old"), *jn = json_object_get(req->args, "new");
        if (args_check_keys(req, keys) < 0 || get_path(req, "path", true, NULL, &rel) < 0)
                return;
        if (!json_is_string(jo) || !json_is_string(jn) || json_string_length(jo) == 0) {
                request_fail(
                        req, ERROR_KIND_INVALID_REQUEST, "edit: 'old' (non-empty) and 'new' must be strings");
                return;
        }
        if (open_judged(req, rel, O_RDWR, PATH_ACCESS_EDIT, &fd, &resolved) < 0)
                return;
        if (check_regular(req, fd, resolved, &st) < 0)
                return;
        if ((uint64_t) st.st_size > p->cfg.limits.max_file_bytes) {
                request_fail(
                        req,
                        ERROR_KIND_TOO_LARGE,
                        "edit: file is larger than %llu bytes",
                        (unsigned long long) p->cfg.limits.max_file_bytes);
                return;
        }
        r = read_full_fd(fd, p->cfg.limits.max_file_bytes, &data, &size);
        if (r < 0) {
                request_fail(
                        req,
                        r == -EFBIG ? ERROR_KIND_TOO_LARGE : ERROR_KIND_IO_ERROR,
                        "edit: read: %s",
                        strerror(-r));
                return;
        }
        const char *old = json_string_value(jo), *new = json_string_value(jn);
        size_t on = json_string_length(jo), nn = json_string_length(jn);
        const char *hit = memmem(data, size, old, on);
        if (!hit) {
                _cleanup_free_ char *vis = string_make_visible(resolved);
                request_fail(
                        req, ERROR_KIND_NOT_FOUND, "edit: the text to replace does not occur in '%s'", vis);
                return;
        }
        size_t off = (size_t) (hit - data);
        if (memmem(hit + 1, size - off - 1, old, on)) {
                _cleanup_free_ char *vis = string_make_visible(resolved);
                request_fail(
                        req,
                        ERROR_KIND_NOT_UNIQUE,
                        "edit: the text to replace occurs more than once in '%s'",
                        vis);
                return;
        }
        if (size - on + nn > p->cfg.limits.max_file_bytes) {
                request_fail(req, ERROR_KIND_TOO_LARGE, "edit: result would exceed the file size limit");
                return;
        }
        _cleanup_free_ char *out = xmalloc(size - on + nn + 1);
        memcpy(out, data, off);
        memcpy(out + off, new, nn);
        memcpy(out + off + nn, data + off + on, size - off - on);
        size_t outn = size - on + nn;
        if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0 || (r = loop_write(fd, out, outn)) < 0) {
                request_fail(req, ERROR_KIND_IO_ERROR, "edit: write failed");
                return;
        }
        request_settle(req, p->cfg.costs.base_usd_micros);
        json_t *j = json_pack(
                "{s:s, s:i, s:I}", "path", resolved, "replacements", 1, "size", (json_int_t) outn);
        request_finish(req, j);
}

static const char *type_name(unsigned char t) {
        switch (t) {
        case DT_REG:
                return "file";
        case DT_DIR:
                return "dir";
        case DT_LNK:
                return "symlink";
        default:
                return "other";
        }
}

static char *join_rel(const char *dir, const char *name) {
        return streq(dir, ".") ? xstrdup(name) : xasprintf("%s/%s", dir, name);
}

void op_list(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { "path", NULL };
        _cleanup_free_ char *rel = NULL, *resolved = NULL;
        _cleanup_close_ int fd = -EBADF;

        if (args_check_keys(req, keys) < 0 || get_path(req, "path", false, ".", &rel) < 0)
                return;
        if (open_judged(req, rel, O_RDONLY | O_DIRECTORY, PATH_ACCESS_GLOB, &fd, &resolved) < 0)
                return;
        DIR *d = fdopendir(fd);
        if (!d) {
                request_fail(req, ERROR_KIND_IO_ERROR, "list: %m");
                return;
        }
        int dirfd_ = TAKE_FD(fd);
        json_t *entries = json_array();
        bool truncated = false;
        size_t budget = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                _cleanup_free_ char *child = join_rel(resolved, de->d_name);
                if (!policy_path_allowed(p->cfg.policy, child))
                        continue;
                if (json_array_size(entries) >= p->cfg.limits.max_list_entries || budget > ANSWER_BUDGET) {
                        truncated = true;
                        break;
                }
                struct stat st;
                json_int_t size = -1;
                unsigned char t = de->d_type;
                if (fstatat(dirfd_, de->d_name, &st, AT_SYMLINK_NOFOLLOW) >= 0) {
                        size = (json_int_t) st.st_size;
                        t = S_ISREG(st.st_mode)       ? DT_REG
                                : S_ISDIR(st.st_mode) ? DT_DIR
                                : S_ISLNK(st.st_mode) ? DT_LNK
                                                      : DT_UNKNOWN;
                }
                budget += strlen(de->d_name) + 48;
                json_array_append_new(
                        entries,
                        json_pack("{s:s, s:s, s:I}", "name", de->d_name, "type", type_name(t), "size", size));
        }
        closedir(d);
        request_settle(req, p->cfg.costs.base_usd_micros);
        request_finish(
                req,
                json_pack("{s:s, s:o, s:b}", "path", resolved, "entries", entries, "truncated", truncated));
}

#define GREP_MATCH_LIMIT 100000U        /* backtracking steps per line */
#define GREP_DEPTH_LIMIT 1000U          /* nested backtracking frames per line */
#define GREP_HEAP_LIMIT_KIB 8192U       /* 8 MiB of backtracking frames per line */
#define GREP_TIME_BUDGET (USEC_PER_SEC) /* wall clock for one grep op */

typedef struct Walk {
        Request *req;
        uint64_t visited;
        bool truncated;
        size_t answer_bytes;
        /* glob */
        const char *pattern;
        json_t *matches;
        /* grep */
        pcre2_code *re;
        pcre2_match_data *md;
        pcre2_match_context *mctx;
        bool jit; /* re was JIT-compiled: use pcre2_jit_match */
        uint64_t max_matches;
        uint64_t n_matches;
        uint64_t files_searched;
        usec_t grep_deadline;   /* CLOCK_MONOTONIC: stop searching (time budget) */
        bool out_of_time;       /* the budget ran out: answer is partial */
        uint64_t lines_skipped; /* lines whose match hit a PCRE2 limit (not matched) */
} Walk;

static void grep_file(Walk *w, int dirfd, const char *name, const char *rel);

static void walk_dir(Walk *w, int dirfd, const char *rel, unsigned depth) {
        Proxy *p = w->req->proxy;
        if (depth > 64 || w->truncated)
                return;
        DIR *d = fd_opendir_at(dirfd);
        if (!d)
                return;
        struct dirent *de;
        while (!w->truncated && (de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (w->grep_deadline != 0 && now_usec(CLOCK_MONOTONIC) >= w->grep_deadline) {
                        w->out_of_time = w->truncated = true;
                        break;
                }
                if (++w->visited > p->cfg.limits.max_walk_entries) {
                        w->truncated = true;
                        break;
                }
                _cleanup_free_ char *child = join_rel(rel, de->d_name);
                bool allowed = policy_path_allowed(p->cfg.policy, child);
                unsigned char t = de->d_type;
                if (t == DT_UNKNOWN) {
                        struct stat st;
                        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) >= 0)
                                t = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
                }
                if (allowed && w->pattern && glob_match(w->pattern, child)) {
                        if (json_array_size(w->matches) >= p->cfg.limits.max_list_entries ||
                            w->answer_bytes > ANSWER_BUDGET) {
                                w->truncated = true;
                                break;
                        }
                        w->answer_bytes += strlen(child) + 4;
                        json_array_append_new(w->matches, json_string(child));
                }
                if (allowed && w->re && t == DT_REG)
                        grep_file(w, dirfd, de->d_name, child);
                if (t == DT_DIR) {
                        /* O_NOFOLLOW: the walk never leaves through a symlink. */
                        int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0) {
                                walk_dir(w, sub, child, depth + 1);
                                safe_close(sub);
                        }
                }
        }
        closedir(d);
}

void op_glob(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { "pattern", "path", NULL };
        _cleanup_free_ char *rel = NULL, *resolved = NULL;
        _cleanup_close_ int fd = -EBADF;
        const char *pattern;

        if (args_check_keys(req, keys) < 0 || args_get_string(req, "pattern", true, &pattern) < 0 ||
            get_path(req, "path", false, ".", &rel) < 0)
                return;
        if (strlen(pattern) == 0 || strlen(pattern) > GLOB_MAX_LEN) {
                request_fail(
                        req, ERROR_KIND_INVALID_REQUEST, "glob: pattern must be 1..%u bytes", GLOB_MAX_LEN);
                return;
        }
        if (open_judged(req, rel, O_RDONLY | O_DIRECTORY, PATH_ACCESS_GLOB, &fd, &resolved) < 0)
                return;
        /* Patterns are matched against workspace-relative paths; with a sub-path, prefix it. */
        _cleanup_free_ char *full = streq(resolved, ".") ? xstrdup(pattern)
                                                         : xasprintf("%s/%s", resolved, pattern);
        Walk w = { .req = req, .pattern = full, .matches = json_array() };
        walk_dir(&w, fd, resolved, 0);
        request_settle(req, p->cfg.costs.base_usd_micros);
        request_finish(req, json_pack("{s:o, s:b}", "matches", w.matches, "truncated", w.truncated));
}

static void grep_file(Walk *w, int dirfd, const char *name, const char *rel) {
        Proxy *p = w->req->proxy;
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink > 1 ||
            (uint64_t) st.st_size > p->cfg.limits.max_grep_file_bytes)
                return;
        _cleanup_free_ char *data = NULL;
        size_t n;
        if (read_full_fd(fd, p->cfg.limits.max_grep_file_bytes, &data, &n) < 0)
                return;
        if (memchr(data, 0, NUCLEUS_MIN(n, (size_t) 8192)))
                return; /* binary */
        w->files_searched++;
        size_t lineno = 0;
        for (size_t off = 0; off < n && !w->truncated;) {
                const char *nl = memchr(data + off, '\n', n - off);
                size_t len = nl ? (size_t) (nl - (data + off)) : n - off;
                lineno++;
                /* One clock read per line (vDSO): the whole op stays within its budget plus
                 * one line's match, which the match/depth/heap limits bound. */
                if (now_usec(CLOCK_MONOTONIC) >= w->grep_deadline) {
                        w->out_of_time = w->truncated = true;
                        break;
                }
                int rc = w->jit ? pcre2_jit_match(w->re, (PCRE2_SPTR) (data + off), len, 0, 0, w->md, w->mctx)
                                : pcre2_match(w->re, (PCRE2_SPTR) (data + off), len, 0, 0, w->md, w->mctx);
                if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
                        w->lines_skipped++; /* match/depth/heap limit: counted, reported */
                if (rc >= 0) {
                        if (w->n_matches >= w->max_matches || w->answer_bytes > ANSWER_BUDGET) {
                                w->truncated = true;
                                break;
                        }
                        size_t show = NUCLEUS_MIN(len, (size_t) 512);
                        json_t *m = json_pack("{s:s, s:I}", "path", rel, "line", (json_int_t) lineno);
                        json_set_bytes(m, "text", data + off, show);
                        json_array_append_new(w->matches, m);
                        w->answer_bytes += strlen(rel) + show * 2 + 48;
                        w->n_matches++;
                }
                off += len + 1;
        }
}

void op_grep(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { "pattern", "path", "max_matches", "ignore_case", NULL };
        _cleanup_free_ char *rel = NULL, *resolved = NULL;
        _cleanup_close_ int fd = -EBADF;
        const char *pattern;
        uint64_t max_matches;
        bool icase;

        if (args_check_keys(req, keys) < 0 || args_get_string(req, "pattern", true, &pattern) < 0 ||
            get_path(req, "path", false, ".", &rel) < 0 ||
            args_get_u64(
                    req,
                    "max_matches",
                    NUCLEUS_MIN((uint64_t) 100, p->cfg.limits.max_grep_matches),
                    p->cfg.limits.max_grep_matches,
                    &max_matches) < 0 ||
            args_get_bool(req, "ignore_case", false, &icase) < 0)
                return;
        if (strlen(pattern) == 0 || strlen(pattern) > 4096) {
                request_fail(req, ERROR_KIND_INVALID_REQUEST, "grep: pattern must be 1..4096 bytes");
                return;
        }
        int errcode;
        PCRE2_SIZE erroff;
        pcre2_code *re = pcre2_compile(
                (PCRE2_SPTR) pattern, PCRE2_ZERO_TERMINATED, icase ? PCRE2_CASELESS : 0, &errcode, &erroff, NULL);
        if (!re) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(errcode, msg, sizeof msg);
                request_fail(
                        req,
                        ERROR_KIND_INVALID_REQUEST,
                        "grep: bad pattern at offset %zu: %s",
                        (size_t) erroff,
                        (char *) msg);
                return;
        }
        if (open_judged(req, rel, O_RDONLY, PATH_ACCESS_GREP, &fd, &resolved) < 0) {
                pcre2_code_free(re);
                return;
        }
        Walk w = {
                .req = req,
                .re = re,
                .md = pcre2_match_data_create_from_pattern(re, NULL),
                .mctx = pcre2_match_context_create(NULL),
                .max_matches = max_matches,
                .matches = json_array(),
        };
        /* The proxy is single-threaded, so a hostile pattern must not hold the loop.
         * Per line: PCRE2 match (backtracking steps), depth and heap limits, enforced by the
         * interpreter and the JIT alike. Per op: a wall-clock budget checked before every
         * line and directory entry; when it runs out the answer is partial ("truncated",
         * "time_budget_exceeded"). So one grep holds the loop for at most GREP_TIME_BUDGET
         * plus one bounded match, and status/cancel are served right after. */
        pcre2_set_match_limit(w.mctx, GREP_MATCH_LIMIT);
        pcre2_set_depth_limit(w.mctx, GREP_DEPTH_LIMIT);
        pcre2_set_heap_limit(w.mctx, GREP_HEAP_LIMIT_KIB);
        w.jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
        usec_t left = time_window_remaining(&p->window);
        w.grep_deadline = now_usec(CLOCK_MONOTONIC) + NUCLEUS_MIN(GREP_TIME_BUDGET, left);
        struct stat st;
        if (fstat(fd, &st) >= 0 && S_ISREG(st.st_mode)) {
                _cleanup_free_ char *parent = NULL, *leaf = NULL;
                _cleanup_close_ int pfd = -EBADF;
                if (proxy_path_split(resolved, &parent, &leaf) >= 0 &&
                    (pfd = proxy_openat2(p, -1, parent, O_PATH | O_DIRECTORY, 0, 0)) >= 0)
                        grep_file(&w, pfd, leaf, resolved);
        } else
                walk_dir(&w, fd, resolved, 0);
        pcre2_match_data_free(w.md);
        pcre2_match_context_free(w.mctx);
        pcre2_code_free(re);
        request_settle(req, p->cfg.costs.base_usd_micros);
        request_finish(
                req,
                json_pack(
                        "{s:o, s:b, s:I, s:b, s:I}",
                        "matches",
                        w.matches,
                        "truncated",
                        w.truncated,
                        "files_searched",
                        (json_int_t) w.files_searched,
                        "time_budget_exceeded",
                        w.out_of_time,
                        "lines_skipped",
                        (json_int_t) w.lines_skipped));
}
