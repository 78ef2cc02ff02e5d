/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus-gateway: the HTTP side. Each request is authenticated with the run's token,
 * checked against the allow lists (gateway-wire.c), its cost bound reserved on the budget,
 * then forwarded as a call (gateway-call.c) whose answer streams back unchanged.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "gateway-internal.h"
#include "json-util.h"
#include "log.h"
#include "string-util.h"
#include "time-util.h"

/* ---- requests ---- */

typedef struct Req {
        GatewayFormat format;
        bool beta;
        char *body;
        size_t len;
        bool too_big;
        unsigned refused_status; /* answered at header time */
        char *refused_type, *refused_msg;
        const char *refused_kind;
} Req;

static void req_free(Req *q) {
        if (!q)
                return;
        free(q->body);
        free(q->refused_type);
        free(q->refused_msg);
        free(q);
}

static enum MHD_Result reply_error(
        struct MHD_Connection *conn,
        unsigned status,
        const char *type,
        const char *code,
        const char *kind,
        const char *msg,
        const char *model) {
        _cleanup_free_ char *body = gateway_error_body(gw.anthropic, type, code, msg);
        struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
        if (!r)
                return MHD_NO;
        (void) MHD_add_response_header(r, "Content-Type", "application/json");
        (void) MHD_add_response_header(r, "Cache-Control", "no-store");
        /* Lets the built-in client tell a final refusal from a busy provider. */
        if (streq(kind, "budget") || streq(kind, "deadline"))
                (void) MHD_add_response_header(r, "X-Nucleus-Refusal", kind);
        enum MHD_Result ret = MHD_queue_response(conn, status, r);
        MHD_destroy_response(r);

        _cleanup_json_ json_t *rec = json_pack(
                "{s:s, s:s, s:I, s:s}",
                "outcome",
                "refused",
                "reason",
                kind,
                "status",
                (json_int_t) status,
                "detail",
                msg);
        if (model)
                json_object_set_new(rec, "model", json_string(model));
        gw_audit_write(rec);
        return ret;
}

/* The agent's credential: x-api-key, or Authorization: Bearer. Constant-time compare. */
static bool authorized(struct MHD_Connection *conn) {
        const char *k = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-api-key");
        const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        if (!k && a && strncasecmp(a, "Bearer ", 7) == 0)
                k = a + 7;
        return k && strlen(k) == strlen(gw.token) && memeq_consttime(k, gw.token, strlen(gw.token));
}

typedef struct QueryCheck {
        GatewayFormat f;
        bool ok, beta;
} QueryCheck;

static enum MHD_Result query_cb(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        QueryCheck *q = cls;
        if (gateway_query_allowed(q->f, key, value))
                q->beta = true;
        else
                q->ok = false;
        return MHD_YES;
}

static bool beta_allowed(const char *b, size_t n) {
        /* Betas that switch on provider-side tools or stored files; their request fields are
         * refused anyway, this keeps the header from enabling them. */
        static const char *const refused[] = { "files-api",  "mcp-client", "code-execution", "web-fetch",
                                               "web-search", "skills",     "computer-use",   NULL };
        for (size_t i = 0; refused[i]; i++)
                if (memmem(b, n, refused[i], strlen(refused[i])))
                        return false;
        return true;
}

static char *filtered_betas(const char *v) {
        _cleanup_free_ char *out = xstrdup("");
        const char *p = v;
        while (p && *p) {
                const char *e = strchr(p, ',');
                size_t n = e ? (size_t) (e - p) : strlen(p);
                while (n > 0 && *p == ' ')
                        p++, n--;
                if (n > 0 && beta_allowed(p, n)) {
                        char *t = xasprintf("%s%s%.*s", out, *out ? "," : "", (int) n, p);
                        free(out);
                        out = t;
                }
                p = e ? e + 1 : NULL;
        }
        return isempty(out) ? NULL : TAKE_PTR(out);
}

static enum MHD_Result forward(struct MHD_Connection *conn, Req *q) {
        _cleanup_json_ json_t *req = NULL;
        _cleanup_free_ char *err = NULL;
        const char *model = NULL;
        uint64_t max_out = 0;
        bool stream = false;
        Price price = {};
        int r;

