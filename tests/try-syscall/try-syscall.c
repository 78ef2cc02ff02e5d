/* SPDX-License-Identifier: Apache-2.0 */
/*
 * try-syscall: the sandbox regression probe (STYLE.md rule 42, after bubblewrap's
 * tests/try-syscall.c). It attempts every syscall the proxy's seccomp deny-list must refuse
 * (src/guest/proxy/sandbox.c) and prints one line per call: "<name> <ERRNO-NAME> <errno>", or
 * "<name> OK 0" if the call succeeded. Every call gets arguments that make an unfiltered
 * kernel fail early and harmlessly (bad pointer, bad fd, invalid flags or magic), so running it
 * anywhere, even as root, changes nothing. The comment on each entry says what an unfiltered
 * kernel answers; the filter answers EPERM (clone3: ENOSYS) before the kernel looks at the
 * arguments. Built static and without sanitizers so it runs inside any guest rootfs.
 * Usage: try-syscall [NAME...]   (no names: all; "list": the names)
 */
#ifndef _GNU_SOURCE
#        define _GNU_SOURCE
#endif
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_clone3
#        define __NR_clone3 435
#endif
#ifndef __NR_io_uring_setup
#        define __NR_io_uring_setup 425
#endif

/* Fails any copy from user memory with EFAULT. */
#define WRONG_POINTER ((void *) 1)

static long try_mount(void) {
        /* copy_mount_string(type) runs first: EFAULT, for root and non-root alike. */
        return syscall(__NR_mount, WRONG_POINTER, WRONG_POINTER, WRONG_POINTER, 0UL, NULL);
}

static long try_umount2(void) {
        /* Unknown flags are checked before anything else: EINVAL. */
        return syscall(__NR_umount2, WRONG_POINTER, -1);
}

static long try_pivot_root(void) {
        /* root: EFAULT (path lookup); without CAP_SYS_ADMIN: EPERM. */
        return syscall(__NR_pivot_root, WRONG_POINTER, WRONG_POINTER);
}

static long try_ptrace(void) {
        /* PTRACE_PEEKDATA (never TRACEME) on pid -1, which does not exist: ESRCH. */
        return syscall(__NR_ptrace, 2L /* PTRACE_PEEKDATA */, -1L, NULL, NULL);
}

static long try_kexec_load(void) {
        /* root: EINVAL (flags); without CAP_SYS_BOOT (or kexec disabled): EPERM. */
        return syscall(__NR_kexec_load, 0UL, 0UL, NULL, ~0UL);
}

static long try_bpf(void) {
        /* A command that does not exist: EINVAL on current kernels (older kernels answer EPERM
         * to unprivileged callers when kernel.unprivileged_bpf_disabled is set). */
        return syscall(__NR_bpf, 0x7fffffff, NULL, 0U);
}

static long try_keyctl(void) {
        /* An operation that does not exist: EOPNOTSUPP. */
        return syscall(__NR_keyctl, 0x7fffffff, 0UL, 0UL, 0UL, 0UL);
}

static long try_add_key(void) {
        /* The type string is copied first: EFAULT. */
        return syscall(__NR_add_key, WRONG_POINTER, WRONG_POINTER, NULL, 0UL, 0);
}

static long try_io_uring_setup(void) {
        /* The params struct is copied first: EFAULT (EPERM where kernel.io_uring_disabled
         * forbids io_uring). */
        return syscall(__NR_io_uring_setup, 1U, WRONG_POINTER);
}

static long try_perf_event_open(void) {
        /* The attr struct is copied first: EFAULT (Debian kernels with perf_event_paranoid=3
         * answer EACCES to unprivileged callers). */
        return syscall(__NR_perf_event_open, WRONG_POINTER, 0, -1, -1, 0UL);
}

static long try_unshare(void) {
        /* CLONE_NEWUSER|CLONE_NEWNS plus bit 0, which unshare does not accept: EINVAL. */
        return syscall(__NR_unshare, (long) (CLONE_NEWUSER | CLONE_NEWNS | 0x1));
}

static long try_clone_ns(void) {
        /* Legacy clone with namespace flags; CLONE_NEWNS together with CLONE_FS is refused by
         * copy_process before any work: EINVAL. */
        return syscall(__NR_clone, (long) (CLONE_NEWUSER | CLONE_NEWNS | CLONE_FS), NULL, NULL, NULL, 0UL);
}

