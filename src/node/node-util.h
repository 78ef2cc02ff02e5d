/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small helpers of nucleus-node: recursive removal inside the node's own state dir, the
 * open-files limit.
 */
#pragma once
#include <jansson.h>
#include <stdint.h>

/* Remove path and everything below it without following symlinks (openat + O_NOFOLLOW,
 * unlinkat). Only for paths the node created itself. Returns 0 or the first -errno. */
int node_rm_rf(const char *path);

/* Raise the RLIMIT_NOFILE soft limit to the hard limit (systemd's default soft limit of 1,024
 * would stop a long-running node after a few hundred pods). Returns 0 and the limits now in
 * force (either out-parameter optional), or -errno (the limits are then unchanged). */
int node_raise_nofile(uint64_t *ret_soft, uint64_t *ret_hard);

/* A JSON integer as an unsigned amount: its value when it is a positive integer, else 0 (a
 * missing or malformed field of a proxy's answer counts as nothing). */
uint64_t node_json_u64(const json_t *v);
