/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the model answer parsers: SSE bytes into both providers' stream accumulators, and the
 * same bytes as a whole (non-streamed) JSON answer. */
#include <stdint.h>
#include <stdlib.h>

#include "llm.h"
#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int feed(const char *event, const char *d, size_t n, void *userdata) {
        char *err = NULL;
        int r = llm_stream_event(userdata, event, d, n, &err);
        free(err);
        return r < 0 ? r : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > 256 * 1024)
                return 0;
        LlmProvider prov = data[0] & 1 ? LLM_PROVIDER_ANTHROPIC : LLM_PROVIDER_OPENAI;
        const char *text = (const char *) data + 1;
        size_t n = size - 1;

        LlmStream *s = llm_stream_new(prov, NULL, NULL);
        SseParser *p = sse_parser_new(64 * 1024, feed, s);
        if (sse_parser_feed(p, text, n) >= 0 && sse_parser_finish(p) >= 0) {
                LlmResponse r = {};
                char *err = NULL;
                if (llm_stream_finish(s, &r, &err) >= 0) {
                        if (!r.text || !r.tool_calls || !r.stop_reason)
                                __builtin_trap();
                        llm_response_done(&r);
                }
                free(err);
        }
        sse_parser_free(p);
        llm_stream_free(s);

        LlmResponse r = {};
        char *err = NULL;
        if (llm_parse_response(prov, text, n, &r, &err) >= 0)
                llm_response_done(&r);
        free(err);
        return 0;
}
