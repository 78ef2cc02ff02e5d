/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pod's DNS filter, I/O part: one thread of the node per pod. Its sockets are made inside the
 * pod's namespace (the thread enters it only to create them): a UDP socket on the gateway's
 * port 53, where the guest sends DNS, and a UDP socket connected to dnsmasq on the namespace's
 * loopback; and a TCP listener on the same address for guests that retry over TCP. Every guest
 * query goes through net_dns_filter_query (net-dns.c); only rebuilt queries reach dnsmasq (over
 * UDP), under ids of our own; an answer is relayed only for a query still pending under its id
 * and question. Bounded: 128 pending queries (the oldest is dropped), 5 s each, 64 datagrams
 * per wakeup; 8 TCP connections (a ninth is closed at once), each one message of at most
 * 512 bytes at a time, closed after 10 s without a complete message.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "log.h"
#include "net-dnsfilter.h"
#include "time-util.h"

#define PENDING_MAX 128U
#define PENDING_TIMEOUT_USEC (5 * USEC_PER_SEC)
#define BURST 64U
#define TCP_CONNS 8U
#define TCP_IDLE_USEC (10 * USEC_PER_SEC)

typedef struct Pending {
        bool used;
        uint16_t fwd_id;
        usec_t sent;
        struct sockaddr_in guest;
        int tcp;          /* index of the TCP connection to answer on, or -1 (UDP) */
        uint64_t tcp_gen; /* generation of that connection when the query came */
        NetDnsQuery q;
} Pending;

typedef struct TcpConn {
        int fd; /* -EBADF: free */
        uint64_t gen;
        usec_t since; /* start of the message being read */
        size_t got;
        uint8_t buf[2 + NET_DNS_QUERY_MAX];
} TcpConn;

struct NetDnsProxy {
        NetDnsFilter *filter;
        int guest_fd, up_fd, stop_fd, tcp_fd;
        TcpConn conns[TCP_CONNS];
        uint64_t next_gen;
        pthread_t thread;
        bool running;
        NetDnsEventCallback cb;
        void *userdata;
        Pending pending[PENDING_MAX];
        unsigned events_reported;
};

static int socket_in_netns(
        int netns_fd, int type, const struct sockaddr_in *bind_to, const struct sockaddr_in *connect_to) {
        _cleanup_close_ int self = -EBADF, fd = -EBADF;
        int r = 0;

        self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (self < 0)
                return -errno;
        if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0)
                return -errno;
        fd = socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                r = -errno;
        else if (type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int)) < 0)
                r = -errno;
        else if (bind_to && bind(fd, (const struct sockaddr *) bind_to, sizeof *bind_to) < 0)
                r = -errno;
        else if (type == SOCK_STREAM && listen(fd, (int) TCP_CONNS) < 0)
                r = -errno;
        else if (connect_to && connect(fd, (const struct sockaddr *) connect_to, sizeof *connect_to) < 0)
                r = -errno;
        /* Back to where we were, whatever happened; if that fails the thread is unusable. */
        if (netns_fd >= 0 && setns(self, CLONE_NEWNET) < 0)
                abort();
        if (r < 0)
                return r;
        return TAKE_FD(fd);
}

static void report(NetDnsProxy *d, const NetDnsQuery *q) {
        if (!d->cb || q->reason == NET_DNS_OK)
                return;
        /* Every refusal is counted; the detail (an audit event) only for the first few, so a
         * guest cannot flood the audit log through its resolver. */
        bool detail = d->events_reported < NET_DNS_EVENTS_DETAILED;
        if (detail)
                d->events_reported++;
        d->cb(d->userdata,
              net_dns_reason_to_string(q->reason),
              q->name,
              q->entry,
              net_dns_filter_wildcard_names(d->filter),
              detail);
}

static Pending *pending_slot(NetDnsProxy *d, usec_t now) {
        Pending *oldest = &d->pending[0];
        for (size_t i = 0; i < PENDING_MAX; i++) {
                Pending *p = &d->pending[i];
                if (!p->used || now - p->sent > PENDING_TIMEOUT_USEC)
                        return p;
                if (p->sent < oldest->sent)
                        oldest = p;
        }
        return oldest;
}

static uint16_t fresh_id(NetDnsProxy *d) {
        for (;;) {
                uint16_t id = (uint16_t) randombytes_uniform(65536);
                bool taken = false;
                for (size_t i = 0; i < PENDING_MAX && !taken; i++)
                        taken = d->pending[i].used && d->pending[i].fwd_id == id;
                if (!taken)
                        return id;
        }
}

static void tcp_close(TcpConn *c) {
        c->fd = safe_close(c->fd);
        c->got = 0;
}

