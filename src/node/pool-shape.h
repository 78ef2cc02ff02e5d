/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The warm pool's pure decisions (pod-pool.c does the work): whether a pooled pod can serve a
 * create, what the pool should hold per image, what a pooled pod costs against the pool's
 * memory budget. No locks, no I/O: unit-tested (tests/unit/test-node-pool.c).
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* What a pod is booted with; a pooled pod can serve a create only when every field matches. */
typedef struct PoolShape {
        const char *image; /* image name ("default" for the images dir itself) */
        int driver;        /* VmmDriver */
        unsigned vcpus;
        uint64_t memory_mib, scratch_mib;
        bool network; /* a NIC (the spec has a network section) */
} PoolShape;

/* The shape pooled pods are booted with: what a spec without `resources` gets (podspec.h
 * defaults), for image and driver. network: [pool] network; only the qemu driver boots a
 * pooled pod with a (parked) NIC, so under any other driver the shape has none and specs with
 * a network miss the pool (reason "network"). */
void pool_default_shape(PoolShape *ret, const char *image, int driver, bool network);

/* Whether a pool configured with [pool] network = network can boot pods with a NIC under
 * driver (only qemu: the node opens the tap and passes QEMU the fd). */
bool pool_network_supported(int driver, bool network);

/* NULL when a pod booted as `pooled` serves `want`, else the first field that differs, one of
 * "image", "driver", "vcpus", "memory", "scratch", "network" (metric label values). */
const char *pool_shape_mismatch(const PoolShape *pooled, const PoolShape *want);

/* Pods of `image` the pool keeps booted ([pool.images] NAME = N), 0 when not listed. */
unsigned pool_target(const json_t *images, const char *image);

/* What one pooled pod of guest memory `memory_mib` counts against [pool] memory_budget_mib:
 * the guest's RAM plus the 256 MiB its cgroup allows the VMM on top (the most the pod can
 * hold; docs/node.md "cgroups"). */
uint64_t pool_pod_charge_mib(uint64_t memory_mib);

/* Whether one more pod of `charge` fits: used + charge <= budget. */
bool pool_fits(uint64_t used_mib, uint64_t charge_mib, uint64_t budget_mib);

/* The image name a spec's image field means (NULL or "" -> "default"). */
const char *pool_image_name(const char *spec_image);
