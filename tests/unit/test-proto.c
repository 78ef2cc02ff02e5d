/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for src/lib/proto: header codec, incremental decoder (split input, caps, garbage,
 * resync, unknown types), output queue, and request parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/vm_sockets.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "frame.h"
#include "message.h"
#include "transport.h"

static void test_header_roundtrip(void **state) {
        uint8_t b[PROTO_HEADER_SIZE];
        FrameHeader h;
        assert_int_equal(frame_header_encode(b, FRAME_EVENT, 0x01020304, 77), 0);
        assert_int_equal(b[0], 'N');
        assert_int_equal(b[1], 'U');
        assert_int_equal(b[2], 1);
        assert_int_equal(b[3], 5);
        assert_int_equal(b[4], 1);
        assert_int_equal(b[7], 4);
        assert_int_equal(b[11], 77);
        assert_int_equal(frame_header_decode(b, &h), 0);
        assert_int_equal(h.type, FRAME_EVENT);
        assert_int_equal(h.stream_id, 0x01020304);
        assert_int_equal(h.length, 77);
        assert_int_equal(frame_header_encode(b, FRAME_DATA, 1, PROTO_MAX_PAYLOAD + 1), -EMSGSIZE);
        assert_int_equal(frame_header_encode(b, 0, 1, 1), -EINVAL);
        assert_int_equal(frame_header_encode(b, 8, 1, 1), -EINVAL);
}

static void test_header_rejects(void **state) {
        uint8_t b[PROTO_HEADER_SIZE];
        FrameHeader h;
        assert_int_equal(frame_header_encode(b, FRAME_REQUEST, 1, 0), 0);
        b[0] = 'X';
        assert_int_equal(frame_header_decode(b, &h), -EBADMSG);
        assert_int_equal(frame_header_encode(b, FRAME_REQUEST, 1, 0), 0);
        b[2] = 2;
        assert_int_equal(frame_header_decode(b, &h), -EBADMSG);
        assert_int_equal(frame_header_encode(b, FRAME_REQUEST, 1, 0), 0);
        b[15] = 1;
        assert_int_equal(frame_header_decode(b, &h), -EBADMSG);
        assert_int_equal(frame_header_encode(b, FRAME_REQUEST, 1, 0), 0);
        b[3] = 99;
        assert_int_equal(frame_header_decode(b, &h), -EPROTONOSUPPORT);
        assert_int_equal(frame_header_encode(b, FRAME_REQUEST, 3, 0), 0);
        b[8] = 0xff; /* length ~4 GiB */
        assert_int_equal(frame_header_decode(b, &h), -EMSGSIZE);
        assert_int_equal(h.stream_id, 3);
}

static void test_decoder_byte_by_byte(void **state) {
        uint8_t *b;
        size_t n;
        FrameDecoder d;
        Frame f = FRAME_NULL;
        int got = 0;

        assert_int_equal(frame_encode(FRAME_REQUEST, 7, "{\"op\":\"status\"}", 15, &b, &n), 0);
        frame_decoder_init(&d);
        for (size_t i = 0; i < n; i++) {
                size_t used;
                int r = frame_decoder_feed(&d, b + i, 1, &used, &f, NULL);
                assert_true(r >= 0);
                assert_int_equal(used, 1);
                if (r == 1) {
                        assert_int_equal(i, n - 1);
                        got++;
                }
        }
        assert_int_equal(got, 1);
        assert_int_equal(f.type, FRAME_REQUEST);
        assert_int_equal(f.stream_id, 7);
        assert_int_equal(f.length, 15);
        assert_string_equal((char *) f.payload, "{\"op\":\"status\"}");
        frame_done(&f);
        frame_decoder_done(&d);
        free(b);
}