/* Send a DNS message on a TCP connection (2-byte length first); close it if that fails. */
static void tcp_send(TcpConn *c, const uint8_t *msg, size_t n) {
        uint8_t buf[2 + NET_DNS_ANSWER_MAX];
        if (c->fd < 0 || n > NET_DNS_ANSWER_MAX)
                return;
        buf[0] = (uint8_t) (n >> 8);
        buf[1] = (uint8_t) n;
        memcpy(buf + 2, msg, n);
        /* Answers are small and the guest asked for them: a full socket buffer means a guest
         * that does not read, which loses its connection. */
        if (send(c->fd, buf, n + 2, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t) (n + 2))
                tcp_close(c);
}

/* Judge one query from the guest; answer it at once or forward it. tcp: connection index or -1. */
static void handle_query(NetDnsProxy *d, const uint8_t *in, size_t n, const struct sockaddr_in *from, int tcp) {
        uint8_t out[NET_DNS_QUERY_MAX];
        NetDnsQuery q;
        size_t out_len = 0;
        uint16_t id = fresh_id(d);
        NetDnsVerdict v = net_dns_filter_query(d->filter, in, n, id, out, &out_len, &q);
        if (v == NET_DNS_ANSWER) {
                if (tcp >= 0)
                        tcp_send(&d->conns[tcp], out, out_len);
                else
                        (void) sendto(
                                d->guest_fd,
                                out,
                                out_len,
                                MSG_DONTWAIT,
                                (const struct sockaddr *) from,
                                sizeof *from);
                report(d, &q);
        } else if (v == NET_DNS_FORWARD) {
                if (tcp >= 0)
                        /* Over TCP the answer may be as large as we relay at all. */
                        out_len = net_dns_query_set_edns(out, out_len, &q, NET_DNS_ANSWER_MAX);
                usec_t now = now_usec(CLOCK_MONOTONIC);
                Pending *p = pending_slot(d, now);
                *p = (Pending){ .used = true,
                                .fwd_id = id,
                                .sent = now,
                                .guest = from ? *from : (struct sockaddr_in){},
                                .tcp = tcp,
                                .tcp_gen = tcp >= 0 ? d->conns[tcp].gen : 0,
                                .q = q };
                if (send(d->up_fd, out, out_len, MSG_DONTWAIT) < 0)
                        p->used = false;
        } else if (tcp >= 0)
                tcp_close(&d->conns[tcp]);
}

static void from_guest(NetDnsProxy *d) {
        for (unsigned k = 0; k < BURST; k++) {
                uint8_t in[NET_DNS_QUERY_MAX + 1];
                struct sockaddr_in from = {};
                socklen_t fl = sizeof from;
                ssize_t n = recvfrom(d->guest_fd, in, sizeof in, MSG_TRUNC, (struct sockaddr *) &from, &fl);
                if (n < 0)
                        return;
                if (fl != sizeof from || from.sin_family != AF_INET)
                        continue;
                /* MSG_TRUNC: n is the real length, so an oversized datagram is judged as one. */
                handle_query(d, in, NUCLEUS_MIN((size_t) n, sizeof in), &from, -1);
        }
}

static void tcp_accept(NetDnsProxy *d) {
        for (unsigned k = 0; k < TCP_CONNS; k++) {
                int fd = accept4(d->tcp_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0)
                        return;
                TcpConn *c = NULL;
                for (size_t i = 0; i < TCP_CONNS && !c; i++)
                        if (d->conns[i].fd < 0)
                                c = &d->conns[i];
                if (!c) {
                        safe_close(fd); /* all places taken: the guest retries */
                        continue;
                }
                *c = (TcpConn){ .fd = fd, .gen = ++d->next_gen, .since = now_usec(CLOCK_MONOTONIC) };
        }
}

static void tcp_read(NetDnsProxy *d, int i) {
        TcpConn *c = &d->conns[i];
        size_t want = c->got < 2 ? 2 : 2 + (size_t) ((c->buf[0] << 8) | c->buf[1]);
        ssize_t k = recv(c->fd, c->buf + c->got, want - c->got, MSG_DONTWAIT);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (k <= 0) {
                tcp_close(c);
                return;
        }
        c->got += (size_t) k;
        if (c->got == 2) {
                size_t len = (size_t) ((c->buf[0] << 8) | c->buf[1]);
                if (len < 12 || len > NET_DNS_QUERY_MAX) {
                        tcp_close(c); /* not a query we would take: no answer over TCP */
                        return;
                }
        }
        if (c->got > 2 && c->got == 2 + (size_t) ((c->buf[0] << 8) | c->buf[1])) {
                size_t len = c->got - 2;
                c->got = 0;
                c->since = now_usec(CLOCK_MONOTONIC);
                handle_query(d, c->buf + 2, len, NULL, i);
        }
}

static void tcp_expire(NetDnsProxy *d) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        for (size_t i = 0; i < TCP_CONNS; i++)
                if (d->conns[i].fd >= 0 && now - d->conns[i].since > TCP_IDLE_USEC)
                        tcp_close(&d->conns[i]);
}

