/* SPDX-License-Identifier: Apache-2.0 */
/*
 * import: unpack a tar stream (data frames) into the workspace, refusing entries that would
 * escape it (absolute names, '..', anything reached through a symlink) and device/fifo
 * entries; then record a baseline commit in a git directory under the root-only state dir,
 * which the agent cannot see. export: a binary git patch of the workspace against that
 * baseline, the changed paths, and the paths a host would later execute or parse (flagged).
 * The tar stream and the workspace contents are untrusted.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "git-config.h"
#include "glob.h"
#include "log.h"
#include "patch-flags.h"
#include "proxy-path.h"
#include "proxy.h"
#include "string-util.h"
#include "tar.h"

#define IMPORT_MAX_ENTRIES 1000000U
#define GIT_TIMEOUT_USEC (300 * USEC_PER_SEC)
/* src/lib/image IMAGE_SYSTEM_GIT: on the system disk, mounted at /nucleus. */
#define PROXY_INITRAMFS_GIT "/nucleus/bin/git"

/* ---- flagged paths (docs/policy.md "Flagged paths") ---- */

/* The catalogue's group for a path (any depth, case and Unicode variants), or NULL. The
 * node recomputes the patch's flags itself; this names what the guest adds that is not in
 * the patch (files under .git). */
const char *proxy_flag_reason(const char *rel) {
        const PatchFlagRule *r = patch_flag_match(rel);
        return r ? r->group : NULL;
}

/* ---- git, run as root on the baseline dir (never the workspace's own .git) ---- */

/* The last lines git wrote on stderr, for the error the user sees: "No space left on device"
 * must reach them as that, not as "Input/output error". A memfd (guest RAM, a few KiB at most
 * kept): a full scratch disk cannot swallow it. */
static char git_last_error[512];

const char *proxy_git_last_error(void) {
        return git_last_error;
}

static void git_stderr_collect(int fd) {
        char buf[4096];
        git_last_error[0] = 0;
        off_t end = lseek(fd, 0, SEEK_END);
        if (end <= 0)
                return;
        off_t from = end > (off_t) sizeof(buf) - 1 ? end - (off_t) sizeof(buf) + 1 : 0;
        ssize_t k = pread(fd, buf, sizeof(buf) - 1, from);
        if (k <= 0)
                return;
        buf[k] = 0;
        /* The last non-empty line, control characters replaced. */
        while (k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == '\r'))
                buf[--k] = 0;
        const char *line = strrchr(buf, '\n');
        line = line ? line + 1 : buf;
        /* A "fatal:" line earlier in the tail names the cause better than a trailing hint. */
        const char *f = strstr(buf, "fatal: ");
        if (f && f < line)
                line = f;
        size_t i = 0;
        for (; line[i] && line[i] != '\n' && i < sizeof(git_last_error) - 1; i++)
                git_last_error[i] = (unsigned char) line[i] < 0x20 ? ' ' : line[i];
        git_last_error[i] = 0;
}

/* Run git with a fixed, minimal config; capture stdout (up to max bytes) if ret_out. On a git
 * failure returns -ENOSPC when git said the disk is full, else -EIO; either way
 * proxy_git_last_error() holds git's own last words. */
