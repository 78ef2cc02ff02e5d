/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Applying one OCI/docker layer beneath a rootfs fd (image_oci_apply_layer; the archive and its
 * descriptions are image-oci.c). libarchive only decodes; every path is resolved with
 * openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) beneath the rootfs fd,
 * the last component is never followed, names with ".." or a leading "/" are refused, hard
 * links are made only between names inside the rootfs, setuid/setgid bits are stripped,
 * device nodes, fifos and sockets are dropped, extended attributes are never written, and
 * whiteouts (".wh.NAME", ".wh..wh..opq") are resolved the same way.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alloc-util.h"
#include "escape.h"
#include "fd-util.h"
#include "image-internal.h"
#include "json-util.h"
#include "log.h"
#include "string-util.h"

/* What an image may unpack to (file bytes, entries): a layer that decompresses without end
 * is refused rather than filling the host's disk. */
#define OCI_MAX_TREE_BYTES (UINT64_C(64) << 30)
#define OCI_MAX_ENTRIES (UINT64_C(4) << 20)
#define OCI_WHITEOUT ".wh."
#define OCI_OPAQUE ".wh..wh..opq"

/* Split an entry name into components: "./" prefixes and empty or "." components dropped;
 * absolute names and ".." refused. Returns the number of components (0: the root itself). */
static int split_name(const char *raw, char ***ret, char **ret_err) {
        _cleanup_strv_free_ char **c = NULL;
        if (isempty(raw))
                return image_oci_fail(ret_err, -EINVAL, "an entry without a name");
        if (raw[0] == '/')
                return image_oci_fail(ret_err, -EPERM, "'%s': absolute names are refused", raw);
        _cleanup_free_ char *d = xstrdup(raw);
        char *save = NULL;
        for (char *t = strtok_r(d, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
                if (streq(t, "."))
                        continue;
                if (streq(t, ".."))
                        return image_oci_fail(ret_err, -EPERM, "'%s': names with '..' are refused", raw);
                strv_extend(&c, t);
        }
        int n = (int) strv_length(c);
        *ret = TAKE_PTR(c);
        return n;
}

/* The directory holding the entry, beneath the root: missing directories are created (0755,
 * as a layer may leave its parents out); symlinks on the way resolve inside the root. */
static int open_parent(int rootfd, char *const *c, int n, bool create, char **ret_err) {
        _cleanup_free_ char *prefix = xstrdup(".");
        int fd = image_open_in_root(rootfd, ".", O_PATH | O_DIRECTORY, true);
        if (fd < 0)
                return image_oci_fail(ret_err, fd, "cannot open the rootfs");
        for (int i = 0; i < n - 1; i++) {
                char *np = xasprintf("%s/%s", prefix, c[i]);
                free(prefix);
                prefix = np;
                int k = image_open_in_root(rootfd, prefix, O_PATH | O_DIRECTORY, true);
                if (k == -ENOENT && create) {
                        /* c[i] is absent in fd (the previous component): make it there. A name
                         * that exists (a dangling symlink) is never replaced on the way. */
                        if (mkdirat(fd, c[i], 0755) < 0 && errno != EEXIST) {
                                k = -errno;
                                safe_close(fd);
                                return image_oci_fail(ret_err, k, "cannot create the directory %s", prefix + 2);
                        }
                        k = image_open_in_root(rootfd, prefix, O_PATH | O_DIRECTORY, true);
                }
                safe_close(fd);
                if (k < 0)
                        return image_oci_fail(
                                ret_err, k, "%s is not a directory inside the rootfs", prefix + 2);
                fd = k;
        }
        return fd;
}

static char *join_path(char *const *c, int n) {
        _cleanup_free_ char *s = xstrdup("");
        for (int i = 0; i < n; i++) {
                char *t = xasprintf("%s%s%s", s, i ? "/" : "", c[i]);
                free(s);
                s = t;
        }
        return TAKE_PTR(s);
}

/* ".wh..wh..opq": the directory's contents from earlier layers are gone; what this layer put
 * there (recorded in seen) stays. */
static int opaque_dir(int pfd, const char *dirpath, json_t *seen) {
        int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                safe_close(fd);
                return r;
        }
        int r = 0;
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                _cleanup_free_ char *p = isempty(dirpath) ? xstrdup(de->d_name)
                                                          : xasprintf("%s/%s", dirpath, de->d_name);
                if (!json_object_get(seen, p))
                        r = image_remove_at(dirfd(d), de->d_name);
        }
        closedir(d);
        return r;
}

typedef struct ApplyCtx {
        bool chown;
        ImageOciStats *st;
        char **err;
        const char *name;
} ApplyCtx;

static int set_owner_mode_time(ApplyCtx *c, int fd, struct archive_entry *e, mode_t mode) {
        if (c->chown && fchown(fd, (uid_t) archive_entry_uid(e), (gid_t) archive_entry_gid(e)) < 0)
                return image_oci_fail(c->err, -errno, "'%s': chown", c->name);
        /* chown already clears setuid/setgid on files; the mode never sets them again. */
        if (fchmod(fd, mode) < 0)
                return image_oci_fail(c->err, -errno, "'%s': chmod", c->name);
        struct timespec ts[2] = {
                { .tv_sec = archive_entry_mtime(e), .tv_nsec = 0 },
                { .tv_sec = archive_entry_mtime(e), .tv_nsec = 0 },
        };
        (void) futimens(fd, ts);
        return 0;
}

