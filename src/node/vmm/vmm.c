/* SPDX-License-Identifier: Apache-2.0 */
/*
 * VMM front end: driver table, process spawning (cgroup placement before exec, privilege drop,
 * clean environment), channel connection retries and stale-run cleanup. Backends hold the
 * driver-specific parts; no driver name is tested here.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "log.h"
#include "net.h"
#include "parse-util.h"
#include "string-util.h"
#include "vmm-internal.h"

static const char *const vmm_driver_table[_VMM_DRIVER_MAX] = {
        [VMM_DRIVER_QEMU] = "qemu",
        [VMM_DRIVER_FIRECRACKER] = "firecracker",
        [VMM_DRIVER_LOCAL] = "local",
};
DEFINE_STRING_TABLE_LOOKUP(vmm_driver, VmmDriver);

static const VmmOps *const vmm_ops_table[_VMM_DRIVER_MAX] = {
        [VMM_DRIVER_QEMU] = &vmm_qemu_ops,
        [VMM_DRIVER_FIRECRACKER] = &vmm_firecracker_ops,
        [VMM_DRIVER_LOCAL] = &vmm_local_ops,
};

static const VmmOps *vmm_ops(VmmDriver d) {
        if ((int) d < 0 || d >= _VMM_DRIVER_MAX)
                return NULL;
        return vmm_ops_table[d];
}

int vmm_probe(VmmDriver d, const VmmLaunch *l, char **reterr) {
        const VmmOps *ops = vmm_ops(d);
        if (!ops)
                return -EINVAL;
        return ops->probe(l, reterr);
}

int vmm_start(VmmDriver d, const VmmLaunch *l, Vmm **ret, char **reterr) {
        const VmmOps *ops = vmm_ops(d);
        _cleanup_(vmm_freep) Vmm *vm = NULL;
        int r;

        if (!ops)
                return -EINVAL;
        vm = xnew0(Vmm, 1);
        pthread_mutex_init(&vm->data_lock, NULL);
        vm->ops = ops;
        vm->pid = PIDREF_NULL;
        vm->channel_fd = -EBADF;
        vm->pod_dir = xstrdup(l->pod_dir);
        r = ops->probe(l, reterr);
        if (r < 0)
                return r;
        r = ops->start(l, vm, reterr);
        if (r < 0)
                return r;
        (void) vmm_write_pidfile(vm);
        *ret = TAKE_PTR(vm);
        return 0;
}

int vmm_connect_channel(Vmm *vm, usec_t timeout, int *ret_fd, char **reterr) {
        return vm->ops->connect(vm, timeout, ret_fd, reterr);
}

const PidRef *vmm_pid(Vmm *vm) {
        return &vm->pid;
}

bool vmm_is_weak(const Vmm *vm) {
        return vm->ops->weak_isolation;
}

const char *vmm_accel(const Vmm *vm) {
        return vm->accel ?: "none";
}

int vmm_stop(Vmm *vm) {
        int status = 0, r = 0;

        if (!vm || vm->stopped)
                return 0;
        vm->stopped = true;
        if (pidref_is_set(&vm->pid)) {
                (void) pidref_kill(&vm->pid, SIGKILL);
                r = pidref_wait(&vm->pid, &status);
                pidref_done(&vm->pid);
                if (r >= 0)
                        r = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        vm->channel_fd = safe_close(vm->channel_fd);
        if (vm->ops->cleanup)
                vm->ops->cleanup(vm);
        if (vm->pod_dir) {
                _cleanup_free_ char *p = xasprintf("%s/vmm.pid", vm->pod_dir);
                (void) unlink(p);
        }
        return r;
}

Vmm *vmm_free(Vmm *vm) {
        if (!vm)
                return NULL;
        (void) vmm_stop(vm);
        if (vm->ops && vm->ops->free_data)
                vm->ops->free_data(vm);
        free(vm->pod_dir);
        free(vm->channel_path);
        free(vm->accel);
        pthread_mutex_destroy(&vm->data_lock);
        free(vm);
        return NULL;
}

int vmm_save_state(
        Vmm *vm, int state_fd, int (*paused)(void *userdata, char **reterr), void *userdata, char **reterr) {
        if (!vm->ops->save_state) {
                *reterr = xasprintf(
                        "driver %s cannot save a VM's state (snapshots need the qemu driver)", vm->ops->name);
                return -EOPNOTSUPP;
        }
        pthread_mutex_lock(&vm->data_lock);
        int r = vm->ops->save_state(vm, state_fd, paused, userdata, reterr);
        pthread_mutex_unlock(&vm->data_lock);
        return r;
}

int vmm_load_state(Vmm *vm, int state_fd, usec_t timeout, char **reterr) {
        if (!vm->ops->load_state) {
                *reterr = xasprintf(
                        "driver %s cannot restore a VM's state (snapshots need the qemu driver)",
                        vm->ops->name);
                return -EOPNOTSUPP;
        }
        pthread_mutex_lock(&vm->data_lock);
        int r = vm->ops->load_state(vm, state_fd, timeout, reterr);
        pthread_mutex_unlock(&vm->data_lock);
        return r;
}

char *vmm_scratch_path(Vmm *vm) {
        return xasprintf("%s/scratch.img", vm->pod_dir);
}

int vmm_hand_over(const char *dir, bool give_dir, const char *const *names, uid_t uid, gid_t gid) {
        _cleanup_close_ int dfd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (dfd < 0)
                return -errno;
        for (size_t i = 0; names && names[i]; i++) {
                struct stat st;
                _cleanup_close_ int fd = openat(
                        dfd, names[i], O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
                if (fd < 0)
                        return -errno;
                if (fstat(fd, &st) < 0)
                        return -errno;
                if (!S_ISREG(st.st_mode) || st.st_nlink != 1)
                        return -EBADFD;
                if (fchown(fd, uid, gid) < 0)
                        return -errno;
        }
        if (!give_dir)
                return 0;
        return fchown(dfd, uid, gid) < 0 ? -errno : 0;
}

int vmm_socket_peer_is(int fd, pid_t pid) {
        struct ucred uc = {};
        socklen_t n = sizeof uc;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &n) < 0)
                return -errno;
        return uc.pid == pid ? 0 : -EPERM;
}

int vmm_socket_chmod(const char *path, mode_t mode) {
        struct stat st;
        _cleanup_close_ int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISSOCK(st.st_mode))
                return -ENOTSOCK;
        char p[64];
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        return chmod(p, mode) < 0 ? -errno : 0;
}

int vmm_write_pidfile(Vmm *vm) {
        _cleanup_close_ int dfd = -EBADF;
        char buf[32];
        int n;

        if (!pidref_is_set(&vm->pid))
                return 0;
        dfd = open(vm->pod_dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        n = snprintf(buf, sizeof buf, "%d\n", (int) vm->pid.pid);
        return write_file_atomic_at(dfd, "vmm.pid", buf, (size_t) n, 0600);
}

int vmm_connect_unix_retry(Vmm *vm, const char *path, usec_t timeout, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        usec_t end = now_usec(CLOCK_MONOTONIC) + timeout;
        _cleanup_close_ int dfd = -EBADF;

        if (strlen(path) >= sizeof sa.sun_path) {
                /* sun_path holds 108 bytes; state dirs can be deeper. Reach the socket through
                 * an O_PATH fd of its directory: "/proc/self/fd/N/<name>" is short. */
                const char *slash = strrchr(path, '/');
                if (!slash || strlen(slash) > 64)
                        return -ENAMETOOLONG;
                _cleanup_free_ char *dir = xstrndup(path, (size_t) (slash - path));
                dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (dfd < 0)
                        return -errno;
                snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d%s", dfd, slash);
        } else
                strcpy(sa.sun_path, path);
        for (;;) {
                _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return -errno;
                if (connect(fd, (struct sockaddr *) &sa, sizeof sa) >= 0) {
                        *ret_fd = TAKE_FD(fd);
                        return 0;
                }
                int r = -errno;
                if (r != -ENOENT && r != -ECONNREFUSED)
                        return r;
                if (pidref_is_set(&vm->pid)) {
                        siginfo_t si = {};
                        if (waitid(P_PID, (id_t) vm->pid.pid, &si, WEXITED | WNOHANG | WNOWAIT) >= 0 &&
                            si.si_pid != 0)
                                return -ECHILD;
                }
                if (now_usec(CLOCK_MONOTONIC) >= end)
                        return -ETIMEDOUT;
                (void) usleep(20 * 1000);
        }
}

