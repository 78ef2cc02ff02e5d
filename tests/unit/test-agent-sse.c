/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the SSE parser (src/agent/sse.c): framing, splits, CRLF, caps, NUL bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "alloc-util.h"
#include "sse.h"
#include "string-util.h"

typedef struct Collected {
        char *log;   /* "event=data|" per event */
        int fail_at; /* return -EPIPE at this event number (1-based); 0: never */
        int n;
} Collected;

static int collect(const char *event, const char *data, size_t n, void *userdata) {
        Collected *c = userdata;
        assert_int_equal(strlen(data), n);
        c->n++;
        if (c->fail_at == c->n)
                return -EPIPE;
        char *nl = xasprintf("%s%s=%s|", c->log ? c->log : "", event, data);
        free(c->log);
        c->log = nl;
        return 0;
}

static void feed_split(const char *text, size_t step, Collected *c, size_t max) {
        _cleanup_(sse_parser_freep) SseParser *p = sse_parser_new(max, collect, c);
        size_t n = strlen(text);
        for (size_t i = 0; i < n; i += step)
                assert_int_equal(sse_parser_feed(p, text + i, NUCLEUS_MIN(step, n - i)), 0);
        assert_int_equal(sse_parser_finish(p), 0);
}

static void test_basic(void **state) {
        const char *s = ": comment\n"
                        "data: hello\n\n"
                        "event: content_block_delta\ndata: {\"a\":1}\n\n"
                        "data:x\ndata: y\n\n"
                        "id: 7\nretry: 10\n\n"
                        "data: last";
        for (size_t step = 1; step <= strlen(s); step++) {
                Collected c = {};
                feed_split(s, step, &c, 1024);
                assert_string_equal(
                        c.log, "message=hello|content_block_delta={\"a\":1}|message=x\ny|message=last|");
                free(c.log);
        }
}

static void test_crlf(void **state) {
        const char *s = "data: a\r\n\r\ndata: b\r\rdata: c\n\r\n";
        for (size_t step = 1; step <= strlen(s); step++) {
                Collected c = {};
                feed_split(s, step, &c, 1024);
                assert_string_equal(c.log, "message=a|message=b|message=c|");
                free(c.log);
        }
}

static void test_empty_data_and_event_reset(void **state) {
        Collected c = {};
        feed_split("event: ping\n\ndata\n\nevent: x\ndata: 1\n\ndata: 2\n\n", 3, &c, 64);
        /* An event with no data is not dispatched; the event name resets after dispatch. */
        assert_string_equal(c.log, "message=|x=1|message=2|");
        free(c.log);
}

static void test_caps(void **state) {
        Collected c = {};
        _cleanup_(sse_parser_freep) SseParser *p = sse_parser_new(16, collect, &c);
        assert_int_equal(sse_parser_feed(p, "data: 0123456789abcdef\n", 23), -E2BIG);
        assert_int_equal(sse_parser_feed(p, "data: x\n\n", 9), -E2BIG); /* sticky */

        _cleanup_(sse_parser_freep) SseParser *q = sse_parser_new(15, collect, &c);
        /* Each line fits, the accumulated event does not. */
        assert_int_equal(sse_parser_feed(q, "data: 0123456\ndata: 0123456\n", 28), -E2BIG);
        assert_int_equal(c.n, 0);
}

static void test_nul_and_callback_error(void **state) {
        Collected c = {};
        _cleanup_(sse_parser_freep) SseParser *p = sse_parser_new(64, collect, &c);
        assert_int_equal(sse_parser_feed(p, "data: a\0b\n", 10), -EBADMSG);

        Collected d = { .fail_at = 2 };
        _cleanup_(sse_parser_freep) SseParser *q = sse_parser_new(64, collect, &d);
        assert_int_equal(sse_parser_feed(q, "data: 1\n\ndata: 2\n\ndata: 3\n\n", 27), -EPIPE);
        assert_string_equal(d.log, "message=1|");
        assert_int_equal(sse_parser_events(q), 2);
        free(d.log);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_basic),
                cmocka_unit_test(test_crlf),
                cmocka_unit_test(test_empty_data_and_event_reset),
                cmocka_unit_test(test_caps),
                cmocka_unit_test(test_nul_and_callback_error),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