static mode_t safe_mode(ApplyCtx *c, struct archive_entry *e, bool dir) {
        mode_t m = archive_entry_perm(e);
        if (m & (S_ISUID | S_ISGID))
                c->st->stripped++;
        return m & (dir ? 01777 : 0777);
}

static int write_file(ApplyCtx *c, struct archive *a, int pfd, const char *base, struct archive_entry *e) {
        la_int64_t size = archive_entry_size(e);
        if (size < 0 || (uint64_t) size > OCI_MAX_TREE_BYTES - c->st->bytes)
                return image_oci_fail(
                        c->err,
                        -EFBIG,
                        "'%s': the image unpacks to more than %llu GiB",
                        c->name,
                        (unsigned long long) (OCI_MAX_TREE_BYTES >> 30));
        c->st->bytes += (uint64_t) size;
        int r = image_remove_at(pfd, base);
        if (r < 0)
                return image_oci_fail(c->err, r, "'%s': cannot replace what is there", c->name);
        _cleanup_close_ int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return image_oci_fail(c->err, -errno, "'%s': create", c->name);
        const void *buf;
        size_t len;
        la_int64_t off;
        for (;;) {
                int k = archive_read_data_block(a, &buf, &len, &off);
                if (k == ARCHIVE_EOF)
                        break;
                if (k < ARCHIVE_WARN)
                        return image_oci_fail(c->err, -EBADMSG, "'%s': %s", c->name, archive_error_string(a));
                if (off < 0 || len > (size_t) size || off > size - (la_int64_t) len)
                        return image_oci_fail(c->err, -EBADMSG, "'%s': data beyond the entry's size", c->name);
                for (size_t done = 0; done < len;) {
                        ssize_t w = pwrite(fd, (const char *) buf + done, len - done, off + (off_t) done);
                        if (w < 0)
                                return image_oci_fail(c->err, -errno, "'%s': write", c->name);
                        done += (size_t) w;
                }
        }
        /* A sparse file's last hole. */
        if (ftruncate(fd, archive_entry_size(e)) < 0)
                return image_oci_fail(c->err, -errno, "'%s': truncate", c->name);
        return set_owner_mode_time(c, fd, e, safe_mode(c, e, false));
}

static int make_dir(ApplyCtx *c, int pfd, const char *base, struct archive_entry *e) {
        struct stat st;
        if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
                int r = image_remove_at(pfd, base);
                if (r < 0)
                        return image_oci_fail(c->err, r, "'%s': cannot replace what is there", c->name);
        }
        if (mkdirat(pfd, base, 0700) < 0 && errno != EEXIST)
                return image_oci_fail(c->err, -errno, "'%s': mkdir", c->name);
        _cleanup_close_ int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return image_oci_fail(c->err, -errno, "'%s': open the directory", c->name);
        mode_t m = safe_mode(c, e, true);
        /* Unprivileged (tests), a directory must stay writable for the entries that follow. */
        return set_owner_mode_time(c, fd, e, c->chown ? m : (m | 0700));
}

static int make_symlink(ApplyCtx *c, int pfd, const char *base, struct archive_entry *e) {
        const char *target = archive_entry_symlink(e);
        if (isempty(target))
                return image_oci_fail(c->err, -EBADMSG, "'%s': a symlink without a target", c->name);
        int r = image_remove_at(pfd, base);
        if (r < 0)
                return image_oci_fail(c->err, r, "'%s': cannot replace what is there", c->name);
        /* The target is stored as text; it is resolved later inside the guest (or, by this
         * applier, inside the root), never here on the host. */
        if (symlinkat(target, pfd, base) < 0)
                return image_oci_fail(c->err, -errno, "'%s': symlink", c->name);
        if (c->chown &&
            fchownat(pfd, base, (uid_t) archive_entry_uid(e), (gid_t) archive_entry_gid(e), AT_SYMLINK_NOFOLLOW) <
                    0)
                return image_oci_fail(c->err, -errno, "'%s': chown", c->name);
        struct timespec ts[2] = {
                { .tv_sec = archive_entry_mtime(e), .tv_nsec = 0 },
                { .tv_sec = archive_entry_mtime(e), .tv_nsec = 0 },
        };
        (void) utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
        return 0;
}

