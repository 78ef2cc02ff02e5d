/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The read-only rootfs: Debian minbase through mmdebstrap (or any rootfs tar, e.g. a docker
 * export, extracted with libarchive's secure flags since its contents are untrusted), then
 * customised (agent user uid 1000, mount points, /etc/resolv.conf pointing into /run), trimmed
 * (apt lists, caches, docs, logs) and scrubbed of per-machine secrets (ssh host keys,
 * machine-id), and finally made into an ext4 image with `mkfs.ext4 -d` (no loop mounts).
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "image-internal.h"
#include "log.h"
#include "string-util.h"

int image_rootfs_debootstrap(ImageCtx *ctx, const char *dir, const char *suite, char *const *packages) {
        _cleanup_free_ char *inc = strv_join(packages, ","), *incopt = xasprintf("--include=%s", inc);
        /* Docs, man pages and locales are never installed (copyright files are kept). */
        char *const argv[] = {
                (char *) "mmdebstrap",
                (char *) "--variant=minbase",
                (char *) "--mode=root",
                (char *) "--format=directory",
                incopt,
                (char *) "--dpkgopt=path-exclude=/usr/share/man/*",
                (char *) "--dpkgopt=path-exclude=/usr/share/info/*",
                (char *) "--dpkgopt=path-exclude=/usr/share/doc/*",
                (char *) "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                (char *) "--dpkgopt=path-exclude=/usr/share/locale/*",
                (char *) "--dpkgopt=path-exclude=/usr/share/lintian/*",
                (char *) suite,
                (char *) dir,
                NULL,
        };
        image_progress(ctx, "rootfs: mmdebstrap %s minbase + %s (about a minute)", suite, inc);
        return image_run(ctx, "mmdebstrap", argv, NULL);
}

int image_rootfs_import_tar(ImageCtx *ctx, const char *tar, const char *dir) {
        struct archive *a = archive_read_new(), *w = archive_write_disk_new();
        struct archive_entry *e;
        int r = 0, cwd = -EBADF;
        uint64_t n = 0;

        image_progress(ctx, "rootfs: importing %s", tar);
        archive_read_support_filter_all(a);
        archive_read_support_format_tar(a);
        archive_read_support_format_gnutar(a);
        archive_read_support_format_cpio(a);
        /* Untrusted archive: no "..", no absolute paths, no writing through symlinks. Owners and
         * modes are kept (the rootfs needs them), so this step runs as root. */
        archive_write_disk_set_options(
                w,
                ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                        ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                        ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | ARCHIVE_EXTRACT_UNLINK);
        archive_write_disk_set_standard_lookup(w);
        if (archive_read_open_filename(a, tar, 1 << 16) != ARCHIVE_OK) {
                r = log_error_errno(-EINVAL, "image: open %s: %s", tar, archive_error_string(a));
                goto out;
        }
        /* libarchive extracts relative to the cwd (absolute names are refused by design), so
         * the cwd is switched for the duration and restored; the builder is single-threaded. */
        cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cwd < 0 || chdir(dir) < 0) {
                r = log_error_errno(-errno, "image: chdir %s: %m", dir);
                goto out;
        }
        for (;;) {
                int k = archive_read_next_header(a, &e);
                if (k == ARCHIVE_EOF)
                        break;
                if (k < ARCHIVE_WARN) {
                        r = log_error_errno(-EBADMSG, "image: %s: %s", tar, archive_error_string(a));
                        goto out;
                }
                const char *p = archive_entry_pathname(e);
                /* Nothing may land on the mount points' contents the init relies on. */
                if (p &&
                    (startswith(p, "dev/") || startswith(p, "./dev/") || startswith(p, "proc/") ||
                     startswith(p, "./proc/") || startswith(p, "sys/") || startswith(p, "./sys/")) &&
                    archive_entry_filetype(e) != AE_IFDIR)
                        continue;
                k = archive_read_extract2(a, e, w);
                if (k < ARCHIVE_WARN) {
                        r = log_error_errno(
                                -EIO, "image: %s: extract %s: %s", tar, p ? p : "?", archive_error_string(w));
                        goto out;
                }
                if (++n % 5000 == 0)
                        image_progress(ctx, "rootfs: %llu entries imported", (unsigned long long) n);
        }
        image_progress(ctx, "rootfs: %llu entries imported", (unsigned long long) n);
out:
        if (cwd >= 0 && fchdir(cwd) < 0 && r == 0)
                r = log_error_errno(-errno, "image: restore cwd: %m");
        cwd = safe_close(cwd);
        archive_read_free(a);
        archive_write_free(w);
        return r;
}

/* Remove what matches the glob components comp[0..n) beneath the directory dfd. Nothing is
 * followed: a symlink where a directory is expected ends the walk there (trimming is an
 * economy, never a reason to leave the tree). */
static int trim_walk(int dfd, char **comp, size_t n) {
        if (!strpbrk(comp[0], "*?[")) {
                if (n == 1)
                        return image_remove_at(dfd, comp[0]);
                _cleanup_close_ int k = openat(dfd, comp[0], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (k < 0)
                        return errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? 0 : -errno;
                return trim_walk(k, comp + 1, n - 1);
        }
        int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                safe_close(fd);
                return r;
        }
        _cleanup_strv_free_ char **names = NULL;
        struct dirent *de;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..") && fnmatch(comp[0], de->d_name, 0) == 0)
                        strv_extend(&names, de->d_name);
        closedir(d);
        int r = 0;
        STRV_FOREACH(nm, names) {
                if (n == 1)
                        r = image_remove_at(dfd, *nm);
                else {
                        _cleanup_close_ int k = openat(
                                dfd, *nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        r = k < 0 ? 0 : trim_walk(k, comp + 1, n - 1);
                }
                if (r < 0)
                        break;
        }
        return r;
}

static int remove_glob(int rootfd, const char *pattern) {
        _cleanup_strv_free_ char **comp = NULL;
        _cleanup_free_ char *copy = xstrdup(pattern);
        char *save = NULL;
        for (char *t = strtok_r(copy, "/", &save); t; t = strtok_r(NULL, "/", &save))
                strv_extend(&comp, t);
        _cleanup_close_ int fd = image_open_in_root(rootfd, ".", O_PATH | O_DIRECTORY, false);
        if (fd < 0)
                return fd;
        return strv_length(comp) == 0 ? 0 : trim_walk(fd, comp, strv_length(comp));
}

/* True if an /etc/passwd-style file already has an entry with this numeric id (field 3). */
static bool has_id(const char *data, unsigned id) {
        char want[16];
        (void) snprintf(want, sizeof(want), "%u", id);
        for (const char *l = data; l && *l;) {
                const char *e = strchrnul(l, '\n');
                const char *f = l;
                for (int i = 0; i < 2 && f < e; i++) {
                        f = memchr(f, ':', (size_t) (e - f));
                        if (!f)
                                break;
                        f++;
                }
                if (f && f < e) {
                        const char *end = memchr(f, ':', (size_t) (e - f));
                        if (end && (size_t) (end - f) == strlen(want) && memcmp(f, want, strlen(want)) == 0)
                                return true;
                }
                l = *e ? e + 1 : e;
        }
        return false;
}

/* Append line to etc/FILE of the rootfs unless the user is there. The file is read beneath the
 * root (a symlink in an imported tree resolves inside it, never to the host's file) and
 * written in place of whatever etc/FILE was. */
static int append_line(int rootfd, int etcfd, const char *file, const char *line, mode_t mode, bool check_id) {
        _cleanup_free_ char *rel = xasprintf("etc/%s", file), *data = NULL;
        size_t n = 0;
        _cleanup_close_ int fd = image_open_in_root(rootfd, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY, true);
        if (fd < 0 && fd != -ENOENT)
                return log_error_errno(fd, "image: /etc/%s of the rootfs: %m", file);
        if (fd >= 0) {
                struct stat st;
                if (fstat(fd, &st) < 0)
                        return log_error_errno(-errno, "image: /etc/%s of the rootfs: %m", file);
                if (!S_ISREG(st.st_mode))
                        return log_error_errno(
                                -EINVAL, "image: /etc/%s of the rootfs is not a regular file", file);
                int r = read_full_fd(fd, 4u << 20, &data, &n);
                if (r < 0)
                        return log_error_errno(r, "image: read /etc/%s of the rootfs: %m", file);
        }
        if (check_id && data && has_id(data, IMAGE_AGENT_UID))
                return 0;
        if (!check_id && data && (startswith(data, "agent:") || strstr(data, "\nagent:")))
                return 0; /* shadow: keyed by name */
        _cleanup_free_ char *out = xasprintf(
                "%s%s%s\n", data ? data : "", (n > 0 && data[n - 1] != '\n') ? "\n" : "", line);
        return write_file_atomic_at(etcfd, file, out, strlen(out), mode);
}

/* sub (one or two components) as a real directory of the rootfs with this mode and owner:
 * whatever else is there (a symlink, a file) is replaced, never followed. */
static int ensure_dir(int rootfd, const char *sub, mode_t mode, uid_t uid, gid_t gid) {
        const char *slash = strrchr(sub, '/');
        _cleanup_free_ char *parent = slash ? xstrndup(sub, (size_t) (slash - sub)) : xstrdup(".");
        const char *base = slash ? slash + 1 : sub;
        _cleanup_close_ int pfd = image_open_in_root(rootfd, parent, O_PATH | O_DIRECTORY, false);
        if (pfd < 0)
                return pfd;
        struct stat st;
        if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
                int r = image_remove_at(pfd, base);
                if (r < 0)
                        return r;
        }
        if (mkdirat(pfd, base, mode) < 0 && errno != EEXIST)
                return -errno;
        _cleanup_close_ int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0)
                return -errno;
        return 0;
}

