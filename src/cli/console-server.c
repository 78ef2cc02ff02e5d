/* SPDX-License-Identifier: Apache-2.0 */
/* The web console's HTTP server: see console-server.h and docs/console.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc-util.h"
#include "audit.h"
#include "cli-approvals.h"
#include "cli-pod.h"
#include "console-assets.h"
#include "console-server.h"
#include "escape.h"
#include "json-util.h"
#include "log.h"
#include "secrets.h"
#include "string-util.h"

#define CONSOLE_COOKIE "nucleus_console"
#define CONSOLE_MAX_SESSIONS 4
#define CONSOLE_BODY_MAX (16U * 1024U)
#define CONSOLE_DISPLAY_MAX 4000U
#define CONSOLE_PATCH_DISPLAY_MAX (2U * 1024U * 1024U)
#define CONSOLE_POLL_USEC (500 * USEC_PER_MSEC)
#define CONSOLE_KEEPALIVE_TICKS 30

#define CONSOLE_CSP                                                                                     \
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " \
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

struct ConsoleServer {
        struct MHD_Daemon *daemon;
        NucleusClient *node; /* borrowed; one request at a time under node_lock */
        pthread_mutex_t node_lock;
        pthread_mutex_t lock; /* sessions, token */
        char *secrets_dir;
        char *node_url;
        bool ui;
        char token[65]; /* one-time login token; "" once spent */
        char sessions[CONSOLE_MAX_SESSIONS][65];
        size_t next_session;
        char *hosts[4]; /* allowed Host header values */
        char *origin;   /* http://HOST:PORT */
        char *url, *login_url;
        CliWebhook *webhook; /* borrowed, or NULL */
};

typedef struct ConsoleReq {
        char *body;
        size_t n;
        bool too_big;
} ConsoleReq;

static void random_hex(char ret[static 65]) {
        uint8_t b[32];
        randombytes_buf(b, sizeof b);
        for (size_t i = 0; i < sizeof b; i++)
                snprintf(ret + 2 * i, 3, "%02x", b[i]);
        explicit_bzero_safe(b, sizeof b);
}

/* ---- answers ---------------------------------------------------------------------------- */

static void add_security_headers(struct MHD_Response *resp) {
        (void) MHD_add_response_header(resp, "Content-Security-Policy", CONSOLE_CSP);
        (void) MHD_add_response_header(resp, "X-Frame-Options", "DENY");
        (void) MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        (void) MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        (void) MHD_add_response_header(resp, "Cross-Origin-Opener-Policy", "same-origin");
        (void) MHD_add_response_header(resp, "Cross-Origin-Resource-Policy", "same-origin");
        (void) MHD_add_response_header(resp, "Cache-Control", "no-store");
}

static enum MHD_Result reply_bytes(
        struct MHD_Connection *c, unsigned status, const char *type, const void *data, size_t n, bool copy) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(
                n, (void *) data, copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT);
        if (!resp)
                return MHD_NO;
        add_security_headers(resp);
        (void) MHD_add_response_header(resp, "Content-Type", type);
        enum MHD_Result ret = MHD_queue_response(c, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, const json_t *j) {
        _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
        if (!text)
                return MHD_NO;
        return reply_bytes(c, status, "application/json", text, strlen(text), true);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *kind, const char *msg) {
        _cleanup_json_ json_t *j = json_pack("{s:s,s:s}", "error", msg, "kind", kind);
        return reply_json(c, status, j);
}

static enum MHD_Result reply_client_error(struct MHD_Connection *c, const ClientError *e) {
        _cleanup_free_ char *d = client_error_describe(e);
        unsigned status = e->status >= 400 && e->status < 600 ? (unsigned) e->status : 502;
        return reply_error(c, status, e->kind ?: "node_error", d);
}

/* ---- access checks ------------------------------------------------------------------------ */

