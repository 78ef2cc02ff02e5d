/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Request dispatch, the policy gate and audit events, plus the host-side ops (configure,
 * status, charge, approve). Requests are untrusted JSON; the order of checks is documented
 * in docs/proxy.md and must not change without updating it.
 */
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "alloc-util.h"
#include "log.h"
#include "proxy.h"
#include "string-util.h"

typedef struct OpEntry {
        const char *name;
        void (*handler)(Request *req);
        bool before_configure; /* allowed before configure */
} OpEntry;

static const OpEntry op_table[] = {
        { "configure", op_configure, true },
        { "reconfigure", op_reconfigure, false },
        { "status", op_status, false },
        { "charge", op_charge, false },
        { "approve", op_approve, false },
        { "read", op_read, false },
        { "write", op_write, false },
        { "edit", op_edit, false },
        { "list", op_list, false },
        { "glob", op_glob, false },
        { "grep", op_grep, false },
        { "run", op_run, false },
        { "web_fetch", op_web_fetch, false },
        { "import", op_import, false },
        { "export", op_export, false },
        { "setup", op_setup, false },
        { "setup_done", op_setup_done, false },
};

Request *request_free(Request *req) {
        if (!req)
                return NULL;
        if (req->reserved && req->proxy->budget)
                (void) budget_meter_release(req->proxy->budget, &req->reservation);
        free(req->op);
        json_decref(req->args);
        erase_and_free(req->approval_token);
        free(req);
        return NULL;
}

/* Review: cap what the proxy can make the host store. Size: every field of an audit event is
 * bounded (op names are cut to PROXY_AUDIT_OP_MAX bytes, the rest are digests, kinds, numbers,
 * the pod id <= 128). Rate: a token bucket of PROXY_AUDIT_BURST events refilled at
 * PROXY_AUDIT_RATE per second; events over it are not sent but counted, and the count goes
 * out as one {"type":"audit_dropped","count":N} event as soon as a token is available again,
 * so the record shows that (and how much) was dropped. Responses are never dropped. */
#define PROXY_AUDIT_BURST 1000U
#define PROXY_AUDIT_RATE 200U
#define PROXY_AUDIT_OP_MAX 64U

static bool audit_take_token(Proxy *p) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (p->audit_refill == 0) {
                p->audit_refill = now;
                p->audit_tokens = PROXY_AUDIT_BURST;
        }
        uint64_t add = (now - p->audit_refill) * PROXY_AUDIT_RATE / USEC_PER_SEC;
        if (add > 0) {
                p->audit_tokens = NUCLEUS_MIN(p->audit_tokens + add, (uint64_t) PROXY_AUDIT_BURST);
                p->audit_refill += add * USEC_PER_SEC / PROXY_AUDIT_RATE;
        }
        if (p->audit_tokens == 0)
                return false;
        p->audit_tokens--;
        return true;
}

static void emit_audit(Request *req, const char *decision, const char *kind, const char *result_sha256) {
        Proxy *p = req->proxy;
        usec_t dur = now_usec(CLOCK_MONOTONIC) - req->start;
        if (!audit_take_token(p)) {
                p->audit_dropped++;
                return;
        }
        if (p->audit_dropped > 0) {
                json_t *d = json_pack(
                        "{s:s, s:I, s:I}",
                        "type",
                        "audit_dropped",
                        "count",
                        (json_int_t) p->audit_dropped,
                        "time_unix",
                        (json_int_t) time(NULL));
                if (!d)
                        oom_abort();
                if (p->cfg.pod_id)
                        json_object_set_new(d, "pod", json_string(p->cfg.pod_id));
                proxy_send_json(p, FRAME_EVENT, 0, d);
                json_decref(d);
                p->audit_dropped = 0;
        }
        /* Cut at a UTF-8 character boundary (op came from JSON: valid UTF-8). */
        size_t oplen = strlen(req->op);
        if (oplen > PROXY_AUDIT_OP_MAX) {
                oplen = PROXY_AUDIT_OP_MAX;
                while (oplen > 0 && ((unsigned char) req->op[oplen] & 0xC0) == 0x80)
                        oplen--;
        }
        _cleanup_free_ char *op = xstrndup(req->op, oplen);
        json_t *ev = json_pack(
                "{s:s, s:s, s:I, s:s, s:s, s:o, s:I, s:s, s:I}",
                "type",
                "audit",
                "op",
                op,
                "stream",
                (json_int_t) req->stream_id,
                "args_sha256",
                req->args_sha256,
                "decision",
                decision,
                "kind",
                kind ? json_string(kind) : json_null(),
                "duration_ms",
                (json_int_t) (dur / USEC_PER_MSEC),
                "result_sha256",
                result_sha256,
                "time_unix",
                (json_int_t) time(NULL));
        if (!ev)
                oom_abort();
        if (p->cfg.pod_id)
                json_object_set_new(ev, "pod", json_string(p->cfg.pod_id));
        proxy_send_json(p, FRAME_EVENT, req->stream_id, ev);
        json_decref(ev);
}

