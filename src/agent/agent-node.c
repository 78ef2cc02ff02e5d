/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Agent <-> node glue; see agent-node.h. Node answers are untrusted: only their JSON shape and
 * error kind are looked at; messages are made visible before anyone prints them.
 */
#include <errno.h>
#include <string.h>

#include "agent-node.h"
#include "alloc-util.h"
#include "id-util.h"
#include "json-util.h"
#include "string-util.h"
#include "tools.h"

int agent_node_call_tool(
        NucleusClient *c, const char *pod, const char *op, json_t *args, json_t **ret_answer, char **reterr) {
        _cleanup_json_ json_t *answer = NULL;
        _cleanup_client_error_ ClientError e = {};

        if (!pod_id_valid(pod) || !operation_name_valid(op)) {
                *reterr = xstrdup("invalid pod id or operation name");
                return -EINVAL;
        }
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/tools/%s", pod, op);
        _cleanup_json_ json_t *body = json_is_object(args) ? json_incref(args) : json_object();
        int r = client_call_json(c, "POST", path, body, &answer, &e);
        if (r == -EREMOTEIO) {
                /* A refusal: pass the node's document on, with its kind. Re-fetching the body
                 * is not needed: client_call_json decoded message and kind. */
                *ret_answer = json_pack(
                        "{s:s, s:s, s:I}",
                        "error",
                        e.message ? e.message : "refused",
                        "kind",
                        e.kind ? e.kind : "internal",
                        "status",
                        (json_int_t) e.status);
                return 0;
        }
        if (r < 0) {
                *reterr = e.message ? client_error_describe(&e) : xasprintf("%s: %s", path, strerror(-r));
                return r;
        }
        if (!json_is_object(answer)) {
                *reterr = xasprintf("%s: the node's answer is not a JSON object", path);
                return -EBADMSG;
        }
        *ret_answer = TAKE_PTR(answer);
        return 0;
}

int agent_node_submit_approval(NucleusClient *c, const char *pod, const char *token, char **reterr) {
        _cleanup_client_error_ ClientError e = {};
        if (!pod_id_valid(pod)) {
                *reterr = xstrdup("invalid pod id");
                return -EINVAL;
        }
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/approvals", pod);
        _cleanup_json_ json_t *body = json_pack("{s:s}", "token", token);
        int r = client_call_json(c, "POST", path, body, NULL, &e);
        if (r < 0) {
                *reterr = client_error_describe(&e);
                return r;
        }
        return 0;
}

int agent_node_charge(
        NucleusClient *c,
        const char *pod,
        uint64_t usd_micros,
        uint64_t input_tokens,
        uint64_t output_tokens,
        char **reterr) {
        _cleanup_json_ json_t *args = json_pack(
                "{s:I, s:I, s:I}",
                "usd_micros",
                (json_int_t) usd_micros,
                "input_tokens",
                (json_int_t) input_tokens,
                "output_tokens",
                (json_int_t) output_tokens);
        _cleanup_json_ json_t *answer = NULL;
        int r = agent_node_call_tool(c, pod, "charge", args, &answer, reterr);
        if (r < 0)
                return r;
        const char *kind = json_string_value(json_object_get(answer, "kind"));
        if (json_object_get(answer, "error")) {
                if (streq_ptr(kind, "budget_exhausted"))
                        return -EDQUOT;
                _cleanup_free_ char *m = string_make_visible(
                        json_string_value(json_object_get(answer, "error")) ?: "");
                *reterr = xasprintf("charge refused: %s (%s)", m, kind ? kind : "?");
                return -EIO;
        }
        return 0;
}

static bool granted(const Policy *p, Operation op) {
        return p->capabilities.level[op] >= CAP_LOW_RISK;
}

char **agent_ops_for_policy(const Policy *p) {
        char **ops = NULL;
        if (granted(p, OPERATION_READ_FILES)) {
                strv_extend(&ops, "read");
                strv_extend(&ops, "list");
        }
        if (granted(p, OPERATION_WRITE_FILES))
                strv_extend(&ops, "write");
        if (granted(p, OPERATION_EDIT_FILES))
                strv_extend(&ops, "edit");
        if (granted(p, OPERATION_GLOB_SEARCH))
                strv_extend(&ops, "glob");
        if (granted(p, OPERATION_GREP_SEARCH))
                strv_extend(&ops, "grep");
        if (granted(p, OPERATION_RUN_BASH) || granted(p, OPERATION_GIT_COMMIT) ||
            granted(p, OPERATION_GIT_PUSH) || granted(p, OPERATION_CREATE_PR))
                strv_extend(&ops, "run");
        if (granted(p, OPERATION_WEB_FETCH))
                strv_extend(&ops, "web_fetch");
        strv_extend(&ops, "status");
        return ops;
}

