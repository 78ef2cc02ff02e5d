/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running the system tools this library drives (ip, nft, dnsmasq) as argv, never a shell, with
 * an empty environment, optionally inside a network namespace (setns in the forked child), with
 * stdin from a buffer and stdout/stderr captured through memfds (no pipe deadlocks), bounded.
 */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "net-exec.h"
#include "net-internal.h"
#include "process-util.h"
#include "string-util.h"

#define NET_EXEC_OUTPUT_MAX (16U * 1024 * 1024)

const char *net_find_program(const char *name) {
        /* Constant strings only: thread-safe without locks (pods are set up from several threads). */
        static const char *const known[] = {
                "/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft",      "/usr/sbin/ip",  "/sbin/ip",
                "/usr/bin/ip",   "/bin/ip",   "/usr/sbin/dnsmasq", "/sbin/dnsmasq", "/usr/bin/dnsmasq",
        };
        for (size_t i = 0; i < ELEMENTSOF(known); i++) {
                const char *base = strrchr(known[i], '/') + 1;
                if (streq(base, name) && access(known[i], X_OK) == 0)
                        return known[i];
        }
        return NULL;
}

static int memfd_with(const char *name, const char *data) {
        _cleanup_close_ int fd = memfd_create(name, MFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (data) {
                int r = loop_write(fd, data, strlen(data));
                if (r < 0)
                        return r;
                if (lseek(fd, 0, SEEK_SET) < 0)
                        return -errno;
        }
        return TAKE_FD(fd);
}

static int memfd_read(int fd, char **ret) {
        if (lseek(fd, 0, SEEK_SET) < 0)
                return -errno;
        return read_full_fd(fd, NET_EXEC_OUTPUT_MAX, ret, NULL);
}

int net_spawn(int netns_fd, char *const argv[], int in_fd, int out_fd, int err_fd, PidRef *ret) {
        static char *const empty_env[] = { NULL };
        pid_t pid;

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
                /* Enter the namespace before anything else; never run the tool in the host
                 * namespace by mistake. */
                if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0)
                        _exit(126);
                if (dup2(in_fd >= 0 ? in_fd : nullfd, 0) < 0 || dup2(out_fd >= 0 ? out_fd : nullfd, 1) < 0 ||
                    dup2(err_fd >= 0 ? err_fd : nullfd, 2) < 0)
                        _exit(127);
                (void) fd_close_all_from(3, NULL, 0);
                (void) signal(SIGPIPE, SIG_DFL);
                execve(argv[0], argv, empty_env);
                _exit(127);
        }
        return pidref_set_pid(ret, pid);
}

int net_run(int netns_fd, char *const argv[], const char *input, char **ret_out, char **ret_err) {
        _cleanup_close_ int in = -EBADF, out = -EBADF, err = -EBADF;
        _cleanup_pidref_kill_ PidRef child = PIDREF_NULL;
        int r, status = 0;

        if (!argv || !argv[0])
                return -ENOENT;
        in = memfd_with("net-in", input);
        if (in < 0)
                return in;
        out = memfd_with("net-out", NULL);
        if (out < 0)
                return out;
        err = memfd_with("net-err", NULL);
        if (err < 0)
                return err;

        r = net_spawn(netns_fd, argv, in, out, err, &child);
        if (r < 0)
                return r;
        r = pidref_wait(&child, &status);
        if (r < 0)
                return r;
        pidref_done(&child);

        if (ret_out) {
                r = memfd_read(out, ret_out);
                if (r < 0)
                        return r;
        }
        if (ret_err) {
                r = memfd_read(err, ret_err);
                if (r < 0)
                        return r;
                if (strlen(*ret_err) > 400) /* enough for a message */
                        (*ret_err)[400] = 0;
        }
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return -EIO;
}

int net_run_ok(int netns_fd, char *const argv[], const char *input, char **reterr) {
        _cleanup_free_ char *err = NULL;
        int r = net_run(netns_fd, argv, input, NULL, &err);
        if (r < 0)
                return r;
        if (r != 0) {
                if (reterr) {
                        _cleanup_free_ char *cmd = strv_join(argv, " ");
                        if (err) {
                                size_t n = strlen(err);
                                while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
                                        err[--n] = 0;
                        }
                        free(*reterr);
                        *reterr = xasprintf(
                                "'%s' failed (exit %d): %s", cmd, r, isempty(err) ? "no message" : err);
                }
                return r == 126 ? -ENOENT : -EIO;
        }
        return 0;
}

int net_sysctl_write(int netns_fd, const char *path, const char *value) {
        pid_t pid;
        int r;

        if (!startswith(path, "/proc/sys/net/"))
                return -EINVAL;
        if (netns_fd < 0) {
                _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return -errno;
                return loop_write(fd, value, strlen(value));
        }
        /* /proc/sys/net shows the namespace of the process that opens it: do it in a child. */
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                if (setns(netns_fd, CLONE_NEWNET) < 0)
                        _exit(1);
                int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        _exit(2);
                if (loop_write(fd, value, strlen(value)) < 0)
                        _exit(3);
                _exit(0);
        }
        r = wait_for_terminate(pid, NULL);
        if (r < 0)
                return r;
        return r == 0 ? 0 : -EIO;
}
