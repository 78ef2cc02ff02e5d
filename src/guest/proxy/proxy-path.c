/* SPDX-License-Identifier: Apache-2.0 */
/* Workspace path resolution (see proxy-path.h). Input paths are untrusted. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "glob.h"
#include "proxy-path.h"
#include "string-util.h"

/* Resolve the prefix of rel up to and including its last ".." component through the kernel
 * (openat2 beneath the root, following in-root symlinks as any open does), so "link/../x" means
 * what it means to every program: the parent of the link's target. Returns the real relative
 * path of the prefix joined with the rest (which holds no ".."), or -errno. */
static int resolve_dotdot(Proxy *p, const char *rel, size_t prefix_len, char **ret) {
        _cleanup_free_ char *prefix = xstrndup(rel, prefix_len), *real = NULL;
        const char *rest = rel + prefix_len;
        int r;

        while (*rest == '/')
                rest++;
        if (!p->have_proc_fd) {
                /* Symlinks are never followed then (proxy_openat2 adds RESOLVE_NO_SYMLINKS): a
                 * ".." can only mean the lexical parent, but still check the kernel agrees. */
                _cleanup_close_ int fd = proxy_openat2(p, -1, prefix, O_PATH | O_DIRECTORY, 0, 0);
                if (fd < 0)
                        return fd;
                char *out = xmalloc(prefix_len + 2);
                size_t o = 0;
                for (const char *s = prefix; *s;) {
                        const char *e = strchrnul(s, '/');
                        size_t len = (size_t) (e - s);
                        if (len == 2 && s[0] == '.' && s[1] == '.') {
                                while (o > 0 && out[o - 1] != '/')
                                        o--;
                                if (o > 0)
                                        o--;
                        } else {
                                if (o > 0)
                                        out[o++] = '/';
                                memcpy(out + o, s, len);
                                o += len;
                        }
                        s = *e ? e + 1 : e;
                }
                out[o] = 0;
                real = out;
        } else {
                _cleanup_close_ int fd = proxy_openat2(p, -1, prefix, O_PATH | O_DIRECTORY, 0, 0);
                if (fd < 0)
                        return fd;
                r = proxy_fd_relpath(p, fd, prefix, &real);
                if (r < 0)
                        return r;
        }
        if (!*rest)
                *ret = real[0] ? TAKE_PTR(real) : xstrdup(".");
        else if (!real[0] || streq(real, "."))
                *ret = xstrdup(rest);
        else
                *ret = xasprintf("%s/%s", real, rest);
        return 0;
}

int proxy_path_normalize(Proxy *p, const char *path, char **ret_rel, ErrorKind *reterr_kind, char **reterr_msg) {
        size_t n = strlen(path);
        _cleanup_free_ char *vis = NULL, *collapsed = NULL;

        if (n == 0) {
                *reterr_kind = ERROR_KIND_INVALID_REQUEST;
                *reterr_msg = xstrdup("empty path");
                return -EINVAL;
        }
        if (n > PROXY_PATH_MAX) {
                *reterr_kind = ERROR_KIND_INVALID_REQUEST;
                *reterr_msg = xasprintf("path is %zu bytes, longer than %u", n, PROXY_PATH_MAX);
                return -ENAMETOOLONG;
        }
        /* Repeated slashes mean one slash to the kernel ("//workspace//.env" is
         * "/workspace/.env"): collapse them before anything is classified. */
        collapsed = xmalloc(n + 1);
        size_t c = 0;
        for (size_t i = 0; i < n; i++)
                if (path[i] != '/' || c == 0 || collapsed[c - 1] != '/')
                        collapsed[c++] = path[i];
        collapsed[c] = 0;

        const char *rest = collapsed;
        if (collapsed[0] == '/') {
                /* Absolute: only under the workspace root, compared component-wise so that
                 * "/workspace2" or "/workspace_evil" never match "/workspace". */
                const char *after = startswith(collapsed, p->workspace_path);
                if (!after || (*after != '/' && *after != 0)) {
                        vis = string_make_visible(path);
                        *reterr_kind = ERROR_KIND_SANDBOX_ESCAPE;
                        *reterr_msg = xasprintf(
                                "sandbox escape: path '%s' is outside the workspace %s", vis, p->workspace_path);
                        return -EXDEV;
                }
                rest = after;
        }

        /* Drop "" and "." components. ".." stays a component for the kernel to resolve (a
         * symlink's parent is not the lexical one); one that climbs above the root even
         * lexically is refused here already, as the kernel would refuse it (RESOLVE_BENEATH). */
        _cleanup_free_ char *out = xmalloc(n + 2);
        size_t o = 0, depth = 0, dotdot_end = 0;
        const char *s = rest;
        while (*s) {
                while (*s == '/')
                        s++;
                if (!*s)
                        break;
                const char *e = strchrnul(s, '/');
                size_t len = (size_t) (e - s);
                if (len == 1 && s[0] == '.') {
                        /* skip */
                } else {
                        bool dotdot = len == 2 && s[0] == '.' && s[1] == '.';
                        if (dotdot && depth == 0) {
                                vis = string_make_visible(path);
                                *reterr_kind = ERROR_KIND_SANDBOX_ESCAPE;
                                *reterr_msg = xasprintf(
                                        "sandbox escape: path '%s' climbs above the workspace root", vis);
                                return -EXDEV;
                        }
                        depth = dotdot ? depth - 1 : depth + 1;
                        if (o > 0)
                                out[o++] = '/';
                        memcpy(out + o, s, len);
                        o += len;
                        if (dotdot)
                                dotdot_end = o;
                }
                s = e;
        }
        if (o == 0)
                out[o++] = '.';
        out[o] = 0;
        if (dotdot_end > 0) {
                char *res = NULL;
                int r = resolve_dotdot(p, out, dotdot_end, &res);
                if (r < 0) {
                        vis = string_make_visible(path);
                        *reterr_kind = proxy_errno_kind(r);
                        *reterr_msg = xasprintf(
                                "%spath '%s': %s",
                                *reterr_kind == ERROR_KIND_SANDBOX_ESCAPE ? "sandbox escape: " : "",
                                vis,
                                strerror(-r));
                        return r;
                }
                *ret_rel = res;
                return 0;
        }
        *ret_rel = TAKE_PTR(out);
        return 0;
}