static void test_decoder_many_in_one_buffer(void **state) {
        FrameQueue q;
        FrameDecoder d;
        frame_queue_init(&q, 1 << 20);
        assert_int_equal(frame_queue_push(&q, FRAME_DATA, 1, "abc", 3), 0);
        assert_int_equal(frame_queue_push(&q, FRAME_END, 1, NULL, 0), 0);
        assert_int_equal(frame_queue_push(&q, FRAME_CANCEL, 3, NULL, 0), 0);
        assert_int_equal(frame_queue_pending(&q), 3 * 16 + 3);

        frame_decoder_init(&d);
        const uint8_t *p = q.buf;
        size_t left = frame_queue_pending(&q), used;
        Frame f = FRAME_NULL;
        assert_int_equal(frame_decoder_feed(&d, p, left, &used, &f, NULL), 1);
        assert_int_equal(f.type, FRAME_DATA);
        assert_memory_equal(f.payload, "abc", 3);
        frame_done(&f);
        p += used, left -= used;
        assert_int_equal(frame_decoder_feed(&d, p, left, &used, &f, NULL), 1);
        assert_int_equal(f.type, FRAME_END);
        assert_int_equal(f.length, 0);
        assert_null(f.payload);
        p += used, left -= used;
        assert_int_equal(frame_decoder_feed(&d, p, left, &used, &f, NULL), 1);
        assert_int_equal(f.type, FRAME_CANCEL);
        assert_int_equal(f.stream_id, 3);
        p += used, left -= used;
        assert_int_equal(left, 0);
        frame_decoder_done(&d);
        frame_queue_done(&q);
}

static void test_decoder_oversize_skipped_without_alloc(void **state) {
        uint8_t hdr[PROTO_HEADER_SIZE];
        FrameDecoder d;
        Frame f = FRAME_NULL;
        size_t used;
        uint32_t sid;

        /* Header announcing 1 MiB + 1: rejected before any allocation; payload skipped. */
        assert_int_equal(frame_header_encode(hdr, FRAME_DATA, 9, 0), 0);
        uint32_t big = PROTO_MAX_PAYLOAD + 1;
        hdr[8] = (uint8_t) (big >> 24), hdr[9] = (uint8_t) (big >> 16), hdr[10] = (uint8_t) (big >> 8),
        hdr[11] = (uint8_t) big;
        frame_decoder_init(&d);
        assert_int_equal(frame_decoder_feed(&d, hdr, sizeof hdr, &used, &f, &sid), -EMSGSIZE);
        assert_int_equal(sid, 9);
        assert_null(d.payload);
        assert_int_equal(d.skip, big);
        /* Feed the skipped bytes then a good frame: it decodes. */
        uint8_t *zeros = xcalloc(1, big);
        assert_int_equal(frame_decoder_feed(&d, zeros, big, &used, &f, NULL), 0);
        assert_int_equal(used, big);
        free(zeros);
        uint8_t *b;
        size_t n;
        assert_int_equal(frame_encode(FRAME_EVENT, 2, "{}", 2, &b, &n), 0);
        assert_int_equal(frame_decoder_feed(&d, b, n, &used, &f, NULL), 1);
        assert_int_equal(f.type, FRAME_EVENT);
        assert_int_equal(d.n_errors, 0);
        frame_done(&f);
        free(b);
        frame_decoder_done(&d);
}

static void test_decoder_exact_cap_ok(void **state) {
        uint8_t *b;
        size_t n, used;
        FrameDecoder d;
        Frame f = FRAME_NULL;
        uint8_t *payload = xcalloc(1, PROTO_MAX_PAYLOAD);
        assert_int_equal(frame_encode(FRAME_DATA, 1, payload, PROTO_MAX_PAYLOAD + 1, &b, &n), -EMSGSIZE);
        assert_int_equal(frame_encode(FRAME_DATA, 1, payload, PROTO_MAX_PAYLOAD, &b, &n), 0);
        frame_decoder_init(&d);
        assert_int_equal(frame_decoder_feed(&d, b, n, &used, &f, NULL), 1);
        assert_int_equal(f.length, PROTO_MAX_PAYLOAD);
        frame_done(&f);
        frame_decoder_done(&d);
        free(b);
        free(payload);
}