static bool host_allowed(const ConsoleServer *s, struct MHD_Connection *c) {
        const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
        if (!host)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(s->hosts); i++)
                if (s->hosts[i] && streq(host, s->hosts[i]))
                        return true;
        return false;
}

static bool session_valid(ConsoleServer *s, struct MHD_Connection *c) {
        const char *cookie = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, CONSOLE_COOKIE);
        bool ok = false;
        if (!cookie || strlen(cookie) != 64)
                return false;
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < CONSOLE_MAX_SESSIONS; i++)
                if (s->sessions[i][0] && memeq_consttime(s->sessions[i], cookie, 64))
                        ok = true;
        pthread_mutex_unlock(&s->lock);
        return ok;
}

/* The login: GET /?token=T with the unspent token sets the session cookie. */
static enum MHD_Result login(ConsoleServer *s, struct MHD_Connection *c, const char *token) {
        char session[65];
        bool ok = false;

        pthread_mutex_lock(&s->lock);
        if (s->token[0] && strlen(token) == 64 && memeq_consttime(s->token, token, 64)) {
                explicit_bzero_safe(s->token, sizeof s->token);
                random_hex(session);
                memcpy(s->sessions[s->next_session], session, 65);
                s->next_session = (s->next_session + 1) % CONSOLE_MAX_SESSIONS;
                ok = true;
        }
        pthread_mutex_unlock(&s->lock);
        if (!ok)
                return reply_error(
                        c, MHD_HTTP_FORBIDDEN, "forbidden", "this login link is not valid (it works once)");
        _cleanup_free_ char *cookie = xasprintf(
                CONSOLE_COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/", session);
        explicit_bzero_safe(session, sizeof session);
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
        add_security_headers(resp);
        (void) MHD_add_response_header(resp, "Set-Cookie", cookie);
        (void) MHD_add_response_header(resp, "Location", "/");
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_SEE_OTHER, resp);
        MHD_destroy_response(resp);
        explicit_bzero_safe(cookie, strlen(cookie));
        return ret;
}

/* ---- display ------------------------------------------------------------------------------ */

static char *display(const char *s, size_t max) {
        _cleanup_free_ char *cut = NULL;
        if (!s)
                return xstrdup("");
        if (strlen(s) > max) {
                cut = xstrndup(s, max);
                s = cut;
        }
        _cleanup_free_ char *v = string_make_visible(s);
        return cut ? xasprintf("%s [...]", v) : TAKE_PTR(v);
}

/* Multi-line text (a patch): each line made visible on its own, the line breaks kept. */
static char *display_lines(const char *s, size_t max) {
        _cleanup_free_ char *cut = s ? xstrndup(s, max) : xstrdup("");
        size_t cap = 0, n = 0;
        char *out = NULL;
        for (char *line = cut, *next; line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                _cleanup_free_ char *v = string_make_visible(line);
                size_t vn = strlen(v);
                if (n + vn + 2 > cap) {
                        cap = (n + vn + 2) * 2;
                        out = xrealloc(out, cap);
                }
                memcpy(out + n, v, vn);
                n += vn;
                if (next)
                        out[n++] = '\n';
                out[n] = 0;
        }
        if (s && strlen(s) > max) {
                char *t = xasprintf("%s\n[... cut at %zu bytes]", out, max);
                free(out);
                out = t;
        }
        return out;
}

static char *display_json(const json_t *j, size_t max) {
        _cleanup_free_ char *t = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
        return display(t ?: "", max);
}

/* ---- node calls ---------------------------------------------------------------------------- */

static int node_json(
        ConsoleServer *s, const char *method, const char *path, const json_t *body, json_t **ret, ClientError *e) {
        pthread_mutex_lock(&s->node_lock);
        int r = client_call_json(s->node, method, path, body, ret, e);
        pthread_mutex_unlock(&s->node_lock);
        return r;
}