        if (q->too_big)
                return reply_error(
                        conn,
                        MHD_HTTP_CONTENT_TOO_LARGE,
                        "invalid_request_error",
                        NULL,
                        "request",
                        "request body too large",
                        NULL);
        if (json_parse_strict(q->body ? q->body : "", q->len, GW_MAX_REQUEST, &req, &err) < 0)
                return reply_error(
                        conn,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request_error",
                        NULL,
                        "request",
                        "request body is not JSON",
                        NULL);
        r = gateway_request_check(q->format, req, gw.max_output, &model, &max_out, &stream, &err);
        if (r < 0) {
                _cleanup_free_ char *m = xasprintf("nucleus gateway: %s", err ? err : "request refused");
                return reply_error(
                        conn,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request_error",
                        NULL,
                        r == -EPERM ? "policy" : "request",
                        m,
                        NULL);
        }
        _cleanup_free_ char *model_copy = xstrdup(model);

        if (gw.deadline > 0 && now_usec(CLOCK_MONOTONIC) >= gw.deadline)
                return reply_error(
                        conn,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request_error",
                        "run_deadline_passed",
                        "deadline",
                        "nucleus: the run's deadline has passed; no further model calls are allowed. Stop "
                        "and "
                        "report what you have.",
                        model_copy);

        bool metered = q->format != GATEWAY_ANTHROPIC_COUNT;
        BudgetReservation res = {};
        char node_resv[33] = "";
        if (metered) {
                json_t *p = json_object_get(gw.prices, model_copy);
                if (!json_is_array(p)) {
                        _cleanup_free_ char *m = xasprintf(
                                "nucleus gateway: model \"%s\" has no price configured for this run; calls "
                                "to it "
                                "are refused so that spending stays bounded",
                                model_copy);
                        return reply_error(
                                conn,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request_error",
                                "model_not_found",
                                "price",
                                m,
                                model_copy);
                }
                price.in = (uint64_t) json_integer_value(json_array_get(p, 0));
                price.out = (uint64_t) json_integer_value(json_array_get(p, 1));
                pthread_mutex_lock(&gw.lock);
                bool exhausted = gw.exhausted;
                pthread_mutex_unlock(&gw.lock);
                uint64_t bound = gateway_reserve_bound(q->len, max_out, price.in, price.out, NULL);
                int nr = 0;
                if (!exhausted && budget_meter_reserve(gw.meter, bound, 0, 0, &res) >= 0 && gw.node) {
                        /* And on the pod's budget in the node, which concurrent runs and tool
                         * calls share. */
                        nr = gw_node_reserve(bound, node_resv);
                        if (nr < 0)
                                (void) budget_meter_release(gw.meter, &res);
                }
                if (nr == -ETIME)
                        return reply_error(
                                conn,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request_error",
                                "run_deadline_passed",
                                "deadline",
                                "nucleus: the pod's deadline has passed; no further model calls are "
                                "allowed. "
                                "Stop and report what you have.",
                                model_copy);
                if (exhausted || !res.active)
                        return reply_error(
                                conn,
                                gw.anthropic ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_TOO_MANY_REQUESTS,
                                gw.anthropic ? "invalid_request_error" : "insufficient_quota",
                                "insufficient_quota",
                                "budget",
                                "nucleus: the run's model budget is exhausted (or this call's upper bound "
                                "does not "
                                "fit in what is left); no further model calls are allowed. Stop and report "
                                "what "
                                "you have.",
                                model_copy);
        }

        Call *c = xnew0(Call, 1);
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        c->refs = 1;
        c->format = q->format;
        c->model = TAKE_PTR(model_copy);
        c->stream = stream;
        c->reservation = res;
        memcpy(c->node_resv, node_resv, sizeof c->node_resv);
        c->price = price;
        c->started = now_usec(CLOCK_MONOTONIC);
        c->last_activity = c->started;
        c->body = json_dumps(req, JSON_COMPACT);
        c->url = xasprintf("%s%s%s", gw.upstream, gateway_format_path(q->format), q->beta ? "?beta=true" : "");
        c->sse = sse_parser_new(GW_MAX_EVENT, gw_on_usage_event, c);

