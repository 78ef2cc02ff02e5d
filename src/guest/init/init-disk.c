/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Disk identification for the guest init (see init-disk.h): the ext4 superblock label parser
 * and the serial-then-label matching rules. Input: superblock bytes and sysfs values read from
 * devices the host attached; the bytes are untrusted and every offset is bounds-checked.
 */
#include <string.h>

#include "init-disk.h"
#include "macro.h"
#include "string-util.h"

static const char *const init_disk_role_table[_INIT_DISK_ROLE_MAX] = {
        [INIT_DISK_ROOTFS] = "rootfs",
        [INIT_DISK_SCRATCH] = "scratch",
        [INIT_DISK_SYSTEM] = "system",
};
DEFINE_STRING_TABLE_LOOKUP(init_disk_role, InitDiskRole);

static const char *const init_disk_by_table[_INIT_DISK_BY_MAX] = {
        [INIT_DISK_BY_SERIAL] = "serial",
        [INIT_DISK_BY_LABEL] = "label",
};
DEFINE_STRING_TABLE_LOOKUP(init_disk_by, InitDiskBy);

const char *init_disk_role_serial(InitDiskRole r) {
        switch (r) {
        case INIT_DISK_ROOTFS:
                return INIT_ROOTFS_SERIAL;
        case INIT_DISK_SCRATCH:
                return INIT_SCRATCH_SERIAL;
        case INIT_DISK_SYSTEM:
                return INIT_SYSTEM_SERIAL;
        case _INIT_DISK_ROLE_MAX:
        case _INIT_DISK_ROLE_INVALID:
        default:
                return NULL;
        }
}

const char *init_disk_role_label(InitDiskRole r) {
        switch (r) {
        case INIT_DISK_ROOTFS:
                return INIT_ROOTFS_LABEL;
        case INIT_DISK_SCRATCH:
                return INIT_SCRATCH_LABEL;
        case INIT_DISK_SYSTEM:
                return INIT_SYSTEM_LABEL;
        case _INIT_DISK_ROLE_MAX:
        case _INIT_DISK_ROLE_INVALID:
        default:
                return NULL;
        }
}

int init_ext4_label_parse(const uint8_t *sb, size_t n, char ret_label[static INIT_EXT4_LABEL_MAX + 1]) {
        char label[INIT_EXT4_LABEL_MAX + 1] = {};
        size_t len = 0;

        if (!sb || n < INIT_EXT4_SB_MIN_BYTES)
                return 0;
        uint16_t magic = (uint16_t) (sb[INIT_EXT4_SB_MAGIC_OFFSET] | (sb[INIT_EXT4_SB_MAGIC_OFFSET + 1] << 8));
        if (magic != INIT_EXT4_SB_MAGIC)
                return 0;

        /* s_volume_name is NUL-padded; a 16-character label has no terminator. */
        const uint8_t *v = sb + INIT_EXT4_SB_LABEL_OFFSET;
        while (len < INIT_EXT4_LABEL_MAX && v[len] != 0) {
                if (v[len] < 0x20 || v[len] > 0x7e)
                        return -EBADMSG;
                label[len] = (char) v[len];
                len++;
        }
        for (size_t i = len; i < INIT_EXT4_LABEL_MAX; i++)
                if (v[i] != 0)
                        return -EBADMSG; /* bytes after the terminator: not a label mkfs wrote */
        memcpy(ret_label, label, sizeof(label));
        return 1;
}

static bool serial_names_a_role(const char *serial) {
        for (InitDiskRole r = 0; r < _INIT_DISK_ROLE_MAX; r++)
                if (streq(serial, init_disk_role_serial(r)))
                        return true;
        return false;
}

int init_disks_match(
        const InitDisk *disks, size_t n, InitDiskMatch *ret, const char **reterr_msg, InitDiskRole *reterr_role) {
        InitDiskMatch m = {};
        bool missing = false;

        for (InitDiskRole r = 0; r < _INIT_DISK_ROLE_MAX; r++) {
                const char *serial = init_disk_role_serial(r), *label = init_disk_role_label(r);
                size_t n_serial = 0, n_label = 0, i_serial = 0, i_label = 0;

                for (size_t i = 0; i < n; i++) {
                        if (streq(disks[i].serial, serial)) {
                                n_serial++;
                                i_serial = i;
                        } else if (!serial_names_a_role(disks[i].serial) && streq(disks[i].label, label)) {
                                n_label++;
                                i_label = i;
                        }
                }
                if (n_serial > 1) {
                        *reterr_msg = "two or more disks carry the serial of this role";
                        *reterr_role = r;
                        return -ENOTUNIQ;
                }
                if (n_serial == 1) {
                        m.index[r] = i_serial;
                        m.by[r] = INIT_DISK_BY_SERIAL;
                        continue;
                }
                if (n_label > 1) {
                        *reterr_msg = "two or more disks carry the volume label of this role";
                        *reterr_role = r;
                        return -ENOTUNIQ;
                }
                if (n_label == 1) {
                        m.index[r] = i_label;
                        m.by[r] = INIT_DISK_BY_LABEL;
                        continue;
                }
                missing = true;
        }
        if (missing)
                return 0;
        /* Cannot happen with distinct role serials and labels; checked so that a future change
         * to the tables fails closed instead of mounting one disk twice. */
        for (InitDiskRole a = 0; a < _INIT_DISK_ROLE_MAX; a++)
                for (InitDiskRole b = a + 1; b < _INIT_DISK_ROLE_MAX; b++)
                        if (m.index[a] == m.index[b]) {
                                *reterr_msg = "the same disk matches two roles";
                                *reterr_role = b;
                                return -ENOTUNIQ;
                        }
        *ret = m;
        return 1;
}
