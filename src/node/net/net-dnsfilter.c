/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pod's DNS filter, I/O part: one thread of the node per pod. Its sockets are made inside the
 * pod's namespace (the thread enters it only to create them): a UDP socket on the gateway's
 * port 53, where the guest sends DNS, and a UDP socket connected to dnsmasq on the namespace's
 * loopback. Every guest datagram goes through net_dns_filter_query (net-dns.c); only rebuilt
 * queries reach dnsmasq, under ids of our own; an answer is relayed only for a query still
 * pending under its id and question. Bounded: 128 pending queries (the oldest is dropped), 5 s
 * each, 64 datagrams per wakeup.
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

typedef struct Pending {
        bool used;
        uint16_t fwd_id;
        usec_t sent;
        struct sockaddr_in guest;
        NetDnsQuery q;
} Pending;

struct NetDnsProxy {
        NetDnsFilter *filter;
        int guest_fd, up_fd, stop_fd;
        pthread_t thread;
        bool running;
        NetDnsEventCallback cb;
        void *userdata;
        Pending pending[PENDING_MAX];
        unsigned events_reported;
};

static int socket_in_netns(int netns_fd, const struct sockaddr_in *bind_to, const struct sockaddr_in *connect_to) {
        _cleanup_close_ int self = -EBADF, fd = -EBADF;
        int r = 0;

        self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (self < 0)
                return -errno;
        if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0)
                return -errno;
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                r = -errno;
        else if (bind_to && bind(fd, (const struct sockaddr *) bind_to, sizeof *bind_to) < 0)
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

static void from_guest(NetDnsProxy *d) {
        for (unsigned k = 0; k < BURST; k++) {
                uint8_t in[NET_DNS_QUERY_MAX + 1], out[NET_DNS_QUERY_MAX];
                struct sockaddr_in from = {};
                socklen_t fl = sizeof from;
                ssize_t n = recvfrom(d->guest_fd, in, sizeof in, MSG_TRUNC, (struct sockaddr *) &from, &fl);
                if (n < 0)
                        return;
                if (fl != sizeof from || from.sin_family != AF_INET)
                        continue;
                NetDnsQuery q;
                size_t out_len = 0;
                uint16_t id = fresh_id(d);
                /* MSG_TRUNC: n is the real length, so an oversized datagram is judged as one. */
                NetDnsVerdict v = net_dns_filter_query(
                        d->filter, in, NUCLEUS_MIN((size_t) n, sizeof in), id, out, &out_len, &q);
                if (v == NET_DNS_ANSWER) {
                        (void) sendto(d->guest_fd, out, out_len, MSG_DONTWAIT, (struct sockaddr *) &from, fl);
                        report(d, &q);
                } else if (v == NET_DNS_FORWARD) {
                        usec_t now = now_usec(CLOCK_MONOTONIC);
                        Pending *p = pending_slot(d, now);
                        *p = (Pending){ .used = true, .fwd_id = id, .sent = now, .guest = from, .q = q };
                        if (send(d->up_fd, out, out_len, MSG_DONTWAIT) < 0)
                                p->used = false;
                }
        }
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
                struct pollfd pfd[3] = {
                        { .fd = d->stop_fd, .events = POLLIN },
                        { .fd = d->guest_fd, .events = POLLIN },
                        { .fd = d->up_fd, .events = POLLIN },
                };
                int r = poll(pfd, 3, -1);
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
        d->guest_fd = d->up_fd = d->stop_fd = -EBADF;
        d->cb = cb;
        d->userdata = userdata;
        d->guest_fd = socket_in_netns(netns_fd, listen, NULL);
        if (d->guest_fd < 0)
                return d->guest_fd;
        d->up_fd = socket_in_netns(netns_fd, NULL, upstream);
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
        safe_close(d->up_fd);
        safe_close(d->stop_fd);
        net_dns_filter_free(d->filter);
        free(d);
        return NULL;
}