int proxy_git_exec(
        Proxy *p,
        const char *work_tree,
        int in_fd,
        int (*feed)(int fd, void *userdata),
        void *userdata,
        char *const *extra_env,
        char **args,
        size_t max,
        char **ret_out,
        size_t *ret_n) {
        _cleanup_free_ char *gitdir = proxy_baseline_dir(p);
        _cleanup_free_ char *a_gitdir = xasprintf("--git-dir=%s", gitdir);
        _cleanup_free_ char *a_wt = xasprintf("--work-tree=%s", work_tree);
        _cleanup_free_ char *e_home = xasprintf("HOME=%s", p->state_dir);
        char *argv[64] = {
                (char *) "git",
                a_gitdir,
                a_wt,
                (char *) "-c",
                (char *) "core.hooksPath=/dev/null",
                (char *) "-c",
                (char *) "core.fsmonitor=false",
                (char *) "-c",
                (char *) "core.autocrlf=false",
                (char *) "-c",
                (char *) "core.symlinks=true",
                (char *) "-c",
                (char *) "core.excludesFile=/dev/null",
                (char *) "-c",
                (char *) "core.attributesFile=/dev/null",
                (char *) "-c",
                (char *) "core.pager=cat",
                (char *) "-c",
                (char *) "safe.directory=*",
                (char *) "-c",
                (char *) "gc.auto=0",
                (char *) "-c",
                (char *) "commit.gpgsign=false",
                (char *) "-c",
                (char *) "diff.external=",
                (char *) "-c",
                (char *) "user.name=nucleus",
                (char *) "-c",
                (char *) "user.email=nucleus@localhost",
        };
        size_t n = 0;
        while (argv[n])
                n++;
        for (char **a = args; *a && n < ELEMENTSOF(argv) - 1; a++)
                argv[n++] = *a;
        argv[n] = NULL;
        /* Our fixed settings, then the policy's git hardening list (the same pinned
         * config as agent commands get, so nothing in the workspace can make this root git
         * run a program). */
        char *envp[112] = {};
        size_t ne = 0;
        /* The caller's settings first: the first of two equal names wins. */
        for (char *const *e = extra_env; e && *e && ne < 16; e++)
                envp[ne++] = *e;
        envp[ne++] = (char *) "PATH=/usr/local/bin:/usr/bin:/bin";
        envp[ne++] = e_home;
        envp[ne++] = (char *) "LANG=C";
        envp[ne++] = (char *) "GIT_OPTIONAL_LOCKS=0";
        /* An image imported from an OCI archive has Nucleus's git on the system disk (its loader
         * and libraries in /nucleus/lib, docs/images.md): git and every git it starts use it. */
        bool own_git = access(PROXY_INITRAMFS_GIT, X_OK) == 0;
        if (own_git) {
                envp[ne++] = (char *) "LD_LIBRARY_PATH=/nucleus/lib";
                envp[ne++] = (char *) "GIT_EXEC_PATH=/nucleus/bin";
        }
        for (const char *const *g = policy_git_hardening_env(); *g && ne < ELEMENTSOF(envp) - 1; g++)
                envp[ne++] = (char *) *g;
        envp[ne] = NULL;
        int out[2];
        _cleanup_close_ int errfd = memfd_create("git-stderr", MFD_CLOEXEC);
        if (errfd < 0)
                return -errno;
        int in[2] = { -EBADF, -EBADF };
        if (feed && pipe2(in, O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(out, O_CLOEXEC) < 0) {
                safe_close(in[0]), safe_close(in[1]);
                return -errno;
        }
        pid_t pid = fork();
        if (pid < 0) {
                safe_close(out[0]), safe_close(out[1]), safe_close(in[0]), safe_close(in[1]);
                return -errno;
        }
        if (pid == 0) {
                int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
                int src = feed ? in[0] : in_fd >= 0 ? in_fd : devnull;
                if (devnull < 0 || dup2(src, 0) < 0 || dup2(out[1], 1) < 0 || dup2(errfd, 2) < 0)
                        _exit(127);
                (void) fd_close_all_from(3, NULL, 0);
                (void) signal(SIGPIPE, SIG_DFL);
                if (own_git)
                        execve(PROXY_INITRAMFS_GIT, argv, envp);
                else {
                        execve("/usr/bin/git", argv, envp);
                        execve("/bin/git", argv, envp);
                }
                _exit(127);
        }
        safe_close(out[1]);
        int feed_r = 0;
        if (feed) {
                /* The child's stdout stays quiet while it reads stdin (fast-import --quiet). */
                safe_close(in[0]);
                feed_r = feed(in[1], userdata);
                safe_close(in[1]);
        }
        _cleanup_free_ char *buf = NULL;
        size_t got = 0;
        bool overflow = false;
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + GIT_TIMEOUT_USEC;
        char tmp[65536];
        for (;;) {
                /* git runs inside the channel loop's turn (a big baseline takes minutes on TCG):
                 * while it works, tell the node every few seconds that this guest is alive, so
                 * its liveness watch does not fail the pod. */
                struct pollfd pfd = { .fd = out[0], .events = POLLIN };
                int pr = poll(&pfd, 1, 2000);
                if (pr < 0 && errno == EINTR)
                        continue;
                if (pr == 0) {
                        proxy_keepalive(p);
                        if (now_usec(CLOCK_MONOTONIC) > deadline) {
                                (void) kill(pid, SIGKILL);
                                break;
                        }
                        continue;
                }
                ssize_t k = read(out[0], tmp, sizeof tmp);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                if (now_usec(CLOCK_MONOTONIC) > deadline) {
                        (void) kill(pid, SIGKILL);
                        break;
                }
                if (!ret_out)
                        continue;
                if (got + (size_t) k > max) {
                        overflow = true;
                        continue;
                }
                buf = xrealloc(buf, got + (size_t) k + 1);
                memcpy(buf + got, tmp, (size_t) k);
                got += (size_t) k;
        }
        safe_close(out[0]);
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                git_stderr_collect(errfd);
                if (git_last_error[0])
                        log_warning("git %s: %s", args[0], git_last_error);
                if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                        return -ENOENT;
                /* git words it "No space left on device" or, for pack writes, "Out of diskspace". */
                return strstr(git_last_error, "No space left on device") ||
                                strstr(git_last_error, "Out of diskspace")
                        ? -ENOSPC
                        : -EIO;
        }
        if (feed_r < 0)
                return feed_r;
        if (overflow)
                return -EFBIG;
        if (ret_out) {
                if (!buf)
                        buf = xstrdup("");
                buf[got] = 0;
                *ret_out = TAKE_PTR(buf);
                *ret_n = got;
        }
        return 0;
}

