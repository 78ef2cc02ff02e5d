/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Warm pool decisions: shape matching, per-image targets and the memory charge (pool-shape.h).
 */
#include "podspec.h"
#include "pool-shape.h"
#include "string-util.h"
#include "vmm.h"

const char *pool_shape_mismatch(const PoolShape *pooled, const PoolShape *want) {
        if (!streq(pool_image_name(pooled->image), pool_image_name(want->image)))
                return "image";
        if (pooled->driver != want->driver)
                return "driver";
        if (pooled->vcpus != want->vcpus)
                return "vcpus";
        if (pooled->memory_mib != want->memory_mib)
                return "memory";
        if (pooled->scratch_mib != want->scratch_mib)
                return "scratch";
        if (pooled->network != want->network)
                return "network";
        return NULL;
}

unsigned pool_target(const json_t *images, const char *image) {
        json_t *v = json_object_get(images, pool_image_name(image));
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return 0;
        return (unsigned) json_integer_value(v);
}

uint64_t pool_pod_charge_mib(uint64_t memory_mib) {
        return memory_mib + 256;
}

bool pool_fits(uint64_t used_mib, uint64_t charge_mib, uint64_t budget_mib) {
        return used_mib <= budget_mib && charge_mib <= budget_mib - used_mib;
}

const char *pool_image_name(const char *spec_image) {
        return isempty(spec_image) ? "default" : spec_image;
}

bool pool_network_supported(int driver, bool network) {
        return network && driver == VMM_DRIVER_QEMU;
}

void pool_default_shape(PoolShape *ret, const char *image, int driver, bool network) {
        *ret = (PoolShape){
                .image = pool_image_name(image),
                .driver = driver,
                .vcpus = PODSPEC_VCPUS_DEFAULT,
                .memory_mib = PODSPEC_MEMORY_MIB_DEFAULT,
                .scratch_mib = PODSPEC_SCRATCH_MIB_DEFAULT,
                .network = pool_network_supported(driver, network),
        };
}
