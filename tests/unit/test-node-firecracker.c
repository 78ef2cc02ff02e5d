/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the Firecracker driver's API request bodies and the vsock handshake parser
 * (the driver itself cannot run without a usable KVM). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "alloc-util.h"
#include "vmm-firecracker.h"

static void test_bodies(void **state) {
        _cleanup_free_ char *b = firecracker_body_boot_source(
                "/img/vmlinux", "/img/initramfs.cpio.gz", "console=ttyS0 quiet");
        assert_string_equal(
                b,
                "{\"boot_args\":\"console=ttyS0 quiet\",\"initrd_path\":\"/img/initramfs.cpio.gz\","
                "\"kernel_image_path\":\"/img/vmlinux\"}");
        _cleanup_free_ char *d = firecracker_body_drive("rootfs", "/img/rootfs.ext4", false, true);
        assert_string_equal(
                d,
                "{\"drive_id\":\"rootfs\",\"is_read_only\":true,\"is_root_device\":false,"
                "\"path_on_host\":\"/img/rootfs.ext4\"}");
        _cleanup_free_ char *m = firecracker_body_machine_config(2, 1024);
        assert_string_equal(m, "{\"mem_size_mib\":1024,\"smt\":false,\"vcpu_count\":2}");
        _cleanup_free_ char *v = firecracker_body_vsock(3, "/p/vm/vsock.sock");
        assert_string_equal(v, "{\"guest_cid\":3,\"uds_path\":\"/p/vm/vsock.sock\"}");
        _cleanup_free_ char *a = firecracker_body_action("InstanceStart");
        assert_string_equal(a, "{\"action_type\":\"InstanceStart\"}");
        _cleanup_free_ char *nw = firecracker_body_network("eth0", "nut-1234", "06:00:00:00:00:02");
        assert_string_equal(
                nw,
                "{\"guest_mac\":\"06:00:00:00:00:02\",\"host_dev_name\":\"nut-1234\",\"iface_id\":"
                "\"eth0\"}");
        /* Strings are JSON-escaped, never spliced. */
        _cleanup_free_ char *q = firecracker_body_boot_source("/a\"b", NULL, "x\ny");
        assert_string_equal(q, "{\"boot_args\":\"x\\ny\",\"kernel_image_path\":\"/a\\\"b\"}");
}

static void test_handshake_request(void **state) {
        char buf[32];
        size_t n = firecracker_handshake_request(buf, 5005);
        assert_int_equal(n, 13);
        assert_memory_equal(buf, "CONNECT 5005\n", 13);
}

static void test_handshake_parse(void **state) {
        uint32_t port = 0;
        assert_int_equal(firecracker_handshake_parse("OK 1073741824\n", 14, &port), 1);
        assert_int_equal(port, 1073741824u);
        assert_int_equal(firecracker_handshake_parse("OK 5\n", 5, &port), 1);
        assert_int_equal(port, 5u);
        /* Incomplete: need more bytes. */
        assert_int_equal(firecracker_handshake_parse("", 0, &port), 0);
        assert_int_equal(firecracker_handshake_parse("O", 1, &port), 0);
        assert_int_equal(firecracker_handshake_parse("OK 12", 5, &port), 0);
        /* Malformed. */
        assert_int_equal(firecracker_handshake_parse("NO", 2, &port), -EPROTO);
        assert_int_equal(firecracker_handshake_parse("ok 1\n", 5, &port), -EPROTO);
        assert_int_equal(firecracker_handshake_parse("OK \n", 4, &port), -EPROTO);
        assert_int_equal(firecracker_handshake_parse("OK 1a\n", 6, &port), -EPROTO);
        assert_int_equal(firecracker_handshake_parse("OK -1\n", 6, &port), -EPROTO);
        assert_int_equal(firecracker_handshake_parse("OK 99999999999\n", 15, &port), -EPROTO);
        assert_int_equal(firecracker_handshake_parse("OK 4294967296\n", 14, &port), -EPROTO);
        assert_int_equal(firecracker_handshake_parse("OK 1\nX", 6, &port), -EPROTO);
        /* Too long without a newline. */
        char big[FIRECRACKER_HANDSHAKE_MAX];
        memset(big, '1', sizeof big);
        memcpy(big, "OK ", 3);
        assert_int_equal(firecracker_handshake_parse(big, sizeof big, &port), -E2BIG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bodies),
                cmocka_unit_test(test_handshake_request),
                cmocka_unit_test(test_handshake_parse),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
