/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Node side of the node↔guest channel (docs/channel.md): one byte stream
 * per pod, framed, multiplexed by stream id (the node uses odd ids). A reader thread owns the
 * receive side; callers block on their own stream. Everything read from the guest is untrusted:
 * frames are length-checked before allocation and a malformed frame closes the channel.
 */
#pragma once
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "frame.h"
#include "time-util.h"

typedef struct Channel Channel;

#define CHANNEL_PAYLOAD_MAX PROTO_MAX_PAYLOAD

typedef struct ChannelReply {
        json_t *response;    /* the guest's JSON answer (result or {"error","kind"}); owned */
        char *data;          /* data frames collected for the stream (NUL-terminated); owned */
        size_t n_data;       /* bytes in data */
        bool data_truncated; /* more than max_data bytes arrived; the rest was dropped */
} ChannelReply;

void channel_reply_done(ChannelReply *r);

/* Called from the reader thread for each event frame (ownership of ev stays with the caller). */
typedef void (*ChannelEventFn)(void *userdata, json_t *ev);
/* Called from the reader thread once, when the channel ends (error is 0 on orderly EOF). */
typedef void (*ChannelCloseFn)(void *userdata, int error);
/* Called once from the liveness thread when nothing came from the guest for the bound. */
typedef void (*ChannelDeadFn)(void *userdata, usec_t silent);
/* Streaming sink for data frames of one call; return <0 to stop delivery. */
typedef int (*ChannelDataFn)(void *userdata, const void *p, size_t n);

/* Take over fd (consumed) and start the reader thread. */
int channel_new(int fd, ChannelEventFn on_event, ChannelCloseFn on_close, void *userdata, Channel **ret);
/* Shut the stream down, fail every waiter with -ECONNRESET, join the reader, free. NULL-safe. */
Channel *channel_free(Channel *c);

/* Flags of a call. */
#define CHANNEL_WANT_END                                                    \
        (1u << 0) /* the answer is followed by data frames and an end frame \
                   * (export): wait for the end unless the answer is an error */

/* Bytes of the request frame channel_begin would send for op and args (SIZE_MAX when args
 * cannot be encoded); more than CHANNEL_PAYLOAD_MAX is what makes channel_begin fail -E2BIG. */
size_t channel_request_size(const char *op, const json_t *args);
/* Start a request: sends {"op": op, "args": args} on a fresh odd stream id. */
int channel_begin(Channel *c, const char *op, json_t *args, unsigned flags, uint32_t *ret_stream);
/* Send bytes of an upload on the stream as data frames (split at the payload cap). */
int channel_send_data(Channel *c, uint32_t stream, const void *p, size_t n);
int channel_send_end(Channel *c, uint32_t stream);
int channel_send_cancel(Channel *c, uint32_t stream);
/* Wait for the response of stream. Data frames go to on_data if set, else are collected up to
 * max_data bytes. Returns 0 and fills *ret; -ETIMEDOUT (a cancel frame is sent), -ECONNRESET
 * when the channel closed. */
int channel_wait(
        Channel *c,
        uint32_t stream,
        usec_t timeout,
        size_t max_data,
        ChannelDataFn on_data,
        void *userdata,
        ChannelReply *ret);
/* begin + wait, with an optional upload (data frames then end-of-stream; once the call is
 * answered, which the guest does early only to refuse it, no more data frames are sent). */
int channel_call(
        Channel *c,
        const char *op,
        json_t *args,
        unsigned flags,
        const void *upload,
        size_t n_upload,
        usec_t timeout,
        size_t max_data,
        ChannelReply *ret);
/*
 * channel_liveness_start: watch the guest. A thread pings it ({"op":"ping"}, answered by the
 * proxy from its channel loop, outside its tool work) after a third of `bound` without any
 * frame from it, and calls on_dead(userdata, silent) once when nothing arrived for `bound`
 * (a frame other than a ping that the guest's socket accepted also counts as a sign of life,
 * so a long upload to a live guest is not mistaken for silence). The callback must not free
 * the channel (it runs on the thread channel_free joins). Pings never block: a stopped guest
 * that reads nothing cannot hang the watcher. Returns 0, -EINVAL when already started.
 */
int channel_liveness_start(Channel *c, usec_t bound, ChannelDeadFn on_dead);
/* Quiesce the channel for a snapshot: returns -EBUSY while any call waits for its answer (a
 * call in flight), -EALREADY when already held; else 0, and from then on new calls block in
 * channel_begin and the liveness watcher neither pings nor counts silence, until
 * channel_unhold. Nothing the node sends can then reach a paused guest's saved state. */
int channel_hold(Channel *c);
void channel_unhold(Channel *c);
/* Bytes sent and received on the channel (payloads only), for metrics. */
void channel_bytes(Channel *c, uint64_t *ret_tx, uint64_t *ret_rx);
/* Shut down, join the reader and liveness threads and close the fd: what an ended pod keeps
 * must hold no descriptor or thread. The object stays valid (every call fails with
 * -ECONNRESET) until channel_free. Must not be called from an event/close callback. */
void channel_release(Channel *c);
/* Shut the stream down (both directions) so the reader ends and every waiter gets
 * -ECONNRESET; the Channel stays allocated until channel_free. Thread-safe, idempotent. */
void channel_shutdown(Channel *c);
