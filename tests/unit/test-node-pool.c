/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the warm pool's decisions (src/node/pool-shape.c): which creates a pooled pod
 * serves (every shape field must match; the first difference is the miss reason), the size
 * per image from [pool.images], and the memory budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "fd-util.h"
#include "json-util.h"
#include "pod-internal.h"
#include "pool-shape.h"
#include "vmm.h"

static const PoolShape pooled = {
        .image = "default", .driver = VMM_DRIVER_QEMU, .vcpus = 1, .memory_mib = 512, .scratch_mib = 2048
};

static void test_default_shape(void **state) {
        /* Pooled pods get what a spec without resources gets, so plain creates are hits. */
        PoolShape d;
        pool_default_shape(&d, NULL, VMM_DRIVER_QEMU, false);
        assert_null(pool_shape_mismatch(&d, &pooled));
        assert_string_equal(d.image, "default");
        assert_false(d.network);
}

static void test_network_shape(void **state) {
        /* [pool] network = true: pooled pods boot with a parked NIC and serve exactly the specs
         * with a network (a spec without one would see a NIC a cold pod does not have). */
        PoolShape d, want = pooled;
        pool_default_shape(&d, "python", VMM_DRIVER_QEMU, true);
        assert_true(d.network);
        assert_true(pool_network_supported(VMM_DRIVER_QEMU, true));
        want.image = "python";
        assert_string_equal(pool_shape_mismatch(&d, &want), "network");
        want.network = true;
        assert_null(pool_shape_mismatch(&d, &want));
        /* Only qemu boots a pooled pod with a NIC: elsewhere the shape has none. */
        assert_false(pool_network_supported(VMM_DRIVER_LOCAL, true));
        assert_false(pool_network_supported(VMM_DRIVER_FIRECRACKER, true));
        assert_false(pool_network_supported(VMM_DRIVER_QEMU, false));
        pool_default_shape(&d, NULL, VMM_DRIVER_LOCAL, true);
        assert_false(d.network);
        pool_default_shape(&d, NULL, VMM_DRIVER_FIRECRACKER, true);
        assert_false(d.network);
}

static void test_match(void **state) {
        PoolShape want = pooled;
        assert_null(pool_shape_mismatch(&pooled, &want));
        want.image = NULL; /* a spec without an image means the default image */
        assert_null(pool_shape_mismatch(&pooled, &want));
        want.image = "";
        assert_null(pool_shape_mismatch(&pooled, &want));
}

static void test_mismatch(void **state) {
        PoolShape want;
        want = pooled, want.image = "python";
        assert_string_equal(pool_shape_mismatch(&pooled, &want), "image");
        want = pooled, want.driver = VMM_DRIVER_LOCAL;
        assert_string_equal(pool_shape_mismatch(&pooled, &want), "driver");
        want = pooled, want.vcpus = 2;
        assert_string_equal(pool_shape_mismatch(&pooled, &want), "vcpus");
        want = pooled, want.memory_mib = 256;
        assert_string_equal(pool_shape_mismatch(&pooled, &want), "memory");
        want = pooled, want.memory_mib = 1024; /* more is not "enough": the guest would see it */
        assert_string_equal(pool_shape_mismatch(&pooled, &want), "memory");
        want = pooled, want.scratch_mib = 1024;
        assert_string_equal(pool_shape_mismatch(&pooled, &want), "scratch");
        want = pooled, want.network = true;
        assert_string_equal(pool_shape_mismatch(&pooled, &want), "network");
        /* The first difference in a fixed order. */
        want = pooled, want.vcpus = 4, want.network = true;
        assert_string_equal(pool_shape_mismatch(&pooled, &want), "vcpus");
}

static void test_target(void **state) {
        json_t *images = json_pack("{s:i,s:i}", "default", 2, "python", 0);
        assert_int_equal(pool_target(images, "default"), 2);
        assert_int_equal(pool_target(images, NULL), 2);
        assert_int_equal(pool_target(images, "python"), 0);
        assert_int_equal(pool_target(images, "other"), 0);
        json_t *empty = json_object();
        assert_int_equal(pool_target(empty, "default"), 0);
        assert_int_equal(pool_target(NULL, "default"), 0);
        json_decref(images);
        json_decref(empty);
}

static void test_budget(void **state) {
        uint64_t c = pool_pod_charge_mib(512);
        assert_int_equal(c, 768);
        assert_true(pool_fits(0, c, 768));
        assert_false(pool_fits(0, c, 767));
        assert_true(pool_fits(768, c, 1536));
        assert_false(pool_fits(769, c, 1536));
        assert_false(pool_fits(0, c, 0));       /* budget 0: nothing */
        assert_false(pool_fits(2000, c, 1536)); /* already over (a lowered budget): no underflow */
        assert_false(pool_fits(0, UINT64_MAX, 1536));
}

/* The stale cleanup removes a pod dir whole only when it is an unclaimed pooled pod's: the
 * marker and no audit log (a claimed pod's log is never removed). */
static void test_pooled_dir(void **state) {
        char tmpl[] = "/tmp/test-node-pool-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        int dfd = open(tmpl, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        assert_true(dfd >= 0);
        assert_false(pod_pool_dir_is_pooled(dfd));
        assert_int_equal(write_file_atomic_at(dfd, POD_POOL_MARKER, "default", 7, 0600), 0);
        assert_true(pod_pool_dir_is_pooled(dfd));
        assert_int_equal(write_file_atomic_at(dfd, "audit.jsonl", "", 0, 0600), 0);
        assert_false(pod_pool_dir_is_pooled(dfd));
        assert_int_equal(unlinkat(dfd, "audit.jsonl", 0), 0);
        assert_int_equal(unlinkat(dfd, POD_POOL_MARKER, 0), 0);
        close(dfd);
        assert_int_equal(rmdir(tmpl), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_default_shape), cmocka_unit_test(test_network_shape),
                cmocka_unit_test(test_match),         cmocka_unit_test(test_mismatch),
                cmocka_unit_test(test_target),        cmocka_unit_test(test_budget),
                cmocka_unit_test(test_pooled_dir),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