int vmm_spawn(const VmmLaunch *l, const char *cwd, char *const argv[], int log_fd, int keep_fd, PidRef *ret) {
        int keep[1] = { keep_fd };
        return vmm_spawn_fds(l, cwd, argv, log_fd, keep, keep_fd >= 0 ? 1 : 0, ret);
}

int vmm_spawn_fds(
        const VmmLaunch *l,
        const char *cwd,
        char *const argv[],
        int log_fd,
        const int *keep,
        size_t n_keep,
        PidRef *ret) {
        char *const envp[] = { NULL };
        if (n_keep > VMM_KEEP_FDS_MAX)
                return -E2BIG;
        pid_t pid;
        int r;

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                /* Child: async-signal-safe steps only, _exit on failure. */
                if (l->cgroup_dir) {
                        int cfd = open(l->cgroup_dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
                        int pfd = cfd >= 0 ? openat(cfd, "cgroup.procs", O_WRONLY | O_CLOEXEC) : -1;
                        if (pfd < 0 || write(pfd, "0", 1) != 1)
                                _exit(126);
                }
                if (setsid() < 0)
                        _exit(126);
                /* Into the pod's network namespace before dropping privileges (setns needs
                 * CAP_SYS_ADMIN); never exec a VMM with a NIC in the host namespace. */
                if (l->net && net_pod_enter(l->net) < 0)
                        _exit(126);
                int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (nullfd < 0 || dup2(nullfd, 0) < 0)
                        _exit(126);
                if (dup2(log_fd >= 0 ? log_fd : nullfd, 1) < 0 || dup2(log_fd >= 0 ? log_fd : nullfd, 2) < 0)
                        _exit(126);
                /* keep[i] becomes VMM_KEEP_FD + i: first out of the way (above every target), so
                 * that no dup2 overwrites a descriptor still to be moved. */
                int high[VMM_KEEP_FDS_MAX];
                for (size_t i = 0; i < n_keep; i++)
                        if (keep[i] < 0 || (high[i] = fcntl(keep[i], F_DUPFD, VMM_KEEP_FD + 64)) < 0)
                                _exit(126);
                for (size_t i = 0; i < n_keep; i++)
                        if (dup2(high[i], VMM_KEEP_FD + (int) i) < 0)
                                _exit(126);
                if (fd_close_all_from(VMM_KEEP_FD + (int) n_keep, NULL, 0) < 0)
                        _exit(126);
                if (l->run_uid != 0) {
                        /* Drop to the dedicated VMM user: no supplementary groups, then gid, then uid. */
                        if (setgroups(0, NULL) < 0 || setresgid(l->run_gid, l->run_gid, l->run_gid) < 0 ||
                            setresuid(l->run_uid, l->run_uid, l->run_uid) < 0)
                                _exit(126);
                }
                if (cwd && chdir(cwd) < 0)
                        _exit(126);
                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                        _exit(126);
                sigset_t ss;
                sigemptyset(&ss);
                (void) sigprocmask(SIG_SETMASK, &ss, NULL);
                execve(argv[0], argv, envp);
                _exit(127);
        }
        r = pidref_set_pid(ret, pid);
        if (r < 0) {
                (void) kill(pid, SIGKILL);
                (void) wait_for_terminate(pid, NULL);
                return r;
        }
        return 0;
}

