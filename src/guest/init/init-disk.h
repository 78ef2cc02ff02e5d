/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Disk identification for the guest init: which virtio-blk disk is the rootfs, which the
 * scratch disk and which the system disk (/nucleus). The host names them by virtio-blk serial
 * (QEMU: serial=nucleus-rootfs/-scratch/-system)
 * and, for VMMs that cannot set a serial (Firecracker answers GET_ID with a string made from
 * the backing file's st_dev/st_rdev/st_ino), by the ext4 volume label the image builder gave
 * them. Pure functions over bytes and small records, so they can be unit-tested and fuzzed;
 * the superblock bytes are untrusted (the scratch disk may come from an earlier pod).
 */
#pragma once

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

/* ext2/3/4 superblock (Documentation/filesystems/ext4/super.rst): at byte 1024 of the device,
 * s_magic (le16) at +0x38, s_volume_name (char[16], NUL-padded, not always NUL-terminated) at
 * +0x78. */
#define INIT_EXT4_SB_OFFSET 1024u
#define INIT_EXT4_SB_MAGIC_OFFSET 0x38u
#define INIT_EXT4_SB_MAGIC 0xEF53u
#define INIT_EXT4_SB_LABEL_OFFSET 0x78u
#define INIT_EXT4_LABEL_MAX 16u
#define INIT_EXT4_SB_MIN_BYTES (INIT_EXT4_SB_LABEL_OFFSET + INIT_EXT4_LABEL_MAX) /* 136 */

/* virtio-blk serials the host sets where it can (QEMU), docs/images.md "Disk identification". */
#define INIT_ROOTFS_SERIAL "nucleus-rootfs"
#define INIT_SCRATCH_SERIAL "nucleus-scratch"
#define INIT_SYSTEM_SERIAL "nucleus-system"
/* Volume labels the host's mkfs.ext4 -L sets (src/lib/image: rootfs, scratch, system disks). */
#define INIT_ROOTFS_LABEL "nucleus-root"
#define INIT_SCRATCH_LABEL "nucleus-scratch"
#define INIT_SYSTEM_LABEL "nucleus-system"

#define INIT_DISK_SERIAL_MAX 20u /* VIRTIO_BLK_ID_BYTES */

/* Parse the volume label out of an ext2/3/4 superblock.
 * Arguments: sb points at the superblock (device offset INIT_EXT4_SB_OFFSET), n bytes of it.
 * Returns: 1 and the label (NUL-terminated, possibly empty) in ret_label when the magic
 * matches; 0 when the bytes are not an ext2/3/4 superblock (too short or no magic; not
 * applicable, ret_label untouched); -EBADMSG when the magic matches but the label holds
 * anything but printable ASCII before its NUL padding, or non-NUL bytes after it. */
int init_ext4_label_parse(const uint8_t *sb, size_t n, char ret_label[static INIT_EXT4_LABEL_MAX + 1]);

typedef struct InitDisk {
        char name[32];                         /* block device name, e.g. "vda" */
        char serial[INIT_DISK_SERIAL_MAX + 1]; /* virtio-blk serial; "" when none or unreadable */
        char label[INIT_EXT4_LABEL_MAX + 1];   /* ext4 volume label; "" when none/not ext4 */
} InitDisk;

typedef enum InitDiskRole {
        INIT_DISK_ROOTFS,
        INIT_DISK_SCRATCH,
        INIT_DISK_SYSTEM, /* the image's system disk: the proxy and its helpers, at /nucleus */
        _INIT_DISK_ROLE_MAX,
        _INIT_DISK_ROLE_INVALID = -EINVAL,
} InitDiskRole;

typedef enum InitDiskBy {
        INIT_DISK_BY_SERIAL,
        INIT_DISK_BY_LABEL,
        _INIT_DISK_BY_MAX,
        _INIT_DISK_BY_INVALID = -EINVAL,
} InitDiskBy;

typedef struct InitDiskMatch {
        size_t index[_INIT_DISK_ROLE_MAX]; /* into the disks array */
        InitDiskBy by[_INIT_DISK_ROLE_MAX];
} InitDiskMatch;

const char *init_disk_role_to_string(InitDiskRole r); /* "rootfs", "scratch", "system" */
InitDiskRole init_disk_role_from_string(const char *s);
const char *init_disk_by_to_string(InitDiskBy b); /* "serial", "label" */
InitDiskBy init_disk_by_from_string(const char *s);
const char *init_disk_role_serial(InitDiskRole r); /* "nucleus-rootfs", "nucleus-scratch", "nucleus-system" */
const char *init_disk_role_label(InitDiskRole r);  /* "nucleus-root", "nucleus-scratch", "nucleus-system" */

/* Decide which disk plays which role.
 * Rules: a role's serial wins; a disk whose serial names any role is never picked by label
 * (so a mislabelled scratch disk cannot become the rootfs); two disks with the same role
 * serial, or (without a serial match) two disks with the role's label, are ambiguous and
 * refused.
 * Returns: 1 and *ret when every role has exactly one disk; 0 when some role has no disk yet
 * (the caller waits and retries; ret untouched); -ENOTUNIQ on ambiguity, with a static message
 * in *reterr_msg and the role in *reterr_role. */
int init_disks_match(
        const InitDisk *disks, size_t n, InitDiskMatch *ret, const char **reterr_msg, InitDiskRole *reterr_role);
