/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cgroup v2 limits for VMM processes: one child cgroup per pod under a node cgroup, with
 * memory.max, cpu.max and pids.max. When cgroup v2 with those controllers is not available the
 * node runs without limits and says so once (log and doctor).
 */
#pragma once
#include <stdint.h>

/* Find a usable cgroup v2 root and create the node's cgroup under it.
 * Returns 1 and *ret_root (malloc'd) when available, 0 with *ret_why (malloc'd) when not,
 * -errno on unexpected failures. */
int cgroup_node_setup(const char *base, char **ret_root, char **ret_why);
/* Create <root>/pod-<id> with the limits. Returns 0 and the dir (malloc'd). */
int cgroup_pod_create(
        const char *root,
        const char *pod_id,
        uint64_t memory_mib,
        unsigned vcpus,
        unsigned pids_max,
        char **ret_dir);
/* Kill anything left in the cgroup (cgroup.kill) and remove it. Idempotent. */
int cgroup_pod_remove(const char *dir);
/* memory.max value for a VM with memory_mib of guest RAM: guest RAM plus VMM overhead. */
uint64_t cgroup_memory_max_bytes(uint64_t memory_mib);
