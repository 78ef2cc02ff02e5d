/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the QMP client (src/node/vmm/qmp.c) against a fake QEMU on a unix socket:
 * greeting and capabilities, events skipped, a descriptor passed with getfd (SCM_RIGHTS),
 * migration status polling (completed, failed with QEMU's text made visible), errors, an
 * endless line refused instead of buffered, and the monitor connection closed when the VM
 * stops (not when the ended pod's record is freed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "qmp.h"
#include "string-util.h"
#include "vmm-internal.h"

typedef struct Fake {
        int listen_fd;
        bool got_fd;       /* getfd arrived with a descriptor */
        char cmds[16][32]; /* commands seen, in order */
        int n_cmds;
        bool done; /* __atomic: the client hung up and the fake ended */
} Fake;

/* One line from fd (with any descriptor that came along stored in *ret_fd). */
static int read_cmd(int fd, char *buf, size_t n, int *ret_fd) {
        size_t got = 0;
        while (got + 1 < n) {
                union {
                        struct cmsghdr h;
                        char b[CMSG_SPACE(sizeof(int))];
                } control = {};
                struct iovec iov = { .iov_base = buf + got, .iov_len = 1 };
                struct msghdr mh = { .msg_iov = &iov,
                                     .msg_iovlen = 1,
                                     .msg_control = &control,
                                     .msg_controllen = sizeof control.b };
                ssize_t k = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
                if (k <= 0)
                        return -1;
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                if (c && c->cmsg_type == SCM_RIGHTS && ret_fd)
                        memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
                if (buf[got++] == '\n')
                        break;
        }
        buf[got] = 0;
        return 0;
}

static void say(int fd, const char *s) {
        assert_int_equal(loop_write(fd, s, strlen(s)), 0);
}

static void *fake_qemu(void *arg) {
        Fake *f = arg;
        int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(fd >= 0);
        say(fd, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n");
        char line[4096];
        for (;;) {
                int passed = -1;
                if (read_cmd(fd, line, sizeof line, &passed) < 0)
                        break;
                json_error_t e;
                json_t *j = json_loads(line, 0, &e);
                const char *cmd = json_string_value(json_object_get(j, "execute"));
                assert_non_null(cmd);
                snprintf(f->cmds[f->n_cmds++], sizeof f->cmds[0], "%s", cmd);
                if (streq(cmd, "getfd")) {
                        struct stat st;
                        f->got_fd = passed >= 0 && fstat(passed, &st) == 0 && S_ISREG(st.st_mode);
                        safe_close(passed);
                        say(fd, "{\"event\": \"STOP\", \"timestamp\": {}}\n{\"return\": {}}\n");
                } else if (streq(cmd, "query-migrate")) {
                        int n = 0;
                        for (int i = 0; i < f->n_cmds; i++)
                                n += streq(f->cmds[i], "query-migrate");
                        say(fd,
                            n == 1           ? "{\"return\": {\"status\": \"active\"}}\n"
                                    : n == 2 ? "{\"return\": {\"status\": \"completed\"}}\n"
                                             : "{\"return\": {\"status\": \"failed\", \"error-desc\": "
                                               "\"disk \\u202e full\"}}\n");
                } else if (streq(cmd, "query-status")) {
                        /* A late answer to an earlier command first (another id), then this one's
                         * (the node keeps one monitor connection for the VM's life). */
                        json_int_t id = json_integer_value(json_object_get(j, "id"));
                        _cleanup_free_ char *a = xasprintf(
                                "{\"return\": {\"status\": \"stale\"}, \"id\": %lld}\n"
                                "{\"return\": {\"status\": \"running\"}, \"id\": %lld}\n",
                                (long long) id - 1,
                                (long long) id);
                        say(fd, a);
                } else if (streq(cmd, "stop"))
                        say(fd, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}}\n");
                else if (streq(cmd, "cont")) {
                        /* An answer that never ends: the client must give up, not buffer it. */
                        char *big = xmalloc(2 << 20);
                        memset(big, 'x', 2 << 20);
                        for (size_t off = 0; off < (2u << 20);) {
                                ssize_t k = send(fd, big + off, (2u << 20) - off, MSG_NOSIGNAL);
                                if (k <= 0)
                                        break; /* the client hung up: what it should do */
                                off += (size_t) k;
                        }
                        free(big);
                } else
                        say(fd, "{\"return\": {}}\n");
                json_decref(j);
        }
        safe_close(fd);
        __atomic_store_n(&f->done, true, __ATOMIC_RELEASE);
        return NULL;
}

static void test_qmp(void **state) {
        char dir[] = "/tmp/nucleus-test-qmp-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *path = xasprintf("%s/qmp.sock", dir);
        Fake f = { .listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) };
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        assert_int_equal(bind(f.listen_fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(f.listen_fd, 1), 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, fake_qemu, &f), 0);

        Vmm vm = { .pid = PIDREF_NULL, .channel_fd = -EBADF };
        Qmp *q = NULL;
        char *err = NULL;
        assert_int_equal(qmp_open(&vm, path, 5 * USEC_PER_SEC, &q, &err), 0);
        assert_string_equal(f.cmds[0], "qmp_capabilities");

        /* A descriptor travels with getfd; the event before the answer is skipped. */
        _cleanup_free_ char *file = xasprintf("%s/state", dir);
        _cleanup_close_ int sfd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        _cleanup_json_ json_t *args = json_pack("{s:s}", "fdname", "x");
        json_t *ret = NULL;
        assert_int_equal(qmp_execute(q, "getfd", args, sfd, 5 * USEC_PER_SEC, &ret, &err), 0);
        assert_true(json_is_object(ret));
        json_decref(ret);
        assert_true(f.got_fd);

        /* active, then completed. */
        assert_int_equal(qmp_wait_migration(q, 5 * USEC_PER_SEC, &err), 0);
        /* failed: QEMU's text, with its bidi override made visible. */
        assert_int_equal(qmp_wait_migration(q, 5 * USEC_PER_SEC, &err), -EIO);
        assert_non_null(strstr(err, "failed"));
        assert_null(strstr(err, "\u202e"));
        err = mfree(err);
        /* An answer with another command's id is a late one: skipped. */
        assert_int_equal(qmp_execute(q, "query-status", NULL, -1, 5 * USEC_PER_SEC, &ret, &err), 0);
        assert_string_equal(json_string_value(json_object_get(ret, "status")), "running");
        json_decref(ret);
        /* An error answer. */
        assert_int_equal(qmp_execute(q, "stop", NULL, -1, 5 * USEC_PER_SEC, NULL, &err), -EIO);
        assert_non_null(strstr(err, "nope"));
        err = mfree(err);
        /* A line past the bound. */
        assert_int_equal(qmp_execute(q, "cont", NULL, -1, 5 * USEC_PER_SEC, NULL, &err), -EMSGSIZE);
        err = mfree(err);

        q = qmp_close(q);
        pthread_join(t, NULL);
        safe_close(f.listen_fd);
        (void) unlink(path);
        (void) unlink(file);
        (void) rmdir(dir);
}

static int count_fds(void) {
        int n = 0;
        DIR *d = opendir("/proc/self/fd");
        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));)
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