static int node_raw(ConsoleServer *s, const char *path, ClientResponse *ret, ClientError *e) {
        pthread_mutex_lock(&s->node_lock);
        int r = client_request(s->node, "GET", path, NULL, NULL, 0, ret, e);
        pthread_mutex_unlock(&s->node_lock);
        if (r >= 0 && (ret->status < 200 || ret->status > 299)) {
                client_error_from_response(ret, e);
                return -EREMOTEIO;
        }
        return r;
}

/* ---- /api ------------------------------------------------------------------------------------ */

/* A field of an untrusted object, made visible (or NULL when absent / not a string). */
static json_t *visible_field(const json_t *o, const char *k, size_t max) {
        const char *v = json_string_value(json_object_get(o, k));
        if (!v)
                return NULL;
        _cleanup_free_ char *d = display(v, max);
        return json_string(d);
}

static enum MHD_Result api_pods(ConsoleServer *s, struct MHD_Connection *c) {
        static const char *const copy_str[] = { "id",       "name",  "state",  "driver", "created",
                                                "deadline", "ended", "reason", NULL };
        static const char *const copy_num[] = {
                "budget_spent_usd_micros", "budget_max_usd_micros", "timeout_seconds", NULL
        };
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *res = NULL;
        json_t *out, *p;
        size_t i;

        if (node_json(s, "GET", "/v1/pods", NULL, &res, &e) < 0)
                return reply_client_error(c, &e);
        out = json_array();
        json_array_foreach(json_object_get(res, "pods"), i, p) {
                const char *id = json_string_value(json_object_get(p, "id"));
                if (!id || !cli_pod_id_valid(id))
                        continue;
                json_t *o = json_object();
                for (const char *const *k = copy_str; *k; k++) {
                        json_t *v = visible_field(p, *k, 300);
                        if (v)
                                json_object_set_new(o, *k, v);
                }
                for (const char *const *k = copy_num; *k; k++) {
                        json_t *v = json_object_get(p, *k);
                        if (json_is_integer(v))
                                json_object_set(o, *k, v);
                }
                json_array_append_new(out, o);
        }
        _cleanup_json_ json_t *j = json_pack("{s:o}", "pods", out);
        return reply_json(c, MHD_HTTP_OK, j);
}

/* A pending approval as the page shows it: the node's record with every agent-controlled
 * field made visible, and the digest the decision will carry. */
static json_t *approval_for_page(const json_t *a) {
        static const char *const plain[] = { "id",    "pod",     "operation", "tool", "digest",
                                             "state", "created", "expires",   NULL };
        _cleanup_free_ char *args = display_json(json_object_get(a, "args"), CONSOLE_DISPLAY_MAX);
        _cleanup_free_ char *why = display(json_string_value(json_object_get(a, "reason")), 1000);
        json_t *o = json_object();
        for (const char *const *k = plain; *k; k++) {
                json_t *v = visible_field(a, *k, 200);
                json_object_set_new(o, *k, v ?: json_string(""));
        }
        json_object_set_new(o, "args_display", json_string(args));
        json_object_set_new(o, "reason_display", json_string(why));
        json_t *scopes = json_object_get(a, "scopes");
        json_object_set_new(o, "scopes", json_is_array(scopes) ? json_deep_copy(scopes) : json_array());
        return o;
}

static enum MHD_Result api_approvals(ConsoleServer *s, struct MHD_Connection *c) {
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *res = NULL;
        json_t *out, *a;
        size_t i;

        if (node_json(s, "GET", "/v1/approvals", NULL, &res, &e) < 0)
                return reply_client_error(c, &e);
        out = json_array();
        json_array_foreach(json_object_get(res, "approvals"), i, a)
                json_array_append_new(out, approval_for_page(a));
        _cleanup_json_ json_t *j = json_pack("{s:o}", "approvals", out);
        return reply_json(c, MHD_HTTP_OK, j);
}

