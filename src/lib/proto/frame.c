/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Frame codec for the node <-> guest channel (see frame.h, docs/channel.md). All input is
 * untrusted: lengths are validated against PROTO_MAX_PAYLOAD before anything is allocated.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "frame.h"

static const char *const frame_type_table[_FRAME_TYPE_MAX] = {
        [FRAME_REQUEST] = "request", [FRAME_RESPONSE] = "response", [FRAME_DATA] = "data",
        [FRAME_END] = "end",         [FRAME_EVENT] = "event",       [FRAME_CANCEL] = "cancel",
        [FRAME_ERROR] = "error",
};
DEFINE_STRING_TABLE_LOOKUP(frame_type, FrameType);

static bool frame_type_valid(unsigned t) {
        return t >= FRAME_REQUEST && t < _FRAME_TYPE_MAX;
}

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static uint32_t get_be32(const uint8_t *p) {
        return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) | ((uint32_t) p[2] << 8) | (uint32_t) p[3];
}

void frame_done(Frame *f) {
        if (!f)
                return;
        f->payload = mfree(f->payload);
        f->length = 0;
}

int frame_header_encode(
        uint8_t buf[static PROTO_HEADER_SIZE], FrameType type, uint32_t stream_id, uint32_t length) {
        if (!frame_type_valid((unsigned) type))
                return -EINVAL;
        if (length > PROTO_MAX_PAYLOAD)
                return -EMSGSIZE;
        buf[0] = PROTO_MAGIC_0;
        buf[1] = PROTO_MAGIC_1;
        buf[2] = PROTO_VERSION;
        buf[3] = (uint8_t) type;
        put_be32(buf + 4, stream_id);
        put_be32(buf + 8, length);
        put_be32(buf + 12, 0);
        return 0;
}

int frame_header_decode(const uint8_t buf[static PROTO_HEADER_SIZE], FrameHeader *ret) {
        if (buf[0] != PROTO_MAGIC_0 || buf[1] != PROTO_MAGIC_1 || buf[2] != PROTO_VERSION)
                return -EBADMSG;
        if (get_be32(buf + 12) != 0)
                return -EBADMSG;
        FrameHeader h = {
                .type = buf[3],
                .stream_id = get_be32(buf + 4),
                .length = get_be32(buf + 8),
        };
        *ret = h;
        if (h.length > PROTO_MAX_PAYLOAD)
                return -EMSGSIZE;
        if (!frame_type_valid(h.type))
                return -EPROTONOSUPPORT;
        return 0;
}

int frame_encode(
        FrameType type, uint32_t stream_id, const void *payload, size_t length, uint8_t **ret, size_t *ret_size) {
        uint8_t hdr[PROTO_HEADER_SIZE];
        int r;

        if (length > PROTO_MAX_PAYLOAD)
                return -EMSGSIZE;
        r = frame_header_encode(hdr, type, stream_id, (uint32_t) length);
        if (r < 0)
                return r;
        uint8_t *b = xmalloc(PROTO_HEADER_SIZE + length);
        memcpy(b, hdr, PROTO_HEADER_SIZE);
        if (length > 0)
                memcpy(b + PROTO_HEADER_SIZE, payload, length);
        *ret = b;
        *ret_size = PROTO_HEADER_SIZE + length;
        return 0;
}

int frame_write(int fd, FrameType type, uint32_t stream_id, const void *payload, size_t length) {
        _cleanup_free_ uint8_t *b = NULL;
        size_t n;
        int r;

        r = frame_encode(type, stream_id, payload, length, &b, &n);
        if (r < 0)
                return r;
        return loop_write(fd, b, n);
}

void frame_decoder_init(FrameDecoder *d) {
        *d = (FrameDecoder){};
}

void frame_decoder_done(FrameDecoder *d) {
        d->payload = mfree(d->payload);
        frame_decoder_init(d);
}

bool frame_decoder_should_drop(const FrameDecoder *d) {
        return d->n_errors >= PROTO_MAX_CONSECUTIVE_ERRORS;
}

static int decoder_error(FrameDecoder *d, int r) {
        d->n_errors++;
        d->n_errors_total++;
        return r;
}

