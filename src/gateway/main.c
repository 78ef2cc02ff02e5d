/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus-gateway: the model gateway of one run (docs/gateway.md). Agents (the built-in loop,
 * Claude Code, Codex) send their model requests here with a per-run token; the gateway checks
 * each request against the allow lists (gateway-wire.c), reserves an upper bound of its cost
 * on the run's budget, forwards it to the provider with the real credential, streams the
 * answer back unchanged, and settles the reservation from the usage in the answer (a cut
 * answer settles at the reservation). One audit line per call; never the prompt or a key.
 *
 * Its configuration, the provider key included, arrives as one JSON document on stdin, never
 * in argv or the environment. It prints {"listen":"127.0.0.1:PORT"} on stdout when ready and
 * runs until SIGTERM or its parent dies.
 *
 * Concurrency: libmicrohttpd with a thread per connection; each forwarded call has a libcurl
 * worker thread feeding a bounded buffer that the connection thread drains into the reply.
 * The budget meter (src/lib/policy/budget.c) is thread-safe; the rest of the shared state is
 * under `lock`.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent-node.h"
#include "alloc-util.h"
#include "budget.h"
#include "client-settings.h"
#include "client.h"
#include "fd-util.h"
#include "gateway-wire.h"
#include "json-util.h"
#include "log.h"
#include "sse.h"
#include "string-util.h"
#include "time-util.h"

#define GW_MAX_CONFIG (1024U * 1024U)
#define GW_MAX_REQUEST (32U * 1024U * 1024U) /* request body from the agent */
#define GW_MAX_BUFFERED (8U * 1024U * 1024U) /* answer bytes not yet taken by the agent */
#define GW_MAX_WHOLE (16U * 1024U * 1024U)   /* whole (non-streamed) answer kept for its usage */
#define GW_MAX_EVENT (4U * 1024U * 1024U)    /* one SSE event, for usage accounting */
#define GW_MAX_CONNECTIONS 64U
#define GW_DEFAULT_MAX_OUTPUT 32000U

typedef struct Price {
        uint64_t in, out; /* micro-USD per million tokens */
} Price;

typedef struct Gateway {
        bool anthropic;
        char *upstream; /* provider base, without a trailing "/v1" */
        char *api_key;  /* erased on exit */
        char *token;    /* the per-run token agents present */
        json_t *prices; /* {"model": [in, out]} */
        uint64_t max_output;
        uint64_t deadline; /* CLOCK_MONOTONIC usec; 0: none */
        uint64_t connect_timeout_ms, idle_timeout_ms;
        BudgetMeter *meter;
        int audit_fd;        /* -1: none */
        NucleusClient *node; /* NULL: no node to charge */
        char *pod;

        pthread_mutex_t lock; /* everything below, the node client, audit writes */
        pthread_cond_t idle;  /* signalled when a worker ends */
        bool exhausted;
        struct Call *active[GW_MAX_CONNECTIONS]; /* calls whose worker runs */
} Gateway;

static Gateway gw = { .audit_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER };

/* ---- audit ---- */

static void audit_write(json_t *rec) {
        char ts[32];
        if (gw.audit_fd < 0)
                return;
        json_object_set_new(rec, "time", json_string(format_timestamp_rfc3339(ts, now_usec(CLOCK_REALTIME))));
        _cleanup_free_ char *line = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
        if (!line)
                return;
        _cleanup_free_ char *nl = xasprintf("%s\n", line);
        pthread_mutex_lock(&gw.lock);
        (void) loop_write(gw.audit_fd, nl, strlen(nl));
        pthread_mutex_unlock(&gw.lock);
}

/* ---- the forwarded call, shared by the connection thread and the curl worker ---- */

typedef struct Call {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned refs;

        /* request */
        GatewayFormat format;
        char *model;
        char *url;
        char *body;
        struct curl_slist *hdrs;
        bool stream;
        BudgetReservation reservation;
        Price price;
        uint64_t started;

        /* answer, under lock */
        char *buf;
        size_t buf_len, buf_off;
        bool headers_done, done, failed, client_gone;
        long status;
        char *content_type, *retry_after, *request_id;

        /* worker only */
        CURL *curl;
        SseParser *sse;
        GatewayUsage usage;
        char *whole;
        size_t whole_len;
        bool is_sse;
        uint64_t last_activity;
        curl_off_t last_dlnow;
} Call;

