/* SPDX-License-Identifier: Apache-2.0 */
/* The host/guest disk contract: the ext4 labels the image library writes (IMAGE_*_LABEL,
 * src/lib/image) are the ones the guest init looks for (INIT_*_LABEL, src/guest/init), and a
 * scratch disk from image_scratch_create() parses to the scratch label with the init's own
 * superblock parser. Needs /sbin/mkfs.ext4 for the second part (skipped without it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "init-disk.h"

static void test_label_constants(void **state) {
        assert_string_equal(IMAGE_ROOTFS_LABEL, INIT_ROOTFS_LABEL);
        assert_string_equal(IMAGE_SCRATCH_LABEL, INIT_SCRATCH_LABEL);
        assert_string_equal(IMAGE_ROOTFS_SERIAL, INIT_ROOTFS_SERIAL);
        assert_string_equal(IMAGE_SCRATCH_SERIAL, INIT_SCRATCH_SERIAL);
        assert_string_equal(IMAGE_SYSTEM_LABEL, INIT_SYSTEM_LABEL);
        assert_string_equal(IMAGE_SYSTEM_SERIAL, INIT_SYSTEM_SERIAL);
        assert_true(strlen(IMAGE_SYSTEM_LABEL) <= INIT_EXT4_LABEL_MAX);
        assert_true(strlen(IMAGE_SYSTEM_SERIAL) <= INIT_DISK_SERIAL_MAX);
        assert_true(strlen(IMAGE_ROOTFS_LABEL) <= INIT_EXT4_LABEL_MAX);
        assert_true(strlen(IMAGE_SCRATCH_LABEL) <= INIT_EXT4_LABEL_MAX);
        assert_true(strlen(IMAGE_ROOTFS_SERIAL) <= INIT_DISK_SERIAL_MAX);
        assert_true(strlen(IMAGE_SCRATCH_SERIAL) <= INIT_DISK_SERIAL_MAX);
}

static void test_scratch_label(void **state) {
        char dir[] = "/tmp/nucleus-test-image-labels-XXXXXX";
        char path[PATH_MAX];
        uint8_t sb[1024];
        char label[INIT_EXT4_LABEL_MAX + 1];
        struct stat st;

        if (access("/sbin/mkfs.ext4", X_OK) < 0)
                skip();
        assert_non_null(mkdtemp(dir));
        (void) snprintf(path, sizeof(path), "%s/scratch.ext4", dir);
        assert_int_equal(image_scratch_create(path, 16u << 20), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);

        int fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(pread(fd, sb, sizeof(sb), INIT_EXT4_SB_OFFSET), (ssize_t) sizeof(sb));
        (void) close(fd);
        assert_int_equal(init_ext4_label_parse(sb, sizeof(sb), label), 1);
        assert_string_equal(label, INIT_SCRATCH_LABEL);

        /* And the init's matching rules take it as the scratch disk without a serial. */
        InitDisk disks[3] = {};
        strcpy(disks[0].name, "vda");
        strcpy(disks[0].label, INIT_ROOTFS_LABEL);
        strcpy(disks[1].name, "vdb");
        memcpy(disks[1].label, label, sizeof(label));
        strcpy(disks[2].name, "vdc");
        strcpy(disks[2].label, INIT_SYSTEM_LABEL);
        InitDiskMatch m;
        const char *err = NULL;
        InitDiskRole role;
        assert_int_equal(init_disks_match(disks, 3, &m, &err, &role), 1);
        assert_int_equal(m.index[INIT_DISK_SCRATCH], 1);
        assert_int_equal(m.by[INIT_DISK_SCRATCH], INIT_DISK_BY_LABEL);

        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

/* The system disk is attached only when root owns it and no one else may write it. */
static void test_system_check(void **state) {
        char dir[] = "/tmp/nucleus-test-image-system-XXXXXX";
        char path[PATH_MAX];
        char *err = NULL;

        assert_non_null(mkdtemp(dir));
        (void) snprintf(path, sizeof(path), "%s/nucleus.ext4", dir);
        assert_int_equal(image_system_check(path, &err), -ENOENT);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        (void) close(fd);
        assert_int_equal(chmod(path, 0644), 0);
        if (geteuid() == 0) {
                assert_int_equal(image_system_check(path, &err), 0);
                /* Its directory: anyone who may write it may rename the disk away and put their
                 * own file in its place. */
                assert_int_equal(chmod(dir, 0777), 0);
                assert_int_equal(image_system_check(path, &err), -EPERM);
                assert_non_null(strstr(err, "directory"));
                free(err);
                err = NULL;
                assert_int_equal(chmod(dir, 01777), 0); /* sticky: only root renames root's file */
                assert_int_equal(image_system_check(path, &err), 0);
                assert_int_equal(chmod(dir, 0755), 0);
                assert_int_equal(chown(dir, 1000, 1000), 0);
                assert_int_equal(image_system_check(path, &err), -EPERM);
                assert_non_null(strstr(err, "directory"));
                free(err);
                err = NULL;
                assert_int_equal(chown(dir, 0, 0), 0);
                assert_int_equal(chmod(dir, 0700), 0);
                assert_int_equal(image_system_check(path, &err), 0);

                /* The files a pod boots from: root's, writable by no one else. */
                static const char *const names[] = { "nucleus.ext4" };
                assert_int_equal(image_boot_files_check(dir, names, 1, &err), 0);
                assert_int_equal(chmod(path, 0666), 0);
                assert_int_equal(image_boot_files_check(dir, names, 1, &err), -EPERM);
                assert_non_null(strstr(err, "guest image file"));
                free(err);
                err = NULL;
                assert_int_equal(chmod(path, 0644), 0);
                assert_int_equal(chmod(path, 0664), 0);
                assert_int_equal(image_system_check(path, &err), -EPERM);
                assert_non_null(strstr(err, "writable by no one else"));
                free(err);
                err = NULL;
                assert_int_equal(chmod(path, 0644), 0);
                assert_int_equal(chown(path, 1000, 1000), 0);
        }
        /* Owned by someone else than root (the VMM user, a user's build). */
        assert_int_equal(image_system_check(path, &err), -EPERM);
        assert_non_null(strstr(err, "owned by root"));
        free(err);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(mkdir(path, 0755), 0);
        err = NULL;
        assert_int_equal(image_system_check(path, &err), -EPERM);
        free(err);
        assert_int_equal(rmdir(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_label_constants),
                cmocka_unit_test(test_scratch_label),
                cmocka_unit_test(test_system_check),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