static void test_decoder_garbage_then_resync(void **state) {
        FrameDecoder d;
        Frame f = FRAME_NULL;
        uint8_t buf[64 + 32];
        size_t used, n;
        uint8_t *b;
        int errors = 0, frames = 0;

        memset(buf, 'N', 64); /* looks like magic, never a valid header */
        assert_int_equal(frame_encode(FRAME_REQUEST, 5, "{}", 2, &b, &n), 0);
        memcpy(buf + 64, b, n);
        frame_decoder_init(&d);
        const uint8_t *p = buf;
        size_t left = 64 + n;
        while (left > 0) {
                int r = frame_decoder_feed(&d, p, left, &used, &f, NULL);
                if (r < 0) {
                        assert_int_equal(r, -EBADMSG);
                        errors++;
                } else if (r == 1) {
                        frames++;
                        assert_int_equal(f.stream_id, 5);
                        frame_done(&f);
                }
                p += used, left -= used;
                if (r == 0)
                        break;
        }
        assert_true(errors > 0);
        assert_int_equal(frames, 1);
        assert_int_equal(d.n_errors, 0);
        frame_decoder_done(&d);
        free(b);
}

static void test_decoder_drop_after_repeated_garbage(void **state) {
        FrameDecoder d;
        Frame f = FRAME_NULL;
        size_t used;
        uint8_t junk[PROTO_HEADER_SIZE];
        frame_decoder_init(&d);
        for (unsigned i = 0; i < PROTO_MAX_CONSECUTIVE_ERRORS; i++) {
                assert_int_equal(frame_header_encode(junk, FRAME_REQUEST, 1, 0), 0);
                junk[3] = 200; /* unknown type, well delimited */
                assert_int_equal(frame_decoder_feed(&d, junk, sizeof junk, &used, &f, NULL), -EPROTONOSUPPORT);
        }
        assert_true(frame_decoder_should_drop(&d));
        frame_decoder_done(&d);

        /* Pure noise with no magic byte at all also accumulates errors. */
        frame_decoder_init(&d);
        uint8_t *noise = xmalloc(PROTO_RESYNC_ERROR_BYTES * (PROTO_MAX_CONSECUTIVE_ERRORS + 2));
        memset(noise, 'x', PROTO_RESYNC_ERROR_BYTES * (PROTO_MAX_CONSECUTIVE_ERRORS + 2));
        const uint8_t *p = noise;
        size_t left = PROTO_RESYNC_ERROR_BYTES * (PROTO_MAX_CONSECUTIVE_ERRORS + 2);
        while (left > 0 && !frame_decoder_should_drop(&d)) {
                (void) frame_decoder_feed(&d, p, left, &used, &f, NULL);
                p += used, left -= used;
        }
        assert_true(frame_decoder_should_drop(&d));
        free(noise);
        frame_decoder_done(&d);
}

static void test_queue_cap_and_flush(void **state) {
        FrameQueue q;
        int sv[2];
        frame_queue_init(&q, 100);
        assert_int_equal(frame_queue_push(&q, FRAME_DATA, 1, "0123456789", 10), 0);
        char big[90] = {};
        assert_int_equal(frame_queue_push(&q, FRAME_DATA, 1, big, sizeof big), -ENOBUFS);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(frame_queue_flush(&q, sv[0]), 0);
        assert_int_equal(frame_queue_pending(&q), 0);
        uint8_t in[26];
        assert_int_equal(loop_read_exact(sv[1], in, sizeof in), 0);
        assert_memory_equal(in + 16, "0123456789", 10);
        close(sv[0]);
        close(sv[1]);
        frame_queue_done(&q);
}

