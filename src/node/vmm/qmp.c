/* SPDX-License-Identifier: Apache-2.0 */
/* QMP client (qmp.h): one line of JSON per message, "execute" in, "return" or "error" out,
 * asynchronous "event" lines interleaved (skipped). */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "qmp.h"
#include "string-util.h"

#define QMP_LINE_MAX (1024u * 1024u)

struct Qmp {
        int fd;
        char *buf; /* bytes read and not consumed */
        size_t n;
        uint64_t id; /* of the last command: an answer with another id is a late one, skipped */
};

Qmp *qmp_close(Qmp *q) {
        if (!q)
                return NULL;
        safe_close(q->fd);
        free(q->buf);
        free(q);
        return NULL;
}

/* The next line as JSON (new reference), waiting until deadline. */
static int qmp_read_message(Qmp *q, usec_t deadline, json_t **ret) {
        for (;;) {
                char *nl = q->n > 0 ? memchr(q->buf, '\n', q->n) : NULL;
                if (nl) {
                        size_t len = (size_t) (nl - q->buf);
                        json_error_t e;
                        json_t *j = json_loadb(q->buf, len, JSON_REJECT_DUPLICATES, &e);
                        memmove(q->buf, nl + 1, q->n - len - 1);
                        q->n -= len + 1;
                        if (!json_is_object(j)) {
                                json_decref(j);
                                return -EBADMSG;
                        }
                        *ret = j;
                        return 0;
                }
                if (q->n >= QMP_LINE_MAX)
                        return -EMSGSIZE;
                usec_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
                int r = poll(&pfd, 1, usec_to_timeout_ms(deadline - now));
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        return -ETIMEDOUT;
                size_t want = NUCLEUS_MIN((size_t) 65536, QMP_LINE_MAX - q->n);
                q->buf = xrealloc(q->buf, q->n + want);
                ssize_t k = read(q->fd, q->buf + q->n, want);
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -ECONNRESET;
                q->n += (size_t) k;
        }
}

static int qmp_send(Qmp *q, const char *text, int pass_fd) {
        struct iovec iov = { .iov_base = (void *) text, .iov_len = strlen(text) };
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (pass_fd >= 0) {
                mh.msg_control = &control;
                mh.msg_controllen = sizeof control.buf;
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
        }
        /* The descriptor travels with the first byte; the rest of a short write follows plain. */
        ssize_t k = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
        if (k < 0)
                return -errno;
        if ((size_t) k < iov.iov_len)
                return loop_write(q->fd, text + k, iov.iov_len - (size_t) k);
        return 0;
}

int qmp_execute(Qmp *q, const char *cmd, json_t *args, int pass_fd, usec_t timeout, json_t **ret, char **reterr) {
        /* An id per command: the node keeps one monitor connection for the VM's life, so the
         * answer to a command that timed out may still arrive before the next one's. */
        uint64_t id = ++q->id;
        _cleanup_json_ json_t *req = args
                ? json_pack("{s:s,s:O,s:I}", "execute", cmd, "arguments", args, "id", (json_int_t) id)
                : json_pack("{s:s,s:I}", "execute", cmd, "id", (json_int_t) id);
        _cleanup_free_ char *text = NULL;
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;
        int r;

        if (!req)
                return -ENOMEM;
        text = json_dumps(req, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        char *line = xasprintf("%s\n", text);
        r = qmp_send(q, line, pass_fd);
        free(line);
        if (r < 0) {
                *reterr = xasprintf("QMP %s: cannot send: %s", cmd, strerror(-r));
                return r;
        }
        for (;;) {
                _cleanup_json_ json_t *m = NULL;
                r = qmp_read_message(q, deadline, &m);
                if (r < 0) {
                        *reterr = xasprintf("QMP %s: no answer: %s", cmd, strerror(-r));
                        return r;
                }
                if (json_object_get(m, "event"))
                        continue;
                json_t *mid = json_object_get(m, "id");
                if (mid && !(json_is_integer(mid) && (uint64_t) json_integer_value(mid) == id))
                        continue; /* a late answer to an earlier command */
                json_t *e = json_object_get(m, "error");
                if (e) {
                        const char *desc = json_string_value(json_object_get(e, "desc"));
                        _cleanup_free_ char *vis = string_make_visible(desc ?: "unknown error");
                        *reterr = xasprintf("QMP %s: %s", cmd, vis);
                        return -EIO;
                }
                json_t *v = json_object_get(m, "return");
                if (!v) {
                        *reterr = xasprintf("QMP %s: an answer without \"return\"", cmd);
                        return -EBADMSG;
                }
                if (ret)
                        *ret = json_incref(v);
                return 0;
        }
}

int qmp_open(Vmm *vm, const char *path, usec_t timeout, Qmp **ret, char **reterr) {
        _cleanup_(qmp_closep) Qmp *q = xnew0(Qmp, 1);
        _cleanup_json_ json_t *greeting = NULL;
        int r;

        q->fd = -EBADF;
        r = vmm_connect_unix_retry(vm, path, timeout, &q->fd);
        if (r < 0) {
                *reterr = xasprintf("cannot connect to QEMU's QMP socket %s: %s", path, strerror(-r));
                return r;
        }
        /* vm/ belongs to the VMM user, which every pod's QEMU shares: the socket must be the one
         * this pod's QEMU listens on, not one another put in its place. */
        if (pidref_is_set(&vm->pid) && (r = vmm_socket_peer_is(q->fd, vm->pid.pid)) < 0) {
                *reterr = xasprintf("the QMP socket %s is not this pod's QEMU's", path);
                return r;
        }
        r = qmp_read_message(q, now_usec(CLOCK_MONOTONIC) + timeout, &greeting);
        if (r < 0 || !json_object_get(greeting, "QMP")) {
                *reterr = xasprintf("QEMU's QMP socket %s sent no greeting", path);
                return r < 0 ? r : -EBADMSG;
        }
        r = qmp_execute(q, "qmp_capabilities", NULL, -1, timeout, NULL, reterr);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(q);
        return 0;
}

int qmp_wait_migration(Qmp *q, usec_t timeout, char **reterr) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;
        for (;;) {
                _cleanup_json_ json_t *v = NULL;
                int r = qmp_execute(q, "query-migrate", NULL, -1, 10 * USEC_PER_SEC, &v, reterr);
                if (r < 0)
                        return r;
                const char *st = json_string_value(json_object_get(v, "status"));
                if (streq_ptr(st, "completed"))
                        return 0;
                if (streq_ptr(st, "failed") || streq_ptr(st, "cancelled")) {
                        const char *desc = json_string_value(json_object_get(v, "error-desc"));
                        _cleanup_free_ char *vis = string_make_visible(desc ?: "no detail");
                        *reterr = xasprintf("QEMU migration %s: %s", st, vis);
                        return -EIO;
                }
                if (now_usec(CLOCK_MONOTONIC) >= deadline) {
                        *reterr = xstrdup("QEMU migration did not complete in time");
                        return -ETIMEDOUT;
                }
                (void) usleep(20 * 1000);
        }
}
