/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The QEMU microvm invocation, per-pod scratch disks and the accelerator probe. Paths come
 * from the node's own pod dir; any value that could break QEMU's comma-separated option
 * syntax is refused rather than escaped. The probe never hangs: its VM is killed at a deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "image-internal.h"
#include "log.h"
#include "process-util.h"
#include "string-util.h"

#define QEMU_DEFAULT "qemu-system-x86_64"

static bool qemu_opt_ok(const char *s) {
        /* QEMU splits option values on ','; "," would need doubling. We never need it. */
        return s && *s && !strchr(s, ',') && !string_has_cc(s, NULL);
}

/* The host's TSC rate in kHz, measured once (rdtsc across 20 ms of CLOCK_MONOTONIC_RAW).
 * Under TCG the guest's rdtsc reads the host TSC, but microvm has neither a PIT the kernel will
 * use (ACPI hardware-reduced mode) nor an HPET, so a kernel cannot calibrate its TSC and hangs
 * before init. Passing tsc_early_khz= tells it the rate (kernel >= 5.x). Returns 0 when unknown. */
static unsigned long host_tsc_khz(void) {
#if defined(__x86_64__)
        static unsigned long cached = 0;
        if (cached)
                return cached;
        struct timespec a, b;
        (void) clock_gettime(CLOCK_MONOTONIC_RAW, &a);
        uint64_t t0 = __builtin_ia32_rdtsc();
        (void) nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
        uint64_t t1 = __builtin_ia32_rdtsc();
        (void) clock_gettime(CLOCK_MONOTONIC_RAW, &b);
        int64_t ns = (int64_t) (b.tv_sec - a.tv_sec) * 1000000000 + (b.tv_nsec - a.tv_nsec);
        if (ns <= 0 || t1 <= t0)
                return 0;
        cached = (unsigned long) ((t1 - t0) * 1000000u / (uint64_t) ns);
        return cached;
#else
        return 0;
#endif
}

