/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel for the guest: a Debian cloud kernel package (apt-get download, or a .deb the user
 * gives with its SHA-256), unpacked with dpkg-deb into a cache keyed by the package's SHA-256,
 * modules.dep generated with depmod -b, the module set resolved in dependency order, and the
 * uncompressed vmlinux extracted from the bzImage's payload (extract-vmlinux logic, through
 * libarchive's decompressors). The package contents are trusted only after the hash matched.
 */
#include <archive.h>
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "image-internal.h"
#include "log.h"
#include "string-util.h"

static int find_cached_deb(const char *dir, const char *pkg, char **ret) {
        _cleanup_free_ char *prefix = xasprintf("%s_", pkg);
        DIR *d = opendir(dir);
        struct dirent *de;
        if (!d)
                return -errno;
        int r = -ENOENT;
        while ((de = readdir(d)))
                if (startswith(de->d_name, prefix) && endswith(de->d_name, ".deb")) {
                        *ret = xasprintf("%s/%s", dir, de->d_name);
                        r = 0;
                        break;
                }
        closedir(d);
        return r;
}

/* linux-image-cloud-amd64 is a metapackage; the real package is its linux-image-* dependency. */
static int resolve_kernel_package(ImageCtx *ctx, char **ret) {
        _cleanup_free_ char *out = NULL;
        char *const argv[] = {
                (char *) "apt-cache", (char *) "depends", (char *) IMAGE_DEFAULT_KERNEL_PACKAGE, NULL
        };
        int r = image_run_capture(ctx, argv, 64 * 1024, &out);
        if (r < 0 && geteuid() == 0) {
                /* A fresh machine may have no package lists yet. */
                image_progress(
                        ctx,
                        "kernel: apt-cache knows no %s; running apt-get update",
                        IMAGE_DEFAULT_KERNEL_PACKAGE);
                char *const upd[] = { (char *) "apt-get", (char *) "update", (char *) "-q", NULL };
                if (image_run(ctx, "apt-get update", upd, NULL) >= 0)
                        r = image_run_capture(ctx, argv, 64 * 1024, &out);
        }
        if (r < 0)
                return log_error_errno(
                        r,
                        "image: cannot resolve %s with apt-cache (run apt-get update, or pass --kernel-deb)",
                        IMAGE_DEFAULT_KERNEL_PACKAGE);
        char *save = NULL;
        for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                l += strspn(l, " |");
                const char *v = startswith(l, "Depends: ");
                if (v && startswith(v, "linux-image-") && !strchr(v, ' ') && !strchr(v, '<')) {
                        *ret = xstrdup(v);
                        return 0;
                }
        }
        return log_error_errno(
                -ENOENT, "image: %s has no linux-image-* dependency", IMAGE_DEFAULT_KERNEL_PACKAGE);
}

static int find_release(const char *root, char **ret) {
        _cleanup_free_ char *p = xasprintf("%s/lib/modules", root);
        DIR *d = opendir(p);
        struct dirent *de;
        if (!d)
                return -errno;
        int r = -ENOENT;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.') {
                        if (r == 0) {
                                r = -ENOTUNIQ;
                                break;
                        }
                        *ret = xstrdup(de->d_name);
                        r = 0;
                }
        closedir(d);
        return r;
}

