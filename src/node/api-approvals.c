/* SPDX-License-Identifier: Apache-2.0 */
/*
 * POST /v1/pods/{id}/approvals: the node verifies an approval token (Ed25519, the configured
 * approver key; bound to the pod; not expired; TTL capped) before the proxy sees it, and
 * records either outcome in the pod's audit log.
 */
#include <string.h>
#include <time.h>

#include "alloc-util.h"
#include "api-internal.h"
#include "approval.h"
#include "json-util.h"
#include "message.h"
#include "metrics.h"
#include "string-util.h"

enum MHD_Result api_h_approval(ApiCall *a) {
        struct MHD_Connection *c = a->c;
        Pod *p = a->pod;
        const char *actor = a->actor;
        _cleanup_json_ json_t *body = NULL;
        _cleanup_free_ char *perr = NULL;

        if (json_parse_strict(a->body, a->n_body, a->n_body, &body, &perr) < 0 || !json_is_object(body))
                return api_reply_error(
                        c,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request",
                        "body: {\"token\": ...} expected%s%s",
                        perr ? ": " : "",
                        perr ?: "");
        const char *token = json_string_value(json_object_get(body, "token"));
        _cleanup_free_ char *err = NULL;
        ApprovalToken t = {};
        enum MHD_Result ret;
        ApprovalResult ar;
        char tsha[65];

        if (!token)
                return api_reply_error(
                        c, MHD_HTTP_BAD_REQUEST, "invalid_request", "body: {\"token\": \"nat1....\"} expected");
        if (!p->node->have_approver_pub)
                return api_reply_error(
                        c,
                        MHD_HTTP_FORBIDDEN,
                        "not_configured",
                        "no approver public key configured on the node (approver_public_key)");
        if (!api_pod_check_callable(c, p, &ret))
                return ret;
        api_sha256_hex(token, strlen(token), tsha);
        ar = approval_token_verify(token, p->node->approver_pub, &t, &err);
        if (ar == APPROVAL_OK) {
                int64_t now = (int64_t) time(NULL);
                if (!streq(t.pod, p->id))
                        ar = APPROVAL_WRONG_POD;
                else if (now >= t.expires_at)
                        ar = APPROVAL_EXPIRED;
                else if (t.expires_at > now + APPROVAL_MAX_TTL_SEC)
                        ar = APPROVAL_TTL_TOO_LONG;
        }
        if (ar != APPROVAL_OK) {
                AuditEvent ev = { .actor = actor,
                                  .op = "approval",
                                  .decision = "deny",
                                  .kind = "approval_invalid",
                                  .args_sha256 = tsha };
                pod_audit(p, &ev);
                metrics_approval("invalid");
                metrics_tool_call("approve", "deny", "approval_invalid");
                _cleanup_json_ json_t *j = json_pack(
                        "{s:s,s:s,s:s}",
                        "error",
                        err ?: "approval token refused by the node",
                        "kind",
                        "approval_invalid",
                        "detail",
                        approval_result_to_string(ar));
                return api_reply_json(c, (unsigned) error_kind_http_status(ERROR_KIND_APPROVAL_INVALID), j);
        }
        _cleanup_json_ json_t *args = json_pack("{s:s}", "token", token);
        uint64_t req_seq = 0;
        /* The token is recorded by digest only (no detail: it is a credential). */
        if (api_audit_request(c, p, actor, "approval", NULL, tsha, NULL, &req_seq, &ret) < 0)
                return ret;
        ChannelReply rep = {};
        int r = channel_call(p->channel, "approve", args, 0, NULL, 0, api_pod_call_timeout(p), 0, &rep);
        if (r < 0) {
                AuditEvent fev = { .actor = actor,
                                   .op = "approval",
                                   .decision = "error",
                                   .kind = r == -ETIMEDOUT ? "timeout" : "pod_not_running",
                                   .args_sha256 = tsha,
                                   .request_seq = req_seq };
                (void) pod_audit(p, &fev);
                return api_reply_channel_error(c, p, r);
        }
        const char *kind = NULL, *decision = api_answer_decision(rep.response, &kind);
        _cleanup_free_ char *text = json_dumps(rep.response, JSON_COMPACT | JSON_SORT_KEYS);
        /* The token itself stays a digest; what it approves is shown. */
        _cleanup_json_ json_t *detail = json_pack(
                "{s:s, s:I}", "operation", t.operation, "uses", (json_int_t) t.uses);
        AuditEvent ev = { .actor = actor,
                          .op = "approval",
                          .decision = decision,
                          .kind = kind,
                          .args_sha256 = tsha,
                          .detail = detail,
                          .result = text,
                          .result_len = text ? strlen(text) : 0,
                          .request_seq = req_seq };
        (void) pod_audit(p, &ev);
        metrics_approval(streq(decision, "allow") ? "accepted" : "rejected");
        metrics_tool_call("approve", decision, kind);
        api_answer_mark(p, rep.response);
        ret = api_reply_json(c, api_answer_status(rep.response), rep.response);
        channel_reply_done(&rep);
        return ret;
}
