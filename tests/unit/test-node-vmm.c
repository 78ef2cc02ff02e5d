/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vmm_hand_over: root gives the VMM user (shared by every pod's QEMU) its vm/ dir and disk
 * without following anything that user could have put there: a symlink, a FIFO, a hard link
 * in place of the disk is refused and its target left as it was; the dir is handed over last.
 * Likewise the sockets root connects to and chmods in that dir (vmm_socket_peer_is,
 * vmm_socket_chmod).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "vmm-internal.h"

static char *make_tmpdir(void) {
        char *d = xstrdup("/tmp/test-node-vmm-XXXXXX");
        assert_non_null(mkdtemp(d));
        return d;
}

static void touch(const char *dir, const char *name) {
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
}

static void cleanup(const char *root) {
        static const char *const names[] = { "vm/scratch.img", "vm/other", "target", NULL };
        for (size_t i = 0; names[i]; i++) {
                _cleanup_free_ char *p = xasprintf("%s/%s", root, names[i]);
                (void) unlink(p);
        }
        _cleanup_free_ char *vm = xasprintf("%s/vm", root);
        (void) rmdir(vm);
        (void) rmdir(root);
}

static void test_hand_over_regular(void **state) {
        (void) state;
        _cleanup_free_ char *root = make_tmpdir(), *vm = xasprintf("%s/vm", root);
        static const char *const files[] = { "scratch.img", NULL };
        assert_int_equal(mkdir(vm, 0700), 0);
        touch(vm, "scratch.img");
        /* Our own uid: no privilege needed, and every check runs all the same. */
        assert_int_equal(vmm_hand_over(vm, true, files, getuid(), getgid()), 0);
        cleanup(root);
}

static void test_hand_over_refuses_what_is_not_the_disk(void **state) {
        (void) state;
        static const char *const files[] = { "scratch.img", NULL };
        for (int kind = 0; kind < 4; kind++) {
                _cleanup_free_ char *root = make_tmpdir(), *vm = xasprintf("%s/vm", root);
                _cleanup_free_ char *disk = xasprintf("%s/scratch.img", vm),
                                    *target = xasprintf("%s/target", root);
                assert_int_equal(mkdir(vm, 0700), 0);
                touch(root, "target");
                int want;
                switch (kind) {
                case 0: /* a symlink to a file elsewhere (say /etc/shadow) */
                        assert_int_equal(symlink(target, disk), 0);
                        want = -ELOOP;
                        break;
                case 1: /* a FIFO: opening it must not block */
                        assert_int_equal(mkfifo(disk, 0600), 0);
                        want = -EBADFD;
                        break;
                case 2: /* a hard link to a file elsewhere */
                        assert_int_equal(link(target, disk), 0);
                        want = -EBADFD;
                        break;
                default: /* a directory */
                        assert_int_equal(mkdir(disk, 0700), 0);
                        want = -EBADFD;
                        break;
                }
                assert_int_equal(vmm_hand_over(vm, true, files, getuid(), getgid()), want);
                if (kind == 3)
                        (void) rmdir(disk);
                cleanup(root);
        }
}

static void test_hand_over_refuses_a_linked_dir(void **state) {
        (void) state;
        _cleanup_free_ char *root = make_tmpdir(), *vm = xasprintf("%s/vm", root);
        _cleanup_free_ char *target = xasprintf("%s/target", root);
        assert_int_equal(mkdir(target, 0700), 0);
        assert_int_equal(symlink(target, vm), 0);
        int r = vmm_hand_over(vm, true, NULL, getuid(), getgid());
        assert_true(r == -ELOOP || r == -ENOTDIR); /* O_DIRECTORY | O_NOFOLLOW on a link */
        (void) unlink(vm);
        (void) rmdir(target);
        (void) rmdir(root);
}

static int listen_at(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(fd, 4), 0);
        return fd;
}

static int connect_to(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        return fd;
}

/* The socket in vm/ must be the pod's own VMM's: one another process listens on is refused. */
static void test_socket_peer(void **state) {
        (void) state;
        _cleanup_free_ char *root = make_tmpdir(), *sock = xasprintf("%s/channel.sock", root);
        _cleanup_close_ int l = listen_at(sock);
        assert_true(l >= 0);
        _cleanup_close_ int c = connect_to(sock);
        assert_int_equal(vmm_socket_peer_is(c, getpid()), 0);
        pid_t other = fork();
        assert_true(other >= 0);
        if (other == 0) {
                pause();
                _exit(0);
        }
        assert_int_equal(vmm_socket_peer_is(c, other), -EPERM);
        (void) kill(other, SIGKILL);
        (void) waitpid(other, NULL, 0);
        (void) unlink(sock);
        (void) rmdir(root);
}

/* Root's chmod of the VMM's socket follows no link put in its place. */
static void test_socket_chmod(void **state) {
        (void) state;
        _cleanup_free_ char *root = make_tmpdir(), *sock = xasprintf("%s/qmp.sock", root),
                            *target = xasprintf("%s/target", root), *link = xasprintf("%s/link.sock", root);
        struct stat st;
        _cleanup_close_ int l = listen_at(sock);
        assert_true(l >= 0);
        assert_int_equal(chmod(sock, 0777), 0);
        assert_int_equal(vmm_socket_chmod(sock, 0600), 0);
        assert_int_equal(stat(sock, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        touch(root, "target");
        assert_int_equal(chmod(target, 0644), 0);
        assert_int_equal(symlink(target, link), 0);
        assert_true(vmm_socket_chmod(link, 0600) < 0);
        assert_int_equal(stat(target, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0644);
        assert_int_equal(vmm_socket_chmod(target, 0600), -ENOTSOCK);
        assert_int_equal(stat(target, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0644);
        (void) unlink(link);
        (void) unlink(target);
        (void) unlink(sock);
        (void) rmdir(root);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hand_over_regular),
                cmocka_unit_test(test_hand_over_refuses_what_is_not_the_disk),
                cmocka_unit_test(test_hand_over_refuses_a_linked_dir),
                cmocka_unit_test(test_socket_peer),
                cmocka_unit_test(test_socket_chmod),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
