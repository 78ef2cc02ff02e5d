/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The proxy's epoll loop and its one peer connection: read bytes, decode frames strictly,
 * answer protocol errors with error frames, drop a peer that keeps sending garbage, and
 * flush queued output as the fd allows. The peer is untrusted.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "log.h"
#include "proxy.h"

#define PROXY_OUT_QUEUE_MAX (64u * 1024u * 1024u) /* bytes queued for a slow peer */
/* Frames read ahead of the tool work in progress; beyond this the channel is not read until
 * the queue drains (backpressure on the node, nothing dropped). */
#define PROXY_DEFERRED_MAX (8u * 1024u * 1024u)

typedef struct DeferredFrame {
        struct DeferredFrame *next;
        Frame frame;
} DeferredFrame;

static void deferred_push(Proxy *p, Frame *f) {
        DeferredFrame *d = xnew0(DeferredFrame, 1);
        d->frame = *f;
        *f = FRAME_NULL;
        if (!p->deferred_tail)
                p->deferred_tail = &p->deferred;
        *p->deferred_tail = d;
        p->deferred_tail = &d->next;
        p->deferred_bytes += d->frame.length + sizeof *d;
}

static bool deferred_pop(Proxy *p, Frame *ret) {
        DeferredFrame *d = p->deferred;
        if (!d)
                return false;
        p->deferred = d->next;
        if (!p->deferred)
                p->deferred_tail = &p->deferred;
        p->deferred_bytes -= d->frame.length + sizeof *d;
        *ret = d->frame;
        free(d);
        return true;
}

static void deferred_clear(Proxy *p) {
        Frame f;
        while (deferred_pop(p, &f))
                frame_done(&f);
}

/* Handle what was deferred, in order: frames of streams already running (data, end, cancel)
 * freely, but at most one request, so the loop reads the channel again (and serves control
 * requests) between two pieces of tool work. */
static void deferred_run(Proxy *p) {
        Frame f;
        while (!p->drop_peer && p->conn_fd >= 0 && deferred_pop(p, &f)) {
                bool request = f.type == FRAME_REQUEST;
                proxy_handle_frame(p, &f);
                frame_done(&f);
                if (request)
                        break;
        }
}

int proxy_loop_add(Proxy *p, LoopSource *s, uint32_t events) {
        struct epoll_event ev = { .events = events, .data.ptr = s };
        return RET_NERRNO(epoll_ctl(p->epoll_fd, EPOLL_CTL_ADD, s->fd, &ev));
}

int proxy_loop_mod(Proxy *p, LoopSource *s, uint32_t events) {
        struct epoll_event ev = { .events = events, .data.ptr = s };
        return RET_NERRNO(epoll_ctl(p->epoll_fd, EPOLL_CTL_MOD, s->fd, &ev));
}

void proxy_loop_del(Proxy *p, LoopSource *s) {
        if (s->fd >= 0)
                (void) epoll_ctl(p->epoll_fd, EPOLL_CTL_DEL, s->fd, NULL);
}

static LoopSource conn_source;
static LoopSource listen_source;

static void conn_update_events(Proxy *p) {
        bool want = frame_queue_pending(&p->out) > 0;
        if (want == p->want_out || p->conn_fd < 0)
                return;
        p->want_out = want;
        (void) proxy_loop_mod(p, &conn_source, EPOLLIN | (want ? EPOLLOUT : 0));
}

static void conn_flush(Proxy *p) {
        if (p->conn_fd < 0)
                return;
        int r = frame_queue_flush(&p->out, p->conn_fd);
        if (r < 0 && r != -EAGAIN) {
                log_warning_errno(r, "Channel write failed, dropping peer: %m");
                p->drop_peer = true;
                return;
        }
        conn_update_events(p);
}

void proxy_send(Proxy *p, FrameType type, uint32_t stream_id, const void *buf, size_t n) {
        if (p->conn_fd < 0)
                return;
        int r = frame_queue_push(&p->out, type, stream_id, buf, n);
        if (r == -ENOBUFS) {
                /* The peer stopped reading: fail closed rather than grow without bound. */
                log_warning(
                        "Peer is not reading its channel (%zu bytes queued), dropping it",
                        frame_queue_pending(&p->out));
                p->drop_peer = true;
                return;
        }
        if (r < 0) {
                log_error_errno(r, "Cannot queue frame: %m");
                return;
        }
        conn_flush(p);
}