int image_qemu_argv(const ImageQemuConfig *c, char ***ret_argv) {
        _cleanup_strv_free_ char **a = NULL;
        unsigned mem = c->memory_mib ? c->memory_mib : 512, cpus = c->cpus ? c->cpus : 1;
        unsigned tb = c->tcg_tb_mib ? c->tcg_tb_mib : IMAGE_TCG_TB_MIB_DEFAULT;

        if (!qemu_opt_ok(c->kernel) || !qemu_opt_ok(c->initramfs) || !qemu_opt_ok(c->console_log))
                return -EINVAL;
        if (c->rootfs && (!qemu_opt_ok(c->rootfs) || !qemu_opt_ok(c->scratch) || !qemu_opt_ok(c->system)))
                return -EINVAL;
        if (c->channel_socket && !qemu_opt_ok(c->channel_socket))
                return -EINVAL;
        if (c->qmp_socket && !qemu_opt_ok(c->qmp_socket))
                return -EINVAL;
        bool nic = c->tap_ifname || c->tap_fd != 0;
        if ((c->tap_ifname && c->tap_fd != 0) || (c->tap_fd != 0 && c->tap_fd <= 2) ||
            (c->tap_ifname && !qemu_opt_ok(c->tap_ifname)))
                return -EINVAL;
        if (nic &&
            (!qemu_opt_ok(c->mac) || isempty(c->net_cmdline) || strpbrk(c->net_cmdline, " \t") ||
             string_has_cc(c->net_cmdline, NULL)))
                return -EINVAL;
        if (c->extra_cmdline && string_has_cc(c->extra_cmdline, NULL))
                return -EINVAL;
        if (c->accel != IMAGE_ACCEL_TCG && c->accel != IMAGE_ACCEL_KVM)
                return -EINVAL;
        if (mem < 128 || mem > 65536 || cpus > 64 || tb > 2048)
                return -EINVAL;

        strv_extend(&a, c->qemu_binary ? c->qemu_binary : QEMU_DEFAULT);
        /* microvm: no PCI, no firmware option ROMs; ACPI (on by default) gives the guest a
         * working power-off. */
        strv_extend(&a, "-M");
        /* mem-merge: QEMU marks guest RAM mergeable unless told not to; KSM is a setting
         * (docs/node.md "Dense pods": merging leaks through write timing across pods). */
        strv_extend(
                &a,
                c->mem_merge ? "microvm,x-option-roms=off,rtc=on,isa-serial=on,mem-merge=on"
                             : "microvm,x-option-roms=off,rtc=on,isa-serial=on,mem-merge=off");
        strv_extend(&a, "-nodefaults");
        strv_extend(&a, "-no-user-config");
        strv_extend(&a, "-nographic");
        strv_extend(&a, "-no-reboot");
        if (!c->no_sandbox) {
                strv_extend(&a, "-sandbox");
                strv_extend(&a, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
        }
        if (c->accel == IMAGE_ACCEL_KVM) {
                strv_extend(&a, "-accel");
                strv_extend(&a, "kvm");
                strv_extend(&a, "-cpu");
                strv_extend(&a, "host");
        } else {
                strv_extend(&a, "-accel");
                strv_consume(&a, xasprintf("tcg,tb-size=%u", tb));
                strv_extend(&a, "-cpu");
                strv_extend(&a, "max");
        }
        strv_extend(&a, "-m");
        strv_consume(&a, xasprintf("%u", mem));
        strv_extend(&a, "-smp");
        strv_consume(&a, xasprintf("%u", cpus));

        strv_extend(&a, "-kernel");
        strv_extend(&a, c->kernel);
        strv_extend(&a, "-initrd");
        strv_extend(&a, c->initramfs);
        unsigned long khz = c->accel == IMAGE_ACCEL_TCG ? host_tsc_khz() : 0;
        _cleanup_free_ char *tsc = khz > 0 ? xasprintf(" tsc_early_khz=%lu", khz) : xstrdup("");
        const char *tuning = c->stock_boot    ? ""
                : c->accel == IMAGE_ACCEL_TCG ? " " IMAGE_BOOT_TUNING " " IMAGE_BOOT_TUNING_TCG
                                              : " " IMAGE_BOOT_TUNING;
        _cleanup_free_ char *cmdline = xasprintf(
                "console=ttyS0 quiet panic=-1 reboot=t%s%s nucleus.channel=%s%s%s%s%s",
                tsc,
                tuning,
                IMAGE_CHANNEL_NAME,
                nic ? " nucleus.net=" : "",
                nic ? c->net_cmdline : "",
                c->extra_cmdline ? " " : "",
                c->extra_cmdline ? c->extra_cmdline : "");
        strv_extend(&a, "-append");
        strv_extend(&a, cmdline);

        /* Serial console (ttyS0) to a file, appended (the node may log QEMU's own stderr to the
         * same file); no monitor on stdio. */
        strv_extend(&a, "-chardev");
        strv_consume(&a, xasprintf("file,id=con0,path=%s,append=on", c->console_log));
        strv_extend(&a, "-serial");
        strv_extend(&a, "chardev:con0");
        strv_extend(&a, "-monitor");
        strv_extend(&a, "none");
        if (c->qmp_socket) {
                strv_extend(&a, "-qmp");
                strv_consume(&a, xasprintf("unix:%s,server=on,wait=off", c->qmp_socket));
        }
        if (c->incoming_defer) {
                strv_extend(&a, "-incoming");
                strv_extend(&a, "defer");
        }

        if (c->rootfs) {
                /* werror/rerror=report: a host-side I/O error (the scratch file's filesystem is
                 * full) reaches the guest as an I/O error on that request. QEMU's default
                 * (werror=enospc) pauses the whole VM instead, which looks like a hung guest. */
                strv_extend(&a, "-drive");
                strv_consume(
                        &a,
                        xasprintf("id=rootfs,file=%s,format=raw,if=none,readonly=on,rerror=report", c->rootfs));
                strv_extend(&a, "-device");
                strv_extend(&a, "virtio-blk-device,drive=rootfs,serial=" IMAGE_ROOTFS_SERIAL);
                strv_extend(&a, "-drive");
                strv_consume(
                        &a,
                        xasprintf(
                                "id=scratch,file=%s,format=raw,if=none,discard=unmap,werror=report,rerror="
                                "report%s",
                                c->scratch,
                                /* Descriptors passed in an fd set (the node's qemu driver): QEMU
                                 * re-takes them from the set on every reopen (after a migration
                                 * too), and its image locks between those would conflict; the
                                 * disk is this pod's alone. */
                                startswith(c->scratch, "/dev/fdset/") ? ",file.locking=off" : ""));
                strv_extend(&a, "-device");
                strv_extend(&a, "virtio-blk-device,drive=scratch,serial=" IMAGE_SCRATCH_SERIAL);
                /* The system disk (/nucleus in the guest), shared by every pod of the image:
                 * read-only to QEMU and so to the guest, cached once in the host's page cache. */
                strv_extend(&a, "-drive");
                strv_consume(
                        &a,
                        xasprintf("id=system,file=%s,format=raw,if=none,readonly=on,rerror=report", c->system));
                strv_extend(&a, "-device");
                strv_extend(&a, "virtio-blk-device,drive=system,serial=" IMAGE_SYSTEM_SERIAL);
        }
        if (c->rootfs) {
                /* Free-page reporting: the guest hands pages it frees back to QEMU, which drops
                 * them from its RSS (docs/node.md "Dense pods"). No balloon target is ever set,
                 * so the guest's memory size never changes. */
                strv_extend(&a, "-device");
                strv_extend(&a, "virtio-balloon-device,free-page-reporting=on");
        }
        if (c->channel_socket) {
                strv_extend(&a, "-chardev");
                strv_consume(&a, xasprintf("socket,id=ch0,path=%s,server=on,wait=off", c->channel_socket));
                strv_extend(&a, "-device");
                strv_extend(&a, "virtio-serial-device,max_ports=2");
                strv_extend(&a, "-device");
                strv_extend(&a, "virtserialport,chardev=ch0,name=" IMAGE_CHANNEL_NAME);
        }
        if (nic) {
                strv_extend(&a, "-netdev");
                if (c->tap_fd > 2)
                        /* No vnet_hdr= here: QEMU (7.2) refuses it with fd= and reads the
                         * IFF_VNET_HDR flag from the fd itself (TUNGETIFF). */
                        strv_consume(&a, xasprintf("tap,id=net0,fd=%d", c->tap_fd));
                else
                        strv_consume(
                                &a, xasprintf("tap,id=net0,ifname=%s,script=no,downscript=no", c->tap_ifname));
                strv_extend(&a, "-device");
                strv_consume(&a, xasprintf("virtio-net-device,netdev=net0,mac=%s", c->mac));
        }
        *ret_argv = TAKE_PTR(a);
        return 0;
}

int image_scratch_create(const char *path, uint64_t size_bytes) {
        if (!path)
                return -EINVAL;
        if (size_bytes < (16u << 20))
                size_bytes = 16u << 20;
        if (size_bytes > (UINT64_C(1) << 44))
                return -EFBIG;
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        if (ftruncate(fd, (off_t) size_bytes) < 0) {
                int r = -errno;
                (void) unlink(path);
                return r;
        }
        fd = safe_close(fd);
        /* root_owner 0:0: the filesystem root holds the proxy's state beside the agent's
         * "workspace" directory, which the guest init creates and hands to uid 1000. */
        char *const argv[] = {
                (char *) "/sbin/mkfs.ext4", /* run_argv execs argv[0] as is: no PATH lookup */
                (char *) "-q",
                (char *) "-F",
                (char *) "-L",
                (char *) IMAGE_SCRATCH_LABEL, /* how the guest finds it without a serial */
                (char *) "-m",
                (char *) "0",
                (char *) "-E",
                (char *) "root_owner=0:0,lazy_itable_init=1,nodiscard",
                (char *) path,
                NULL,
        };
        int r = run_argv(argv, NULL);
        if (r != 0) {
                (void) unlink(path);
                return r < 0 ? r : -EIO;
        }
        return 0;
}

/* Every directory from path's own up to / is root's, and none lets anyone else add, remove or
 * rename its entries (no group or other write bit, unless sticky: then only the owner of an
 * entry, root for each one checked here, may rename it). */
static int system_dirs_check(const char *path, char **reterr) {
        _cleanup_free_ char *dir = xstrdup(path);
        char *slash = strrchr(dir, '/');
        if (!slash)
                dir = mfree(dir), dir = xstrdup(".");
        else if (slash == dir)
                slash[1] = 0;
        else
                *slash = 0;
        _cleanup_free_ char *real = realpath(dir, NULL);
        if (!real)
                return -errno;
        for (;;) {
                struct stat st;
                if (stat(real, &st) < 0)
                        return -errno;
                if (st.st_uid != 0 || ((st.st_mode & 022) && !(st.st_mode & S_ISVTX))) {
                        *reterr = xasprintf(
                                "the directory %s of the system disk %s must be owned by root and writable "
                                "by no one else (owner uid %u, mode %04o): whoever may write it can put "
                                "another file in the disk's place",
                                real,
                                path,
                                (unsigned) st.st_uid,
                                (unsigned) (st.st_mode & 07777));
                        return -EPERM;
                }
                char *s = strrchr(real, '/');
                if (!s || streq(real, "/"))
                        return 0;
                if (s == real)
                        s[1] = 0;
                else
                        *s = 0;
        }
}

int image_system_check(const char *path, char **reterr) {
        struct stat st;
        if (!path)
                return -EINVAL;
        if (stat(path, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode)) {
                *reterr = xasprintf("the system disk %s is not a regular file", path);
                return -EPERM;
        }
        if (st.st_uid != 0 || (st.st_mode & 022)) {
                *reterr = xasprintf(
                        "the system disk %s must be owned by root and writable by no one else "
                        "(owner uid %u, mode %04o): every pod of the image runs its proxy from it; "
                        "rebuild it with 'nucleus image build' as root",
                        path,
                        (unsigned) st.st_uid,
                        (unsigned) (st.st_mode & 07777));
                return -EPERM;
        }
        return system_dirs_check(path, reterr);
}

int image_boot_files_check(const char *image_dir, const char *const *names, size_t n, char **reterr) {
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = xasprintf("%s/%s", image_dir, names[i]);
                struct stat st;
                if (stat(path, &st) < 0)
                        return -errno;
                if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022)) {
                        *reterr = xasprintf(
                                "the guest image file %s must be a regular file owned by root and writable "
                                "by no one else (owner uid %u, mode %04o): every pod of the image boots "
                                "from it; rebuild it with 'nucleus image build' as root",
                                path,
                                (unsigned) st.st_uid,
                                (unsigned) (st.st_mode & 07777));
                        return -EPERM;
                }
        }
        return 0;
}

