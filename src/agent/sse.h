/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Incremental parser for server-sent events (text/event-stream, WHATWG HTML §9.2) as sent by
 * model APIs. Input is untrusted network bytes: every line and every event is capped before it
 * grows a buffer, and a stream that exceeds a cap is an error (-E2BIG), never a truncation.
 */
#pragma once

#include <stddef.h>

#include "macro.h"

typedef struct SseParser SseParser;

/* Called once per dispatched event. event is "message" when the stream named none; data is
 * NUL-terminated (data_len excludes the NUL) and owned by the parser (valid during the call).
 * Return <0 to stop parsing: sse_parser_feed() then returns that value. */
typedef int (*SseEventFn)(const char *event, const char *data, size_t data_len, void *userdata);

/* max_event caps one line and one event's accumulated data (bytes). */
SseParser *sse_parser_new(size_t max_event, SseEventFn cb, void *userdata);
SseParser *sse_parser_free(SseParser *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(SseParser *, sse_parser_free);

/* Feed n bytes (any split, including inside a CRLF). Returns 0, -E2BIG when a line or event
 * exceeds max_event, -EBADMSG on a NUL byte, or the callback's negative value. After an error
 * the parser refuses further input with the same error. */
int sse_parser_feed(SseParser *p, const char *buf, size_t n);

/* End of stream: an unterminated last line is processed, then a pending event is dispatched
 * (model servers often omit the final blank line). Returns as sse_parser_feed(). */
int sse_parser_finish(SseParser *p);

/* Number of events dispatched so far. */
size_t sse_parser_events(const SseParser *p);
