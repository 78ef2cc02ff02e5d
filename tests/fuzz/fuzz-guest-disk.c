/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the guest init's ext4 superblock label parser (src/guest/init/init-disk.c): input is the
 * superblock region of a disk (offset 1024 of the device). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "init-disk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char label[INIT_EXT4_LABEL_MAX + 1];
        if (size > 4096)
                return 0;
        int r = init_ext4_label_parse(data, size, label);
        if (r == 1 && strlen(label) > INIT_EXT4_LABEL_MAX)
                abort();
        if (r == 1) {
                InitDisk d[2] = {};
                memcpy(d[0].label, label, sizeof(label));
                memcpy(d[1].label, label, sizeof(label));
                InitDiskMatch m;
                const char *err = NULL;
                InitDiskRole role;
                int k = init_disks_match(d, 2, &m, &err, &role);
                /* Two disks with one label can never resolve both roles. */
                if (k == 1 || (k < 0 && !err))
                        abort();
        }
        return 0;
}
