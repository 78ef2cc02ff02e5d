/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Local node management shared by setup/start/stop/doctor (see cli-node.h). The daemon gets an
 * environment built from nothing and no secrets: it reads them from the files its config
 * names. Pid files are trusted only after /proc/<pid>/exe confirms the process is
 * nucleus-node.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-lima.h"
#include "cli-files.h"
#include "cli-node.h"
#include "client-paths.h"
#include "fd-util.h"
#include "log.h"
#include "nucleus-config.h"
#include "parse-util.h"
#include "process-util.h"
#include "string-util.h"

static const char *const node_mode_table[_NODE_MODE_MAX] = {
        [NODE_MODE_DAEMON] = "daemon",
        [NODE_MODE_SYSTEMD] = "systemd",
        [NODE_MODE_LIMA] = "lima",
};
DEFINE_STRING_TABLE_LOOKUP(node_mode, NodeMode);

static char *const clean_env[] = {
        (char *) "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        (char *) "LANG=C.UTF-8",
        NULL,
};

NodeMode cli_node_mode(void) {
        if (cli_platform_is_darwin())
                return NODE_MODE_LIMA;
        if (cli_have_systemd() && access(CLI_SYSTEMD_UNIT_PATH, F_OK) == 0)
                return NODE_MODE_SYSTEMD;
        return NODE_MODE_DAEMON;
}

bool cli_have_systemd(void) {
        return access("/run/systemd/system", F_OK) == 0;
}

