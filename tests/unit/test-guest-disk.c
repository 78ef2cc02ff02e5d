/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the guest init's disk identification (src/guest/init/init-disk.c): the ext4
 * superblock label parser (hand-built superblocks and, when mkfs.ext4 is installed, real ones)
 * and the serial-then-label matching rules, including ambiguity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init-disk.h"

static void sb_init(uint8_t sb[static 1024], const char *label, size_t label_len) {
        memset(sb, 0xA5, 1024); /* garbage everywhere the parser must not look */
        sb[INIT_EXT4_SB_MAGIC_OFFSET] = 0x53;
        sb[INIT_EXT4_SB_MAGIC_OFFSET + 1] = 0xEF;
        memset(sb + INIT_EXT4_SB_LABEL_OFFSET, 0, INIT_EXT4_LABEL_MAX);
        memcpy(sb + INIT_EXT4_SB_LABEL_OFFSET, label, label_len);
}

static void test_label_parse(void **state) {
        uint8_t sb[1024];
        char label[INIT_EXT4_LABEL_MAX + 1];

        sb_init(sb, "nucleus-root", 12);
        assert_int_equal(init_ext4_label_parse(sb, sizeof(sb), label), 1);
        assert_string_equal(label, "nucleus-root");

        /* Exactly the minimum length that holds the label. */
        assert_int_equal(init_ext4_label_parse(sb, INIT_EXT4_SB_MIN_BYTES, label), 1);
        assert_string_equal(label, "nucleus-root");

        /* A 16-character label has no terminator in the superblock. */
        sb_init(sb, "0123456789abcdef", 16);
        assert_int_equal(init_ext4_label_parse(sb, sizeof(sb), label), 1);
        assert_string_equal(label, "0123456789abcdef");

        /* No label at all. */
        sb_init(sb, "", 0);
        strcpy(label, "untouched");
        assert_int_equal(init_ext4_label_parse(sb, sizeof(sb), label), 1);
        assert_string_equal(label, "");
}

static void test_label_not_ext4(void **state) {
        uint8_t sb[1024];
        char label[INIT_EXT4_LABEL_MAX + 1] = "untouched";

        /* Too short to hold the label. */
        sb_init(sb, "nucleus-root", 12);
        assert_int_equal(init_ext4_label_parse(sb, INIT_EXT4_SB_MIN_BYTES - 1, label), 0);
        assert_int_equal(init_ext4_label_parse(sb, 0, label), 0);
        assert_int_equal(init_ext4_label_parse(NULL, 1024, label), 0);

        /* Wrong magic (byte-swapped, zero). */
        sb[INIT_EXT4_SB_MAGIC_OFFSET] = 0xEF;
        sb[INIT_EXT4_SB_MAGIC_OFFSET + 1] = 0x53;
        assert_int_equal(init_ext4_label_parse(sb, sizeof(sb), label), 0);
        memset(sb, 0, sizeof(sb));
        assert_int_equal(init_ext4_label_parse(sb, sizeof(sb), label), 0);
        assert_string_equal(label, "untouched");
}

static void test_label_bad(void **state) {
        uint8_t sb[1024];
        char label[INIT_EXT4_LABEL_MAX + 1] = "untouched";

        sb_init(sb, "nucleus\nroot", 12);
        assert_int_equal(init_ext4_label_parse(sb, sizeof(sb), label), -EBADMSG);
        sb_init(sb, "nucleus-r\xc3\xb6ot", 12);
        assert_int_equal(init_ext4_label_parse(sb, sizeof(sb), label), -EBADMSG);
        /* Bytes after the NUL: "nucleus-root\0x" is not something mkfs writes. */
        sb_init(sb, "nucleus-root\0x", 14);
        assert_int_equal(init_ext4_label_parse(sb, sizeof(sb), label), -EBADMSG);
        assert_string_equal(label, "untouched");
}

/* Real superblocks from mkfs.ext4 -L, read at offset 1024 as the init does. */
static void test_label_mkfs(void **state) {
        static const char *const mkfs = "/sbin/mkfs.ext4";
        char path[] = "/tmp/nucleus-test-guest-disk-XXXXXX";
        uint8_t sb[1024];
        char label[INIT_EXT4_LABEL_MAX + 1];

        if (access(mkfs, X_OK) < 0)
                skip();
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, 8 << 20), 0);

        static const char *const labels[] = { INIT_ROOTFS_LABEL, INIT_SCRATCH_LABEL, "sixteen-chars-ab" };
        for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
                pid_t pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
                        if (null < 0 || dup2(null, STDOUT_FILENO) < 0 || dup2(null, STDERR_FILENO) < 0)
                                _exit(127);
                        execl(mkfs, mkfs, "-q", "-F", "-L", labels[i], path, (char *) NULL);
                        _exit(127);
                }
                int status;
                assert_int_equal(waitpid(pid, &status, 0), pid);
                assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                assert_int_equal(pread(fd, sb, sizeof(sb), INIT_EXT4_SB_OFFSET), (ssize_t) sizeof(sb));
                assert_int_equal(init_ext4_label_parse(sb, sizeof(sb), label), 1);
                assert_string_equal(label, labels[i]);
        }
        (void) close(fd);
        (void) unlink(path);
}