/* POST /api/approvals/{id} {"pod","decision":"once"|"pod"|"refuse","digest","reason"?}. The
 * digest is the one the page showed: cli_approval_decide() refuses when it is not the digest
 * of the node's current record, and the node checks it again. */
static enum MHD_Result
        api_decide(ConsoleServer *s, struct MHD_Connection *c, const char *id, const ConsoleReq *q) {
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *body = NULL, *pending = NULL, *res = NULL;
        _cleanup_free_ char *err = NULL, *path = NULL;
        json_error_t jerr;

        body = q->body ? json_loadb(q->body, q->n, JSON_REJECT_DUPLICATES, &jerr) : NULL;
        const char *pod = json_string_value(json_object_get(body, "pod"));
        const char *digest = json_string_value(json_object_get(body, "digest"));
        const char *reason = json_string_value(json_object_get(body, "reason"));
        CliApprovalDecision d = cli_approval_decision_from_string(
                json_string_value(json_object_get(body, "decision")));
        if (!json_is_object(body) || !pod || !cli_pod_id_valid(pod) || !digest || d < 0 ||
            strlen(id) != 32 || strspn(id, "0123456789abcdef") != 32)
                return reply_error(
                        c,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request",
                        "{pod, decision: once|pod|refuse, digest} expected");
        if (reason && (strlen(reason) > 200 || string_has_cc(reason, NULL)))
                return reply_error(
                        c, MHD_HTTP_BAD_REQUEST, "invalid_request", "reason: at most 200 printable characters");
        path = xasprintf("/v1/pods/%s/approvals/%s", pod, id);
        if (node_json(s, "GET", path, NULL, &pending, &e) < 0)
                return reply_client_error(c, &e);
        pthread_mutex_lock(&s->node_lock);
        int r = cli_approval_decide(
                s->node, s->secrets_dir, pending, digest, d, reason && *reason ? reason : NULL, &res, &err);
        pthread_mutex_unlock(&s->node_lock);
        if (r < 0)
                return reply_error(
                        c,
                        r == -EBADMSG ? MHD_HTTP_CONFLICT : MHD_HTTP_BAD_GATEWAY,
                        "approval_failed",
                        err ?: "decision failed");
        _cleanup_json_ json_t *out = approval_for_page(res);
        return reply_json(c, MHD_HTTP_OK, out);
}

/* One audit record as a row of the page's live table. */
static json_t *record_for_page(const json_t *rec) {
        json_t *o = json_object();
        const char *const plain[] = { "time", "actor", "op", "decision", "kind", NULL };
        json_object_set(o, "seq", json_object_get(rec, "seq"));
        for (const char *const *k = plain; *k; k++) {
                json_t *v = visible_field(rec, *k, 200);
                if (v)
                        json_object_set_new(o, *k, v);
        }
        json_t *args = json_object_get(rec, "detail") ?: json_object_get(rec, "args");
        const char *sha = json_string_value(json_object_get(rec, "args_sha256"));
        _cleanup_free_ char *a = args ? display_json(args, CONSOLE_DISPLAY_MAX)
                : sha                 ? xasprintf("sha256:%.16s", sha)
                                      : xstrdup("");
        json_object_set_new(o, "args_display", json_string(a));
        return o;
}

/* ---- live events: the pod's audit log, followed ----------------------------------------------- */

typedef struct EventsCtx {
        ConsoleServer *s;
        char pod[65];
        uint64_t next_seq;
        char *buf;
        size_t n, off;
        unsigned idle;
        bool started, end;
} EventsCtx;

static bool pod_final(ConsoleServer *s, const char *pod, char **ret_state) {
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *res = NULL;
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s", pod);
        if (node_json(s, "GET", path, NULL, &res, &e) < 0) {
                *ret_state = xstrdup(e.status == 404 ? "gone" : "unknown");
                return e.status == 404;
        }
        const char *st = json_string_value(json_object_get(res, "state")) ?: "unknown";
        *ret_state = display(st, 40);
        return streq(st, "exited") || streq(st, "failed");
}

