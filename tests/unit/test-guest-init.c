/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the guest init's kernel command line parsing (src/guest/init/init-cmdline.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>

#include "alloc-util.h"
#include "init-cmdline.h"

static void test_net_parse(void **state) {
        InitNetConfig c;
        char a[INET_ADDRSTRLEN];

        assert_int_equal(init_net_parse("10.201.0.2/30,10.201.0.1,10.201.0.1", &c), 0);
        assert_int_equal(c.prefix, 30);
        assert_string_equal(c.text, "10.201.0.2/30");
        assert_non_null(inet_ntop(AF_INET, &c.gateway, a, sizeof(a)));
        assert_string_equal(a, "10.201.0.1");
        assert_int_equal(init_net_parse("10.0.0.2/32,10.0.0.1,9.9.9.9", &c), 0);

        static const char *const bad[] = {
                "",
                "10.0.0.2",
                "10.0.0.2/30",
                "10.0.0.2/30,10.0.0.1",
                "10.0.0.2/0,10.0.0.1,10.0.0.1",
                "10.0.0.2/33,10.0.0.1,10.0.0.1",
                "10.0.0.2/x,10.0.0.1,10.0.0.1",
                "10.0.0.256/30,1.1.1.1,1.1.1.1",
                "10.0.0.2/30,gw=10.0.0.1,dns=1.1.1.1",
                "10.0.0.2/30,1.1.1.1,1.1.1.1,1.1.1.1",
                "10.0.0.2/30,,1.1.1.1",
                "10.0.0.2/-1,1.1.1.1,1.1.1.1",
                "::1/64,::2,::3",
                "10.0.0.2/0030,1.1.1.1,1.1.1.1",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(init_net_parse(bad[i], &c), -EINVAL);
}

static void test_cmdline_parse(void **state) {
        InitCmdline c;
        const char *err = NULL;

        assert_int_equal(init_cmdline_parse("console=ttyS0 quiet panic=-1\n", &c, &err), 0);
        assert_string_equal(c.channel, INIT_DEFAULT_CHANNEL);
        assert_false(c.have_net);
        assert_false(c.probe);
        init_cmdline_done(&c);

        assert_int_equal(
                init_cmdline_parse(
                        "console=ttyS0 nucleus.channel=org.x.1 nucleus.net=10.1.0.2/30,10.1.0.1,10.1.0.1 "
                        "nucleus.probe=1",
                        &c,
                        &err),
                0);
        assert_string_equal(c.channel, "org.x.1");
        assert_true(c.have_net);
        assert_true(c.probe);
        init_cmdline_done(&c);

        /* A warm pool pod: a NIC the init leaves down and unaddressed (the proxy configures it). */
        assert_int_equal(init_cmdline_parse("nucleus.net=parked", &c, &err), 0);
        assert_false(c.have_net);
        assert_true(c.net_parked);
        init_cmdline_done(&c);
        assert_int_equal(init_cmdline_parse("nucleus.net=parked nucleus.net=parked", &c, &err), -EINVAL);

        assert_int_equal(init_cmdline_parse("nucleus.channel=vsock:5005", &c, &err), 0);
        assert_int_equal(c.vsock_port, 5005);
        init_cmdline_done(&c);
        assert_int_equal(init_cmdline_parse("nucleus.channel=vsock:0", &c, &err), -EINVAL);
        assert_int_equal(init_cmdline_parse("nucleus.channel=vsock:x", &c, &err), -EINVAL);
        assert_int_equal(init_cmdline_parse("nucleus.net=garbage", &c, &err), -EINVAL);
        assert_non_null(err);
        assert_int_equal(init_cmdline_parse("nucleus.channel=a nucleus.channel=b", &c, &err), -EINVAL);
        assert_int_equal(init_cmdline_parse("nucleus.channel=", &c, &err), -EINVAL);
        assert_int_equal(init_cmdline_parse("nucleus.channel=../x", &c, &err), -EINVAL);
        assert_int_equal(init_cmdline_parse("nucleus.probe=yes", &c, &err), -EINVAL);
        assert_int_equal(init_cmdline_parse("nucleus.secret=1", &c, &err), -EINVAL);
}

static void test_module_params(void **state) {
        const char *cl = "console=ttyS0 virtio_mmio.device=4K@0xfeb00e00:12 "
                         "virtio-mmio.device=4K@0xfeb00c00:11 "
                         "virtio_blk.x virtio_mmiox.device=1 foo=virtio_mmio.device=2";
        char *p = init_cmdline_module_params(cl, "virtio_mmio");
        assert_string_equal(p, "device=4K@0xfeb00e00:12 device=4K@0xfeb00c00:11");
        free(p);
        p = init_cmdline_module_params(cl, "virtio_blk");
        assert_string_equal(p, "x");
        free(p);
        p = init_cmdline_module_params(cl, "vsock");
        assert_string_equal(p, "");
        free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_net_parse),
                cmocka_unit_test(test_cmdline_parse),
                cmocka_unit_test(test_module_params),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