int proxy_openat2(Proxy *p, int dirfd, const char *rel, int flags, mode_t mode, uint64_t resolve) {
        struct open_how how = {
                .flags = (uint64_t) (flags | O_CLOEXEC),
                .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | resolve |
                        (p->have_proc_fd ? 0 : RESOLVE_NO_SYMLINKS),
        };
        int fd = (int) syscall(SYS_openat2, dirfd < 0 ? p->workspace_fd : dirfd, rel, &how, sizeof how);
        if (fd < 0)
                return -errno;
        return fd;
}

int proxy_mkdir_beneath(Proxy *p, int rootfd, const char *rel, mode_t mode, ProxyMkdirFlags flags) {
        uint64_t resolve = (flags & PROXY_MKDIR_FOLLOW_BENEATH) ? 0 : RESOLVE_NO_SYMLINKS;
        int fd = proxy_openat2(p, rootfd, rel, O_PATH | O_DIRECTORY, 0, resolve);
        if (fd != -ENOENT)
                return fd;

        /* Something is missing: walk the components, each prefix resolved from the root. */
        _cleanup_close_ int dfd = proxy_openat2(p, rootfd, ".", O_PATH | O_DIRECTORY, 0, resolve);
        if (dfd < 0)
                return dfd;
        _cleanup_free_ char *prefix = xstrdup(rel);
        for (char *s = prefix; *s;) {
                char *e = strchrnul(s, '/');
                bool last = *e == 0;
                *e = 0;
                int nfd = proxy_openat2(p, rootfd, prefix, O_PATH | O_DIRECTORY, 0, resolve);
                if (nfd == -ENOENT) {
                        if (mkdirat(dfd, s, mode) < 0 && errno != EEXIST)
                                return -errno;
                        if ((flags & PROXY_MKDIR_AGENT_OWNED) &&
                            fchownat(dfd, s, p->agent_uid, p->agent_gid, AT_SYMLINK_NOFOLLOW) < 0)
                                return -errno;
                        nfd = proxy_openat2(p, dfd, s, O_PATH | O_DIRECTORY, 0, RESOLVE_NO_SYMLINKS);
                }
                if (nfd < 0)
                        return nfd;
                safe_close(dfd);
                dfd = nfd;
                if (last)
                        break;
                *e = '/';
                s = e + 1;
        }
        return TAKE_FD(dfd);
}

int proxy_fd_relpath(Proxy *p, int fd, const char *fallback_rel, char **ret_rel) {
        char proc[64], buf[PROXY_PATH_MAX + 256];
        if (!p->have_proc_fd) {
                *ret_rel = xstrdup(fallback_rel);
                return 0;
        }
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(proc, buf, sizeof buf - 1);
        if (k < 0)
                return -errno;
        if ((size_t) k >= sizeof buf - 1)
                return -ENAMETOOLONG;
        buf[k] = 0;
        const char *after = startswith(buf, p->workspace_real);
        if (!after || (*after != '/' && *after != 0))
                return -EXDEV;
        while (*after == '/')
                after++;
        *ret_rel = xstrdup(*after ? after : ".");
        return 0;
}

ErrorKind proxy_errno_kind(int r) {
        switch (-r) {
        case EXDEV:
        case ELOOP:
                return ERROR_KIND_SANDBOX_ESCAPE;
        case ENOENT:
        case ENOTDIR:
                return ERROR_KIND_NOT_FOUND;
        case EEXIST:
                return ERROR_KIND_ALREADY_EXISTS;
        case EACCES:
        case EPERM:
                return ERROR_KIND_PATH_DENIED;
        case ENAMETOOLONG:
        case EINVAL:
                return ERROR_KIND_INVALID_REQUEST;
        case EFBIG:
        case E2BIG:
                return ERROR_KIND_TOO_LARGE;
        default:
                return ERROR_KIND_IO_ERROR;
        }
}

int proxy_path_split(const char *rel, char **ret_parent, char **ret_leaf) {
        const char *leaf = strrchr(rel, '/');
        leaf = leaf ? leaf + 1 : rel;
        if (streq(leaf, ".") || streq(leaf, ".."))
                return -EINVAL;
        const char *slash = strrchr(rel, '/');
        if (!slash) {
                *ret_parent = xstrdup(".");
                *ret_leaf = xstrdup(rel);
        } else {
                *ret_parent = xstrndup(rel, (size_t) (slash - rel));
                *ret_leaf = xstrdup(slash + 1);
        }
        return 0;
}

/* True when a path component is ".git" (".git" itself, "a/.git", ".git/x", "a/.git/b"). */
bool proxy_path_has_git_component(const char *rel) {
        for (const char *s = rel; s && *s;) {
                size_t l = strcspn(s, "/");
                if (l == 4 && strncasecmp(s, ".git", 4) == 0) /* ".GIT" is ".git" on a case-insensitive host */
                        return true;
                s += l;
                if (*s == '/')
                        s++;
        }
        return false;
}

bool proxy_path_read_blocked(Proxy *p, const char *rel) {
        if (!p->cfg.policy)
                return false;
        STRV_FOREACH(b, p->cfg.policy->paths.blocked)
                if (glob_match(*b, rel))
                        return true;
        return false;
}
