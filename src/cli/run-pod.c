/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus run: the pod. The agent's hooks (tool calls and human approvals), the model
 * gateway's budget, waiting for boot, the lease, fetching results and deleting the pod.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent-node.h"
#include "alloc-util.h"
#include "approval.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "process-util.h"
#include "run-internal.h"
#include "secrets.h"
#include "string-util.h"
#include "time-util.h"
#include "tools.h"

int run_hook_call_tool(void *userdata, const char *op, json_t *args, json_t **ret, char **reterr) {
        RunContext *c = userdata;
        return agent_node_call_tool(c->client, c->pod, op, args, ret, reterr);
}

void run_stats_from_audit(const char *path, AgentStats *st) {
        static const char *const tool_ops[] = { "read", "list", "write",     "edit", "glob",
                                                "grep", "run",  "web_fetch", NULL };
        _cleanup_free_ char *data = NULL;
        size_t n = 0;
        char *save = NULL;

        if (!path || read_full_file_at(AT_FDCWD, path, 256U * 1024U * 1024U, &data, &n) < 0)
                return;
        for (char *l = strtok_r(data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                _cleanup_json_ json_t *rec = NULL;
                if (json_parse_strict(l, strlen(l), 16U * 1024U * 1024U, &rec, NULL) < 0)
                        continue;
                const char *op = json_string_value(json_object_get(rec, "op"));
                const char *decision = json_string_value(json_object_get(rec, "decision"));
                const char *kind = json_string_value(json_object_get(rec, "kind"));
                if (!op || !strv_contains((char **) tool_ops, op) ||
                    !(streq_ptr(decision, "allow") || streq_ptr(decision, "deny") ||
                      streq_ptr(decision, "error")))
                        continue;
                st->tool_calls++;
                bool denied = !streq(decision, "allow");
                json_array_append_new(
                        st->calls,
                        json_pack("{s:s, s:s}", "tool", op, "outcome", denied ? (kind ?: decision) : "ok"));
                if (denied) {
                        const char *k = kind ?: decision;
                        st->denials++;
                        json_int_t c = json_integer_value(json_object_get(st->denials_by_kind, k));
                        json_object_set_new(st->denials_by_kind, k, json_integer(c + 1));
                }
        }
}

/* What is left of the pod's budget, from its status (max - used - reserved). */
static int pod_budget_left(RunContext *c, uint64_t *ret) {
        _cleanup_json_ json_t *answer = NULL, *args = json_object();
        _cleanup_free_ char *err = NULL;
        int r = agent_node_call_tool(c->client, c->pod, "status", args, &answer, &err);
        if (r < 0)
                return log_error_errno(r, "reading the pod's budget failed: %s", err ? err : strerror(-r));
        json_t *b = json_object_get(answer, "budget");
        json_t *max = json_object_get(b, "max_usd_micros"), *used = json_object_get(b, "used_usd_micros"),
               *res = json_object_get(b, "reserved_usd_micros");
        if (!json_is_integer(max) || !json_is_integer(used) || json_integer_value(max) < 0 ||
            json_integer_value(used) < 0 || json_integer_value(res) < 0)
                return log_error_errno(-EBADMSG, "the pod's status has no budget");
        uint64_t spent = (uint64_t) json_integer_value(used) + (uint64_t) json_integer_value(res);
        *ret = (uint64_t) json_integer_value(max) > spent ? (uint64_t) json_integer_value(max) - spent : 0;
        return 0;
}

int run_start_gateway(
        RunContext *c,
        const ClientSettings *settings,
        const LlmConfig *mcfg,
        uint64_t price_in,
        uint64_t price_out,
        uint64_t timeout_sec,
        RunGateway *gateway,
        LlmClient **llm) {
        _cleanup_free_ char *err = NULL;
        uint64_t left = 0;
        int r;

        r = pod_budget_left(c, &left);
        if (r < 0)
                return r;
        RunGatewayOptions go = {
                .model = mcfg,
                .price_in = price_in,
                .price_out = price_out,
                .max_usd_micros = left,
                .timeout_sec = timeout_sec,
                .node = settings,
                .pod = c->pod,
        };
        r = run_gateway_start(&go, gateway);
        if (r < 0)
                return r;
        if (!llm)
                return 0;
        _cleanup_free_ char *base = run_gateway_base_url(gateway, mcfg->provider);
        LlmConfig gc = *mcfg;
        gc.base_url = base;
        gc.api_key_env = NULL;
        gc.api_key = gateway->token;
        LlmClient *n = NULL;
        r = llm_client_new(&gc, &n, &err);
        if (r < 0)
                return log_error_errno(r, "%s", err ? err : "cannot set up the model client");
        llm_client_free(*llm);
        *llm = n;
        return 0;
}

static int prompt_yes_no(void) {
        char line[32];
        if (!fgets(line, sizeof line, stdin))
                return 0;
        line[strcspn(line, "\r\n")] = 0;
        return streq(line, "y") || streq(line, "Y") || streq(line, "yes") || streq(line, "YES");
}

/* Without a terminal: when a console or another approver is attached to the node, hold the
 * call there as a pending approval and wait for its decision (docs/approvals.md). */
static int approve_through_queue(
        RunContext *c, const char *op, json_t *args, const char *operation, const char *desc, json_t *answer) {
        _cleanup_json_ json_t *res = NULL;
        _cleanup_free_ char *err = NULL;

        if (!agent_node_approvers_attached(c->client, c->pod)) {
                fprintf(stderr,
                        "[approval] %s needs approval (%s); stdin is not a terminal: denied (no approver is "
                        "attached: 'nucleus console' or 'nucleus approvals serve' decides without one)\n",
                        desc,
                        operation);
                c->approvals_refused++;
                return 0;
        }
        fprintf(stderr,
                "[approval] %s needs approval (%s); waiting for a decision in the approvals queue\n",
                desc,
                operation);
        int r = agent_node_hold_approval(c->client, c->pod, op, args, 0, &run_interrupted, &res, &err);
        if (r < 0) {
                log_error("holding the call for approval failed: %s", err ?: strerror(-r));
                c->approvals_refused++;
                return 0;
        }
        if (r == 2) {
                /* Already covered by an approval for the rest of the pod: it ran. */
                json_object_clear(answer);
                json_object_update(answer, res);
                c->approvals_granted++;
                return AGENT_APPROVE_RAN;
        }
        if (r == 1) {
                c->approvals_granted++;
                fprintf(stderr, "[approval] approved; retrying\n");
                return 1;
        }
        _cleanup_free_ char *why = string_make_visible(
                json_string_value(json_object_get(res, "decision_reason")) ?: "");
        const char *state = json_string_value(json_object_get(res, "state")) ?: "refused";
        fprintf(stderr, "[approval] %s%s%s\n", state, *why ? ": " : "", why);
        _cleanup_free_ char *msg = xasprintf(
                "a human %s this call%s%s; do not retry",
                streq(state, "refused") ? "refused" : "did not approve",
                *why ? ": " : "",
                why);
        json_object_set_new(answer, "error", json_string(msg));
        json_object_set_new(answer, "refusal_reason", json_string(why));
        c->approvals_refused++;
        return -ECANCELED;
}

int run_hook_approve(void *userdata, const char *op, json_t *args, json_t *answer) {
        RunContext *c = userdata;
        _cleanup_free_ char *desc = agent_describe_call(op, args, 2000), *err = NULL, *token = NULL;
        const char *operation = json_string_value(json_object_get(answer, "operation"));
        uint8_t key[APPROVAL_SECRET_KEY_SIZE];
        char digest[65];
        int r;

        if (!operation || operation_from_string(operation) < 0)
                operation = agent_call_operation(op, args);
        if (!operation)
                return 0;
        if (!isatty(STDIN_FILENO))
                return approve_through_queue(c, op, args, operation, desc, answer);
        fprintf(stderr,
                "\n[approval] The policy requires a human approval for '%s':\n    %s\n"
                "Approve this exact call once? [y/N] ",
                operation,
                desc);
        fflush(stderr);
        if (!prompt_yes_no() || run_interrupted) {
                fprintf(stderr, "[approval] refused\n");
                c->approvals_refused++;
                return 0;
        }
        r = secret_load(c->secrets_dir, SECRET_APPROVER, key, sizeof key, &err);
        if (r < 0) {
                log_error("cannot load the approver key: %s", err ? err : strerror(-r));
                return r;
        }
        const char *want = json_string_value(json_object_get(answer, "args_sha256"));
        if (want && strlen(want) == 64)
                memcpy(digest, want, 65);
        else if ((r = approval_args_sha256(agent_call_approval_args(op, args), digest)) < 0) {
                explicit_bzero_safe(key, sizeof key);
                return r;
        }
        ApprovalToken t = {
                .version = 1,
                .has_args = true,
                .uses = 1,
                .expires_at = (int64_t) time(NULL) + RUN_APPROVAL_TTL_SEC,
        };
        snprintf(t.pod, sizeof t.pod, "%s", c->pod);
        snprintf(t.operation, sizeof t.operation, "%s", operation);
        memcpy(t.args_sha256, digest, 65);
        r = approval_token_mint(key, &t, &token, NULL);
        explicit_bzero_safe(key, sizeof key);
        if (r < 0)
                return log_error_errno(r, "minting the approval token failed: %m");
        r = agent_node_submit_approval(c->client, c->pod, token, &err);
        if (r < 0) {
                log_error("the node refused the approval: %s", err ? err : strerror(-r));
                return r;
        }
        c->approvals_granted++;
        fprintf(stderr, "[approval] granted once; retrying\n");
        return 1;
}

int run_wait_running(NucleusClient *client, const char *pod, char **reterr) {
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s", pod);
        usec_t until = now_usec(CLOCK_MONOTONIC) + RUN_BOOT_TIMEOUT_USEC;
        for (;;) {
                _cleanup_json_ json_t *j = NULL;
                _cleanup_client_error_ ClientError e = {};
                if (run_interrupted)
                        return -EINTR;
                int r = client_call_json(client, "GET", path, NULL, &j, &e);
                if (r < 0) {
                        *reterr = client_error_describe(&e);
                        return r;
                }
                const char *state = json_string_value(json_object_get(j, "state"));
                if (streq_ptr(state, "running"))
                        return 0;
                if (streq_ptr(state, "failed") || streq_ptr(state, "exited") || streq_ptr(state, "stopping")) {
                        _cleanup_free_ char *reason = string_make_visible(
                                json_string_value(json_object_get(j, "reason")) ?: "no reason given");
                        *reterr = xasprintf("pod %s is %s: %s", pod, state, reason);
                        return -EIO;
                }
                if (now_usec(CLOCK_MONOTONIC) > until) {
                        *reterr = xasprintf(
                                "pod %s did not become ready in %llu s (state %s)",
                                pod,
                                (unsigned long long) (RUN_BOOT_TIMEOUT_USEC / USEC_PER_SEC),
                                state ? state : "?");
                        return -ETIMEDOUT;
                }
                (void) usleep(300 * 1000);
        }
}

int run_delete_pod(NucleusClient *client, const char *pod) {
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s", pod);
        _cleanup_client_error_ ClientError e = {};
        int r = client_call_json(client, "DELETE", path, NULL, NULL, &e);
        if (r < 0 && e.status != 404) {
                _cleanup_free_ char *d = client_error_describe(&e);
                log_error("could not delete pod %s: %s", pod, d);
                return r;
        }
        return 0;
}

int run_fetch_to_file(
        NucleusClient *client,
        const char *path_query,
        const char *file,
        char **ret_ct,
        char **ret_body,
        size_t *ret_size,
        char **reterr) {
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_client_error_ ClientError e = {};
        int r = client_request(client, "GET", path_query, NULL, NULL, 0, &resp, &e);
        if (r < 0) {
                if (reterr)
                        *reterr = client_error_describe(&e);
                return r;
        }
        if (resp.status < 200 || resp.status >= 300) {
                if (reterr) {
                        client_error_from_response(&resp, &e);
                        *reterr = client_error_describe(&e);
                }
                return -EREMOTEIO;
        }
        if (file) {
                r = write_file_atomic_at(AT_FDCWD, file, resp.body, resp.size, 0600);
                if (r < 0)
                        return r;
        }
        if (ret_ct)
                *ret_ct = resp.content_type ? xstrdup(resp.content_type) : NULL;
        if (ret_body) {
                *ret_body = TAKE_PTR(resp.body);
                *ret_size = resp.size;
        }
        return 0;
}

int run_capture(char *const argv[], char **ret_out, int *ret_status) {
        _cleanup_free_ char *prog = argv[0][0] == '/' ? xstrdup(argv[0]) : agent_find_program(argv[0]);
        int pipefd[2];
        if (!prog)
                return -ENOENT;
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        _cleanup_close_ int rd = pipefd[0];
        _cleanup_close_ int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
        char *envp[] = { (char *) "PATH=/usr/local/bin:/usr/bin:/bin", (char *) "LC_ALL=C", NULL };
        PidRef pid = PIDREF_NULL;
        _cleanup_strv_free_ char **args = strv_copy(argv);
        free(args[0]);
        args[0] = xstrdup(prog);
        int r = spawn_argv(args, envp, nullfd, pipefd[1], pipefd[1], &pid);
        safe_close(pipefd[1]);
        if (r < 0)
                return r;
        _cleanup_free_ char *out = NULL;
        size_t n;
        r = read_full_fd(rd, 4 * 1024 * 1024, &out, &n);
        int status = 0;
        (void) pidref_wait(&pid, &status);
        pidref_done(&pid);
        if (r < 0)
                return r;
        *ret_status = status;
        if (ret_out)
                *ret_out = TAKE_PTR(out);
        return 0;
}

/* ---- the lease ---- */

ClientLease *run_lease_start(NucleusClient *client, const char *pod, json_t *created) {
        json_t *grace = json_object_get(created, "lease_grace_seconds");
        if (!json_is_integer(grace) || json_integer_value(grace) <= 0)
                return NULL;
        usec_t interval = NUCLEUS_MAX((usec_t) json_integer_value(grace) * USEC_PER_SEC / 3, USEC_PER_SEC / 2);

        /* Signals are the main thread's business (they end the run, interrupting what it
         * waits for); the renewer inherits this mask. */
        sigset_t all, old;
        sigfillset(&all);
        (void) pthread_sigmask(SIG_BLOCK, &all, &old);
        ClientLease *l = NULL;
        int r = client_lease_start(client, pod, interval, &l);
        (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0) {
                log_warning_errno(r, "cannot renew pod %s's lease: %m", pod);
                return NULL;
        }
        return l;
}
