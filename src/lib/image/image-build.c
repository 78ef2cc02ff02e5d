/* SPDX-License-Identifier: Apache-2.0 */
/*
 * image_build(): kernel, initramfs and rootfs into one image dir, each artifact keyed by the
 * SHA-256 of its inputs and rebuilt only when that key changes (or with force), described in
 * manifest.json. Artifacts are written to temp names and renamed, so a crashed build never
 * leaves a half-written file under a final name.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "image-internal.h"
#include "json-util.h"
#include "log.h"
#include "string-util.h"

static const char *const image_accel_table[_IMAGE_ACCEL_MAX] = {
        [IMAGE_ACCEL_TCG] = "tcg",
        [IMAGE_ACCEL_KVM] = "kvm",
};
DEFINE_STRING_TABLE_LOOKUP(image_accel, ImageAccel);

static const char *const default_modules[] = {
        "virtio_mmio",    "virtio_blk", "virtio_console", "virtio_net", "vmw_vsock_virtio_transport",
        "virtio_balloon", "ext4",
};

static const char *const artifact_names[] = {
        IMAGE_VMLINUZ, IMAGE_VMLINUX, IMAGE_INITRAMFS, IMAGE_SYSTEM, IMAGE_ROOTFS
};

int image_guest_binaries_match(
        const json_t *manifest, const char *init_path, const char *proxy_path, const char **ret_which) {
        const struct {
                const char *key, *path, *name;
        } bins[] = {
                { "init_sha256", init_path, "nucleus-guest-init" },
                { "proxy_sha256", proxy_path, "nucleus-tool-proxy" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bins); i++) {
                const char *want = json_string_value(json_object_get(manifest, bins[i].key));
                char have[IMAGE_SHA256_HEX];
                if (!want)
                        return -ENODATA;
                int r = image_sha256_file(bins[i].path, have);
                if (r < 0)
                        return r;
                if (!streq(want, have)) {
                        *ret_which = bins[i].name;
                        return 0;
                }
        }
        return 1;
}

int image_manifest_load(const char *images_dir, json_t **ret_manifest) {
        _cleanup_free_ char *p = xasprintf("%s/%s", images_dir, IMAGE_MANIFEST), *data = NULL, *err = NULL;
        _cleanup_json_ json_t *m = NULL;
        size_t n;
        int r = read_full_file_at(AT_FDCWD, p, 1u << 20, &data, &n);
        if (r < 0)
                return r;
        if (json_parse_strict(data, n, 1u << 20, &m, &err) < 0 || !json_is_object(m))
                return -EBADMSG;
        json_t *arts = json_object_get(m, "artifacts");
        if (!json_is_object(arts))
                return -EBADMSG;
        for (size_t i = 0; i < ELEMENTSOF(artifact_names); i++) {
                json_t *a = json_object_get(arts, artifact_names[i]);
                json_t *size = json_object_get(a, "size");
                _cleanup_free_ char *f = xasprintf("%s/%s", images_dir, artifact_names[i]);
                struct stat st;
                if (!json_is_integer(size))
                        return -EBADMSG;
                if (stat(f, &st) < 0)
                        return -ENOENT;
                if ((json_int_t) st.st_size != json_integer_value(size))
                        return -EBADMSG;
        }
        *ret_manifest = TAKE_PTR(m);
        return 0;
}

/* Returns true when the old manifest's entry for name has this key and the file still has its
 * recorded size; then the entry is copied into arts. */
static bool reuse(json_t *old, json_t *arts, const char *dir, const char *name, const char *key) {
        json_t *e = json_object_get(json_object_get(old, "artifacts"), name);
        json_t *k = json_object_get(e, "key"), *size = json_object_get(e, "size");
        _cleanup_free_ char *f = xasprintf("%s/%s", dir, name);
        struct stat st;
        if (!json_is_string(k) || !streq(json_string_value(k), key) || !json_is_integer(size))
                return false;
        if (stat(f, &st) < 0 || (json_int_t) st.st_size != json_integer_value(size))
                return false;
        json_object_set(arts, name, e);
        return true;
}

