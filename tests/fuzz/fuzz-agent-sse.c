/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the SSE parser (src/agent/sse.c) with arbitrary splits of arbitrary bytes. */
#include <stdint.h>
#include <string.h>

#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count(const char *event, const char *d, size_t n, void *userdata) {
        size_t *total = userdata;
        if (strlen(d) != n || !event)
                __builtin_trap();
        *total += n;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t total = 0;
        if (size < 1 || size > 256 * 1024)
                return 0;
        /* First byte picks the feed chunk size, so splits inside CRLF and fields are covered. */
        size_t step = (size_t) data[0] % 17 + 1;
        SseParser *p = sse_parser_new(4096, count, &total);
        for (size_t i = 1; i < size; i += step) {
                size_t n = size - i < step ? size - i : step;
                if (sse_parser_feed(p, (const char *) data + i, n) < 0)
                        break;
        }
        (void) sse_parser_finish(p);
        sse_parser_free(p);
        return 0;
}