static void call_unref(Call *c) {
        pthread_mutex_lock(&c->lock);
        unsigned left = --c->refs;
        pthread_mutex_unlock(&c->lock);
        if (left > 0)
                return;
        free(c->model);
        free(c->url);
        free(c->body);
        if (c->hdrs) {
                for (struct curl_slist *i = c->hdrs; i; i = i->next)
                        explicit_bzero_safe(i->data, strlen(i->data));
                curl_slist_free_all(c->hdrs);
        }
        free(c->buf);
        free(c->content_type);
        free(c->retry_after);
        free(c->request_id);
        free(c->whole);
        sse_parser_free(c->sse);
        if (c->curl)
                curl_easy_cleanup(c->curl);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
        free(c);
}

static int on_usage_event(const char *event, const char *data, size_t n, void *userdata) {
        Call *c = userdata;
        gateway_usage_event(c->format, &c->usage, event, data, n);
        return 0;
}

static char *header_value(const char *line, size_t n, const char *name) {
        size_t l = strlen(name);
        if (n <= l + 1 || strncasecmp(line, name, l) != 0 || line[l] != ':')
                return NULL;
        const char *v = line + l + 1;
        const char *end = line + n;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
                end--;
        _cleanup_free_ char *raw = xstrndup(v, (size_t) (end - v));
        /* Only printable values are passed on to the agent. */
        if (strlen(raw) > 200 || string_has_cc(raw, NULL))
                return NULL;
        return TAKE_PTR(raw);
}

static size_t header_cb(char *line, size_t size, size_t nmemb, void *userdata) {
        Call *c = userdata;
        size_t n = size * nmemb;
        char *v;

        if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
                /* A new status line (after a 100 Continue): forget earlier headers. */
                c->content_type = mfree(c->content_type);
                c->retry_after = mfree(c->retry_after);
                c->request_id = mfree(c->request_id);
                return n;
        }
        if ((v = header_value(line, n, "content-type"))) {
                free(c->content_type);
                c->content_type = v;
        } else if ((v = header_value(line, n, "retry-after"))) {
                free(c->retry_after);
                c->retry_after = v;
        } else if ((v = header_value(line, n, "request-id")) || (v = header_value(line, n, "x-request-id"))) {
                free(c->request_id);
                c->request_id = v;
        }
        if (n <= 2 && (line[0] == '\r' || line[0] == '\n')) {
                long code = 0;
                (void) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code);
                if (code >= 200) {
                        pthread_mutex_lock(&c->lock);
                        c->status = code;
                        c->is_sse = code >= 200 && code < 300 && c->content_type &&
                                strstr(c->content_type, "text/event-stream");
                        c->headers_done = true;
                        pthread_cond_broadcast(&c->cond);
                        pthread_mutex_unlock(&c->lock);
                }
        }
        return n;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Call *c = userdata;
        size_t n = size * nmemb;

        c->last_activity = now_usec(CLOCK_MONOTONIC);
        /* Usage accounting sees every byte the agent gets. A parse failure only means the call
         * settles at its reservation. */
        if (c->is_sse) {
                if (c->sse && sse_parser_feed(c->sse, ptr, n) < 0)
                        c->sse = sse_parser_free(c->sse);
        } else if (c->whole_len + n <= GW_MAX_WHOLE) {
                c->whole = xrealloc(c->whole, c->whole_len + n + 1);
                memcpy(c->whole + c->whole_len, ptr, n);
                c->whole_len += n;
                c->whole[c->whole_len] = 0;
        }

        pthread_mutex_lock(&c->lock);
        /* Back-pressure: wait while the agent has not taken what was sent before. */
        while (!c->client_gone && c->buf_len - c->buf_off > GW_MAX_BUFFERED)
                pthread_cond_wait(&c->cond, &c->lock);
        if (c->client_gone) {
                pthread_mutex_unlock(&c->lock);
                return 0; /* abort the transfer: nobody reads it */
        }
        if (c->buf_off > 0 && c->buf_off == c->buf_len)
                c->buf_off = c->buf_len = 0;
        c->buf = xrealloc(c->buf, c->buf_len + n);
        memcpy(c->buf + c->buf_len, ptr, n);
        c->buf_len += n;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
        return n;
}