static int record(json_t *arts, const char *dir, const char *name, const char *key) {
        _cleanup_free_ char *f = xasprintf("%s/%s", dir, name);
        char sha[IMAGE_SHA256_HEX];
        struct stat st;
        int r = image_sha256_file(f, sha);
        if (r < 0)
                return log_error_errno(r, "image: hash %s: %m", f);
        if (stat(f, &st) < 0)
                return log_error_errno(-errno, "image: stat %s: %m", f);
        json_object_set_new(
                arts,
                name,
                json_pack("{s:s, s:s, s:I}", "sha256", sha, "key", key, "size", (json_int_t) st.st_size));
        return 0;
}

static void image_ctx_done(ImageCtx *c) {
        c->dir = mfree(c->dir);
        c->cache_dir = mfree(c->cache_dir);
        c->log_fd = safe_close(c->log_fd);
}

static int check_binary(const char *what, const char *path) {
        if (!path)
                return log_error_errno(-EINVAL, "image: no %s binary given", what);
        int r = image_elf_is_static(path);
        if (r < 0)
                return log_error_errno(r, "image: %s binary %s: %m", what, path);
        if (r == 0)
                return log_error_errno(
                        -EINVAL,
                        "image: %s binary %s is dynamically linked; the guest needs a static build",
                        what,
                        path);
        return 0;
}