/* Spawn a probe VM (no disks, no channel) and wait for a marker on its console. */
static int probe_run_in(
        const char *tmpl,
        const char *qemu_binary,
        const char *kernel,
        const char *initramfs,
        ImageAccel accel,
        usec_t timeout,
        usec_t *ret_usec,
        char **ret_detail) {
        _cleanup_free_ char *log = xasprintf("%s/console.log", tmpl);
        _cleanup_free_ char *err = xasprintf("%s/stderr", tmpl);
        ImageQemuConfig c = {
                .qemu_binary = qemu_binary,
                .kernel = kernel,
                .initramfs = initramfs,
                .console_log = log,
                .accel = accel,
                .memory_mib = 256,
                .extra_cmdline = "nucleus.probe=1",
        };
        _cleanup_strv_free_ char **argv = NULL;
        int r = image_qemu_argv(&c, &argv);
        if (r < 0)
                return r;

        _cleanup_close_ int efd = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        _cleanup_close_ int nfd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        _cleanup_pidref_kill_ PidRef pid = PIDREF_NULL;
        usec_t start = now_usec(CLOCK_MONOTONIC);
        if (efd < 0 || nfd < 0)
                return -errno;
        r = spawn_argv(argv, NULL, -1, nfd, efd, &pid);
        if (r < 0)
                return r;

        r = -ETIMEDOUT;
        for (;;) {
                _cleanup_free_ char *data = NULL;
                size_t n;
                if (read_full_file_at(AT_FDCWD, log, 1u << 20, &data, &n) >= 0 &&
                    strstr(data, IMAGE_INIT_MARKER)) {
                        *ret_usec = now_usec(CLOCK_MONOTONIC) - start;
                        r = 0;
                        break;
                }
                int status;
                pid_t p = waitpid(pid.pid, &status, WNOHANG);
                if (p == pid.pid) {
                        pidref_done(&pid);
                        /* Exited before the marker: look once more, then report stderr. */
                        if (read_full_file_at(AT_FDCWD, log, 1u << 20, &data, &n) >= 0 &&
                            strstr(data, IMAGE_INIT_MARKER)) {
                                *ret_usec = now_usec(CLOCK_MONOTONIC) - start;
                                r = 0;
                                break;
                        }
                        _cleanup_free_ char *e = NULL;
                        if (ret_detail && read_full_file_at(AT_FDCWD, err, 4096, &e, &n) >= 0) {
                                char *nl = strchr(e, '\n');
                                if (nl)
                                        *nl = 0;
                                *ret_detail = string_make_visible(e);
                        }
                        r = -ECHILD;
                        break;
                }
                if (now_usec(CLOCK_MONOTONIC) - start >= timeout)
                        break;
                (void) usleep(20 * 1000);
        }
        /* Give the VM a moment to power itself off; the cleanup kills it otherwise. */
        if (pidref_is_set(&pid)) {
                usec_t until = now_usec(CLOCK_MONOTONIC) + 3 * USEC_PER_SEC;
                while (now_usec(CLOCK_MONOTONIC) < until) {
                        if (waitpid(pid.pid, NULL, WNOHANG) == pid.pid) {
                                pidref_done(&pid);
                                break;
                        }
                        (void) usleep(20 * 1000);
                }
        }
        return r;
}