static int progress_cb(
        void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
        Call *c = userdata;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        bool gone;

        pthread_mutex_lock(&c->lock);
        gone = c->client_gone;
        pthread_mutex_unlock(&c->lock);
        if (gone)
                return 1;
        if (gw.deadline > 0 && now >= gw.deadline)
                return 1;
        if (dlnow != c->last_dlnow) {
                c->last_dlnow = dlnow;
                c->last_activity = now;
        }
        return now - c->last_activity >= gw.idle_timeout_ms * USEC_PER_MSEC ? 1 : 0;
}

static void settle(Call *c, CURLcode cc) {
        const char *outcome;
        uint64_t cost = 0;
        int r = 0;

        if (c->is_sse && c->sse && sse_parser_finish(c->sse) < 0)
                c->usage.complete = false;
        if (!c->is_sse && c->status >= 200 && c->status < 300 && cc == CURLE_OK)
                gateway_usage_body(c->format, &c->usage, c->whole ? c->whole : "", c->whole_len);

        if (c->status >= 200 && c->status < 300 && cc == CURLE_OK && c->usage.complete && c->usage.have_usage) {
                outcome = "ok";
                cost = gateway_usage_cost(&c->usage, c->price.in, c->price.out);
        } else if (
                (c->status >= 200 && c->status < 300) ||
                (c->status == 0 && cc != CURLE_COULDNT_CONNECT && cc != CURLE_COULDNT_RESOLVE_HOST)) {
                /* Cut, no usage reported, or abandoned after the request was sent (timeout,
                 * shutdown): the provider may bill it; the bound is charged. */
                outcome = "cut";
                cost = c->reservation.usd_micros;
        } else if (c->status == 0)
                outcome = "upstream_unreachable";
        else
                outcome = "upstream_error";

        if (c->reservation.active) {
                if (cost > 0 || streq(outcome, "ok"))
                        r = budget_meter_settle(
                                gw.meter, &c->reservation, cost, c->usage.input_tokens, c->usage.output_tokens);
                else
                        r = budget_meter_release(gw.meter, &c->reservation);
        }
        pthread_mutex_lock(&gw.lock);
        if (r == -EDQUOT || budget_meter_exhausted(gw.meter))
                gw.exhausted = true;
        if (gw.node && cost > 0) {
                _cleanup_free_ char *err = NULL;
                r = agent_node_charge(
                        gw.node, gw.pod, cost, c->usage.input_tokens, c->usage.output_tokens, &err);
                if (r == -EDQUOT)
                        gw.exhausted = true;
                else if (r < 0) {
                        /* Fail closed: spending that cannot be charged stops the run's spending. */
                        log_error("charging the pod failed: %s; refusing further model calls", err ? err : "?");
                        gw.exhausted = true;
                }
        }
        pthread_mutex_unlock(&gw.lock);

        _cleanup_json_ json_t *rec = json_pack(
                "{s:s, s:s, s:s, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                "format",
                gateway_format_to_string(c->format),
                "model",
                c->model,
                "outcome",
                outcome,
                "status",
                (json_int_t) c->status,
                "stream",
                c->stream,
                "input_tokens",
                (json_int_t) c->usage.input_tokens,
                "output_tokens",
                (json_int_t) c->usage.output_tokens,
                "cache_write_tokens",
                (json_int_t) c->usage.cache_write_tokens,
                "cache_read_tokens",
                (json_int_t) c->usage.cache_read_tokens,
                "cost_micros",
                (json_int_t) NUCLEUS_MIN(cost, (uint64_t) INT64_MAX),
                "reserved_micros",
                (json_int_t) NUCLEUS_MIN(c->reservation.usd_micros, (uint64_t) INT64_MAX),
                "duration_ms",
                (json_int_t) ((now_usec(CLOCK_MONOTONIC) - c->started) / USEC_PER_MSEC));
        audit_write(rec);
}

