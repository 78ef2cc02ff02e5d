/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of src/lib/image shared by its files: running build tools (argv only, output to
 * the build log), hashing, progress lines, tree removal. Not for use outside this folder.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"

#define IMAGE_SHA256_HEX 65 /* 64 hex chars + NUL */

typedef struct ImageCtx {
        const ImageBuildOptions *opts;
        char *dir;       /* images dir */
        char *cache_dir; /* <dir>/cache */
        int log_fd;      /* <dir>/cache/build.log, append */
        usec_t started;  /* for progress timestamps */
} ImageCtx;

/* Progress line on stderr: "image: [12.3s] <msg>" (unless quiet). */
void image_progress(const ImageCtx *ctx, const char *fmt, ...) _printf_(2, 3);

/* Run argv (no shell) with cwd (NULL: inherit), stdin /dev/null, stdout+stderr appended to the
 * build log, a fixed minimal environment. Prints a progress heartbeat every 15 s while it runs.
 * Returns the exit status (0 ok) or -errno; logs a failure with the last log lines. */
int image_run(ImageCtx *ctx, const char *what, char *const argv[], const char *cwd);
/* Like image_run, capturing stdout (at most max bytes) into *ret_out. */
int image_run_capture(ImageCtx *ctx, char *const argv[], size_t max, char **ret_out);

/* SHA-256 of a file (hex), or of a buffer. */
int image_sha256_file(const char *path, char ret_hex[static IMAGE_SHA256_HEX]);
void image_sha256_buf(const void *p, size_t n, char ret_hex[static IMAGE_SHA256_HEX]);

/* Recursively remove path (no symlink following; stays on one filesystem). Missing is fine. */
int image_rm_rf(const char *path);
/* Copy a file (contents only) to dst with mode, via a temp file + rename. */
int image_copy_file(const char *src, const char *dst, mode_t mode);
/* Apparent tree size (bytes, st_blocks based) and entry count, without following symlinks. */
int image_tree_usage(const char *path, uint64_t *ret_bytes, uint64_t *ret_entries);
/* True if the ELF file at path has no PT_INTERP (statically linked). -errno if unreadable,
 * -ENOEXEC if not a 64-bit ELF. */
int image_elf_is_static(const char *path);

/* Kernel: fetch + unpack + depmod into the cache; returns the unpacked root and release. */
int image_kernel_prepare(
        ImageCtx *ctx,
        char **ret_root,
        char **ret_release,
        char ret_deb_sha[static IMAGE_SHA256_HEX],
        char **ret_deb_name);
/* Resolve the module list with dependencies, in load order (dependencies first); built-in
 * modules are dropped. Returns a strv of paths relative to lib/modules/<release>/. */
int image_kernel_modules(const char *kroot, const char *release, char *const *wanted, char ***ret_paths);
/* Extract the uncompressed vmlinux ELF from a bzImage. */
int image_kernel_extract_vmlinux(const char *bzimage, const char *out);

/* What the system disk carries beyond the proxy; each *_libs is image_fetch_libs() output
 * ("SONAME\tPATH", the loader first). */
typedef struct ImageSystemExtra {
        const char *fetch_path; /* nucleus-web-fetch, or NULL */
        char *const *fetch_libs;
        const char *git_path; /* git for an imported rootfs, or NULL */
        char *const *git_libs;
} ImageSystemExtra;

/* Where git is in the guest (on the system disk, mounted at /nucleus), and the loader path
 * written into its PT_INTERP (short enough to replace "/lib64/ld-linux-x86-64.so.2" in place).
 * Must match the proxy. */
#define IMAGE_SYSTEM_GIT "/nucleus/bin/git"
#define IMAGE_SYSTEM_LOADER_SHORT "/nucleus/lib/ld.so"

/* Write initramfs.cpio.gz to out_path: init and the modules (module_paths relative to
 * <kroot>/lib/modules/<release>/, in load order). Returns 0 or -errno (logged). */
int image_initramfs_write(
        const char *out_path,
        const char *init_path,
        const char *kroot,
        const char *release,
        char *const *module_paths);

