/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest images and the QEMU microVM invocation (DESIGN.md §8, docs/images.md).
 * Builds, into one image dir: vmlinuz (bzImage for QEMU), vmlinux (uncompressed, Firecracker),
 * initramfs.cpio.gz (static nucleus-guest-init as /init and the kernel modules), nucleus.ext4
 * (the system disk: the proxy and the guest's other Nucleus files, mounted read-only at
 * /nucleus), rootfs.ext4 (read-only Debian minbase or an imported tar) and manifest.json. Artifacts are
 * cached by the SHA-256 of their inputs and rebuilt only when those change. Also: per-pod
 * sparse scratch disks, the QEMU argv, and the KVM probe with TCG fallback.
 * Inputs trusted: the caller's options; distrusted: tar archives (extracted with libarchive's
 * secure flags), kernel packages (checked against a SHA-256 when given as a file).
 *
 * Image dir layout (every name fixed):
 *   <dir>/vmlinuz  <dir>/vmlinux  <dir>/initramfs.cpio.gz  <dir>/nucleus.ext4  <dir>/rootfs.ext4
 *   <dir>/manifest.json
 *   <dir>/cache/   kernel packages, unpacked kernels, build logs (safe to delete)
 * Initramfs layout (src/guest/init/init.h): /init, /nucleus/modules/<name>.ko,
 *   /nucleus/modules/load.list (load order), /dev/console.
 * System disk layout (mounted at /nucleus): bin/nucleus-tool-proxy, and when given
 *   bin/nucleus-web-fetch, bin/git, lib/ (their libraries and loader).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "time-util.h"

#define IMAGE_VMLINUZ "vmlinuz"
#define IMAGE_VMLINUX "vmlinux"
/* The kernel QEMU boots: the uncompressed ELF through the PVH entry point, which skips the
 * bzImage's real-mode setup and in-guest decompression (about a fifth of a TCG boot). */
#define IMAGE_QEMU_KERNEL IMAGE_VMLINUX

/* QEMU keeps up to this much of its TCG translation cache resident per VM (it never gives a
 * flushed cache back). An idle pod's boot and configure fill ~48 MiB of a 64 MiB cache; 32
 * holds a pod's steady working set of translated code (the proxy, a shell, the tools it runs)
 * and costs one flush during boot. */
#define IMAGE_TCG_TB_MIB_DEFAULT 32
#define IMAGE_INITRAMFS "initramfs.cpio.gz"
#define IMAGE_ROOTFS "rootfs.ext4"
/* The system disk: a read-only ext4 with what the guest runs of Nucleus's own beyond init (the
 * proxy, the web-fetch helper, git for imported images, their libraries), attached read-only to
 * every pod of the image and mounted at /nucleus. Files on a disk are read into the guest's page
 * cache as used (and can be dropped again), where an initramfs is unpacked whole into guest RAM
 * for the pod's life; on the host, the one file's page cache serves every pod. */
#define IMAGE_SYSTEM "nucleus.ext4"
#define IMAGE_MANIFEST "manifest.json"

#define IMAGE_ROOTFS_SERIAL "nucleus-rootfs"
#define IMAGE_SCRATCH_SERIAL "nucleus-scratch"
#define IMAGE_SYSTEM_SERIAL "nucleus-system"
/* ext4 volume labels: the guest init finds the disks by these when the VMM sets no serial
 * (Firecracker). Must match src/guest/init/init-disk.h. */
#define IMAGE_ROOTFS_LABEL "nucleus-root"
#define IMAGE_SCRATCH_LABEL "nucleus-scratch"
#define IMAGE_SYSTEM_LABEL "nucleus-system"
#define IMAGE_CHANNEL_NAME "org.nucleus.channel.0"
#define IMAGE_INIT_MARKER "nucleus-guest-init: started"
#define IMAGE_PROBE_MARKER "nucleus-guest-init: probe ok"
#define IMAGE_AGENT_UID 1000

#define IMAGE_DEFAULT_SUITE "bookworm"
#define IMAGE_DEFAULT_KERNEL_PACKAGE "linux-image-cloud-amd64"
/* Default rootfs packages (on top of minbase), overridable with --packages. */
#define IMAGE_DEFAULT_PACKAGES "git,ca-certificates,busybox"