/* Appends the SSE chunks for records >= next_seq to ctx->buf. */
static void events_fetch(EventsCtx *x) {
        _cleanup_client_error_ ClientError e = {};
        ClientResponse resp = {};
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/audit", x->pod);
        if (node_raw(x->s, path, &resp, &e) < 0) {
                client_response_done(&resp);
                return;
        }
        const char *p = resp.body, *end = resp.body + resp.size;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                if (!nl)
                        break; /* a torn last line is not shown */
                json_error_t jerr;
                _cleanup_json_ json_t *rec = json_loadb(p, (size_t) (nl - p), 0, &jerr);
                p = nl + 1;
                json_t *seq = json_object_get(rec, "seq");
                if (!json_is_integer(seq) || json_object_get(rec, "count") ||
                    (uint64_t) json_integer_value(seq) < x->next_seq)
                        continue;
                x->next_seq = (uint64_t) json_integer_value(seq) + 1;
                _cleanup_json_ json_t *row = record_for_page(rec);
                _cleanup_free_ char *text = json_dumps(row, JSON_COMPACT);
                _cleanup_free_ char *chunk = xasprintf("event: call\ndata: %s\n\n", text ?: "{}");
                size_t cn = strlen(chunk);
                x->buf = xrealloc(x->buf, x->n + cn);
                memcpy(x->buf + x->n, chunk, cn);
                x->n += cn;
        }
        client_response_done(&resp);
}

static ssize_t events_reader(void *cls, uint64_t pos, char *out, size_t max) {
        EventsCtx *x = cls;
        while (x->off == x->n) {
                free(x->buf);
                x->buf = NULL;
                x->n = x->off = 0;
                if (x->end)
                        return MHD_CONTENT_READER_END_OF_STREAM;
                if (x->started)
                        usleep(CONSOLE_POLL_USEC);
                x->started = true;
                _cleanup_free_ char *state = NULL;
                bool final = pod_final(x->s, x->pod, &state);
                events_fetch(x);
                if (final && x->n == 0) {
                        _cleanup_json_ json_t *j = json_pack("{s:s}", "state", state);
                        _cleanup_free_ char *t = json_dumps(j, JSON_COMPACT);
                        x->buf = xasprintf("event: end\ndata: %s\n\n", t ?: "{}");
                        x->n = strlen(x->buf);
                        x->end = true;
                } else if (x->n == 0 && ++x->idle >= CONSOLE_KEEPALIVE_TICKS) {
                        x->idle = 0;
                        x->buf = xstrdup(": keep-alive\n\n");
                        x->n = strlen(x->buf);
                }
        }
        size_t n = NUCLEUS_MIN(max, x->n - x->off);
        memcpy(out, x->buf + x->off, n);
        x->off += n;
        return (ssize_t) n;
}

static void events_free(void *cls) {
        EventsCtx *x = cls;
        free(x->buf);
        free(x);
}

