/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The initramfs: a gzip-compressed newc cpio written with libarchive, deterministic (uid/gid 0,
 * mtime 0, fixed order), holding the static guest init as /init, the kernel modules
 * (decompressed if the kernel shipped them compressed) and their load order: only what the init
 * needs to find its disks. The system disk: a read-only ext4 (mkfs.ext4 -d) with the proxy, the
 * web-fetch helper, git for imported images and their libraries, mounted at /nucleus. Both
 * layouts are the contract with src/guest/init/init.h.
 */
#include <archive.h>
#include <archive_entry.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "image-internal.h"
#include "log.h"
#include "string-util.h"

static void archive_freep(struct archive **a) {
        if (*a)
                archive_write_free(*a);
}

static int add_entry(struct archive *a, const char *path, mode_t mode, dev_t rdev, const void *data, size_t size) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, path);
        archive_entry_set_mode(e, mode);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        archive_entry_set_mtime(e, 0, 0);
        archive_entry_set_nlink(e, S_ISDIR(mode) ? 2 : 1);
        if (S_ISCHR(mode))
                archive_entry_set_rdev(e, rdev);
        archive_entry_set_size(e, S_ISREG(mode) ? (la_int64_t) size : 0);
        int r = archive_write_header(a, e);
        archive_entry_free(e);
        if (r != ARCHIVE_OK)
                return log_error_errno(-EIO, "image: initramfs: %s: %s", path, archive_error_string(a));
        if (S_ISREG(mode) && size > 0 && archive_write_data(a, data, size) != (la_ssize_t) size)
                return log_error_errno(-EIO, "image: initramfs: write %s: %s", path, archive_error_string(a));
        return 0;
}

static int add_file(struct archive *a, const char *path, const char *src, mode_t perm) {
        _cleanup_free_ char *data = NULL;
        size_t n;
        int r = read_full_file_at(AT_FDCWD, src, 256u << 20, &data, &n);
        if (r < 0)
                return log_error_errno(r, "image: initramfs: read %s: %m", src);
        return add_entry(a, path, S_IFREG | perm, 0, data, n);
}

/* Read a module, decompressing .ko.xz/.ko.zst/.ko.gz (libarchive raw filters). */
static int read_module(const char *src, char **ret, size_t *ret_size) {
        if (endswith(src, ".ko"))
                return read_full_file_at(AT_FDCWD, src, 64u << 20, ret, ret_size);

        struct archive *a = archive_read_new();
        struct archive_entry *e;
        size_t used = 0, alloc = 1 << 20;
        char *out = xmalloc(alloc);
        int r = -EBADMSG;
        archive_read_support_filter_all(a);
        archive_read_support_format_raw(a);
        if (archive_read_open_filename(a, src, 1 << 16) == ARCHIVE_OK &&
            archive_read_next_header(a, &e) == ARCHIVE_OK)
                for (;;) {
                        if (used == alloc) {
                                if (alloc >= (64u << 20)) {
                                        r = -EFBIG;
                                        break;
                                }
                                alloc *= 2;
                                out = xrealloc(out, alloc);
                        }
                        la_ssize_t k = archive_read_data(a, out + used, alloc - used);
                        if (k < 0)
                                break;
                        if (k == 0) {
                                r = 0;
                                break;
                        }
                        used += (size_t) k;
                }
        archive_read_free(a);
        if (r < 0) {
                free(out);
                return r;
        }
        *ret = out;
        *ret_size = used;
        return 0;
}

int image_fetch_libs(ImageCtx *ctx, const char *fetch_path, char ***ret) {
        char *const argv[] = { (char *) "/usr/bin/ldd", (char *) fetch_path, NULL };
        _cleanup_free_ char *out = NULL;
        _cleanup_strv_free_ char **libs = NULL, **rest = NULL;
        int r = image_run_capture(ctx, argv, 1u << 20, &out);
        if (r != 0)
                return log_error_errno(r < 0 ? r : -EIO, "image: ldd %s failed", fetch_path);
        /* "\tlibfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)" or "\t/lib64/ld-linux... (0x...)";
         * linux-vdso has no file. The names given (before "=>") are what the loader looks for. */
        _cleanup_free_ char *loader = NULL;
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
                line += strspn(line, " \t");
                char *arrow = strstr(line, " => ");
                char *path = arrow ? arrow + 4 : line;
                if (path[0] != '/')
                        continue;
                path[strcspn(path, " ")] = 0;
                char real[PATH_MAX];
                if (!realpath(path, real))
                        return log_error_errno(-errno, "image: %s needs %s: %m", fetch_path, path);
                if (!arrow) {
                        free(loader);
                        loader = xstrdup(real);
                        continue;
                }
                *arrow = 0;
                /* "SONAME\tPATH": stored under the name the loader looks for. */
                if (strchr(line, '/') || strchr(line, '\t'))
                        return log_error_errno(-EINVAL, "image: odd library name '%s' from ldd", line);
                _cleanup_free_ char *pair = xasprintf("%s\t%s", line, real);
                strv_extend(&rest, pair);
        }
        if (!loader)
                return log_error_errno(-ENOENT, "image: ldd %s names no dynamic loader", fetch_path);
        _cleanup_free_ char *lpair = xasprintf("ld-linux-x86-64.so.2\t%s", loader);
        strv_extend(&libs, lpair);
        STRV_FOREACH(l, rest)
                strv_extend(&libs, *l);
        *ret = TAKE_PTR(libs);
        return 0;
}