void request_finish(Request *req, json_t *result) {
        Proxy *p = req->proxy;
        _cleanup_free_ char *text = json_dumps(result, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
                oom_abort();
        char digest[65];
        sha256_hex(text, strlen(text), digest);
        json_t *kind = json_object_get(result, "kind");
        bool is_error = json_object_get(result, "error") && json_is_string(kind);

        proxy_send_json(p, FRAME_RESPONSE, req->stream_id, result);
        /* A program that is not installed is an error, not a policy denial (issue 14). */
        const char *decision = !is_error                          ? "allow"
                : streq_ptr(json_string_value(kind), "not_found") ? "error"
                                                                  : "deny";
        emit_audit(req, decision, is_error ? json_string_value(kind) : NULL, digest);
        log_debug("%s [%u]: %s", req->op, req->stream_id, is_error ? json_string_value(kind) : "ok");
        json_decref(result);
        request_free(req);
}

void request_fail(Request *req, ErrorKind kind, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *msg = xvasprintf(fmt, ap);
        va_end(ap);
        request_finish(req, proto_error_new(kind, "%s", msg));
}

int request_check_deadline(Request *req) {
        Proxy *p = req->proxy;
        if (time_window_check(&p->window) < 0) {
                request_fail(
                        req,
                        ERROR_KIND_TIME_VIOLATION,
                        "time constraint violated: the pod's deadline has passed");
                return -ETIME;
        }
        return 0;
}

/* True if the token's nonce has been used and has no uses left. */
static bool token_used_up(Proxy *p, const ApprovalToken *t) {
        return strv_contains(p->used_nonces, t->nonce) &&
                approval_registry_remaining(p->approvals, t->nonce, (int64_t) time(NULL)) == 0;
}

/* The token a request may use: its own "approval" argument, else a pending one from
 * `approve` that verifies and matches (pod, op, args). Returns the token (borrowed) or NULL,
 * and the first mismatch reason if a token was given but does not fit. */
static const char *
        find_token(Request *req, Operation op, const char *args_sha, ApprovalResult *ret_res, char **ret_err) {
        Proxy *p = req->proxy;
        *ret_res = _APPROVAL_RESULT_INVALID;
        if (req->approval_token) {
                ApprovalToken t;
                ApprovalResult r = approval_token_verify(req->approval_token, p->cfg.approver_key, &t, ret_err);
                if (r == APPROVAL_OK)
                        r = approval_token_check(
                                &t,
                                p->cfg.pod_id,
                                operation_to_string(op),
                                t.has_args ? args_sha : NULL,
                                (int64_t) time(NULL));
                *ret_res = r;
                return r == APPROVAL_OK ? req->approval_token : NULL;
        }
        STRV_FOREACH(tok, p->pending_tokens) {
                ApprovalToken t;
                if (approval_token_verify(*tok, p->cfg.approver_key, &t, NULL) != APPROVAL_OK)
                        continue;
                if (approval_token_check(
                            &t,
                            p->cfg.pod_id,
                            operation_to_string(op),
                            t.has_args ? args_sha : NULL,
                            (int64_t) time(NULL)) != APPROVAL_OK ||
                    token_used_up(p, &t))
                        continue;
                *ret_res = APPROVAL_OK;
                return *tok;
        }
        return NULL;
}

int request_gate(Request *req, PolicyDecision *d, uint64_t reserve_usd_micros) {
        Proxy *p = req->proxy;
        int r;

        /* 1. deadline */
        if (request_check_deadline(req) < 0) {
                policy_decision_done(d);
                return -ETIME;
        }

        /* 2.-4. capability, path/command rules, obligation: one policy decision. */
        if (d->verdict == POLICY_DENY) {
                ErrorKind k = error_kind_from_string(d->kind);
                request_fail(req, k < 0 ? ERROR_KIND_INTERNAL : k, "%s", d->message);
                policy_decision_done(d);
                return -EPERM;
        }
        if (d->verdict == POLICY_NEEDS_APPROVAL) {
                ApprovalResult ar = _APPROVAL_RESULT_INVALID;
                _cleanup_free_ char *err = NULL;
                const char *args_sha = req->approval_args[0] ? req->approval_args : NULL;
                const char *tok = p->cfg.have_approver ? find_token(req, d->operation, args_sha, &ar, &err)
                                                       : NULL;
                if (!tok) {
                        json_t *e;
                        if (req->approval_token && p->cfg.have_approver)
                                e = proto_error_new(
                                        ERROR_KIND_APPROVAL_INVALID,
                                        "approval token rejected (%s)%s%s",
                                        approval_result_to_string(ar) ?: "invalid",
                                        err ? ": " : "",
                                        err ?: "");
                        else
                                e = proto_error_new(ERROR_KIND_APPROVAL_REQUIRED, "%s", d->message);
                        json_object_set_new(e, "operation", json_string(operation_to_string(d->operation)));
                        if (args_sha)
                                json_object_set_new(e, "args_sha256", json_string(args_sha));
                        if (p->cfg.pod_id)
                                json_object_set_new(e, "pod", json_string(p->cfg.pod_id));
                        if (req->approval_token && ar >= 0)
                                json_object_set_new(e, "detail", json_string(approval_result_to_string(ar)));
                        policy_decision_done(d);
                        request_finish(req, e);
                        return -EACCES;
                }
                req->approval_op = d->operation;
                if (tok != req->approval_token) {
                        erase_and_free(req->approval_token);
                        req->approval_token = xstrdup(tok);
                }
        } else {
                /* Not needed: an attached token is ignored (and not consumed). */
                req->approval_token = erase_and_free(req->approval_token);
        }
        policy_decision_done(d);

        /* 5. budget reservation */
        r = budget_meter_reserve(p->budget, reserve_usd_micros, 0, 0, &req->reservation);
        if (r < 0) {
                char used[32], max[32];
                BudgetSnapshot s;
                budget_meter_snapshot(p->budget, &s);
                request_fail(
                        req,
                        ERROR_KIND_BUDGET_EXHAUSTED,
                        "budget exhausted: requested %s USD, spent %s of %s",
                        budget_format_usd((char[32]){}, reserve_usd_micros),
                        budget_format_usd(used, s.consumed_usd_micros),
                        budget_format_usd(max, s.max_usd_micros));
                return -EDQUOT;
        }
        req->reserved = true;

        /* 6. consume the approval now that everything else allowed the call. */
        if (req->approval_token) {
                _cleanup_free_ char *err = NULL;
                /* A token bound to arguments must match them exactly; an unbound one approves
                 * the operation whatever its arguments (the approver chose so). */
                ApprovalToken bound;
                const char *args_sha = req->approval_args[0] &&
                                approval_token_verify(req->approval_token, p->cfg.approver_key, &bound, NULL) ==
                                        APPROVAL_OK &&
                                bound.has_args
                        ? req->approval_args
                        : NULL;
                ApprovalResult ar = approval_registry_use(
                        p->approvals,
                        req->approval_token,
                        p->cfg.approver_key,
                        p->cfg.pod_id,
                        operation_to_string(req->approval_op),
                        args_sha,
                        (int64_t) time(NULL),
                        &err);
                if (ar != APPROVAL_OK) {
                        json_t *e = proto_error_new(
                                ERROR_KIND_APPROVAL_INVALID,
                                "approval token rejected (%s)%s%s",
                                approval_result_to_string(ar) ?: "invalid",
                                err ? ": " : "",
                                err ?: "");
                        json_object_set_new(e, "operation", json_string(operation_to_string(req->approval_op)));
                        json_object_set_new(
                                e, "detail", json_string(approval_result_to_string(ar) ?: "invalid"));
                        request_finish(req, e);
                        return -EACCES;
                }
                /* Remember the nonce; drop the token from the pending pool when used up. */
                ApprovalToken t;
                if (approval_token_verify(req->approval_token, p->cfg.approver_key, &t, NULL) == APPROVAL_OK &&
                    !strv_contains(p->used_nonces, t.nonce)) {
                        if (strv_length(p->used_nonces) >= APPROVAL_REGISTRY_DEFAULT_CAPACITY)
                                p->used_nonces = strv_free(p->used_nonces); /* registry still refuses replays */
                        strv_extend(&p->used_nonces, t.nonce);
                }
                if (approval_token_verify(req->approval_token, p->cfg.approver_key, &t, NULL) == APPROVAL_OK &&
                    approval_registry_remaining(p->approvals, t.nonce, (int64_t) time(NULL)) == 0) {
                        char **w = p->pending_tokens;
                        STRV_FOREACH(tok, p->pending_tokens) {
                                if (streq(*tok, req->approval_token))
                                        erase_and_free(*tok);
                                else
                                        *w++ = *tok;
                        }
                        if (w)
                                *w = NULL;
                }
        }
        return 0;
}

void request_settle(Request *req, uint64_t actual_usd_micros) {
        if (!req->reserved)
                return;
        (void) budget_meter_settle(req->proxy->budget, &req->reservation, actual_usd_micros, 0, 0);
        req->reserved = false;
}

static void compute_args_digest(Request *req) {
        /* The digest covers the arguments without the approval token (a token is not an
         * argument of the operation it approves). */
        json_t *copy = json_deep_copy(req->args);
        json_object_del(copy, "approval");
        _cleanup_free_ char *text = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(copy);
        if (!text)
                oom_abort();
        sha256_hex(text, strlen(text), req->args_sha256);
}

/* The node's liveness ping ({"op":"ping"}, channel_liveness_start): answered at once from the
 * channel loop, before configure, with no Request, no audit event and no budget: it proves
 * only that this loop still runs. Returns true when f was a ping. */
static bool proxy_answer_ping(Proxy *p, Frame *f) {
        static const char want[] = "{\"args\":{},\"op\":\"ping\"}";
        if (f->length != sizeof want - 1 || memcmp(f->payload, want, sizeof want - 1) != 0)
                return false;
        json_t *pong = json_pack("{s:b}", "pong", 1);
        proxy_send_json(p, FRAME_RESPONSE, f->stream_id, pong);
        json_decref(pong);
        return true;
}

static void proxy_handle_request(Proxy *p, Frame *f) {
        _cleanup_free_ char *err = NULL;
        json_t *j = NULL;
        const char *op = NULL;
        json_t *args = NULL;

        if (proxy_answer_ping(p, f))
                return;

        if (proxy_find_job(p, f->stream_id)) {
                json_t *e = proto_error_new(
                        ERROR_KIND_CONFLICT, "stream %u already has a request in flight", f->stream_id);
                proxy_send_json(p, FRAME_RESPONSE, f->stream_id, e);
                json_decref(e);
                return;
        }

        Request *req = xnew0(Request, 1);
        req->proxy = p;
        req->stream_id = f->stream_id;
        req->start = now_usec(CLOCK_MONOTONIC);

        if (proto_json_parse(f->payload, f->length, &j, &err) < 0 ||
            proto_request_parse(j, &op, &args, &err) < 0) {
                req->op = xstrdup("invalid");
                req->args = json_object();
                compute_args_digest(req);
                json_decref(j);
                request_fail(req, ERROR_KIND_INVALID_REQUEST, "bad request: %s", err ?: "unparseable");
                return;
        }
        req->op = xstrdup(op);
        req->args = json_incref(args);
        json_decref(j);
        compute_args_digest(req);

        const OpEntry *e = NULL;
        for (size_t i = 0; i < ELEMENTSOF(op_table); i++)
                if (streq(op_table[i].name, req->op))
                        e = &op_table[i];
        if (!e) {
                request_fail(req, ERROR_KIND_UNSUPPORTED, "unknown operation '%s'", req->op);
                return;
        }
        if (!p->configured && !e->before_configure) {
                request_fail(
                        req, ERROR_KIND_NOT_CONFIGURED, "the proxy is not configured yet; send configure first");
                return;
        }

        /* Every op may carry an approval token inline; it is not part of the arguments. */
        json_t *tok = json_object_get(req->args, "approval");
        if (tok) {
                if (!json_is_string(tok) || json_string_length(tok) > APPROVAL_TOKEN_MAX) {
                        request_fail(
                                req,
                                ERROR_KIND_INVALID_REQUEST,
                                "%s: argument 'approval' must be a token string",
                                req->op);
                        return;
                }
                req->approval_token = xstrdup(json_string_value(tok));
                json_object_del(req->args, "approval");
        }
        /* The setup phase ends with the agent's first operation (and with setup_done): only
         * operations of the node itself may come before a setup command. */
        if (!proxy_op_is_setup(req->op) && !streq(req->op, "configure") && !streq(req->op, "status") &&
            !streq(req->op, "charge") && !streq(req->op, "approve") && !streq(req->op, "import"))
                p->setup_closed = true;
        /* What an approval token binds to; run and web_fetch refine it (argv, request). */
        (void) approval_args_sha256(req->args, req->approval_args);
        e->handler(req);
}

bool proxy_frame_is_control(const Frame *f) {
        static const char *const control[] = { "configure", "reconfigure", "status", "charge", "approve" };
        _cleanup_json_ json_t *j = NULL;
        _cleanup_free_ char *err = NULL;
        json_t *args;
        const char *op;

        /* Control requests are small; anything large is tool work (and is not parsed twice). */
        if (f->type != FRAME_REQUEST || f->length == 0 || f->length > 64 * 1024)
                return false;
        if (proto_json_parse(f->payload, f->length, &j, &err) < 0 ||
            proto_request_parse(j, &op, &args, &err) < 0)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(control); i++)
                if (streq(op, control[i]))
                        return true;
        return false;
}

