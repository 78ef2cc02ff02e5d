/* SPDX-License-Identifier: Apache-2.0 */
/* Child-process helpers; see process-util.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fd-util.h"
#include "process-util.h"

int pidref_set_pid(PidRef *ref, pid_t pid) {
        if (pid <= 0)
                return -EINVAL;
        int fd = (int) syscall(SYS_pidfd_open, pid, 0);
        *ref = (PidRef){ .pid = pid, .fd = fd >= 0 ? fd : -EBADF };
        if (ref->fd >= 0)
                (void) fd_set_cloexec(ref->fd, true);
        return 0;
}

bool pidref_is_set(const PidRef *ref) {
        return ref && ref->pid > 0;
}

int pidref_kill(const PidRef *ref, int sig) {
        if (!pidref_is_set(ref))
                return -ESRCH;
        if (ref->fd >= 0) {
                if (syscall(SYS_pidfd_send_signal, ref->fd, sig, NULL, 0) == 0)
                        return 0;
                if (errno != ENOSYS)
                        return -errno;
        }
        return RET_NERRNO(kill(ref->pid, sig));
}

int pidref_wait(const PidRef *ref, int *ret_status) {
        int status;
        if (!pidref_is_set(ref))
                return -ESRCH;
        for (;;) {
                if (waitpid(ref->pid, &status, 0) >= 0)
                        break;
                if (errno != EINTR)
                        return -errno;
        }
        if (ret_status)
                *ret_status = status;
        return 0;
}

void pidref_done(PidRef *ref) {
        if (!ref)
                return;
        ref->fd = safe_close(ref->fd);
        ref->pid = 0;
}

void pidref_kill_and_wait(PidRef *ref) {
        if (!pidref_is_set(ref))
                return;
        (void) pidref_kill(ref, SIGKILL);
        (void) pidref_wait(ref, NULL);
        pidref_done(ref);
}

int wait_for_terminate(pid_t pid, int *ret_status) {
        int status;
        for (;;) {
                if (waitpid(pid, &status, 0) >= 0)
                        break;
                if (errno != EINTR)
                        return -errno;
        }
        if (ret_status)
                *ret_status = status;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return -EIO;
}

int spawn_argv(char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd, PidRef *ret) {
        static char *const empty_env[] = { NULL };
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (in_fd < 0)
                        in_fd = nullfd;
                if (in_fd >= 0 && dup2(in_fd, 0) < 0)
                        _exit(127);
                if (out_fd >= 0 && dup2(out_fd, 1) < 0)
                        _exit(127);
                if (err_fd >= 0 && dup2(err_fd, 2) < 0)
                        _exit(127);
                (void) fd_close_all_from(3, NULL, 0);
                execve(argv[0], argv, envp ? envp : empty_env);
                _exit(127);
        }
        return pidref_set_pid(ret, pid);
}

int run_argv(char *const argv[], char *const envp[]) {
        _cleanup_pidref_kill_ PidRef p = PIDREF_NULL;
        int r = spawn_argv(argv, envp, -1, -1, -1, &p);
        if (r < 0)
                return r;
        pid_t pid = p.pid;
        p.fd = safe_close(p.fd);
        p.pid = 0;
        return wait_for_terminate(pid, NULL);
}
