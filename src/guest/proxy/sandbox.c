/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command confinement (see sandbox.h). Runs in a freshly forked child of the proxy, before
 * exec of an untrusted program: every step fails closed except Landlock on kernels that do
 * not have it (< 5.13), which is logged by the parent via sandbox_landlock_abi().
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/landlock.h>
#include <sched.h>
#include <seccomp.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fd-util.h"
#include "macro.h"
#include "sandbox.h"

/* ASan's runtime maps terabytes of shadow memory: an address-space limit set between fork and
 * exec makes it abort. Sanitizer builds only run tests, so they skip that one limit. */
#if defined(__SANITIZE_ADDRESS__)
#        define SANDBOX_UNDER_ASAN 1
#elif defined(__has_feature)
#        if __has_feature(address_sanitizer)
#                define SANDBOX_UNDER_ASAN 1
#        endif
#endif
#ifndef SANDBOX_UNDER_ASAN
#        define SANDBOX_UNDER_ASAN 0
#endif

int sandbox_landlock_abi(void) {
#ifdef SYS_landlock_create_ruleset
        long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
        return v < 0 ? -errno : (int) v;
#else
        return -ENOSYS;
#endif
}

static int landlock_apply(const char *workspace) {
        int abi = sandbox_landlock_abi();
        if (abi < 0)
                return abi;
        uint64_t write_access = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
                LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
                LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
                LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
#ifdef LANDLOCK_ACCESS_FS_REFER
        if (abi >= 2)
                write_access |= LANDLOCK_ACCESS_FS_REFER;
#endif
#ifdef LANDLOCK_ACCESS_FS_TRUNCATE
        if (abi >= 3)
                write_access |= LANDLOCK_ACCESS_FS_TRUNCATE;
#endif
        struct landlock_ruleset_attr attr = { .handled_access_fs = write_access };
        _cleanup_close_ int rs = (int) syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
        if (rs < 0)
                return -errno;

        /* Writable trees; device nodes commands legitimately write to. Missing ones are skipped. */
        const struct {
                const char *path;
                uint64_t access;
        } rules[] = {
                { workspace, write_access },
                { "/tmp", write_access },
                { "/dev/null", LANDLOCK_ACCESS_FS_WRITE_FILE },
                { "/dev/zero", LANDLOCK_ACCESS_FS_WRITE_FILE },
                { "/dev/full", LANDLOCK_ACCESS_FS_WRITE_FILE },
                { "/dev/tty", LANDLOCK_ACCESS_FS_WRITE_FILE },
        };
        for (size_t i = 0; i < ELEMENTSOF(rules); i++) {
                _cleanup_close_ int fd = open(rules[i].path, O_PATH | O_CLOEXEC);
                if (fd < 0)
                        continue;
                struct landlock_path_beneath_attr pb = { .allowed_access = rules[i].access, .parent_fd = fd };
                if (rules[i].access != write_access) {
                        /* Files accept only file rights. */
                        pb.allowed_access &= LANDLOCK_ACCESS_FS_WRITE_FILE;
                }
                if (syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
                        return -errno;
        }
        if (syscall(SYS_landlock_restrict_self, rs, 0) < 0)
                return -errno;
        return 0;
}

int sandbox_seccomp_install(void) {
        /* Deny-list: everything a confined build/test command never needs and that widens the
         * kernel attack surface or escapes the sandbox. EPERM so programs fail cleanly. */
        static const char *const denied[] = {
                "mount",
                "umount2",
                "pivot_root",
                "ptrace",
                "kexec_load",
                "kexec_file_load",
                "bpf",
                "keyctl",
                "add_key",
                "request_key",
                "io_uring_setup",
                "io_uring_enter",
                "io_uring_register",
                "perf_event_open",
                "unshare",
                "setns",
                "reboot",
                "swapon",
                "swapoff",
                "init_module",
                "finit_module",
                "delete_module",
                "open_by_handle_at",
                "userfaultfd",
                "acct",
                "settimeofday",
                "clock_settime",
                "adjtimex",
                "clock_adjtime",
                "syslog",
                "move_mount",
                "open_tree",
                "fsopen",
                "fsmount",
                "fsconfig",
                "fspick",
                "mount_setattr",
                "quotactl",
                "lookup_dcookie",
                "vhangup",
                "process_vm_readv",
                "process_vm_writev",
                "kcmp",
                "name_to_handle_at",
        };
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
        int r;
        if (!ctx)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(denied); i++) {
                int nr = seccomp_syscall_resolve_name(denied[i]);
                if (nr == __NR_SCMP_ERROR)
                        continue; /* not on this architecture */
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
                if (r < 0)
                        goto out;
        }
        /* clone with any namespace flag: EPERM. clone3 passes flags in memory the filter
         * cannot read, so it is refused with ENOSYS and libc falls back to clone. */
        static const uint64_t ns_flags[] = { CLONE_NEWNS,     CLONE_NEWUTS, CLONE_NEWIPC,
                                             CLONE_NEWUSER,   CLONE_NEWPID, CLONE_NEWNET,
                                             CLONE_NEWCGROUP, 0x00000080 /* CLONE_NEWTIME */ };
        for (size_t i = 0; i < ELEMENTSOF(ns_flags); i++) {
                r = seccomp_rule_add(
                        ctx,
                        SCMP_ACT_ERRNO(EPERM),
                        SCMP_SYS(clone),
                        1,
                        SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
                if (r < 0)
                        goto out;
        }
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        if (r < 0)
                goto out;
        /* Commands get no AF_VSOCK sockets (they could reach host services or, with
         * vsock loopback, pose as the node while it is away). */
        r = seccomp_rule_add(
                ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_VSOCK));
        if (r < 0)
                goto out;
        /* TIOCSTI would let a command type into a terminal it shares. */
        r = seccomp_rule_add(
                ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, 0x5412));
        if (r < 0)
                goto out;
        r = seccomp_load(ctx);