typedef struct ImageBuildOptions {
        const char *images_dir;    /* output dir; created if missing */
        bool force;                /* rebuild everything even when the inputs did not change */
        char **packages;           /* rootfs packages; NULL: IMAGE_DEFAULT_PACKAGES */
        const char *rootfs_tar;    /* import this tar (any compression) instead of mmdebstrap;
                                    * the initramfs then also carries git (git_path) */
        const char *oci_archive;   /* or this OCI image archive (docker save, OCI layout tar);
                                    * the initramfs then also carries git (git_path) */
        const char *git_path;      /* git for the initramfs of an imported rootfs; NULL:
                                    * /usr/bin/git */
        const char *packages_from; /* where the package list came from, for the manifest and
                                    * nucleus image ls ("recipe", "config.toml [images.x]", ...);
                                    * NULL: nothing recorded */
        const char *kernel_deb;    /* use this kernel .deb instead of apt-get download ... */
        const char *kernel_sha256; /* ... whose SHA-256 (hex) must match; required with it */
        const char *init_path;     /* static nucleus-guest-init */
        const char *proxy_path;    /* static nucleus-tool-proxy */
        const char *fetch_path;    /* nucleus-web-fetch (dynamic): shipped in the initramfs with
                                    * its libraries and loader; NULL: pods have no web_fetch */
        const char *suite;         /* Debian suite; NULL: IMAGE_DEFAULT_SUITE */
        char **modules;            /* kernel modules for the initramfs; NULL: the default set */
        bool quiet;                /* no progress on stderr */
} ImageBuildOptions;

/* Build (or reuse from cache) every artifact in o->images_dir and write manifest.json.
 * Arguments: o (images_dir, init_path and proxy_path required; both binaries must be static).
 * Returns: 0 and the manifest (caller decrefs) in *ret_manifest, or -errno after logging the
 * reason. Progress goes to stderr unless o->quiet. Long steps: kernel download (~25 MB),
 * mmdebstrap (~1 min), mkfs.ext4. Tool output goes to <dir>/cache/build.log.
 * Notes: needs root for mmdebstrap and for tar import with ownership; nothing secret is added to
 * any image (ssh host keys and machine-id are removed from the rootfs). */
int image_build(const ImageBuildOptions *o, json_t **ret_manifest);

/* Load and sanity-check <dir>/manifest.json and that every artifact it lists exists.
 * Returns 0 and the manifest, -ENOENT when no image was built, -EBADMSG when it is corrupt. */
int image_manifest_load(const char *images_dir, json_t **ret_manifest);

/* Whether the guest binaries an image was built with (the manifest's init_sha256 and
 * proxy_sha256) are the files at init_path and proxy_path, e.g. after an upgrade of Nucleus
 * that did not rebuild its images. Returns 1 when both match, 0 when one differs (*ret_which,
 * static: "nucleus-guest-init" or "nucleus-tool-proxy"), -errno when a file cannot be read or
 * the manifest has no such field (built before it recorded them). */
int image_guest_binaries_match(
        const json_t *manifest, const char *init_path, const char *proxy_path, const char **ret_which);

/* Create a per-pod scratch disk: a sparse file of size_bytes at path (must not exist; created
 * 0600) holding an empty ext4 labelled IMAGE_SCRATCH_LABEL whose root directory is owned by
 * root (the guest init makes its "workspace" subdirectory for the agent, uid 1000, and keeps
 * the proxy's state beside it).
 * size_bytes is clamped to >= 16 MiB. Returns 0 or -errno (the file is removed on failure). */
int image_scratch_create(const char *path, uint64_t size_bytes);

/* Check that the system disk at path may be attached: a regular file owned by root and
 * writable by nobody else (no group or other write bit), in directories that are root's and
 * writable by nobody else up to / (sticky ones allowed), so neither the VMM user nor anyone
 * but root can change or replace what every pod of the image runs as its proxy. Returns 0, -ENOENT when
 * it is missing, -EPERM (with the reason in *reterr, caller frees) when it fails the check. */
int image_system_check(const char *path, char **reterr);

/* The same for the files every pod of the image boots from (names: the kernel, the initramfs,
 * the rootfs, in image_dir, whose directories image_system_check covers): each a regular file
 * owned by root and writable by no one else, or a pod's VMM user could put its own init in
 * every later pod. Returns 0, -errno when one is missing, -EPERM with the reason in *reterr. */
int image_boot_files_check(const char *image_dir, const char *const *names, size_t n, char **reterr);

typedef enum ImageAccel {
        IMAGE_ACCEL_TCG,
        IMAGE_ACCEL_KVM,
        _IMAGE_ACCEL_MAX,
        _IMAGE_ACCEL_INVALID = -EINVAL,
} ImageAccel;

const char *image_accel_to_string(ImageAccel a);
ImageAccel image_accel_from_string(const char *s);

