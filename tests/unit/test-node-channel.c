/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the node side of the channel: multiplexed calls, data collection, events,
 * out-of-order responses, a peer that breaks framing, closing with waiters. The "guest" is a
 * thread on the other end of a socketpair speaking src/lib/proto frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel.h"
#include "fd-util.h"
#include "frame.h"
#include "json-util.h"
#include "message.h"

static int n_events;
static int close_error = 1;
static void on_event(void *ud, json_t *ev) {
        if (json_is_object(ev))
                __atomic_add_fetch(&n_events, 1, __ATOMIC_SEQ_CST);
}
static void on_close(void *ud, int e) {
        close_error = e;
}

static int read_frame(int fd, uint8_t *type, uint32_t *sid, char **payload, uint32_t *len) {
        uint8_t h[PROTO_HEADER_SIZE];
        FrameHeader fh;
        if (loop_read_exact(fd, h, sizeof h) < 0 || frame_header_decode(h, &fh) < 0)
                return -1;
        *payload = calloc(1, fh.length + 1);
        if (fh.length && loop_read_exact(fd, *payload, fh.length) < 0)
                return -1;
        *type = fh.type;
        *sid = fh.stream_id;
        *len = fh.length;
        return 0;
}

/* Guest: answer the export before the read (whichever was sent first), with data frames
 * before the export's answer. Which stream is which comes from the request, not from the
 * order the two calling threads happened to send in. */
static void *guest_reverse(void *arg) {
        int fd = *(int *) arg;
        uint32_t sid, sid_read = 0, sid_export = 0, len;
        uint8_t type;
        char *p;
        for (int i = 0; i < 2; i++) {
                assert_int_equal(read_frame(fd, &type, &sid, &p, &len), 0);
                assert_int_equal(type, FRAME_REQUEST);
                assert_true(sid % 2 == 1);
                if (strstr(p, "\"op\":\"export\""))
                        sid_export = sid;
                else
                        sid_read = sid;
                free(p);
        }
        assert_true(sid_read != 0 && sid_export != 0);
        frame_write(fd, FRAME_EVENT, 0, "{\"type\":\"boot\"}", 15);
        frame_write(fd, FRAME_DATA, sid_export, "hello ", 6);
        frame_write(fd, FRAME_DATA, sid_export, "world", 5);
        frame_write(fd, FRAME_RESPONSE, sid_export, "{\"n\":2}", 7);
        frame_write(fd, FRAME_RESPONSE, sid_read, "{\"error\":\"no\",\"kind\":\"path_denied\"}", 35);
        return NULL;
}

typedef struct CallArg {
        Channel *c;
        const char *op;
        ChannelReply rep;
        int r;
} CallArg;

static void *do_call(void *arg) {
        CallArg *a = arg;
        a->r = channel_call(a->c, a->op, NULL, 0, NULL, 0, 5 * USEC_PER_SEC, 64, &a->rep);
        return NULL;
}

static void test_multiplex(void **state) {
        int sp[2];
        Channel *c = NULL;
        pthread_t g, t1, t2;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        assert_int_equal(channel_new(sp[0], on_event, on_close, NULL, &c), 0);
        pthread_create(&g, NULL, guest_reverse, &sp[1]);
        CallArg a1 = { .c = c, .op = "read" }, a2 = { .c = c, .op = "export" };
        pthread_create(&t1, NULL, do_call, &a1);
        usleep(50 * 1000);
        pthread_create(&t2, NULL, do_call, &a2);
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        pthread_join(g, NULL);
        assert_int_equal(a1.r, 0);
        assert_int_equal(a2.r, 0);
        assert_string_equal(json_string_value(json_object_get(a1.rep.response, "kind")), "path_denied");
        assert_int_equal(json_integer_value(json_object_get(a2.rep.response, "n")), 2);
        assert_int_equal(a2.rep.n_data, 11);
        assert_memory_equal(a2.rep.data, "hello world", 11);
        assert_int_equal(n_events, 1);
        channel_reply_done(&a1.rep);
        channel_reply_done(&a2.rep);
        close(sp[1]);
        channel_free(c);
}

static void *guest_garbage(void *arg) {
        int fd = *(int *) arg;
        uint8_t type;
        uint32_t sid, len;
        char *p;
        assert_int_equal(read_frame(fd, &type, &sid, &p, &len), 0);
        free(p);
        /* A header claiming 2 MiB: the node must drop the channel without allocating it. */
        uint8_t h[16] = { 'N', 'U', 1, 2, 0, 0, 0, 1, 0, 0x20, 0, 0, 0, 0, 0, 0 };
        (void) !write(fd, h, sizeof h);
        return NULL;
}