int image_initramfs_write(
        const char *out_path,
        const char *init_path,
        const char *kroot,
        const char *release,
        char *const *module_paths) {
        _cleanup_(archive_freep) struct archive *a = archive_write_new();
        _cleanup_free_ char *tmp = xasprintf("%s.tmp", out_path), *list = xstrdup("");
        int r;

        if (archive_write_set_format_cpio_newc(a) != ARCHIVE_OK ||
            archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
            archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK)
                return log_error_errno(-EIO, "image: initramfs: libarchive: %s", archive_error_string(a));
        if (archive_write_open_filename(a, tmp) != ARCHIVE_OK)
                return log_error_errno(-EIO, "image: initramfs: open %s: %s", tmp, archive_error_string(a));

        /* /nucleus is only the modules' home here: the guest init mounts the system disk over
         * the new root's /nucleus (image.h IMAGE_SYSTEM). */
        static const char *const dirs[] = { "dev", "proc",    "sys",     "run",
                                            "tmp", "newroot", "nucleus", "nucleus/modules" };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
                if ((r = add_entry(a, dirs[i], S_IFDIR | 0755, 0, NULL, 0)) < 0)
                        goto fail;
        /* The kernel opens /dev/console for init's stdio before anything is mounted. */
        if ((r = add_entry(a, "dev/console", S_IFCHR | 0600, makedev(5, 1), NULL, 0)) < 0 ||
            (r = add_entry(a, "dev/null", S_IFCHR | 0666, makedev(1, 3), NULL, 0)) < 0)
                goto fail;
        if ((r = add_file(a, "init", init_path, 0755)) < 0)
                goto fail;

        STRV_FOREACH(m, module_paths) {
                _cleanup_free_ char *src = xasprintf("%s/lib/modules/%s/%s", kroot, release, *m), *data = NULL;
                size_t n;
                const char *base = strrchr(*m, '/');
                base = base ? base + 1 : *m;
                _cleanup_free_ char *name = xstrndup(
                        base, strstr(base, ".ko") ? (size_t) (strstr(base, ".ko") - base) : strlen(base));
                if ((r = read_module(src, &data, &n)) < 0) {
                        log_error_errno(r, "image: initramfs: read module %s: %m", src);
                        goto fail;
                }
                _cleanup_free_ char *dst = xasprintf("nucleus/modules/%s.ko", name);
                if ((r = add_entry(a, dst, S_IFREG | 0644, 0, data, n)) < 0)
                        goto fail;
                char *nl = xasprintf("%s%s.ko\n", list, name);
                free(list);
                list = nl;
        }
        if ((r = add_entry(a, "nucleus/modules/load.list", S_IFREG | 0644, 0, list, strlen(list))) < 0)
                goto fail;
        if (archive_write_close(a) != ARCHIVE_OK) {
                r = log_error_errno(-EIO, "image: initramfs: close: %s", archive_error_string(a));
                goto fail;
        }
        if (chmod(tmp, 0644) < 0 || rename(tmp, out_path) < 0) {
                r = log_error_errno(-errno, "image: initramfs: rename to %s: %m", out_path);
                goto fail;
        }
        return 0;
fail:
        (void) unlink(tmp);
        return r;
}

/* Write data as the file rel (may name one subdirectory) of the staging tree at dir. */
static int stage_data(const char *dir, const char *rel, const void *data, size_t n, mode_t mode) {
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
        int r = write_file_atomic_at(AT_FDCWD, p, data, n, mode);
        if (r < 0)
                return log_error_errno(r, "image: system disk: write %s: %m", p);
        return 0;
}

static int stage_file(const char *dir, const char *rel, const char *src, mode_t mode) {
        _cleanup_free_ char *data = NULL;
        size_t n;
        int r = read_full_file_at(AT_FDCWD, src, 256u << 20, &data, &n);
        if (r < 0)
                return log_error_errno(r, "image: system disk: read %s: %m", src);
        return stage_data(dir, rel, data, n, mode);
}

