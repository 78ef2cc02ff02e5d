/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest's one NIC, configured through ioctl (no ip(8) in the image, no netlink library):
 * used by the guest init (a cold pod, address from nucleus.net=) and by the tool proxy (a pod
 * claimed from the warm pool or restored from a snapshot, address from configure/reconfigure).
 * Inputs are parsed here or were validated by the caller; run as root in the guest.
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include "time-util.h"

#define NETIF_RESOLV_DIR "/run/nucleus-net"
#define NETIF_RESOLV_CONF NETIF_RESOLV_DIR "/resolv.conf" /* /etc/resolv.conf in the image links here */

typedef struct NetifAddress {
        struct in_addr addr;    /* the guest's address */
        unsigned prefix;        /* 1..32 */
        struct in_addr gateway; /* default route */
        struct in_addr dns;     /* the one nameserver */
} NetifAddress;

/* Parse address "A.B.C.D/P" (P 1..32), gateway and dns (IPv4 literals). Returns 0 or -EINVAL. */
int netif_address_parse(const char *address, const char *gateway, const char *dns, NetifAddress *ret);

/* Bring lo up (the kernel adds 127.0.0.1/8 itself). Returns 0 or -errno. */
int netif_loopback_up(void);

/* Wait up to timeout for the first non-loopback interface; its name goes to ifname (size >=
 * IFNAMSIZ). Returns 0 or -ETIMEDOUT. */
int netif_wait_first(char *ifname, size_t size, usec_t timeout);

/* Give ifname exactly address a: the link goes down first (which drops every route and
 * neighbour entry of an earlier address), the address and netmask replace the old ones, the
 * link comes up and the default route goes via a->gateway. Returns 0 or -errno. */
int netif_configure(const char *ifname, const NetifAddress *a);

/* 1 when ifname is up with a->addr/a->prefix as its address, 0 when not, -errno when it cannot
 * tell. */
int netif_has_address(const char *ifname, const NetifAddress *a);

/* Write "nameserver DNS" to NETIF_RESOLV_CONF in place (a bind mount of it stays valid) and,
 * when /etc/resolv.conf is a plain file of its own (an imported image), bind it over that.
 * Returns 0 or -errno. */
int netif_write_resolv_conf(struct in_addr dns);

/* What configure and reconfigure do: find the NIC (waiting up to timeout), and unless it
 * already has a (the init configured it from the kernel command line), configure it and the
 * resolver. ret_changed (may be NULL): whether anything was changed. Returns 0 or -errno. */
int netif_apply(const NetifAddress *a, usec_t timeout, bool *ret_changed);
