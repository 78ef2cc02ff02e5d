/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus-guest-init: PID 1 of every Nucleus microVM. It mounts the pseudo filesystems, loads
 * the kernel modules shipped in the initramfs, finds the disks (virtio-blk serial, else ext4
 * label: init-disk.c) and the channel by the names the host gave them, switches into the
 * read-only rootfs with the read-only system disk at /nucleus, starts the tool proxy from it
 * and powers the VM off when the proxy exits.
 * Single-threaded. It trusts the initramfs (built by the host) and the kernel command line only
 * as far as init-cmdline.c validates it; it never trusts anything in the rootfs or scratch disk
 * (superblock bytes included). Any setup failure prints one line on the console
 * and powers off: the VM never carries on half-configured (STYLE.md rule 6).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "frame.h"
#include "init-cmdline.h"
#include "init.h"
#include "json-util.h"
#include "log.h"
#include "netif-util.h"
#include "string-util.h"
#include "time-util.h"

#define NEWROOT "/newroot"
#define AGENT_UID 1000
#define AGENT_GID 1000
#define CHANNEL_FD 3 /* the fd number the proxy receives the channel on */

static InitCmdline arg_cmdline = {};
static volatile sig_atomic_t arg_shutdown_requested = 0;

typedef struct BootReport {
        unsigned n_modules;
        bool nic;
        json_t *mounts; /* array of {"target","fstype","options"} */
        json_t *disks;  /* {"rootfs": {"device","by"}, "scratch": {...}, "system": {...}} */
} BootReport;

_noreturn_ static void power_off(void) {
        sync();
        (void) reboot(RB_POWER_OFF);
        /* Not reached. If the kernel refuses, exiting PID 1 panics the kernel; with panic=-1 it
         * restarts, which QEMU (-no-reboot) turns into an exit. Never loop half-alive. */
        _exit(1);
}

_noreturn_ _printf_(1, 2) static void die(const char *fmt, ...) {
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        /* One line on the console, the reason the VM stopped. */
        dprintf(STDERR_FILENO, "nucleus-guest-init: FATAL: %s; powering off\n", msg);
        power_off();
}

static int mount_one(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
        (void) mkdir(dst, 0755);
        if (mount(src, dst, type, flags, data) < 0)
                return -errno;
        return 0;
}

static void report_mount(BootReport *br, const char *target, const char *fstype, const char *options) {
        json_array_append_new(
                br->mounts,
                json_pack("{s:s, s:s, s:s}", "target", target, "fstype", fstype, "options", options));
}

