/* SPDX-License-Identifier: Apache-2.0 */
/*
 * POST /v1/pods/{id}/setup (node key only): the pod's setup step (docs/run.md "Dependencies").
 * Before the agent's first call, the node opens the pod's egress to the spec's setup.hosts
 * (net_pod_setup_window), has the proxy run each command as the agent user in /workspace,
 * writes one audit record per command (argv as shown by the audit redaction, exit status,
 * duration, hosts opened; never the output), closes the network again, and has the proxy
 * record the baseline anew. The body comes from the node key's holder (the user's CLI), never
 * from the agent: the tool route refuses the proxy's setup operations.
 */
#include <string.h>

#include "alloc-util.h"
#include "api-internal.h"
#include "audit-detail.h"
#include "audit.h"
#include "json-util.h"
#include "message.h"
#include "net.h"
#include "string-util.h"

#define SETUP_COMMANDS_MAX 32U
#define SETUP_ARGS_MAX 1024U
#define SETUP_ARG_BYTES_MAX (64U * 1024U)
#define SETUP_TIMEOUT_DEFAULT 600U
#define SETUP_TIMEOUT_MAX 86400U
#define SETUP_CALL_MARGIN_USEC (60U * USEC_PER_SEC) /* beyond the command's own timeout */

/* Validate the body: {"commands": [[argv...], ...], "timeout_seconds": N}. */
static int parse_body(const json_t *body, uint64_t *ret_timeout, char **reterr) {
        static const char *const keys[] = { "commands", "timeout_seconds", NULL };
        const char *k;
        json_t *v, *cmds;
        size_t i, j;

        if (!json_is_object(body))
                return *reterr = xstrdup("body: a JSON object expected"), -EINVAL;
        json_object_foreach((json_t *) body, k, v)
                if (!strv_contains((char **) keys, k))
                        return *reterr = xasprintf("body: unknown key '%s'", k), -EINVAL;
        cmds = json_object_get(body, "commands");
        if (!json_is_array(cmds) || json_array_size(cmds) == 0 || json_array_size(cmds) > SETUP_COMMANDS_MAX)
                return *reterr = xasprintf("commands: a list of 1..%u commands expected", SETUP_COMMANDS_MAX),
                       -EINVAL;
        json_array_foreach(cmds, i, v) {
                json_t *a;
                size_t total = 0;
                if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > SETUP_ARGS_MAX)
                        return *reterr = xasprintf(
                                       "commands[%zu]: an argv list of 1..%u strings expected",
                                       i,
                                       SETUP_ARGS_MAX),
                               -EINVAL;
                json_array_foreach(v, j, a) {
                        if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a) ||
                            (j == 0 && json_string_length(a) == 0))
                                return *reterr = xasprintf(
                                               "commands[%zu][%zu]: a non-empty string without NUL expected",
                                               i,
                                               j),
                                       -EINVAL;
                        total += json_string_length(a) + 1;
                }
                if (total > SETUP_ARG_BYTES_MAX)
                        return *reterr = xasprintf(
                                       "commands[%zu]: longer than %u bytes", i, SETUP_ARG_BYTES_MAX),
                               -EINVAL;
        }
        *ret_timeout = SETUP_TIMEOUT_DEFAULT;
        if ((v = json_object_get(body, "timeout_seconds"))) {
                if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                    json_integer_value(v) > SETUP_TIMEOUT_MAX)
                        return *reterr = xasprintf(
                                       "timeout_seconds: an integer 1..%u expected", SETUP_TIMEOUT_MAX),
                               -EINVAL;
                *ret_timeout = (uint64_t) json_integer_value(v);
        }
        return 0;
}

/* Open or close the window under the pod's network lock. Returns 0 (also when the pod has no
 * network: nothing to open), or -errno. */
static int setup_window(Pod *p, bool open) {
        int r = 0;
        pthread_mutex_lock(&p->net_lock);
        if (p->net)
                r = net_pod_setup_window(p->net, open);
        pthread_mutex_unlock(&p->net_lock);
        return r == -EINVAL ? 0 : r;
}

static void audit_info(Pod *p, const char *actor, const char *op, const char *decision, json_t *detail) {
        AuditEvent ev = { .actor = actor, .op = op, .decision = decision, .detail = detail };
        (void) pod_audit(p, &ev);
}

/* One command through the proxy; its record; the answer goes into results. Returns true when
 * the command ran and exited 0. */
