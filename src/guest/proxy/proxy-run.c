/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The run op: judge argv (or a command string when a shell is granted), then fork a child
 * that confines itself (sandbox.c) and execs the program as the agent user with an
 * environment built from nothing. Output is collected through non-blocking pipes in the
 * event loop, capped, optionally streamed as data frames; the timeout kills the whole
 * process group. Requests are untrusted; so is everything the child writes.
 */
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "log.h"
#include "proxy-path.h"
#include "proxy.h"
#include "sandbox.h"
#include "string-util.h"
#include "words.h"

#define RUN_MAX_ARGS 4096U
#define RUN_MAX_ARGV_BYTES (512U * 1024U)
#define RUN_EXIT_GRACE_USEC (2 * USEC_PER_SEC) /* wait for pipes after the main process exits */
#define RUN_STDIN_MAX (768U * 1024U)

typedef struct OutPipe {
        LoopSource src;
        struct RunJob *job;
        int which;      /* 1 stdout, 2 stderr */
        char *buf;      /* collected (non-stream mode) */
        size_t n;       /* bytes kept */
        uint64_t total; /* bytes produced */
        bool truncated;
        bool open;
} OutPipe;

typedef struct RunJob {
        Job job;
        PidRef pid;    /* the command's PID-namespace init (or the command without PID ns) */
        int status_fd; /* read end: the init writes the command's wait status; -EBADF if none */
        LoopSource pid_src;
        OutPipe out[2];
        bool exited;
        int status;
        bool timed_out, cancelled;
        bool stream;
        usec_t started;
        usec_t deadline;    /* kill at */
        usec_t grace_until; /* after exit: stop waiting for pipes */
        void (*on_done)(Request *req, int status, bool timed_out, const char *out, size_t n); /* custom answer */
        uint64_t cap; /* bytes kept/streamed per pipe */
} RunJob;

static void run_job_free(Job *j) {
        RunJob *rj = (RunJob *) j;
        Proxy *p = j->proxy;
        for (int i = 0; i < 2; i++) {
                if (rj->out[i].open) {
                        proxy_loop_del(p, &rj->out[i].src);
                        rj->out[i].src.fd = safe_close(rj->out[i].src.fd);
                }
                free(rj->out[i].buf);
        }
        safe_close(rj->status_fd);
        if (pidref_is_set(&rj->pid)) {
                if (!rj->exited) {
                        (void) kill(-rj->pid.pid, SIGKILL);
                        (void) pidref_kill(&rj->pid, SIGKILL);
                }
                if (rj->pid_src.fd >= 0)
                        proxy_loop_del(p, &rj->pid_src);
                if (!rj->exited)
                        (void) waitpid(rj->pid.pid, NULL, 0);
                pidref_done(&rj->pid);
        }
        request_free(j->req);
        free(rj);
}

static void run_finish(RunJob *rj) {
        Proxy *p = rj->job.proxy;
        Request *req = TAKE_PTR(rj->job.req);
        usec_t dur = now_usec(CLOCK_MONOTONIC) - rj->started;
        uint64_t secs = (dur + USEC_PER_SEC - 1) / USEC_PER_SEC;

        request_settle(req, p->cfg.costs.base_usd_micros + secs * p->cfg.costs.run_usd_micros_per_second);
        if (rj->on_done) {
                rj->on_done(
                        req, rj->status, rj->timed_out || rj->cancelled, rj->out[0].buf ?: "", rj->out[0].n);
                goto cleanup;
        }

        json_t *j = json_object();
        if (WIFEXITED(rj->status)) {
                json_object_set_new(j, "exit_code", json_integer(WEXITSTATUS(rj->status)));
                json_object_set_new(j, "signal", json_null());
        } else {
                json_object_set_new(j, "exit_code", json_null());
                json_object_set_new(
                        j, "signal", json_integer(WIFSIGNALED(rj->status) ? WTERMSIG(rj->status) : 0));
        }
        json_object_set_new(
                j,
                "success",
                json_boolean(WIFEXITED(rj->status) && WEXITSTATUS(rj->status) == 0 && !rj->timed_out));
        json_object_set_new(j, "timed_out", json_boolean(rj->timed_out));
        json_object_set_new(j, "cancelled", json_boolean(rj->cancelled));
        json_object_set_new(j, "duration_ms", json_integer((json_int_t) (dur / USEC_PER_MSEC)));
        json_object_set_new(j, "stdout_bytes", json_integer((json_int_t) rj->out[0].total));
        json_object_set_new(j, "stderr_bytes", json_integer((json_int_t) rj->out[1].total));
        json_object_set_new(j, "truncated", json_boolean(rj->out[0].truncated || rj->out[1].truncated));
        if (!rj->stream) {
                json_set_bytes(j, "stdout", rj->out[0].buf ?: "", rj->out[0].n);
                json_set_bytes(j, "stderr", rj->out[1].buf ?: "", rj->out[1].n);
                /* Escaped control characters can blow up a JSON string: fall back to base64. */
                _cleanup_free_ char *dump = json_dumps(j, JSON_COMPACT);
                if (dump && strlen(dump) > PROTO_MAX_PAYLOAD - 4096) {
                        json_object_del(j, "stdout");
                        json_object_del(j, "stderr");
                        _cleanup_free_ char *a = base64_encode(rj->out[0].buf ?: "", rj->out[0].n);
                        _cleanup_free_ char *b = base64_encode(rj->out[1].buf ?: "", rj->out[1].n);
                        json_object_set_new(j, "stdout_base64", json_string(a));
                        json_object_set_new(j, "stderr_base64", json_string(b));
                }
        } else
                proxy_send(p, FRAME_END, req->stream_id, NULL, 0);
        request_finish(req, j);
cleanup:
        for (int i = 0; i < 2; i++)
                if (rj->out[i].open) {
                        proxy_loop_del(p, &rj->out[i].src);
                        rj->out[i].src.fd = safe_close(rj->out[i].src.fd);
                        rj->out[i].open = false;
                }
        proxy_remove_job(p, &rj->job);
}

