/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Server-sent events parser; see sse.h. Distrusts its input: line and event sizes are capped
 * before any buffer grows; NUL bytes are rejected.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "alloc-util.h"
#include "sse.h"

struct SseParser {
        SseEventFn cb;
        void *userdata;
        size_t max_event;

        char *line; /* current line, not NUL-terminated */
        size_t line_len, line_alloc;
        bool last_was_cr; /* swallow the \n of a CRLF split across feeds */

        char *data; /* accumulated data of the pending event */
        size_t data_len, data_alloc;
        bool have_data;  /* at least one data field seen */
        char *event;     /* NULL: "message" */
        size_t n_events; /* dispatched so far */
        int error;       /* sticky */
};

SseParser *sse_parser_new(size_t max_event, SseEventFn cb, void *userdata) {
        SseParser *p = xnew0(SseParser, 1);
        p->cb = cb;
        p->userdata = userdata;
        p->max_event = max_event > 0 ? max_event : 1;
        return p;
}

SseParser *sse_parser_free(SseParser *p) {
        if (!p)
                return NULL;
        free(p->line);
        free(p->data);
        free(p->event);
        return mfree(p);
}

size_t sse_parser_events(const SseParser *p) {
        return p ? p->n_events : 0;
}

static int grow(char **buf, size_t *alloc, size_t need, size_t max) {
        if (need > max)
                return -E2BIG;
        if (need <= *alloc)
                return 0;
        size_t a = NUCLEUS_MAX(*alloc * 2, (size_t) 256);
        if (a < need)
                a = need;
        if (a > max + 1)
                a = max + 1;
        *buf = xrealloc(*buf, a);
        *alloc = a;
        return 0;
}

static int dispatch(SseParser *p) {
        int r = 0;
        if (p->have_data) {
                /* The spec strips one trailing LF from the joined data. */
                if (p->data_len > 0 && p->data[p->data_len - 1] == '\n')
                        p->data_len--;
                r = grow(&p->data, &p->data_alloc, p->data_len + 1, p->max_event + 1);
                if (r >= 0) {
                        p->data[p->data_len] = 0;
                        p->n_events++;
                        r = p->cb(p->event ? p->event : "message", p->data, p->data_len, p->userdata);
                }
        }
        p->data_len = 0;
        p->have_data = false;
        p->event = mfree(p->event);
        return r < 0 ? r : 0;
}

static int process_line(SseParser *p) {
        const char *l = p->line ? p->line : "";
        size_t n = p->line_len;

        if (n == 0)
                return dispatch(p);
        if (l[0] == ':') /* comment / keep-alive */
                return 0;

        const char *colon = memchr(l, ':', n);
        size_t fl = colon ? (size_t) (colon - l) : n;
        const char *v = colon ? colon + 1 : l + n;
        size_t vl = colon ? n - fl - 1 : 0;
        if (vl > 0 && v[0] == ' ') {
                v++;
                vl--;
        }

        if (fl == 4 && memcmp(l, "data", 4) == 0) {
                int r = grow(&p->data, &p->data_alloc, p->data_len + vl + 1, p->max_event);
                if (r < 0)
                        return r;
                memcpy(p->data + p->data_len, v, vl);
                p->data_len += vl;
                p->data[p->data_len++] = '\n';
                p->have_data = true;
        } else if (fl == 5 && memcmp(l, "event", 5) == 0) {
                free(p->event);
                p->event = xstrndup(v, vl);
        }
        /* "id", "retry" and unknown fields are ignored: we never reconnect. */
        return 0;
}

int sse_parser_feed(SseParser *p, const char *buf, size_t n) {
        if (p->error < 0)
                return p->error;
        for (size_t i = 0; i < n; i++) {
                char c = buf[i];
                int r = 0;

                if (c == '\n' && p->last_was_cr) {
                        p->last_was_cr = false;
                        continue;
                }
                p->last_was_cr = false;
                if (c == '\r' || c == '\n') {
                        p->last_was_cr = c == '\r';
                        r = process_line(p);
                        p->line_len = 0;
                } else if (c == 0)
                        r = -EBADMSG;
                else {
                        r = grow(&p->line, &p->line_alloc, p->line_len + 1, p->max_event);
                        if (r >= 0)
                                p->line[p->line_len++] = c;
                }
                if (r < 0)
                        return (p->error = r);
        }
        return 0;
}

int sse_parser_finish(SseParser *p) {
        int r;
        if (p->error < 0)
                return p->error;
        if (p->line_len > 0) {
                r = process_line(p);
                p->line_len = 0;
                if (r < 0)
                        return (p->error = r);
        }
        r = dispatch(p);
        if (r < 0)
                return (p->error = r);
        return 0;
}