typedef struct ImageQemuConfig {
        const char *qemu_binary;    /* NULL: "qemu-system-x86_64" */
        const char *kernel;         /* vmlinux (PVH ELF, IMAGE_QEMU_KERNEL) or bzImage path */
        const char *initramfs;      /* initramfs.cpio.gz path */
        const char *rootfs;         /* rootfs.ext4 (attached read-only); NULL: no disks (probe) */
        const char *system;         /* nucleus.ext4 (attached read-only); required with rootfs */
        const char *scratch;        /* per-pod scratch ext4; required with rootfs */
        const char *channel_socket; /* unix socket QEMU listens on (server, no wait); NULL: no channel */
        const char *console_log;    /* serial console output file (required) */
        const char *qmp_socket;     /* optional QMP unix socket (server, no wait) */
        ImageAccel accel;
        unsigned memory_mib;       /* 0: 512 */
        unsigned cpus;             /* 0: 1 */
        unsigned tcg_tb_mib;       /* TCG translation cache, MiB; 0: IMAGE_TCG_TB_MIB_DEFAULT */
        bool mem_merge;            /* guest RAM madvise(MERGEABLE) for the host's KSM; false:
                                    * mem-merge=off (QEMU's own default is on) */
        const char *tap_ifname;    /* tap device for virtio-net; NULL: no NIC (unless tap_fd) */
        int tap_fd;                /* > 2: an open tap fd QEMU inherits (-netdev tap,fd=N), for a
                                    * QEMU that runs unprivileged and cannot open /dev/net/tun;
                                    * QEMU takes vnet_hdr from the fd's IFF_VNET_HDR flag (it
                                    * refuses vnet_hdr= with fd=); the caller keeps the fd open
                                    * and non-CLOEXEC across the exec.
                                    * 0: unused. Excludes tap_ifname. */
        const char *mac;           /* NIC MAC "xx:xx:xx:xx:xx:xx"; required with a tap */
        const char *net_cmdline;   /* "addr/prefix,gw,dns" for nucleus.net=; required with tap */
        const char *extra_cmdline; /* appended verbatim (tests: nucleus.probe=1); NULL: none */
        bool no_sandbox;           /* skip -sandbox (only for debugging) */
        bool stock_boot;           /* leave IMAGE_BOOT_TUNING out (bench/boot's baseline) */
        bool incoming_defer;       /* -incoming defer: wait for a saved state (migrate-incoming
                                    * over QMP) instead of booting the kernel */
} ImageQemuConfig;

/* Kernel command-line settings that cut the guest's boot without changing what it can do:
 * crypto self-tests at algorithm registration skipped (the kernel is not in FIPS mode, where
 * they are mandatory); PCI not probed (microvm has none); one legacy UART probed instead of
 * four (microvm has one, the console). Under TCG also tsc=reliable: the guest's TSC is the
 * host's, rated by tsc_early_khz=, and the clocksource watchdog would otherwise compare it with
 * jiffies that a loaded host delays, mark it unstable and fall back to a slower clock. */
#define IMAGE_BOOT_TUNING "cryptomgr.notests pci=off 8250.nr_uarts=1"
#define IMAGE_BOOT_TUNING_TCG "tsc=reliable"

/* Build the qemu-system-x86_64 argv for a microVM (docs/images.md "Booting"): -M microvm,
 * -nodefaults -no-user-config -nographic, -no-reboot, -sandbox on,..., kernel + initramfs +
 * command line (console=ttyS0 quiet panic=-1 IMAGE_BOOT_TUNING nucleus.channel=...), virtio-blk rootfs
 * (read-only, serial nucleus-rootfs), scratch (serial nucleus-scratch) and system disk
 * (read-only, serial nucleus-system), virtio-serial port
 * org.nucleus.channel.0 on channel_socket, serial console to console_log, virtio-net only with
 * a tap. Returns 0 and a NULL-terminated strv (caller frees with strv_free), or -EINVAL when a
 * required field is missing or a value contains a ',' that QEMU would misparse.
 * Notes: QEMU creates channel_socket with the process umask: put it in a 0700 pod dir. The
 * guest powers off when its proxy exits; QEMU then exits 0. */
int image_qemu_argv(const ImageQemuConfig *c, char ***ret_argv);

/* Decide the accelerator: when /dev/kvm opens read-write, boot kernel + initramfs under
 * -accel kvm with nucleus.probe=1 and wait up to timeout for the probe marker on the console.
 * Never hangs: the probe VM is killed at the deadline. Returns 0 with *ret_accel (KVM only when
 * the marker appeared) and a human-readable reason (caller frees); -errno only for local
 * errors (temp dir). */
/* How long setup, doctor and the node wait for a KVM probe boot to reach init. */
#define IMAGE_KVM_PROBE_TIMEOUT (30 * USEC_PER_SEC)
int image_kvm_probe(
        const char *qemu_binary,
        const char *kernel,
        const char *initramfs,
        usec_t timeout,
        ImageAccel *ret_accel,
        char **ret_reason);

/* Run one probe-mode boot with the given accel and return the time from spawning QEMU to the
 * PID 1 marker on the console (bench/boot's "bare boot"). Returns 0 or -ETIMEDOUT/-errno. */
int image_probe_boot(
        const char *qemu_binary,
        const char *kernel,
        const char *initramfs,
        ImageAccel accel,
        usec_t timeout,
        usec_t *ret_usec);
