/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for src/lib/image: QEMU argv, module dependency order, initramfs contents, the system
 * disk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "image-internal.h"
#include "string-util.h"

static bool has_pair(char **argv, const char *opt, const char *val) {
        for (size_t i = 0; argv[i] && argv[i + 1]; i++)
                if (streq(argv[i], opt) && streq(argv[i + 1], val))
                        return true;
        return false;
}

static void test_qemu_argv(void **state) {
        ImageQemuConfig c = {
                .kernel = "/img/vmlinuz",
                .initramfs = "/img/initramfs.cpio.gz",
                .rootfs = "/img/rootfs.ext4",
                .system = "/img/nucleus.ext4",
                .scratch = "/pod/scratch.ext4",
                .channel_socket = "/pod/channel.sock",
                .console_log = "/pod/console.log",
                .accel = IMAGE_ACCEL_TCG,
                .memory_mib = 384,
        };
        char **argv = NULL;
        assert_int_equal(image_qemu_argv(&c, &argv), 0);
        assert_string_equal(argv[0], "qemu-system-x86_64");
        assert_true(has_pair(argv, "-accel", "tcg,tb-size=32"));
        assert_true(has_pair(argv, "-M", "microvm,x-option-roms=off,rtc=on,isa-serial=on,mem-merge=off"));
        assert_true(has_pair(argv, "-cpu", "max"));
        assert_true(has_pair(argv, "-m", "384"));
        assert_true(has_pair(
                argv, "-drive", "id=rootfs,file=/img/rootfs.ext4,format=raw,if=none,readonly=on,rerror=report"));
        /* a full host disk surfaces as an I/O error in the guest, never a VM paused by QEMU */
        bool scratch_reports = false;
        for (size_t i = 0; argv[i]; i++)
                if (startswith(argv[i], "id=scratch,") && strstr(argv[i], ",werror=report,rerror=report"))
                        scratch_reports = true;
        assert_true(scratch_reports);
        assert_true(has_pair(argv, "-device", "virtio-blk-device,drive=rootfs,serial=nucleus-rootfs"));
        assert_true(has_pair(argv, "-device", "virtio-blk-device,drive=scratch,serial=nucleus-scratch"));
        assert_true(has_pair(
                argv,
                "-drive",
                "id=system,file=/img/nucleus.ext4,format=raw,if=none,readonly=on,rerror=report"));
        assert_true(has_pair(argv, "-device", "virtio-blk-device,drive=system,serial=nucleus-system"));
        assert_true(has_pair(argv, "-chardev", "socket,id=ch0,path=/pod/channel.sock,server=on,wait=off"));
        assert_true(has_pair(argv, "-device", "virtserialport,chardev=ch0,name=org.nucleus.channel.0"));
        assert_true(strv_contains(argv, "-nodefaults"));
        assert_true(strv_contains(argv, "-no-reboot"));
        for (size_t i = 0; argv[i]; i++) {
                assert_null(strstr(argv[i], "netdev"));
                if (streq(argv[i], "-append")) {
                        assert_non_null(strstr(argv[i + 1], "nucleus.channel=org.nucleus.channel.0"));
                        assert_null(strstr(argv[i + 1], "nucleus.net="));
                        assert_non_null(
                                strstr(argv[i + 1], " " IMAGE_BOOT_TUNING " " IMAGE_BOOT_TUNING_TCG " "));
                }
        }
        strv_free(argv);

        /* bench/boot's baseline: the same argv without the boot tuning. */
        c.stock_boot = true;
        assert_int_equal(image_qemu_argv(&c, &argv), 0);
        for (size_t i = 0; argv[i]; i++)
                if (streq(argv[i], "-append")) {
                        assert_null(strstr(argv[i + 1], "cryptomgr.notests"));
                        assert_null(strstr(argv[i + 1], "tsc=reliable"));
                        assert_non_null(strstr(argv[i + 1], "nucleus.channel=org.nucleus.channel.0"));
                }
        strv_free(argv);
        c.stock_boot = false;

        /* KSM and the translation cache are settings. */
        c.mem_merge = true;
        c.tcg_tb_mib = 16;
        assert_int_equal(image_qemu_argv(&c, &argv), 0);
        assert_true(has_pair(argv, "-M", "microvm,x-option-roms=off,rtc=on,isa-serial=on,mem-merge=on"));
        assert_true(has_pair(argv, "-accel", "tcg,tb-size=16"));
        strv_free(argv);
        c.mem_merge = false;
        c.tcg_tb_mib = 0;

        c.tap_ifname = "nutap0";
        c.mac = "06:00:0a:c9:00:02";
        c.net_cmdline = "10.201.0.2/30,10.201.0.1,10.201.0.1";
        c.accel = IMAGE_ACCEL_KVM;
        assert_int_equal(image_qemu_argv(&c, &argv), 0);
        assert_true(has_pair(argv, "-netdev", "tap,id=net0,ifname=nutap0,script=no,downscript=no"));
        assert_true(has_pair(argv, "-accel", "kvm"));
        bool found = false;
        for (size_t i = 0; argv[i]; i++)
                if (streq(argv[i], "-append"))
                        found = strstr(argv[i + 1], "nucleus.net=10.201.0.2/30,10.201.0.1,10.201.0.1") !=
                                        NULL &&
                                strstr(argv[i + 1], " " IMAGE_BOOT_TUNING " ") != NULL &&
                                strstr(argv[i + 1], "tsc=reliable") == NULL; /* KVM: kvm-clock */
        assert_true(found);
        strv_free(argv);

        /* An inherited tap fd instead of a name (unprivileged QEMU). */
        c.tap_ifname = NULL;
        c.tap_fd = 7;
        assert_int_equal(image_qemu_argv(&c, &argv), 0);
        assert_true(has_pair(argv, "-netdev", "tap,id=net0,fd=7"));
        strv_free(argv);
        c.tap_fd = 2;
        assert_int_equal(image_qemu_argv(&c, &argv), -EINVAL);
        c.tap_ifname = "nutap0";
        c.tap_fd = 7;
        assert_int_equal(image_qemu_argv(&c, &argv), -EINVAL);
        c.tap_fd = 0;

        /* Values QEMU would split on ',' are refused. */
        c.scratch = "/pod/a,b";
        assert_int_equal(image_qemu_argv(&c, &argv), -EINVAL);
        c.scratch = "/pod/s";
        /* A pod with disks has its system disk too. */
        c.system = NULL;
        assert_int_equal(image_qemu_argv(&c, &argv), -EINVAL);
        c.system = "/img/a,b";
        assert_int_equal(image_qemu_argv(&c, &argv), -EINVAL);
        c.system = "/img/nucleus.ext4";
        c.net_cmdline = "10.0.0.2/30 init=/bin/sh";
        assert_int_equal(image_qemu_argv(&c, &argv), -EINVAL);
        c.tap_ifname = NULL;
        c.console_log = NULL;
        assert_int_equal(image_qemu_argv(&c, &argv), -EINVAL);
}