out:
        seccomp_release(ctx);
        return r;
}

int sandbox_drop_bounding_set(void) {
        for (unsigned long cap = 0; cap < 128; cap++)
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
                        if (errno == EINVAL && cap > 0)
                                return 0; /* past CAP_LAST_CAP */
                        return -errno;
                }
        return 0;
}

static int set_limit(int resource, uint64_t v) {
        struct rlimit rl = { .rlim_cur = (rlim_t) v, .rlim_max = (rlim_t) v };
        return RET_NERRNO(setrlimit(resource, &rl));
}

int sandbox_apply(const SandboxParams *sp, const char **reterr_step) {
        int r;
#define STEP(name, expr)                       \
        do {                                   \
                r = (expr);                    \
                if (r < 0) {                   \
                        *reterr_step = (name); \
                        return r;              \
                }                              \
        } while (0)

        STEP("setsid", RET_NERRNO(setsid()));
        STEP("close fds",
             fd_close_all_from(3, sp->keep_fd >= 0 ? &sp->keep_fd : NULL, sp->keep_fd >= 0 ? 1 : 0));
        STEP("rlimit core", set_limit(RLIMIT_CORE, 0));
        STEP("rlimit nproc", set_limit(RLIMIT_NPROC, sp->rlimit_nproc));
        STEP("rlimit nofile", set_limit(RLIMIT_NOFILE, sp->rlimit_nofile));
        STEP("rlimit fsize", set_limit(RLIMIT_FSIZE, sp->rlimit_fsize));
#if !SANDBOX_UNDER_ASAN
        STEP("rlimit as", set_limit(RLIMIT_AS, sp->rlimit_as));
#endif
        STEP("rlimit cpu", set_limit(RLIMIT_CPU, sp->rlimit_cpu_seconds));

        /* Landlock needs no privilege; do it while /tmp etc. are still resolvable as root. */
        r = landlock_apply(sp->workspace);
        if (r < 0 && r != -ENOSYS && r != -EOPNOTSUPP) {
                *reterr_step = "landlock";
                return r;
        }

        /* Empty the capability bounding set while we still hold CAP_SETPCAP (STYLE
         * rule 54): even a setuid-root binary on a writable mount could then gain nothing,
         * independently of no_new_privs. PR_CAPBSET_DROP fails with EINVAL past the last cap
         * the running kernel knows, which ends the loop. */
        STEP("capability bounding set", sandbox_drop_bounding_set());

        /* Drop privileges: groups first, then gid, then uid; verify nothing is left. */
        STEP("setgroups", RET_NERRNO(setgroups(0, NULL)));
        STEP("setresgid", RET_NERRNO(setresgid(sp->gid, sp->gid, sp->gid)));
        STEP("setresuid", RET_NERRNO(setresuid(sp->uid, sp->uid, sp->uid)));
        if (sp->uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
                *reterr_step = "privilege drop verification";
                return -EPERM;
        }
        STEP("no_new_privs", RET_NERRNO(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)));
        STEP("ambient caps", RET_NERRNO(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)));
        STEP("seccomp", sandbox_seccomp_install());
        return 0;
#undef STEP
}