static long try_clone3(void) {
        /* Namespace flags in the struct, and an exit signal that is not a signal: EINVAL while
         * copying the arguments, so no child is ever created. */
        struct clone_args args = {
                .flags = CLONE_NEWUSER | CLONE_NEWNS,
                .exit_signal = 1000,
        };
        long r = syscall(__NR_clone3, &args, sizeof(args));
        if (r == 0)
                _exit(0); /* not reached; never let a child run on */
        return r;
}

static long try_setns(void) {
        /* A bad fd: EBADF. */
        return syscall(__NR_setns, -1, CLONE_NEWNS);
}

static long try_reboot(void) {
        /* Wrong magic: root: EINVAL; without CAP_SYS_BOOT: EPERM. */
        return syscall(__NR_reboot, 0, 0, 0, NULL);
}

static long try_swapon(void) {
        /* Unknown flags are checked before the capability: EINVAL. */
        return syscall(__NR_swapon, WRONG_POINTER, 0x7f000000);
}

static long try_init_module(void) {
        /* root: ENOEXEC (image shorter than an ELF header) or EFAULT; non-root: EPERM. */
        return syscall(__NR_init_module, WRONG_POINTER, 0UL, WRONG_POINTER);
}

static long try_finit_module(void) {
        /* root: EBADF; non-root: EPERM. */
        return syscall(__NR_finit_module, -1, WRONG_POINTER, 0);
}

static long try_delete_module(void) {
        /* root: EFAULT (name); non-root: EPERM. */
        return syscall(__NR_delete_module, WRONG_POINTER, 0);
}

static long try_ioctl_tiocsti(void) {
        /* A bad fd: EBADF. */
        return syscall(__NR_ioctl, -1, (unsigned long) TIOCSTI, WRONG_POINTER);
}

static long try_close(void) {
        /* Control: not on the deny-list; EBADF inside the sandbox and out. Shows the filter
         * does not simply refuse everything. */
        return syscall(__NR_close, -1);
}

typedef struct TrySyscall {
        const char *name;
        long (*fn)(void);
} TrySyscall;

static const TrySyscall try_table[] = {
        { "mount", try_mount },
        { "umount2", try_umount2 },
        { "pivot_root", try_pivot_root },
        { "ptrace", try_ptrace },
        { "kexec_load", try_kexec_load },
        { "bpf", try_bpf },
        { "keyctl", try_keyctl },
        { "add_key", try_add_key },
        { "io_uring_setup", try_io_uring_setup },
        { "perf_event_open", try_perf_event_open },
        { "unshare", try_unshare },
        { "clone_ns", try_clone_ns },
        { "clone3", try_clone3 },
        { "setns", try_setns },
        { "reboot", try_reboot },
        { "swapon", try_swapon },
        { "init_module", try_init_module },
        { "finit_module", try_finit_module },
        { "delete_module", try_delete_module },
        { "ioctl_tiocsti", try_ioctl_tiocsti },
        { "close", try_close },
};

#define TRY_N (sizeof(try_table) / sizeof(try_table[0]))

static void try_one(const TrySyscall *t) {
        errno = 0;
        long r = t->fn();
        int e = errno;
        if (r >= 0)
                printf("%s OK 0\n", t->name);
        else {
                const char *en = strerrorname_np(e);
                printf("%s %s %d\n", t->name, en ? en : "E?", e);
        }
        (void) fflush(stdout);
}

int main(int argc, char **argv) {
        if (argc == 2 && strcmp(argv[1], "list") == 0) {
                for (size_t i = 0; i < TRY_N; i++)
                        printf("%s\n", try_table[i].name);
                return 0;
        }
        if (argc < 2) {
                for (size_t i = 0; i < TRY_N; i++)
                        try_one(&try_table[i]);
                return 0;
        }
        for (int a = 1; a < argc; a++) {
                size_t i;
                for (i = 0; i < TRY_N; i++)
                        if (strcmp(argv[a], try_table[i].name) == 0)
                                break;
                if (i == TRY_N) {
                        fprintf(stderr, "try-syscall: unknown syscall '%s' (try: try-syscall list)\n", argv[a]);
                        return 2;
                }
                try_one(&try_table[i]);
        }
        return 0;
}
