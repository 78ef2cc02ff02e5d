/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel command line parsing for the guest init. The command line comes from the host and is
 * not secret, but it is still parsed strictly: a malformed nucleus.* value is an error (the
 * init then powers off) rather than being half-applied.
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INIT_CMDLINE_MAX 4096u /* bytes read from /proc/cmdline */

typedef struct InitNetConfig {
        struct in_addr addr;    /* guest address */
        unsigned prefix;        /* 1..32 */
        struct in_addr gateway; /* default route */
        struct in_addr dns;     /* single nameserver */
        char text[64];          /* "addr/prefix" for the boot report */
} InitNetConfig;

typedef struct InitCmdline {
        char *channel;       /* virtio-serial port name; owned; never NULL after parse */
        uint32_t vsock_port; /* nucleus.channel=vsock:<port> (Firecracker): > 0, else 0 */
        bool have_net;       /* nucleus.net= was given and parsed */
        InitNetConfig net;   /* valid when have_net */
        bool net_parked;     /* nucleus.net=parked: a NIC without an address (a warm pool pod;
                              * the proxy configures it from configure's network) */
        bool probe;          /* nucleus.probe=1: print the marker and power off */
} InitCmdline;

#define INIT_DEFAULT_CHANNEL "org.nucleus.channel.0"
#define INIT_NET_PARKED "parked" /* nucleus.net=parked */

void init_cmdline_done(InitCmdline *c);

/* Parse the whitespace-separated kernel command line.
 * Returns 0 and fills *ret (caller calls init_cmdline_done), or -EINVAL with a static message
 * in *reterr naming the bad parameter. Unknown parameters are ignored (they belong to the
 * kernel). A repeated nucleus.* parameter is an error. */
int init_cmdline_parse(const char *cmdline, InitCmdline *ret, const char **reterr);

/* Parse "addr/prefix,gateway,dns" (IPv4 only). Returns 0 or -EINVAL. */
int init_net_parse(const char *value, InitNetConfig *ret);

/* Collect "<module>.<param>=<value>" tokens for one module (module names compare with '-'
 * and '_' equal, as modprobe does) and return "param=value param2=value2" (malloc'd, possibly
 * empty). This mirrors what modprobe passes to finit_module for parameters on the kernel
 * command line (for example virtio_mmio.device=... that QEMU microvm adds). */
char *init_cmdline_module_params(const char *cmdline, const char *module);