static void write_text(const char *path, const char *text) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(loop_write(fd, text, strlen(text)), 0);
        close(fd);
}

static char *make_kernel_tree(void) {
        char tmpl[] = "/tmp/test-image-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        char *root = xstrdup(tmpl);
        _cleanup_free_ char *d = xasprintf("%s/lib/modules/6.1.0-test/kernel/drivers", root);
        assert_int_equal(mkdir_p_at(AT_FDCWD, d, 0755), 0);
        _cleanup_free_ char *dep = xasprintf("%s/lib/modules/6.1.0-test/modules.dep", root);
        write_text(
                dep,
                "kernel/drivers/virtio.ko: kernel/drivers/virtio_ring.ko\n"
                "kernel/drivers/virtio_ring.ko:\n"
                "kernel/drivers/virtio_blk.ko: kernel/drivers/virtio.ko kernel/drivers/virtio_ring.ko\n"
                "kernel/drivers/virtio_net.ko: kernel/drivers/net_failover.ko kernel/drivers/failover.ko.xz "
                "kernel/drivers/virtio.ko kernel/drivers/virtio_ring.ko\n"
                "kernel/drivers/net_failover.ko: kernel/drivers/failover.ko.xz\n"
                "kernel/drivers/failover.ko.xz:\n");
        _cleanup_free_ char *bi = xasprintf("%s/lib/modules/6.1.0-test/modules.builtin", root);
        write_text(bi, "kernel/fs/ext4/ext4.ko\n");
        static const char *const mods[] = { "virtio", "virtio_ring", "virtio_blk", "virtio_net", "net_failover" };
        for (size_t i = 0; i < ELEMENTSOF(mods); i++) {
                _cleanup_free_ char *p = xasprintf("%s/%s.ko", d, mods[i]);
                write_text(p, mods[i]);
        }
        /* A compressed module, as newer kernels ship them (written with libarchive's xz). */
        _cleanup_free_ char *xzp = xasprintf("%s/failover.ko.xz", d);
        struct archive *w = archive_write_new();
        struct archive_entry *e = archive_entry_new();
        assert_int_equal(archive_write_set_format_raw(w), ARCHIVE_OK);
        assert_int_equal(archive_write_add_filter_xz(w), ARCHIVE_OK);
        assert_int_equal(archive_write_open_filename(w, xzp), ARCHIVE_OK);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, 8);
        assert_int_equal(archive_write_header(w, e), ARCHIVE_OK);
        assert_int_equal(archive_write_data(w, "failover", 8), 8);
        archive_entry_free(e);
        assert_int_equal(archive_write_close(w), ARCHIVE_OK);
        archive_write_free(w);
        return root;
}

