/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the incremental frame decoder: arbitrary bytes, fed in chunks whose sizes come from the
 * input itself; every decoded JSON frame also goes through the request parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "frame.h"
#include "message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FrameDecoder d;
        if (size < 1 || size > 256 * 1024)
                return 0;
        size_t chunk = (size_t) data[0] + 1;
        data++, size--;
        frame_decoder_init(&d);
        while (size > 0) {
                size_t n = chunk < size ? chunk : size, used = 0;
                Frame f = FRAME_NULL;
                uint32_t sid;
                int r = frame_decoder_feed(&d, data, n, &used, &f, &sid);
                if (used > n)
                        abort();
                if (r == 1) {
                        if (f.length > PROTO_MAX_PAYLOAD)
                                abort();
                        if (f.type == FRAME_REQUEST) {
                                json_t *j = NULL;
                                char *err = NULL;
                                if (proto_json_parse(f.payload, f.length, &j, &err) >= 0) {
                                        const char *op;
                                        json_t *args;
                                        (void) proto_request_parse(j, &op, &args, &err);
                                        json_decref(j);
                                }
                                free(err);
                        }
                        frame_done(&f);
                }
                if (r == 0 && used != n)
                        abort();
                data += used, size -= used;
        }
        frame_decoder_done(&d);
        return 0;
}
