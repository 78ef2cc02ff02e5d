/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Before a git command runs, every repository configuration git could read in the workspace
 * must hold only keys on the git configuration allow list (git-config.h; docs/policy.md).
 * Git cannot be told to ignore a repository's own config, and the agent can write one with any
 * program it may run (a script writing .git/config, a nested repository it creates), so the
 * proxy checks the files themselves: the walk starts at the workspace fd, opens one component
 * at a time with O_NOFOLLOW (no symlink is ever followed), and is bounded in depth and size.
 * Input: the agent's tree (untrusted).
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "git-config.h"
#include "proxy-path.h"
#include "proxy.h"
#include "string-util.h"

#define GITCHECK_MAX_DEPTH 64U
#define GITCHECK_MAX_DIRS 100000U

typedef struct GitCheck {
        Proxy *p;
        unsigned dirs;
        char *err; /* first problem, with the workspace-relative path */
} GitCheck;

_printf_(2, 3) static int check_fail(GitCheck *c, const char *fmt, ...) {
        va_list ap;
        if (!c->err) {
                va_start(ap, fmt);
                if (vasprintf(&c->err, fmt, ap) < 0)
                        abort();
                va_end(ap);
        }
        return -EPERM;
}

static char *join(const char *dir, const char *name) {
        return streq(dir, ".") ? xstrdup(name) : xasprintf("%s/%s", dir, name);
}