static enum MHD_Result api_events(ConsoleServer *s, struct MHD_Connection *c, const char *pod) {
        EventsCtx *x = xnew0(EventsCtx, 1);
        x->s = s;
        snprintf(x->pod, sizeof x->pod, "%s", pod);
        struct MHD_Response *resp = MHD_create_response_from_callback(
                MHD_SIZE_UNKNOWN, 16384, events_reader, x, events_free);
        if (!resp) {
                events_free(x);
                return MHD_NO;
        }
        add_security_headers(resp);
        (void) MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result api_audit_state(ConsoleServer *s, struct MHD_Connection *c, const char *pod) {
        _cleanup_(audit_verify_report_done) AuditVerifyReport rep = {};
        _cleanup_client_error_ ClientError e = {};
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/audit", pod), *err = NULL, *state = NULL;
        ClientResponse resp = {};
        uint8_t pub[32];

        bool final = pod_final(s, pod, &state);
        if (secret_load_public(s->secrets_dir, SECRET_AUDIT, pub, &err) < 0) {
                _cleanup_json_ json_t *j = json_pack(
                        "{s:s,s:s}", "state", "unknown", "detail", "no audit public key (audit.pub) here");
                return reply_json(c, MHD_HTTP_OK, j);
        }
        if (node_raw(s, path, &resp, &e) < 0) {
                client_response_done(&resp);
                return reply_client_error(c, &e);
        }
        int r = audit_verify_buffer(resp.body, resp.size, pub, final ? 0 : AUDIT_VERIFY_ALLOW_UNSEALED, &rep);
        client_response_done(&resp);
        if (r < 0)
                return reply_error(c, MHD_HTTP_BAD_GATEWAY, "io_error", "cannot verify the audit log");
        _cleanup_free_ char *detail = rep.reason ? display(rep.reason, 300) : NULL;
        _cleanup_json_ json_t *j = json_pack(
                "{s:s,s:I,s:b}",
                "state",
                !rep.valid           ? "invalid"
                        : rep.sealed ? "valid"
                                     : "open",
                "records",
                (json_int_t) rep.records,
                "sealed",
                rep.sealed);
        if (detail)
                json_object_set_new(j, "detail", json_string(detail));
        return reply_json(c, MHD_HTTP_OK, j);
}

static enum MHD_Result api_patch(ConsoleServer *s, struct MHD_Connection *c, const char *pod) {
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *res = NULL;
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/workspace/patch", pod);
        json_t *flags = json_array(), *f;
        size_t i;

        if (node_json(s, "GET", path, NULL, &res, &e) < 0) {
                json_decref(flags);
                return reply_client_error(c, &e);
        }
        json_t *list = json_object_get(res, "flags") ?: json_object_get(res, "flagged");
        json_array_foreach(list, i, f) {
                const char *p = json_is_string(f) ? json_string_value(f)
                                                  : json_string_value(json_object_get(f, "path"));
                const char *reason = json_string_value(json_object_get(f, "reason")) ?: "flagged";
                const char *why = json_string_value(json_object_get(f, "why"));
                _cleanup_free_ char *text = why ? xasprintf("%s (%s)", reason, why) : xstrdup(reason);
                _cleanup_free_ char *pd = display(p ?: "?", 500), *wd = display(text, 1000);
                json_array_append_new(flags, json_pack("{s:s,s:s}", "path_display", pd, "reason", wd));
        }
        _cleanup_free_ char *patch = display_lines(
                json_string_value(json_object_get(res, "patch")), CONSOLE_PATCH_DISPLAY_MAX);
        _cleanup_json_ json_t *j = json_pack("{s:s,s:o}", "patch_display", patch, "flags", flags);
        return reply_json(c, MHD_HTTP_OK, j);
}

/* ---- routing ------------------------------------------------------------------------------- */

static enum MHD_Result route_ui(
        ConsoleServer *s, struct MHD_Connection *c, const char *method, const char *url, const ConsoleReq *q) {
        bool get = streq(method, "GET") || streq(method, "HEAD");
        const char *rest;

        if (get && streq(url, "/")) {
                const char *token = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
                if (token)
                        return login(s, c, token);
        }
        if (!session_valid(s, c))
                return reply_error(
                        c, MHD_HTTP_FORBIDDEN, "forbidden", "open the login URL that 'nucleus console' printed");
        if (streq(method, "POST")) {
                const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
                const char *marker = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Nucleus-Console");
                const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
                if (!origin || !streq(origin, s->origin) || !marker || !streq(marker, "1") || !type ||
                    !startswith(type, "application/json"))
                        return reply_error(
                                c, MHD_HTTP_FORBIDDEN, "forbidden", "cross-origin or malformed request refused");
                if (q->too_big)
                        return reply_error(
                                c, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "request body too large");
                if ((rest = startswith(url, "/api/approvals/")) && !strchr(rest, '/'))
                        return api_decide(s, c, rest, q);
                return reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "no such route");
        }
        if (!get)
                return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "invalid_request", "method not allowed");
        for (size_t i = 0; i < console_assets_count; i++)
                if (streq(url, console_assets[i].path))
                        return reply_bytes(
                                c,
                                MHD_HTTP_OK,
                                console_assets[i].type,
                                console_assets[i].data,
                                console_assets[i].size,
                                false);
        if (streq(url, "/favicon.ico"))
                return reply_bytes(c, MHD_HTTP_NO_CONTENT, "image/x-icon", "", 0, false);
        if (streq(url, "/api/info")) {
                _cleanup_free_ char *u = display(s->node_url, 300);
                _cleanup_json_ json_t *j = json_pack("{s:s}", "node_url", u);
                return reply_json(c, MHD_HTTP_OK, j);
        }
        if (streq(url, "/api/pods"))
                return api_pods(s, c);
        if (streq(url, "/api/approvals"))
                return api_approvals(s, c);
        if ((rest = startswith(url, "/api/pods/"))) {
                const char *slash = strchr(rest, '/');
                _cleanup_free_ char *pod = slash ? xstrndup(rest, (size_t) (slash - rest)) : NULL;
                if (pod && cli_pod_id_valid(pod)) {
                        if (streq(slash, "/events"))
                                return api_events(s, c, pod);
                        if (streq(slash, "/audit-state"))
                                return api_audit_state(s, c, pod);
                        if (streq(slash, "/patch"))
                                return api_patch(s, c, pod);
                }
        }
        return reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "no such page");
}

