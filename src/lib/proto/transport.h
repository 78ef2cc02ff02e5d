/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Byte-stream transports for the channel, behind one small ops table: a character device
 * (virtio-serial port), an AF_VSOCK listening port, a unix socket (listen, one peer at a time),
 * or an inherited fd. Every transport ends up as one non-blocking, close-on-exec connection fd.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "macro.h"

typedef enum TransportKind {
        TRANSPORT_CHARDEV, /* path of a virtio-serial port; "connected" as soon as it is open */
        TRANSPORT_VSOCK,   /* listen on VMADDR_CID_ANY:port, accept one peer */
        TRANSPORT_UNIX,    /* listen on a path (created 0600), accept one peer */
        TRANSPORT_FD,      /* an inherited, already connected fd */
        _TRANSPORT_KIND_MAX,
        _TRANSPORT_KIND_INVALID = -EINVAL,
} TransportKind;

typedef struct Transport Transport;

typedef struct TransportOps {
        /* Prepare: open the device, or bind+listen. Returns 0 or -errno. */
        int (*setup)(Transport *t);
        /* Listening fd to poll for a peer, or -EBADF for transports without a listener. */
        int (*listen_fd)(const Transport *t);
        /* Return a connected non-blocking CLOEXEC fd (accept, reopen, or the inherited one).
         * -EAGAIN if no peer is pending yet. The caller owns the fd. */
        int (*connect)(Transport *t);
        void (*done)(Transport *t);
} TransportOps;

struct Transport {
        TransportKind kind;
        const TransportOps *ops;
        char *path;    /* chardev / unix path (owned) */
        uint32_t port; /* vsock port */
        int fd;        /* listening fd, or the inherited fd until handed out */
        bool unlink_on_done;
};

/* Create a transport. Arguments: kind; path (CHARDEV, UNIX), port (VSOCK), fd (FD; consumed).
 * Nothing is opened until transport_setup(). */
int transport_new(TransportKind kind, const char *path, uint32_t port, int fd, Transport **ret);
Transport *transport_free(Transport *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Transport *, transport_free);

static inline int transport_setup(Transport *t) {
        return t->ops->setup(t);
}
static inline int transport_listen_fd(const Transport *t) {
        return t->ops->listen_fd(t);
}
static inline int transport_connect(Transport *t) {
        return t->ops->connect(t);
}

/* Connect to a unix socket path as a client (node side, tests). Returns a blocking CLOEXEC fd. */
int transport_unix_connect(const char *path);

struct sockaddr_vm;
/* True when an accepted vsock peer address is the host (VMADDR_CID_HOST): the only peer the
 * vsock transport accepts. */
bool transport_vsock_peer_allowed(const struct sockaddr_vm *sa, socklen_t len);
