/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pod's DNS filter thread (net-dnsfilter.c): listens where the guest sends DNS, judges each
 * query with net-dns.c and relays only rebuilt queries to dnsmasq on the namespace's loopback.
 */
#pragma once

#include <netinet/in.h>

#include "net-dns.h"
#include "net.h"

/* Refusals reported with detail per pod; later ones only counted (the callback still runs). */
#define NET_DNS_EVENTS_DETAILED 32U

typedef struct NetDnsProxy NetDnsProxy;

/* Start the filter thread. Its sockets are created inside the namespace netns_fd (-1: the
 * calling thread's): one bound to listen (the gateway's port 53), one connected to upstream
 * (dnsmasq). Takes filter (freed by net_dns_proxy_stop, or here on failure after validation).
 * cb (may be NULL) runs on the filter's thread for every refused query.
 * Returns: 0 and *ret, or -errno. */
int net_dns_proxy_start(
        int netns_fd,
        const struct sockaddr_in *listen,
        const struct sockaddr_in *upstream,
        NetDnsFilter *filter,
        NetDnsEventCallback cb,
        void *userdata,
        NetDnsProxy **ret);

/* Stop and join the thread, close its sockets, free the filter. Accepts NULL. */
NetDnsProxy *net_dns_proxy_stop(NetDnsProxy *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(NetDnsProxy *, net_dns_proxy_stop);