/* Read a small regular file (no symlink). -ENOENT if absent. */
static int read_small(int dirfd, const char *name, size_t max, char **ret, size_t *ret_n) {
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        struct stat st;
        if (fd < 0)
                return errno == ELOOP ? -ELOOP : -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if ((uint64_t) st.st_size > max)
                return -E2BIG;
        char *buf = xnew0(char, (size_t) st.st_size + 1);
        size_t n = 0;
        while (n < (size_t) st.st_size) {
                ssize_t k = read(fd, buf + n, (size_t) st.st_size - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                n += (size_t) k;
        }
        buf[n] = 0;
        *ret = buf;
        *ret_n = n;
        return 0;
}

/* One config file git reads (name in the gitdir fd). Absent is fine. */
static int check_config_file(GitCheck *c, int gitdir_fd, const char *rel_gitdir, const char *name) {
        _cleanup_free_ char *text = NULL, *err = NULL, *path = join(rel_gitdir, name);
        _cleanup_free_ char *vis = string_make_visible(path);
        size_t n = 0;
        int r = read_small(gitdir_fd, name, GIT_CONFIG_TEXT_MAX, &text, &n);
        if (r == -ENOENT)
                return 0;
        if (r == -ELOOP)
                return check_fail(c, "'%s' is a symlink (git would follow it)", vis);
        if (r < 0)
                return check_fail(c, "'%s' cannot be checked (%s)", vis, strerror(-r));
        if (git_config_check_text(text, n, &err) < 0)
                return check_fail(c, "'%s' %s", vis, err);
        return 0;
}

/* A path from a gitfile or commondir, relative to rel_dir or absolute, as a workspace-relative
 * path; -EXDEV when absolute and outside the workspace. */
static int resolve_in_workspace(GitCheck *c, const char *rel_dir, const char *path, char **ret) {
        if (path[0] == '/') {
                const char *in = startswith(path, c->p->workspace_real);
                if (!in || (in[0] != '/' && in[0] != 0))
                        return -EXDEV;
                *ret = xstrdup(in[0] ? in + 1 : ".");
        } else
                *ret = join(rel_dir, path);
        return 0;
}

static int check_gitdir(GitCheck *c, int fd, const char *rel, unsigned depth);

/* modules/<name>/ (submodules, nested) and worktrees/<name>/ inside a gitdir. */
static int check_gitdir_children(GitCheck *c, int gitdir_fd, const char *rel, const char *sub, unsigned depth) {
        _cleanup_close_ int sfd = openat(gitdir_fd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sfd < 0)
                return errno == ENOENT || errno == ENOTDIR
                        ? 0
                        : check_fail(c, "'%s/%s' cannot be read", rel, sub);
        _cleanup_free_ char *srel = join(rel, sub);
        DIR *d = fd_opendir_at(sfd);
        if (!d)
                return check_fail(c, "'%s' cannot be listed: %m", srel);
        struct dirent *de;
        int r = 0;
        while (r == 0 && (de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                _cleanup_close_ int cfd = openat(
                        sfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (cfd < 0)
                        continue; /* not a directory: git does not use it as a gitdir */
                _cleanup_free_ char *crel = join(srel, de->d_name);
                r = check_gitdir(c, cfd, crel, depth + 1);
        }
        closedir(d);
        return r;
}

static int check_gitdir(GitCheck *c, int fd, const char *rel, unsigned depth) {
        int r;
        if (depth > GITCHECK_MAX_DEPTH || ++c->dirs > GITCHECK_MAX_DIRS)
                return check_fail(c, "the workspace is too large or too deep to check its git configuration");
        if ((r = check_config_file(c, fd, rel, "config")) < 0 ||
            (r = check_config_file(c, fd, rel, "config.worktree")) < 0)
                return r;
        /* A commondir file (linked worktrees) makes git read that directory's config too. */
        _cleanup_free_ char *common = NULL;
        size_t n = 0;
        r = read_small(fd, "commondir", 4096, &common, &n);
        if (r == 0) {
                common[strcspn(common, "\r\n")] = 0;
                _cleanup_free_ char *target = NULL;
                r = resolve_in_workspace(c, rel, common, &target);
                if (r < 0)
                        return check_fail(c, "'%s/commondir' points git outside the workspace", rel);
                _cleanup_close_ int cfd = proxy_openat2(
                        c->p, -1, target, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS);
                if (cfd >= 0) {
                        if ((r = check_config_file(c, cfd, target, "config")) < 0 ||
                            (r = check_config_file(c, cfd, target, "config.worktree")) < 0)
                                return r;
                } else if (cfd != -ENOENT && cfd != -ENOTDIR)
                        return check_fail(
                                c, "'%s/commondir' points git outside the workspace or through a symlink", rel);
        }
        if ((r = check_gitdir_children(c, fd, rel, "modules", depth)) < 0 ||
            (r = check_gitdir_children(c, fd, rel, "worktrees", depth)) < 0)
                return r;
        return 0;
}

/* A ".git" file: "gitdir: PATH". PATH must be a directory inside the workspace; it is opened
 * from the workspace root through the proxy's own resolver (no symlinks, no escape). */
static int check_gitfile(GitCheck *c, int dirfd, const char *rel_dir, unsigned depth) {
        _cleanup_free_ char *text = NULL, *path = join(rel_dir, ".git");
        _cleanup_free_ char *vis = string_make_visible(path);
        size_t n = 0;
        int r = read_small(dirfd, ".git", 4096, &text, &n);
        if (r < 0)
                return check_fail(c, "'%s' cannot be checked", vis);
        const char *g = startswith(text, "gitdir:");
        if (!g)
                return 0; /* git refuses it ("invalid gitfile format") */
        g += strspn(g, " \t");
        text[strcspn(text, "\r\n")] = 0;
        _cleanup_free_ char *target = NULL;
        if (resolve_in_workspace(c, rel_dir, g, &target) < 0)
                return check_fail(c, "'%s' points git outside the workspace", vis);
        _cleanup_close_ int gfd = proxy_openat2(
                c->p, -1, target, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS);
        if (gfd == -ENOENT || gfd == -ENOTDIR)
                return 0; /* git fails: "not a git repository" */
        if (gfd < 0)
                return check_fail(c, "'%s' points git outside the workspace or through a symlink", vis);
        _cleanup_free_ char *tvis = string_make_visible(target);
        return check_gitdir(c, gfd, tvis, depth + 1);
}

static int walk(GitCheck *c, int fd, const char *rel, unsigned depth) {
        if (depth > GITCHECK_MAX_DEPTH || ++c->dirs > GITCHECK_MAX_DIRS)
                return check_fail(c, "the workspace is too large or too deep to check its git configuration");
        DIR *d = fd_opendir_at(fd);
        if (!d)
                return check_fail(c, "'%s' cannot be listed: %m", *rel ? rel : ".");
        struct dirent *de;
        int r = 0;
        while (r == 0 && (de = readdir(d))) {
                const char *name = de->d_name;
                unsigned char type = de->d_type;
                if (streq(name, ".") || streq(name, ".."))
                        continue;
                if (type == DT_UNKNOWN) {
                        struct stat st;
                        if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                continue;
                        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_LNK;
                }
                if (strcasecmp(name, ".git") == 0) {
                        if (type == DT_DIR) {
                                _cleanup_close_ int gfd = openat(
                                        fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                                _cleanup_free_ char *grel = join(rel, name);
                                r = gfd < 0 ? check_fail(c, "'%s' cannot be read", grel)
                                            : check_gitdir(c, gfd, grel, depth + 1);
                        } else if (type == DT_REG && streq(name, ".git"))
                                r = check_gitfile(c, fd, rel, depth);
                        else if (type == DT_LNK && streq(name, ".git")) {
                                /* Discovery follows it (stat), possibly out of the workspace. */
                                _cleanup_free_ char *grel = join(rel, name);
                                _cleanup_free_ char *vis = string_make_visible(grel);
                                r = check_fail(c, "'%s' is a symlink (git would follow it)", vis);
                        }
                        continue;
                }
                if (type != DT_DIR)
                        continue;
                _cleanup_close_ int cfd = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (cfd < 0)
                        continue;
                _cleanup_free_ char *crel = join(rel, name);
                r = walk(c, cfd, crel, depth + 1);
        }
        closedir(d);
        return r;
}

int proxy_git_config_check(Proxy *p, char **reterr) {
        GitCheck c = { .p = p };
        _cleanup_close_ int root = openat(p->workspace_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root < 0) {
                *reterr = xstrdup("the workspace cannot be read");
                return -EIO;
        }
        int r = walk(&c, root, ".", 0);
        if (r < 0) {
                *reterr = c.err ? c.err : xstrdup("git configuration check failed");
                return r;
        }
        free(c.err);
        return 0;
}
