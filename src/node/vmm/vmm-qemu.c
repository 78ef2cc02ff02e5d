/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Driver "qemu" (default): the microVM invocation of src/lib/image (image_qemu_argv:
 * -M microvm, -nodefaults, read-only rootfs and system disk + per-pod scratch on virtio-blk, the channel on a
 * virtio-serial port backed by a unix socket in the pod's 0700 vm/ dir, console to
 * console.log, -sandbox on with every deny option, a NIC only with a tap). The VMM joins its
 * cgroup and the pod's netns before exec and runs as the nucleus-vmm user when it exists.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "image.h"
#include "log.h"
#include "net.h"
#include "qmp.h"
#include "string-util.h"
#include "vmm-internal.h"

#define QEMU_PATH "/usr/bin/qemu-system-x86_64"
#define QEMU_SCRATCH_FDSET_ID "1"
#define QEMU_SCRATCH_FDSET "/dev/fdset/" QEMU_SCRATCH_FDSET_ID

static int qemu_probe(const VmmLaunch *l, char **reterr) {
        static const char *const files[] = { IMAGE_QEMU_KERNEL, IMAGE_INITRAMFS, IMAGE_SYSTEM, IMAGE_ROOTFS };

        if (access(QEMU_PATH, X_OK) < 0) {
                *reterr = xstrdup("driver qemu needs " QEMU_PATH ": install the 'qemu-system-x86' package");
                return -ENOENT;
        }
        if (!l->image_dir) {
                *reterr = xstrdup("no images dir configured (--images-dir or images_dir in the node "
                                  "config)");
                return -ENOENT;
        }
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *p = xasprintf("%s/%s", l->image_dir, files[i]);
                if (access(p, R_OK) < 0) {
                        *reterr = xasprintf(
                                "guest image incomplete: %s is missing (run 'nucleus setup' or 'nucleus "
                                "image build')",
                                p);
                        return -ENOENT;
                }
        }
        _cleanup_free_ char *system = xasprintf("%s/" IMAGE_SYSTEM, l->image_dir);
        int r = image_system_check(system, reterr);
        if (r < 0)
                return r;
        return image_boot_files_check(l->image_dir, files, ELEMENTSOF(files), reterr);
}