void proxy_handle_frame(Proxy *p, Frame *f) {
        switch (f->type) {
        case FRAME_REQUEST:
                proxy_handle_request(p, f);
                return;
        case FRAME_DATA:
        case FRAME_END:
        case FRAME_CANCEL: {
                Job *j = proxy_find_job(p, f->stream_id);
                if (j && j->on_frame) {
                        j->on_frame(j, f);
                        return;
                }
                if (f->type == FRAME_CANCEL)
                        return; /* nothing to cancel: harmless */
                json_t *e = proto_error_new(
                        ERROR_KIND_INVALID_REQUEST, "no stream %u accepting data", f->stream_id);
                proxy_send_json(p, FRAME_ERROR, f->stream_id, e);
                json_decref(e);
                return;
        }
        case FRAME_RESPONSE:
        case FRAME_EVENT:
        case FRAME_ERROR:
        default: {
                json_t *e = proto_error_new(
                        ERROR_KIND_INVALID_REQUEST,
                        "unexpected %s frame from the node",
                        frame_type_to_string(f->type) ?: "unknown");
                proxy_send_json(p, FRAME_ERROR, f->stream_id, e);
                json_decref(e);
                return;
        }
        }
}

/* ---- jobs ---- */

Job *proxy_find_job(Proxy *p, uint32_t stream_id) {
        for (Job *j = p->jobs; j; j = j->next)
                if (j->stream_id == stream_id)
                        return j;
        return NULL;
}