static enum MHD_Result on_request(
        void *cls,
        struct MHD_Connection *c,
        const char *url,
        const char *method,
        const char *version,
        const char *upload_data,
        size_t *upload_data_size,
        void **con_cls) {
        ConsoleServer *s = cls;
        ConsoleReq *q = *con_cls;

        if (!q) {
                *con_cls = xnew0(ConsoleReq, 1);
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;
                *upload_data_size = 0;
                if (q->too_big || q->n + n > CONSOLE_BODY_MAX) {
                        q->too_big = true;
                        return MHD_YES;
                }
                q->body = xrealloc(q->body, q->n + n + 1);
                memcpy(q->body + q->n, upload_data, n);
                q->n += n;
                q->body[q->n] = 0;
                return MHD_YES;
        }
        if (streq(url, "/hooks/decision") && streq(method, "POST")) {
                if (!s->webhook)
                        return reply_error(
                                c, MHD_HTTP_NOT_FOUND, "not_found", "no webhook approver is configured");
                if (q->too_big || !q->body)
                        return reply_error(
                                c,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request",
                                "a signed decision document expected");
                _cleanup_free_ char *err = NULL;
                const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, CLI_WEBHOOK_SIGNATURE_HEADER);
                int r = cli_webhook_accept_decision(s->webhook, q->body, q->n, sig, &err);
                if (r < 0)
                        return reply_error(
                                c,
                                r == -EPERM ? MHD_HTTP_UNAUTHORIZED : MHD_HTTP_CONFLICT,
                                "decision_refused",
                                err ?: "refused");
                _cleanup_json_ json_t *j = json_pack("{s:b}", "ok", true);
                return reply_json(c, MHD_HTTP_OK, j);
        }
        if (!s->ui)
                return reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "no such route");
        if (!host_allowed(s, c))
                return reply_error(
                        c,
                        MHD_HTTP_FORBIDDEN,
                        "forbidden",
                        "Host not allowed (open the console by the printed URL)");
        return route_ui(s, c, method, url, q);
}

static void on_completed(
        void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
        ConsoleReq *q = *con_cls;
        if (q) {
                free(q->body);
                free(q);
        }
        *con_cls = NULL;
}

/* ---- lifetime ---------------------------------------------------------------------------- */

