/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Child-process helpers: pidfd-backed handles that kill and reap on cleanup, so a helper
 * started during setup never outlives a failed setup (STYLE.md rule 26).
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "macro.h"

typedef struct PidRef {
        pid_t pid; /* > 0 when set */
        int fd;    /* pidfd, or -EBADF when the kernel has none */
} PidRef;

#define PIDREF_NULL ((PidRef){ .pid = 0, .fd = -EBADF })

/* Fill ref for an existing child pid (opens a pidfd when possible). */
int pidref_set_pid(PidRef *ref, pid_t pid);
bool pidref_is_set(const PidRef *ref);
/* Send a signal (via pidfd_send_signal when available). */
int pidref_kill(const PidRef *ref, int sig);
/* Wait for exit; returns 0 and the raw wait status in *ret_status. */
int pidref_wait(const PidRef *ref, int *ret_status);
/* SIGKILL then reap; releases the ref. Safe on an unset ref. */
void pidref_kill_and_wait(PidRef *ref);
/* Release without killing (hand-over). */
void pidref_done(PidRef *ref);
static inline void pidref_kill_and_waitp(PidRef *ref) {
        pidref_kill_and_wait(ref);
}
#define _cleanup_pidref_kill_ _cleanup_(pidref_kill_and_waitp)
#define TAKE_PIDREF(p) TAKE_GENERIC(p, PidRef, PIDREF_NULL)

/* Wait for a pid, retrying EINTR; returns exit code (>=0), 128+signal, or -errno. */
int wait_for_terminate(pid_t pid, int *ret_status);

/* fork+exec argv with stdin from /dev/null (or in_fd), stdout/stderr as given (-1 inherit),
 * a clean environment (envp, NULL means empty) and all other fds closed.
 * Returns 0 and the child ref. */
int spawn_argv(char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd, PidRef *ret);

/* Run argv to completion, as spawn_argv; returns exit status >=0 or -errno. */
int run_argv(char *const argv[], char *const envp[]);