static void test_request_parse(void **state) {
        json_t *j;
        char *err = NULL;
        const char *op;
        json_t *args;

        assert_int_equal(
                proto_json_parse(
                        "{\"op\":\"read\",\"args\":{\"path\":\"a\"}}",
                        strlen("{\"op\":\"read\",\"args\":{\"path\":\"a\"}}"),
                        &j,
                        &err),
                0);
        assert_int_equal(proto_request_parse(j, &op, &args, &err), 0);
        assert_string_equal(op, "read");
        assert_string_equal(json_string_value(json_object_get(args, "path")), "a");
        json_decref(j);

        assert_int_equal(
                proto_json_parse("{\"op\":\"a\",\"op\":\"b\"}", strlen("{\"op\":\"a\",\"op\":\"b\"}"), &j, &err),
                -EBADMSG);
        assert_non_null(err);
        free(err);
        err = NULL;
        assert_int_equal(proto_json_parse("[1]", strlen("[1]"), &j, &err), -EBADMSG);
        free(err);
        err = NULL;
        assert_int_equal(proto_json_parse("{\"op\":\"READ\"}", strlen("{\"op\":\"READ\"}"), &j, &err), 0);
        assert_int_equal(proto_request_parse(j, &op, &args, &err), -EINVAL);
        free(err);
        err = NULL;
        json_decref(j);
        assert_int_equal(
                proto_json_parse("{\"op\":\"read\",\"x\":1}", strlen("{\"op\":\"read\",\"x\":1}"), &j, &err),
                0);
        assert_int_equal(proto_request_parse(j, &op, &args, &err), -EINVAL);
        assert_non_null(strstr(err, "unknown key"));
        free(err);
        json_decref(j);
}

static void test_error_kinds(void **state) {
        assert_string_equal(error_kind_to_string(ERROR_KIND_BUDGET_EXHAUSTED), "budget_exhausted");
        assert_int_equal(error_kind_from_string("sandbox_escape"), ERROR_KIND_SANDBOX_ESCAPE);
        assert_int_equal(error_kind_from_string("nope"), -EINVAL);
        assert_int_equal(error_kind_http_status(ERROR_KIND_BUDGET_EXHAUSTED), 402);
        assert_int_equal(error_kind_http_status(ERROR_KIND_PATH_DENIED), 403);
        json_t *e = proto_error_new(ERROR_KIND_NOT_FOUND, "file '%s' not found", "x");
        assert_string_equal(json_string_value(json_object_get(e, "kind")), "not_found");
        json_decref(e);
}

static void test_vsock_peer_only_host(void **state) {
        struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = 1234 };
        assert_true(transport_vsock_peer_allowed(&sa, sizeof(sa)));
        assert_false(transport_vsock_peer_allowed(&sa, sizeof(sa) - 1));
        sa.svm_cid = 1; /* VMADDR_CID_LOCAL: a process in this guest over loopback */
        assert_false(transport_vsock_peer_allowed(&sa, sizeof(sa)));
        sa.svm_cid = 3; /* another guest */
        assert_false(transport_vsock_peer_allowed(&sa, sizeof(sa)));
        sa.svm_cid = VMADDR_CID_ANY;
        assert_false(transport_vsock_peer_allowed(&sa, sizeof(sa)));
        sa.svm_cid = VMADDR_CID_HOST;
        sa.svm_family = AF_UNIX;
        assert_false(transport_vsock_peer_allowed(&sa, sizeof(sa)));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_header_roundtrip),
                cmocka_unit_test(test_header_rejects),
                cmocka_unit_test(test_decoder_byte_by_byte),
                cmocka_unit_test(test_decoder_many_in_one_buffer),
                cmocka_unit_test(test_decoder_oversize_skipped_without_alloc),
                cmocka_unit_test(test_decoder_exact_cap_ok),
                cmocka_unit_test(test_decoder_garbage_then_resync),
                cmocka_unit_test(test_decoder_drop_after_repeated_garbage),
                cmocka_unit_test(test_queue_cap_and_flush),
                cmocka_unit_test(test_request_parse),
                cmocka_unit_test(test_error_kinds),
                cmocka_unit_test(test_vsock_peer_only_host),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