static int parse_listen(const char *listen, struct sockaddr_in *ret, char **reterr) {
        const char *colon = listen ? strrchr(listen, ':') : NULL;
        unsigned long port;
        char *end;
        if (!colon) {
                *reterr = xasprintf("--listen must be IPV4:PORT, not '%s'", listen ?: "");
                return -EINVAL;
        }
        _cleanup_free_ char *host = xstrndup(listen, (size_t) (colon - listen));
        errno = 0;
        port = strtoul(colon + 1, &end, 10);
        *ret = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
        if (errno || *end || port > 65535 || inet_pton(AF_INET, host, &ret->sin_addr) != 1) {
                *reterr = xasprintf("--listen must be IPV4:PORT, not '%s'", listen);
                return -EINVAL;
        }
        return 0;
}

int console_server_start(const ConsoleOptions *o, NucleusClient *node, ConsoleServer **ret, char **reterr) {
        struct sockaddr_in sa;
        char host[INET_ADDRSTRLEN];
        int r;

        r = parse_listen(o->listen, &sa, reterr);
        if (r < 0)
                return r;
        ConsoleServer *s = xnew0(ConsoleServer, 1);
        pthread_mutex_init(&s->lock, NULL);
        pthread_mutex_init(&s->node_lock, NULL);
        s->node = node;
        s->ui = o->ui;
        s->secrets_dir = xstrdup(o->secrets_dir);
        s->node_url = xstrdup(o->node_url ?: "");
        random_hex(s->token);
        s->daemon = MHD_start_daemon(
                MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                        MHD_USE_ERROR_LOG,
                0,
                NULL,
                NULL,
                on_request,
                s,
                MHD_OPTION_SOCK_ADDR,
                (struct sockaddr *) &sa,
                MHD_OPTION_CONNECTION_LIMIT,
                (unsigned) 64,
                MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                (unsigned) 32,
                MHD_OPTION_CONNECTION_TIMEOUT,
                (unsigned) 120,
                MHD_OPTION_NOTIFY_COMPLETED,
                on_completed,
                s,
                MHD_OPTION_END);
        if (!s->daemon) {
                *reterr = xasprintf(
                        "cannot listen on %s (in use, or not an address of this machine)", o->listen);
                console_server_stop(s);
                return -EADDRINUSE;
        }
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
        unsigned port = info ? info->port : ntohs(sa.sin_port);
        inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
        s->hosts[0] = xasprintf("%s:%u", host, port);
        s->hosts[1] = xasprintf("localhost:%u", port);
        if (streq(host, "127.0.0.1"))
                s->hosts[2] = xasprintf("[::1]:%u", port);
        s->origin = xasprintf("http://%s", s->hosts[0]);
        s->url = xstrdup(s->origin);
        s->login_url = xasprintf("%s/?token=%s", s->url, s->token);
        *ret = s;
        return 0;
}

const char *console_server_url(const ConsoleServer *s) {
        return s->url;
}

const char *console_server_login_url(const ConsoleServer *s) {
        return s->login_url;
}

void console_server_set_webhook(ConsoleServer *s, CliWebhook *w) {
        s->webhook = w;
}

ConsoleServer *console_server_stop(ConsoleServer *s) {
        if (!s)
                return NULL;
        if (s->daemon)
                MHD_stop_daemon(s->daemon);
        for (size_t i = 0; i < ELEMENTSOF(s->hosts); i++)
                free(s->hosts[i]);
        explicit_bzero_safe(s->token, sizeof s->token);
        explicit_bzero_safe(s->sessions, sizeof s->sessions);
        if (s->login_url)
                explicit_bzero_safe(s->login_url, strlen(s->login_url));
        free(s->login_url);
        free(s->url);
        free(s->origin);
        free(s->secrets_dir);
        free(s->node_url);
        pthread_mutex_destroy(&s->lock);
        pthread_mutex_destroy(&s->node_lock);
        free(s);
        return NULL;
}
