/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Process helpers of the network library: run a system tool by absolute path, optionally
 * inside a network namespace (by fd), with an empty environment and captured output.
 */
#pragma once

#include "process-util.h"

/* fork; in the child setns(netns_fd) when >= 0 (exit 126 if that fails), wire fds (-1: /dev/null),
 * close the rest, execve(argv[0]) with an empty environment. Returns 0 and *ret. */
int net_spawn(int netns_fd, char *const argv[], int in_fd, int out_fd, int err_fd, PidRef *ret);

/* Run to completion; input (may be NULL) is fed on stdin. Returns the exit status (>= 0) or
 * -errno; *ret_out / *ret_err (optional) get the captured output (capped, caller frees). */
int net_run(int netns_fd, char *const argv[], const char *input, char **ret_out, char **ret_err);

/* As net_run but 0 only on exit status 0; otherwise -EIO (-ENOENT when setns failed) and
 * *reterr = "'<cmd>' failed (exit N): <first stderr text>". */
int net_run_ok(int netns_fd, char *const argv[], const char *input, char **reterr);

/* Write a /proc/sys/net/... file in the given namespace (-1: the caller's). */
int net_sysctl_write(int netns_fd, const char *path, const char *value);
