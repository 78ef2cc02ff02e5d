/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Approvals at the node (docs/approvals.md).
 * POST /v1/pods/{id}/approvals: the node verifies an approval token (Ed25519, the configured
 * approver key; bound to the pod; not expired; TTL capped) before the proxy sees it, and
 * records either outcome in the pod's audit log.
 * The approvals queue: calls held as pending approvals (?approval=hold on a tool call), their
 * listing, waiting, decision (a token bound to the pending record, with its digest) and
 * withdrawal, and the approvers' heartbeat.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "alloc-util.h"
#include "api-internal.h"
#include "approval.h"
#include "json-util.h"
#include "log.h"
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
        sha256_hex(token, strlen(token), tsha);
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

/* ---- the approvals queue ------------------------------------------------------------------ */

#define API_APPROVAL_WAIT_MAX_SEC 60

int api_approval_parse_hold(const char *query, int64_t *ret_ttl, char **reterr) {
        _cleanup_free_ char *q = xstrdup(query);
        bool hold = false;
        int64_t ttl = 0;
        char *save = NULL;

        for (char *kv = strtok_r(q, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
                const char *v;
                if (streq(kv, "approval=hold"))
                        hold = true;
                else if ((v = startswith(kv, "approval_ttl="))) {
                        char *end;
                        errno = 0;
                        long long t = strtoll(v, &end, 10);
                        if (errno || *end || end == v || t < 1 || t > APPROVAL_QUEUE_TTL_MAX) {
                                *reterr = xasprintf(
                                        "approval_ttl must be 1..%d seconds", APPROVAL_QUEUE_TTL_MAX);
                                return -EINVAL;
                        }
                        ttl = t;
                } else {
                        *reterr = xstrdup("unknown query parameter (approval=hold and approval_ttl=N are "
                                          "known)");
                        return -EINVAL;
                }
        }
        if (!hold && ttl) {
                *reterr = xstrdup("approval_ttl goes with approval=hold");
                return -EINVAL;
        }
        *ret_ttl = hold ? ttl : -1;
        return 0;
}

int api_approval_hold(Pod *p, const char *actor, const char *tool, json_t *args, json_t *answer, int64_t ttl) {
        const char *operation = json_string_value(json_object_get(answer, "operation"));
        const char *args_sha = json_string_value(json_object_get(answer, "args_sha256"));
        const char *reason = json_string_value(json_object_get(answer, "error"));
        _cleanup_json_ json_t *pending = NULL;
        int r;

        r = approval_queue_hold(
                p->approvals, tool, args, operation, args_sha, reason, (int64_t) time(NULL), ttl, &pending);
        if (r < 0) {
                if (r != -EBUSY)
                        log_debug_errno(r, "pod %s: cannot hold the call for approval: %m", p->id);
                return r;
        }
        const char *digest = json_string_value(json_object_get(pending, "digest"));
        _cleanup_json_ json_t *detail = json_pack(
                "{s:O,s:s,s:s}", "approval", json_object_get(pending, "id"), "tool", tool, "operation", operation);
        AuditEvent ev = { .actor = actor,
                          .op = "approval_request",
                          .decision = "info",
                          .kind = "approval_required",
                          .args = args,
                          .result = digest,
                          .result_len = strlen(digest),
                          .detail = detail };
        if (pod_audit(p, &ev) < 0) {
                /* No pending approval without its record (docs/audit.md "Fail closed"). */
                (void) approval_queue_withdraw(
                        p->approvals, json_string_value(json_object_get(pending, "id")), (int64_t) time(NULL));
                return -EIO;
        }
        metrics_approval_queue("held");
        pod_publish(p, "approval", pending);
        json_object_set(answer, "approval", pending);
        return 0;
}

static bool approvers_attached(Node *n) {
        pthread_mutex_lock(&n->lock);
        bool on = n->approvers_until > now_usec(CLOCK_MONOTONIC);
        pthread_mutex_unlock(&n->lock);
        return on;
}

/* GET /v1/approvals: what is pending on every pod. */
enum MHD_Result api_h_approvals_all(ApiCall *a) {
        Node *n = a->node;
        json_t *arr = json_array();
        int64_t now = (int64_t) time(NULL);
        Pod **list;
        size_t k = 0;

        pthread_mutex_lock(&n->lock);
        list = xnew0(Pod *, n->n_pods + 1);
        for (size_t i = 0; i < n->n_pods; i++) {
                list[k++] = n->pods[i];
                n->pods[i]->n_ref++;
        }
        pthread_mutex_unlock(&n->lock);
        for (size_t i = 0; i < k; i++) {
                _cleanup_json_ json_t *l = approval_queue_list(list[i]->approvals, true, now);
                json_array_extend(arr, l);
                pod_unref(list[i]);
        }
        free(list);
        _cleanup_json_ json_t *out = json_pack(
                "{s:o,s:b}", "approvals", arr, "approvers_attached", approvers_attached(n));
        return api_reply_json(a->c, MHD_HTTP_OK, out);
}

/* POST /v1/approvers {"name","ttl_seconds"}: a human-facing approver is attached for ttl
 * seconds (0 detaches). */
enum MHD_Result api_h_approvers(ApiCall *a) {
        _cleanup_json_ json_t *body = NULL;
        _cleanup_free_ char *perr = NULL;
        json_t *ttl;

        if (json_parse_strict(a->body, a->n_body, a->n_body, &body, &perr) < 0 || !json_is_object(body) ||
            !json_is_integer(ttl = json_object_get(body, "ttl_seconds")) || json_integer_value(ttl) < 0 ||
            json_integer_value(ttl) > 300)
                return api_reply_error(
                        a->c,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request",
                        "body: {\"name\": ..., \"ttl_seconds\": 0..300} expected");
        pthread_mutex_lock(&a->node->lock);
        a->node->approvers_until = json_integer_value(ttl) == 0
                ? 0
                : now_usec(CLOCK_MONOTONIC) + (usec_t) json_integer_value(ttl) * USEC_PER_SEC;
        pthread_mutex_unlock(&a->node->lock);
        _cleanup_json_ json_t *out = json_pack("{s:b}", "approvers_attached", approvers_attached(a->node));
        return api_reply_json(a->c, MHD_HTTP_OK, out);
}

/* GET /v1/pods/{id}/approvals: the pod's recent approvals, pending and decided. */
enum MHD_Result api_h_pod_approvals(ApiCall *a) {
        json_t *l = approval_queue_list(a->pod->approvals, false, (int64_t) time(NULL));
        _cleanup_json_ json_t *out = json_pack(
                "{s:o,s:b}", "approvals", l, "approvers_attached", approvers_attached(a->node));
        return api_reply_json(a->c, MHD_HTTP_OK, out);
}

static bool approval_id_ok(const char *s) {
        return s && strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32;
}

static enum MHD_Result reply_no_approval(ApiCall *a) {
        return api_reply_error(a->c, MHD_HTTP_NOT_FOUND, "not_found", "no such approval in this pod");
}

/* GET /v1/pods/{id}/approvals/{aid}[?wait=N]: one record; with wait, answers as soon as it is
 * decided (or after N seconds, still pending). */
enum MHD_Result api_h_pod_approval_get(ApiCall *a) {
        const char *aid = a->args[0];
        _cleanup_json_ json_t *rec = NULL;
        long wait = 0;
        int r;

        if (!approval_id_ok(aid))
                return reply_no_approval(a);
        if (a->query) {
                const char *v = startswith(a->query, "wait=");
                char *end = NULL;
                errno = 0;
                wait = v ? strtol(v, &end, 10) : -1;
                if (!v || errno || *end || end == v || wait < 0 || wait > API_APPROVAL_WAIT_MAX_SEC)
                        return api_reply_error(
                                a->c,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request",
                                "query: wait=0..%d (seconds) expected",
                                API_APPROVAL_WAIT_MAX_SEC);
        }
        if (wait > 0)
                r = approval_queue_wait(a->pod->approvals, aid, (usec_t) wait * USEC_PER_SEC, &rec);
        else
                r = approval_queue_get(a->pod->approvals, aid, (int64_t) time(NULL), &rec);
        if (r < 0)
                return reply_no_approval(a);
        return api_reply_json(a->c, MHD_HTTP_OK, rec);
}

/* DELETE /v1/pods/{id}/approvals/{aid}: the caller stopped waiting. */
enum MHD_Result api_h_pod_approval_withdraw(ApiCall *a) {
        const char *aid = a->args[0];
        _cleanup_json_ json_t *rec = NULL;
        int r;

        if (!approval_id_ok(aid))
                return reply_no_approval(a);
        r = approval_queue_withdraw(a->pod->approvals, aid, (int64_t) time(NULL));
        if (r == -ENOENT)
                return reply_no_approval(a);
        if (r < 0)
                return api_reply_error(
                        a->c, MHD_HTTP_CONFLICT, "already_decided", "the approval was already decided");
        (void) approval_queue_get(a->pod->approvals, aid, (int64_t) time(NULL), &rec);
        _cleanup_json_ json_t *detail = json_pack("{s:s}", "approval", aid);
        AuditEvent ev = { .actor = a->actor, .op = "approval_withdrawn", .decision = "info", .detail = detail };
        (void) pod_audit(a->pod, &ev);
        metrics_approval_queue("withdrawn");
        pod_publish(a->pod, "approval", rec);
        return api_reply_json(a->c, MHD_HTTP_OK, rec);
}

static enum MHD_Result decision_refused(ApiCall *a, const char *aid, const char *kind, const char *msg) {
        _cleanup_json_ json_t *detail = json_pack("{s:s,s:s}", "approval", aid, "refused_because", msg);
        AuditEvent ev = {
                .actor = a->actor, .op = "approval_decision", .decision = "deny", .kind = kind, .detail = detail
        };
        (void) pod_audit(a->pod, &ev);
        return api_reply_error(a->c, MHD_HTTP_FORBIDDEN, kind, "%s", msg);
}

/* POST /v1/pods/{id}/approvals/{aid}: {"decision":"approve","digest","token","scope"?} or
 * {"decision":"refuse","digest","reason"?}. */
enum MHD_Result api_h_pod_approval_decide(ApiCall *a) {
        const char *aid = a->args[0];
        Pod *p = a->pod;
        _cleanup_json_ json_t *body = NULL, *rec = NULL;
        _cleanup_free_ char *perr = NULL, *err = NULL;
        ApprovalPendingInfo info;
        enum MHD_Result ret;
        int r;

        if (!approval_id_ok(aid))
                return reply_no_approval(a);
        if (json_parse_strict(a->body, a->n_body, a->n_body, &body, &perr) < 0 || !json_is_object(body))
                return api_reply_error(
                        a->c, MHD_HTTP_BAD_REQUEST, "invalid_request", "body: a JSON decision expected");
        const char *decision = json_string_value(json_object_get(body, "decision"));
        const char *digest = json_string_value(json_object_get(body, "digest"));
        const char *token = json_string_value(json_object_get(body, "token"));
        const char *reason = json_string_value(json_object_get(body, "reason"));
        bool approve = streq_ptr(decision, "approve");
        if ((!approve && !streq_ptr(decision, "refuse")) || !digest || (approve && !token) ||
            (reason && (strlen(reason) > APPROVAL_QUEUE_REASON_MAX || string_has_cc(reason, NULL))))
                return api_reply_error(
                        a->c,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request",
                        "body: {\"decision\": \"approve\", \"digest\", \"token\"} or {\"decision\": "
                        "\"refuse\", \"digest\", \"reason\"?}");
        r = approval_queue_begin_decision(p->approvals, aid, digest, (int64_t) time(NULL), &info);
        if (r == -ENOENT)
                return reply_no_approval(a);
        if (r == -EALREADY)
                return api_reply_error(
                        a->c, MHD_HTTP_CONFLICT, "already_decided", "the approval was already decided");
        if (r == -ETIME)
                return api_reply_error(
                        a->c, MHD_HTTP_CONFLICT, "approval_expired", "the approval expired before the decision");
        if (r == -EBADMSG)
                return api_reply_error(
                        a->c,
                        MHD_HTTP_CONFLICT,
                        "approval_mismatch",
                        "the decision is about other bytes than the pending approval (digest differs)");
        if (r < 0)
                return api_reply_error(
                        a->c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "cannot decide the approval");

        const char *scope = NULL;
        if (approve) {
                ApprovalToken t = {};
                ApprovalResult ar = p->node->have_approver_pub
                        ? approval_token_verify(token, p->node->approver_pub, &t, &err)
                        : APPROVAL_BAD_SIGNATURE;
                int64_t now = (int64_t) time(NULL);
                if (ar == APPROVAL_OK)
                        ar = approval_token_check(
                                &t, p->id, info.operation, info.args_sha256[0] ? info.args_sha256 : NULL, now);
                if (ar == APPROVAL_OK && t.expires_at > now + APPROVAL_MAX_TTL_SEC)
                        ar = APPROVAL_TTL_TOO_LONG;
                if (ar == APPROVAL_OK && info.args_sha256[0] && !t.has_args)
                        ar = APPROVAL_WRONG_ARGS;
                scope = t.uses > 1 ? "pod" : "once";
                if (ar != APPROVAL_OK || (t.uses > 1 && !info.scope_pod_offered)) {
                        approval_queue_abort_decision(p->approvals, aid);
                        metrics_approval("invalid");
                        _cleanup_free_ char *msg = ar != APPROVAL_OK
                                ? xasprintf("approval token refused: %s", approval_result_to_string(ar))
                                : xasprintf(
                                          "'%s' cannot be approved for the rest of the pod: approve it once",
                                          info.operation);
                        return decision_refused(a, aid, "approval_invalid", msg);
                }
                if (!api_pod_check_callable(a->c, p, &ret)) {
                        approval_queue_abort_decision(p->approvals, aid);
                        return ret;
                }
                /* The decision's record is written before the token reaches the proxy. */
                _cleanup_json_ json_t *pre = json_pack("{s:s,s:s}", "approval", aid, "scope", scope);
                AuditEvent pre_ev = { .actor = a->actor,
                                      .op = "approval_decision",
                                      .decision = "allow",
                                      .detail = pre,
                                      .result = digest,
                                      .result_len = strlen(digest) };
                if (pod_audit(p, &pre_ev) < 0) {
                        approval_queue_abort_decision(p->approvals, aid);
                        return api_reply_error(
                                a->c,
                                MHD_HTTP_SERVICE_UNAVAILABLE,
                                "audit_unavailable",
                                "the decision cannot be recorded: refused");
                }
                _cleanup_json_ json_t *args = json_pack("{s:s}", "token", token);
                ChannelReply rep = {};
                r = channel_call(p->channel, "approve", args, 0, NULL, 0, api_pod_call_timeout(p), 0, &rep);
                if (r < 0) {
                        approval_queue_abort_decision(p->approvals, aid);
                        return api_reply_channel_error(a->c, p, r);
                }
                const char *kind = NULL, *d = api_answer_decision(rep.response, &kind);
                if (!streq(d, "allow")) {
                        approval_queue_abort_decision(p->approvals, aid);
                        _cleanup_free_ char *m = string_make_visible(
                                json_string_value(json_object_get(rep.response, "error"))
                                        ?: "the proxy refused the token");
                        channel_reply_done(&rep);
                        return decision_refused(a, aid, "approval_invalid", m);
                }
                channel_reply_done(&rep);
        }
        r = approval_queue_finish_decision(
                p->approvals, aid, approve, scope, a->actor, approve ? NULL : reason, (int64_t) time(NULL), &rec);
        if (r < 0)
                return api_reply_error(
                        a->c, MHD_HTTP_CONFLICT, "already_decided", "the pod ended before the decision");
        if (!approve) {
                _cleanup_json_ json_t *detail = json_pack("{s:s,s:s}", "approval", aid, "reason", reason ?: "");
                AuditEvent ev = { .actor = a->actor,
                                  .op = "approval_decision",
                                  .decision = "deny",
                                  .kind = "approval_refused",
                                  .detail = detail,
                                  .result = digest,
                                  .result_len = strlen(digest) };
                (void) pod_audit(p, &ev); /* refusing changes nothing, recorded or not */
        }
        metrics_approval(approve ? "accepted" : "rejected");
        metrics_approval_queue(approve ? "approved" : "refused");
        pod_publish(p, "approval", rec);
        return api_reply_json(a->c, MHD_HTTP_OK, rec);
}