void proxy_add_job(Proxy *p, Job *j) {
        if (j->req)
                j->stream_id = j->req->stream_id;
        j->next = p->jobs;
        p->jobs = j;
        p->n_jobs++;
}

void proxy_remove_job(Proxy *p, Job *j) {
        for (Job **pp = &p->jobs; *pp; pp = &(*pp)->next)
                if (*pp == j) {
                        *pp = j->next;
                        p->n_jobs--;
                        break;
                }
        j->next = p->graveyard;
        p->graveyard = j;
}

void proxy_jobs_reap_graveyard(Proxy *p) {
        while (p->graveyard) {
                Job *j = p->graveyard;
                p->graveyard = j->next;
                if (j->free)
                        j->free(j);
        }
}

void proxy_handle_peer_gone(Proxy *p) {
        /* Requests of a vanished peer are cancelled: their answers have nowhere to go. */
        while (p->jobs) {
                Job *j = p->jobs;
                if (j->on_frame) {
                        Frame f = { .type = FRAME_CANCEL, .stream_id = j->stream_id };
                        j->on_frame(j, &f);
                }
                if (p->jobs == j) /* the job did not remove itself */
                        proxy_remove_job(p, j);
        }
        proxy_jobs_reap_graveyard(p);
}

/* ---- host ops ---- */

