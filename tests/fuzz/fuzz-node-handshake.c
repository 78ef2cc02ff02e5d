/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the host side of Firecracker's vsock handshake parser ("OK <port>\n"), fed byte by
 * byte as the driver does: it must never read past n, and once it fails it keeps failing. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm-firecracker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint32_t port = 0;
        int last = 0;

        if (size > 4096)
                return 0;
        for (size_t n = 0; n <= size; n++) {
                char *copy = malloc(n ? n : 1); /* exact size: ASan catches any overread */
                if (!copy)
                        abort();
                memcpy(copy, data, n);
                int r = firecracker_handshake_parse(copy, n, &port);
                free(copy);
                if (r != 0 && r != 1 && r != -EPROTO && r != -E2BIG)
                        abort();
                if (last < 0 && r == 0)
                        abort(); /* a refused prefix never becomes acceptable again */
                if (r == 1 && (n < 5 || data[n - 1] != '\n'))
                        abort();
                last = r;
                if (r != 0)
                        break;
        }
        return 0;
}
