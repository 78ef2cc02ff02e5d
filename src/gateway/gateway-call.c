/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus-gateway: the forwarded call, shared by the connection thread and its libcurl
 * worker. The worker feeds the answer into a bounded buffer the connection thread drains
 * into the reply, reads the usage on the way, and settles the call's reservation on the
 * run's meter and on the pod's budget in the node before the agent sees the answer end.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "gateway-internal.h"
#include "json-util.h"
#include "log.h"
#include "string-util.h"
#include "time-util.h"

/* ---- audit ---- */

void gw_audit_write(json_t *rec) {
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

/* ---- the pod's budget on the node ---- */

int gw_node_reserve(uint64_t usd_micros, char ret_id[static 33]) {
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/budget/reserve", gw.pod);
        /* Held at most an hour (the node caps it at the pod's deadline); a call that never
         * settles is charged at its reservation when it expires. */
        _cleanup_json_ json_t *body = json_pack(
                "{s:I,s:I}", "usd_micros", (json_int_t) usd_micros, "ttl_seconds", 3600);
        _cleanup_json_ json_t *ans = NULL;
        _cleanup_client_error_ ClientError e = {};
        pthread_mutex_lock(&gw.lock);
        int r = client_call_json(gw.node, "POST", path, body, &ans, &e);
        pthread_mutex_unlock(&gw.lock);
        if (r < 0) {
                if (streq_ptr(e.kind, "budget_exhausted"))
                        return -EDQUOT;
                if (streq_ptr(e.kind, "time_violation") || streq_ptr(e.kind, "pod_not_running"))
                        return -ETIME;
                _cleanup_free_ char *d = client_error_describe(&e);
                log_error("reserving on the pod's budget failed: %s; refusing the call", d);
                return r;
        }
        const char *id = json_string_value(json_object_get(ans, "reservation"));
        if (!id || strlen(id) != 32)
                return -EBADMSG;
        memcpy(ret_id, id, 33);
        return 0;
}

int gw_node_settle(const char *id, uint64_t usd_micros, uint64_t in, uint64_t out, bool *ret_exhausted) {
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/budget/settle", gw.pod);
        _cleanup_json_ json_t *body = json_pack(
                "{s:s,s:I,s:I,s:I}",
                "reservation",
                id,
                "usd_micros",
                (json_int_t) usd_micros,
                "input_tokens",
                (json_int_t) in,
                "output_tokens",
                (json_int_t) out);
        _cleanup_json_ json_t *ans = NULL;
        _cleanup_client_error_ ClientError e = {};
        pthread_mutex_lock(&gw.lock);
        int r = client_call_json(gw.node, "POST", path, body, &ans, &e);
        pthread_mutex_unlock(&gw.lock);
        if (r < 0) {
                _cleanup_free_ char *d = client_error_describe(&e);
                log_error("settling on the pod's budget failed: %s", d);
                return r;
        }
        *ret_exhausted = json_is_true(json_object_get(ans, "exhausted"));
        return 0;
}

void gw_call_unref(Call *c) {
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

int gw_on_usage_event(const char *event, const char *data, size_t n, void *userdata) {
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

size_t gw_header_cb(char *line, size_t size, size_t nmemb, void *userdata) {
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

size_t gw_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
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

int gw_progress_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
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
        bool node_exhausted = false, node_failed = false;
        if (gw.node && c->node_resv[0]) {
                /* The node holds the pod's budget: settle there at the same cost (0 releases). */
                node_failed = gw_node_settle(
                                      c->node_resv,
                                      cost,
                                      c->usage.input_tokens,
                                      c->usage.output_tokens,
                                      &node_exhausted) < 0;
                c->node_resv[0] = 0;
        }
        pthread_mutex_lock(&gw.lock);
        if (r == -EDQUOT || budget_meter_exhausted(gw.meter) || node_exhausted)
                gw.exhausted = true;
        if (node_failed) {
                /* Fail closed: spending the node was not told of stops the run's spending. */
                log_error("refusing further model calls: the pod's budget could not be settled");
                gw.exhausted = true;
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
        gw_audit_write(rec);
}

void *gw_worker(void *userdata) {
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
        gw_call_unref(c);
        return NULL;
}

bool gw_active_add(Call *c) {
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
void gw_abandon_active(uint64_t wait_usec) {
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

ssize_t gw_reader_cb(void *cls, uint64_t pos, char *out, size_t max) {
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

void gw_reader_free(void *cls) {
        Call *c = cls;
        pthread_mutex_lock(&c->lock);
        c->client_gone = true;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
        gw_call_unref(c);
}
