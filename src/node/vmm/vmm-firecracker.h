/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Firecracker API request bodies and the host-side vsock handshake parser, exposed for unit
 * tests. Bodies follow Firecracker's documented API (PUT /boot-source, /drives/{id},
 * /machine-config, /vsock, /network-interfaces/{id}, /actions).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FIRECRACKER_CHANNEL_PORT 5005u /* guest AF_VSOCK port the proxy listens on */
#define FIRECRACKER_GUEST_CID 3u
#define FIRECRACKER_HANDSHAKE_MAX 64u /* "OK <u32>\n" is at most 14 bytes */

/* Each returns a malloc'd compact JSON body (caller frees). */
char *firecracker_body_boot_source(const char *kernel, const char *initrd, const char *boot_args);
char *firecracker_body_drive(const char *drive_id, const char *path, bool is_root, bool read_only);
char *firecracker_body_machine_config(unsigned vcpus, uint64_t mem_mib);
char *firecracker_body_vsock(uint32_t guest_cid, const char *uds_path);
char *firecracker_body_network(const char *iface_id, const char *tap, const char *mac);
char *firecracker_body_action(const char *action_type);

/* "CONNECT <port>\n" into buf; returns its length. */
size_t firecracker_handshake_request(char buf[static 32], uint32_t port);
/* Parse the reply of the vsock multiplexer: "OK <host port>\n". Returns 1 and the port when
 * complete and well-formed, 0 when more bytes are needed, -EPROTO when malformed (anything but
 * "OK ", digits, "\n"), -E2BIG when longer than FIRECRACKER_HANDSHAKE_MAX without a newline. */
int firecracker_handshake_parse(const char *buf, size_t n, uint32_t *ret_port);