static void run_maybe_finish(RunJob *rj) {
        if (!rj->exited)
                return;
        if (rj->out[0].open || rj->out[1].open) {
                if (now_usec(CLOCK_MONOTONIC) < rj->grace_until)
                        return;
                /* Something escaped the process group and holds the pipes: stop reading. */
                for (int i = 0; i < 2; i++)
                        if (rj->out[i].open) {
                                proxy_loop_del(rj->job.proxy, &rj->out[i].src);
                                rj->out[i].src.fd = safe_close(rj->out[i].src.fd);
                                rj->out[i].open = false;
                        }
        }
        run_finish(rj);
}

static void pipe_event(Proxy *p, LoopSource *s, uint32_t events) {
        OutPipe *o = s->userdata;
        RunJob *rj = o->job;
        char buf[64 * 1024];
        if (s->fd < 0 || !rj->job.req)
                return; /* finished earlier in this loop iteration */
        for (int rounds = 0; rounds < 8; rounds++) {
                ssize_t k = read(s->fd, buf, sizeof buf);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return;
                        k = 0;
                }
                if (k == 0) {
                        proxy_loop_del(p, s);
                        s->fd = safe_close(s->fd);
                        o->open = false;
                        run_maybe_finish(rj);
                        return;
                }
                o->total += (uint64_t) k;
                size_t keep = 0;
                if (o->n < rj->cap)
                        keep = (size_t) NUCLEUS_MIN((uint64_t) k, rj->cap - o->n);
                if (keep < (size_t) k)
                        o->truncated = true;
                if (keep == 0)
                        continue; /* drain and discard */
                if (rj->stream) {
                        /* Data frame: one byte naming the stream (1 stdout, 2 stderr), then bytes. */
                        char frame[1 + sizeof buf];
                        frame[0] = (char) o->which;
                        memcpy(frame + 1, buf, keep);
                        proxy_send(p, FRAME_DATA, rj->job.req->stream_id, frame, keep + 1);
                        o->n += keep;
                } else {
                        o->buf = xrealloc(o->buf, o->n + keep);
                        memcpy(o->buf + o->n, buf, keep);
                        o->n += keep;
                }
        }
}

static void reap(RunJob *rj) {
        int status;
        pid_t r = waitpid(rj->pid.pid, &status, WNOHANG);
        if (r <= 0)
                return;
        rj->exited = true;
        rj->status = status;
        if (rj->status_fd >= 0) {
                /* The init exited normally after the command did: report the command's status.
                 * Killed init (timeout/cancel) wrote nothing: keep its SIGKILL status. */
                int cst;
                if (WIFEXITED(status) && read(rj->status_fd, &cst, sizeof cst) == (ssize_t) sizeof cst)
                        rj->status = cst;
                rj->status_fd = safe_close(rj->status_fd);
        }
        /* Whatever the command left behind in its session dies with it. */
        (void) kill(-rj->pid.pid, SIGKILL);
        rj->grace_until = now_usec(CLOCK_MONOTONIC) + RUN_EXIT_GRACE_USEC;
        if (rj->pid_src.fd >= 0) {
                proxy_loop_del(rj->job.proxy, &rj->pid_src);
                rj->pid_src.fd = -EBADF;
        }
        run_maybe_finish(rj);
}