/* Write the system disk (IMAGE_SYSTEM) to out_path: a read-only ext4 labelled
 * IMAGE_SYSTEM_LABEL holding bin/nucleus-tool-proxy and what extra names (NULL: nothing more),
 * owned by root, mode 0644. Staged under <cache>/system-build; mkfs.ext4 -d writes it. Needs
 * root (the files on the disk must be root's). Returns 0 or -errno (logged). */
int image_system_write(ImageCtx *ctx, const char *out_path, const char *proxy_path, const ImageSystemExtra *extra);

/* Rewrite the PT_INTERP of the ELF image in data (n bytes) to interp, which must fit in the
 * segment's existing size. Returns 0, -ENOEXEC (not a 64-bit little-endian ELF, no PT_INTERP)
 * or -ENAMETOOLONG. */
int image_elf_set_interp(char *data, size_t n, const char *interp);

/* The shared libraries fetch_path needs (ldd), as resolved host paths; the dynamic loader
 * first. Returns 0 or -errno (logged). */
int image_fetch_libs(ImageCtx *ctx, const char *fetch_path, char ***ret);

/* Open path beneath the tree at rootfd with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS |
 * RESOLVE_NO_XDEV): ".." and absolute symlinks stay inside the tree. With follow_symlinks
 * false, any symlink on the way fails the open (ELOOP) instead. O_CLOEXEC is added. Returns
 * the fd or -errno. */
int image_open_in_root(int rootfd, const char *path, int flags, bool follow_symlinks);
/* Remove name in dfd without following it; directories recursively. Missing is fine. */
int image_remove_at(int dfd, const char *name);

/* Rootfs: populate dir (mmdebstrap or tar import), then customize and trim, then mkfs. */
int image_rootfs_debootstrap(ImageCtx *ctx, const char *dir, const char *suite, char *const *packages);
int image_rootfs_import_tar(ImageCtx *ctx, const char *tar, const char *dir);
int image_rootfs_customize(ImageCtx *ctx, const char *dir);
int image_rootfs_mkfs(ImageCtx *ctx, const char *dir, const char *out);

/* OCI image archives (image-oci.c): docker save output or an OCI image layout tar. */
struct archive;

typedef struct ImageOciFile {
        char *name; /* member name, "./" prefixes stripped */
        char *data; /* NUL-terminated */
        size_t size;
} ImageOciFile;

typedef struct ImageOciPlan {
        const char *format;  /* "docker-save" or "oci-layout" (static) */
        char **layers;       /* member names in the archive, in the order they apply */
        char **digests;      /* the sha256 (hex) each member's bytes must have */
        char *config_digest; /* "sha256:..." */
        char **tags;         /* repository tags, when the archive names them */
} ImageOciPlan;

typedef struct ImageOciStats {
        uint64_t entries;   /* entries read */
        uint64_t whiteouts; /* ".wh.*" entries resolved */
        uint64_t dropped;   /* device nodes, fifos, sockets, anything under dev/ proc/ sys/ */
        uint64_t stripped;  /* entries whose setuid/setgid bits were dropped */
        uint64_t bytes;     /* file bytes written */
} ImageOciStats;

void image_oci_plan_done(ImageOciPlan *p);
/* From the archive's small files (manifests, indexes, configs), the layers to apply: every
 * description is checked against its digest; exactly one linux/amd64 image must be present.
 * Returns 0 and *ret, or -errno with a message naming the file and problem in *ret_err. */
int image_oci_plan(const ImageOciFile *files, size_t n, ImageOciPlan *ret, char **ret_err);
/* Apply one layer (an open libarchive reader over the layer tar) to the tree at rootfd, with
 * whiteouts; every path opened beneath rootfd with openat2(RESOLVE_IN_ROOT). Returns 0 or
 * -errno with the entry and problem in *ret_err (caller frees). st (optional) is added to. */
int image_oci_apply_layer(int rootfd, struct archive *layer, ImageOciStats *st, char **ret_err);
/* Sets *ret_err (when given and still NULL) to the formatted message; returns r. */
int image_oci_fail(char **ret_err, int r, const char *fmt, ...) _printf_(3, 4);
/* Import the archive at path into dir (empty); *ret_info describes it for the manifest. */
int image_oci_import(ImageCtx *ctx, const char *path, const char *dir, json_t **ret_info);