static void test_oversize_closes(void **state) {
        int sp[2];
        Channel *c = NULL;
        pthread_t g;
        ChannelReply rep = {};
        close_error = 1;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        assert_int_equal(channel_new(sp[0], NULL, on_close, NULL, &c), 0);
        pthread_create(&g, NULL, guest_garbage, &sp[1]);
        assert_int_equal(channel_call(c, "read", NULL, 0, NULL, 0, 5 * USEC_PER_SEC, 0, &rep), -ECONNRESET);
        pthread_join(g, NULL);
        for (int i = 0; i < 100 && __atomic_load_n(&close_error, __ATOMIC_SEQ_CST) == 1; i++)
                usleep(10 * 1000); /* on_close runs right after waiters are released */
        assert_int_equal(close_error, -EMSGSIZE);
        close(sp[1]);
        channel_free(c);
}

static void test_timeout_sends_cancel(void **state) {
        int sp[2];
        Channel *c = NULL;
        ChannelReply rep = {};
        uint8_t type;
        uint32_t sid, sid2, len;
        char *p;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        assert_int_equal(channel_new(sp[0], NULL, NULL, NULL, &c), 0);
        assert_int_equal(channel_call(c, "run", NULL, 0, "tar", 3, 100 * 1000, 0, &rep), -ETIMEDOUT);
        assert_int_equal(read_frame(sp[1], &type, &sid, &p, &len), 0);
        assert_int_equal(type, FRAME_REQUEST);
        assert_string_equal(p, "{\"args\":{},\"op\":\"run\"}"); /* sorted keys, like the liveness ping */
        free(p);
        assert_int_equal(read_frame(sp[1], &type, &sid2, &p, &len), 0);
        assert_int_equal(type, FRAME_DATA);
        assert_int_equal(sid2, sid);
        free(p);
        assert_int_equal(read_frame(sp[1], &type, &sid2, &p, &len), 0);
        assert_int_equal(type, FRAME_END);
        free(p);
        assert_int_equal(read_frame(sp[1], &type, &sid2, &p, &len), 0);
        assert_int_equal(type, FRAME_CANCEL);
        assert_int_equal(sid2, sid);
        free(p);
        /* A late answer for the cancelled stream is dropped, the channel stays usable. */
        frame_write(sp[1], FRAME_RESPONSE, sid, "{}", 2);
        channel_shutdown(c);
        assert_int_equal(channel_call(c, "status", NULL, 0, NULL, 0, USEC_PER_SEC, 0, &rep), -ECONNRESET);
        close(sp[1]);
        channel_free(c);
}

static void *guest_export(void *arg) {
        int fd = *(int *) arg;
        uint8_t type;
        uint32_t sid, len;
        char *p;
        assert_int_equal(read_frame(fd, &type, &sid, &p, &len), 0);
        free(p);
        frame_write(fd, FRAME_RESPONSE, sid, "{\"patch_bytes\":5}", 17);
        usleep(50 * 1000);
        frame_write(fd, FRAME_DATA, sid, "diff\n", 5);
        frame_write(fd, FRAME_END, sid, NULL, 0);
        return NULL;
}

/* export: the answer comes first, the patch follows as data frames up to an end frame. */
static void test_want_end(void **state) {
        int sp[2];
        Channel *c = NULL;
        pthread_t g;
        ChannelReply rep = {};
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        assert_int_equal(channel_new(sp[0], NULL, NULL, NULL, &c), 0);
        pthread_create(&g, NULL, guest_export, &sp[1]);
        assert_int_equal(
                channel_call(c, "export", NULL, CHANNEL_WANT_END, NULL, 0, 5 * USEC_PER_SEC, 1024, &rep), 0);
        pthread_join(g, NULL);
        assert_int_equal(json_integer_value(json_object_get(rep.response, "patch_bytes")), 5);
        assert_int_equal(rep.n_data, 5);
        assert_memory_equal(rep.data, "diff\n", 5);
        channel_reply_done(&rep);
        close(sp[1]);
        channel_free(c);
}

/* Liveness: a guest that answers pings stays alive past several bounds; one that stops
 * reading (a stopped VM) is reported dead once, and release frees its fd and threads. */
static int n_dead;
static void on_dead(void *ud, usec_t silent) {
        __atomic_add_fetch(&n_dead, 1, __ATOMIC_SEQ_CST);
}