static json_t *budget_json(Proxy *p) {
        BudgetSnapshot s;
        char a[32], b[32], c[32];
        budget_meter_snapshot(p->budget, &s);
        uint64_t left = s.max_usd_micros > s.consumed_usd_micros + s.reserved_usd_micros
                ? s.max_usd_micros - s.consumed_usd_micros - s.reserved_usd_micros
                : 0;
        json_t *j = json_pack(
                "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b}",
                "max_usd",
                budget_format_usd(a, s.max_usd_micros),
                "used_usd",
                budget_format_usd(b, s.consumed_usd_micros),
                "left_usd",
                budget_format_usd(c, left),
                "max_usd_micros",
                (json_int_t) s.max_usd_micros,
                "used_usd_micros",
                (json_int_t) s.consumed_usd_micros,
                "reserved_usd_micros",
                (json_int_t) s.reserved_usd_micros,
                "left_usd_micros",
                (json_int_t) left,
                "input_tokens",
                (json_int_t) s.consumed_input_tokens,
                "output_tokens",
                (json_int_t) s.consumed_output_tokens,
                "exhausted",
                budget_meter_exhausted(p->budget));
        if (!j)
                oom_abort();
        return j;
}

void op_status(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { NULL };
        if (args_check_keys(req, keys) < 0)
                return;
        usec_t left = time_window_remaining(&p->window);
        json_t *j = json_pack(
                "{s:s, s:s, s:o, s:o, s:b, s:I}",
                "policy_sha256",
                p->cfg.policy_sha256,
                "pod_id",
                p->cfg.pod_id,
                "budget",
                budget_json(p),
                "deadline_remaining_ms",
                left == USEC_INFINITY ? json_null() : json_integer((json_int_t) (left / USEC_PER_MSEC)),
                "expired",
                time_window_check(&p->window) < 0,
                "jobs",
                (json_int_t) p->n_jobs);
        if (!j)
                oom_abort();
        json_object_set_new(j, "policy", policy_to_json(p->cfg.policy));
        request_finish(req, j);
}