static int git_run(Proxy *p, char **args, size_t max, char **ret_out, size_t *ret_n) {
        return proxy_git_exec(p, p->workspace_real, -1, NULL, NULL, NULL, args, max, ret_out, ret_n);
}

/* Files under .git are never seen by git itself: record a digest manifest for the flagged
 * ones (.git/config and everything under .git/hooks and .git/info) at baseline time and compare at export. */
static void manifest_walk(Proxy *p, int dirfd, const char *rel, json_t *m, unsigned depth) {
        if (depth > 8 || json_object_size(m) > 10000)
                return;
        int dup_fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dup_fd < 0)
                return;
        DIR *d = fdopendir(dup_fd);
        if (!d) {
                safe_close(dup_fd);
                return;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                _cleanup_free_ char *child = xasprintf("%s/%s", rel, de->d_name);
                struct stat st;
                if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0) {
                                manifest_walk(p, sub, child, m, depth + 1);
                                safe_close(sub);
                        }
                        continue;
                }
                if (!proxy_flag_reason(child))
                        continue;
                char digest[65] = "link";
                if (S_ISREG(st.st_mode)) {
                        _cleanup_close_ int fd = openat(
                                dirfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
                        _cleanup_free_ char *data = NULL;
                        size_t n;
                        if (fd < 0 || read_full_fd(fd, 16 * 1024 * 1024, &data, &n) < 0)
                                strcpy(digest, "unreadable");
                        else
                                sha256_hex(data, n, digest);
                        /* Mode matters: a hook becoming executable is a change. */
                        size_t l = strlen(digest);
                        snprintf(
                                digest + NUCLEUS_MIN(l, (size_t) 56),
                                9,
                                ":%o",
                                (unsigned) (st.st_mode & 0111) ? 1 : 0);
                } else if (S_ISLNK(st.st_mode)) {
                        char target[256] = {};
                        ssize_t k = readlinkat(dirfd, de->d_name, target, sizeof target - 1);
                        sha256_hex(target, k > 0 ? (size_t) k : 0, digest);
                }
                json_object_set_new(m, child, json_string(digest));
        }
        closedir(d);
}

json_t *proxy_flag_manifest(Proxy *p) {
        json_t *m = json_object();
        _cleanup_close_ int gfd = proxy_openat2(p, -1, ".git", O_RDONLY | O_DIRECTORY, 0, RESOLVE_NO_SYMLINKS);
        if (gfd >= 0)
                manifest_walk(p, gfd, ".git", m, 0);
        return m;
}

