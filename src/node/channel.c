/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Node side of the channel: framing, a reader thread and per-stream waiters. The guest is
 * untrusted: a header is checked (magic, version, reserved, length <= 1 MiB) before the payload
 * is read, JSON is parsed strictly, and any violation closes the channel.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc-util.h"
#include "channel.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "message.h"

#define CHANNEL_PREWAIT_MAX (4u * CHANNEL_PAYLOAD_MAX)

typedef struct Pending {
        uint32_t stream;
        bool done;
        bool want_end; /* output follows the response as data frames + end (export) */
        bool end_seen;
        ChannelReply reply;
        size_t max_data;
        ChannelDataFn on_data;
        void *userdata;
        struct Pending *next;
} Pending;

struct Channel {
        int fd;
        pthread_t reader;
        bool reader_started;
        pthread_mutex_t lock;       /* protects everything below and the pending list */
        pthread_mutex_t write_lock; /* serialises frame writes */
        pthread_cond_t cond;
        bool closed;
        int close_error;
        uint32_t next_stream; /* odd */
        Pending *pending;
        uint64_t bytes_tx, bytes_rx;
        ChannelEventFn on_event;
        ChannelCloseFn on_close;
        void *userdata;
        /* Liveness (channel_liveness_start): evidence that the guest is alive is a frame read,
         * or a frame other than a ping fully written (its socket buffer drained). */
        usec_t last_progress; /* CLOCK_MONOTONIC */
        usec_t live_bound;    /* 0: not watched */
        ChannelDeadFn on_dead;
        pthread_t live_thread;
        bool live_started;
        pthread_cond_t live_cond; /* CLOCK_MONOTONIC; signalled at shutdown */
        bool held;                /* channel_hold: new calls wait, pings pause */
};

void channel_reply_done(ChannelReply *r) {
        if (!r)
                return;
        json_decref(r->response);
        free(r->data);
        *r = (ChannelReply){};
}

static int channel_write_frame(Channel *c, uint8_t type, uint32_t stream, const void *p, size_t n) {
        uint8_t hdr[PROTO_HEADER_SIZE];
        int r;

        r = frame_header_encode(hdr, (FrameType) type, stream, (uint32_t) n);
        if (r < 0)
                return r;
        pthread_mutex_lock(&c->write_lock);
        if (c->fd < 0)
                r = -ECONNRESET; /* released (channel_release) */
        else {
                r = loop_write(c->fd, hdr, sizeof hdr);
                if (r >= 0 && n > 0)
                        r = loop_write(c->fd, p, n);
        }
        pthread_mutex_unlock(&c->write_lock);
        if (r < 0)
                return r;
        pthread_mutex_lock(&c->lock);
        c->bytes_tx += n;
        c->last_progress = now_usec(CLOCK_MONOTONIC);
        pthread_mutex_unlock(&c->lock);
        return 0;
}

/* Send one small frame without ever blocking: skipped (-EAGAIN) while another writer holds the
 * stream or the socket buffer is full (a guest that does not read). Used for pings and
 * cancels, which must not hang on a stopped guest. A partial write would break the framing
 * for good, so it shuts the channel down (fail closed). */
static int channel_try_write_frame(Channel *c, uint8_t type, uint32_t stream, const void *p, size_t n) {
        uint8_t buf[PROTO_HEADER_SIZE + 256];
        int r;
        if (n > sizeof buf - PROTO_HEADER_SIZE)
                return -E2BIG;
        r = frame_header_encode(buf, (FrameType) type, stream, (uint32_t) n);
        if (r < 0)
                return r;
        if (n > 0)
                memcpy(buf + PROTO_HEADER_SIZE, p, n);
        if (pthread_mutex_trylock(&c->write_lock) != 0)
                return -EAGAIN;
        if (c->fd < 0) {
                pthread_mutex_unlock(&c->write_lock);
                return -ECONNRESET;
        }
        struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
        ssize_t k = -1;
        if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT))
                k = send(c->fd, buf, PROTO_HEADER_SIZE + n, MSG_DONTWAIT | MSG_NOSIGNAL);
        else
                errno = EAGAIN;
        r = k < 0 ? -errno : 0;
        pthread_mutex_unlock(&c->write_lock);
        if (k >= 0 && (size_t) k != PROTO_HEADER_SIZE + n) {
                channel_shutdown(c);
                return -EPIPE;
        }
        if (r == -ENOTSOCK) /* a pipe or tty transport: fall back to the blocking path */
                return channel_write_frame(c, type, stream, p, n);
        return r;
}