/* mkfs.ext4 -d of the staged tree into out (a new file). */
static int system_mkfs(ImageCtx *ctx, const char *stage, const char *out) {
        uint64_t bytes, entries;
        int r = image_tree_usage(stage, &bytes, &entries);
        if (r < 0)
                return log_error_errno(r, "image: system disk: measure %s: %m", stage);
        /* Room for ext4's own metadata: +25 % + 8 MiB (a sparse file: the slack costs nothing). */
        _cleanup_free_ char *size = xasprintf(
                "%lluM", (unsigned long long) ((bytes + bytes / 4) / (1024 * 1024) + 8));
        _cleanup_free_ char *ninodes = xasprintf("%llu", (unsigned long long) (entries + 64));
        (void) unlink(out);
        char *const argv[] = {
                (char *) "mkfs.ext4",
                (char *) "-q",
                (char *) "-F",
                (char *) "-L",
                (char *) IMAGE_SYSTEM_LABEL, /* how the guest finds it without a serial */
                (char *) "-b",
                (char *) "4096",
                (char *) "-m",
                (char *) "0",
                (char *) "-N",
                ninodes,
                (char *) "-O",
                (char *) "^has_journal", /* read-only: no journal to replay */
                (char *) "-E",
                (char *) "lazy_itable_init=0,nodiscard",
                (char *) "-d",
                (char *) stage,
                (char *) out,
                size,
                NULL,
        };
        r = image_run(ctx, "mkfs.ext4", argv, NULL);
        return r > 0 ? -EIO : r;
}

int image_system_write(
        ImageCtx *ctx, const char *out_path, const char *proxy_path, const ImageSystemExtra *extra) {
        const ImageSystemExtra none = {};
        if (!extra)
                extra = &none;
        _cleanup_free_ char *stage = xasprintf("%s/system-build", ctx->cache_dir);
        _cleanup_free_ char *tmp = xasprintf("%s.tmp", out_path);
        int r;

        (void) image_rm_rf(stage);
        /* The tree's owner and modes become the disk's: root, 0755 (the builder runs as root). */
        static const char *const dirs[] = { "", "/bin", "/lib" };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                _cleanup_free_ char *d = xasprintf("%s%s", stage, dirs[i]);
                if (mkdir(d, 0755) < 0 || chmod(d, 0755) < 0) {
                        r = log_error_errno(-errno, "image: system disk: mkdir %s: %m", d);
                        goto out;
                }
        }
        if ((r = stage_file(stage, "bin/nucleus-tool-proxy", proxy_path, 0755)) < 0)
                goto out;
        /* The web_fetch helper comes from Nucleus, with every library it links and the dynamic
         * loader (lib/ld-linux-x86-64.so.2, run explicitly by the proxy), so any rootfs (Alpine,
         * distroless, a minimal tar) can fetch without libcurl of its own. The same for git in
         * an image imported from an OCI archive: its PT_INTERP is rewritten to
         * IMAGE_SYSTEM_LOADER_SHORT (a link to that loader), so the git processes git itself
         * starts (repack runs pack-objects) find Nucleus's loader, not the rootfs's. */
        if (extra->fetch_path && (r = stage_file(stage, "bin/nucleus-web-fetch", extra->fetch_path, 0755)) < 0)
                goto out;
        for (int pass = 0; pass < 2; pass++)
                STRV_FOREACH(l, pass == 0 ? extra->fetch_libs : extra->git_libs) {
                        const char *tab = strchr(*l, '\t');
                        if (!tab) {
                                r = -EINVAL;
                                goto out;
                        }
                        _cleanup_free_ char *dst = xasprintf("lib/%.*s", (int) (tab - *l), *l);
                        _cleanup_free_ char *full = xasprintf("%s/%s", stage, dst);
                        if (access(full, F_OK) == 0)
                                continue;
                        if ((r = stage_file(stage, dst, tab + 1, 0755)) < 0)
                                goto out;
                }
        if (extra->git_path) {
                _cleanup_free_ char *data = NULL, *link = NULL;
                size_t n;
                if ((r = read_full_file_at(AT_FDCWD, extra->git_path, 256u << 20, &data, &n)) < 0) {
                        log_error_errno(r, "image: system disk: read %s: %m", extra->git_path);
                        goto out;
                }
                if ((r = image_elf_set_interp(data, n, IMAGE_SYSTEM_LOADER_SHORT)) < 0) {
                        log_error_errno(
                                r, "image: system disk: %s: cannot set its loader: %m", extra->git_path);
                        goto out;
                }
                /* IMAGE_SYSTEM_GIT and the loader link are paths under /nucleus, the disk's root. */
                const char *git_rel = startswith(IMAGE_SYSTEM_GIT, "/nucleus/"),
                           *loader_rel = startswith(IMAGE_SYSTEM_LOADER_SHORT, "/nucleus/");
                assert(git_rel && loader_rel);
                if ((r = stage_data(stage, git_rel, data, n, 0755)) < 0)
                        goto out;
                link = xasprintf("%s/%s", stage, loader_rel);
                if (symlink("ld-linux-x86-64.so.2", link) < 0) {
                        r = log_error_errno(-errno, "image: system disk: symlink %s: %m", link);
                        goto out;
                }
        }

        if ((r = system_mkfs(ctx, stage, tmp)) < 0)
                goto out;
        /* Root's, read-only to everyone else: image_system_check() refuses anything wider. */
        if (chown(tmp, 0, 0) < 0 || chmod(tmp, 0644) < 0 || rename(tmp, out_path) < 0) {
                r = log_error_errno(-errno, "image: system disk: install %s: %m", out_path);
                goto out;
        }
        r = 0;
out:
        (void) unlink(tmp);
        (void) image_rm_rf(stage);
        return r;
}
