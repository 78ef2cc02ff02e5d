/* SPDX-License-Identifier: Apache-2.0 */
/*
 * export: the workspace's changes against the baseline as a binary git patch, without git
 * ever opening the agent's tree (docs/proxy.md "export"). With the agent's processes stopped,
 * the proxy walks /workspace itself (openat2 beneath the root, no symlink followed, bounded),
 * streams the files into `git fast-import` on the root-only baseline repository, and diffs
 * the baseline commit against the new one there. No configuration, attribute, hook, filter or
 * ignore file of the workspace is ever read by git; nested repositories are left out and
 * flagged. The workspace contents are untrusted.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "log.h"
#include "patch-flags.h"
#include "proxy-path.h"
#include "proxy.h"
#include "string-util.h"

#define EXPORT_MAX_PATCH (48U * 1024U * 1024U) /* must fit the channel's output queue */
#define EXPORT_MAX_DEPTH 64U
#define EXPORT_MAX_ENTRIES 1000000U
#define EXPORT_MAX_LINK 4096U
#define FREEZE_MAX_ROUNDS 64U
#define EXPORT_RESOLVE (RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)

/* ---- freezing the agent's processes ---- */

typedef struct Frozen {
        pid_t *pids;
        size_t n;
} Frozen;

typedef struct ProcInfo {
        pid_t pid, ppid;
        uid_t uid;
        char state;
} ProcInfo;

static size_t proc_scan(ProcInfo **ret) {
        ProcInfo *l = NULL;
        size_t n = 0;
        DIR *d = opendir("/proc");
        if (!d) {
                *ret = NULL;
                return 0;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                char *end;
                long pid = strtol(de->d_name, &end, 10);
                if (*end || pid <= 0)
                        continue;
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, 0) < 0)
                        continue;
                char path[64], buf[1024];
                snprintf(path, sizeof path, "%ld/stat", pid);
                _cleanup_close_ int fd = openat(dirfd(d), path, O_RDONLY | O_CLOEXEC);
                ssize_t k = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
                if (k <= 0)
                        continue;
                buf[k] = 0;
                /* "pid (comm) S ppid ...": comm may hold spaces and parentheses. */
                const char *rp = strrchr(buf, ')');
                char state;
                long ppid;
                if (!rp || sscanf(rp + 1, " %c %ld", &state, &ppid) != 2)
                        continue;
                l = xreallocarray(l, n + 1, sizeof *l);
                l[n++] = (ProcInfo){ .pid = (pid_t) pid, .ppid = (pid_t) ppid, .uid = st.st_uid, .state = state };
        }
        closedir(d);
        *ret = l;
        return n;
}

static bool frozen_has(const Frozen *f, pid_t pid) {
        for (size_t i = 0; i < f->n; i++)
                if (f->pids[i] == pid || f->pids[i] == -pid)
                        return true;
        return false;
}

/* Is pid a descendant of us (by the ppid links of this scan)? */
static bool descends_from_us(const ProcInfo *l, size_t n, pid_t pid) {
        pid_t self = getpid();
        for (unsigned hops = 0; pid > 1 && hops < 4096; hops++) {
                pid_t parent = 0;
                for (size_t i = 0; i < n; i++)
                        if (l[i].pid == pid) {
                                parent = l[i].ppid;
                                break;
                        }
                if (parent == self)
                        return true;
                pid = parent;
        }
        return false;
}

static void export_thaw(Frozen *f) {
        for (size_t i = 0; i < f->n; i++)
                if (f->pids[i] > 0) /* negative: was stopped before us, stays stopped */
                        (void) kill(f->pids[i], SIGCONT);
        f->pids = mfree(f->pids);
        f->n = 0;
}

/* SIGSTOP every process of the agent (its uid, among our descendants: each command runs in a
 * PID namespace whose init is our child, so orphans stay inside it; without per-command
 * namespaces, as under the `local` driver's sandbox, every process of the agent uid in our
 * PID namespace). Rescans until a pass finds nobody new, so a fork racing the scan is caught
 * by the next pass. -EAGAIN when the set keeps growing. */