#define DISK(n, s, l) \
        { .name = n, .serial = s, .label = l }

static void test_match_by_serial(void **state) {
        InitDiskMatch m;
        const char *err = NULL;
        InitDiskRole role;

        /* QEMU: serials set; labels present too but serials decide. */
        const InitDisk q[] = {
                DISK("vda", "nucleus-rootfs", INIT_ROOTFS_LABEL),
                DISK("vdb", "nucleus-scratch", INIT_SCRATCH_LABEL),
                DISK("vdc", "nucleus-system", INIT_SYSTEM_LABEL),
        };
        assert_int_equal(init_disks_match(q, 3, &m, &err, &role), 1);
        assert_int_equal(m.index[INIT_DISK_SYSTEM], 2);
        assert_int_equal(m.by[INIT_DISK_SYSTEM], INIT_DISK_BY_SERIAL);
        /* No system disk (an images dir built before it existed): not found, never guessed. */
        assert_int_equal(init_disks_match(q, 2, &m, &err, &role), 0);
        assert_int_equal(m.index[INIT_DISK_ROOTFS], 0);
        assert_int_equal(m.index[INIT_DISK_SCRATCH], 1);
        assert_int_equal(m.by[INIT_DISK_ROOTFS], INIT_DISK_BY_SERIAL);
        assert_int_equal(m.by[INIT_DISK_SCRATCH], INIT_DISK_BY_SERIAL);

        /* The serial wins over a label that says otherwise, and a disk claimed by serial is never
         * taken by label: a scratch disk labelled nucleus-root does not become the rootfs. */
        const InitDisk swapped[] = {
                DISK("vda", "nucleus-scratch", INIT_ROOTFS_LABEL),
                DISK("vdb", "nucleus-rootfs", INIT_SCRATCH_LABEL),
                DISK("vdc", "nucleus-system", ""),
        };
        assert_int_equal(init_disks_match(swapped, 3, &m, &err, &role), 1);
        assert_int_equal(m.index[INIT_DISK_ROOTFS], 1);
        assert_int_equal(m.index[INIT_DISK_SCRATCH], 0);
        /* A scratch disk (its label is the guest's to change) labelled as the system disk is
         * not taken for it while it carries the scratch serial. */
        const InitDisk relabelled[] = {
                DISK("vda", "nucleus-rootfs", ""),
                DISK("vdb", "nucleus-scratch", INIT_SYSTEM_LABEL),
        };
        assert_int_equal(init_disks_match(relabelled, 2, &m, &err, &role), 0);
        const InitDisk only_scratch[] = {
                DISK("vda", "nucleus-scratch", INIT_ROOTFS_LABEL),
        };
        assert_int_equal(init_disks_match(only_scratch, 1, &m, &err, &role), 0);
}

static void test_match_by_label(void **state) {
        InitDiskMatch m;
        const char *err = NULL;
        InitDiskRole role;

        /* Firecracker: serials are digits derived from the backing file (st_dev st_rdev st_ino). */
        const InitDisk fc[] = {
                DISK("vdb", "2049013107358", INIT_SCRATCH_LABEL),
                DISK("vda", "2049013107351", INIT_ROOTFS_LABEL),
                DISK("vdc", "2049013107360", INIT_SYSTEM_LABEL),
        };
        assert_int_equal(init_disks_match(fc, 3, &m, &err, &role), 1);
        assert_int_equal(m.index[INIT_DISK_SYSTEM], 2);
        assert_int_equal(m.by[INIT_DISK_SYSTEM], INIT_DISK_BY_LABEL);
        assert_int_equal(m.index[INIT_DISK_ROOTFS], 1);
        assert_int_equal(m.index[INIT_DISK_SCRATCH], 0);
        assert_int_equal(m.by[INIT_DISK_ROOTFS], INIT_DISK_BY_LABEL);
        assert_int_equal(m.by[INIT_DISK_SCRATCH], INIT_DISK_BY_LABEL);

        /* Mixed: one by serial, the other by label; unrelated extra disks are ignored. */
        const InitDisk mixed[] = {
                DISK("vda", "nucleus-rootfs", ""),
                DISK("vdb", "", "data"),
                DISK("vdc", "", INIT_SCRATCH_LABEL),
                DISK("vdd", "nucleus-system", ""),
        };
        assert_int_equal(init_disks_match(mixed, 4, &m, &err, &role), 1);
        assert_int_equal(m.index[INIT_DISK_ROOTFS], 0);
        assert_int_equal(m.by[INIT_DISK_ROOTFS], INIT_DISK_BY_SERIAL);
        assert_int_equal(m.index[INIT_DISK_SCRATCH], 2);
        assert_int_equal(m.by[INIT_DISK_SCRATCH], INIT_DISK_BY_LABEL);

        /* Not there yet: no disks, or one role missing. */
        assert_int_equal(init_disks_match(NULL, 0, &m, &err, &role), 0);
        assert_int_equal(init_disks_match(fc, 1, &m, &err, &role), 0);
        /* Labels compare exactly. */
        const InitDisk near[] = {
                DISK("vda", "", "nucleus-root "),
                DISK("vdb", "", "Nucleus-scratch"),
        };
        assert_int_equal(init_disks_match(near, 2, &m, &err, &role), 0);
}