        c->hdrs = curl_slist_append(c->hdrs, "Content-Type: application/json");
        c->hdrs = curl_slist_append(c->hdrs, stream ? "Accept: text/event-stream" : "Accept: application/json");
        if (gw.anthropic) {
                const char *ver = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "anthropic-version");
                const char *beta = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "anthropic-beta");
                _cleanup_free_ char *vh = xasprintf(
                        "anthropic-version: %s",
                        ver && !string_has_cc(ver, NULL) && strlen(ver) < 64 ? ver : "2023-06-01");
                c->hdrs = curl_slist_append(c->hdrs, vh);
                if (beta && !string_has_cc(beta, NULL) && strlen(beta) < 1024) {
                        _cleanup_free_ char *fb = filtered_betas(beta);
                        if (fb) {
                                _cleanup_free_ char *bh = xasprintf("anthropic-beta: %s", fb);
                                c->hdrs = curl_slist_append(c->hdrs, bh);
                        }
                }
                if (!isempty(gw.api_key)) {
                        _cleanup_(erase_and_freep) char *h = xasprintf("x-api-key: %s", gw.api_key);
                        c->hdrs = curl_slist_append(c->hdrs, h);
                }
        } else if (!isempty(gw.api_key)) {
                _cleanup_(erase_and_freep) char *h = xasprintf("Authorization: Bearer %s", gw.api_key);
                c->hdrs = curl_slist_append(c->hdrs, h);
        }

        c->curl = curl_easy_init();
        if (!c->curl || !c->body || !c->sse) {
                if (c->reservation.active)
                        (void) budget_meter_release(gw.meter, &c->reservation);
                if (c->node_resv[0]) {
                        bool ex = false;
                        (void) gw_node_settle(c->node_resv, 0, 0, 0, &ex);
                }
                gw_call_unref(c);
                return MHD_NO;
        }
        uint64_t connect_ms = gw.connect_timeout_ms;
        if (gw.deadline > 0) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                connect_ms = NUCLEUS_MAX(
                        NUCLEUS_MIN(connect_ms, gw.deadline > now ? (gw.deadline - now) / USEC_PER_MSEC : 0),
                        (uint64_t) 1);
        }
        (void) curl_easy_setopt(c->curl, CURLOPT_URL, c->url);
        (void) curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
        (void) curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->hdrs);
        (void) curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, c->body);
        (void) curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(c->body));
        (void) curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, gw_header_cb);
        (void) curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, c);
        (void) curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, gw_write_cb);
        (void) curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
        (void) curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
        (void) curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, gw_progress_cb);
        (void) curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
        (void) curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, (long) connect_ms);
        (void) curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);

        pthread_t th;
        c->refs = 2; /* the worker and this connection */
        if (!gw_active_add(c) || pthread_create(&th, NULL, gw_worker, c) != 0) {
                pthread_mutex_lock(&gw.lock);
                for (size_t i = 0; i < ELEMENTSOF(gw.active); i++)
                        if (gw.active[i] == c)
                                gw.active[i] = NULL;
                pthread_mutex_unlock(&gw.lock);
                if (c->reservation.active)
                        (void) budget_meter_release(gw.meter, &c->reservation);
                if (c->node_resv[0]) {
                        bool ex = false;
                        (void) gw_node_settle(c->node_resv, 0, 0, 0, &ex);
                }
                c->refs = 1;
                gw_call_unref(c);
                return MHD_NO;
        }
        (void) pthread_detach(th);

        pthread_mutex_lock(&c->lock);
        while (!c->headers_done)
                pthread_cond_wait(&c->cond, &c->lock);
        long status = c->status;
        pthread_mutex_unlock(&c->lock);

        if (status == 0 && gw.deadline > 0 && now_usec(CLOCK_MONOTONIC) >= gw.deadline) {
                gw_call_unref(c);
                return reply_error(
                        conn,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request_error",
                        "run_deadline_passed",
                        "deadline",
                        "nucleus: the run's deadline passed while the model was answering; no further model "
                        "calls are allowed.",
                        NULL);
        }
        if (status == 0) {
                gw_call_unref(c);
                return reply_error(
                        conn,
                        MHD_HTTP_BAD_GATEWAY,
                        "api_error",
                        NULL,
                        "upstream",
                        "nucleus gateway: the model provider could not be reached",
                        NULL);
        }
        struct MHD_Response *resp = MHD_create_response_from_callback(
                MHD_SIZE_UNKNOWN, 64 * 1024, gw_reader_cb, c, gw_reader_free);
        if (!resp) {
                gw_reader_free(c);
                return MHD_NO;
        }
        (void) MHD_add_response_header(
                resp, "Content-Type", c->content_type ? c->content_type : "application/json");
        (void) MHD_add_response_header(resp, "Cache-Control", "no-store");
        if (c->retry_after)
                (void) MHD_add_response_header(resp, "Retry-After", c->retry_after);
        if (c->request_id)
                (void) MHD_add_response_header(resp, "request-id", c->request_id);
        enum MHD_Result ret = MHD_queue_response(conn, (unsigned) status, resp);
        MHD_destroy_response(resp);
        return ret;
}

