/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Confinement of agent commands, applied in the forked child before exec: new session, fds
 * above 2 closed, unprivileged uid/gid without supplementary groups, rlimits, no_new_privs,
 * Landlock (writes only under the workspace and /tmp) and a seccomp deny-list.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct SandboxParams {
        uid_t uid;
        gid_t gid;
        const char *workspace; /* absolute path: writable */
        uint64_t rlimit_nproc;
        uint64_t rlimit_nofile;
        uint64_t rlimit_fsize;
        uint64_t rlimit_as;
        uint64_t rlimit_cpu_seconds;
        int keep_fd; /* an fd >= 3 to keep open (exec error pipe, CLOEXEC), or -1 */
} SandboxParams;

/* Run in the child after fork, with stdio already in place. Never returns an error silently:
 * returns 0, or -errno naming nothing (the child reports and _exit()s). Landlock is skipped
 * only when the kernel lacks it (ENOSYS/EOPNOTSUPP); every other step is mandatory. */
int sandbox_apply(const SandboxParams *sp, const char **reterr_step);

/* The seccomp deny-list alone (used by sandbox_apply; exposed for tests). */
int sandbox_seccomp_install(void);
/* Drop every capability from the bounding set (needs CAP_SETPCAP: call while still root). */
int sandbox_drop_bounding_set(void);
/* Landlock ABI version of the running kernel, or <0 when unavailable. */
int sandbox_landlock_abi(void);