/* The tree is untrusted (an imported tar or OCI image may hold "tmp -> /" or "etc -> /etc"):
 * every step works beneath an fd of it. The mount points and /etc are made real directories
 * first, so that nothing later goes through a symlink in their place. */
int image_rootfs_customize(ImageCtx *ctx, const char *dir) {
        int r;

        image_progress(ctx, "rootfs: customizing (agent user, mount points) and trimming");
        _cleanup_close_ int rootfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (rootfd < 0)
                return log_error_errno(-errno, "image: open %s: %m", dir);

        static const struct {
                const char *path;
                mode_t mode;
                uid_t uid;
        } dirs[] = {
                { "proc", 0555, 0 }, { "sys", 0555, 0 },           { "dev", 0755, 0 },
                { "run", 0755, 0 },  { "tmp", 01777, 0 },          { "nucleus", 0755, 0 },
                { "home", 0755, 0 }, { "home/agent", 0700, 1000 }, { "workspace", 0755, 1000 },
                { "etc", 0755, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
                if ((r = ensure_dir(rootfd, dirs[i].path, dirs[i].mode, dirs[i].uid, dirs[i].uid)) < 0)
                        return log_error_errno(r, "image: create /%s: %m", dirs[i].path);

        static const char *const trim[] = {
                "var/lib/apt/lists/*",
                "var/cache/apt/*",
                "var/cache/debconf/*-old",
                "var/lib/dpkg/*-old",
                "var/log/*",
                "usr/share/doc/*/changelog*",
                "usr/share/man/*",
                "usr/share/info/*",
                "tmp/*",
                "var/tmp/*",
                /* Per-machine secrets and identities: never ship them in a shared image. */
                "etc/ssh/ssh_host_*",
                "var/lib/dbus/machine-id",
                "root/.bash_history",
                "etc/shadow-",
                "etc/gshadow-",
                "etc/passwd-",
                "etc/group-",
        };
        for (size_t i = 0; i < ELEMENTSOF(trim); i++)
                if ((r = remove_glob(rootfd, trim[i])) < 0)
                        return log_error_errno(r, "image: trim %s: %m", trim[i]);

        _cleanup_close_ int etcfd = image_open_in_root(rootfd, "etc", O_PATH | O_DIRECTORY, false);
        if (etcfd < 0)
                return log_error_errno(etcfd, "image: open %s/etc: %m", dir);
        if (faccessat(etcfd, "machine-id", F_OK, AT_SYMLINK_NOFOLLOW) == 0 &&
            (r = write_file_atomic_at(etcfd, "machine-id", "", 0, 0444)) < 0)
                return log_error_errno(r, "image: empty /etc/machine-id: %m");

        if ((r = append_line(
                     rootfd, etcfd, "passwd", "agent:x:1000:1000:Nucleus agent:/home/agent:/bin/sh", 0644, true)) <
                    0 ||
            (r = append_line(rootfd, etcfd, "group", "agent:x:1000:", 0644, true)) < 0 ||
            (r = append_line(rootfd, etcfd, "shadow", "agent:!:19000:0:99999:7:::", 0640, false)) < 0)
                return log_error_errno(r, "image: add the agent user (/etc/passwd, group, shadow): %m");

        /* The rootfs is read-only: DNS comes from a file the init writes under /run. */
        if ((r = image_remove_at(etcfd, "resolv.conf")) < 0)
                return log_error_errno(r, "image: remove /etc/resolv.conf: %m");
        if (symlinkat("../run/nucleus-net/resolv.conf", etcfd, "resolv.conf") < 0)
                return log_error_errno(-errno, "image: symlink /etc/resolv.conf: %m");
        return 0;
}

int image_rootfs_mkfs(ImageCtx *ctx, const char *dir, const char *out) {
        uint64_t bytes, entries;
        int r = image_tree_usage(dir, &bytes, &entries);
        if (r < 0)
                return log_error_errno(r, "image: measure %s: %m", dir);

        /* Room for metadata: +25 % + 64 MiB, in MiB; enough inodes for every entry. */
        uint64_t mib = (bytes + bytes / 4) / (1024 * 1024) + 64;
        uint64_t inodes = entries + entries / 4 + 4096;
        _cleanup_free_ char *size = xasprintf("%lluM", (unsigned long long) mib);
        _cleanup_free_ char *ninodes = xasprintf("%llu", (unsigned long long) inodes);
        _cleanup_free_ char *tmp = xasprintf("%s.tmp", out);
        (void) unlink(tmp);
        char *const argv[] = {
                (char *) "mkfs.ext4",
                (char *) "-q",
                (char *) "-F",
                (char *) "-L",
                (char *) IMAGE_ROOTFS_LABEL, /* how the guest finds it without a serial */
                (char *) "-m",
                (char *) "0",
                (char *) "-N",
                ninodes,
                (char *) "-O",
                (char *) "^has_journal", /* read-only image: no journal to replay */
                (char *) "-E",
                (char *) "lazy_itable_init=0,nodiscard",
                (char *) "-d",
                (char *) dir,
                tmp,
                size,
                NULL,
        };
        image_progress(
                ctx,
                "rootfs: mkfs.ext4 -d (%llu MiB, %llu entries)",
                (unsigned long long) mib,
                (unsigned long long) entries);
        if ((r = image_run(ctx, "mkfs.ext4", argv, NULL)) < 0) {
                (void) unlink(tmp);
                return r;
        }
        if (chmod(tmp, 0644) < 0 || rename(tmp, out) < 0) {
                r = -errno;
                (void) unlink(tmp);
                return log_error_errno(r, "image: rename to %s: %m", out);
        }
        return 0;
}