static Pending *pending_find(Channel *c, uint32_t stream) {
        for (Pending *p = c->pending; p; p = p->next)
                if (p->stream == stream)
                        return p;
        return NULL;
}

static void pending_unlink(Channel *c, Pending *p) {
        for (Pending **pp = &c->pending; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        return;
                }
}

static void pending_append_data(Pending *p, const void *d, size_t n) {
        if (p->on_data) {
                if (p->on_data(p->userdata, d, n) < 0)
                        p->on_data = NULL;
                return;
        }
        size_t room = p->max_data > p->reply.n_data ? p->max_data - p->reply.n_data : 0;
        size_t take = NUCLEUS_MIN(room, n);
        if (take < n)
                p->reply.data_truncated = true;
        if (take == 0)
                return;
        p->reply.data = xrealloc(p->reply.data, p->reply.n_data + take + 1);
        memcpy(p->reply.data + p->reply.n_data, d, take);
        p->reply.n_data += take;
        p->reply.data[p->reply.n_data] = 0;
}

static int channel_handle_frame(Channel *c, uint8_t type, uint32_t stream, const char *payload, size_t n) {
        _cleanup_json_ json_t *j = NULL;
        int r;

        if (type == FRAME_REQUEST || type == FRAME_RESPONSE || type == FRAME_EVENT || type == FRAME_ERROR) {
                _cleanup_free_ char *err = NULL;
                r = proto_json_parse(payload, n, &j, &err);
                if (r < 0) {
                        log_debug("channel: bad JSON in frame type %u stream %u: %s", type, stream, err ?: "?");
                        return -EBADMSG;
                }
        }

        switch (type) {
        case FRAME_EVENT:
                if (c->on_event)
                        c->on_event(c->userdata, j);
                return 0;
        case FRAME_REQUEST: {
                /* Guest-initiated requests are not part of the node's protocol: refuse them. */
                static const char refuse[] = "{\"error\":\"the node accepts no "
                                             "requests\",\"kind\":\"unsupported\"}";
                return channel_write_frame(c, FRAME_ERROR, stream, refuse, sizeof refuse - 1);
        }
        case FRAME_CANCEL:
                return 0;
        case FRAME_RESPONSE:
        case FRAME_ERROR:
        case FRAME_DATA:
        case FRAME_END:
                break;
        default:
                return -EBADMSG;
        }

        pthread_mutex_lock(&c->lock);
        Pending *p = pending_find(c, stream);
        if (!p || p->done) {
                pthread_mutex_unlock(&c->lock);
                if (type != FRAME_RESPONSE)
                        log_debug("channel: frame type %u for unknown stream %u dropped", type, stream);
                return 0;
        }
        if (type == FRAME_DATA)
                pending_append_data(p, payload, n);
        else if (type == FRAME_END) {
                p->end_seen = true;
                if (p->reply.response) {
                        p->done = true;
                        pthread_cond_broadcast(&c->cond);
                }
        } else if (type == FRAME_RESPONSE || type == FRAME_ERROR) {
                if (!json_is_object(j)) {
                        pthread_mutex_unlock(&c->lock);
                        return -EBADMSG;
                }
                bool failed = type == FRAME_ERROR || json_object_get(j, "error");
                p->reply.response = TAKE_PTR(j);
                if (!p->want_end || p->end_seen || failed) {
                        p->done = true;
                        pthread_cond_broadcast(&c->cond);
                }
        }
        pthread_mutex_unlock(&c->lock);
        return 0;
}