int frame_decoder_feed(
        FrameDecoder *d,
        const void *data,
        size_t n,
        size_t *ret_consumed,
        Frame *ret_frame,
        uint32_t *reterr_stream_id) {
        const uint8_t *p = data;
        size_t i = 0;
        int r;

        if (reterr_stream_id)
                *reterr_stream_id = 0;

        while (i < n) {
                if (d->skip > 0) {
                        size_t k = (size_t) NUCLEUS_MIN((uint64_t) (n - i), d->skip);
                        d->skip -= k;
                        i += k;
                        continue;
                }

                if (d->resync) {
                        /* Drop bytes until something that can start a header ("NU\x01"). */
                        if (d->hdr_got == 0 && p[i] != PROTO_MAGIC_0) {
                                i++;
                                /* Pure garbage without any magic byte still counts. */
                                if (++d->resync_skipped % PROTO_RESYNC_ERROR_BYTES == 0) {
                                        *ret_consumed = i;
                                        return decoder_error(d, -EBADMSG);
                                }
                                continue;
                        }
                        d->resync = false;
                }

                if (d->hdr_got < PROTO_HEADER_SIZE) {
                        size_t k = NUCLEUS_MIN(n - i, PROTO_HEADER_SIZE - d->hdr_got);
                        memcpy(d->hdr + d->hdr_got, p + i, k);
                        d->hdr_got += k;
                        i += k;
                        if (d->hdr_got < PROTO_HEADER_SIZE)
                                continue;

                        r = frame_header_decode(d->hdr, &d->cur);
                        if (r == -EBADMSG) {
                                /* Lost sync: drop the first byte of this would-be header and
                                 * rescan the remaining 15 from the next magic byte. */
                                uint8_t tmp[PROTO_HEADER_SIZE];
                                size_t keep = 0;
                                for (size_t j = 1; j < PROTO_HEADER_SIZE; j++)
                                        if (keep > 0 || d->hdr[j] == PROTO_MAGIC_0)
                                                tmp[keep++] = d->hdr[j];
                                memcpy(d->hdr, tmp, keep);
                                d->hdr_got = keep;
                                d->resync = true;
                                *ret_consumed = i;
                                return decoder_error(d, -EBADMSG);
                        }
                        if (r < 0) {
                                /* Well-delimited but unacceptable: skip the payload unread. */
                                d->skip = d->cur.length;
                                d->hdr_got = 0;
                                if (reterr_stream_id)
                                        *reterr_stream_id = d->cur.stream_id;
                                *ret_consumed = i;
                                return decoder_error(d, r);
                        }
                        /* Header valid: the length is capped, now allocate. */
                        d->payload = xmalloc((size_t) d->cur.length + 1);
                        d->payload_got = 0;
                }

                size_t want = (size_t) d->cur.length - d->payload_got;
                size_t k = NUCLEUS_MIN(n - i, want);
                if (k > 0) {
                        memcpy(d->payload + d->payload_got, p + i, k);
                        d->payload_got += k;
                        i += k;
                }
                if (d->payload_got < d->cur.length)
                        continue;

                /* Complete frame. */
                d->payload[d->cur.length] = 0;
                *ret_frame = (Frame){
                        .type = (FrameType) d->cur.type,
                        .stream_id = d->cur.stream_id,
                        .length = d->cur.length,
                        .payload = d->cur.length > 0 ? TAKE_PTR(d->payload) : NULL,
                };
                d->payload = mfree(d->payload);
                d->hdr_got = 0;
                d->payload_got = 0;
                d->n_errors = 0;
                *ret_consumed = i;
                return 1;
        }

        *ret_consumed = i;
        return 0;
}

void frame_queue_init(FrameQueue *q, size_t max_bytes) {
        *q = (FrameQueue){ .max_bytes = max_bytes };
}

void frame_queue_done(FrameQueue *q) {
        free(q->buf);
        frame_queue_init(q, q->max_bytes);
}

size_t frame_queue_pending(const FrameQueue *q) {
        return q->tail - q->head;
}

int frame_queue_push(FrameQueue *q, FrameType type, uint32_t stream_id, const void *payload, size_t length) {
        uint8_t hdr[PROTO_HEADER_SIZE];
        int r;

        if (length > PROTO_MAX_PAYLOAD)
                return -EMSGSIZE;
        r = frame_header_encode(hdr, type, stream_id, (uint32_t) length);
        if (r < 0)
                return r;
        size_t need = PROTO_HEADER_SIZE + length;
        if (frame_queue_pending(q) + need > q->max_bytes)
                return -ENOBUFS;

        /* Compact, then grow. */
        if (q->head > 0) {
                memmove(q->buf, q->buf + q->head, q->tail - q->head);
                q->tail -= q->head;
                q->head = 0;
        }
        if (q->tail + need > q->allocated) {
                size_t a = NUCLEUS_MAX(q->allocated * 2, q->tail + need);
                a = NUCLEUS_MIN(a, q->max_bytes);
                a = NUCLEUS_MAX(a, q->tail + need);
                q->buf = xrealloc(q->buf, a);
                q->allocated = a;
        }
        memcpy(q->buf + q->tail, hdr, PROTO_HEADER_SIZE);
        if (length > 0)
                memcpy(q->buf + q->tail + PROTO_HEADER_SIZE, payload, length);
        q->tail += need;
        return 0;
}

int frame_queue_flush(FrameQueue *q, int fd) {
        while (q->head < q->tail) {
                ssize_t k = write(fd, q->buf + q->head, q->tail - q->head);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 1;
                        return -errno;
                }
                q->head += (size_t) k;
        }
        q->head = q->tail = 0;
        return 0;
}