/* Initramfs-level pseudo filesystems. devtmpfs may already be there (EBUSY is fine). */
static void setup_early_mounts(void) {
        int r;

        if ((r = mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) < 0)
                die("mount /proc: %s", strerror(-r));
        if ((r = mount_one("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) < 0)
                die("mount /sys: %s", strerror(-r));
        r = mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755");
        if (r < 0 && r != -EBUSY)
                die("mount /dev: %s", strerror(-r));
        if ((r = mount_one("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")) < 0)
                die("mount /run: %s", strerror(-r));
}

static void read_cmdline(char **ret) {
        _cleanup_free_ char *s = NULL;
        size_t n;
        int r = read_full_file_at(AT_FDCWD, "/proc/cmdline", INIT_CMDLINE_MAX, &s, &n);
        if (r < 0)
                die("read /proc/cmdline: %s", strerror(-r));
        *ret = TAKE_PTR(s);
}

static void load_modules(const char *cmdline, BootReport *br) {
        _cleanup_free_ char *list = NULL;
        size_t n;
        int r;

        r = read_full_file_at(AT_FDCWD, INIT_MODULE_LIST, 64 * 1024, &list, &n);
        if (r < 0)
                die("read module list " INIT_MODULE_LIST ": %s", strerror(-r));

        char *save = NULL;
        for (char *line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                if (isempty(line) || line[0] == '#')
                        continue;
                if (strchr(line, '/') || !endswith(line, ".ko") || strlen(line) > 64)
                        die("module list entry '%s' is not a plain <name>.ko", line);

                _cleanup_free_ char *path = xasprintf("%s/%s", INIT_MODULE_DIR, line);
                _cleanup_free_ char *name = xstrndup(line, strlen(line) - 3);
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (fd < 0)
                        die("module %s: cannot open %s: %m", name, path);

                _cleanup_free_ char *params = init_cmdline_module_params(cmdline, name);
                if (syscall(SYS_finit_module, fd, params, 0) < 0 && errno != EEXIST)
                        die("module %s: finit_module failed: %m", name);
                br->n_modules++;
        }
}

static usec_t boottime(void) {
        return now_usec(CLOCK_BOOTTIME);
}

/* Wait until check() returns > 0 or the deadline passes. Returns check()'s result or -ETIMEDOUT. */
static int wait_for(usec_t timeout, int (*check)(void *userdata), void *userdata) {
        usec_t deadline = boottime() + timeout;
        for (;;) {
                int r = check(userdata);
                if (r != 0)
                        return r;
                if (boottime() >= deadline)
                        return -ETIMEDOUT;
                (void) nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
        }
}

/* Read a small sysfs attribute, trailing whitespace stripped. */
static int read_attr(const char *path, char *buf, size_t size) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        ssize_t k = read(fd, buf, size - 1);
        if (k < 0)
                return -errno;
        buf[k] = 0;
        while (k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == ' '))
                buf[--k] = 0;
        return 0;
}

typedef struct FindDev {
        const char *class_dir; /* "/sys/block" or "/sys/class/virtio-ports" */
        const char *prefix;    /* "vd" or "vport" */
        const char *attr;      /* "serial" or "name" */
        const char *want;      /* value to match */
        char found[64];        /* device name, e.g. "vda" */
} FindDev;

static int find_dev_check(void *userdata) {
        FindDev *f = userdata;
        _cleanup_(closedirp) DIR *d = opendir(f->class_dir);
        struct dirent *de;

        if (!d)
                return 0; /* the class appears when the driver loads */
        while ((de = readdir(d))) {
                char path[PATH_MAX], val[256], node[PATH_MAX];
                if (!startswith(de->d_name, f->prefix) || strlen(de->d_name) >= sizeof(f->found))
                        continue;
                (void) snprintf(path, sizeof(path), "%s/%s/%s", f->class_dir, de->d_name, f->attr);
                if (read_attr(path, val, sizeof(val)) < 0 || !streq(val, f->want))
                        continue;
                (void) snprintf(node, sizeof(node), "/dev/%s", de->d_name);
                if (access(node, F_OK) < 0)
                        return 0; /* devtmpfs node not there yet */
                strcpy(f->found, de->d_name);
                return 1;
        }
        return 0;
}

static void find_device(FindDev *f, const char *what) {
        int r = wait_for(INIT_DEVICE_TIMEOUT_USEC, find_dev_check, f);
        if (r < 0)
                die("%s with %s '%s' did not appear within %llus (missing device or driver?)",
                    what,
                    f->attr,
                    f->want,
                    (unsigned long long) (INIT_DEVICE_TIMEOUT_USEC / USEC_PER_SEC));
}

/* Open the channel before anything else runs, then make sure no /dev node for it remains that
 * anyone (in particular uid 1000 later) could open: chmod 0600 then unlink. The open fd is
 * O_CLOEXEC, so only the proxy, which receives it explicitly, ever holds it. */
static int open_channel(const char *name) {
        FindDev f = { .class_dir = "/sys/class/virtio-ports", .prefix = "vport", .attr = "name", .want = name };
        char node[PATH_MAX];

        find_device(&f, "channel port");
        (void) snprintf(node, sizeof(node), "/dev/%s", f.found);
        int fd = open(node, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                die("open channel %s: %m", node);
        if (fchmod(fd, 0600) < 0 || fchown(fd, 0, 0) < 0)
                die("restrict channel %s: %m", node);
        if (unlink(node) < 0)
                die("remove channel node %s: %m", node);
        return fd;
}

/* Any remaining virtio-serial port nodes are removed too: nothing else is expected. */
static void remove_other_ports(void) {
        _cleanup_(closedirp) DIR *d = opendir("/dev");
        struct dirent *de;
        if (!d)
                die("open /dev: %m");
        while ((de = readdir(d)))
                if (startswith(de->d_name, "vport") && unlinkat(dirfd(d), de->d_name, 0) < 0)
                        die("remove /dev/%s: %m", de->d_name);
}

#define INIT_MAX_DISKS 16

typedef struct DiskScan {
        InitDisk disks[INIT_MAX_DISKS];
        size_t n;
        InitDiskMatch match; /* valid once the check returned 1 */
        const char *err;     /* ambiguity reason (static) */
        InitDiskRole err_role;
} DiskScan;

/* The ext4 volume label of /dev/<name>, "" when the disk is not ext4, is shorter than a
 * superblock, cannot be read or carries a label mkfs would not write (it then matches no role,
 * and the timeout message lists it). Returns 0, or -ENOENT while devtmpfs has no node yet. */
static int read_disk_label(const char *name, char label[static INIT_EXT4_LABEL_MAX + 1]) {
        uint8_t sb[1024];
        char node[PATH_MAX];

        label[0] = 0;
        (void) snprintf(node, sizeof(node), "/dev/%s", name);
        _cleanup_close_ int fd = open(node, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT ? -ENOENT : 0;
        ssize_t k = pread(fd, sb, sizeof(sb), INIT_EXT4_SB_OFFSET);
        if (k <= 0)
                return 0;
        if (init_ext4_label_parse(sb, (size_t) k, label) <= 0)
                label[0] = 0;
        return 0;
}

/* One pass over /sys/block/vd*: serial (sysfs; virtio-blk GET_ID) and ext4 label of every
 * disk, then the matching rules of init_disks_match(). virtio_blk probes the virtio-mmio
 * devices while its finit_module runs, so every disk is in sysfs by the time we get here and
 * an ambiguity cannot be a disk that is merely late; only devtmpfs nodes can lag (waited for).
 * Returns 1 when matched, 0 to retry, -ENOTUNIQ/-E2BIG to give up. */
static int disk_scan_check(void *userdata) {
        DiskScan *s = userdata;
        _cleanup_(closedirp) DIR *d = opendir("/sys/block");
        struct dirent *de;

        s->n = 0;
        if (!d)
                return 0;
        while ((de = readdir(d))) {
                char path[PATH_MAX], val[256];
                if (!startswith(de->d_name, "vd") || strlen(de->d_name) >= sizeof(s->disks[0].name))
                        continue;
                if (s->n >= INIT_MAX_DISKS)
                        return -E2BIG;
                InitDisk *k = &s->disks[s->n];
                *k = (InitDisk){};
                strcpy(k->name, de->d_name);
                (void) snprintf(path, sizeof(path), "/sys/block/%s/serial", de->d_name);
                /* No serial (Firecracker answers GET_ID with its own string; QEMU without
                 * serial= answers ""; some VMMs fail the request) simply leaves it empty. */
                if (read_attr(path, val, sizeof(val)) == 0 && strlen(val) <= INIT_DISK_SERIAL_MAX)
                        strcpy(k->serial, val);
                if (read_disk_label(k->name, k->label) == -ENOENT)
                        return 0;
                s->n++;
        }
        return init_disks_match(s->disks, s->n, &s->match, &s->err, &s->err_role);
}

static void find_disks(DiskScan *s) {
        int r = wait_for(INIT_DEVICE_TIMEOUT_USEC, disk_scan_check, s);
        if (r > 0)
                return;
        if (r == -ENOTUNIQ)
                die("%s disk is ambiguous: %s (serial '%s', ext4 label '%s'); refusing to guess",
                    init_disk_role_to_string(s->err_role),
                    s->err,
                    init_disk_role_serial(s->err_role),
                    init_disk_role_label(s->err_role));
        if (r == -E2BIG)
                die("more than %d virtio-blk disks attached", INIT_MAX_DISKS);

        char seen[1024] = "";
        size_t used = 0;
        for (size_t i = 0; i < s->n && used < sizeof(seen); i++) {
                int k = snprintf(
                        seen + used,
                        sizeof(seen) - used,
                        "%s%s(serial='%s',label='%s')",
                        i > 0 ? " " : "",
                        s->disks[i].name,
                        s->disks[i].serial,
                        s->disks[i].label);
                if (k < 0)
                        break;
                used += (size_t) k;
        }
        die("rootfs/scratch/system disks (serial %s/%s/%s, or ext4 label %s/%s/%s) not found within %llus; "
            "disks: %s",
            INIT_ROOTFS_SERIAL,
            INIT_SCRATCH_SERIAL,
            INIT_SYSTEM_SERIAL,
            INIT_ROOTFS_LABEL,
            INIT_SCRATCH_LABEL,
            INIT_SYSTEM_LABEL,
            (unsigned long long) (INIT_DEVICE_TIMEOUT_USEC / USEC_PER_SEC),
            s->n > 0 ? seen : "none (missing device or driver?)");
}

static void report_disks(BootReport *br, const DiskScan *s) {
        br->disks = json_object();
        for (InitDiskRole r = 0; r < _INIT_DISK_ROLE_MAX; r++) {
                const InitDisk *k = &s->disks[s->match.index[r]];
                json_object_set_new(
                        br->disks,
                        init_disk_role_to_string(r),
                        json_pack("{s:s, s:s}", "device", k->name, "by", init_disk_by_to_string(s->match.by[r])));
                dprintf(STDERR_FILENO,
                        "nucleus-guest-init: %s disk /dev/%s (by %s)\n",
                        init_disk_role_to_string(r),
                        k->name,
                        init_disk_by_to_string(s->match.by[r]));
        }
}

/* The scratch disk holds the workspace and everything the proxy keeps per workspace (the
 * baseline repository, manifests). Its filesystem root stays root-owned and 0700 and is mounted
 * at INIT_SCRATCH_DIR under /run, which the agent cannot traverse; only its subdirectory
 * "workspace" (the agent's) is bound at /workspace. So the proxy's state sits on the disk (not
 * in guest RAM: a workspace of any size up to the disk fits) yet outside the agent's reach: the
 * agent owns the workspace directory but not its parent, so it can neither rename the state
 * away nor swap in a directory of its own. A disk whose root is not root-owned was not made by
 * image_scratch_create() (or by an older node that gave it to the agent): refused. */
static void mount_scratch(const char *node) {
        struct stat st;
        int r;

        if (mkdir(INIT_SCRATCH_DIR, 0700) < 0 && errno != EEXIST)
                die("mkdir " INIT_SCRATCH_DIR ": %m");
        r = mount_one(node, INIT_SCRATCH_DIR, "ext4", MS_NOSUID | MS_NODEV, NULL);
        if (r < 0)
                die("mount scratch %s at " INIT_SCRATCH_DIR ": %s", node, strerror(-r));
        _cleanup_close_ int root = open(INIT_SCRATCH_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root < 0 || fstat(root, &st) < 0)
                die("open the scratch disk's root: %m");
        if (st.st_uid != 0)
                die("scratch disk root is owned by uid %u, not root (not made by this node's "
                    "image_scratch_create)",
                    (unsigned) st.st_uid);
        if (fchmod(root, 0700) < 0)
                die("chmod the scratch disk's root: %m");
        if (mkdirat(root, "workspace", 0755) < 0 && errno != EEXIST)
                die("mkdir the workspace on the scratch disk: %m");
        _cleanup_close_ int ws = openat(root, "workspace", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (ws < 0 || fstat(ws, &st) < 0)
                die("open the workspace on the scratch disk: %m");
        if (fchown(ws, AGENT_UID, AGENT_GID) < 0)
                die("chown the workspace on the scratch disk: %m");
        if (mount(INIT_SCRATCH_DIR "/workspace", NEWROOT "/workspace", NULL, MS_BIND, NULL) < 0)
                die("bind the scratch disk's workspace at /workspace: %m");
}

/* fs.protected_*: root (the proxy recording the baseline, the export walk) never follows a
 * symlink, opens a FIFO or regular file, or keeps a hard link that the agent planted in a
 * sticky or foreign directory. Defence in depth under the openat2/O_NOFOLLOW rules of the
 * proxy; a kernel without a knob is fatal, as anything missing here would be. */
static void set_protected_sysctls(void) {
        static const struct {
                const char *path, *value;
        } knobs[] = {
                { "/proc/sys/fs/protected_symlinks", "1\n" },
                { "/proc/sys/fs/protected_hardlinks", "1\n" },
                { "/proc/sys/fs/protected_fifos", "2\n" },
                { "/proc/sys/fs/protected_regular", "2\n" },
        };
        for (size_t i = 0; i < ELEMENTSOF(knobs); i++) {
                _cleanup_close_ int fd = open(knobs[i].path, O_WRONLY | O_CLOEXEC);
                if (fd < 0 || loop_write(fd, knobs[i].value, strlen(knobs[i].value)) < 0)
                        die("set %s: %m", knobs[i].path);
        }
}

static void mount_root_and_scratch(BootReport *br) {
        DiskScan scan = {};
        char node[PATH_MAX];
        struct stat st;
        int r;

        find_disks(&scan);
        report_disks(br, &scan);
        const char *root = scan.disks[scan.match.index[INIT_DISK_ROOTFS]].name;
        const char *scratch = scan.disks[scan.match.index[INIT_DISK_SCRATCH]].name;
        const char *system = scan.disks[scan.match.index[INIT_DISK_SYSTEM]].name;

        (void) snprintf(node, sizeof(node), "/dev/%s", root);
        r = mount_one(node, NEWROOT, "ext4", MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);
        if (r < 0)
                die("mount rootfs %s read-only: %s", node, strerror(-r));
        report_mount(br, "/", "ext4", "ro,nosuid,nodev");

        /* Mount points must exist in the image: the rootfs is read-only, so we cannot create
         * them, and we refuse symlinks (the rootfs may be an imported tar). */
        static const char *const dirs[] = { "/workspace", "/tmp", "/proc",    "/sys",
                                            "/dev",       "/run", "/nucleus", "/home/agent" };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                char p[PATH_MAX];
                (void) snprintf(p, sizeof(p), NEWROOT "%s", dirs[i]);
                if (lstat(p, &st) < 0 || !S_ISDIR(st.st_mode))
                        die("rootfs has no directory %s (build it with nucleus image build)", dirs[i]);
        }

        (void) snprintf(node, sizeof(node), "/dev/%s", scratch);
        mount_scratch(node);
        report_mount(br, INIT_SCRATCH_DIR, "ext4", "rw,nosuid,nodev");
        report_mount(br, "/workspace", "ext4", "rw,nosuid,nodev");

        r = mount_one("tmpfs", NEWROOT "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=25%");
        if (r < 0)
                die("mount /tmp: %s", strerror(-r));
        report_mount(br, "/tmp", "tmpfs", "rw,nosuid,nodev");

        r = mount_one(
                "tmpfs",
                NEWROOT "/home/agent",
                "tmpfs",
                MS_NOSUID | MS_NODEV,
                "mode=0700,uid=1000,gid=1000,size=64m");
        if (r < 0)
                die("mount /home/agent: %s", strerror(-r));
        report_mount(br, "/home/agent", "tmpfs", "rw,nosuid,nodev");

        /* The system disk (the proxy, its helpers and their libraries), read-only, at a fixed
         * place in the new root. The host attaches it read-only as well, so not even root in
         * the guest can change it; the guest reads only the pages it uses, into its page cache. */
        (void) snprintf(node, sizeof(node), "/dev/%s", system);
        r = mount_one(node, NEWROOT INIT_NUCLEUS_DIR, "ext4", MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);
        if (r < 0)
                die("mount the system disk %s read-only at " INIT_NUCLEUS_DIR ": %s", node, strerror(-r));
        report_mount(br, INIT_NUCLEUS_DIR, "ext4", "ro,nosuid,nodev");
}

/* Move the pseudo filesystems into the new root and make it "/". The initramfs (rootfs) cannot
 * be pivot_root'ed away, so this is the classic MS_MOVE + chroot; nothing in the new root
 * reaches the initramfs afterwards. */
static void switch_root(void) {
        static const char *const moves[] = { "/dev", "/proc", "/sys", "/run" };
        for (size_t i = 0; i < ELEMENTSOF(moves); i++) {
                char p[PATH_MAX];
                (void) snprintf(p, sizeof(p), NEWROOT "%s", moves[i]);
                if (mount(moves[i], p, NULL, MS_MOVE, NULL) < 0)
                        die("move %s into the rootfs: %m", moves[i]);
        }
        if (chdir(NEWROOT) < 0)
                die("chdir " NEWROOT ": %m");
        if (mount(NEWROOT, "/", NULL, MS_MOVE, NULL) < 0)
                die("move the rootfs to /: %m");
        if (chroot(".") < 0 || chdir("/") < 0)
                die("chroot into the rootfs: %m");
        if (mount_one("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=16m") < 0)
                die("mount /dev/shm: %m");
}

static void setup_network(BootReport *br) {
        int r = netif_loopback_up();
        if (r < 0)
                die("bring up lo: %s", strerror(-r));

        /* nucleus.net=parked (a pod booted ahead for the warm pool): the NIC stays down and
         * unaddressed until the proxy applies configure's network at the claim. */
        if (!arg_cmdline.have_net)
                return;

        char ifname[IFNAMSIZ_INIT] = {};
        r = netif_wait_first(ifname, sizeof(ifname), INIT_NIC_TIMEOUT_USEC);
        if (r < 0) {
                log_warning("nucleus.net= given but no network interface appeared; loopback only");
                return;
        }
        NetifAddress a = {
                .addr = arg_cmdline.net.addr,
                .prefix = arg_cmdline.net.prefix,
                .gateway = arg_cmdline.net.gateway,
                .dns = arg_cmdline.net.dns,
        };
        r = netif_configure(ifname, &a);
        if (r < 0)
                die("configure %s as %s: %s", ifname, arg_cmdline.net.text, strerror(-r));
        /* /etc/resolv.conf in the image points at /run/nucleus-net/resolv.conf (the rootfs is
         * read-only); if it is a plain file instead, the generated one is bound over it. */
        r = netif_write_resolv_conf(a.dns);
        if (r < 0)
                die("write the resolver configuration: %s", strerror(-r));
        br->nic = true;
}

static void send_boot_report(int chan, BootReport *br, usec_t started) {
        struct utsname u;
        if (uname(&u) < 0)
                die("uname: %m");
        usec_t ready = boottime();

        _cleanup_json_ json_t *j = json_pack(
                "{s:s, s:s, s:I, s:I, s:O, s:O, s:b, s:o, s:I, s:s}",
                "type",
                "boot",
                "kernel",
                u.release,
                "ready_ms",
                (json_int_t) (ready / USEC_PER_MSEC),
                "init_started_ms",
                (json_int_t) (started / USEC_PER_MSEC),
                "mounts",
                br->mounts,
                "disks",
                br->disks,
                "nic",
                br->nic,
                "net",
                arg_cmdline.have_net && br->nic ? json_string(arg_cmdline.net.text) : json_null(),
                "modules",
                (json_int_t) br->n_modules,
                "channel",
                arg_cmdline.channel);
        if (!j)
                die("build boot report");
        _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
        if (!s)
                die("serialize boot report");
        if (chan >= 0) {
                /* Blocks until the host side of the port is connected: the node connects right
                 * after starting QEMU, and there is nothing else for the VM to do before that. */
                int r = frame_write(chan, FRAME_EVENT, 0, s, strlen(s));
                if (r < 0)
                        die("send boot report on the channel: %s", strerror(-r));
        } else
                /* vsock: the proxy listens and the host connects later; the report goes to the
                 * console, one line, for the node to pick up there. */
                dprintf(STDERR_FILENO, "nucleus-guest-init: boot report %s\n", s);
        dprintf(STDERR_FILENO,
                "nucleus-guest-init: ready in %llu ms (kernel %s, nic %s)\n",
                (unsigned long long) (ready / USEC_PER_MSEC),
                u.release,
                br->nic ? "yes" : "no");
}

#define IN_SET_SIG_SHUTDOWN(s) ((s) == SIGINT || (s) == SIGTERM || (s) == SIGPWR)

static void on_shutdown_signal(int sig) {
        arg_shutdown_requested = 1;
}

static pid_t start_proxy(int chan) {
        pid_t pid = fork();
        if (pid < 0)
                die("fork: %m");
        if (pid > 0)
                return pid;

        /* Child: restore default signal handling, put the channel at CHANNEL_FD (dup2 clears
         * close-on-exec on the copy only), close everything else, exec. Environment from
         * nothing. */
        struct sigaction sa = { .sa_handler = SIG_DFL };
        for (int s = 1; s < _NSIG; s++)
                (void) sigaction(s, &sa, NULL);
        sigset_t all;
        sigemptyset(&all);
        (void) sigprocmask(SIG_SETMASK, &all, NULL);
        (void) setsid();

        if (chan < 0)
                (void) fd_close_all_from(3, NULL, 0);
        else {
                if (chan == CHANNEL_FD) {
                        if (fd_set_cloexec(chan, false) < 0)
                                _exit(127);
                } else if (dup2(chan, CHANNEL_FD) < 0)
                        _exit(127);
                int keep = CHANNEL_FD;
                (void) fd_close_all_from(CHANNEL_FD + 1, &keep, 1);
        }

        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0 || dup2(null, STDIN_FILENO) < 0)
                _exit(127);

        char port[16];
        (void) snprintf(port, sizeof(port), "%u", arg_cmdline.vsock_port);
        /* The web_fetch helper ships in the initramfs (with its libraries) when the image
         * builder was given one: every image can fetch, whatever its rootfs holds. */
        bool fetch = access(INIT_FETCH_HELPER_PATH, X_OK) == 0;
        char *const argv_fd[] = { (char *) INIT_PROXY_PATH,
                                  (char *) "--fd",
                                  (char *) "3",
                                  (char *) "--guest-system",
                                  (char *) "--fetch-helper",
                                  (char *) INIT_FETCH_HELPER_PATH,
                                  (char *) "--fetch-libdir",
                                  (char *) INIT_FETCH_LIBDIR,
                                  NULL };
        char *const argv_vsock[] = {
                (char *) INIT_PROXY_PATH,  (char *) "--vsock-port",    port,
                (char *) "--guest-system", (char *) "--fetch-helper",  (char *) INIT_FETCH_HELPER_PATH,
                (char *) "--fetch-libdir", (char *) INIT_FETCH_LIBDIR, NULL
        };
        char *const *argv = chan >= 0 ? argv_fd : argv_vsock;
        if (!fetch) {
                /* Cut before --fetch-helper. */
                static char *cut_fd[4], *cut_vsock[4];
                for (size_t i = 0; i < 3; i++) {
                        cut_fd[i] = argv_fd[i];
                        cut_vsock[i] = argv_vsock[i];
                }
                argv = chan >= 0 ? cut_fd : cut_vsock;
        }
        char *const envp[] = {
                (char *) "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                (char *) "LANG=C.UTF-8",
                NULL,
        };
        execve(argv[0], (char **) argv, envp);
        dprintf(STDERR_FILENO, "nucleus-guest-init: FATAL: exec %s: %m; powering off\n", argv[0]);
        _exit(127);
}

/* Reap every child (orphans included) until the proxy exits; returns its wait status, or
 * -ECHILD. Signals are taken synchronously (blocked + sigtimedwait), so a shutdown request
 * cannot slip in between a check and a blocking wait. A shutdown request sends the proxy
 * SIGTERM, then SIGKILL after INIT_PROXY_STOP_USEC. */
static int supervise(pid_t proxy) {
        usec_t kill_at = USEC_INFINITY;
        sigset_t set;

        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGPWR);
        if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
                return -errno;
        for (;;) {
                int status;
                pid_t p;
                while ((p = waitpid(-1, &status, WNOHANG)) > 0)
                        if (p == proxy)
                                return status;
                if (p < 0 && errno != EINTR)
                        return -errno; /* ECHILD: the proxy is gone */

                usec_t n = boottime();
                if (arg_shutdown_requested && kill_at == USEC_INFINITY) {
                        log_info("shutdown requested; stopping the proxy");
                        (void) kill(proxy, SIGTERM);
                        kill_at = n + INIT_PROXY_STOP_USEC;
                } else if (n >= kill_at) {
                        log_warning("the proxy did not stop; killing it");
                        (void) kill(proxy, SIGKILL);
                        kill_at = USEC_INFINITY - 1; /* once */
                }
                siginfo_t si;
                struct timespec ts = { .tv_sec = 1 };
                int sig = sigtimedwait(&set, &si, &ts);
                if (IN_SET_SIG_SHUTDOWN(sig))
                        arg_shutdown_requested = 1;
        }
}

/* Kill whatever is left, give it a moment to go, reap. */
static void kill_all(void) {
        (void) kill(-1, SIGKILL);
        usec_t deadline = boottime() + 2 * USEC_PER_SEC;
        while (boottime() < deadline) {
                pid_t p = waitpid(-1, NULL, WNOHANG);
                if (p < 0)
                        break; /* ECHILD */
                if (p == 0)
                        (void) nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
        }
}

int main(int argc, char **argv) {
        _cleanup_free_ char *cmdline = NULL;
        BootReport br = { .mounts = json_array() };
        const char *err = NULL;

        usec_t started = boottime();
        log_set_prefix("nucleus-guest-init");
        umask(022);

        if (getpid() != 1)
                die("must run as PID 1");
        /* The marker bench/boot and the KVM probe wait for. */
        dprintf(STDERR_FILENO, INIT_MARKER " at %llu ms\n", (unsigned long long) (started / USEC_PER_MSEC));

        /* Ctrl-Alt-Del (and a host-requested ACPI-less reboot) becomes SIGINT to us, which we
         * turn into an orderly power-off. */
        (void) reboot(RB_DISABLE_CAD);
        struct sigaction sa = { .sa_handler = on_shutdown_signal }; /* no SA_RESTART: wake waitpid */
        (void) sigaction(SIGINT, &sa, NULL);
        (void) sigaction(SIGTERM, &sa, NULL);
        (void) sigaction(SIGPWR, &sa, NULL);

        setup_early_mounts();
        read_cmdline(&cmdline);
        if (init_cmdline_parse(cmdline, &arg_cmdline, &err) < 0)
                die("bad kernel command line: %s", err);
        if (arg_cmdline.probe) {
                dprintf(STDERR_FILENO, INIT_PROBE_MARKER "\n");
                power_off();
        }

        load_modules(cmdline, &br);
        /* virtio-serial (QEMU): opened here, before anything else runs. vsock (Firecracker):
         * the proxy listens on the port itself; only the host can connect to it. */
        _cleanup_close_ int chan = arg_cmdline.vsock_port > 0 ? -EBADF : open_channel(arg_cmdline.channel);
        remove_other_ports();
        set_protected_sysctls();
        mount_root_and_scratch(&br);
        switch_root();
        setup_network(&br);
        send_boot_report(chan, &br, started);
        json_decref(br.mounts);
        json_decref(br.disks);

        pid_t proxy = start_proxy(chan);
        chan = safe_close(chan);

        int status = supervise(proxy);
        if (status < 0)
                log_error_errno(status, "lost track of the proxy: %m");
        else if (WIFEXITED(status))
                log_info("proxy exited with status %d; powering off", WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
                log_info("proxy killed by signal %d; powering off", WTERMSIG(status));
        kill_all();
        /* Nothing holds /workspace now; unmount so the scratch disk is clean for an export by
         * the host. Failure is harmless (power_off syncs anyway). */
        (void) umount2("/workspace", 0);
        (void) umount2(INIT_SCRATCH_DIR, 0);
        power_off();
}