static void *channel_reader(void *userdata) {
        Channel *c = userdata;
        _cleanup_free_ char *payload = xmalloc(CHANNEL_PAYLOAD_MAX + 1);
        int r;

        for (;;) {
                uint8_t hdr[PROTO_HEADER_SIZE], type;
                uint32_t stream, len;
                FrameHeader fh;

                r = loop_read_exact(c->fd, hdr, sizeof hdr);
                if (r == -EIO) {
                        r = 0; /* EOF */
                        break;
                }
                if (r < 0)
                        break;
                /* The guest is untrusted and the node has no reason to resynchronise with a
                 * peer that breaks framing: any header error ends the channel (fail closed). */
                r = frame_header_decode(hdr, &fh);
                if (r < 0)
                        break;
                type = fh.type;
                stream = fh.stream_id;
                len = fh.length;
                r = loop_read_exact(c->fd, payload, len);
                if (r < 0) {
                        r = -ECONNRESET;
                        break;
                }
                payload[len] = 0;
                pthread_mutex_lock(&c->lock);
                c->bytes_rx += len;
                c->last_progress = now_usec(CLOCK_MONOTONIC);
                pthread_mutex_unlock(&c->lock);
                r = channel_handle_frame(c, type, stream, payload, len);
                if (r < 0)
                        break;
        }

        pthread_mutex_lock(&c->lock);
        bool was_closed = c->closed;
        c->closed = true;
        c->close_error = r;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
        if (!was_closed && c->on_close)
                c->on_close(c->userdata, r);
        return NULL;
}

int channel_new(int fd, ChannelEventFn on_event, ChannelCloseFn on_close, void *userdata, Channel **ret) {
        _cleanup_close_ int owned = fd;
        Channel *c = xnew0(Channel, 1);
        int r;

        c->fd = TAKE_FD(owned);
        c->next_stream = 1;
        c->on_event = on_event;
        c->on_close = on_close;
        c->userdata = userdata;
        pthread_mutex_init(&c->lock, NULL);
        pthread_mutex_init(&c->write_lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->live_cond, &ca);
        pthread_condattr_destroy(&ca);
        c->last_progress = now_usec(CLOCK_MONOTONIC);
        (void) fd_set_nonblock(c->fd, false);

        r = -pthread_create(&c->reader, NULL, channel_reader, c);
        if (r < 0) {
                c->closed = true;
                channel_free(c);
                return r;
        }
        c->reader_started = true;
        *ret = c;
        return 0;
}

void channel_release(Channel *c) {
        if (!c)
                return;
        channel_shutdown(c);
        /* Both threads end once the socket is shut down (the reader sees EOF, the watcher the
         * closed flag); join them here unless we are one of them. */
        pthread_mutex_lock(&c->write_lock);
        bool join_reader = c->reader_started && !pthread_equal(pthread_self(), c->reader);
        bool join_live = c->live_started && !pthread_equal(pthread_self(), c->live_thread);
        if (join_reader)
                c->reader_started = false;
        if (join_live)
                c->live_started = false;
        pthread_mutex_unlock(&c->write_lock);
        if (join_reader)
                (void) pthread_join(c->reader, NULL);
        if (join_live)
                (void) pthread_join(c->live_thread, NULL);
        if (!join_reader && c->reader_started)
                return; /* called from the reader itself: channel_free closes the fd */
        pthread_mutex_lock(&c->write_lock);
        pthread_mutex_lock(&c->lock);
        c->fd = safe_close(c->fd);
        pthread_mutex_unlock(&c->lock);
        pthread_mutex_unlock(&c->write_lock);
}

