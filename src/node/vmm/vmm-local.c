/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Driver "local": no VM. The tool proxy runs on the host inside bubblewrap with new pid, ipc,
 * uts, net (no network at all) and mount namespaces, read-only system dirs, and only the pod's
 * workspace writable (plus private tmpfs /tmp and /run). The proxy keeps uid 0 with only the
 * capabilities it uses in the guest to manage the agent's files and processes (SETUID, SETGID,
 * CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETPCAP; bwrap drops every other one, no CAP_SYS_ADMIN), so it can
 * run agent commands as uid 1000 exactly as in the guest; inside a user namespace it could not
 * switch users. It sees only the read-only binds below and the workspace.
 * The channel is a socketpair whose far end the proxy inherits as fd 3. This is weaker isolation than a
 * microVM (shared kernel); the node says so on every response and in the logs.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "log.h"
#include "string-util.h"
#include "vmm-internal.h"

#define BWRAP_PATH "/usr/bin/bwrap"

/* bwrap's --die-with-parent is PR_SET_PDEATHSIG, and the kernel's "parent" is the thread that
 * forked, not the process (prctl(2)). The boot thread that starts a pod ends right after the
 * boot, so bwrap is forked by a keeper thread that lives exactly as long as the sandbox: it
 * spawns, then blocks until vmm_stop() has killed and reaped bwrap. If the node dies, every
 * thread dies with it and the sandbox goes too. */
typedef struct LocalKeeper {
        pthread_t thread;
        int stop_fd[2]; /* keeper blocks reading [0]; closing [1] releases it */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool done; /* the spawn has been attempted (result in r) */
        int r;
        const VmmLaunch *launch; /* valid until done */
        char *const *argv;
        int log_fd, keep_fd;
        PidRef *ret_pid;
} LocalKeeper;

static void *local_keeper_main(void *arg) {
        LocalKeeper *k = arg;
        char b;
        int r = vmm_spawn(k->launch, NULL, k->argv, k->log_fd, k->keep_fd, k->ret_pid);
        pthread_mutex_lock(&k->lock);
        k->r = r;
        k->done = true;
        pthread_cond_signal(&k->cond);
        pthread_mutex_unlock(&k->lock);
        if (r >= 0)
                while (read(k->stop_fd[0], &b, 1) < 0 && errno == EINTR)
                        ;
        return NULL;
}

static void local_keeper_release(Vmm *vm) {
        LocalKeeper *k = vm->data;
        if (!k)
                return;
        k->stop_fd[1] = safe_close(k->stop_fd[1]);
        (void) pthread_join(k->thread, NULL);
        safe_close(k->stop_fd[0]);
        pthread_mutex_destroy(&k->lock);
        pthread_cond_destroy(&k->cond);
        free(k);
        vm->data = NULL;
}

/* Spawn argv from a keeper thread (see above). Returns vmm_spawn's result. */
static int local_spawn_kept(
        Vmm *vm, const VmmLaunch *l, char *const argv[], int log_fd, int keep_fd, PidRef *ret_pid) {
        LocalKeeper *k = xnew0(LocalKeeper, 1);
        int r;
        if (pipe2(k->stop_fd, O_CLOEXEC) < 0) {
                r = -errno;
                free(k);
                return r;
        }
        pthread_mutex_init(&k->lock, NULL);
        pthread_cond_init(&k->cond, NULL);
        k->launch = l;
        k->argv = argv;
        k->log_fd = log_fd;
        k->keep_fd = keep_fd;
        k->ret_pid = ret_pid;
        vm->data = k;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        (void) pthread_attr_setstacksize(&attr, 256 * 1024);
        r = -pthread_create(&k->thread, &attr, local_keeper_main, k);
        pthread_attr_destroy(&attr);
        if (r < 0) {
                safe_close(k->stop_fd[0]);
                safe_close(k->stop_fd[1]);
                pthread_mutex_destroy(&k->lock);
                pthread_cond_destroy(&k->cond);
                free(k);
                vm->data = NULL;
                return r;
        }
        pthread_mutex_lock(&k->lock);
        while (!k->done)
                pthread_cond_wait(&k->cond, &k->lock);
        r = k->r;
        pthread_mutex_unlock(&k->lock);
        if (r < 0)
                local_keeper_release(vm);
        return r;
}

