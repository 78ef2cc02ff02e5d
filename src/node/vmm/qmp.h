/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A minimal QMP client (QEMU's JSON machine protocol) for the qemu driver: connect to a VM's
 * QMP socket, negotiate capabilities, run one command at a time, optionally passing a
 * descriptor with it (SCM_RIGHTS, for "getfd"). QEMU runs as the unprivileged VMM user and
 * emulates an untrusted guest, so its answers are bounded (line length, time) and parsed as
 * untrusted JSON.
 */
#pragma once
#include <jansson.h>

#include "time-util.h"
#include "vmm-internal.h"

typedef struct Qmp Qmp;

/* Connect to path (retrying while QEMU creates it, up to timeout), read the greeting and
 * leave capabilities negotiation. Returns 0 or -errno with *reterr. */
int qmp_open(Vmm *vm, const char *path, usec_t timeout, Qmp **ret, char **reterr);
Qmp *qmp_close(Qmp *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(Qmp *, qmp_close);

/* Run cmd with args (borrowed, may be NULL); pass_fd >= 0 is sent along (SCM_RIGHTS). Events
 * that arrive meanwhile are skipped. Returns 0 and the "return" value in *ret (new reference,
 * may be NULL when not wanted), -EIO with QEMU's error text in *reterr, or -errno. */
int qmp_execute(Qmp *q, const char *cmd, json_t *args, int pass_fd, usec_t timeout, json_t **ret, char **reterr);

/* Poll "query-migrate" until the migration completed (0), failed or was cancelled (-EIO with
 * QEMU's error description), or timeout passed (-ETIMEDOUT). */
int qmp_wait_migration(Qmp *q, usec_t timeout, char **reterr);