static void pid_event(Proxy *p, LoopSource *s, uint32_t events) {
        RunJob *rj = s->userdata;
        if (rj->exited || !rj->job.req)
                return;
        reap(rj);
}

static void run_on_frame(Job *j, Frame *f) {
        RunJob *rj = (RunJob *) j;
        if (f->type == FRAME_CANCEL && !rj->exited) {
                rj->cancelled = true;
                (void) kill(-rj->pid.pid, SIGKILL);
                (void) pidref_kill(&rj->pid, SIGKILL);
        }
}

usec_t proxy_jobs_next_deadline(Proxy *p) {
        usec_t next = USEC_INFINITY;
        for (Job *j = p->jobs; j; j = j->next) {
                if (j->free != run_job_free)
                        continue;
                RunJob *rj = (RunJob *) j;
                usec_t t = rj->exited ? rj->grace_until : rj->deadline;
                if (!rj->exited && rj->pid.fd < 0)
                        t = now_usec(CLOCK_MONOTONIC) + 50 * USEC_PER_MSEC; /* no pidfd: poll */
                if (t < next)
                        next = t;
        }
        return next;
}

void proxy_jobs_tick(Proxy *p) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        Job *j = p->jobs;
        while (j) {
                Job *next = j->next;
                if (j->free == run_job_free) {
                        RunJob *rj = (RunJob *) j;
                        if (!rj->exited && now >= rj->deadline && !rj->timed_out) {
                                rj->timed_out = true;
                                (void) kill(-rj->pid.pid, SIGKILL);
                                (void) pidref_kill(&rj->pid, SIGKILL);
                        }
                        if (!rj->exited && rj->pid.fd < 0)
                                reap(rj);
                        else if (rj->exited)
                                run_maybe_finish(rj);
                }
                j = next;
        }
}

/* Environment from nothing: fixed PATH/HOME/LANG/TERM/USER plus configure's values. */
static char **build_env(Proxy *p) {
        char **env = NULL;
        strv_extend(&env, "PATH=" RUN_DEFAULT_PATH);
        strv_consume(&env, xasprintf("HOME=%s", p->agent_home));
        strv_extend(&env, "LANG=C.UTF-8");
        strv_extend(&env, "TERM=dumb");
        strv_extend(&env, "USER=agent");
        strv_extend(&env, "LOGNAME=agent");
        STRV_FOREACH(e, p->cfg.env)
                strv_extend(&env, *e);
        /* At the execution layer: git (run directly, under a wrapper, from a script, by
         * make or a test runner) ignores system/global config and cannot be told by any
         * repository config, gitdir pointer or commondir to run a program; discovery stops at
         * the workspace. Every command gets it: configure.env can never carry GIT_* names
         * (policy_env_name_allowed), so nothing overrides it. */
        for (const char *const *g = policy_git_hardening_env(); *g; g++)
                strv_extend(&env, *g);
        _cleanup_free_ char *ceiling = xstrdup(p->workspace_real);
        char *slash = strrchr(ceiling, '/');
        if (slash)
                *(slash == ceiling ? slash + 1 : slash) = 0;
        strv_consume(&env, xasprintf("GIT_CEILING_DIRECTORIES=%s", ceiling));
        return env;
}

int request_argv(Request *req, json_t *ja, size_t max_args, size_t max_bytes, char ***ret) {
        size_t i, total = 0;
        json_t *e;
        _cleanup_strv_free_ char **argv = NULL;
        if (!json_is_array(ja) || json_array_size(ja) == 0 || json_array_size(ja) > max_args) {
                request_fail(
                        req,
                        ERROR_KIND_INVALID_REQUEST,
                        "%s: 'argv' must be an array of 1..%zu strings",
                        req->op,
                        max_args);
                return -EINVAL;
        }
        json_array_foreach(ja, i, e) {
                if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e)) {
                        request_fail(
                                req,
                                ERROR_KIND_INVALID_REQUEST,
                                "%s: argv[%zu] must be a string without NUL",
                                req->op,
                                i);
                        return -EINVAL;
                }
                total += json_string_length(e) + 1;
                strv_extend(&argv, json_string_value(e));
        }
        if (total > max_bytes || streq(argv[0], "")) {
                request_fail(req, ERROR_KIND_INVALID_REQUEST, "%s: argv is empty or too long", req->op);
                return -EINVAL;
        }
        *ret = TAKE_PTR(argv);
        return 0;
}