Channel *channel_free(Channel *c) {
        if (!c)
                return NULL;
        channel_shutdown(c);
        if (c->reader_started)
                (void) pthread_join(c->reader, NULL);
        if (c->live_started)
                (void) pthread_join(c->live_thread, NULL);
        /* Waiters hold no reference after they saw closed; the owner frees only after the
         * pod's users are gone (pod refcount), so the pending list is empty here. */
        while (c->pending) {
                Pending *p = c->pending;
                c->pending = p->next;
                channel_reply_done(&p->reply);
                free(p);
        }
        c->fd = safe_close(c->fd);
        pthread_cond_destroy(&c->live_cond);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->write_lock);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

void channel_shutdown(Channel *c) {
        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        c->closed = true;
        if (c->close_error == 0)
                c->close_error = -ECONNRESET;
        pthread_cond_broadcast(&c->cond);
        pthread_cond_broadcast(&c->live_cond);
        /* Under c->lock, not write_lock: a writer blocked on a guest that reads nothing holds
         * write_lock, and this shutdown is what unblocks it. channel_release closes the fd
         * under both locks, so the number is never a reused one here. */
        if (c->fd >= 0)
                (void) shutdown(c->fd, SHUT_RDWR);
        pthread_mutex_unlock(&c->lock);
}

/* The liveness thread: every bound/5, if nothing came from the guest for a third of the bound,
 * send a ping (the proxy answers it from its channel loop, outside its tool work); when nothing
 * came for the whole bound, report the channel dead once and stop. */
static void *channel_liveness(void *userdata) {
        Channel *c = userdata;
        static const char ping[] = "{\"args\":{},\"op\":\"ping\"}";
        usec_t tick = NUCLEUS_MAX(c->live_bound / 5, 100 * USEC_PER_MSEC);

        pthread_mutex_lock(&c->lock);
        while (!c->closed) {
                usec_t until = now_usec(CLOCK_MONOTONIC) + tick;
                struct timespec ts = { .tv_sec = (time_t) (until / USEC_PER_SEC),
                                       .tv_nsec = (long) (until % USEC_PER_SEC) * 1000 };
                while (!c->closed && pthread_cond_timedwait(&c->live_cond, &c->lock, &ts) != ETIMEDOUT)
                        ;
                if (c->closed)
                        break;
                if (c->held) {
                        /* Paused on purpose (a snapshot): not silence, and no ping may reach
                         * the saved state. */
                        c->last_progress = now_usec(CLOCK_MONOTONIC);
                        continue;
                }
                usec_t silent = now_usec(CLOCK_MONOTONIC) - c->last_progress;
                if (silent > c->live_bound) {
                        pthread_mutex_unlock(&c->lock);
                        log_debug("channel: no frame from the guest for %" PRIu64 " ms", silent / USEC_PER_MSEC);
                        if (c->on_dead)
                                c->on_dead(c->userdata, silent);
                        return NULL;
                }
                if (silent < c->live_bound / 3)
                        continue;
                uint32_t stream = c->next_stream;
                c->next_stream += 2;
                if (c->next_stream == 0 || c->next_stream > INT32_MAX)
                        c->next_stream = 1;
                pthread_mutex_unlock(&c->lock);
                /* No pending entry: the answer is dropped by the reader, its arrival is what counts. */
                (void) channel_try_write_frame(c, FRAME_REQUEST, stream, ping, sizeof ping - 1);
                pthread_mutex_lock(&c->lock);
        }
        pthread_mutex_unlock(&c->lock);
        return NULL;
}

int channel_hold(Channel *c) {
        int r = 0;
        pthread_mutex_lock(&c->lock);
        if (c->closed)
                r = -ECONNRESET;
        else if (c->held)
                r = -EALREADY;
        else if (c->pending)
                r = -EBUSY;
        else
                c->held = true;
        pthread_mutex_unlock(&c->lock);
        return r;
}