enum MHD_Result gw_on_request(
        void *cls,
        struct MHD_Connection *conn,
        const char *url,
        const char *method,
        const char *version,
        const char *upload_data,
        size_t *upload_data_size,
        void **con_cls) {
        Req *q = *con_cls;

        if (!q) {
                q = xnew0(Req, 1);
                *con_cls = q;
                q->format = gateway_route(gw.anthropic, method, url);
                if (!authorized(conn)) {
                        q->refused_status = MHD_HTTP_UNAUTHORIZED;
                        q->refused_type = xstrdup("authentication_error");
                        q->refused_kind = "auth";
                        /* What was refused, for the run's records (an agent's side request
                         * without the token shows up as such). */
                        q->refused_msg = xasprintf(
                                "nucleus gateway: invalid credential for %.16s %.200s (use the run's token)",
                                method,
                                url);
                } else if ((int) q->format < 0) {
                        q->refused_status = MHD_HTTP_NOT_FOUND;
                        q->refused_type = xstrdup("not_found_error");
                        q->refused_kind = "endpoint";
                        q->refused_msg = xasprintf(
                                "nucleus gateway: %s %s is not on the allow list (only %s)",
                                method,
                                url,
                                gw.anthropic ? "POST /v1/messages and /v1/messages/count_tokens"
                                             : "POST /v1/chat/completions and /v1/responses");
                } else {
                        QueryCheck qc = { .f = q->format, .ok = true };
                        (void) MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, query_cb, &qc);
                        q->beta = qc.beta;
                        if (!qc.ok) {
                                q->refused_status = MHD_HTTP_BAD_REQUEST;
                                q->refused_type = xstrdup("invalid_request_error");
                                q->refused_kind = "request";
                                q->refused_msg = xstrdup("nucleus gateway: query parameters are not "
                                                         "allowed");
                        }
                }
                /* Refusals are answered before any body byte is read. */
                if (q->refused_status)
                        return reply_error(
                                conn,
                                q->refused_status,
                                q->refused_type,
                                NULL,
                                q->refused_kind,
                                q->refused_msg,
                                NULL);
                return MHD_YES;
        }
        if (q->refused_status)
                return MHD_YES;
        if (*upload_data_size > 0) {
                if (q->too_big || q->len + *upload_data_size > GW_MAX_REQUEST) {
                        q->too_big = true;
                        q->body = mfree(q->body);
                        q->len = 0;
                } else {
                        q->body = xrealloc(q->body, q->len + *upload_data_size + 1);
                        memcpy(q->body + q->len, upload_data, *upload_data_size);
                        q->len += *upload_data_size;
                        q->body[q->len] = 0;
                }
                *upload_data_size = 0;
                return MHD_YES;
        }
        return forward(conn, q);
}

void gw_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
        req_free(*con_cls);
        *con_cls = NULL;
}