/* The node holds QEMU's monitor for the VM's life; the VM's end (vmm_stop) closes it, while
 * the Vmm itself lives on with the ended pod's record (up to keep_ended of them). */
static void test_monitor_closed_when_vm_stops(void **state) {
        char dir[] = "/tmp/nucleus-test-qmp-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *vmdir = xasprintf("%s/vm", dir);
        assert_int_equal(mkdir(vmdir, 0700), 0);
        _cleanup_free_ char *path = xasprintf("%s/qmp.sock", vmdir);
        Fake f = { .listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) };
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        assert_int_equal(bind(f.listen_fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(f.listen_fd, 1), 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, fake_qemu, &f), 0);

        Vmm *vm = xnew0(Vmm, 1);
        pthread_mutex_init(&vm->data_lock, NULL);
        vm->ops = &vmm_qemu_ops;
        vm->pid = PIDREF_NULL;
        vm->channel_fd = -EBADF;
        vm->pod_dir = xstrdup(dir);
        int before = count_fds();
        Qmp *q = NULL;
        char *err = NULL;
        assert_int_equal(qmp_open(vm, path, 5 * USEC_PER_SEC, &q, &err), 0);
        vm->data = q;
        assert_true(count_fds() > before); /* ours, and the fake QEMU's end (a thread here) */

        (void) vmm_stop(vm);
        /* The connection is closed: the fake QEMU reads its end, and the descriptor is gone.
         * (Still open, the fake would wait forever: a generous bound, then the failure.) */
        for (int i = 0; i < 600 && !__atomic_load_n(&f.done, __ATOMIC_ACQUIRE); i++)
                (void) usleep(50 * 1000);
        assert_true(__atomic_load_n(&f.done, __ATOMIC_ACQUIRE));
        pthread_join(t, NULL);
        assert_int_equal(count_fds(), before);
        /* A snapshot after the end is refused, not run on a closed monitor. */
        assert_int_equal(vmm_save_state(vm, -1, NULL, NULL, &err), -ESHUTDOWN);
        assert_non_null(err);
        err = mfree(err);
        vm = vmm_free(vm);

        safe_close(f.listen_fd);
        (void) rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_qmp),
                cmocka_unit_test(test_monitor_closed_when_vm_stops),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