static void test_match_ambiguous(void **state) {
        InitDiskMatch m = {};
        const char *err = NULL;
        InitDiskRole role = _INIT_DISK_ROLE_INVALID;

        const InitDisk two_labels[] = {
                DISK("vda", "", INIT_ROOTFS_LABEL),
                DISK("vdb", "", INIT_SCRATCH_LABEL),
                DISK("vdc", "", INIT_ROOTFS_LABEL),
        };
        assert_int_equal(init_disks_match(two_labels, 3, &m, &err, &role), -ENOTUNIQ);
        assert_int_equal(role, INIT_DISK_ROOTFS);
        assert_non_null(err);
        assert_non_null(strstr(err, "label"));

        const InitDisk two_scratch[] = {
                DISK("vda", "nucleus-rootfs", ""),
                DISK("vdb", "1", INIT_SCRATCH_LABEL),
                DISK("vdc", "2", INIT_SCRATCH_LABEL),
        };
        err = NULL;
        assert_int_equal(init_disks_match(two_scratch, 3, &m, &err, &role), -ENOTUNIQ);
        assert_int_equal(role, INIT_DISK_SCRATCH);

        const InitDisk two_serials[] = {
                DISK("vda", "nucleus-rootfs", ""),
                DISK("vdb", "nucleus-rootfs", ""),
                DISK("vdc", "nucleus-scratch", ""),
        };
        err = NULL;
        assert_int_equal(init_disks_match(two_serials, 3, &m, &err, &role), -ENOTUNIQ);
        assert_int_equal(role, INIT_DISK_ROOTFS);
        assert_non_null(strstr(err, "serial"));

        /* A serial match settles the role: a second disk with the same label is not ambiguity. */
        const InitDisk serial_settles[] = {
                DISK("vda", "nucleus-rootfs", INIT_ROOTFS_LABEL),
                DISK("vdb", "nucleus-scratch", INIT_SCRATCH_LABEL),
                DISK("vdc", "", INIT_ROOTFS_LABEL),
                DISK("vdd", "nucleus-system", INIT_SYSTEM_LABEL),
        };
        assert_int_equal(init_disks_match(serial_settles, 4, &m, &err, &role), 1);
        assert_int_equal(m.index[INIT_DISK_ROOTFS], 0);

        const InitDisk two_system[] = {
                DISK("vda", "nucleus-rootfs", ""),
                DISK("vdb", "nucleus-scratch", ""),
                DISK("vdc", "", INIT_SYSTEM_LABEL),
                DISK("vdd", "", INIT_SYSTEM_LABEL),
        };
        err = NULL;
        assert_int_equal(init_disks_match(two_system, 4, &m, &err, &role), -ENOTUNIQ);
        assert_int_equal(role, INIT_DISK_SYSTEM);
}

static void test_tables(void **state) {
        assert_string_equal(init_disk_role_to_string(INIT_DISK_ROOTFS), "rootfs");
        assert_string_equal(init_disk_role_to_string(INIT_DISK_SCRATCH), "scratch");
        assert_int_equal(init_disk_role_from_string("scratch"), INIT_DISK_SCRATCH);
        assert_int_equal(init_disk_role_from_string("x"), _INIT_DISK_ROLE_INVALID);
        assert_string_equal(init_disk_by_to_string(INIT_DISK_BY_LABEL), "label");
        assert_string_equal(init_disk_role_serial(INIT_DISK_ROOTFS), "nucleus-rootfs");
        assert_string_equal(init_disk_role_label(INIT_DISK_ROOTFS), "nucleus-root");
        assert_string_equal(init_disk_role_label(INIT_DISK_SCRATCH), "nucleus-scratch");
        assert_string_equal(init_disk_role_to_string(INIT_DISK_SYSTEM), "system");
        assert_string_equal(init_disk_role_serial(INIT_DISK_SYSTEM), "nucleus-system");
        assert_string_equal(init_disk_role_label(INIT_DISK_SYSTEM), "nucleus-system");
        assert_null(init_disk_role_serial(_INIT_DISK_ROLE_MAX));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_label_parse),     cmocka_unit_test(test_label_not_ext4),
                cmocka_unit_test(test_label_bad),       cmocka_unit_test(test_label_mkfs),
                cmocka_unit_test(test_match_by_serial), cmocka_unit_test(test_match_by_label),
                cmocka_unit_test(test_match_ambiguous), cmocka_unit_test(test_tables),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