static bool is_executable(const char *p) {
        struct stat st;
        return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

int cli_find_program(const char *name, char **ret) {
        const char *path = secure_getenv("PATH");
        if (strchr(name, '/')) {
                if (!is_executable(name))
                        return -ENOENT;
                *ret = xstrdup(name);
                return 0;
        }
        _cleanup_free_ char *copy = xstrdup(
                isempty(path) ? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" : path);
        /* Also the sbin dirs: nft, mkfs.ext4 and dnsmasq live there and a user PATH may lack them. */
        _cleanup_free_ char *all = xasprintf("%s:/usr/local/sbin:/usr/sbin:/sbin", copy);
        char *save = NULL;
        for (char *d = strtok_r(all, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                if (d[0] != '/')
                        continue;
                _cleanup_free_ char *p = xasprintf("%s/%s", d, name);
                if (is_executable(p)) {
                        *ret = TAKE_PTR(p);
                        return 0;
                }
        }
        return -ENOENT;
}

int cli_find_node_binary(char **ret) {
        const char *e = secure_getenv("NUCLEUS_NODE_BINARY");
        char self[PATH_MAX];
        ssize_t n;

        if (!isempty(e)) {
                if (!is_executable(e))
                        return -ENOENT;
                *ret = xstrdup(e);
                return 0;
        }
        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = 0;
                char *slash = strrchr(self, '/');
                if (slash) {
                        *slash = 0;
                        const char *cands[] = { "nucleus-node",
                                                "../node/nucleus-node",
                                                "../libexec/nucleus/nucleus-node" };
                        for (size_t i = 0; i < ELEMENTSOF(cands); i++) {
                                _cleanup_free_ char *p = xasprintf("%s/%s", self, cands[i]);
                                char real[PATH_MAX];
                                if (is_executable(p) && realpath(p, real)) {
                                        *ret = xstrdup(real);
                                        return 0;
                                }
                        }
                }
        }
        _cleanup_free_ char *lib = xasprintf("%s/nucleus-node", NUCLEUS_LIBEXECDIR);
        if (is_executable(lib)) {
                *ret = TAKE_PTR(lib);
                return 0;
        }
        return cli_find_program("nucleus-node", ret);
}

bool cli_pid_alive(pid_t pid) {
        int status;
        /* Reap it if it is our child and has exited. */
        if (waitpid(pid, &status, WNOHANG) == pid)
                return false;
        return kill(pid, 0) == 0 || errno == EPERM;
}

/* Does `path` (a /proc/PID/exe target, or an argv word) name `exe`? A rebuilt binary shows as
 * "PATH (deleted)". */
static bool path_is(const char *path, const char *exe) {
        const char *rest = startswith(path, exe);
        return rest && (*rest == 0 || streq(rest, " (deleted)"));
}

/* Is pid the node we started from `exe`? Its executable, or (for a script run by an
 * interpreter, as in tests) one of its first two argv words, must be exe. This guards against
 * signalling an unrelated process that reused the pid. */
static bool pid_is_node(pid_t pid, const char *exe) {
        char link[64], target[PATH_MAX];
        _cleanup_free_ char *cmdline = NULL;
        size_t n = 0;

        (void) snprintf(link, sizeof(link), "/proc/%d/exe", (int) pid);
        ssize_t k = readlink(link, target, sizeof(target) - 1);
        if (k > 0) {
                target[k] = 0;
                if (path_is(target, exe))
                        return true;
        }
        (void) snprintf(link, sizeof(link), "/proc/%d/cmdline", (int) pid);
        if (read_full_file_at(AT_FDCWD, link, 8192, &cmdline, &n) < 0 || n == 0)
                return false;
        size_t l0 = strnlen(cmdline, n);
        return path_is(cmdline, exe) || (l0 + 1 < n && path_is(cmdline + l0 + 1, exe));
}

/* The pid file holds "PID\nEXECUTABLE\n" (the absolute path we exec'd). */
int cli_daemon_pid(pid_t *ret_pid) {
        _cleanup_free_ char *pidfile = NULL, *text = NULL;
        size_t n;
        uint32_t pid;
        int r;

        r = client_pid_file(&pidfile);
        if (r < 0)
                return r;
        r = read_full_file_at(AT_FDCWD, pidfile, PATH_MAX + 64, &text, &n);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        char *nl = memchr(text, '\n', n);
        char *exe = nl ? nl + 1 : NULL;
        if (nl)
                *nl = 0;
        if (exe)
                exe[strcspn(exe, "\n")] = 0;
        if (!exe || exe[0] != '/' || safe_atou32(text, &pid) < 0 || pid < 2 || pid > INT32_MAX ||
            !cli_pid_alive((pid_t) pid) || !pid_is_node((pid_t) pid, exe)) {
                log_debug("Removing stale pid file %s", pidfile);
                (void) unlink(pidfile);
                return 0;
        }
        *ret_pid = (pid_t) pid;
        return 1;
}

/* Where the node log ended when cli_daemon_start() started the node: the tail shown after a
 * failed start holds only that run's lines. */
static off_t daemon_log_start = 0;

int cli_daemon_start(const char *node_config, pid_t *ret_pid) {
        _cleanup_free_ char *node = NULL, *pidfile = NULL, *logfile = NULL, *rundir = NULL, *logdir = NULL;
        _cleanup_close_ int logfd = -EBADF, nullfd = -EBADF;
        pid_t pid;
        int r;

        r = cli_daemon_pid(&pid);
        if (r < 0)
                return r;
        if (r > 0) {
                *ret_pid = pid;
                return -EALREADY;
        }
        r = cli_find_node_binary(&node);
        if (r < 0)
                return log_error_errno(
                        r,
                        "nucleus-node not found (looked at $NUCLEUS_NODE_BINARY, next to nucleus, "
                        "%s and $PATH); fix: install it (meson install) or set NUCLEUS_NODE_BINARY",
                        NUCLEUS_LIBEXECDIR);

        if (client_run_dir(&rundir) < 0 || client_log_dir(&logdir) < 0 || client_pid_file(&pidfile) < 0 ||
            client_node_log_file(&logfile) < 0)
                return log_error_errno(
                        -ENOENT, "Cannot locate the state directory: set HOME or NUCLEUS_STATE_DIR");
        /* The state dir itself (the parent of run/ and log/) must stay traversable: the node
         * keeps its pod dirs below it and the VMM user has to reach them. Only run/ and log/
         * are private. */
        r = cli_mkdir_parents_p(rundir, 0755, 0700);
        if (r < 0)
                return log_error_errno(r, "Cannot create %s: %m", rundir);
        r = cli_mkdir_parents_p(logdir, 0755, 0700);
        if (r < 0)
                return log_error_errno(r, "Cannot create %s: %m", logdir);

        logfd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (logfd < 0)
                return log_error_errno(-errno, "Cannot open node log %s: %m", logfile);
        struct stat lst;
        if (fstat(logfd, &lst) == 0)
                daemon_log_start = lst.st_size;
        nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (nullfd < 0)
                return -errno;

        char *argv[] = { node, (char *) "--config", (char *) node_config, NULL };
        log_debug("Starting %s --config %s (log: %s)", node, node_config, logfile);
        pid = fork();
        if (pid < 0)
                return log_error_errno(-errno, "fork: %m");
        if (pid == 0) {
                /* New session: the node must survive the terminal that ran `nucleus start`. */
                (void) setsid();
                if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
                        _exit(127);
                (void) fd_close_all_from(3, NULL, 0);
                (void) umask(077);
                execve(node, argv, clean_env);
                _exit(127);
        }

        /* The pid file is ours alone (0600) and written atomically. */
        _cleanup_free_ char *text = xasprintf("%d\n%s\n", (int) pid, node);
        r = write_file_atomic_at(AT_FDCWD, pidfile, text, strlen(text), 0600);
        if (r < 0) {
                (void) kill(pid, SIGTERM);
                return log_error_errno(r, "Cannot write pid file %s: %m", pidfile);
        }
        *ret_pid = pid;
        return 0;
}

int cli_daemon_stop(bool force, usec_t timeout) {
        _cleanup_free_ char *pidfile = NULL;
        pid_t pid;
        int r;

        r = cli_daemon_pid(&pid);
        if (r <= 0)
                return r;
        (void) client_pid_file(&pidfile);

        if (kill(pid, SIGTERM) < 0 && errno != ESRCH)
                return log_error_errno(-errno, "Cannot signal nucleus-node (pid %d): %m", (int) pid);
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;
        while (cli_pid_alive(pid)) {
                if (now_usec(CLOCK_MONOTONIC) >= deadline) {
                        if (!force)
                                return log_error_errno(
                                        -ETIMEDOUT,
                                        "nucleus-node (pid %d) did not exit within %llu s of SIGTERM; "
                                        "fix: nucleus stop --force",
                                        (int) pid,
                                        (unsigned long long) (timeout / USEC_PER_SEC));
                        log_warning("nucleus-node (pid %d) ignored SIGTERM; sending SIGKILL", (int) pid);
                        (void) kill(pid, SIGKILL);
                        deadline = now_usec(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC;
                        force = false;
                        continue;
                }
                (void) usleep(100 * 1000);
        }
        if (pidfile)
                (void) unlink(pidfile);
        return 1;
}

int cli_node_check(NucleusClient *c, ClientError *reterr) {
        int r;

        r = client_call_json(c, "GET", "/v1/health", NULL, NULL, reterr);
        if (r < 0)
                return r;
        return client_call_json(c, "GET", "/v1/pods", NULL, NULL, reterr);
}

char *cli_node_log_tail(size_t lines) {
        _cleanup_free_ char *logfile = NULL, *text = NULL;
        size_t n;

        if (client_node_log_file(&logfile) < 0)
                return NULL;
        _cleanup_close_ int fd = open(logfile, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return NULL;
        off_t end = lseek(fd, 0, SEEK_END);
        off_t from = end > 16384 ? end - 16384 : 0;
        if (daemon_log_start > from && daemon_log_start <= end)
                from = daemon_log_start;
        (void) lseek(fd, from, SEEK_SET);
        if (read_full_fd(fd, 16384, &text, &n) < 0)
                return NULL;
        while (n > 0 && text[n - 1] == '\n')
                text[--n] = 0;
        /* Keep the last `lines` lines; each is made printable on its own so the newlines stay. */
        size_t seen = 0;
        char *start = text;
        for (char *p = text + n; p > text; p--)
                if (p[-1] == '\n' && ++seen == lines) {
                        start = p;
                        break;
                }
        _cleanup_free_ char *out = xstrdup("");
        char *save = NULL;
        for (char *line = strtok_r(start, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                _cleanup_free_ char *vis = string_make_visible(line), *prev = TAKE_PTR(out);
                out = xasprintf("%s  %s\n", prev, vis);
        }
        return TAKE_PTR(out);
}

int cli_run_capture(char *const argv[], char **ret_stdout, size_t max) {
        return cli_run_capture_env(argv, NULL, ret_stdout, max);
}

int cli_run_capture_env(char *const argv[], char *const envp[], char **ret_stdout, size_t max) {
        _cleanup_close_ int rfd = -EBADF, wfd = -EBADF;
        _cleanup_pidref_kill_ PidRef ref = PIDREF_NULL;
        _cleanup_free_ char *out = NULL, *path = NULL;
        int fds[2], status, r;

        r = cli_find_program(argv[0], &path);
        if (r < 0)
                return r;
        _cleanup_strv_free_ char **args = strv_copy(argv);
        free(args[0]);
        args[0] = xstrdup(path);

        if (ret_stdout) {
                if (pipe2(fds, O_CLOEXEC) < 0)
                        return -errno;
                rfd = fds[0];
                wfd = fds[1];
        }
        /* Never let a helper write to our stdout: it may carry a JSON document. */
        r = spawn_argv(args, envp ?: clean_env, -1, ret_stdout ? wfd : STDERR_FILENO, -1, &ref);
        if (r < 0)
                return r;
        wfd = safe_close(wfd);
        if (ret_stdout) {
                size_t n = 0;
                r = read_full_fd(rfd, max, &out, &n);
                if (r < 0)
                        return r;
        }
        r = pidref_wait(&ref, &status);
        if (r < 0)
                return r;
        pidref_done(&ref);
        if (ret_stdout)
                *ret_stdout = TAKE_PTR(out);
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