static bool run_one(Pod *p, const char *actor, json_t *argv, uint64_t timeout_s, json_t *hosts, json_t *results) {
        ChannelReply rep = {};
        _cleanup_json_ json_t *args = json_pack(
                "{s:O,s:I}", "argv", argv, "timeout_seconds", (json_int_t) timeout_s);
        int r = channel_call(
                p->channel, "setup", args, 0, NULL, 0, timeout_s * USEC_PER_SEC + SETUP_CALL_MARGIN_USEC, 0, &rep);
        if (r < 0)
                rep.response = json_pack(
                        "{s:s,s:s}",
                        "error",
                        r == -ETIMEDOUT ? "the guest did not answer in time" : "the pod ended during setup",
                        "kind",
                        r == -ETIMEDOUT ? "internal" : "pod_not_running");
        json_t *ans = rep.response;
        const char *kind = NULL, *decision = api_answer_decision(ans, &kind);
        bool ok = !json_object_get(ans, "error") && json_is_true(json_object_get(ans, "success"));

        /* The record: what ran and how it ended; the output is the user's to see, not the log's. */
        _cleanup_json_ json_t *shown = json_pack("{s:O}", "argv", argv);
        json_t *detail = audit_detail_for_call("run", shown) ?: json_object();
        json_object_set(detail, "hosts", hosts);
        static const char *const copy[] = { "exit_code", "signal", "timed_out", "duration_ms", NULL };
        for (size_t i = 0; copy[i]; i++) {
                json_t *x = json_object_get(ans, copy[i]);
                if (x)
                        json_object_set(detail, copy[i], x);
        }
        if (json_object_get(ans, "error"))
                json_object_set(detail, "error", json_object_get(ans, "error"));
        AuditEvent ev = { .actor = actor,
                          .op = "setup_command",
                          .decision = ok                                         ? "allow"
                                  : decision == NULL || streq(decision, "allow") ? "error"
                                                                                 : decision,
                          .kind = kind,
                          .args = args,
                          .detail = detail };
        (void) pod_audit(p, &ev);
        json_decref(detail);

        json_object_set(ans, "argv", argv);
        json_array_append(results, ans);
        channel_reply_done(&rep);
        return ok;
}

static enum MHD_Result setup_step(ApiCall *a, json_t *body, uint64_t timeout_s);

enum MHD_Result api_h_setup(ApiCall *a) {
        struct MHD_Connection *c = a->c;
        Pod *p = a->pod;
        _cleanup_json_ json_t *body = NULL;
        _cleanup_free_ char *err = NULL;
        enum MHD_Result ret;
        uint64_t timeout_s;

        if (json_parse_strict(a->body ?: "", a->n_body, a->n_body, &body, &err) < 0 ||
            parse_body(body, &timeout_s, &err) < 0)
                return api_reply_error(
                        c, MHD_HTTP_BAD_REQUEST, "invalid_request", "%s", err ?: "body: invalid JSON");
        if (!api_pod_check_callable(c, p, &ret))
                return ret;
        /* A pod with setup hosts always has a network (pod-boot.c; the local driver refuses them
         * at create, and they never claim a warm pod); one without would run the commands
         * offline and fail for a reason nobody could see. */
        pthread_mutex_lock(&p->net_lock);
        bool no_net = strv_length(p->spec->setup_hosts) > 0 && !p->net;
        pthread_mutex_unlock(&p->net_lock);
        if (no_net)
                return api_reply_error(
                        c,
                        MHD_HTTP_CONFLICT,
                        "conflict",
                        "setup: the pod has no network for its setup hosts (it was not created with them)");
        /* Until the step has ended (network closed, baseline recorded), the tool route refuses
         * calls (api_h_tool): nothing of the agent runs while the window is open. Nor may the
         * agent have acted before: a command it started could still run, and would run on with
         * the window open (the proxy would refuse the setup commands, but only after the node
         * had opened the window for them). */
        pthread_mutex_lock(&a->node->lock);
        bool again = p->setup_started, acted = p->agent_acted;
        if (!again && !acted)
                p->setup_started = p->setup_running = true;
        pthread_mutex_unlock(&a->node->lock);
        if (again)
                return api_reply_error(
                        c, MHD_HTTP_CONFLICT, "conflict", "this pod's setup step already ran (it runs once)");
        if (acted)
                return api_reply_error(
                        c,
                        MHD_HTTP_CONFLICT,
                        "conflict",
                        "setup: the agent has called the pod's tools already; the setup step runs only "
                        "before the agent's first call (nothing was run, no network opened)");
        ret = setup_step(a, body, timeout_s);
        pthread_mutex_lock(&a->node->lock);
        p->setup_running = false;
        pthread_mutex_unlock(&a->node->lock);
        return ret;
}