const char *agent_call_operation(const char *op, json_t *args) {
        if (streq_ptr(op, "read") || streq_ptr(op, "list"))
                return "read_files";
        if (streq_ptr(op, "write"))
                return "write_files";
        if (streq_ptr(op, "edit"))
                return "edit_files";
        if (streq_ptr(op, "glob"))
                return "glob_search";
        if (streq_ptr(op, "grep"))
                return "grep_search";
        if (streq_ptr(op, "web_fetch"))
                return "web_fetch";
        if (streq_ptr(op, "run")) {
                json_t *argv = json_object_get(args, "argv");
                const char *a0 = json_string_value(json_array_get(argv, 0));
                const char *a1 = json_string_value(json_array_get(argv, 1));
                const char *a2 = json_string_value(json_array_get(argv, 2));
                const char *base = a0 ? strrchr(a0, '/') : NULL;
                base = base ? base + 1 : a0;
                if (streq_ptr(base, "git") && streq_ptr(a1, "push"))
                        return "git_push";
                if (streq_ptr(base, "git") && streq_ptr(a1, "commit"))
                        return "git_commit";
                if (streq_ptr(base, "gh") && streq_ptr(a1, "pr") && streq_ptr(a2, "create"))
                        return "create_pr";
                return "run_bash";
        }
        return NULL;
}

json_t *agent_call_approval_args(const char *op, json_t *args) {
        if (streq_ptr(op, "run") && json_is_array(json_object_get(args, "argv")))
                return json_object_get(args, "argv");
        return args;
}

bool agent_node_approvers_attached(NucleusClient *c, const char *pod) {
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *res = NULL;
        if (!pod_id_valid(pod))
                return false;
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/approvals", pod);
        if (client_call_json(c, "GET", path, NULL, &res, &e) < 0)
                return false;
        return json_is_true(json_object_get(res, "approvers_attached"));
}

#define AGENT_HOLD_POLL_SEC 25

int agent_node_hold_approval(
        NucleusClient *c,
        const char *pod,
        const char *op,
        json_t *args,
        usec_t deadline,
        const volatile int *interrupted,
        json_t **ret,
        char **reterr) {
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *doc = NULL;
        ClientResponse resp = {};
        json_error_t jerr;
        int r;

        if (!pod_id_valid(pod) || !operation_name_valid(op)) {
                *reterr = xstrdup("invalid pod id or operation name");
                return -EINVAL;
        }
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/tools/%s?approval=hold", pod, op);
        _cleanup_free_ char *body = json_dumps(json_is_object(args) ? args : json_object(), JSON_COMPACT);
        r = client_request(c, "POST", path, "application/json", body, strlen(body), &resp, &e);
        if (r < 0) {
                *reterr = client_error_describe(&e);
                client_response_done(&resp);
                return r;
        }
        doc = json_loadb(resp.body, resp.size, 0, &jerr);
        long status = resp.status;
        client_response_done(&resp);
        if (status >= 200 && status < 300) {
                if (!json_is_object(doc)) {
                        *reterr = xstrdup("the node's answer is not a JSON object");
                        return -EBADMSG;
                }
                *ret = TAKE_PTR(doc);
                return 2;
        }
        json_t *pending = json_object_get(doc, "approval");
        const char *id = json_string_value(json_object_get(pending, "id"));
        if (!id || strlen(id) != 32 || strspn(id, "0123456789abcdef") != 32) {
                const char *msg = json_string_value(json_object_get(doc, "error"));
                _cleanup_free_ char *vis = string_make_visible(msg ?: "no pending approval in the answer");
                *reterr = xasprintf("the node did not hold the call for approval: %s", vis);
                return -EPROTO;
        }
        _cleanup_free_ char *wait_path = NULL;
        _cleanup_free_ char *item = xasprintf("/v1/pods/%s/approvals/%s", pod, id);
        for (;;) {
                _cleanup_client_error_ ClientError we = {};
                _cleanup_json_ json_t *rec = NULL;
                usec_t now = now_usec(CLOCK_MONOTONIC);
                if ((interrupted && *interrupted) || (deadline > 0 && now >= deadline)) {
                        _cleanup_client_error_ ClientError de = {};
                        (void) client_call_json(c, "DELETE", item, NULL, NULL, &de);
                        *ret = json_pack(
                                "{s:s,s:s,s:s}",
                                "id",
                                id,
                                "state",
                                "withdrawn",
                                "decision_reason",
                                interrupted && *interrupted ? "interrupted" : "the run's deadline passed");
                        return 0;
                }
                unsigned wait = AGENT_HOLD_POLL_SEC;
                if (deadline > 0)
                        wait = (unsigned) NUCLEUS_MIN((usec_t) wait, (deadline - now) / USEC_PER_SEC + 1);
                free(wait_path);
                wait_path = xasprintf("%s?wait=%u", item, wait);
                r = client_call_json(c, "GET", wait_path, NULL, &rec, &we);
                if (r < 0) {
                        *reterr = client_error_describe(&we);
                        return r;
                }
                const char *state = json_string_value(json_object_get(rec, "state"));
                if (streq_ptr(state, "pending"))
                        continue;
                bool approved = streq_ptr(state, "approved");
                *ret = TAKE_PTR(rec);
                return approved ? 1 : 0;
        }
}