static json_t *argv_json(char **argv) {
        json_t *a = json_array();
        STRV_FOREACH(s, argv)
                json_array_append_new(a, json_string(*s));
        return a;
}

_noreturn_ static void child_fail(int errfd, const char *step, int r) {
        char msg[256];
        int n = snprintf(msg, sizeof msg, "%d %s", -r, step);
        if (n > 0)
                (void) !write(errfd, msg, (size_t) NUCLEUS_MIN(n, (int) sizeof msg - 1));
        _exit(127);
}

/* The confined command: stdio in place, cwd, sandbox, exec. Reports failures on errfd. */
_noreturn_ static void command_child(
        int po[2], int pe[2], int errfd, int stdin_fd, int cwd_fd, const SandboxParams *sp, char **argv, char **env) {
        const char *step = NULL;
        int r;
        if (dup2(stdin_fd, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0)
                child_fail(errfd, "dup2", -errno);
        (void) fd_set_nonblock(1, false);
        (void) fd_set_nonblock(2, false);
        if (fchdir(cwd_fd) < 0)
                child_fail(errfd, "chdir", -errno);
        r = sandbox_apply(sp, &step);
        if (r < 0)
                child_fail(errfd, step, r);
        extern char **environ;
        environ = env;
        execvp(argv[0], argv);
        child_fail(errfd, "exec", -errno);
}

/* PID 1 of the command's namespace (see proxy_spawn): fork the command, reap whatever
 * reparents to us, and when the command itself exits write its raw wait status (int) to
 * status_fd and exit, which makes the kernel kill the rest of the namespace. Signals from
 * inside the namespace cannot reach us (init without handlers; and the command is another
 * uid). PR_SET_PDEATHSIG: if the proxy dies, so does the namespace. */
_noreturn_ static void
        ns_init(int po[2],
                int pe[2],
                int errfd,
                int status_fd,
                int stdin_fd,
                int cwd_fd,
                const SandboxParams *sp,
                char **argv,
                char **env) {
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        /* Under memory pressure the kernel picks a command tree first (inherited by
         * the command; killing this init then kills the whole namespace). Best effort. */
        int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (oom >= 0) {
                (void) !write(oom, "1000", 4);
                (void) close(oom);
        }
        pid_t c = fork();
        if (c < 0)
                child_fail(errfd, "fork", -errno);
        if (c == 0) {
                safe_close(status_fd);
                command_child(po, pe, errfd, stdin_fd, cwd_fd, sp, argv, env);
        }
        /* Hold nothing the proxy waits on: output pipes and the exec error pipe must see EOF
         * when the command (tree) is gone; our stdio may be the proxy's channel. */
        int keep[1] = { status_fd };
        (void) fd_close_all_from(3, keep, 1);
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (nul >= 0) {
                (void) dup2(nul, 0), (void) dup2(nul, 1), (void) dup2(nul, 2);
                if (nul > 2)
                        (void) close(nul);
        }
        for (;;) {
                int st;
                pid_t w = waitpid(-1, &st, 0);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        _exit(127);
                if (w == c) {
                        (void) !write(status_fd, &st, sizeof st);
                        _exit(0);
                }
        }
}

/* Issue 14: a program that is not installed is reported as not_found, not judged (and counted)
 * as a denial. Only names the proxy can resolve without the agent's tree: a bare name along the
 * commands' PATH, or an absolute path outside the workspace. */
static bool program_missing(Proxy *p, const char *prog) {
        struct stat st;
        if (isempty(prog) || strlen(prog) >= PATH_MAX)
                return false;
        if (prog[0] == '/') {
                const char *in = startswith(prog, p->workspace_real);
                if (in && (in[0] == '/' || in[0] == 0))
                        return false;
                return stat(prog, &st) < 0 && errno == ENOENT;
        }
        if (strchr(prog, '/'))
                return false;
        _cleanup_free_ char *path = xstrdup(RUN_DEFAULT_PATH);
        char *save = NULL;
        for (char *d = strtok_r(path, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                _cleanup_free_ char *f = xasprintf("%s/%s", d, prog);
                if (stat(f, &st) == 0 && S_ISREG(st.st_mode))
                        return false;
        }
        return true;
}

/* The shipped image recipe (nucleus image build --name RECIPE, docs/images.md) that installs
 * prog, for the common toolchains' programs; NULL for others. */
static const char *program_recipe(const char *prog) {
        static const struct {
                const char *prefix; /* a program name, or a prefix ending in '*' */
                const char *recipe;
        } table[] = {
                { "python*", "python" }, { "pip*", "python" }, { "pytest*", "python" }, { "node", "node" },
                { "nodejs", "node" },    { "npm", "node" },    { "npx", "node" },       { "make", "c" },
                { "cc", "c" },           { "gcc*", "c" },      { "g++*", "c" },         { "c++", "c" },
                { "cmake", "c" },        { "ctest", "c" },     { "meson", "c" },        { "ninja", "c" },
                { "cargo", "rust" },     { "rustc", "rust" },  { "go", "go" },          { "gofmt", "go" },
        };
        const char *base = strrchr(prog, '/');
        base = base ? base + 1 : prog;
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                size_t n = strlen(table[i].prefix);
                if (table[i].prefix[n - 1] == '*' ? strncmp(base, table[i].prefix, n - 1) == 0
                                                  : streq(base, table[i].prefix))
                        return table[i].recipe;
        }
        return NULL;
}

static bool request_program_missing(Request *req, const char *prog) {
        if (!program_missing(req->proxy, prog))
                return false;
        _cleanup_free_ char *vis = string_make_visible(prog);
        const char *recipe = program_recipe(prog);
        if (recipe)
                request_fail(
                        req,
                        ERROR_KIND_NOT_FOUND,
                        "run: '%s' is not installed in this pod's image (not a policy denial); the %s "
                        "image has it: nucleus image build --name %s, then nucleus run --image %s",
                        vis,
                        recipe,
                        recipe,
                        recipe);
        else
                request_fail(
                        req,
                        ERROR_KIND_NOT_FOUND,
                        "run: '%s' is not installed in this pod's image (not a policy denial); use an image "
                        "that has it: nucleus image build --name NAME --packages PACKAGE, then nucleus run "
                        "--image NAME",
                        vis);
        return true;
}

void op_run(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { "argv",   "command",      "cwd",
                                            "stdin",  "stdin_base64", "timeout_seconds",
                                            "stream", "env",          NULL };
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *cwd_rel = NULL;
        _cleanup_free_ uint8_t *stdin_data = NULL;
        _cleanup_close_ int cwd_fd = -EBADF;
        const char *command = NULL, *cwd = NULL, *in_s = NULL, *in_b64 = NULL;
        size_t stdin_n = 0;
        uint64_t timeout_s;
        bool stream;
        int r;

        if (args_check_keys(req, keys) < 0 || args_get_string(req, "command", false, &command) < 0 ||
            args_get_string(req, "cwd", false, &cwd) < 0 || args_get_string(req, "stdin", false, &in_s) < 0 ||
            args_get_string(req, "stdin_base64", false, &in_b64) < 0 ||
            args_get_u64(
                    req,
                    "timeout_seconds",
                    p->cfg.limits.default_command_timeout / USEC_PER_SEC,
                    p->cfg.limits.max_command_timeout / USEC_PER_SEC,
                    &timeout_s) < 0 ||
            args_get_bool(req, "stream", false, &stream) < 0)
                return;
        if (timeout_s == 0)
                timeout_s = 1;
        json_t *ja = json_object_get(req->args, "argv");
        if (!!ja == !!command) {
                request_fail(
                        req,
                        ERROR_KIND_INVALID_REQUEST,
                        "run: exactly one of 'argv' (array) or 'command' (string) is required");
                return;
        }

        /* A request cannot smuggle variables into the child. Only names configured by
         * the node (configure.env) reach it; the request's env may only repeat those. */
        json_t *jenv = json_object_get(req->args, "env");
        if (jenv) {
                const char *k;
                json_t *v;
                if (!json_is_object(jenv)) {
                        request_fail(req, ERROR_KIND_INVALID_REQUEST, "run: 'env' must be an object");
                        return;
                }
                json_object_foreach(jenv, k, v) {
                        _cleanup_free_ char *vis = string_make_visible(k);
                        request_fail(
                                req,
                                ERROR_KIND_COMMAND_DENIED,
                                "run: environment variable '%s' may not be set by a request; the pod's spec "
                                "decides the environment",
                                vis);
                        return;
                }
        }

        /* cwd beneath the workspace (lexically first: argument paths are judged relative to it). */
        ErrorKind ek;
        _cleanup_free_ char *emsg = NULL;
        if (proxy_path_normalize(p, cwd ?: ".", &cwd_rel, &ek, &emsg) < 0) {
                request_fail(req, ek, "run: cwd: %s", emsg);
                return;
        }

        /* Judge the command. */
        PolicyDecision d = {};
        if (request_check_deadline(req) < 0)
                return;
        if (ja) {
                if (request_argv(req, ja, RUN_MAX_ARGS, RUN_MAX_ARGV_BYTES, &argv) < 0)
                        return;
                if (request_program_missing(req, argv[0]))
                        return;
                r = policy_check_command_at(p->cfg.policy, argv, cwd_rel, &d);
        } else {
                if (strlen(command) > WORDS_MAX_INPUT) {
                        request_fail(req, ERROR_KIND_TOO_LARGE, "run: command string too long");
                        return;
                }
                _cleanup_strv_free_ char **first = NULL;
                unsigned meta = 0;
                if (words_split(command, &first, &meta) == 0 && first[0] &&
                    !(meta &
                      (WORDS_META_SEPARATOR | WORDS_META_REDIRECT | WORDS_META_SUBST | WORDS_META_NEWLINE |
                       WORDS_META_SUBSHELL)) &&
                    request_program_missing(req, first[0]))
                        return;
                r = policy_check_command_string(p->cfg.policy, command, &d);
                if (r >= 0 && d.verdict != POLICY_DENY) {
                        if (policy_grants_shell(p->cfg.policy)) {
                                strv_extend(&argv, "/bin/sh");
                                strv_extend(&argv, "-c");
                                strv_extend(&argv, command);
                        } else if (words_split(command, &argv, NULL) < 0 || strv_length(argv) == 0) {
                                policy_decision_done(&d);
                                request_fail(req, ERROR_KIND_COMMAND_DENIED, "run: malformed command string");
                                return;
                        }
                }
        }
        if (r < 0) {
                request_fail(req, ERROR_KIND_INTERNAL, "run: policy check failed");
                return;
        }
        if (argv) {
                json_t *a = argv_json(argv);
                (void) approval_args_sha256(a, req->approval_args);
                json_decref(a);
        }

        cwd_fd = proxy_openat2(p, -1, cwd_rel, O_RDONLY | O_DIRECTORY, 0, 0);
        if (cwd_fd < 0) {
                policy_decision_done(&d);
                _cleanup_free_ char *vis = string_make_visible(cwd_rel);
                ErrorKind k = proxy_errno_kind(cwd_fd);
                request_fail(
                        req,
                        k,
                        "run: cwd '%s': %s",
                        vis,
                        k == ERROR_KIND_SANDBOX_ESCAPE ? "sandbox escape" : strerror(-cwd_fd));
                return;
        }

        if (in_s && in_b64) {
                policy_decision_done(&d);
                request_fail(req, ERROR_KIND_INVALID_REQUEST, "run: give 'stdin' or 'stdin_base64', not both");
                return;
        }
        if (in_b64) {
                r = base64_decode(in_b64, strlen(in_b64), RUN_STDIN_MAX, &stdin_data, &stdin_n);
                if (r < 0) {
                        policy_decision_done(&d);
                        request_fail(req, ERROR_KIND_INVALID_REQUEST, "run: bad stdin_base64");
                        return;
                }
        } else if (in_s) {
                stdin_n = strlen(in_s);
                stdin_data = xmemdup(in_s, stdin_n);
        }
        /* Programs that read commands from stdin (database shells: psql '\!', mysql 'system')
         * would run whatever the request's stdin says, which the command analysis never sees.
         * Without a shell grant, such a program gets no stdin from the request at all. */
        if (stdin_data && argv && policy_command_stdin_is_code(p->cfg.policy, argv) &&
            !policy_grants_shell(p->cfg.policy)) {
                policy_decision_done(&d);
                request_fail(
                        req,
                        ERROR_KIND_COMMAND_DENIED,
                        "run: '%s' reads commands from stdin, and this policy grants no shell",
                        argv[0]);
                return;
        }

        /* Issue 13: git reads the configuration of the repositories in the workspace, which
         * any program the agent ran may have written; refuse while a key outside the git
         * configuration allow list is present (a shell grant can hide git in a script). */
        if (argv && d.verdict != POLICY_DENY &&
            (policy_command_runs_git(p->cfg.policy, argv) || policy_grants_shell(p->cfg.policy))) {
                _cleanup_free_ char *why = NULL;
                if (proxy_git_config_check(p, &why) < 0) {
                        policy_decision_done(&d);
                        request_fail(req, ERROR_KIND_COMMAND_DENIED, "run: git configuration refused: %s", why);
                        return;
                }
        }

        if (p->n_jobs >= p->cfg.limits.max_concurrent_jobs) {
                policy_decision_done(&d);
                request_fail(req, ERROR_KIND_CAPACITY, "run: %u commands are already running", p->n_jobs);
                return;
        }

        /* The pod deadline bounds every command. */
        usec_t timeout = timeout_s * USEC_PER_SEC, left = time_window_remaining(&p->window);
        if (left < timeout)
                timeout = left;
        uint64_t reserve = p->cfg.costs.base_usd_micros +
                ((timeout + USEC_PER_SEC - 1) / USEC_PER_SEC) * p->cfg.costs.run_usd_micros_per_second;
        if (request_gate(req, &d, reserve) < 0)
                return;

        r = proxy_spawn(
                req, argv, cwd_fd, stdin_data, stdin_n, timeout, stream, NULL, p->cfg.limits.max_output_bytes);
        (void) r;
}

int proxy_spawn(
        Request *req,
        char **argv,
        int cwd_fd,
        const void *stdin_data,
        size_t stdin_n,
        usec_t timeout,
        bool stream,
        void (*on_done)(Request *req, int status, bool timed_out, const char *out, size_t n),
        uint64_t cap) {
        Proxy *p = req->proxy;
        _cleanup_strv_free_ char **env = NULL;
        _cleanup_close_ int stdin_fd = -EBADF;

        /* stdin: a sealed memfd, or /dev/null. */
        if (stdin_data) {
                stdin_fd = memfd_create("nucleus-stdin", MFD_CLOEXEC);
                if (stdin_fd < 0 || loop_write(stdin_fd, stdin_data, stdin_n) < 0 ||
                    lseek(stdin_fd, 0, SEEK_SET) < 0) {
                        request_fail(req, ERROR_KIND_IO_ERROR, "run: cannot prepare stdin");
                        return -EIO;
                }
        } else {
                stdin_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (stdin_fd < 0) {
                        request_fail(req, ERROR_KIND_IO_ERROR, "run: /dev/null: %m");
                        return -EIO;
                }
        }
        int po[2], pe[2], perr[2];
        if (pipe2(po, O_CLOEXEC | O_NONBLOCK) < 0) {
                request_fail(req, ERROR_KIND_IO_ERROR, "run: pipe: %m");
                return -EIO;
        }
        if (pipe2(pe, O_CLOEXEC | O_NONBLOCK) < 0) {
                safe_close(po[0]), safe_close(po[1]);
                request_fail(req, ERROR_KIND_IO_ERROR, "run: pipe: %m");
                return -EIO;
        }
        if (pipe2(perr, O_CLOEXEC) < 0) {
                safe_close(po[0]), safe_close(po[1]), safe_close(pe[0]), safe_close(pe[1]);
                request_fail(req, ERROR_KIND_IO_ERROR, "run: pipe: %m");
                return -EIO;
        }
        env = build_env(p);
        SandboxParams sp = {
                .uid = p->agent_uid,
                .gid = p->agent_gid,
                .workspace = p->workspace_real,
                .rlimit_nproc = p->cfg.limits.rlimit_nproc,
                .rlimit_nofile = p->cfg.limits.rlimit_nofile,
                .rlimit_fsize = p->cfg.limits.rlimit_fsize,
                .rlimit_as = p->cfg.limits.rlimit_as,
                .rlimit_cpu_seconds = timeout / USEC_PER_SEC + 5,
                .keep_fd = perr[1],
        };

        /* Status pipe: the namespace init reports the command's wait status through it. */
        int pst[2];
        if (pipe2(pst, O_CLOEXEC | O_NONBLOCK) < 0) {
                safe_close(po[0]), safe_close(po[1]), safe_close(pe[0]), safe_close(pe[1]);
                safe_close(perr[0]), safe_close(perr[1]);
                request_fail(req, ERROR_KIND_IO_ERROR, "run: pipe: %m");
                return -EIO;
        }

        /* Every command gets its own PID namespace. Our direct child is the namespace's
         * init (still root, never execs); it forks the confined command and exits when that
         * command exits. The kernel then SIGKILLs everything left in the namespace (setsid()
         * or double-fork cannot escape, unlike a process-group kill) and the init's exit is
         * only reported once all of them are gone, so billing covers the whole tree. Timeout
         * and cancel SIGKILL the init from outside, with the same effect. The command itself
         * cannot create namespaces (seccomp). */
        bool in_ns = true;
        pid_t pid = (pid_t) syscall(
                SYS_clone, (unsigned long) (CLONE_NEWPID | SIGCHLD), NULL, NULL, NULL, NULL);
        if (pid < 0 && (errno == EINVAL || errno == EPERM || errno == ENOSPC || errno == EUSERS)) {
                /* Kernel without CONFIG_PID_NS (EINVAL), or a proxy without CAP_SYS_ADMIN: the
                 * `local` driver runs us in bubblewrap with capabilities dropped (EPERM); there
                 * the whole sandbox is already one PID namespace that dies with the pod.
                 * Fall back to the process-group kill, and say so once. */
                static bool warned = false;
                if (!warned)
                        log_warning_errno(
                                errno,
                                "Cannot give commands their own PID namespace (%m): command "
                                "descendants may outlive a run (process-group kill only)");
                warned = true;
                in_ns = false;
                p->commands_share_pid_ns = true;
                pid = fork();
        }
        if (pid < 0) {
                safe_close(po[0]), safe_close(po[1]), safe_close(pe[0]), safe_close(pe[1]);
                safe_close(perr[0]), safe_close(perr[1]), safe_close(pst[0]), safe_close(pst[1]);
                request_fail(req, ERROR_KIND_IO_ERROR, "run: fork: %m");
                return -EIO;
        }
        if (pid == 0) {
                (void) signal(SIGPIPE, SIG_DFL);
                sigset_t all;
                sigemptyset(&all);
                (void) sigprocmask(SIG_SETMASK, &all, NULL);
                if (in_ns) {
                        safe_close(pst[0]);
                        ns_init(po, pe, perr[1], pst[1], stdin_fd, cwd_fd, &sp, argv, env);
                }
                safe_close(pst[1]);
                command_child(po, pe, perr[1], stdin_fd, cwd_fd, &sp, argv, env);
        }
        safe_close(pst[1]);
        safe_close(po[1]);
        safe_close(pe[1]);
        safe_close(perr[1]);
        /* Exec succeeded iff the CLOEXEC error pipe reads EOF. */
        char ebuf[256];
        ssize_t en;
        do
                en = read(perr[0], ebuf, sizeof ebuf - 1);
        while (en < 0 && errno == EINTR);
        safe_close(perr[0]);
        if (en > 0) {
                ebuf[en] = 0;
                int err = atoi(ebuf);
                const char *step = strchr(ebuf, ' ');
                (void) waitpid(pid, NULL, 0);
                safe_close(po[0]), safe_close(pe[0]), safe_close(pst[0]);
                _cleanup_free_ char *vis = string_make_visible(argv[0]);
                request_settle(req, p->cfg.costs.base_usd_micros);
                if (step && streq(step + 1, "exec") && (err == ENOENT || err == EACCES))
                        request_fail(
                                req, ERROR_KIND_NOT_FOUND, "run: cannot execute '%s': %s", vis, strerror(err));
                else
                        request_fail(
                                req,
                                ERROR_KIND_IO_ERROR,
                                "run: sandbox step '%s' failed: %s",
                                step ? step + 1 : "?",
                                strerror(err));
                return -EIO;
        }

        RunJob *rj = xnew0(RunJob, 1);
        rj->job = (Job){ .proxy = p, .req = req, .on_frame = run_on_frame, .free = run_job_free };
        rj->stream = stream;
        rj->started = now_usec(CLOCK_MONOTONIC);
        rj->deadline = rj->started + timeout;
        rj->cap = stream ? cap * 16 : cap;
        rj->on_done = on_done;
        rj->status_fd = in_ns ? pst[0] : safe_close(pst[0]);
        (void) pidref_set_pid(&rj->pid, pid);
        rj->pid_src = (LoopSource){ .fd = rj->pid.fd, .callback = pid_event, .userdata = rj };
        if (rj->pid.fd >= 0 && proxy_loop_add(p, &rj->pid_src, EPOLLIN) < 0)
                rj->pid_src.fd = -EBADF;
        int fds[2] = { po[0], pe[0] };
        for (int i = 0; i < 2; i++) {
                rj->out[i] = (OutPipe){ .job = rj, .which = i + 1, .open = true };
                rj->out[i].src = (LoopSource){ .fd = fds[i], .callback = pipe_event, .userdata = &rj->out[i] };
                (void) proxy_loop_add(p, &rj->out[i].src, EPOLLIN);
        }
        proxy_add_job(p, &rj->job);
        log_debug("%s [%u]: started pid %d", req->op, req->stream_id, (int) pid);
        return 0;
}