void channel_unhold(Channel *c) {
        pthread_mutex_lock(&c->lock);
        c->held = false;
        c->last_progress = now_usec(CLOCK_MONOTONIC);
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
}

int channel_liveness_start(Channel *c, usec_t bound, ChannelDeadFn on_dead) {
        int r;
        if (bound == 0 || c->live_started)
                return -EINVAL;
        pthread_mutex_lock(&c->lock);
        c->live_bound = bound;
        c->on_dead = on_dead;
        c->last_progress = now_usec(CLOCK_MONOTONIC);
        pthread_mutex_unlock(&c->lock);
        r = -pthread_create(&c->live_thread, NULL, channel_liveness, c);
        if (r < 0)
                return r;
        c->live_started = true;
        return 0;
}

size_t channel_request_size(const char *op, const json_t *args) {
        /* {"args":ARGS,"op":"OP"} as channel_begin encodes it (compact; op is [a-z_], unescaped). */
        size_t n = args ? json_dumpb(args, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS) : 2;
        if (n == 0)
                return SIZE_MAX;
        return strlen("{\"op\":\"\",\"args\":}") + strlen(op) + n;
}

int channel_begin(Channel *c, const char *op, json_t *args, unsigned flags, uint32_t *ret_stream) {
        _cleanup_json_ json_t *req = NULL;
        _cleanup_free_ char *text = NULL;
        uint32_t stream;
        int r;

        req = args ? json_pack("{s:s,s:O}", "op", op, "args", args)
                   : json_pack("{s:s,s:{}}", "op", op, "args");
        if (!req)
                return -ENOMEM;
        /* Sorted keys: a ping sent as a call (the warm pool's readiness check) is then the
         * very frame the proxy answers from its channel loop, not an unknown operation. */
        text = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
                return -ENOMEM;
        if (strlen(text) > CHANNEL_PAYLOAD_MAX)
                return -E2BIG;

        Pending *p = xnew0(Pending, 1);
        pthread_mutex_lock(&c->lock);
        while (c->held && !c->closed)
                pthread_cond_wait(&c->cond, &c->lock);
        if (c->closed) {
                pthread_mutex_unlock(&c->lock);
                free(p);
                return -ECONNRESET;
        }
        stream = c->next_stream;
        c->next_stream += 2;
        if (c->next_stream == 0 || c->next_stream > INT32_MAX)
                c->next_stream = 1;
        p->stream = stream;
        p->want_end = flags & CHANNEL_WANT_END;
        p->max_data = CHANNEL_PREWAIT_MAX; /* data that arrives before channel_wait */
        p->next = c->pending;
        c->pending = p;
        pthread_mutex_unlock(&c->lock);

        r = channel_write_frame(c, FRAME_REQUEST, stream, text, strlen(text));
        if (r < 0) {
                pthread_mutex_lock(&c->lock);
                pending_unlink(c, p);
                pthread_mutex_unlock(&c->lock);
                channel_reply_done(&p->reply);
                free(p);
                return r;
        }
        *ret_stream = stream;
        return 0;
}

/* Has the stream's call been answered already (a refusal before its upload ended)? */
static bool channel_answered(Channel *c, uint32_t stream) {
        pthread_mutex_lock(&c->lock);
        Pending *p = pending_find(c, stream);
        bool answered = !p || p->done || p->reply.response || c->closed;
        pthread_mutex_unlock(&c->lock);
        return answered;
}

int channel_send_data(Channel *c, uint32_t stream, const void *p, size_t n) {
        const uint8_t *b = p;
        while (n > 0) {
                size_t k = NUCLEUS_MIN(n, (size_t) CHANNEL_PAYLOAD_MAX);
                int r = channel_write_frame(c, FRAME_DATA, stream, b, k);
                if (r < 0)
                        return r;
                b += k;
                n -= k;
        }
        return 0;
}

