/* SPDX-License-Identifier: Apache-2.0 */
/* Incremental server-sent-events parser (see client-sse.h); distrusts its input, caps sizes. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "alloc-util.h"
#include "client-sse.h"

void client_sse_init(ClientSse *s, ClientSseFn fn, void *userdata) {
        *s = (ClientSse){ .fn = fn, .userdata = userdata };
}

void client_sse_done(ClientSse *s) {
        free(s->buf);
        free(s->event);
        free(s->data);
        *s = (ClientSse){};
}

static int dispatch(ClientSse *s) {
        int r = 0;
        if (s->data)
                r = s->fn(s->event, s->data, s->userdata);
        s->event = mfree(s->event);
        s->data = mfree(s->data);
        s->data_len = 0;
        return r;
}

static int line(ClientSse *s, const char *l, size_t n) {
        if (n > 0 && l[n - 1] == '\r')
                n--;
        if (n == 0)
                return dispatch(s);
        if (l[0] == ':')
                return 0;
        const char *colon = memchr(l, ':', n);
        size_t flen = colon ? (size_t) (colon - l) : n;
        const char *v = colon ? colon + 1 : l + n;
        if (v < l + n && *v == ' ')
                v++;
        size_t vlen = (size_t) (l + n - v);
        if (flen == 4 && memcmp(l, "data", 4) == 0) {
                bool had_data = s->data != NULL;
                if (vlen + 1 > CLIENT_SSE_DATA_MAX - s->data_len)
                        return -EFBIG;
                s->data = xrealloc(s->data, s->data_len + vlen + 2);
                /* A second data line joins the first with a newline, even when the first was empty. */
                if (s->data_len > 0 || had_data)
                        s->data[s->data_len++] = '\n';
                memcpy(s->data + s->data_len, v, vlen);
                s->data_len += vlen;
                s->data[s->data_len] = 0;
        } else if (flen == 5 && memcmp(l, "event", 5) == 0) {
                free(s->event);
                s->event = xstrndup(v, vlen);
        }
        return 0;
}

int client_sse_feed(ClientSse *s, const char *p, size_t n) {
        while (n > 0) {
                const char *nl = memchr(p, '\n', n);
                size_t chunk = nl ? (size_t) (nl - p) : n;
                if (chunk > CLIENT_SSE_LINE_MAX - s->size)
                        return -EFBIG;
                if (nl && s->size == 0) {
                        /* Whole line in the input: no copy. */
                        int r = line(s, p, chunk);
                        if (r < 0)
                                return r;
                } else {
                        s->buf = xrealloc(s->buf, s->size + chunk + 1);
                        memcpy(s->buf + s->size, p, chunk);
                        s->size += chunk;
                        if (nl) {
                                int r = line(s, s->buf, s->size);
                                s->size = 0;
                                if (r < 0)
                                        return r;
                        }
                }
                if (!nl)
                        break;
                p = nl + 1;
                n -= chunk + 1;
        }
        return 0;
}

int client_sse_finish(ClientSse *s) {
        if (s->size > 0) {
                int r = line(s, s->buf, s->size);
                s->size = 0;
                if (r < 0)
                        return r;
        }
        return dispatch(s);
}