int image_build(const ImageBuildOptions *o, json_t **ret_manifest) {
        _cleanup_(image_ctx_done)
                ImageCtx ctx = { .opts = o, .log_fd = -EBADF, .started = now_usec(CLOCK_MONOTONIC) };
        _cleanup_json_ json_t *old = NULL, *m = NULL;
        _cleanup_free_ char *kroot = NULL, *release = NULL, *deb_name = NULL;
        _cleanup_strv_free_ char **mods = NULL, **packages = NULL, **wanted = NULL;
        char deb_sha[IMAGE_SHA256_HEX], init_sha[IMAGE_SHA256_HEX], proxy_sha[IMAGE_SHA256_HEX],
                key[IMAGE_SHA256_HEX];
        int r;

        if (!o || !o->images_dir)
                return -EINVAL;
        if (sodium_init() < 0)
                return log_error_errno(-EIO, "image: libsodium failed to initialize");
        if ((r = check_binary("nucleus-guest-init", o->init_path)) < 0 ||
            (r = check_binary("nucleus-tool-proxy", o->proxy_path)) < 0)
                return r;
        if (o->rootfs_tar && access(o->rootfs_tar, R_OK) < 0)
                return log_error_errno(-errno, "image: rootfs tar %s: %m", o->rootfs_tar);
        if (o->oci_archive && access(o->oci_archive, R_OK) < 0)
                return log_error_errno(-errno, "image: OCI image archive %s: %m", o->oci_archive);
        if (o->oci_archive && o->rootfs_tar)
                return log_error_errno(
                        -EINVAL, "image: a rootfs tar and an OCI image archive exclude each other");
        /* An imported rootfs (OCI image, rootfs tar) brings no git the proxy could trust to
         * exist (Alpine, distroless): Nucleus's git goes into the initramfs with its libraries. */
        const char *git_path = o->oci_archive || o->rootfs_tar ? (o->git_path ?: "/usr/bin/git") : NULL;

        ctx.dir = xstrdup(o->images_dir);
        ctx.cache_dir = xasprintf("%s/cache", ctx.dir);
        if ((r = mkdir_p_at(AT_FDCWD, ctx.cache_dir, 0755)) < 0)
                return log_error_errno(r, "image: mkdir %s: %m", ctx.cache_dir);
        _cleanup_free_ char *logp = xasprintf("%s/build.log", ctx.cache_dir);
        ctx.log_fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (ctx.log_fd < 0)
                return log_error_errno(-errno, "image: open %s: %m", logp);

        /* One builder per images dir at a time (setup, tests and a user may race). */
        _cleanup_free_ char *lockp = xasprintf("%s/.lock", ctx.cache_dir);
        _cleanup_close_ int lockfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (lockfd < 0)
                return log_error_errno(-errno, "image: open %s: %m", lockp);
        if (flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK)
                        return log_error_errno(-errno, "image: lock %s: %m", lockp);
                image_progress(&ctx, "waiting for another image build in %s", ctx.dir);
                if (flock(lockfd, LOCK_EX) < 0)
                        return log_error_errno(-errno, "image: lock %s: %m", lockp);
        }

        if (!o->force && image_manifest_load(ctx.dir, &old) < 0)
                old = NULL;
        if (!old) {
                /* A partial manifest from an interrupted build is still good for reuse checks. */
                _cleanup_free_ char *p = xasprintf("%s/%s", ctx.dir, IMAGE_MANIFEST), *data = NULL,
                                    *err = NULL;
                size_t n;
                if (!o->force && read_full_file_at(AT_FDCWD, p, 1u << 20, &data, &n) >= 0)
                        (void) json_parse_strict(data, n, 1u << 20, &old, &err);
        }
        bool changed = false;
        json_t *arts = json_object();
        m = json_pack("{s:i, s:o}", "format", 1, "artifacts", arts);

        /* Kernel: vmlinuz + vmlinux, keyed by the package hash. */
        image_progress(&ctx, "kernel: preparing");
        if ((r = image_kernel_prepare(&ctx, &kroot, &release, deb_sha, &deb_name)) < 0)
                return r;
        if (!reuse(old, arts, ctx.dir, IMAGE_VMLINUZ, deb_sha) ||
            !reuse(old, arts, ctx.dir, IMAGE_VMLINUX, deb_sha)) {
                _cleanup_free_ char *src = xasprintf("%s/boot/vmlinuz-%s", kroot, release);
                _cleanup_free_ char *dz = xasprintf("%s/%s", ctx.dir, IMAGE_VMLINUZ),
                                    *dx = xasprintf("%s/%s", ctx.dir, IMAGE_VMLINUX);
                if ((r = image_copy_file(src, dz, 0644)) < 0)
                        return log_error_errno(r, "image: copy %s: %m", src);
                image_progress(&ctx, "kernel: extracting vmlinux");
                if ((r = image_kernel_extract_vmlinux(dz, dx)) < 0)
                        return r;
                if ((r = record(arts, ctx.dir, IMAGE_VMLINUZ, deb_sha)) < 0 ||
                    (r = record(arts, ctx.dir, IMAGE_VMLINUX, deb_sha)) < 0)
                        return r;
                changed = true;
        } else
                image_progress(&ctx, "kernel: %s unchanged (cached)", release);

        if (o->modules)
                wanted = strv_copy(o->modules);
        else
                for (size_t i = 0; i < ELEMENTSOF(default_modules); i++)
                        strv_extend(&wanted, default_modules[i]);
        if ((r = image_kernel_modules(kroot, release, wanted, &mods)) < 0)
                return r;
        if ((r = image_sha256_file(o->init_path, init_sha)) < 0 ||
            (r = image_sha256_file(o->proxy_path, proxy_sha)) < 0)
                return log_error_errno(r, "image: hash guest binaries: %m");
        _cleanup_free_ char *modlist = strv_join(mods, " ");
        /* The fetch helper and every library it loads are part of the key: a libcurl update
         * rebuilds the initramfs. */
        _cleanup_strv_free_ char **fetch_libs = NULL;
        _cleanup_free_ char *fetch_key = xstrdup("");
        if (o->fetch_path) {
                char h[IMAGE_SHA256_HEX];
                if ((r = image_fetch_libs(&ctx, o->fetch_path, &fetch_libs)) < 0)
                        return r;
                if ((r = image_sha256_file(o->fetch_path, h)) < 0)
                        return log_error_errno(r, "image: hash %s: %m", o->fetch_path);
                free(fetch_key);
                fetch_key = xasprintf("fetch %s", h);
                STRV_FOREACH(l, fetch_libs) {
                        const char *tab = strchr(*l, '\t');
                        if (!tab || (r = image_sha256_file(tab + 1, h)) < 0)
                                return log_error_errno(r < 0 ? r : -EINVAL, "image: hash %s: %m", *l);
                        char *k = xasprintf("%s %s", fetch_key, h);
                        free(fetch_key);
                        fetch_key = k;
                }
        }
        _cleanup_strv_free_ char **git_libs = NULL;
        if (git_path) {
                char h[IMAGE_SHA256_HEX];
                if ((r = image_fetch_libs(&ctx, git_path, &git_libs)) < 0)
                        return r;
                if ((r = image_sha256_file(git_path, h)) < 0)
                        return log_error_errno(r, "image: hash %s: %m", git_path);
                char *k = xasprintf("%s git %s", fetch_key, h);
                free(fetch_key);
                fetch_key = k;
                STRV_FOREACH(l, git_libs) {
                        const char *tab = strchr(*l, '\t');
                        if (!tab || (r = image_sha256_file(tab + 1, h)) < 0)
                                return log_error_errno(r < 0 ? r : -EINVAL, "image: hash %s: %m", *l);
                        k = xasprintf("%s %s", fetch_key, h);
                        free(fetch_key);
                        fetch_key = k;
                }
        }
        /* Initramfs: keyed by the kernel, the init and the module list. */
        _cleanup_free_ char *ikey_in = xasprintf("initramfs-v2\n%s\n%s\n%s\n", deb_sha, init_sha, modlist);
        image_sha256_buf(ikey_in, strlen(ikey_in), key);
        if (!reuse(old, arts, ctx.dir, IMAGE_INITRAMFS, key)) {
                image_progress(&ctx, "initramfs: writing (%zu modules)", strv_length(mods));
                _cleanup_free_ char *out = xasprintf("%s/%s", ctx.dir, IMAGE_INITRAMFS);
                if ((r = image_initramfs_write(out, o->init_path, kroot, release, mods)) < 0)
                        return r;
                if ((r = record(arts, ctx.dir, IMAGE_INITRAMFS, key)) < 0)
                        return r;
                changed = true;
        } else
                image_progress(&ctx, "initramfs: unchanged (cached)");

        /* System disk: keyed by the proxy and what else it carries (fetch helper, git, every
         * library of theirs). */
        _cleanup_free_ char *skey_in = xasprintf("system-v1\n%s\n%s\n", proxy_sha, fetch_key);
        image_sha256_buf(skey_in, strlen(skey_in), key);
        if (!reuse(old, arts, ctx.dir, IMAGE_SYSTEM, key)) {
                image_progress(&ctx, "system disk: writing");
                _cleanup_free_ char *out = xasprintf("%s/%s", ctx.dir, IMAGE_SYSTEM);
                ImageSystemExtra extra = {
                        .fetch_path = o->fetch_path,
                        .fetch_libs = fetch_libs,
                        .git_path = git_path,
                        .git_libs = git_libs,
                };
                if ((r = image_system_write(&ctx, out, o->proxy_path, &extra)) < 0)
                        return r;
                if ((r = record(arts, ctx.dir, IMAGE_SYSTEM, key)) < 0)
                        return r;
                changed = true;
        } else
                image_progress(&ctx, "system disk: unchanged (cached)");

        /* Rootfs: keyed by the tar's hash, or by suite + package list. */
        const char *suite = o->suite ? o->suite : IMAGE_DEFAULT_SUITE;
        _cleanup_free_ char *rkey_in = NULL;
        char tar_sha[IMAGE_SHA256_HEX] = "";
        if (o->packages)
                packages = strv_copy(o->packages);
        else {
                _cleanup_free_ char *d = xstrdup(IMAGE_DEFAULT_PACKAGES);
                char *save = NULL;
                for (char *t = strtok_r(d, ",", &save); t; t = strtok_r(NULL, ",", &save))
                        strv_extend(&packages, t);
        }
        strv_sort_uniq(packages);
        STRV_FOREACH(p, packages)
                if (isempty(*p) || strspn(*p, "abcdefghijklmnopqrstuvwxyz0123456789+-.") != strlen(*p))
                        return log_error_errno(-EINVAL, "image: '%s' is not a Debian package name", *p);
        if (o->rootfs_tar) {
                if ((r = image_sha256_file(o->rootfs_tar, tar_sha)) < 0)
                        return log_error_errno(r, "image: hash %s: %m", o->rootfs_tar);
                rkey_in = xasprintf("rootfs-v1\ntar\n%s\n", tar_sha);
        } else if (o->oci_archive) {
                image_progress(&ctx, "rootfs: hashing %s", o->oci_archive);
                if ((r = image_sha256_file(o->oci_archive, tar_sha)) < 0)
                        return log_error_errno(r, "image: hash %s: %m", o->oci_archive);
                /* The applier's version is part of the key: a change in what it strips rebuilds. */
                rkey_in = xasprintf("rootfs-v1\noci-v1\n%s\n", tar_sha);
        } else {
                _cleanup_free_ char *pk = strv_join(packages, ",");
                rkey_in = xasprintf("rootfs-v1\nmmdebstrap\n%s\n%s\n", suite, pk);
        }
        image_sha256_buf(rkey_in, strlen(rkey_in), key);
        _cleanup_json_ json_t *oci_info = NULL;
        if (o->oci_archive) {
                /* Kept from the last import when the rootfs is reused. */
                json_t *prev = json_object_get(old, "rootfs");
                if (json_is_object(prev) &&
                    streq_ptr(json_string_value(json_object_get(prev, "source")), "oci"))
                        oci_info = json_incref(json_object_get(prev, "oci"));
        }
        if (!reuse(old, arts, ctx.dir, IMAGE_ROOTFS, key) || (o->oci_archive && !oci_info)) {
                _cleanup_free_ char *bdir = xasprintf("%s/rootfs-build", ctx.cache_dir);
                _cleanup_free_ char *out = xasprintf("%s/%s", ctx.dir, IMAGE_ROOTFS);
                (void) image_rm_rf(bdir);
                if ((r = mkdir_p_at(AT_FDCWD, bdir, 0755)) < 0)
                        return log_error_errno(r, "image: mkdir %s: %m", bdir);
                if (o->rootfs_tar)
                        r = image_rootfs_import_tar(&ctx, o->rootfs_tar, bdir);
                else if (o->oci_archive) {
                        json_decref(oci_info);
                        oci_info = NULL;
                        r = image_oci_import(&ctx, o->oci_archive, bdir, &oci_info);
                } else
                        r = image_rootfs_debootstrap(&ctx, bdir, suite, packages);
                if (r >= 0)
                        r = image_rootfs_customize(&ctx, bdir);
                if (r >= 0)
                        r = image_rootfs_mkfs(&ctx, bdir, out);
                (void) image_rm_rf(bdir);
                if (r < 0)
                        return r;
                if ((r = record(arts, ctx.dir, IMAGE_ROOTFS, key)) < 0)
                        return r;
                changed = true;
        } else
                image_progress(&ctx, "rootfs: unchanged (cached)");

        json_t *jm = json_array(), *jp = json_array();
        STRV_FOREACH(p, mods) {
                const char *b = strrchr(*p, '/');
                json_array_append_new(jm, json_string(b ? b + 1 : *p));
        }
        STRV_FOREACH(p, packages)
                json_array_append_new(jp, json_string(*p));
        char ts[32];
        json_object_set_new(
                m,
                "name",
                json_string(
                        o->oci_archive          ? "oci"
                                : o->rootfs_tar ? "imported"
                                                : "debian-minbase"));
        /* Unchanged inputs give a byte-identical manifest (callers compare it to see a change). */
        json_t *old_at = json_object_get(old, "built_at");
        if (!changed && json_is_string(old_at))
                json_object_set(m, "built_at", old_at);
        else
                json_object_set_new(
                        m, "built_at", json_string(format_timestamp_rfc3339(ts, now_usec(CLOCK_REALTIME))));
        json_object_set_new(
                m,
                "kernel",
                json_pack(
                        "{s:s, s:s, s:s, s:o}",
                        "release",
                        release,
                        "package",
                        deb_name,
                        "package_sha256",
                        deb_sha,
                        "modules",
                        jm));
        if (o->rootfs_tar)
                json_object_set_new(
                        m, "rootfs", json_pack("{s:s, s:s}", "source", "tar", "tar_sha256", tar_sha));
        else if (o->oci_archive)
                json_object_set_new(
                        m,
                        "rootfs",
                        json_pack("{s:s, s:s, s:O}", "source", "oci", "archive_sha256", tar_sha, "oci", oci_info));
        else {
                json_object_set_new(
                        m,
                        "rootfs",
                        json_pack("{s:s, s:s, s:o}", "source", "mmdebstrap", "suite", suite, "packages", jp));
                jp = NULL;
                if (o->packages_from)
                        json_object_set_new(
                                json_object_get(m, "rootfs"), "packages_from", json_string(o->packages_from));
        }
        json_decref(jp);
        json_object_set_new(m, "init_sha256", json_string(init_sha));
        json_object_set_new(m, "proxy_sha256", json_string(proxy_sha));

        _cleanup_free_ char *text = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
        _cleanup_free_ char *mp = xasprintf("%s/%s", ctx.dir, IMAGE_MANIFEST);
        _cleanup_free_ char *body = xasprintf("%s\n", text);
        if ((r = write_file_atomic_at(AT_FDCWD, mp, body, strlen(body), 0644)) < 0)
                return log_error_errno(r, "image: write %s: %m", mp);
        image_progress(&ctx, "done: %s", ctx.dir);
        *ret_manifest = TAKE_PTR(m);
        return 0;
}