static void from_upstream(NetDnsProxy *d) {
        for (unsigned k = 0; k < BURST; k++) {
                uint8_t buf[NET_DNS_ANSWER_MAX + 1];
                ssize_t n = recv(d->up_fd, buf, sizeof buf, 0);
                if (n < 0)
                        return;
                if (n < 2 || (size_t) n > NET_DNS_ANSWER_MAX)
                        continue;
                uint16_t id = (uint16_t) ((buf[0] << 8) | buf[1]);
                usec_t now = now_usec(CLOCK_MONOTONIC);
                for (size_t i = 0; i < PENDING_MAX; i++) {
                        Pending *p = &d->pending[i];
                        if (!p->used || p->fwd_id != id || now - p->sent > PENDING_TIMEOUT_USEC)
                                continue;
                        int m = net_dns_filter_answer(&p->q, id, buf, (size_t) n);
                        if (m < 0)
                                break;
                        if (p->tcp >= 0) {
                                TcpConn *c = &d->conns[p->tcp];
                                if (c->fd >= 0 && c->gen == p->tcp_gen)
                                        tcp_send(c, buf, (size_t) m);
                        } else
                                (void) sendto(
                                        d->guest_fd,
                                        buf,
                                        (size_t) m,
                                        MSG_DONTWAIT,
                                        (struct sockaddr *) &p->guest,
                                        sizeof p->guest);
                        p->used = false;
                        break;
                }
        }
}

static void *dns_thread(void *userdata) {
        NetDnsProxy *d = userdata;
        for (;;) {
                struct pollfd pfd[4 + TCP_CONNS] = {
                        { .fd = d->stop_fd, .events = POLLIN },
                        { .fd = d->guest_fd, .events = POLLIN },
                        { .fd = d->up_fd, .events = POLLIN },
                        { .fd = d->tcp_fd, .events = POLLIN },
                };
                bool any_tcp = false;
                for (size_t i = 0; i < TCP_CONNS; i++) {
                        pfd[4 + i] = (struct pollfd){ .fd = d->conns[i].fd, .events = POLLIN };
                        any_tcp = any_tcp || d->conns[i].fd >= 0;
                }
                int r = poll(pfd, ELEMENTSOF(pfd), any_tcp ? 1000 : -1);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        log_error_errno(errno, "DNS filter: poll failed, stopping: %m");
                        return NULL;
                }
                if (pfd[0].revents)
                        return NULL;
                if (pfd[1].revents)
                        from_guest(d);
                if (pfd[2].revents)
                        from_upstream(d);
                for (size_t i = 0; i < TCP_CONNS; i++)
                        if (pfd[4 + i].revents && d->conns[i].fd >= 0 && d->conns[i].fd == pfd[4 + i].fd)
                                tcp_read(d, (int) i);
                if (pfd[3].revents)
                        tcp_accept(d);
                tcp_expire(d);
        }
}

int net_dns_proxy_start(
        int netns_fd,
        const struct sockaddr_in *listen,
        const struct sockaddr_in *upstream,
        NetDnsFilter *filter,
        NetDnsEventCallback cb,
        void *userdata,
        NetDnsProxy **ret) {
        _cleanup_(net_dns_proxy_stopp) NetDnsProxy *d = NULL;
        int r;

        if (!listen || !upstream || !filter || !ret)
                return -EINVAL;
        if (sodium_init() < 0)
                return -EIO;
        d = xnew0(NetDnsProxy, 1);
        d->filter = filter;
        d->guest_fd = d->up_fd = d->stop_fd = d->tcp_fd = -EBADF;
        for (size_t i = 0; i < TCP_CONNS; i++)
                d->conns[i].fd = -EBADF;
        d->cb = cb;
        d->userdata = userdata;
        d->guest_fd = socket_in_netns(netns_fd, SOCK_DGRAM, listen, NULL);
        if (d->guest_fd < 0)
                return d->guest_fd;
        d->tcp_fd = socket_in_netns(netns_fd, SOCK_STREAM, listen, NULL);
        if (d->tcp_fd < 0)
                return d->tcp_fd;
        d->up_fd = socket_in_netns(netns_fd, SOCK_DGRAM, NULL, upstream);
        if (d->up_fd < 0)
                return d->up_fd;
        d->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (d->stop_fd < 0)
                return -errno;
        r = pthread_create(&d->thread, NULL, dns_thread, d);
        if (r != 0)
                return -r;
        d->running = true;
        *ret = TAKE_PTR(d);
        return 0;
}

NetDnsProxy *net_dns_proxy_stop(NetDnsProxy *d) {
        if (!d)
                return NULL;
        if (d->running) {
                uint64_t one = 1;
                (void) !write(d->stop_fd, &one, sizeof one);
                (void) pthread_join(d->thread, NULL);
        }
        safe_close(d->guest_fd);
        safe_close(d->tcp_fd);
        for (size_t i = 0; i < TCP_CONNS; i++)
                safe_close(d->conns[i].fd);
        safe_close(d->up_fd);
        safe_close(d->stop_fd);
        net_dns_filter_free(d->filter);
        free(d);
        return NULL;
}