static void *worker(void *userdata) {
        Call *c = userdata;
        CURLcode cc = curl_easy_perform(c->curl);

        pthread_mutex_lock(&c->lock);
        if (!c->headers_done) {
                long code = 0;
                (void) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code);
                c->status = cc == CURLE_OK ? code : 0;
        }
        c->headers_done = true;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);

        /* The agent sees the end of the answer only once the call is settled and charged:
         * its next call then finds the meter up to date (never refused for a reservation
         * that is about to be given back). */
        settle(c, cc);

        pthread_mutex_lock(&c->lock);
        c->done = true;
        c->failed = cc != CURLE_OK;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);

        pthread_mutex_lock(&gw.lock);
        for (size_t i = 0; i < ELEMENTSOF(gw.active); i++)
                if (gw.active[i] == c)
                        gw.active[i] = NULL;
        pthread_cond_broadcast(&gw.idle);
        pthread_mutex_unlock(&gw.lock);
        call_unref(c);
        return NULL;
}

static bool active_add(Call *c) {
        bool ok = false;
        pthread_mutex_lock(&gw.lock);
        for (size_t i = 0; i < ELEMENTSOF(gw.active) && !ok; i++)
                if (!gw.active[i]) {
                        gw.active[i] = c;
                        ok = true;
                }
        pthread_mutex_unlock(&gw.lock);
        return ok;
}

/* At shutdown: every call still running is abandoned (its transfer aborts within a second,
 * through the progress callback) and settles as cut, at its reservation, charged to the pod
 * like any other. Waits at most `wait_usec` for the workers. */
static void abandon_active(uint64_t wait_usec) {
        uint64_t until = now_usec(CLOCK_MONOTONIC) + wait_usec;
        pthread_mutex_lock(&gw.lock);
        for (;;) {
                bool any = false;
                for (size_t i = 0; i < ELEMENTSOF(gw.active); i++) {
                        Call *c = gw.active[i];
                        if (!c)
                                continue;
                        any = true;
                        pthread_mutex_lock(&c->lock);
                        c->client_gone = true;
                        pthread_cond_broadcast(&c->cond);
                        pthread_mutex_unlock(&c->lock);
                }
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (!any || now >= until)
                        break;
                struct timespec ts;
                (void) clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 100 * 1000 * 1000;
                if (ts.tv_nsec >= 1000 * 1000 * 1000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000 * 1000 * 1000;
                }
                (void) pthread_cond_timedwait(&gw.idle, &gw.lock, &ts);
        }
        pthread_mutex_unlock(&gw.lock);
}

static ssize_t reader_cb(void *cls, uint64_t pos, char *out, size_t max) {
        Call *c = cls;
        ssize_t n;

        pthread_mutex_lock(&c->lock);
        while (c->buf_off == c->buf_len && !c->done)
                pthread_cond_wait(&c->cond, &c->lock);
        if (c->buf_off < c->buf_len) {
                n = (ssize_t) NUCLEUS_MIN(max, c->buf_len - c->buf_off);
                memcpy(out, c->buf + c->buf_off, (size_t) n);
                c->buf_off += (size_t) n;
                pthread_cond_broadcast(&c->cond);
        } else
                n = c->failed ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_unlock(&c->lock);
        return n;
}

