/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Node <-> guest channel framing (docs/channel.md): a 16-byte header and a payload of at most
 * 1 MiB. The decoder is strict and incremental and distrusts every byte it is fed: the length
 * is checked against the cap before any allocation, and a peer that keeps sending garbage is
 * reported so the caller can drop it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define PROTO_MAGIC_0 ((uint8_t) 'N')
#define PROTO_MAGIC_1 ((uint8_t) 'U')
#define PROTO_VERSION ((uint8_t) 1)
#define PROTO_HEADER_SIZE 16u
#define PROTO_MAX_PAYLOAD (1024u * 1024u) /* bytes; hard cap, checked before allocation */
/* Consecutive protocol errors after which a peer should be dropped. */
#define PROTO_MAX_CONSECUTIVE_ERRORS 8u
/* While resyncing, every this many discarded bytes count as one more error. */
#define PROTO_RESYNC_ERROR_BYTES 4096u

typedef enum FrameType {
        FRAME_REQUEST = 1,  /* JSON {"op": ..., "args": {...}} */
        FRAME_RESPONSE = 2, /* JSON result or {"error","kind"} */
        FRAME_DATA = 3,     /* raw bytes of a stream */
        FRAME_END = 4,      /* end of a data stream (payload empty or JSON) */
        FRAME_EVENT = 5,    /* JSON audit/log/boot record */
        FRAME_CANCEL = 6,   /* cancel the stream's request (payload empty) */
        FRAME_ERROR = 7,    /* JSON {"error","kind"}: protocol-level error */
        _FRAME_TYPE_MAX,
        _FRAME_TYPE_INVALID = -EINVAL,
} FrameType;

const char *frame_type_to_string(FrameType t);
FrameType frame_type_from_string(const char *s);

typedef struct FrameHeader {
        uint8_t type;       /* raw type byte (may be unknown) */
        uint32_t stream_id; /* chosen by the sender: node odd, guest even; 0 = connection-level */
        uint32_t length;    /* payload bytes */
} FrameHeader;

typedef struct Frame {
        FrameType type;
        uint32_t stream_id;
        uint32_t length;  /* payload bytes (<= PROTO_MAX_PAYLOAD) */
        uint8_t *payload; /* owned; length + 1 bytes, NUL-terminated for JSON convenience; NULL if length 0 */
} Frame;

#define FRAME_NULL ((Frame){ .type = 0, .stream_id = 0, .length = 0, .payload = NULL })

/* Frees the payload and resets the frame. Accepts a zeroed frame. */
void frame_done(Frame *f);

/* Encode a header into buf. Arguments: type (a valid FrameType), stream id, payload length
 * (<= PROTO_MAX_PAYLOAD). Returns 0, or -EINVAL / -EMSGSIZE without touching buf. */
int frame_header_encode(
        uint8_t buf[static PROTO_HEADER_SIZE], FrameType type, uint32_t stream_id, uint32_t length);

/* Decode and validate a header. Returns 0; -EBADMSG for bad magic, version or non-zero reserved
 * field; -EMSGSIZE when length > PROTO_MAX_PAYLOAD; -EPROTONOSUPPORT for an unknown type. On
 * -EMSGSIZE and -EPROTONOSUPPORT *ret is filled (the frame is well-delimited and can be skipped);
 * on -EBADMSG it is not. */
int frame_header_decode(const uint8_t buf[static PROTO_HEADER_SIZE], FrameHeader *ret);

/* Encode a whole frame into a new buffer (header + payload). Returns 0 and the buffer (caller
 * frees) or -EINVAL / -EMSGSIZE. */
int frame_encode(
        FrameType type, uint32_t stream_id, const void *payload, size_t length, uint8_t **ret, size_t *ret_size);

/* Blocking write of one frame to fd (loop_write). Returns 0 or -errno. For simple users (guest
 * init, tests); the proxy and node use FrameQueue with non-blocking fds. */
int frame_write(int fd, FrameType type, uint32_t stream_id, const void *payload, size_t length);

/*
 * Incremental decoder. Feed it whatever the transport returned; it hands back one frame at a
 * time. State machine: header (16 bytes) -> payload (length bytes, allocated only after the
 * header is valid) -> header ... A bad header (magic/version/reserved) makes the decoder drop
 * one byte and scan for the next "NU\x01" (resync); an oversized or unknown-type frame is
 * skipped without allocating. Every such case is reported once as an error.
 */
typedef struct FrameDecoder {
        uint8_t hdr[PROTO_HEADER_SIZE];
        size_t hdr_got;          /* bytes of hdr filled */
        FrameHeader cur;         /* valid when hdr_got == PROTO_HEADER_SIZE */
        uint8_t *payload;        /* allocated cur.length + 1 once the header is accepted */
        size_t payload_got;      /* bytes of payload filled */
        uint64_t skip;           /* bytes still to discard (oversized/unknown frame) */
        bool resync;             /* scanning for magic after a bad header */
        uint64_t resync_skipped; /* bytes dropped while resyncing */
        unsigned n_errors;       /* consecutive errors; reset by every good frame */
        uint64_t n_errors_total; /* for statistics */
} FrameDecoder;

void frame_decoder_init(FrameDecoder *d);
void frame_decoder_done(FrameDecoder *d);

/*
 * Feed n bytes. Returns:
 *   1  a complete frame is in *ret_frame (ownership passes to the caller); *ret_consumed bytes
 *      of data were used: call again with the rest;
 *   0  every byte was consumed and no frame is complete yet;
 *  <0  a protocol error: -EBADMSG (bad header; resyncing), -EMSGSIZE (payload over the cap;
 *      being skipped), -EPROTONOSUPPORT (unknown type; being skipped). *ret_consumed says how far
 *      the decoder got; *reterr_stream_id is the offending stream id (0 if unknown). The caller
 *      should answer with an error frame, and drop the peer once
 *      frame_decoder_should_drop() says so.
 */
int frame_decoder_feed(
        FrameDecoder *d,
        const void *data,
        size_t n,
        size_t *ret_consumed,
        Frame *ret_frame,
        uint32_t *reterr_stream_id);

/* True when the peer sent PROTO_MAX_CONSECUTIVE_ERRORS errors without one good frame between. */
bool frame_decoder_should_drop(const FrameDecoder *d);

/*
 * Output queue for non-blocking fds: frames are appended whole and flushed as the fd allows.
 * The queue is bounded (max_bytes) so a peer that stops reading cannot make us grow forever.
 */
typedef struct FrameQueue {
        uint8_t *buf;
        size_t head;      /* first unsent byte */
        size_t tail;      /* end of queued bytes */
        size_t allocated; /* bytes allocated in buf */
        size_t max_bytes; /* cap on queued bytes (tail - head) */
} FrameQueue;

void frame_queue_init(FrameQueue *q, size_t max_bytes);
void frame_queue_done(FrameQueue *q);
/* Append one frame. Returns 0, -EMSGSIZE (payload over the cap), -ENOBUFS (queue full). */
int frame_queue_push(FrameQueue *q, FrameType type, uint32_t stream_id, const void *payload, size_t length);
/* Bytes waiting. */
size_t frame_queue_pending(const FrameQueue *q);
/* Write as much as possible. Returns 0 (all flushed), 1 (more pending, wait for EPOLLOUT), -errno. */
int frame_queue_flush(FrameQueue *q, int fd);