static enum MHD_Result setup_step(ApiCall *a, json_t *body, uint64_t timeout_s) {
        struct MHD_Connection *c = a->c;
        Pod *p = a->pod;
        _cleanup_json_ json_t *results = json_array(), *hosts = json_array();
        int r;

        STRV_FOREACH(h, p->spec->setup_hosts)
                json_array_append_new(hosts, json_string(*h));
        pthread_mutex_lock(&p->net_lock);
        bool networked = p->net && json_array_size(hosts) > 0;
        pthread_mutex_unlock(&p->net_lock);
        if (!networked)
                json_array_clear(hosts); /* no hosts: nothing is opened */

        r = networked ? setup_window(p, true) : 0;
        if (r < 0) {
                pod_terminate_async(p, POD_FAILED, "setup: the network could not be opened", "internal");
                return api_reply_error(
                        c,
                        MHD_HTTP_INTERNAL_SERVER_ERROR,
                        "internal",
                        "setup: opening the network failed: %s",
                        strerror(-r));
        }
        if (networked) {
                _cleanup_json_ json_t *d = json_pack("{s:s,s:O}", "network", "open", "hosts", hosts);
                audit_info(p, "node", "setup_network", "info", d);
        }

        bool ok = true;
        size_t i;
        json_t *argv;
        json_array_foreach(json_object_get(body, "commands"), i, argv) {
                /* A client that went away (nucleus run interrupted) gets no more commands run
                 * for it with the window open. */
                if (i > 0 && api_client_gone(c)) {
                        ok = false;
                        _cleanup_json_ json_t *d = json_pack(
                                "{s:s,s:I}", "reason", "the client went away", "commands_run", (json_int_t) i);
                        audit_info(p, a->actor, "setup_stopped", "error", d);
                        break;
                }
                ok = run_one(p, a->actor, argv, timeout_s, hosts, results);
                if (!ok)
                        break;
        }

        /* Closed again before anything else happens, whatever the commands did: every process
         * of a command died with its PID namespace when the command ended, so no flow outlives
         * the window. If closing fails the pod cannot be trusted with the agent: it ends. */
        if (networked) {
                r = setup_window(p, false);
                _cleanup_json_ json_t *d = json_pack(
                        "{s:s,s:O}", "network", r < 0 ? "close_failed" : "closed", "hosts", hosts);
                audit_info(p, "node", "setup_network", r < 0 ? "error" : "info", d);
                if (r < 0) {
                        pod_terminate_async(
                                p, POD_FAILED, "setup: the network could not be closed again", "internal");
                        return api_reply_error(
                                c,
                                MHD_HTTP_INTERNAL_SERVER_ERROR,
                                "internal",
                                "setup: closing the network failed (%s); the pod was ended",
                                strerror(-r));
                }
        }

        /* The step ends (baseline recorded, setup ops refused from now on) whether or not its
         * commands succeeded: what a failed command left in the workspace is not the agent's
         * work, so it must not appear in the patch of a client that goes on. */
        _cleanup_json_ json_t *answer = json_pack(
                "{s:b,s:O,s:O}", "ok", ok, "results", results, "hosts", hosts);
        {
                ChannelReply rep = {};
                _cleanup_json_ json_t *none = json_object();
                r = channel_call(p->channel, "setup_done", none, 0, NULL, 0, api_pod_call_timeout(p), 0, &rep);
                const char *kind = NULL;
                if (r < 0 || json_object_get(rep.response, "error")) {
                        const char *msg = r < 0 ? "the pod ended during setup"
                                                : json_string_value(json_object_get(rep.response, "error"));
                        json_object_set_new(answer, "ok", json_false());
                        json_object_set_new(answer, "error", json_sprintf("setup_done: %s", msg ?: "failed"));
                        kind = r < 0 ? "pod_not_running"
                                     : json_string_value(json_object_get(rep.response, "kind"));
                } else
                        json_object_set(answer, "baseline", json_object_get(rep.response, "baseline"));
                _cleanup_json_ json_t *d = json_pack(
                        "{s:O}", "baseline", json_object_get(answer, "baseline") ?: json_null());
                AuditEvent ev = { .actor = a->actor,
                                  .op = "setup_done",
                                  .decision = json_object_get(answer, "baseline") ? "allow" : "error",
                                  .kind = kind,
                                  .detail = d };
                (void) pod_audit(p, &ev);
                channel_reply_done(&rep);
        }
        return api_reply_json(c, MHD_HTTP_OK, answer);
}