static int make_hardlink(ApplyCtx *c, int rootfd, int pfd, const char *base, const char *target) {
        _cleanup_strv_free_ char **tc = NULL;
        int n = split_name(target, &tc, c->err);
        if (n < 0)
                return n;
        if (n == 0)
                return image_oci_fail(c->err, -EPERM, "'%s': a hard link to the root", c->name);
        _cleanup_free_ char *perr = NULL;
        _cleanup_close_ int tfd = open_parent(rootfd, tc, n, false, &perr);
        if (tfd < 0)
                return image_oci_fail(
                        c->err, tfd, "'%s': hard link target '%s': %s", c->name, target, perr ?: "not found");
        struct stat st;
        if (fstatat(tfd, tc[n - 1], &st, AT_SYMLINK_NOFOLLOW) < 0)
                return image_oci_fail(c->err, -errno, "'%s': hard link target '%s'", c->name, target);
        if (S_ISDIR(st.st_mode))
                return image_oci_fail(c->err, -EPERM, "'%s': a hard link to a directory", c->name);
        /* Same file already (a layer repeating a link): nothing to do. */
        struct stat cur;
        if (fstatat(pfd, base, &cur, AT_SYMLINK_NOFOLLOW) == 0 && cur.st_dev == st.st_dev &&
            cur.st_ino == st.st_ino)
                return 0;
        int r = image_remove_at(pfd, base);
        if (r < 0)
                return image_oci_fail(c->err, r, "'%s': cannot replace what is there", c->name);
        /* linkat without AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink itself. */
        if (linkat(tfd, tc[n - 1], pfd, base, 0) < 0)
                return image_oci_fail(c->err, -errno, "'%s': hard link to '%s'", c->name, target);
        return 0;
}

int image_oci_apply_layer(int rootfd, struct archive *a, ImageOciStats *st, char **ret_err) {
        _cleanup_json_ json_t *seen = json_object(); /* names this layer wrote: opaque dirs keep them */
        ImageOciStats dummy = {};
        ApplyCtx c = { .chown = geteuid() == 0, .st = st ?: &dummy, .err = ret_err };
        struct archive_entry *e;
        for (;;) {
                int k = archive_read_next_header(a, &e);
                if (k == ARCHIVE_EOF)
                        return 0;
                if (k < ARCHIVE_WARN)
                        return image_oci_fail(ret_err, -EBADMSG, "%s", archive_error_string(a));
                const char *raw = archive_entry_pathname(e);
                _cleanup_strv_free_ char **comp = NULL;
                int n = split_name(raw, &comp, ret_err);
                if (n < 0)
                        return n;
                if (++c.st->entries > OCI_MAX_ENTRIES)
                        return image_oci_fail(
                                ret_err, -EFBIG, "more than %llu entries", (unsigned long long) OCI_MAX_ENTRIES);
                if (n == 0)
                        continue; /* "./": the root's own entry */
                c.name = raw;
                const char *base = comp[n - 1];
                const char *hl = archive_entry_hardlink(e);
                mode_t type = archive_entry_filetype(e);

                /* Nothing lands in the mount points the guest init mounts over. */
                if ((streq(comp[0], "dev") || streq(comp[0], "proc") || streq(comp[0], "sys")) &&
                    (n > 1 || type != AE_IFDIR)) {
                        c.st->dropped++;
                        continue;
                }
                if (!hl && (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO || type == AE_IFSOCK)) {
                        c.st->dropped++;
                        continue;
                }
                if (!hl && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
                        return image_oci_fail(
                                ret_err, -EBADMSG, "'%s': unknown entry type 0%o", raw, (unsigned) type);

                /* A whiteout names something that may not be there: nothing is made for it. */
                bool wh = startswith(base, OCI_WHITEOUT);
                _cleanup_free_ char *perr = NULL;
                _cleanup_close_ int pfd = open_parent(rootfd, comp, n, !wh, &perr);
                if (pfd == -ENOENT && wh) {
                        c.st->whiteouts++;
                        continue;
                }
                if (pfd < 0)
                        return image_oci_fail(
                                ret_err, pfd, "'%s': %s", raw, perr ?: "cannot open the parent directory");
                _cleanup_free_ char *dirpath = join_path(comp, n - 1);
                int r;
                if (streq(base, OCI_OPAQUE)) {
                        c.st->whiteouts++;
                        if ((r = opaque_dir(pfd, dirpath, seen)) < 0)
                                return image_oci_fail(ret_err, r, "'%s': cannot empty the directory", raw);
                        continue;
                }
                if (startswith(base, OCI_WHITEOUT)) {
                        const char *victim = base + strlen(OCI_WHITEOUT);
                        if (isempty(victim) || streq(victim, ".") || streq(victim, ".."))
                                return image_oci_fail(ret_err, -EPERM, "'%s': a whiteout for no name", raw);
                        c.st->whiteouts++;
                        if ((r = image_remove_at(pfd, victim)) < 0)
                                return image_oci_fail(ret_err, r, "'%s': cannot remove %s", raw, victim);
                        continue;
                }
                for (int i = 1; i <= n; i++) {
                        _cleanup_free_ char *sub = join_path(comp, i);
                        json_object_set_new(seen, sub, json_true());
                }
                if (hl)
                        r = make_hardlink(&c, rootfd, pfd, base, hl);
                else if (type == AE_IFDIR)
                        r = make_dir(&c, pfd, base, e);
                else if (type == AE_IFLNK)
                        r = make_symlink(&c, pfd, base, e);
                else
                        r = write_file(&c, a, pfd, base, e);
                if (r < 0)
                        return r;
        }
}