void proxy_keepalive(Proxy *p) {
        /* A guest-sent cancel on stream 0: the node ignores it, but every frame it reads counts
         * as evidence that the guest is alive (src/node/channel.c). */
        proxy_send(p, FRAME_CANCEL, 0, NULL, 0);
}

void proxy_send_json(Proxy *p, FrameType type, uint32_t stream_id, json_t *j) {
        _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (!s)
                oom_abort();
        size_t n = strlen(s);
        if (n > PROTO_MAX_PAYLOAD) {
                /* Never expected: ops cap their answers. Say so instead of sending a bad frame. */
                json_t *e = proto_error_new(
                        ERROR_KIND_INTERNAL, "answer of %zu bytes exceeds the frame cap", n);
                proxy_send_json(p, type, stream_id, e);
                json_decref(e);
                return;
        }
        proxy_send(p, type, stream_id, s, n);
}

static void conn_close(Proxy *p) {
        if (p->conn_fd < 0)
                return;
        /* A virtio-serial port flaps while the host side is away: keep the console quiet. */
        log_full(p->transport->kind == TRANSPORT_CHARDEV ? LOG_DEBUG : LOG_INFO, "Channel peer disconnected");
        proxy_loop_del(p, &conn_source);
        p->conn_fd = safe_close(p->conn_fd);
        conn_source.fd = -EBADF;
        frame_decoder_done(&p->decoder);
        frame_queue_done(&p->out);
        deferred_clear(p); /* requests of a peer that is gone are not run */
        p->want_out = false;
        p->drop_peer = false;
        proxy_handle_peer_gone(p);
}

static void protocol_error(Proxy *p, int r, uint32_t sid) {
        ErrorKind kind = r == -EMSGSIZE ? ERROR_KIND_TOO_LARGE : ERROR_KIND_INVALID_REQUEST;
        const char *what = r == -EMSGSIZE ? "frame payload exceeds 1 MiB"
                : r == -EPROTONOSUPPORT   ? "unknown frame type"
                                          : "malformed frame header (bad magic, version or reserved field)";
        log_debug("Protocol error from peer: %s", what);
        json_t *e = proto_error_new(kind, "channel: %s", what);
        proxy_send_json(p, FRAME_ERROR, sid, e);
        json_decref(e);
        if (frame_decoder_should_drop(&p->decoder)) {
                log_warning("Peer sent %u consecutive bad frames, dropping it", PROTO_MAX_CONSECUTIVE_ERRORS);
                p->drop_peer = true;
        }
}

static void conn_read(Proxy *p) {
        uint8_t buf[64 * 1024];
        for (int rounds = 0;
             rounds < 16 && p->conn_fd >= 0 && !p->drop_peer && p->deferred_bytes < PROXY_DEFERRED_MAX;
             rounds++) {
                ssize_t k = read(p->conn_fd, buf, sizeof buf);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return;
                        p->drop_peer = true;
                        return;
                }
                if (k == 0) {
                        p->drop_peer = true;
                        return;
                }
                size_t off = 0;
                while (off < (size_t) k && !p->drop_peer) {
                        Frame f = FRAME_NULL;
                        size_t used = 0;
                        uint32_t sid = 0;
                        int r = frame_decoder_feed(&p->decoder, buf + off, (size_t) k - off, &used, &f, &sid);
                        off += used;
                        if (r < 0)
                                protocol_error(p, r, sid);
                        else if (r == 1) {
                                if (proxy_frame_is_control(&f))
                                        proxy_handle_frame(p, &f);
                                else
                                        deferred_push(p, &f);
                                frame_done(&f);
                        } else
                                break;
                }
        }
}