static int export_freeze(Proxy *p, Frozen *f) {
        for (unsigned round = 0; round < FREEZE_MAX_ROUNDS; round++) {
                ProcInfo *l = NULL;
                size_t n = proc_scan(&l), added = 0;
                for (size_t i = 0; i < n; i++) {
                        if (l[i].uid != p->agent_uid || l[i].pid == getpid() || frozen_has(f, l[i].pid))
                                continue;
                        if (!p->commands_share_pid_ns && !descends_from_us(l, n, l[i].pid))
                                continue;
                        bool was_stopped = l[i].state == 'T' || l[i].state == 't';
                        if (!was_stopped && kill(l[i].pid, SIGSTOP) < 0)
                                continue; /* gone */
                        f->pids = xreallocarray(f->pids, f->n + 1, sizeof *f->pids);
                        f->pids[f->n++] = was_stopped ? -l[i].pid : l[i].pid;
                        added++;
                }
                free(l);
                if (added == 0)
                        return 0;
        }
        return -EAGAIN;
}

/* ---- walking the workspace ---- */

typedef struct WalkEntry {
        char *path;
        unsigned mode; /* 0100644, 0100755, 0120000 */
        uint64_t size;
        char *link; /* symlink target */
} WalkEntry;

typedef struct Walk {
        Proxy *p;
        WalkEntry *e;
        size_t n;
        uint64_t bytes;
        char **nested;  /* directories left out: they hold a .git */
        char **skipped; /* sockets, fifos, devices */
        bool root_git;  /* the workspace root holds a .git that is not a directory */
        char *error;
        usec_t keepalive_at; /* CLOCK_MONOTONIC of the last keepalive frame */
} Walk;

/* The walk and the feeding of git run inside one turn of the channel loop; a big workspace takes
 * longer than the node's liveness bound on TCG. Tell the node every 2 s that this guest lives. */
static void walk_keepalive(Walk *w) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (now - w->keepalive_at < 2 * USEC_PER_SEC)
                return;
        w->keepalive_at = now;
        proxy_keepalive(w->p);
}

static bool name_is_git(const char *name) {
        _cleanup_free_ char *f = patch_path_fold(name);
        return streq(f, ".git");
}

