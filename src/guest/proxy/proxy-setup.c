/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The setup step (docs/run.md "Dependencies"): `setup` runs one command the user wrote, before the
 * agent gets control, as the agent user in /workspace with the same confinement as `run` (its
 * own PID namespace, Landlock, seccomp, rlimits, an environment built from nothing) but without
 * the policy's command rules, which judge the agent, not the user. `setup_done` records the
 * baseline again, so what setup installed in the workspace is not part of the exported patch,
 * and ends the setup phase. Only the node sends these (its tool route refuses them), and this
 * proxy refuses them once setup_done ran or any agent operation arrived.
 */
#include <fcntl.h>
#include <string.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "proxy-path.h"
#include "proxy.h"
#include "string-util.h"

#define SETUP_MAX_ARGS 1024U
#define SETUP_MAX_ARGV_BYTES (64U * 1024U)
#define SETUP_TIMEOUT_DEFAULT 600U
#define SETUP_TIMEOUT_MAX 86400U

bool proxy_op_is_setup(const char *op) {
        return streq(op, "setup") || streq(op, "setup_done");
}

static bool setup_refused(Request *req) {
        if (!req->proxy->setup_closed)
                return false;
        request_fail(
                req,
                ERROR_KIND_CONFLICT,
                "%s: the setup phase is over (setup_done ran or the agent already called a tool)",
                req->op);
        return true;
}

void op_setup(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { "argv", "timeout_seconds", NULL };
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_close_ int cwd_fd = -EBADF;
        uint64_t timeout_s;

        if (setup_refused(req) || args_check_keys(req, keys) < 0 ||
            args_get_u64(req, "timeout_seconds", SETUP_TIMEOUT_DEFAULT, SETUP_TIMEOUT_MAX, &timeout_s) < 0 ||
            request_argv(
                    req, json_object_get(req->args, "argv"), SETUP_MAX_ARGS, SETUP_MAX_ARGV_BYTES, &argv) < 0)
                return;
        if (timeout_s == 0)
                timeout_s = 1;
        if (p->n_jobs >= p->cfg.limits.max_concurrent_jobs) {
                request_fail(req, ERROR_KIND_CAPACITY, "setup: %u commands are already running", p->n_jobs);
                return;
        }
        cwd_fd = proxy_openat2(p, -1, ".", O_RDONLY | O_DIRECTORY, 0, 0);
        if (cwd_fd < 0) {
                request_fail(req, ERROR_KIND_IO_ERROR, "setup: workspace: %s", strerror(-cwd_fd));
                return;
        }

        /* The pod deadline bounds the setup too; its cost is counted like any command's. */
        usec_t timeout = timeout_s * USEC_PER_SEC, left = time_window_remaining(&p->window);
        if (left < timeout)
                timeout = left;
        uint64_t reserve = p->cfg.costs.base_usd_micros +
                ((timeout + USEC_PER_SEC - 1) / USEC_PER_SEC) * p->cfg.costs.run_usd_micros_per_second;
        PolicyDecision d = { .verdict = POLICY_ALLOW, .message = xstrdup("setup") };
        if (request_gate(req, &d, reserve) < 0)
                return;
        (void) proxy_spawn(req, argv, cwd_fd, NULL, 0, timeout, false, NULL, p->cfg.limits.max_output_bytes);
}

void op_setup_done(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { NULL };
        _cleanup_free_ char *commit = NULL;

        if (setup_refused(req) || args_check_keys(req, keys) < 0 || request_check_deadline(req) < 0)
                return;
        p->setup_closed = true;
        /* Whatever setup wrote in the workspace (a virtualenv, node_modules, a vendored tree) is
         * now part of what the export compares against. */
        int r = proxy_baseline_record(p, &commit);
        if (r == -ENOSPC)
                request_fail(
                        req,
                        ERROR_KIND_TOO_LARGE,
                        "setup_done: the scratch disk is full while recording the baseline (git: %s); give "
                        "the pod a larger disk (resources.scratch_mib, nucleus run --scratch-mib)",
                        proxy_git_last_error());
        else if (r < 0)
                request_fail(
                        req,
                        r == -ENOENT ? ERROR_KIND_NOT_FOUND : ERROR_KIND_IO_ERROR,
                        "setup_done: recording the baseline failed (%s%s%s)",
                        strerror(-r),
                        proxy_git_last_error()[0] ? ": " : "",
                        proxy_git_last_error());
        else
                request_finish(req, json_pack("{s:s}", "baseline", commit));
}