int image_kernel_prepare(
        ImageCtx *ctx,
        char **ret_root,
        char **ret_release,
        char ret_deb_sha[static IMAGE_SHA256_HEX],
        char **ret_deb_name) {
        const ImageBuildOptions *o = ctx->opts;
        _cleanup_free_ char *kdir = xasprintf("%s/kernel", ctx->cache_dir), *deb = NULL;
        char sha[IMAGE_SHA256_HEX];
        int r;

        if ((r = mkdir_p_at(AT_FDCWD, kdir, 0755)) < 0)
                return log_error_errno(r, "image: mkdir %s: %m", kdir);

        if (o->kernel_deb) {
                if (!o->kernel_sha256 || strlen(o->kernel_sha256) != 64)
                        return log_error_errno(
                                -EINVAL, "image: --kernel-deb needs --kernel-sha256 with 64 hex digits");
                deb = xstrdup(o->kernel_deb);
        } else {
                _cleanup_free_ char *pkg = NULL;
                if ((r = resolve_kernel_package(ctx, &pkg)) < 0)
                        return r;
                if (find_cached_deb(kdir, pkg, &deb) < 0) {
                        image_progress(ctx, "kernel: downloading %s", pkg);
                        char *const argv[] = {
                                (char *) "apt-get", (char *) "download", (char *) "-q", pkg, NULL
                        };
                        if ((r = image_run(ctx, "apt-get download", argv, kdir)) < 0)
                                return log_error_errno(
                                        r,
                                        "image: apt-get download %s failed (apt-get update? or pass "
                                        "--kernel-deb)",
                                        pkg);
                        if ((r = find_cached_deb(kdir, pkg, &deb)) < 0)
                                return log_error_errno(
                                        r, "image: apt-get download left no %s_*.deb in %s", pkg, kdir);
                } else
                        image_progress(ctx, "kernel: using cached %s", deb);
        }

        if ((r = image_sha256_file(deb, sha)) < 0)
                return log_error_errno(r, "image: read %s: %m", deb);
        if (o->kernel_deb) {
                char want[IMAGE_SHA256_HEX];
                for (size_t i = 0; i < 64; i++)
                        want[i] =
                                (char) (o->kernel_sha256[i] >= 'A' && o->kernel_sha256[i] <= 'F'
                                                ? o->kernel_sha256[i] + 32
                                                : o->kernel_sha256[i]);
                want[64] = 0;
                if (!memeq_consttime(want, sha, 64))
                        return log_error_errno(
                                -EBADMSG, "image: %s has SHA-256 %s, expected %s", deb, sha, want);
        }

        _cleanup_free_ char *root = xasprintf("%s/%s", kdir, sha), *done = xasprintf("%s/.complete", root);
        if (access(done, F_OK) < 0) {
                image_progress(ctx, "kernel: unpacking %s", deb);
                (void) image_rm_rf(root);
                if ((r = mkdir_p_at(AT_FDCWD, root, 0755)) < 0)
                        return log_error_errno(r, "image: mkdir %s: %m", root);
                char *const x[] = { (char *) "dpkg-deb", (char *) "-x", deb, root, NULL };
                if ((r = image_run(ctx, "dpkg-deb", x, NULL)) < 0)
                        return r;
                _cleanup_free_ char *rel = NULL;
                if ((r = find_release(root, &rel)) < 0)
                        return log_error_errno(r, "image: %s holds no single lib/modules/<release>: %m", deb);
                char *const dm[] = { (char *) "depmod", (char *) "-b", root, rel, NULL };
                if ((r = image_run(ctx, "depmod", dm, NULL)) < 0)
                        return r;
                _cleanup_close_ int fd = open(done, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (fd < 0)
                        return log_error_errno(-errno, "image: create %s: %m", done);
        }
        _cleanup_free_ char *rel = NULL;
        if ((r = find_release(root, &rel)) < 0)
                return log_error_errno(r, "image: no kernel release in %s: %m", root);

        strcpy(ret_deb_sha, sha);
        const char *slash = strrchr(deb, '/');
        *ret_deb_name = xstrdup(slash ? slash + 1 : deb);
        *ret_root = TAKE_PTR(root);
        *ret_release = TAKE_PTR(rel);
        return 0;
}

/* Module name from a path: basename without .ko[.xz|.zst|.gz], '-' folded to '_'. */
static char *module_name(const char *path, size_t len) {
        const char *b = path;
        for (size_t i = 0; i < len; i++)
                if (path[i] == '/')
                        b = path + i + 1;
        size_t n = (size_t) (path + len - b);
        char *s = xstrndup(b, n);
        char *dot = strstr(s, ".ko");
        if (dot)
                *dot = 0;
        for (char *c = s; *c; c++)
                if (*c == '-')
                        *c = '_';
        return s;
}

typedef struct ModDep {
        char *name;
        char *path;
        char **deps; /* paths */
} ModDep;

static int resolve_one(
        ModDep *mods, size_t n_mods, char **builtin, const char *name, unsigned depth, char ***order) {
        if (depth > 32)
                return -ELOOP;
        if (strv_contains(builtin, name))
                return 0;
        for (size_t i = 0; i < n_mods; i++) {
                if (!streq(mods[i].name, name))
                        continue;
                if (strv_contains(*order, mods[i].path))
                        return 0;
                STRV_FOREACH(d, mods[i].deps) {
                        _cleanup_free_ char *dn = module_name(*d, strlen(*d));
                        int r = resolve_one(mods, n_mods, builtin, dn, depth + 1, order);
                        if (r < 0)
                                return r;
                }
                strv_extend(order, mods[i].path);
                return 0;
        }
        return -ENOENT;
}

int image_kernel_modules(const char *kroot, const char *release, char *const *wanted, char ***ret_paths) {
        _cleanup_free_ char *dep_path = xasprintf("%s/lib/modules/%s/modules.dep", kroot, release);
        _cleanup_free_ char *bi_path = xasprintf("%s/lib/modules/%s/modules.builtin", kroot, release);
        _cleanup_free_ char *dep = NULL, *bi = NULL;
        _cleanup_strv_free_ char **builtin = NULL, **order = NULL;
        ModDep *mods = NULL;
        size_t n_mods = 0, n;
        int r;

        if ((r = read_full_file_at(AT_FDCWD, dep_path, 16 * 1024 * 1024, &dep, &n)) < 0)
                return log_error_errno(r, "image: read %s: %m", dep_path);
        if ((r = read_full_file_at(AT_FDCWD, bi_path, 16 * 1024 * 1024, &bi, &n)) < 0)
                return log_error_errno(r, "image: read %s: %m", bi_path);

        char *save = NULL;
        for (char *l = strtok_r(bi, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
                strv_consume(&builtin, module_name(l, strlen(l)));

        for (char *l = strtok_r(dep, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                char *colon = strchr(l, ':');
                if (!colon)
                        continue;
                *colon = 0;
                mods = xreallocarray(mods, n_mods + 1, sizeof(ModDep));
                ModDep *m = &mods[n_mods++];
                *m = (ModDep){ .name = module_name(l, strlen(l)), .path = xstrdup(l) };
                char *s2 = NULL;
                for (char *d = strtok_r(colon + 1, " ", &s2); d; d = strtok_r(NULL, " ", &s2))
                        strv_extend(&m->deps, d);
        }

        r = 0;
        STRV_FOREACH(w, wanted) {
                _cleanup_free_ char *wn = module_name(*w, strlen(*w));
                r = resolve_one(mods, n_mods, builtin, wn, 0, &order);
                if (r < 0) {
                        log_error_errno(
                                r,
                                "image: kernel module %s is neither built into %s nor in its modules.dep",
                                *w,
                                release);
                        break;
                }
        }
        for (size_t i = 0; i < n_mods; i++) {
                free(mods[i].name);
                free(mods[i].path);
                strv_free(mods[i].deps);
        }
        free(mods);
        if (r < 0)
                return r;
        if (!order)
                order = xnew0(char *, 1);
        *ret_paths = TAKE_PTR(order);
        return 0;
}

/* Decompress data with any libarchive filter into a buffer of at most max bytes. */
static int decompress_raw(const void *data, size_t n, size_t max, char **ret, size_t *ret_size) {
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        size_t used = 0, alloc = 16 << 20;
        char *out = xmalloc(alloc);
        int r = -EBADMSG;

        archive_read_support_filter_all(a);
        archive_read_support_format_raw(a);
        if (archive_read_open_memory(a, data, n) != ARCHIVE_OK || archive_read_next_header(a, &e) != ARCHIVE_OK)
                goto out;
        for (;;) {
                if (used == alloc) {
                        if (alloc >= max) {
                                r = -EFBIG;
                                goto out;
                        }
                        alloc *= 2;
                        out = xrealloc(out, alloc);
                }
                la_ssize_t k = archive_read_data(a, out + used, alloc - used);
                if (k < 0) {
                        /* lz4 legacy streams have no end marker: a trailing read error after
                         * the data is normal; the ELF check below decides. */
                        if (used == 0)
                                goto out;
                        break;
                }
                if (k == 0)
                        break;
                used += (size_t) k;
        }
        *ret = TAKE_PTR(out);
        *ret_size = used;
        r = 0;
out:
        free(out);
        archive_read_free(a);
        return r;
}

int image_kernel_extract_vmlinux(const char *bzimage, const char *out_path) {
        _cleanup_free_ char *img = NULL, *elf = NULL;
        size_t n, elf_size;
        int r;

        if ((r = read_full_file_at(AT_FDCWD, bzimage, 64 * 1024 * 1024, &img, &n)) < 0)
                return log_error_errno(r, "image: read %s: %m", bzimage);
        /* Linux boot protocol: "HdrS" at 0x202, setup_sects at 0x1f1, payload_offset (0x248) and
         * payload_length (0x24c) relative to the protected-mode kernel at (setup_sects+1)*512. */
        if (n < 0x250 || memcmp(img + 0x202, "HdrS", 4) != 0)
                return log_error_errno(-EBADMSG, "image: %s is not a bzImage", bzimage);
        uint32_t setup_sects = (uint8_t) img[0x1f1], off, len;
        if (setup_sects == 0)
                setup_sects = 4;
        memcpy(&off, img + 0x248, 4);
        memcpy(&len, img + 0x24c, 4);
        uint64_t start = (uint64_t) (setup_sects + 1) * 512u + off;
        if (start >= n || len == 0 || start + len > n)
                return log_error_errno(-EBADMSG, "image: %s: payload %u+%u out of range", bzimage, off, len);
        if ((r = decompress_raw(img + start, len, 512u << 20, &elf, &elf_size)) < 0)
                return log_error_errno(r, "image: %s: cannot decompress the kernel payload: %m", bzimage);
        if (elf_size < sizeof(Elf64_Ehdr) || memcmp(elf, ELFMAG, SELFMAG) != 0)
                return log_error_errno(-EBADMSG, "image: %s: payload is not an ELF image", bzimage);

        _cleanup_free_ char *tmp = xasprintf("%s.tmp", out_path);
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return log_error_errno(-errno, "image: create %s: %m", tmp);
        if ((r = loop_write(fd, elf, elf_size)) < 0 || rename(tmp, out_path) < 0) {
                r = r < 0 ? r : -errno;
                (void) unlink(tmp);
                return log_error_errno(r, "image: write %s: %m", out_path);
        }
        return 0;
}