static void conn_event(Proxy *p, LoopSource *s, uint32_t events) {
        if (s->fd < 0 || p->conn_fd < 0)
                return;
        if (events & EPOLLIN)
                conn_read(p);
        if (!p->drop_peer && (events & EPOLLOUT))
                conn_flush(p);
        if (!p->drop_peer && (events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN))
                p->drop_peer = true;
}

static int conn_adopt(Proxy *p, int fd) {
        p->conn_fd = fd;
        conn_source = (LoopSource){ .fd = fd, .callback = conn_event };
        frame_decoder_init(&p->decoder);
        frame_queue_init(&p->out, PROXY_OUT_QUEUE_MAX);
        p->want_out = false;
        int r = proxy_loop_add(p, &conn_source, EPOLLIN);
        if (r < 0) {
                p->conn_fd = safe_close(p->conn_fd);
                return r;
        }
        log_full(p->transport->kind == TRANSPORT_CHARDEV ? LOG_DEBUG : LOG_INFO, "Channel peer connected");
        /* Boot report on stream 0 (guest-initiated side uses even ids). */
        json_t *ev = json_pack(
                "{s:s, s:s, s:b}", "type", "boot", "component", "nucleus-tool-proxy", "configured", p->configured);
        proxy_send_json(p, FRAME_EVENT, 0, ev);
        json_decref(ev);
        return 0;
}

static void listen_event(Proxy *p, LoopSource *s, uint32_t events) {
        int fd = transport_connect(p->transport);
        if (fd < 0)
                return;
        if (p->conn_fd >= 0) {
                /* One peer at a time: refuse a second one. */
                json_t *e = proto_error_new(ERROR_KIND_CONFLICT, "channel: another peer is connected");
                (void) proto_send_json(fd, FRAME_ERROR, 0, e);
                json_decref(e);
                safe_close(fd);
                return;
        }
        (void) conn_adopt(p, fd);
}

int proxy_channel_start(Proxy *p);
int proxy_channel_start(Proxy *p) {
        int lfd = transport_listen_fd(p->transport);
        if (lfd >= 0) {
                listen_source = (LoopSource){ .fd = lfd, .callback = listen_event };
                return proxy_loop_add(p, &listen_source, EPOLLIN);
        }
        int fd = transport_connect(p->transport);
        if (fd < 0)
                return fd;
        return conn_adopt(p, fd);
}

/* After dropping a peer of a transport without a listener (char device), reopen it. */
static void conn_reconnect(Proxy *p) {
        if (transport_listen_fd(p->transport) >= 0)
                return;
        if (p->transport->kind == TRANSPORT_FD) {
                p->terminating = true; /* an inherited fd cannot come back */
                return;
        }
        /* A virtio-serial port reads EOF while the host side is away: do not spin. */
        (void) usleep(100 * 1000);
        int fd = transport_connect(p->transport);
        if (fd >= 0)
                (void) conn_adopt(p, fd);
}

int proxy_run_loop(Proxy *p);
int proxy_run_loop(Proxy *p) {
        while (!p->terminating) {
                usec_t next = proxy_jobs_next_deadline(p);
                int timeout = -1;
                if (next != USEC_INFINITY) {
                        usec_t now = now_usec(CLOCK_MONOTONIC);
                        timeout = next <= now ? 0 : usec_to_timeout_ms(next - now + 999);
                }
                if (p->deferred)
                        timeout = 0; /* tool work is waiting: look at the channel, then do it */
                struct epoll_event evs[16];
                int n = epoll_wait(p->epoll_fd, evs, ELEMENTSOF(evs), timeout);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_error_errno(errno, "epoll_wait failed: %m");
                }
                for (int i = 0; i < n; i++) {
                        LoopSource *s = evs[i].data.ptr;
                        s->callback(p, s, evs[i].events);
                }
                proxy_jobs_tick(p);
                deferred_run(p);
                /* Reading stopped at the deferred cap: the fd stays readable (level-triggered),
                 * so the next epoll_wait reports it again once the queue has room. */
                proxy_jobs_reap_graveyard(p);
                if (p->drop_peer) {
                        conn_flush(p);
                        conn_close(p);
                        conn_reconnect(p);
                }
        }
        return 0;
}