static int local_probe(const VmmLaunch *l, char **reterr) {
        if (access(BWRAP_PATH, X_OK) < 0) {
                *reterr = xstrdup("driver local needs bubblewrap (" BWRAP_PATH "): install the 'bubblewrap' "
                                  "package");
                return -ENOENT;
        }
        if (!l->proxy_path || access(l->proxy_path, X_OK) < 0) {
                *reterr = xasprintf(
                        "driver local needs nucleus-tool-proxy, not found at '%s' (set [node] proxy_path)",
                        l->proxy_path ?: "(unset)");
                return -ENOENT;
        }
        if (l->net_cmdline) {
                *reterr = xstrdup("driver local cannot give a pod a network; use the qemu driver for specs "
                                  "with 'network'");
                return -EOPNOTSUPP;
        }
        return 0;
}

static int local_start(const VmmLaunch *l, Vmm *vm, char **reterr) {
        _cleanup_free_ char *ws = xasprintf("%s/workspace", l->pod_dir);
        _cleanup_free_ char *logp = xasprintf("%s/console.log", l->pod_dir);
        _cleanup_close_ int logfd = -EBADF, node_end = -EBADF, guest_end = -EBADF;
        int sp[2];
        int r;

        if (mkdir(ws, 0700) < 0 && errno != EEXIST) {
                r = -errno;
                *reterr = xasprintf("cannot create workspace dir %s: %s", ws, strerror(-r));
                return r;
        }
        /* The agent (uid 1000) owns the workspace, as on the guest's scratch disk. */
        if (chown(ws, 1000, 1000) < 0) {
                r = -errno;
                *reterr = xasprintf("cannot hand the workspace %s to uid 1000: %s", ws, strerror(-r));
                return r;
        }
        logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (logfd < 0) {
                r = -errno;
                *reterr = xasprintf("cannot open %s: %s", logp, strerror(-r));
                return r;
        }
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
                r = -errno;
                *reterr = xasprintf("socketpair: %s", strerror(-r));
                return r;
        }
        node_end = sp[0];
        guest_end = sp[1];

        /* Only what a tool needs from /etc: never the whole dir (it holds the node's secrets). */
        char *argv[] = {
                (char *) BWRAP_PATH,
                (char *) "--unshare-pid",
                (char *) "--unshare-ipc",
                (char *) "--unshare-uts",
                (char *) "--unshare-net",
                (char *) "--unshare-cgroup-try",
                (char *) "--new-session",
                /* The sandbox's PID 1 gets SIGKILL when bwrap (our child) dies, taking the whole
                 * PID namespace with it: killing bwrap at the pod's end, or the node dying, leaves
                 * no proxy or agent process behind, hung or not. */
                (char *) "--die-with-parent",
                (char *) "--clearenv",
                (char *) "--setenv",
                (char *) "PATH",
                (char *) "/usr/local/bin:/usr/bin:/bin",
                (char *) "--setenv",
                (char *) "HOME",
                (char *) "/tmp",
                (char *) "--ro-bind",
                (char *) "/usr",
                (char *) "/usr",
                (char *) "--symlink",
                (char *) "usr/bin",
                (char *) "/bin",
                (char *) "--symlink",
                (char *) "usr/sbin",
                (char *) "/sbin",
                (char *) "--symlink",
                (char *) "usr/lib",
                (char *) "/lib",
                (char *) "--symlink",
                (char *) "usr/lib64",
                (char *) "/lib64",
                (char *) "--ro-bind-try",
                (char *) "/etc/passwd",
                (char *) "/etc/passwd",
                (char *) "--ro-bind-try",
                (char *) "/etc/group",
                (char *) "/etc/group",
                (char *) "--ro-bind-try",
                (char *) "/etc/ld.so.cache",
                (char *) "/etc/ld.so.cache",
                (char *) "--ro-bind-try",
                (char *) "/etc/alternatives",
                (char *) "/etc/alternatives",
                (char *) "--ro-bind-try",
                (char *) "/etc/ssl",
                (char *) "/etc/ssl",
                (char *) "--ro-bind-try",
                (char *) "/etc/localtime",
                (char *) "/etc/localtime",
                (char *) "--proc",
                (char *) "/proc",
                (char *) "--dev",
                (char *) "/dev",
                (char *) "--tmpfs",
                (char *) "/tmp",
                (char *) "--tmpfs",
                (char *) "/run",
                (char *) "--bind",
                ws,
                (char *) "/workspace",
                (char *) "--ro-bind",
                (char *) l->proxy_path,
                (char *) "/nucleus/nucleus-tool-proxy",
                (char *) "--chdir",
                (char *) "/workspace",
                (char *) "--cap-drop",
                (char *) "ALL",
                (char *) "--cap-add",
                (char *) "CAP_SETUID",
                (char *) "--cap-add",
                (char *) "CAP_SETGID",
                (char *) "--cap-add",
                (char *) "CAP_CHOWN",
                (char *) "--cap-add",
                (char *) "CAP_DAC_OVERRIDE",
                (char *) "--cap-add",
                (char *) "CAP_FOWNER",
                (char *) "--cap-add",
                (char *) "CAP_KILL",
                /* SETPCAP only lets the proxy empty the bounding set of each command child
                 * (PR_CAPBSET_DROP) before it execs, as it does in the guest. */
                (char *) "--cap-add",
                (char *) "CAP_SETPCAP",
                (char *) "--",
                (char *) "/nucleus/nucleus-tool-proxy",
                (char *) "--fd",
                (char *) "3",
                (char *) "--workspace",
                (char *) "/workspace",
                (char *) "--agent-user",
                (char *) "1000:1000",
                (char *) "--state-dir",
                (char *) "/run/nucleus",
                NULL,
        };

        /* The far end must survive exec in the child: vmm_spawn moves it to fd 3 without CLOEXEC. */
        /* bwrap sets up the namespaces and the proxy's capability set itself and needs root to do
         * so: the dedicated VMM user is for QEMU/Firecracker, not for this driver. */
        VmmLaunch as_root = *l;
        as_root.run_uid = 0;
        as_root.run_gid = 0;
        r = local_spawn_kept(vm, &as_root, argv, logfd, guest_end, &vm->pid);
        if (r < 0) {
                *reterr = xasprintf("cannot start bubblewrap: %s", strerror(-r));
                return r;
        }
        vm->channel_fd = TAKE_FD(node_end);
        vm->accel = xstrdup("none (local driver: host kernel, weaker isolation)");
        return 0;
}

static int local_connect(Vmm *vm, usec_t timeout, int *ret_fd, char **reterr) {
        if (vm->channel_fd < 0) {
                *reterr = xstrdup("channel already taken");
                return -EBADF;
        }
        *ret_fd = TAKE_FD(vm->channel_fd);
        return 0;
}

static void local_cleanup(Vmm *vm) {
        /* bwrap is reaped by now: let its keeper thread end. The workspace is removed by the
         * pod layer together with the rest of the pod dir. */
        local_keeper_release(vm);
}

static void local_free_data(Vmm *vm) {
        local_keeper_release(vm);
}

const VmmOps vmm_local_ops = {
        .name = "local",
        .weak_isolation = true,
        .probe = local_probe,
        .start = local_start,
        .connect = local_connect,
        .cleanup = local_cleanup,
        .free_data = local_free_data,
};