static int qemu_start(const VmmLaunch *l, Vmm *vm, char **reterr) {
        _cleanup_free_ char *vmdir = xasprintf("%s/vm", l->pod_dir);
        /* The disk beside vm/, in the pod dir only root writes: the VMM user may open it, but
         * no QEMU (they all run as that user) can put another file in its place. vm/ holds only
         * QEMU's sockets. */
        _cleanup_free_ char *scratch = xasprintf("%s/scratch.img", l->pod_dir);
        _cleanup_free_ char *sock = xasprintf("%s/channel.sock", vmdir);
        _cleanup_free_ char *console = xasprintf("%s/console.log", l->pod_dir);
        _cleanup_free_ char *kernel = xasprintf("%s/" IMAGE_QEMU_KERNEL, l->image_dir);
        _cleanup_free_ char *initrd = xasprintf("%s/" IMAGE_INITRAMFS, l->image_dir);
        _cleanup_free_ char *rootfs = xasprintf("%s/" IMAGE_ROOTFS, l->image_dir);
        _cleanup_free_ char *system = xasprintf("%s/" IMAGE_SYSTEM, l->image_dir);
        _cleanup_free_ char *net_arg = NULL;
        _cleanup_close_ int logfd = -EBADF, tapfd = -EBADF, diskfd = -EBADF, diskfd_ro = -EBADF;
        char **argv = NULL;
        int r;

        if (mkdir(vmdir, 0700) < 0 && errno != EEXIST) {
                r = -errno;
                *reterr = xasprintf("cannot create %s: %s", vmdir, strerror(-r));
                return r;
        }
        if (l->restore_scratch) {
                /* A restored VM continues with its parent's disk as it was when paused: a copy
                 * (a reflink where the filesystem shares extents) the child owns alone. */
                _cleanup_close_ int src = open(l->restore_scratch, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                _cleanup_close_ int dst = open(
                        scratch, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                r = src < 0 || dst < 0 ? -errno : copy_file_sparse(src, dst);
                if (r < 0) {
                        (void) unlink(scratch);
                        *reterr = xasprintf(
                                "cannot copy the snapshot's scratch disk %s: %s",
                                l->restore_scratch,
                                strerror(-r));
                        return r;
                }
        } else {
                r = image_scratch_create(scratch, l->scratch_mib * 1024 * 1024);
                if (r < 0) {
                        *reterr = xasprintf("cannot create the scratch disk %s: %s", scratch, strerror(-r));
                        return r;
                }
        }
        /* The console log is ours (node opens it); QEMU's stdout/stderr go to it as well. */
        logfd = open(console, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (logfd < 0) {
                r = -errno;
                *reterr = xasprintf("cannot open %s: %s", console, strerror(-r));
                return r;
        }
        /* The disk reaches QEMU as a descriptor (-add-fd, file=/dev/fdset/N): the file stays
         * root's and 0600, so no other process of the VMM user (every pod's QEMU is one) can
         * open another pod's disk. */
        {
                struct stat st;
                diskfd = open(scratch, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
                if (diskfd < 0 || fstat(diskfd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
                        r = diskfd < 0 ? -errno : -EBADFD;
                        *reterr = xasprintf("cannot open the scratch disk %s: %s", scratch, strerror(-r));
                        return r;
                }
                /* QEMU takes from the set the descriptor whose access mode matches each open it
                 * makes (it probes read-only first): one of each, both of this file. */
                _cleanup_free_ char *self = xasprintf("/proc/self/fd/%d", diskfd);
                diskfd_ro = open(self, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (diskfd_ro < 0) {
                        r = -errno;
                        *reterr = xasprintf("cannot open the scratch disk %s: %s", scratch, strerror(-r));
                        return r;
                }
        }
        if (l->run_uid != 0) {
                /* QEMU runs as the VMM user: hand it its console and vm/ for its sockets,
                 * nothing else. */
                r = fchown(logfd, l->run_uid, l->run_gid) < 0
                        ? -errno
                        : vmm_hand_over(vmdir, true, NULL, l->run_uid, l->run_gid);
                if (r < 0) {
                        *reterr = xasprintf("cannot hand %s to the VMM user: %s", vmdir, strerror(-r));
                        return r;
                }
        }
        if (l->net_cmdline) {
                const char *v = startswith(l->net_cmdline, "nucleus.net=");
                net_arg = xstrdup(v ?: l->net_cmdline);
        }

        if (l->net && l->tap_name) {
                /* /dev/net/tun is root-only (0600) on many hosts, and QEMU may run as the VMM
                 * user: open the tap here, as root, inside the pod's namespace, and hand QEMU the
                 * fd (vmm_spawn moves it to 3; -netdev tap,fd=3,vnet_hdr=on). */
                tapfd = net_pod_open_tap(l->net, true);
                if (tapfd < 0) {
                        *reterr = xasprintf("cannot open the pod's tap %s: %s", l->tap_name, strerror(-tapfd));
                        return tapfd;
                }
        } else if (l->tap_name) {
                *reterr = xstrdup("internal: a tap without the pod's network to open it in");
                return -EINVAL;
        }

        ImageQemuConfig qc = {
                .qemu_binary = QEMU_PATH,
                .kernel = kernel,
                .initramfs = initrd,
                .rootfs = rootfs,
                .system = system,
                .scratch = QEMU_SCRATCH_FDSET,
                .channel_socket = "channel.sock", /* relative to vm/ (QEMU's cwd): sun_path is short */
                .qmp_socket = "qmp.sock", /* snapshots (vmm_save_state); only root and the VMM user reach vm/ */
                .incoming_defer = l->restore_scratch != NULL,
                .console_log = console,
                .accel = streq_ptr(l->accel, "kvm") ? IMAGE_ACCEL_KVM : IMAGE_ACCEL_TCG,
                .memory_mib = (unsigned) l->memory_mib,
                .tcg_tb_mib = l->tcg_tb_mib,
                .mem_merge = l->ksm,
                .cpus = l->vcpus,
                .tap_fd = tapfd >= 0 ? VMM_KEEP_FD : 0, /* the fd number QEMU sees after vmm_spawn */
                .mac = l->tap_mac,
                .net_cmdline = tapfd >= 0 ? net_arg : NULL,
        };
        r = image_qemu_argv(&qc, &argv);
        if (r < 0) {
                *reterr = xasprintf("cannot build the QEMU command line: %s", strerror(-r));
                return r;
        }
        /* Descriptors QEMU inherits: the tap (if any) first, at VMM_KEEP_FD as -netdev says, then
         * the disk, in the fd set the drive names. */
        int keep[3];
        size_t n_keep = 0;
        if (tapfd >= 0)
                keep[n_keep++] = tapfd;
        for (int i = 0; i < 2; i++) {
                keep[n_keep] = i == 0 ? diskfd : diskfd_ro;
                strv_extend(&argv, "-add-fd");
                strv_consume(&argv, xasprintf("fd=%d,set=" QEMU_SCRATCH_FDSET_ID, VMM_KEEP_FD + (int) n_keep));
                n_keep++;
        }
        (void) unlink(sock);
        r = vmm_spawn_fds(l, vmdir, argv, logfd, keep, n_keep, &vm->pid);
        strv_free(argv);
        if (r < 0) {
                *reterr = xasprintf("cannot start QEMU: %s", strerror(-r));
                return r;
        }
        vm->channel_path = TAKE_PTR(sock);
        vm->accel = xstrdup(image_accel_to_string(qc.accel));
        if (l->run_uid == 0)
                log_notice(
                        "pod %s: QEMU runs as root with -sandbox (no 'nucleus-vmm' user to drop to)",
                        l->pod_id);
        return 0;
}

static int qemu_qmp_open(Vmm *vm, char **reterr);

static int qemu_connect(Vmm *vm, usec_t timeout, int *ret_fd, char **reterr) {
        int r = vmm_connect_unix_retry(vm, vm->channel_path, timeout, ret_fd);
        if (r >= 0 && pidref_is_set(&vm->pid) && (r = vmm_socket_peer_is(*ret_fd, vm->pid.pid)) < 0)
                *ret_fd = safe_close(*ret_fd);
        if (r == -ECHILD)
                *reterr = xstrdup("QEMU exited before the channel came up (see the pod's logs)");
        else if (r == -EPERM)
                /* vm/ belongs to the VMM user, which every pod's QEMU shares: another one may have
                 * put its own socket there. */
                *reterr = xasprintf("the channel socket %s is not this pod's QEMU's", vm->channel_path);
        else if (r < 0)
                *reterr = xasprintf(
                        "cannot connect to the channel socket %s: %s", vm->channel_path, strerror(-r));
        else
                (void) vmm_socket_chmod(vm->channel_path, 0600);
        if (r < 0)
                return r;
        /* QEMU serves one QMP client at a time, and vm/ belongs to the VMM user every pod's
         * QEMU shares: the node takes the monitor now and keeps it for the VM's life (vm->data,
         * closed by qemu_cleanup when the VM ends), so no other process can drive this VM
         * (pause it, read its memory, migrate it out). */
        r = qemu_qmp_open(vm, reterr);
        if (r < 0)
                *ret_fd = safe_close(*ret_fd);
        return r;
}

static int qemu_qmp_open(Vmm *vm, char **reterr) {
        _cleanup_free_ char *path = xasprintf("%s/vm/qmp.sock", vm->pod_dir);
        Qmp *q = NULL;
        int r = 0;
        pthread_mutex_lock(&vm->data_lock);
        if (vm->data_closed) {
                *reterr = xstrdup("QEMU ended before its monitor was taken");
                r = -ESHUTDOWN;
        } else if (!vm->data) {
                r = qmp_open(vm, path, 10 * USEC_PER_SEC, &q, reterr);
                if (r >= 0) {
                        (void) vmm_socket_chmod(path, 0600);
                        vm->data = q;
                }
        }
        pthread_mutex_unlock(&vm->data_lock);
        return r;
}

/* The monitor the node holds (qemu_connect took it); borrowed, under vm->data_lock (held by
 * vmm_save_state and vmm_load_state). */
static int qemu_qmp(Vmm *vm, Qmp **ret, char **reterr) {
        if (vm->data_closed) {
                *reterr = xstrdup("QEMU has ended");
                return -ESHUTDOWN;
        }
        if (!vm->data) {
                *reterr = xstrdup("QEMU's monitor was not taken when the channel connected");
                return -ENOTCONN;
        }
        *ret = vm->data;
        return 0;
}

static void qemu_free_data(Vmm *vm) {
        vm->data = qmp_close(vm->data);
}

#define QEMU_STATE_FD_NAME "nucleus-state"

static int qemu_save_state(Vmm *vm, int state_fd, int (*paused)(void *, char **), void *userdata, char **reterr) {
        Qmp *q = NULL;
        _cleanup_json_ json_t *bw = json_pack("{s:I}", "max-bandwidth", (json_int_t) INT64_MAX);
        _cleanup_json_ json_t *fdname = json_pack("{s:s}", "fdname", QEMU_STATE_FD_NAME);
        _cleanup_json_ json_t *uri = json_pack("{s:s}", "uri", "fd:" QEMU_STATE_FD_NAME);
        _cleanup_free_ char *cont_err = NULL;
        int r;

        r = qemu_qmp(vm, &q, reterr);
        if (r < 0)
                return r;
        r = qmp_execute(q, "stop", NULL, -1, 10 * USEC_PER_SEC, NULL, reterr);
        if (r < 0)
                return r;
        /* The VM is paused: nothing to converge, so no bandwidth cap (QEMU's default throttles
         * a local file to 128 MiB/s). */
        r = qmp_execute(q, "migrate-set-parameters", bw, -1, 10 * USEC_PER_SEC, NULL, reterr);
        if (r >= 0)
                r = qmp_execute(q, "getfd", fdname, state_fd, 10 * USEC_PER_SEC, NULL, reterr);
        if (r >= 0)
                r = qmp_execute(q, "migrate", uri, -1, 10 * USEC_PER_SEC, NULL, reterr);
        if (r >= 0)
                r = qmp_wait_migration(q, 300 * USEC_PER_SEC, reterr);
        if (r < 0) {
                _cleanup_free_ char *ignored = NULL;
                (void) qmp_execute(q, "migrate_cancel", NULL, -1, 10 * USEC_PER_SEC, NULL, &ignored);
        } else if (paused)
                r = paused(userdata, reterr);
        /* Always resume: a failed snapshot must not leave the pod paused. */
        int k = qmp_execute(q, "cont", NULL, -1, 30 * USEC_PER_SEC, NULL, &cont_err);
        if (k < 0 && r >= 0) {
                *reterr = TAKE_PTR(cont_err);
                r = k;
        }
        return r;
}

static int qemu_load_state(Vmm *vm, int state_fd, usec_t timeout, char **reterr) {
        Qmp *q = NULL;
        _cleanup_json_ json_t *fdname = json_pack("{s:s}", "fdname", QEMU_STATE_FD_NAME);
        _cleanup_json_ json_t *uri = json_pack("{s:s}", "uri", "fd:" QEMU_STATE_FD_NAME);
        int r;

        r = qemu_qmp(vm, &q, reterr);
        if (r < 0)
                return r;
        r = qmp_execute(q, "getfd", fdname, state_fd, 10 * USEC_PER_SEC, NULL, reterr);
        if (r < 0)
                return r;
        r = qmp_execute(q, "migrate-incoming", uri, -1, 10 * USEC_PER_SEC, NULL, reterr);
        if (r < 0)
                return r;
        r = qmp_wait_migration(q, timeout, reterr);
        if (r < 0)
                return r;
        /* The state was saved from a paused VM, so QEMU keeps it paused after loading. */
        return qmp_execute(q, "cont", NULL, -1, 30 * USEC_PER_SEC, NULL, reterr);
}

static void qemu_cleanup(Vmm *vm) {
        /* QEMU is gone: its monitor connection goes now, not with the pod's record (an ended
         * pod's record stays for keep_ended pods, and each held a socket). A snapshot that was
         * using it has failed on the closed peer and let go of the lock. */
        pthread_mutex_lock(&vm->data_lock);
        vm->data = qmp_close(vm->data);
        vm->data_closed = true;
        pthread_mutex_unlock(&vm->data_lock);
        _cleanup_free_ char *scratch = vmm_scratch_path(vm);
        _cleanup_free_ char *sock = xasprintf("%s/vm/channel.sock", vm->pod_dir);
        _cleanup_free_ char *qmp = xasprintf("%s/vm/qmp.sock", vm->pod_dir);
        (void) unlink(qmp);
        _cleanup_free_ char *vmdir = xasprintf("%s/vm", vm->pod_dir);
        (void) unlink(scratch);
        (void) unlink(sock);
        (void) rmdir(vmdir);
}

const VmmOps vmm_qemu_ops = {
        .name = "qemu",
        .weak_isolation = false,
        .probe = qemu_probe,
        .start = qemu_start,
        .connect = qemu_connect,
        .cleanup = qemu_cleanup,
        .save_state = qemu_save_state,
        .load_state = qemu_load_state,
        .free_data = qemu_free_data,
};