static int probe_run(
        const char *qemu_binary,
        const char *kernel,
        const char *initramfs,
        ImageAccel accel,
        usec_t timeout,
        usec_t *ret_usec,
        char **ret_detail) {
        char tmpl[] = "/tmp/nucleus-probe-XXXXXX";
        if (!mkdtemp(tmpl))
                return -errno;
        int r = probe_run_in(tmpl, qemu_binary, kernel, initramfs, accel, timeout, ret_usec, ret_detail);
        (void) image_rm_rf(tmpl);
        return r;
}

int image_probe_boot(
        const char *qemu_binary,
        const char *kernel,
        const char *initramfs,
        ImageAccel accel,
        usec_t timeout,
        usec_t *ret_usec) {
        return probe_run(qemu_binary, kernel, initramfs, accel, timeout, ret_usec, NULL);
}

int image_kvm_probe(
        const char *qemu_binary,
        const char *kernel,
        const char *initramfs,
        usec_t timeout,
        ImageAccel *ret_accel,
        char **ret_reason) {
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                *ret_accel = IMAGE_ACCEL_TCG;
                *ret_reason = xasprintf(
                        "/dev/kvm cannot be opened (%s); using TCG (software emulation)", strerror(errno));
                return 0;
        }
        (void) close(fd);

        usec_t t = 0;
        _cleanup_free_ char *detail = NULL;
        int r = probe_run(qemu_binary, kernel, initramfs, IMAGE_ACCEL_KVM, timeout, &t, &detail);
        if (r == 0) {
                *ret_accel = IMAGE_ACCEL_KVM;
                *ret_reason = xasprintf(
                        "KVM probe boot reached init in %llu ms", (unsigned long long) (t / USEC_PER_MSEC));
                return 0;
        }
        *ret_accel = IMAGE_ACCEL_TCG;
        if (r == -ETIMEDOUT)
                *ret_reason = xasprintf(
                        "KVM probe boot did not reach init within %llu ms; using TCG",
                        (unsigned long long) (timeout / USEC_PER_MSEC));
        else if (r == -ECHILD)
                *ret_reason = xasprintf(
                        "KVM probe VM exited before init (%s); using TCG", detail ? detail : "no message");
        else
                *ret_reason = xasprintf("KVM probe failed (%s); using TCG", strerror(-r));
        return 0;
}