void vmm_strv_extend_many(char ***l, ...) {
        va_list ap;
        va_start(ap, l);
        for (const char *s; (s = va_arg(ap, const char *));)
                strv_extend(l, s);
        va_end(ap);
}

static bool pid_cmdline_mentions(pid_t pid, const char *needle) {
        char path[64];
        _cleanup_free_ char *data = NULL;
        size_t n = 0;

        snprintf(path, sizeof path, "/proc/%d/cmdline", (int) pid);
        if (read_full_file_at(AT_FDCWD, path, 1 << 20, &data, &n) < 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (data[i] == 0)
                        data[i] = ' ';
        return strstr(data, needle) != NULL;
}

int vmm_cleanup_stale(int pod_dir_fd, const char *pod_dir) {
        _cleanup_free_ char *data = NULL;
        uint32_t pid = 0;

        if (read_full_file_at(pod_dir_fd, "vmm.pid", 64, &data, NULL) >= 0) {
                char *nl = strchr(data, '\n');
                if (nl)
                        *nl = 0;
                if (safe_atou32(data, &pid) >= 0 && pid > 1 && pid_cmdline_mentions((pid_t) pid, pod_dir)) {
                        PidRef ref = PIDREF_NULL;
                        if (pidref_set_pid(&ref, (pid_t) pid) >= 0) {
                                log_info("Killing leftover VMM process %u of %s", pid, pod_dir);
                                (void) pidref_kill(&ref, SIGKILL);
                                /* Not our child after a restart: wait for it to vanish. */
                                for (int i = 0; i < 200 && kill((pid_t) pid, 0) == 0; i++)
                                        (void) usleep(10 * 1000);
                                pidref_done(&ref);
                        }
                }
                (void) unlinkat(pod_dir_fd, "vmm.pid", 0);
        }
        return 0;
}