static void reader_free(void *cls) {
        Call *c = cls;
        pthread_mutex_lock(&c->lock);
        c->client_gone = true;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
        call_unref(c);
}

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
        audit_write(rec);
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
                if (exhausted || budget_meter_reserve(gw.meter, bound, 0, 0, &res) < 0)
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
        c->price = price;
        c->started = now_usec(CLOCK_MONOTONIC);
        c->last_activity = c->started;
        c->body = json_dumps(req, JSON_COMPACT);
        c->url = xasprintf("%s%s%s", gw.upstream, gateway_format_path(q->format), q->beta ? "?beta=true" : "");
        c->sse = sse_parser_new(GW_MAX_EVENT, on_usage_event, c);

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
                call_unref(c);
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
        (void) curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, header_cb);
        (void) curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, c);
        (void) curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, write_cb);
        (void) curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
        (void) curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
        (void) curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, progress_cb);
        (void) curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
        (void) curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, (long) connect_ms);
        (void) curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);

        pthread_t th;
        c->refs = 2; /* the worker and this connection */
        if (!active_add(c) || pthread_create(&th, NULL, worker, c) != 0) {
                pthread_mutex_lock(&gw.lock);
                for (size_t i = 0; i < ELEMENTSOF(gw.active); i++)
                        if (gw.active[i] == c)
                                gw.active[i] = NULL;
                pthread_mutex_unlock(&gw.lock);
                if (c->reservation.active)
                        (void) budget_meter_release(gw.meter, &c->reservation);
                c->refs = 1;
                call_unref(c);
                return MHD_NO;
        }
        (void) pthread_detach(th);

        pthread_mutex_lock(&c->lock);
        while (!c->headers_done)
                pthread_cond_wait(&c->cond, &c->lock);
        long status = c->status;
        pthread_mutex_unlock(&c->lock);

        if (status == 0 && gw.deadline > 0 && now_usec(CLOCK_MONOTONIC) >= gw.deadline) {
                call_unref(c);
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
                call_unref(c);
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
                MHD_SIZE_UNKNOWN, 64 * 1024, reader_cb, c, reader_free);
        if (!resp) {
                reader_free(c);
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

static enum MHD_Result on_request(
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
                        q->refused_msg = xstrdup("nucleus gateway: invalid credential (use the run's "
                                                 "token)");
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

static void on_completed(
        void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
        req_free(*con_cls);
        *con_cls = NULL;
}

/* ---- configuration ---- */

static int u64_field(json_t *cfg, const char *key, uint64_t def, uint64_t max, uint64_t *ret) {
        json_t *v = json_object_get(cfg, key);
        if (!v) {
                *ret = def;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t) json_integer_value(v) > max)
                return log_error_errno(-EINVAL, "config: \"%s\" must be an integer in 0..%" PRIu64, key, max);
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static int load_config(json_t *cfg, char **ret_listen) {
        static const char *const keys[] = { "provider",
                                            "upstream",
                                            "api_key",
                                            "token",
                                            "listen",
                                            "prices",
                                            "max_usd_micros",
                                            "max_output_tokens",
                                            "timeout_seconds",
                                            "connect_timeout_seconds",
                                            "idle_timeout_seconds",
                                            "audit",
                                            "node",
                                            NULL };
        const char *k, *provider, *upstream, *token;
        json_t *v;
        uint64_t max_usd, timeout, conn_s, idle_s;
        int r;

        if (!json_is_object(cfg))
                return log_error_errno(-EINVAL, "config: not a JSON object");
        json_object_foreach(cfg, k, v) {
                bool ok = false;
                for (size_t i = 0; keys[i]; i++)
                        ok = ok || streq(k, keys[i]);
                if (!ok)
                        return log_error_errno(-EINVAL, "config: unknown key \"%s\"", k);
        }
        provider = json_string_value(json_object_get(cfg, "provider"));
        upstream = json_string_value(json_object_get(cfg, "upstream"));
        token = json_string_value(json_object_get(cfg, "token"));
        if (!streq_ptr(provider, "anthropic") && !streq_ptr(provider, "openai"))
                return log_error_errno(-EINVAL, "config: \"provider\" must be \"anthropic\" or \"openai\"");
        if (!upstream || !(startswith(upstream, "http://") || startswith(upstream, "https://")) ||
            string_has_cc(upstream, NULL))
                return log_error_errno(-EINVAL, "config: \"upstream\" must be an http(s) URL");
        if (!token || strlen(token) < 32 || string_has_cc(token, NULL) || strchr(token, ' '))
                return log_error_errno(-EINVAL, "config: \"token\" must be at least 32 printable characters");
        v = json_object_get(cfg, "api_key");
        if (v && (!json_is_string(v) || string_has_cc(json_string_value(v), NULL)))
                return log_error_errno(
                        -EINVAL, "config: \"api_key\" must be a string without control characters");
        gw.anthropic = streq(provider, "anthropic");
        gw.upstream = xstrdup(upstream);
        size_t l = strlen(gw.upstream);
        while (l > 0 && gw.upstream[l - 1] == '/')
                gw.upstream[--l] = 0;
        if (endswith(gw.upstream, "/v1"))
                gw.upstream[l - 3] = 0;
        gw.token = xstrdup(token);
        gw.api_key = v ? xstrdup(json_string_value(v)) : NULL;

        json_t *prices = json_object_get(cfg, "prices");
        if (!json_is_object(prices) || json_object_size(prices) == 0)
                return log_error_errno(
                        -EINVAL, "config: \"prices\" must map model names to [in, out] micro-USD per Mtok");
        json_object_foreach(prices, k, v) {
                if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 0)) ||
                    !json_is_integer(json_array_get(v, 1)) || json_integer_value(json_array_get(v, 0)) < 0 ||
                    json_integer_value(json_array_get(v, 1)) < 0)
                        return log_error_errno(
                                -EINVAL, "config: prices[\"%s\"] must be [in, out], non-negative integers", k);
        }
        gw.prices = json_incref(prices);

        if ((r = u64_field(cfg, "max_usd_micros", 0, UINT64_C(1) << 50, &max_usd)) < 0 ||
            (r = u64_field(cfg, "max_output_tokens", GW_DEFAULT_MAX_OUTPUT, 1U << 24, &gw.max_output)) < 0 ||
            (r = u64_field(cfg, "timeout_seconds", 0, 86400 * 7, &timeout)) < 0 ||
            (r = u64_field(cfg, "connect_timeout_seconds", 30, 600, &conn_s)) < 0 ||
            (r = u64_field(cfg, "idle_timeout_seconds", 120, 3600, &idle_s)) < 0)
                return r;
        if (!json_object_get(cfg, "max_usd_micros"))
                return log_error_errno(
                        -EINVAL, "config: \"max_usd_micros\" (the run's model budget) is required");
        gw.connect_timeout_ms = NUCLEUS_MAX(conn_s, (uint64_t) 1) * 1000;
        gw.idle_timeout_ms = NUCLEUS_MAX(idle_s, (uint64_t) 1) * 1000;
        gw.deadline = timeout > 0 ? now_usec(CLOCK_MONOTONIC) + timeout * USEC_PER_SEC : 0;
        r = budget_meter_new(max_usd, UINT64_MAX, UINT64_MAX, &gw.meter);
        if (r < 0)
                return log_error_errno(r, "cannot create the budget meter: %m");

        const char *audit = json_string_value(json_object_get(cfg, "audit"));
        if (audit) {
                gw.audit_fd = open(
                        audit, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
                if (gw.audit_fd < 0)
                        return log_error_errno(-errno, "cannot open the audit file %s: %m", audit);
        }

        json_t *node = json_object_get(cfg, "node");
        if (node) {
                const char *url = json_string_value(json_object_get(node, "url"));
                const char *key_file = json_string_value(json_object_get(node, "key_file"));
                const char *pod = json_string_value(json_object_get(node, "pod"));
                _cleanup_free_ char *err = NULL;
                if (!url || !key_file || !pod)
                        return log_error_errno(-EINVAL, "config: \"node\" needs url, key_file and pod");
                ClientSettings s = { .url = (char *) url,
                                     .key_file = (char *) key_file,
                                     .actor = (char *) "nucleus-gateway" };
                r = client_open(&s, &gw.node, &err);
                if (r < 0)
                        return log_error_errno(r, "%s", err ? err : "cannot create the node client");
                client_set_timeouts(gw.node, 5 * USEC_PER_SEC, 30 * USEC_PER_SEC);
                gw.pod = xstrdup(pod);
        }

        const char *listen = json_string_value(json_object_get(cfg, "listen"));
        *ret_listen = xstrdup(listen ? listen : "127.0.0.1:0");
        return 0;
}