static void *guest_pong(void *arg) {
        int fd = *(int *) arg;
        uint32_t sid, len;
        uint8_t type;
        char *p;
        while (read_frame(fd, &type, &sid, &p, &len) == 0) {
                if (type == FRAME_REQUEST && strstr(p, "\"ping\""))
                        frame_write(fd, FRAME_RESPONSE, sid, "{\"pong\":true}", 13);
                free(p);
        }
        return NULL;
}

static void test_liveness(void **state) {
        int sp[2];
        Channel *c = NULL;
        pthread_t t;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        assert_int_equal(channel_new(sp[0], on_event, on_close, NULL, &c), 0);
        pthread_create(&t, NULL, guest_pong, &sp[1]);
        n_dead = 0;
        assert_int_equal(channel_liveness_start(c, 3 * USEC_PER_SEC, on_dead), 0);
        usleep(6 * 1000 * 1000); /* 2 bounds: alive only because pings are answered */
        assert_int_equal(__atomic_load_n(&n_dead, __ATOMIC_SEQ_CST), 0);
        channel_release(c);
        pthread_join(t, NULL); /* the guest saw EOF: the fd is closed */
        c = channel_free(c);
        close(sp[1]);

        /* a guest that reads nothing and answers nothing */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        assert_int_equal(channel_new(sp[0], on_event, on_close, NULL, &c), 0);
        assert_int_equal(channel_liveness_start(c, 300 * USEC_PER_MSEC, on_dead), 0);
        for (int i = 0; i < 200 && __atomic_load_n(&n_dead, __ATOMIC_SEQ_CST) == 0; i++)
                usleep(50 * 1000);
        assert_int_equal(__atomic_load_n(&n_dead, __ATOMIC_SEQ_CST), 1);
        /* a call on it times out on its own timeout, even though the cancel cannot be delivered */
        ChannelReply rep = {};
        assert_int_equal(channel_call(c, "run", NULL, 0, NULL, 0, 200 * USEC_PER_MSEC, 0, &rep), -ETIMEDOUT);
        channel_release(c);
        assert_int_equal(channel_call(c, "run", NULL, 0, NULL, 0, USEC_PER_SEC, 0, &rep), -ECONNRESET);
        c = channel_free(c);
        close(sp[1]);
}

/* Guest: answer every request with {} until the peer goes away. */
static void *guest_echo(void *arg) {
        int fd = *(int *) arg;
        for (;;) {
                uint32_t sid, len;
                uint8_t type;
                char *p = NULL;
                if (read_frame(fd, &type, &sid, &p, &len) < 0) {
                        free(p);
                        return NULL;
                }
                free(p);
                if (type == FRAME_REQUEST)
                        frame_write(fd, FRAME_RESPONSE, sid, "{}", 2);
        }
}

/* A snapshot's hold: refused with a call in flight, new calls wait until released. */
static void test_hold(void **state) {
        int sp[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        Channel *c = NULL;
        assert_int_equal(channel_new(sp[0], on_event, on_close, NULL, &c), 0);

        /* A call whose answer has not come: hold refused. */
        uint32_t stream;
        assert_int_equal(channel_begin(c, "slow", NULL, 0, &stream), 0);
        assert_int_equal(channel_hold(c), -EBUSY);
        uint32_t sid, len;
        uint8_t type;
        char *p = NULL;
        assert_int_equal(read_frame(sp[1], &type, &sid, &p, &len), 0);
        free(p);
        frame_write(sp[1], FRAME_RESPONSE, sid, "{}", 2);
        ChannelReply rep = {};
        assert_int_equal(channel_wait(c, stream, 5 * USEC_PER_SEC, 0, NULL, NULL, &rep), 0);
        channel_reply_done(&rep);

        pthread_t g;
        assert_int_equal(pthread_create(&g, NULL, guest_echo, &sp[1]), 0);
        assert_int_equal(channel_hold(c), 0);
        assert_int_equal(channel_hold(c), -EALREADY);
        CallArg a = { .c = c, .op = "status" };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, do_call, &a), 0);
        usleep(200 * 1000);
        /* Still held: the call has not been sent, so it has no answer yet. */
        assert_null(a.rep.response);
        assert_int_equal(a.r, 0);
        channel_unhold(c);
        pthread_join(t, NULL);
        assert_int_equal(a.r, 0);
        assert_non_null(a.rep.response);
        channel_reply_done(&a.rep);

        c = channel_free(c);
        shutdown(sp[1], SHUT_RDWR);
        pthread_join(g, NULL);
        safe_close(sp[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hold),
                cmocka_unit_test(test_multiplex),
                cmocka_unit_test(test_oversize_closes),
                cmocka_unit_test(test_timeout_sends_cancel),
                cmocka_unit_test(test_want_end),
                cmocka_unit_test(test_liveness),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
