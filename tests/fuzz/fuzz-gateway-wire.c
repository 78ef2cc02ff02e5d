/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the model gateway's parsers: request bodies through the allow lists of every format
 * (the agent's bytes), and answers as SSE events and whole bodies through the usage
 * accounting (the provider's bytes). */
#include <stdint.h>
#include <stdlib.h>

#include "gateway-wire.h"
#include "json-util.h"
#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct Ctx {
        GatewayFormat f;
        GatewayUsage u;
} Ctx;

static int feed(const char *event, const char *d, size_t n, void *userdata) {
        Ctx *c = userdata;
        gateway_usage_event(c->f, &c->u, event, d, n);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > 256 * 1024)
                return 0;
        GatewayFormat f = (GatewayFormat) (data[0] % _GATEWAY_FORMAT_MAX);
        const char *text = (const char *) data + 1;
        size_t n = size - 1;

        json_t *req = NULL;
        if (json_parse_strict(text, n, 1 << 20, &req, NULL) >= 0) {
                const char *model = NULL;
                uint64_t max_out = 0;
                bool stream = false;
                char *err = NULL;
                (void) gateway_request_check(f, req, 4096, &model, &max_out, &stream, &err);
                free(err);
                json_decref(req);
        }

        Ctx c = { .f = f };
        SseParser *p = sse_parser_new(64 * 1024, feed, &c);
        if (sse_parser_feed(p, text, n) >= 0)
                (void) sse_parser_finish(p);
        sse_parser_free(p);
        (void) gateway_usage_cost(&c.u, 3000000, 15000000);

        GatewayUsage w = {};
        gateway_usage_body(f, &w, text, n);
        return 0;
}