void op_charge(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { "usd_micros", "input_tokens", "output_tokens", "usd", NULL };
        uint64_t usd = 0, in = 0, out = 0;
        const char *usd_s = NULL;
        if (args_check_keys(req, keys) < 0 || args_get_u64(req, "usd_micros", 0, UINT64_MAX >> 12, &usd) < 0 ||
            args_get_u64(req, "input_tokens", 0, UINT64_MAX >> 12, &in) < 0 ||
            args_get_u64(req, "output_tokens", 0, UINT64_MAX >> 12, &out) < 0 ||
            args_get_string(req, "usd", false, &usd_s) < 0)
                return;
        if (usd_s) {
                uint64_t m;
                if (json_object_get(req->args, "usd_micros") || budget_parse_usd(usd_s, &m) < 0) {
                        request_fail(
                                req,
                                ERROR_KIND_INVALID_REQUEST,
                                "charge: 'usd' must be a decimal like \"0.25\" (and not combined with "
                                "usd_micros)");
                        return;
                }
                usd = m;
        }
        /* The host reports what was already spent (LLM tokens): record it even if it passes
         * the limit — the meter clamps at the maximum and is then exhausted. */
        BudgetReservation r;
        int k = budget_meter_reserve(p->budget, 0, 0, 0, &r);
        bool over;
        if (k < 0) {
                /* already exhausted */
                over = true;
        } else
                over = budget_meter_settle(p->budget, &r, usd, in, out) < 0;
        if (over) {
                json_t *e = proto_error_new(ERROR_KIND_BUDGET_EXHAUSTED, "budget exhausted by this charge");
                json_object_set_new(e, "budget", budget_json(p));
                request_finish(req, e);
                return;
        }
        json_t *j = json_pack("{s:b, s:o}", "ok", true, "budget", budget_json(p));
        request_finish(req, j);
}