int proxy_baseline_record(Proxy *p, char **ret_commit) {
        _cleanup_free_ char *gitdir = proxy_baseline_dir(p);
        int r;
        struct stat st;
        if (stat(gitdir, &st) < 0) {
                char *init[] = { (char *) "init", (char *) "-q", NULL };
                r = git_run(p, init, 0, NULL, NULL);
                if (r < 0)
                        return r;
        }
        /* Every blob straight into one pack (git's bulk check-in streams any file over
         * core.bigFileThreshold into a pack): 30,000 loose objects could exhaust the scratch
         * disk's inodes. The threshold is set for this add only: diff treats files over it as
         * binary. The repack below folds the trees and the commit in as well. */
        char *add[] = { (char *) "-c",
                        (char *) "core.bigFileThreshold=1",
                        (char *) "add",
                        (char *) "-A",
                        (char *) "--",
                        (char *) ".",
                        NULL };
        r = git_run(p, add, 0, NULL, NULL);
        if (r < 0)
                return r;
        char *commit[] = { (char *) "commit",
                           (char *) "-q",
                           (char *) "--allow-empty",
                           (char *) "--no-verify",
                           (char *) "-m",
                           (char *) "nucleus baseline",
                           NULL };
        r = git_run(p, commit, 0, NULL, NULL);
        if (r < 0)
                return r;
        char *rev[] = { (char *) "rev-parse", (char *) "HEAD", NULL };
        _cleanup_free_ char *out = NULL;
        size_t n;
        r = git_run(p, rev, 128, &out, &n);
        if (r < 0)
                return r;
        out[strcspn(out, "\n")] = 0;
        char *repack[] = { (char *) "repack", (char *) "-a", (char *) "-d", (char *) "-q", NULL };
        r = git_run(p, repack, 0, NULL, NULL);
        if (r < 0)
                return r;

        json_t *m = proxy_flag_manifest(p);
        _cleanup_free_ char *text = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(m);
        _cleanup_close_ int sfd = open(p->state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (sfd < 0)
                return -errno;
        r = write_file_atomic_at(sfd, "flag-manifest.json", text, strlen(text), 0600);
        if (r < 0)
                return r;
        *ret_commit = TAKE_PTR(out);
        return 0;
}

/* ---- the workspace's own repository (history uploaded by the host) ---- */

typedef struct UserIdentity {
        char *name, *email;
} UserIdentity;

/* user.name / user.email of an uploaded config (git's own syntax, src/lib/policy/git-config.c),
 * kept only when the value can be written back bare: printable, no quote, backslash, comment
 * character or surrounding blank. Everything else in the file is ignored. */
static int identity_entry(const char *key, const char *value, unsigned line, void *userdata) {
        UserIdentity *id = userdata;
        char **dst = streq(key, "user.name") ? &id->name : streq(key, "user.email") ? &id->email : NULL;
        if (!dst || !value)
                return 0;
        size_t n = strlen(value);
        if (n == 0 || n > 256 || value[0] == ' ' || value[n - 1] == ' ')
                return 0;
        for (const char *c = value; *c; c++)
                if ((unsigned char) *c < 0x20 || *c == 0x7f || strchr("\"\\;#", *c))
                        return 0;
        free(*dst);
        *dst = xstrdup(value);
        return 0;
}

/* When the upload carried a repository (.git/HEAD), replace whatever config came with it by a
 * fresh one: the core settings of a plain non-bare repository and, from the uploaded one, only
 * user.name and user.email. Nothing that makes git run a program or reach elsewhere (hooks,
 * fsmonitor, filters, includes, alternates, remotes, credentials, extra headers) can survive,
 * because nothing else is copied. The file is the agent's (its git must read it); the file
 * ops' policy still refuses to show .git/config. Returns 1 when a repository was set up, 0
 * when there is none, <0 on errors. */
static int workspace_repo_finish(Proxy *p) {
        _cleanup_close_ int gfd = proxy_openat2(p, -1, ".git", O_RDONLY | O_DIRECTORY, 0, RESOLVE_NO_SYMLINKS);
        if (gfd < 0)
                return gfd == -ENOENT ? 0 : gfd;
        struct stat st;
        if (fstatat(gfd, "HEAD", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                return 0;
        _cleanup_free_ char *old = NULL, *perr = NULL;
        UserIdentity id = {};
        size_t n = 0;
        _cleanup_close_ int cfd = openat(gfd, "config", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (cfd >= 0 && fstat(cfd, &st) == 0 && S_ISREG(st.st_mode) && read_full_fd(cfd, 65536, &old, &n) >= 0)
                (void) git_config_parse(old, n, identity_entry, &id, &perr);
        _cleanup_free_ char *name = id.name, *email = id.email, *cerr = NULL;
        _cleanup_free_ char *text = xasprintf(
                "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
                "\tlogallrefupdates = true\n[user]\n\tname = %s\n\temail = %s\n",
                name ?: "agent",
                email ?: "agent@nucleus.invalid");
        /* Our own text passes the allow list the proxy enforces on agent git commands. */
        if (git_config_check_text(text, strlen(text), &cerr) < 0) {
                log_error("fresh .git/config refused by the git config allow list: %s", cerr);
                return -EPERM;
        }
        if (unlinkat(gfd, "config", 0) < 0 && errno != ENOENT)
                return -errno;
        _cleanup_close_ int fd = openat(
                gfd, "config", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        int r = loop_write(fd, text, strlen(text));
        if (r < 0)
                return r;
        if (fchown(fd, p->agent_uid, p->agent_gid) < 0 || fchmod(fd, 0644) < 0)
                return -errno;
        return 1;
}

/* ---- import ---- */

typedef struct ImportJob {
        Job job;
        TarReader tar;
        int fd;         /* current file being written, or -EBADF */
        uint64_t bytes; /* total bytes received */
        uint64_t files, dirs, symlinks, hardlinks;
        uint64_t skipped_git; /* nested .git entries not materialized */
        uint64_t protected;   /* read-blocked entries made root-only */
        bool failed;          /* an error answer was sent; swallow the rest of the stream */
        ErrorKind kind;       /* error to report from a callback */
        char *msg;
} ImportJob;

static void import_job_free(Job *j) {
        ImportJob *ij = (ImportJob *) j;
        safe_close(ij->fd);
        tar_reader_done(&ij->tar);
        free(ij->msg);
        request_free(j->req);
        free(ij);
}

_printf_(4, 0) static int import_error(ImportJob *ij, ErrorKind kind, int r, const char *fmt, const char *path) {
        _cleanup_free_ char *vis = string_make_visible(path);
        free(ij->msg);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        _cleanup_free_ char *m = xasprintf(fmt, vis); /* every caller passes a literal with one %s */
#pragma GCC diagnostic pop
        /* The real cause reaches the user: a full scratch disk is named as such, with the knob
         * that makes it larger, never as a bare "Input/output error". */
        if (r == -ENOSPC || r == -EDQUOT) {
                ij->msg = xasprintf(
                        "%s: %s (the pod's scratch disk is full; give it a larger one: "
                        "resources.scratch_mib in the pod spec, nucleus run --scratch-mib)",
                        m,
                        strerror(-r));
                kind = ERROR_KIND_TOO_LARGE;
        } else if (kind == ERROR_KIND_IO_ERROR && r < 0)
                ij->msg = xasprintf("%s: %s", m, strerror(-r));
        else
                ij->msg = TAKE_PTR(m);
        ij->kind = kind;
        return r;
}

/* Normalize an archive name: relative, no '..', no empty result. "." entries are skipped. */
static int import_name(ImportJob *ij, const char *raw, char **ret) {
        Proxy *p = ij->job.proxy;
        ErrorKind k;
        _cleanup_free_ char *msg = NULL;
        if (raw[0] == '/')
                return import_error(
                        ij, ERROR_KIND_SANDBOX_ESCAPE, -EXDEV, "import: entry '%s' has an absolute name", raw);
        for (const char *s = raw; *s;) {
                const char *e = strchrnul(s, '/');
                if (e - s == 2 && s[0] == '.' && s[1] == '.')
                        return import_error(
                                ij, ERROR_KIND_SANDBOX_ESCAPE, -EXDEV, "import: entry '%s' contains '..'", raw);
                s = *e ? e + 1 : e;
        }
        if (proxy_path_normalize(p, raw, ret, &k, &msg) < 0)
                return import_error(ij, k, -EINVAL, "import: bad entry name '%s'", raw);
        return 0;
}

/* mkdir -p parent (never through symlinks: proxy-path.h says why) and return an O_PATH fd of
 * it. */
static int import_parent(ImportJob *ij, const char *parent) {
        return proxy_mkdir_beneath(ij->job.proxy, -1, parent, 0755, PROXY_MKDIR_AGENT_OWNED);
}

/* Remove a non-directory leaf that an earlier entry created (duplicate names). */
static int clear_leaf(int dfd, const char *leaf) {
        struct stat st;
        if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        return RET_NERRNO(unlinkat(dfd, leaf, 0));
}

/* Give a materialized entry its owner and mode: the agent's, or root's with 0600/0700 when
 * the policy blocks the path (paths.blocked must hold against commands too, which
 * read files with the agent uid, not only against the file ops). */
static int import_set_owner(ImportJob *ij, int fd, const char *rel, mode_t mode, bool dir) {
        Proxy *p = ij->job.proxy;
        if (proxy_path_read_blocked(p, rel)) {
                ij->protected ++;
                if (fchown(fd, 0, 0) < 0 || fchmod(fd, dir ? 0700 : 0600) < 0)
                        return -errno;
                return 0;
        }
        if (fchown(fd, p->agent_uid, p->agent_gid) < 0 || fchmod(fd, mode) < 0)
                return -errno;
        return 0;
}

/* The top-level ".git" directory and what lies beneath it (without a further ".git"), or a
 * path without any ".git" component. */
static bool import_git_entry_allowed(const char *rel, TarEntryType type) {
        if (streq(rel, ".git"))
                return type == TAR_ENTRY_DIR;
        if (startswith(rel, ".git/"))
                return !proxy_path_has_git_component(rel + 5);
        return !proxy_path_has_git_component(rel);
}

static int import_entry(void *ud, const TarEntry *e) {
        ImportJob *ij = ud;
        Proxy *p = ij->job.proxy;
        _cleanup_free_ char *rel = NULL, *parent = NULL, *leaf = NULL;
        _cleanup_close_ int dfd = -EBADF;
        int r;

        if (ij->tar.n_entries > IMPORT_MAX_ENTRIES)
                return import_error(
                        ij, ERROR_KIND_TOO_LARGE, -E2BIG, "import: more than 1000000 entries%s", "");
        r = import_name(ij, e->path, &rel);
        if (r < 0)
                return r;
        if (e->type == TAR_ENTRY_CHAR || e->type == TAR_ENTRY_BLOCK || e->type == TAR_ENTRY_FIFO)
                return import_error(
                        ij,
                        ERROR_KIND_INVALID_REQUEST,
                        -EPERM,
                        "import: entry '%s' is a device or fifo; such entries are refused",
                        e->path);
        if (streq(rel, "."))
                return 0; /* the root itself */
        /* Git obeys any ".git" it discovers (a gitdir pointer file, a nested
         * repository's config/hooks/commondir). Only the repository's own top-level ".git"
         * directory is materialized; any other entry with a ".git" component (nested
         * repositories, submodule pointer files, a ".git" file or symlink at the root) is
         * skipped and counted in the answer ("skipped_git"). Submodules thus arrive as plain
         * directories: the baseline and the exported patch treat them as ordinary files. */
        if (!import_git_entry_allowed(rel, e->type)) {
                ij->skipped_git++;
                return 0;
        }
        r = proxy_path_split(rel, &parent, &leaf);
        if (r < 0)
                return import_error(ij, ERROR_KIND_INVALID_REQUEST, r, "import: bad entry name '%s'", e->path);
        dfd = import_parent(ij, parent);
        if (dfd < 0)
                return import_error(
                        ij,
                        proxy_errno_kind(dfd) == ERROR_KIND_SANDBOX_ESCAPE ? ERROR_KIND_SANDBOX_ESCAPE
                                                                           : ERROR_KIND_IO_ERROR,
                        dfd,
                        "import: entry '%s' would be created through a symlink or non-directory",
                        e->path);
        mode_t mode = e->mode & 0777; /* never setuid/setgid/sticky */

        switch (e->type) {
        case TAR_ENTRY_DIR: {
                if (mkdirat(dfd, leaf, mode | 0700) < 0 && errno != EEXIST)
                        return import_error(
                                ij, ERROR_KIND_IO_ERROR, -errno, "import: mkdir '%s' failed", e->path);
                _cleanup_close_ int fd = proxy_openat2(
                        p, dfd, leaf, O_RDONLY | O_DIRECTORY, 0, RESOLVE_NO_SYMLINKS);
                if (fd < 0)
                        return import_error(
                                ij,
                                ERROR_KIND_SANDBOX_ESCAPE,
                                fd,
                                "import: entry '%s' is not a directory in the workspace",
                                e->path);
                if (import_set_owner(ij, fd, rel, mode | 0700, true) < 0)
                        return import_error(
                                ij, ERROR_KIND_IO_ERROR, -errno, "import: cannot set owner of '%s'", e->path);
                ij->dirs++;
                return 0;
        }
        case TAR_ENTRY_SYMLINK:
                /* Stored verbatim and never followed: later entries resolve with
                 * RESOLVE_NO_SYMLINKS and leaves are created O_EXCL|O_NOFOLLOW. */
                if ((r = clear_leaf(dfd, leaf)) < 0)
                        return import_error(
                                ij,
                                ERROR_KIND_ALREADY_EXISTS,
                                r,
                                "import: '%s' already exists as a directory",
                                e->path);
                if (symlinkat(e->link, dfd, leaf) < 0)
                        return import_error(
                                ij, ERROR_KIND_IO_ERROR, -errno, "import: symlink '%s' failed", e->path);
                if (fchownat(dfd, leaf, p->agent_uid, p->agent_gid, AT_SYMLINK_NOFOLLOW) < 0)
                        return import_error(
                                ij, ERROR_KIND_IO_ERROR, -errno, "import: cannot set owner of '%s'", e->path);
                ij->symlinks++;
                return 0;
        case TAR_ENTRY_HARDLINK: {
                /* Materialized as a copy of an earlier regular file of this archive's tree:
                 * no hard links are ever created (read, write and edit refuse them). */
                _cleanup_free_ char *target = NULL;
                r = import_name(ij, e->link, &target);
                if (r < 0)
                        return r;
                _cleanup_close_ int src = proxy_openat2(
                        p, -1, target, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0, RESOLVE_NO_SYMLINKS);
                struct stat st;
                /* nlink == 1: import never makes hard links, so a source with more
                 * names was linked by someone else (a command, to a file outside the tree). */
                if (src < 0 || fstat(src, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1)
                        return import_error(
                                ij,
                                src == -EXDEV || src == -ELOOP ? ERROR_KIND_SANDBOX_ESCAPE
                                                               : ERROR_KIND_INVALID_REQUEST,
                                -EINVAL,
                                "import: hard link '%s' does not name an earlier regular file",
                                e->path);
                if ((r = clear_leaf(dfd, leaf)) < 0)
                        return import_error(
                                ij,
                                ERROR_KIND_ALREADY_EXISTS,
                                r,
                                "import: '%s' already exists as a directory",
                                e->path);
                _cleanup_close_ int fd = openat(
                        dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, st.st_mode & 0777);
                if (fd < 0)
                        return import_error(
                                ij, ERROR_KIND_IO_ERROR, -errno, "import: create '%s' failed", e->path);
                if (import_set_owner(ij, fd, rel, st.st_mode & 0777, false) < 0)
                        return import_error(
                                ij, ERROR_KIND_IO_ERROR, -errno, "import: cannot set owner of '%s'", e->path);
                for (;;) {
                        ssize_t k = copy_file_range(src, NULL, fd, NULL, 1 << 30, 0);
                        if (k < 0)
                                return import_error(
                                        ij, ERROR_KIND_IO_ERROR, -errno, "import: copy for '%s' failed", e->path);
                        if (k == 0)
                                break;
                }
                ij->hardlinks++;
                return 0;
        }
        case TAR_ENTRY_FILE: {
                if (ij->bytes + e->size > p->cfg.limits.max_import_bytes)
                        return import_error(
                                ij,
                                ERROR_KIND_TOO_LARGE,
                                -EFBIG,
                                "import: archive content exceeds the import limit at '%s'",
                                e->path);
                if ((r = clear_leaf(dfd, leaf)) < 0)
                        return import_error(
                                ij,
                                ERROR_KIND_ALREADY_EXISTS,
                                r,
                                "import: '%s' already exists as a directory",
                                e->path);
                int fd = openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
                if (fd < 0)
                        return import_error(
                                ij, ERROR_KIND_IO_ERROR, -errno, "import: create '%s' failed", e->path);
                if (import_set_owner(ij, fd, rel, mode, false) < 0) {
                        safe_close(fd);
                        return import_error(
                                ij, ERROR_KIND_IO_ERROR, -errno, "import: cannot set owner of '%s'", e->path);
                }
                ij->fd = fd;
                ij->files++;
                return 0;
        }
        case TAR_ENTRY_CHAR:
        case TAR_ENTRY_BLOCK:
        case TAR_ENTRY_FIFO:
        default:
                return -EINVAL;
        }
}

static int import_data(void *ud, const void *buf, size_t n) {
        ImportJob *ij = ud;
        ij->bytes += n;
        if (ij->fd < 0)
                return 0;
        int r = loop_write(ij->fd, buf, n);
        if (r < 0)
                return import_error(
                        ij,
                        r == -EFBIG ? ERROR_KIND_TOO_LARGE : ERROR_KIND_IO_ERROR,
                        r,
                        "import: write failed%s",
                        "");
        return 0;
}

static int import_entry_end(void *ud) {
        ImportJob *ij = ud;
        ij->fd = safe_close(ij->fd);
        return 0;
}

static const TarCallbacks import_callbacks = {
        .entry = import_entry,
        .data = import_data,
        .entry_end = import_entry_end,
};

static void import_fail(ImportJob *ij, int r) {
        Request *req = TAKE_PTR(ij->job.req);
        ij->failed = true;
        ij->fd = safe_close(ij->fd);
        if (ij->msg)
                request_fail(req, ij->kind, "%s", ij->msg);
        else
                request_fail(
                        req,
                        ERROR_KIND_INVALID_REQUEST,
                        "import: malformed tar stream: %s",
                        ij->tar.error[0] ? ij->tar.error : strerror(-r));
}

static void import_on_frame(Job *j, Frame *f) {
        ImportJob *ij = (ImportJob *) j;
        Proxy *p = j->proxy;
        int r;

        if (ij->failed) {
                /* Swallow the rest of a refused stream; forget the job at its end. */
                if (f->type != FRAME_DATA)
                        proxy_remove_job(p, j);
                return;
        }
        if (f->type == FRAME_CANCEL) {
                Request *req = TAKE_PTR(j->req);
                request_fail(
                        req,
                        ERROR_KIND_INVALID_REQUEST,
                        "import: cancelled by the node; the workspace may hold a partial tree");
                proxy_remove_job(p, j);
                return;
        }
        if (f->type == FRAME_DATA) {
                r = tar_reader_feed(&ij->tar, f->payload, f->length, &import_callbacks, ij);
                if (r < 0)
                        import_fail(ij, r);
                return;
        }
        /* FRAME_END */
        r = tar_reader_finish(&ij->tar);
        if (r < 0) {
                import_fail(ij, r);
                proxy_remove_job(p, j);
                return;
        }
        Request *req = TAKE_PTR(j->req);
        _cleanup_free_ char *commit = NULL;
        r = workspace_repo_finish(p);
        if (r < 0) {
                request_settle(req, p->cfg.costs.base_usd_micros);
                request_fail(
                        req,
                        ERROR_KIND_IO_ERROR,
                        "import: unpacked, but setting up the uploaded repository's .git/config failed: %s",
                        strerror(-r));
                proxy_remove_job(p, j);
                return;
        }
        bool have_repo = r > 0;
        r = proxy_baseline_record(p, &commit);
        request_settle(req, p->cfg.costs.base_usd_micros);
        if (r == -ENOSPC)
                request_fail(
                        req,
                        ERROR_KIND_TOO_LARGE,
                        "import: unpacked, but the scratch disk is full while recording the baseline "
                        "(No space left on device; git: %s); give the pod a larger disk "
                        "(resources.scratch_mib, nucleus run --scratch-mib)",
                        proxy_git_last_error());
        else if (r < 0)
                request_fail(
                        req,
                        r == -ENOENT ? ERROR_KIND_UNSUPPORTED : ERROR_KIND_IO_ERROR,
                        "import: unpacked, but recording the baseline with git failed (%s%s%s)",
                        strerror(-r),
                        proxy_git_last_error()[0] ? ": " : "",
                        proxy_git_last_error());
        else
                request_finish(
                        req,
                        json_pack(
                                "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:b}",
                                "entries",
                                (json_int_t) ij->tar.n_entries,
                                "files",
                                (json_int_t) ij->files,
                                "dirs",
                                (json_int_t) ij->dirs,
                                "symlinks",
                                (json_int_t) (ij->symlinks),
                                "bytes",
                                (json_int_t) ij->bytes,
                                "skipped_git",
                                (json_int_t) ij->skipped_git,
                                "protected",
                                (json_int_t) ij->protected,
                                "baseline",
                                commit,
                                "repository",
                                have_repo));
        proxy_remove_job(p, j);
}

void op_import(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { NULL };
        if (args_check_keys(req, keys) < 0 || request_check_deadline(req) < 0)
                return;
        /* Host-side op (the node uploads the task's files); no capability applies, but the
         * budget still counts it. */
        PolicyDecision d = { .verdict = POLICY_ALLOW, .message = xstrdup("import") };
        if (request_gate(req, &d, p->cfg.costs.base_usd_micros) < 0)
                return;
        ImportJob *ij = xnew0(ImportJob, 1);
        ij->job = (Job){ .proxy = p, .req = req, .on_frame = import_on_frame, .free = import_job_free };
        ij->fd = -EBADF;
        tar_reader_init(&ij->tar);
        proxy_add_job(p, &ij->job);
}
