/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Channel transports (see transport.h). Each backend only produces a connected fd; framing and
 * everything else is transport-independent. Paths come from our own command line (trusted);
 * the peer is not.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "transport.h"

static int listen_fd_generic(const Transport *t) {
        return t->fd;
}

static int no_listen_fd(const Transport *t) {
        return -EBADF;
}

static int accept_generic(Transport *t) {
        int fd = accept4(t->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        return fd;
}

bool transport_vsock_peer_allowed(const struct sockaddr_vm *sa, socklen_t len) {
        return len >= (socklen_t) sizeof(*sa) && sa->svm_family == AF_VSOCK && sa->svm_cid == VMADDR_CID_HOST;
}

/* Only the host (VMADDR_CID_HOST = 2) may be our peer. A local process (vsock
 * loopback, CID 1) or another guest must never reach the host-only ops (import, export,
 * approve). Refused connections are closed at once; -EAGAIN makes the caller wait for the
 * next one. */
static int vsock_accept(Transport *t) {
        struct sockaddr_vm sa = {};
        socklen_t len = sizeof(sa);
        int fd = accept4(t->fd, (struct sockaddr *) &sa, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        if (!transport_vsock_peer_allowed(&sa, len)) {
                safe_close(fd);
                return -EAGAIN;
        }
        return fd;
}

static void done_generic(Transport *t) {
        t->fd = safe_close(t->fd);
}

/* chardev: a virtio-serial port is a connected stream as soon as it is open. */
static int chardev_setup(Transport *t) {
        return 0;
}

static int chardev_connect(Transport *t) {
        int fd = open(t->path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || !(S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
                safe_close(fd);
                return -ENOTTY;
        }
        return fd;
}

static int vsock_setup(Transport *t) {
        _cleanup_close_ int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        struct sockaddr_vm sa = {
                .svm_family = AF_VSOCK,
                .svm_cid = VMADDR_CID_ANY,
                .svm_port = t->port,
        };
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        if (listen(fd, 1) < 0)
                return -errno;
        t->fd = TAKE_FD(fd);
        return 0;
}

static int unix_setup(Transport *t) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(t->path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, t->path);

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        (void) unlink(t->path);
        /* Created 0600 from the start: nobody else may talk to the proxy. */
        mode_t old = umask(0177);
        int r = bind(fd, (struct sockaddr *) &sa, sizeof(sa));
        umask(old);
        if (r < 0)
                return -errno;
        t->unlink_on_done = true;
        if (listen(fd, 1) < 0)
                return -errno;
        t->fd = TAKE_FD(fd);
        return 0;
}

static void unix_done(Transport *t) {
        t->fd = safe_close(t->fd);
        if (t->unlink_on_done && t->path)
                (void) unlink(t->path);
}

static int fd_setup(Transport *t) {
        if (t->fd < 0)
                return -EBADF;
        int r = fd_set_nonblock(t->fd, true);
        if (r < 0)
                return r;
        return fd_set_cloexec(t->fd, true);
}

static int fd_connect(Transport *t) {
        /* The inherited fd is handed out exactly once; afterwards there is no new peer. */
        if (t->fd < 0)
                return -ENOTCONN;
        return TAKE_FD(t->fd);
}

static const TransportOps transport_ops[_TRANSPORT_KIND_MAX] = {
        [TRANSPORT_CHARDEV] = { chardev_setup, no_listen_fd, chardev_connect, done_generic },
        [TRANSPORT_VSOCK] = { vsock_setup, listen_fd_generic, vsock_accept, done_generic },
        [TRANSPORT_UNIX] = { unix_setup, listen_fd_generic, accept_generic, unix_done },
        [TRANSPORT_FD] = { fd_setup, no_listen_fd, fd_connect, done_generic },
};

int transport_new(TransportKind kind, const char *path, uint32_t port, int fd, Transport **ret) {
        if (kind < 0 || kind >= _TRANSPORT_KIND_MAX)
                return -EINVAL;
        if ((kind == TRANSPORT_CHARDEV || kind == TRANSPORT_UNIX) && !path)
                return -EINVAL;
        if (kind == TRANSPORT_FD && fd < 0)
                return -EBADF;
        Transport *t = xnew0(Transport, 1);
        t->kind = kind;
        t->ops = &transport_ops[kind];
        t->path = path ? xstrdup(path) : NULL;
        t->port = port;
        t->fd = kind == TRANSPORT_FD ? fd : -EBADF;
        *ret = t;
        return 0;
}

Transport *transport_free(Transport *t) {
        if (!t)
                return NULL;
        t->ops->done(t);
        free(t->path);
        free(t);
        return NULL;
}

int transport_unix_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        return TAKE_FD(fd);
}