void op_approve(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { "token", NULL };
        const char *text;
        if (args_check_keys(req, keys) < 0 || args_get_string(req, "token", true, &text) < 0)
                return;
        if (!p->cfg.have_approver) {
                request_fail(
                        req, ERROR_KIND_APPROVAL_INVALID, "approve: no approver public key was configured");
                return;
        }
        ApprovalToken t;
        _cleanup_free_ char *err = NULL;
        ApprovalResult r = approval_token_verify(text, p->cfg.approver_key, &t, &err);
        if (r == APPROVAL_OK) {
                /* Bound to this pod and not expired; op/args are checked at use. */
                r = approval_token_check(
                        &t, p->cfg.pod_id, t.operation, t.has_args ? t.args_sha256 : NULL, (int64_t) time(NULL));
        }
        if (r == APPROVAL_OK && token_used_up(p, &t))
                r = APPROVAL_EXHAUSTED;
        if (r == APPROVAL_OK)
                STRV_FOREACH(tok, p->pending_tokens)
                        if (streq(*tok, text)) {
                                request_fail(
                                        req, ERROR_KIND_APPROVAL_INVALID, "approve: token already pending");
                                return;
                        }
        if (r != APPROVAL_OK) {
                json_t *e = proto_error_new(
                        ERROR_KIND_APPROVAL_INVALID,
                        "approval token rejected (%s)%s%s",
                        approval_result_to_string(r) ?: "invalid",
                        err ? ": " : "",
                        err ?: "");
                json_object_set_new(e, "detail", json_string(approval_result_to_string(r) ?: "invalid"));
                request_finish(req, e);
                return;
        }
        if (strv_length(p->pending_tokens) >= 256) {
                request_fail(req, ERROR_KIND_CAPACITY, "approve: too many pending approvals");
                return;
        }
        strv_extend(&p->pending_tokens, text);
        json_t *j = json_pack(
                "{s:b, s:s, s:s, s:I, s:I}",
                "ok",
                true,
                "operation",
                t.operation,
                "nonce",
                t.nonce,
                "uses",
                (json_int_t) t.uses,
                "expires_at",
                (json_int_t) t.expires_at);
        if (t.has_args)
                json_object_set_new(j, "args_sha256", json_string(t.args_sha256));
        request_finish(req, j);
}
