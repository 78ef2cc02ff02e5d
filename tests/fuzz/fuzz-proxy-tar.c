/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the proxy's tar reader with arbitrary archives fed in input-chosen chunk sizes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_entry(void *ud, const TarEntry *e) {
        if (!e->path || strlen(e->path) > TAR_MAX_PATH || (e->type >= _TAR_ENTRY_TYPE_MAX))
                abort();
        return 0;
}
static int on_data(void *ud, const void *b, size_t n) {
        *(uint64_t *) ud += n;
        return 0;
}
static int on_end(void *ud) {
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const TarCallbacks cbs = { on_entry, on_data, on_end };
        if (size < 1 || size > 1024 * 1024)
                return 0;
        size_t chunk = (size_t) data[0] * 7 + 1;
        data++, size--;
        TarReader t;
        uint64_t bytes = 0;
        tar_reader_init(&t);
        for (size_t i = 0; i < size; i += chunk)
                if (tar_reader_feed(&t, data + i, size - i < chunk ? size - i : chunk, &cbs, &bytes) < 0)
                        break;
        (void) tar_reader_finish(&t);
        if (bytes > size)
                abort();
        tar_reader_done(&t);
        return 0;
}