static int listen_socket(const char *spec, int *ret_fd, unsigned *ret_port) {
        _cleanup_free_ char *host = xstrdup(spec);
        char *colon = strrchr(host, ':');
        struct sockaddr_in sa = { .sin_family = AF_INET };
        socklen_t sl = sizeof(sa);
        unsigned port = 0;

        if (!colon)
                return -EINVAL;
        *colon = 0;
        if (sscanf(colon + 1, "%u", &port) != 1 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
                return -EINVAL;
        sa.sin_port = htons((uint16_t) port);
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
                return -errno;
        if (getsockname(fd, (struct sockaddr *) &sa, &sl) < 0)
                return -errno;
        *ret_port = ntohs(sa.sin_port);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int main(int argc, char **argv) {
        _cleanup_free_ char *data = NULL, *listen = NULL, *perr = NULL;
        _cleanup_json_ json_t *cfg = NULL;
        size_t n;
        sigset_t mask;
        int r, fd = -1;
        unsigned port = 0;

        log_set_prefix("nucleus-gateway");
        if (argc > 1) {
                printf("Usage: nucleus-gateway < CONFIG.json\n"
                       "The model gateway of one `nucleus run` (docs/gateway.md). Started by nucleus run;\n"
                       "reads its configuration, the provider key included, from stdin.\n");
                return streq(argv[1], "--help") ? 0 : 2;
        }
        (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
        (void) signal(SIGPIPE, SIG_IGN);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        (void) pthread_sigmask(SIG_BLOCK, &mask, NULL);

        r = read_full_fd(STDIN_FILENO, GW_MAX_CONFIG, &data, &n);
        if (r < 0)
                return log_error_errno(r, "reading the configuration from stdin: %m"), 1;
        if (json_parse_strict(data, n, GW_MAX_CONFIG, &cfg, &perr) < 0)
                return log_error("configuration: %s", perr ? perr : "invalid JSON"), 1;
        explicit_bzero_safe(data, n);
        if (load_config(cfg, &listen) < 0)
                return 1;
        /* The key now lives only in gw.api_key. */
        json_object_del(cfg, "api_key");

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return log_error("curl_global_init failed"), 1;
        r = listen_socket(listen, &fd, &port);
        if (r < 0)
                return log_error_errno(r, "cannot listen on %s (expected IPv4:PORT): %m", listen), 1;

        struct MHD_Daemon *d = MHD_start_daemon(
                MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                        MHD_USE_ERROR_LOG,
                0,
                NULL,
                NULL,
                on_request,
                NULL,
                MHD_OPTION_LISTEN_SOCKET,
                fd,
                MHD_OPTION_CONNECTION_LIMIT,
                (unsigned) GW_MAX_CONNECTIONS,
                MHD_OPTION_CONNECTION_TIMEOUT,
                (unsigned) 0,
                MHD_OPTION_NOTIFY_COMPLETED,
                on_completed,
                NULL,
                MHD_OPTION_END);
        if (!d)
                return log_error("cannot start the HTTP server"), 1;

        printf("{\"listen\":\"127.0.0.1:%u\"}\n", port);
        fflush(stdout);
        if (getppid() == 1)
                goto out;

        for (;;) {
                int sig = 0;
                if (sigwait(&mask, &sig) == 0)
                        break;
        }
out:
        /* No new connections; calls in flight are cut and settled (they may be billed). The
         * connection threads may be blocked on an agent that went away: the process ends
         * without joining them. */
        (void) MHD_quiesce_daemon(d);
        abandon_active(10 * USEC_PER_SEC);
        explicit_bzero_safe(gw.api_key, gw.api_key ? strlen(gw.api_key) : 0);
        if (gw.audit_fd >= 0)
                (void) fsync(gw.audit_fd);
        _exit(0);
}