static void test_modules_order(void **state) {
        _cleanup_free_ char *root = make_kernel_tree();
        char *wanted[] = { (char *) "virtio_net", (char *) "virtio-blk", (char *) "ext4", NULL };
        char **order = NULL;
        assert_int_equal(image_kernel_modules(root, "6.1.0-test", wanted, &order), 0);
        _cleanup_free_ char *j = strv_join(order, " ");
        assert_string_equal(
                j,
                "kernel/drivers/failover.ko.xz kernel/drivers/net_failover.ko kernel/drivers/virtio_ring.ko "
                "kernel/drivers/virtio.ko kernel/drivers/virtio_net.ko kernel/drivers/virtio_blk.ko");

        char *missing[] = { (char *) "vsock", NULL };
        char **o2 = NULL;
        assert_int_equal(image_kernel_modules(root, "6.1.0-test", missing, &o2), -ENOENT);
        assert_null(o2);

        /* Initramfs: read back with libarchive and check layout and load order. */
        _cleanup_free_ char *out = xasprintf("%s/initramfs.cpio.gz", root);
        _cleanup_free_ char *bin = xasprintf("%s/bin", root);
        write_text(
                bin,
                "\x7f"
                "ELF fake");
        assert_int_equal(image_initramfs_write(out, bin, root, "6.1.0-test", order), 0);

        struct archive *a = archive_read_new();
        struct archive_entry *e;
        archive_read_support_filter_gzip(a);
        archive_read_support_format_cpio(a);
        assert_int_equal(archive_read_open_filename(a, out, 65536), ARCHIVE_OK);
        bool have_init = false, have_console = false, have_list = false, have_bin = false;
        while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
                const char *p = archive_entry_pathname(e);
                assert_int_equal(archive_entry_uid(e), 0);
                if (streq(p, "init")) {
                        have_init = true;
                        assert_int_equal(archive_entry_perm(e), 0755);
                } else if (streq(p, "dev/console")) {
                        have_console = archive_entry_filetype(e) == AE_IFCHR;
                } else if (startswith(p, "nucleus/bin")) {
                        have_bin = true; /* the proxy is on the system disk now */
                } else if (streq(p, "nucleus/modules/failover.ko")) {
                        char buf[64] = {};
                        assert_int_equal(archive_read_data(a, buf, sizeof(buf) - 1), 8);
                        assert_string_equal(buf, "failover"); /* stored decompressed */
                } else if (streq(p, "nucleus/modules/load.list")) {
                        char buf[512] = {};
                        assert_true(archive_read_data(a, buf, sizeof(buf) - 1) > 0);
                        assert_string_equal(
                                buf,
                                "failover.ko\nnet_failover.ko\nvirtio_ring.ko\nvirtio.ko\nvirtio_net."
                                "ko\nvirtio_blk.ko\n");
                        have_list = true;
                }
        }
        archive_read_free(a);
        assert_true(have_init && have_console && have_list && !have_bin);
        strv_free(order);

        /* A script is not a static ELF. */
        assert_int_equal(image_elf_is_static(bin), -ENOEXEC);
        assert_int_equal(image_rm_rf(root), 0);
}

static void test_accel_table(void **state) {
        assert_string_equal(image_accel_to_string(IMAGE_ACCEL_TCG), "tcg");
        assert_int_equal(image_accel_from_string("kvm"), IMAGE_ACCEL_KVM);
        assert_int_equal(image_accel_from_string("hvf"), _IMAGE_ACCEL_INVALID);
}

