/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An incremental parser for server-sent events (text/event-stream) from the node. Input is
 * untrusted: a line may not exceed CLIENT_SSE_LINE_MAX and an event's data CLIENT_SSE_DATA_MAX
 * (-EFBIG otherwise). Only the "event" and "data" fields matter; comments (":...") are skipped;
 * "\n", "\r\n" line ends both work.
 */
#pragma once

#include <stddef.h>

#define CLIENT_SSE_LINE_MAX ((size_t) 1024 * 1024)
#define CLIENT_SSE_DATA_MAX ((size_t) 16 * 1024 * 1024)

/* Called once per complete event: name NULL when absent; data is the "data" lines joined with
 * "\n", NUL-terminated. Return 0 to continue or a negative errno to stop. */
typedef int (*ClientSseFn)(const char *event, const char *data, void *userdata);

typedef struct ClientSse {
        char *buf; /* incomplete line */
        size_t size;
        char *event;
        char *data;
        size_t data_len;
        ClientSseFn fn;
        void *userdata;
} ClientSse;

void client_sse_init(ClientSse *s, ClientSseFn fn, void *userdata);
void client_sse_done(ClientSse *s);
/* Feed bytes. Returns 0, -EFBIG for an over-long line or event, or the callback's error. */
int client_sse_feed(ClientSse *s, const char *p, size_t n);
/* End of stream: dispatch a final event that lacked its blank line. */
int client_sse_finish(ClientSse *s);
