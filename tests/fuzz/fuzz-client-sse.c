/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the client's server-sent-events parser and the node error-document decoder: both read
 * what a (possibly hostile) node sends. The input is fed in pieces whose size comes from the
 * first byte, so chunk boundaries are exercised too. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client-sse.h"
#include "client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_event(const char *event, const char *d, void *userdata) {
        size_t *count = userdata;
        if (!d || strlen(d) > CLIENT_SSE_DATA_MAX || (event && strlen(event) > CLIENT_SSE_LINE_MAX))
                abort();
        (*count)++;
        return *count > 100000 ? -E2BIG : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ClientSse sse;
        size_t count = 0;

        if (size < 1 || size > 256 * 1024)
                return 0;
        size_t step = (size_t) data[0] + 1;
        const char *p = (const char *) data + 1;
        size_t n = size - 1;

        client_sse_init(&sse, on_event, &count);
        int r = 0;
        for (size_t off = 0; off < n && r >= 0; off += step)
                r = client_sse_feed(&sse, p + off, n - off < step ? n - off : step);
        if (r >= 0)
                (void) client_sse_finish(&sse);
        client_sse_done(&sse);

        /* The same bytes as an error body. */
        ClientError e = {};
        ClientResponse resp = { .status = 400 + (long) (data[0] % 200), .body = (char *) p, .size = n };
        char *copy = malloc(n + 1);
        if (!copy)
                return 0;
        memcpy(copy, p, n);
        copy[n] = 0;
        resp.body = copy;
        client_error_from_response(&resp, &e);
        if (!e.message || !e.kind)
                abort();
        for (const char *q = e.message; *q; q++)
                if ((unsigned char) *q < 0x20)
                        abort();
        client_error_done(&e);
        free(copy);
        return 0;
}