static int walk_dir(Walk *w, int dfd, const char *rel, unsigned depth) {
        if (depth > EXPORT_MAX_DEPTH) {
                w->error = xasprintf("the workspace is deeper than %u levels", EXPORT_MAX_DEPTH);
                return -ELOOP;
        }
        DIR *d = fd_opendir_at(dfd);
        if (!d)
                return -errno;
        _cleanup_strv_free_ char **names = NULL;
        struct dirent *de;
        bool nested = false;
        while ((de = readdir(d))) {
                walk_keepalive(w);
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (name_is_git(de->d_name))
                        nested = true;
                strv_extend(&names, de->d_name);
        }
        closedir(d);
        if (nested && *rel) {
                /* A repository inside the workspace: git would obey its config, hooks and
                 * attributes; it is never read, never exported, and always flagged. */
                strv_extend(&w->nested, rel);
                return 0;
        }
        strv_sort_uniq(names);
        STRV_FOREACH(name, names) {
                _cleanup_free_ char *path = *rel ? xasprintf("%s/%s", rel, *name) : xstrdup(*name);
                struct stat st;
                if (w->n >= EXPORT_MAX_ENTRIES) {
                        w->error = xasprintf("the workspace holds more than %u entries", EXPORT_MAX_ENTRIES);
                        return -E2BIG;
                }
                if (fstatat(dfd, *name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* vanished */
                if (!*rel && name_is_git(*name)) {
                        /* The repository's own .git: its files are compared by the manifest. */
                        if (!S_ISDIR(st.st_mode) || !streq(*name, ".git"))
                                w->root_git = true;
                        continue;
                }
                if (S_ISDIR(st.st_mode)) {
                        _cleanup_close_ int sub = proxy_openat2(
                                w->p, dfd, *name, O_RDONLY | O_DIRECTORY, 0, EXPORT_RESOLVE);
                        if (sub < 0)
                                continue; /* replaced or a mount point: not ours to export */
                        int r = walk_dir(w, sub, path, depth + 1);
                        if (r < 0)
                                return r;
                        continue;
                }
                WalkEntry e = { .mode = 0100644 };
                if (S_ISLNK(st.st_mode)) {
                        char target[EXPORT_MAX_LINK + 1];
                        ssize_t k = readlinkat(dfd, *name, target, EXPORT_MAX_LINK);
                        if (k < 0)
                                continue;
                        e.mode = 0120000;
                        e.link = xstrndup(target, (size_t) k);
                        e.size = (uint64_t) k;
                } else if (S_ISREG(st.st_mode)) {
                        e.mode = (st.st_mode & 0100) ? 0100755 : 0100644;
                        e.size = (uint64_t) st.st_size;
                } else {
                        strv_extend(&w->skipped, path);
                        continue;
                }
                w->bytes += e.size;
                if (w->bytes > w->p->cfg.limits.max_import_bytes) {
                        free(e.link);
                        w->error = xasprintf(
                                "the workspace holds more than %llu bytes (the import limit)",
                                (unsigned long long) w->p->cfg.limits.max_import_bytes);
                        return -EFBIG;
                }
                e.path = TAKE_PTR(path);
                w->e = xreallocarray(w->e, w->n + 1, sizeof *w->e);
                w->e[w->n++] = e;
        }
        return 0;
}

static void walk_done(Walk *w) {
        for (size_t i = 0; i < w->n; i++) {
                free(w->e[i].path);
                free(w->e[i].link);
        }
        free(w->e);
        strv_free(w->nested);
        strv_free(w->skipped);
        free(w->error);
}

/* ---- the baseline's tree: tracked paths, .gitignore files, subtrees ---- */

typedef struct TreeEntry {
        char *path;
        char mode[8];
        char type[8];
        char sha[65];
} TreeEntry;

typedef struct Tree {
        TreeEntry *e;
        size_t n;
} Tree;

static void tree_done(Tree *t) {
        for (size_t i = 0; i < t->n; i++)
                free(t->e[i].path);
        free(t->e);
}

static const TreeEntry *tree_find(const Tree *t, const char *path) {
        for (size_t i = 0; i < t->n; i++)
                if (streq(t->e[i].path, path))
                        return &t->e[i];
        return NULL;
}

/* git, on the baseline repository, in the scratch directory (never the workspace). */
typedef struct Scratch {
        char *dir;
        char *env[8];
} Scratch;

static int scratch_git(
        Proxy *p,
        Scratch *s,
        int in_fd,
        int (*feed)(int, void *),
        void *ud,
        char **args,
        size_t max,
        char **ret,
        size_t *ret_n) {
        return proxy_git_exec(p, s->dir, in_fd, feed, ud, s->env, args, max, ret, ret_n);
}

static int tree_load(Proxy *p, Scratch *s, const char *commit, Tree *ret) {
        char *args[] = { (char *) "ls-tree",     (char *) "-r",   (char *) "-t", (char *) "-z",
                         (char *) "--full-tree", (char *) commit, NULL };
        _cleanup_free_ char *out = NULL;
        size_t n = 0;
        int r = scratch_git(p, s, -1, NULL, NULL, args, 256U * 1024U * 1024U, &out, &n);
        if (r < 0)
                return r;
        Tree t = {};
        for (size_t off = 0; off < n;) {
                const char *rec = out + off;
                size_t l = strnlen(rec, n - off);
                const char *tab = memchr(rec, '\t', l);
                off += l + 1;
                if (!tab)
                        continue;
                TreeEntry e = { .path = xstrndup(tab + 1, (size_t) (l - (size_t) (tab + 1 - rec))) };
                if (sscanf(rec, "%7s %7s %64s", e.mode, e.type, e.sha) != 3) {
                        free(e.path);
                        continue;
                }
                t.e = xreallocarray(t.e, t.n + 1, sizeof *t.e);
                t.e[t.n++] = e;
        }
        *ret = t;
        return 0;
}

/* The caches test tools write into a project and mark ignored with a `.gitignore` of their
 * own (`*`), so that a host's git never shows them. That ignore file is the agent's, which the
 * export does not read; these names stand in for it. New files only: tracked ones are always
 * exported. */
static const char export_tool_caches[] = ".pytest_cache/\n.mypy_cache/\n.ruff_cache/\n";

/* Write each .gitignore of the baseline (the project's own rules, as uploaded) into the
 * scratch directory, so that `git check-ignore` there judges new files without reading any
 * ignore file the agent wrote; and the tool caches above as <scratch>/git/ignore, the
 * check's core.excludesFile. */
static int scratch_ignores(Proxy *p, Scratch *s, const Tree *t) {
        _cleanup_close_ int root = open(s->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return -errno;
        {
                _cleanup_close_ int gfd = proxy_mkdir_beneath(p, root, "git", 0700, 0);
                if (gfd < 0)
                        return gfd;
                int r = write_file_atomic_at(
                        gfd, "ignore", export_tool_caches, sizeof export_tool_caches - 1, 0600);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < t->n; i++) {
                const TreeEntry *e = &t->e[i];
                const char *base = strrchr(e->path, '/');
                if (!streq(base ? base + 1 : e->path, ".gitignore") || !streq(e->type, "blob"))
                        continue;
                char *args[] = { (char *) "cat-file", (char *) "blob", (char *) e->sha, NULL };
                _cleanup_free_ char *data = NULL;
                size_t n = 0;
                if (scratch_git(p, s, -1, NULL, NULL, args, 4U * 1024U * 1024U, &data, &n) < 0)
                        continue;
                /* Parents under our own root-only directory, following no link (proxy-path.h
                 * says why); names come from the baseline. */
                _cleanup_free_ char *parent = NULL, *leaf = NULL;
                if (proxy_path_split(e->path, &parent, &leaf) < 0)
                        continue;
                _cleanup_close_ int dfd = proxy_mkdir_beneath(p, root, parent, 0700, 0);
                if (dfd >= 0)
                        (void) write_file_atomic_at(dfd, leaf, data, n, 0600);
        }
        return 0;
}

static void rm_rf_at(int dfd, const char *name, unsigned depth) {
        if (depth > 128)
                return;
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
                DIR *d = fdopendir(fd);
                if (d) {
                        struct dirent *de;
                        while ((de = readdir(d)))
                                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                                        rm_rf_at(dirfd(d), de->d_name, depth + 1);
                        closedir(d);
                } else
                        safe_close(fd);
                (void) unlinkat(dfd, name, AT_REMOVEDIR);
        } else
                (void) unlinkat(dfd, name, 0);
}

static void scratch_remove(Proxy *p, Scratch *s) {
        if (s->dir) {
                _cleanup_close_ int sd = open(p->state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
                const char *leaf = strrchr(s->dir, '/');
                if (sd >= 0 && leaf)
                        rm_rf_at(sd, leaf + 1, 0);
        }
        for (size_t i = 0; i < ELEMENTSOF(s->env); i++)
                s->env[i] = mfree(s->env[i]);
        s->dir = mfree(s->dir);
}

/* ---- feeding git fast-import ---- */

typedef struct Feed {
        Proxy *p;
        Walk *w;
        const bool *keep;
        const Tree *base;
        char *error;
} Feed;

static void quote_path(FILE *f, const char *path) {
        fputc('"', f);
        for (const unsigned char *c = (const unsigned char *) path; *c; c++) {
                if (*c == '"' || *c == '\\')
                        fprintf(f, "\\%c", *c);
                else if (*c < 0x20 || *c == 0x7f)
                        fprintf(f, "\\%03o", *c);
                else
                        fputc(*c, f);
        }
        fputc('"', f);
}

static int feed_fast_import(int fd, void *userdata) {
        Feed *fe = userdata;
        int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dup_fd < 0)
                return -errno;
        FILE *f = fdopen(dup_fd, "w");
        if (!f) {
                safe_close(dup_fd);
                return -errno;
        }
        int r = 0;
        fputs("commit refs/nucleus/export\ncommitter nucleus <nucleus@localhost> 0 +0000\ndata "
              "0\ndeleteall\n",
              f);
        for (size_t i = 0; i < fe->w->n && r >= 0; i++) {
                const WalkEntry *e = &fe->w->e[i];
                if (!fe->keep[i])
                        continue;
                fprintf(f, "M %o inline ", e->mode);
                quote_path(f, e->path);
                fputc('\n', f);
                if (e->mode == 0120000) {
                        fprintf(f, "data %zu\n", strlen(e->link));
                        fputs(e->link, f);
                        fputc('\n', f);
                        continue;
                }
                _cleanup_close_ int in = proxy_openat2(
                        fe->p, -1, e->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0, EXPORT_RESOLVE);
                struct stat st;
                if (in < 0 || fstat(in, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t) st.st_size != e->size) {
                        _cleanup_free_ char *vis = string_make_visible(e->path);
                        fe->error = xasprintf("'%s' changed while the workspace was frozen", vis);
                        r = -ESTALE;
                        break;
                }
                fprintf(f, "data %llu\n", (unsigned long long) e->size);
                char buf[65536];
                uint64_t left = e->size;
                while (left > 0) {
                        walk_keepalive(fe->w);
                        ssize_t k = read(in, buf, left < sizeof buf ? (size_t) left : sizeof buf);
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k <= 0) {
                                r = k < 0 ? -errno : -ESTALE;
                                break;
                        }
                        if (fwrite(buf, 1, (size_t) k, f) != (size_t) k) {
                                r = -EPIPE;
                                break;
                        }
                        left -= (uint64_t) k;
                }
                fputc('\n', f);
        }
        /* Nested repositories keep the baseline's content at their place: the patch neither
         * adds nor deletes anything there. */
        STRV_FOREACH(dir, fe->w->nested) {
                const TreeEntry *t = tree_find(fe->base, *dir);
                if (!t || !streq(t->type, "tree"))
                        continue;
                fprintf(f, "M 040000 %s ", t->sha);
                quote_path(f, *dir);
                fputc('\n', f);
        }
        fputs("\ndone\n", f);
        if (fclose(f) != 0 && r >= 0)
                r = -EPIPE;
        return r;
}

/* ---- the op ---- */

static void export_fail(Request *req, int r, const char *what) {
        request_fail(
                req, r == -EFBIG || r == -E2BIG ? ERROR_KIND_TOO_LARGE : ERROR_KIND_IO_ERROR, "export: %s", what);
}

void op_export(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { NULL };
        _cleanup_free_ char *gitdir = proxy_baseline_dir(p), *patch = NULL, *names = NULL, *mtext = NULL,
                            *base = NULL, *ignored = NULL, *cands = NULL;
        size_t patch_n = 0, names_n = 0, mn = 0, n = 0;
        Walk w = { .p = p };
        Tree tree = {};
        Frozen fz = {};
        Scratch s = {};
        _cleanup_free_ bool *keep = NULL;
        _cleanup_close_ int root = -EBADF, sfd = -EBADF;
        struct stat st;
        int r;

        if (args_check_keys(req, keys) < 0 || request_check_deadline(req) < 0)
                return;
        if (stat(gitdir, &st) < 0) {
                request_fail(
                        req, ERROR_KIND_NOT_FOUND, "export: no baseline recorded; import the workspace first");
                return;
        }
        PolicyDecision d = { .verdict = POLICY_ALLOW, .message = xstrdup("export") };
        if (request_gate(req, &d, p->cfg.costs.base_usd_micros) < 0)
                return;

        /* A fresh root-only scratch directory: git's work tree, HOME and index live there. */
        s.dir = xasprintf("%s/export-XXXXXX", p->state_dir);
        if (!mkdtemp(s.dir)) {
                export_fail(req, -errno, "cannot create a scratch directory");
                s.dir = mfree(s.dir);
                goto finish;
        }
        s.env[0] = xasprintf("GIT_INDEX_FILE=%s/index", s.dir);
        s.env[1] = xasprintf("HOME=%s", s.dir);
        s.env[2] = xasprintf("XDG_CONFIG_HOME=%s", s.dir);
        s.env[3] = xstrdup("GIT_CONFIG_NOSYSTEM=1");
        s.env[4] = xstrdup("GIT_CONFIG_GLOBAL=/dev/null");
        s.env[5] = xstrdup("GIT_ATTR_NOSYSTEM=1");

        char *rev[] = { (char *) "rev-parse", (char *) "--verify", (char *) "HEAD^{commit}", NULL };
        r = scratch_git(p, &s, -1, NULL, NULL, rev, 128, &base, &n);
        if (r < 0) {
                export_fail(req, r, "the baseline has no commit");
                goto finish;
        }
        base[strcspn(base, "\n")] = 0;
        r = tree_load(p, &s, base, &tree);
        if (r >= 0)
                r = scratch_ignores(p, &s, &tree);
        if (r < 0) {
                export_fail(req, r, "cannot read the baseline");
                goto finish;
        }

        /* The agent stands still from the first directory read to the last byte fed. */
        r = export_freeze(p, &fz);
        if (r < 0) {
                export_thaw(&fz);
                export_fail(
                        req,
                        r,
                        "the agent's processes keep multiplying; cannot stop them to read the workspace");
                goto finish;
        }
        root = proxy_openat2(p, -1, ".", O_RDONLY | O_DIRECTORY, 0, EXPORT_RESOLVE);
        r = root < 0 ? root : walk_dir(&w, root, "", 0);
        if (r < 0) {
                export_thaw(&fz);
                export_fail(req, r, w.error ?: "cannot walk the workspace");
                goto finish;
        }

        /* Tracked paths are always exported; a new one only when the project's own ignore
         * rules (the baseline's .gitignore files) do not exclude it. */
        keep = xnew0(bool, w.n + 1);
        size_t cn = 0;
        for (size_t i = 0; i < w.n; i++) {
                keep[i] = tree_find(&tree, w.e[i].path) != NULL;
                if (!keep[i]) {
                        size_t l = strlen(w.e[i].path);
                        cands = xrealloc(cands, cn + l + 1);
                        memcpy(cands + cn, w.e[i].path, l + 1);
                        cn += l + 1;
                }
        }
        if (cn > 0) {
                _cleanup_close_ int mfd = memfd_create("export-candidates", MFD_CLOEXEC);
                if (mfd < 0 || loop_write(mfd, cands, cn) < 0 || lseek(mfd, 0, SEEK_SET) < 0)
                        r = -EIO;
                _cleanup_free_ char *excludes = xasprintf("core.excludesFile=%s/git/ignore", s.dir);
                char *ci[] = { (char *) "-c",
                               excludes,
                               (char *) "check-ignore",
                               (char *) "--no-index",
                               (char *) "-z",
                               (char *) "--stdin",
                               NULL };
                size_t in = 0;
                if (r >= 0) {
                        r = scratch_git(p, &s, mfd, NULL, NULL, ci, 256U * 1024U * 1024U, &ignored, &in);
                        if (r == -EIO && !ignored) /* exit 1: nothing is ignored */
                                r = 0, in = 0;
                }
                _cleanup_strv_free_ char **ig = NULL;
                for (size_t off = 0; r >= 0 && off < in;) {
                        size_t l = strnlen(ignored + off, in - off);
                        strv_extend(&ig, ignored + off);
                        off += l + 1;
                }
                strv_sort_uniq(ig);
                for (size_t i = 0; r >= 0 && i < w.n; i++)
                        if (!keep[i])
                                keep[i] = !strv_contains(ig, w.e[i].path);
        }
        if (r >= 0) {
                Feed fe = { .p = p, .w = &w, .keep = keep, .base = &tree };
                char *fi[] = {
                        (char *) "fast-import", (char *) "--quiet", (char *) "--force", (char *) "--done", NULL
                };
                r = scratch_git(p, &s, -1, feed_fast_import, &fe, fi, 0, NULL, NULL);
                if (r < 0 && fe.error) {
                        export_thaw(&fz);
                        export_fail(req, r, fe.error);
                        free(fe.error);
                        goto finish;
                }
        }
        export_thaw(&fz);
        if (r < 0) {
                request_fail(
                        req,
                        r == -ENOSPC ? ERROR_KIND_TOO_LARGE : ERROR_KIND_IO_ERROR,
                        "export: git fast-import failed (%s)",
                        proxy_git_last_error()[0] ? proxy_git_last_error() : strerror(-r));
                goto finish;
        }

        char *diff[] = { (char *) "diff-tree",
                         (char *) "-r",
                         (char *) "-p",
                         (char *) "-M",
                         (char *) "--binary",
                         (char *) "--full-index",
                         (char *) "--no-color",
                         (char *) "--no-ext-diff",
                         (char *) "--no-textconv",
                         base,
                         (char *) "refs/nucleus/export",
                         NULL };
        char *list[] = { (char *) "diff-tree",           (char *) "-r",
                         (char *) "--name-only",         (char *) "-z",
                         (char *) "--no-renames",        base,
                         (char *) "refs/nucleus/export", NULL };
        r = scratch_git(p, &s, -1, NULL, NULL, diff, EXPORT_MAX_PATCH, &patch, &patch_n);
        if (r >= 0)
                r = scratch_git(p, &s, -1, NULL, NULL, list, 16U * 1024U * 1024U, &names, &names_n);
        scratch_remove(p, &s); /* gone before the answer leaves */
        if (r < 0) {
                request_fail(
                        req,
                        r == -EFBIG ? ERROR_KIND_TOO_LARGE : ERROR_KIND_IO_ERROR,
                        "export: git failed (%s)",
                        r == -EFBIG ? "patch larger than 48 MiB" : strerror(-r));
                goto finish;
        }

        json_t *changed = json_array(), *flagged = json_array();
        for (size_t off = 0; off < names_n;) {
                const char *name = names + off;
                size_t l = strnlen(name, names_n - off);
                if (l > 0) {
                        /* Names are bytes; one that is not UTF-8 is listed in its visible
                         * form (JSON carries only UTF-8; the patch has the bytes). */
                        _cleanup_free_ char *nm = xstrndup(name, l);
                        _cleanup_free_ char *shown = utf8_is_valid(nm) ? xstrdup(nm) : string_make_visible(nm);
                        json_array_append_new(changed, json_string(shown));
                        const char *why = proxy_flag_reason(nm);
                        if (why)
                                json_array_append_new(
                                        flagged, json_pack("{s:s, s:s}", "path", shown, "reason", why));
                }
                off += l + 1;
        }
        STRV_FOREACH(dir, w.nested) {
                _cleanup_free_ char *vis = string_make_visible(*dir);
                json_array_append_new(
                        flagged,
                        json_pack(
                                "{s:s, s:s, s:s}",
                                "path",
                                vis,
                                "reason",
                                "nested repository",
                                "why",
                                "holds a .git: git would obey its config and hooks; left out of the patch"));
        }
        if (w.root_git)
                json_array_append_new(
                        flagged,
                        json_pack(
                                "{s:s, s:s, s:s}",
                                "path",
                                ".git",
                                "reason",
                                "git",
                                "why",
                                "a .git that is not the repository's own directory; left out of the patch"));
        /* .git/ contents, invisible to git: compare against the baseline manifest. */
        sfd = open(p->state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        json_t *old = NULL;
        if (sfd >= 0 && read_full_file_at(sfd, "flag-manifest.json", 32 * 1024 * 1024, &mtext, &mn) >= 0)
                old = json_loadb(mtext, mn, 0, NULL);
        json_t *now = proxy_flag_manifest(p);
        const char *k;
        json_t *v;
        json_object_foreach(now, k, v) {
                json_t *o = old ? json_object_get(old, k) : NULL;
                if (!o || !json_equal(o, v))
                        json_array_append_new(
                                flagged,
                                json_pack(
                                        "{s:s, s:s, s:s}",
                                        "path",
                                        k,
                                        "reason",
                                        proxy_flag_reason(k) ?: "git",
                                        "change",
                                        o ? "modified" : "added"));
        }
        if (old)
                json_object_foreach(old, k, v)
                        if (!json_object_get(now, k))
                                json_array_append_new(
                                        flagged,
                                        json_pack(
                                                "{s:s, s:s, s:s}",
                                                "path",
                                                k,
                                                "reason",
                                                proxy_flag_reason(k) ?: "git",
                                                "change",
                                                "deleted"));
        json_decref(old);
        json_decref(now);

        char digest[65];
        sha256_hex(patch, patch_n, digest);
        uint32_t sid = req->stream_id;
        request_settle(req, p->cfg.costs.base_usd_micros);
        request_finish(
                req,
                json_pack(
                        "{s:I, s:s, s:o, s:o, s:I}",
                        "patch_bytes",
                        (json_int_t) patch_n,
                        "patch_sha256",
                        digest,
                        "changed",
                        changed,
                        "flagged",
                        flagged,
                        "skipped_special",
                        (json_int_t) strv_length(w.skipped)));
        for (size_t off = 0; off < patch_n; off += PROTO_MAX_PAYLOAD)
                proxy_send(
                        p, FRAME_DATA, sid, patch + off, NUCLEUS_MIN((size_t) PROTO_MAX_PAYLOAD, patch_n - off));
        proxy_send(p, FRAME_END, sid, NULL, 0);

finish:
        walk_done(&w);
        tree_done(&tree);
        scratch_remove(p, &s);
}