int channel_send_end(Channel *c, uint32_t stream) {
        return channel_write_frame(c, FRAME_END, stream, NULL, 0);
}

int channel_send_cancel(Channel *c, uint32_t stream) {
        /* Never blocks: a call that timed out returns on time even if the guest reads nothing. */
        return channel_try_write_frame(c, FRAME_CANCEL, stream, NULL, 0);
}

int channel_wait(
        Channel *c,
        uint32_t stream,
        usec_t timeout,
        size_t max_data,
        ChannelDataFn on_data,
        void *userdata,
        ChannelReply *ret) {
        struct timespec ts;
        int r = 0;

        clock_gettime(CLOCK_REALTIME, &ts);
        if (timeout != USEC_INFINITY) {
                uint64_t ns = (uint64_t) ts.tv_nsec + (timeout % USEC_PER_SEC) * 1000u;
                ts.tv_sec += (time_t) (timeout / USEC_PER_SEC + ns / 1000000000u);
                ts.tv_nsec = (long) (ns % 1000000000u);
        }

        pthread_mutex_lock(&c->lock);
        Pending *p = pending_find(c, stream);
        if (!p) {
                pthread_mutex_unlock(&c->lock);
                return -ENOENT;
        }
        p->max_data = max_data;
        if (on_data) {
                if (p->reply.n_data > 0)
                        (void) on_data(userdata, p->reply.data, p->reply.n_data);
                p->reply.data = mfree(p->reply.data);
                p->reply.n_data = 0;
                p->on_data = on_data;
                p->userdata = userdata;
        } else if (p->reply.n_data > max_data) {
                p->reply.n_data = max_data;
                p->reply.data_truncated = true;
        }
        while (!p->done && !c->closed) {
                if (timeout == USEC_INFINITY)
                        pthread_cond_wait(&c->cond, &c->lock);
                else if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT) {
                        r = -ETIMEDOUT;
                        break;
                }
        }
        if (!p->done && r == 0)
                r = c->close_error < 0 ? -ECONNRESET : -ECONNRESET;
        pending_unlink(c, p);
        pthread_mutex_unlock(&c->lock);

        if (r == -ETIMEDOUT)
                (void) channel_send_cancel(c, stream);
        if (r < 0) {
                channel_reply_done(&p->reply);
                free(p);
                return r;
        }
        *ret = p->reply;
        free(p);
        return 0;
}

int channel_call(
        Channel *c,
        const char *op,
        json_t *args,
        unsigned flags,
        const void *upload,
        size_t n_upload,
        usec_t timeout,
        size_t max_data,
        ChannelReply *ret) {
        uint32_t stream;
        int r;

        r = channel_begin(c, op, args, flags, &stream);
        if (r < 0)
                return r;
        if (upload) {
                /* A refusal may come before the upload ended (a write's path, its size): stop
                 * sending then; the end frame tells the guest the stream is over. */
                const uint8_t *b = upload;
                size_t left = n_upload;
                r = 0;
                while (left > 0 && r >= 0 && !channel_answered(c, stream)) {
                        size_t k = NUCLEUS_MIN(left, (size_t) CHANNEL_PAYLOAD_MAX);
                        r = channel_send_data(c, stream, b, k);
                        b += k;
                        left -= k;
                }
                if (r >= 0)
                        r = channel_send_end(c, stream);
                if (r < 0) {
                        ChannelReply dummy = {};
                        (void) channel_wait(c, stream, 0, 0, NULL, NULL, &dummy);
                        channel_reply_done(&dummy);
                        return r;
                }
        }
        return channel_wait(c, stream, timeout, max_data, NULL, NULL, ret);
}

void channel_bytes(Channel *c, uint64_t *ret_tx, uint64_t *ret_rx) {
        pthread_mutex_lock(&c->lock);
        *ret_tx = c->bytes_tx;
        *ret_rx = c->bytes_rx;
        pthread_mutex_unlock(&c->lock);
}