/* The system disk: a read-only ext4 labelled nucleus-system with the proxy, and for an imported
 * image git (its loader rewritten) with its libraries and the ld.so link; root's, 0644. Needs
 * root (the files on it are root's), mkfs.ext4 and debugfs (to read it back) and a host git. */
static void test_system_disk(void **state) {
        if (geteuid() != 0 || access("/sbin/mkfs.ext4", X_OK) < 0 || access("/sbin/debugfs", X_OK) < 0 ||
            access("/usr/bin/git", X_OK) < 0)
                skip();
        char tmpl[] = "/tmp/nucleus-test-system-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        _cleanup_free_ char *cache = xasprintf("%s/cache", tmpl),
                            *logp = xasprintf("%s/cache/build.log", tmpl);
        _cleanup_free_ char *proxy = xasprintf("%s/proxy", tmpl), *out = xasprintf("%s/nucleus.ext4", tmpl);
        assert_int_equal(mkdir(cache, 0755), 0);
        ImageBuildOptions o = { .quiet = true };
        ImageCtx ctx = { .opts = &o, .dir = tmpl, .cache_dir = cache, .log_fd = -EBADF };
        ctx.log_fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        assert_true(ctx.log_fd >= 0);
        write_text(proxy, "proxy bytes");

        char **git_libs = NULL;
        assert_int_equal(image_fetch_libs(&ctx, "/usr/bin/git", &git_libs), 0);
        ImageSystemExtra extra = { .git_path = "/usr/bin/git", .git_libs = git_libs };
        assert_int_equal(image_system_write(&ctx, out, proxy, &extra), 0);

        struct stat st;
        assert_int_equal(stat(out, &st), 0);
        assert_int_equal(st.st_uid, 0);
        assert_int_equal(st.st_mode & 07777, 0644);
        _cleanup_free_ char *err = NULL;
        assert_int_equal(image_system_check(out, &err), 0);
        _cleanup_free_ char *staged = xasprintf("%s/system-build", cache);
        assert_int_equal(access(staged, F_OK), -1); /* the staging tree is gone */

        char *const label_argv[] = { (char *) "e2label", out, NULL };
        _cleanup_free_ char *label = NULL;
        assert_int_equal(image_run_capture(&ctx, label_argv, 4096, &label), 0);
        assert_string_equal(label, IMAGE_SYSTEM_LABEL "\n");

        char *const ls_bin[] = { (char *) "debugfs", (char *) "-R", (char *) "ls -p /bin", out, NULL };
        _cleanup_free_ char *bin = NULL;
        assert_int_equal(image_run_capture(&ctx, ls_bin, 1 << 20, &bin), 0);
        assert_non_null(strstr(bin, "/nucleus-tool-proxy/"));
        assert_non_null(strstr(bin, "/git/"));
        assert_null(strstr(bin, "/nucleus-web-fetch/")); /* not given */
        char *const ls_lib[] = { (char *) "debugfs", (char *) "-R", (char *) "ls -p /lib", out, NULL };
        _cleanup_free_ char *lib = NULL;
        assert_int_equal(image_run_capture(&ctx, ls_lib, 1 << 20, &lib), 0);
        assert_non_null(strstr(lib, "/ld-linux-x86-64.so.2/"));
        assert_non_null(strstr(lib, "/ld.so/")); /* the link git's PT_INTERP names */
        /* git's loader now points into /nucleus/lib. */
        _cleanup_free_ char *gitcopy = xasprintf("%s/git", tmpl);
        _cleanup_free_ char *dump = xasprintf("dump /bin/git %s", gitcopy);
        char *const dump_argv[] = { (char *) "debugfs", (char *) "-R", dump, out, NULL };
        _cleanup_free_ char *ignored = NULL;
        assert_int_equal(image_run_capture(&ctx, dump_argv, 1 << 20, &ignored), 0);
        _cleanup_free_ char *data = NULL;
        size_t n = 0;
        assert_int_equal(read_full_file_at(AT_FDCWD, gitcopy, 256u << 20, &data, &n), 0);
        assert_non_null(memmem(data, n, IMAGE_SYSTEM_LOADER_SHORT, sizeof IMAGE_SYSTEM_LOADER_SHORT));

        strv_free(git_libs);
        ctx.log_fd = safe_close(ctx.log_fd);
        assert_int_equal(image_rm_rf(tmpl), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_qemu_argv),
                cmocka_unit_test(test_modules_order),
                cmocka_unit_test(test_accel_table),
                cmocka_unit_test(test_system_disk),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
