/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP API of nucleus-node. Clients are untrusted until their signature verified: header and
 * body sizes are capped before anything is buffered (413), the request target is taken raw
 * (as signed) and routed without decoding, and every answer is JSON {"error","kind"} on
 * failure. Handlers run on MHD's per-connection threads and may block on the pod's channel.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sodium.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc-util.h"
#include "api.h"
#include "patch-flags.h"
#include "approval.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
#include "parse-util.h"
#include "pod.h"
#include "nodespec.h"
#include "sign.h"
#include "string-util.h"

#define API_HEADER_MAX 16384u
#define API_CONNECTION_LIMIT 128u
/* Before a request authenticated (docs/api.md "Before authentication"): at most this many
 * connections, each with a short idle timeout, at most this much body per request without a
 * declared X-Nucleus-Content-SHA256, and this much such body across all connections. */
#define API_UNAUTH_CONNECTIONS_MAX 32u
#define API_UNAUTH_TIMEOUT_SEC 30u
#define API_AUTH_TIMEOUT_SEC 600u
#define API_PREAUTH_BODY_MAX (1024u * 1024u)
#define API_PREAUTH_TOTAL_MAX (8u * 1024u * 1024u)
#define API_LOGS_MAX (8u * 1024u * 1024u)
#define API_AUDIT_MAX (64u * 1024u * 1024u)
#define API_SSE_KEEPALIVE (15 * USEC_PER_SEC)
#define API_WEAK_WARNING \
        "driver local: the proxy runs on the host in bubblewrap; weaker isolation than a microVM"

struct ApiServer {
        struct MHD_Daemon *d;
        Node *node;
        bool metrics;
};

typedef struct Req {
        char *uri; /* raw request target as sent (path?query), from the URI log callback */
        char *body;
        size_t n_body;
        size_t cap;    /* max body for this request (route limit; API_PREAUTH_BODY_MAX unsigned) */
        bool started;  /* the header-time checks ran */
        bool rejected; /* an early answer was queued */
        bool authed;   /* MAC verified at header time over the declared body digest */
        bool mapped;   /* body is an mmap of body_fd */
        char declared_sha256[65];      /* X-Nucleus-Content-SHA256 of an authed request */
        crypto_hash_sha256_state hash; /* running digest of the body (authed) */
        int body_fd;                   /* temp file holding a streamed workspace upload, or -1 */
        size_t preauth_reserved;       /* bytes held from the global pre-auth budget */
} Req;

/* Per-connection state (MHD socket context): counted as unauthenticated until one of its
 * requests authenticated. */
typedef struct ApiConn {
        bool authed;
} ApiConn;

static unsigned api_unauth_connections; /* __atomic */
static size_t api_preauth_bytes;        /* __atomic: unsigned body bytes buffered */

static bool preauth_reserve(Req *q, size_t n) {
        size_t cur = __atomic_add_fetch(&api_preauth_bytes, n, __ATOMIC_SEQ_CST);
        if (cur > API_PREAUTH_TOTAL_MAX) {
                __atomic_sub_fetch(&api_preauth_bytes, n, __ATOMIC_SEQ_CST);
                return false;
        }
        q->preauth_reserved += n;
        return true;
}

static void preauth_release(Req *q) {
        if (q->preauth_reserved > 0)
                __atomic_sub_fetch(&api_preauth_bytes, q->preauth_reserved, __ATOMIC_SEQ_CST);
        q->preauth_reserved = 0;
}

/* The connection authenticated: out of the unauthenticated count, normal idle timeout. */
static void conn_mark_authed(struct MHD_Connection *c) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        ApiConn *ac = ci ? ci->socket_context : NULL;
        if (!ac || ac->authed)
                return;
        ac->authed = true;
        __atomic_sub_fetch(&api_unauth_connections, 1, __ATOMIC_SEQ_CST);
        (void) MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, API_AUTH_TIMEOUT_SEC);
}

/* ---- helpers ---------------------------------------------------------------------------- */

static enum MHD_Result
        reply_raw(struct MHD_Connection *c, unsigned status, const char *ctype, const void *data, size_t n) {
        struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *) data, MHD_RESPMEM_MUST_COPY);
        enum MHD_Result ret;
        if (!r)
                return MHD_NO;
        (void) MHD_add_response_header(r, "Content-Type", ctype);
        (void) MHD_add_response_header(r, "Cache-Control", "no-store");
        ret = MHD_queue_response(c, status, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *j) {
        _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
        if (!text)
                return MHD_NO;
        return reply_raw(c, status, "application/json", text, strlen(text));
}

_printf_(4, 5) static enum MHD_Result
        reply_error(struct MHD_Connection *c, unsigned status, const char *kind, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        msg = xvasprintf(fmt, ap);
        va_end(ap);
        _cleanup_json_ json_t *j = json_pack("{s:s,s:s}", "error", msg, "kind", kind);
        return reply_json(c, status, j);
}

static enum MHD_Result reply_unauthorized(struct MHD_Connection *c, const char *detail, const char *msg) {
        _cleanup_json_ json_t *j = json_pack(
                "{s:s,s:s,s:s}", "error", msg, "kind", "unauthorized", "detail", detail);
        metrics_auth_failure(detail);
        return reply_json(c, MHD_HTTP_UNAUTHORIZED, j);
}

static const char *header(struct MHD_Connection *c, const char *name) {
        return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static void sha256_hex(const void *p, size_t n, char ret[65]) {
        uint8_t d[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(d, p, n);
        for (size_t i = 0; i < sizeof d; i++)
                snprintf(ret + 2 * i, 3, "%02x", d[i]);
}

static bool op_name_ok(const char *s, size_t n) {
        if (n == 0 || n > 32)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
                        return false;
        return true;
}

static bool pod_id_ok(const char *s, size_t n) {
        if (n != 36)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return false;
                } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        }
        return true;
}

/* Decision for the audit log and metrics from a proxy answer. */
static const char *answer_decision(json_t *ans, const char **ret_kind) {
        const char *kind = json_string_value(json_object_get(ans, "kind"));
        if (!json_object_get(ans, "error")) {
                *ret_kind = NULL;
                return "allow";
        }
        *ret_kind = kind;
        ErrorKind k = kind ? error_kind_from_string(kind) : _ERROR_KIND_INVALID;
        switch ((int) k) {
        case ERROR_KIND_SANDBOX_ESCAPE:
        case ERROR_KIND_PATH_DENIED:
        case ERROR_KIND_COMMAND_DENIED:
        case ERROR_KIND_INSUFFICIENT_CAPABILITY:
        case ERROR_KIND_APPROVAL_REQUIRED:
        case ERROR_KIND_APPROVAL_INVALID:
        case ERROR_KIND_BUDGET_EXHAUSTED:
        case ERROR_KIND_TIME_VIOLATION:
        case ERROR_KIND_NETWORK_DENIED:
                return "deny";
        default:
                return "error";
        }
}

static unsigned answer_status(json_t *ans) {
        const char *kind = json_string_value(json_object_get(ans, "kind"));
        if (!json_object_get(ans, "error"))
                return MHD_HTTP_OK;
        ErrorKind k = kind ? error_kind_from_string(kind) : _ERROR_KIND_INVALID;
        return (int) k >= 0 ? (unsigned) error_kind_http_status(k) : 502u;
}

/* Why a pod cannot take calls: its end reason's kind (time_violation after the deadline). */
static enum MHD_Result reply_not_running(struct MHD_Connection *c, Pod *p) {
        _cleanup_json_ json_t *pj = pod_to_json(p);
        const char *kind = json_string_value(json_object_get(pj, "reason_kind"));
        const char *state = json_string_value(json_object_get(pj, "state"));
        const char *reason = json_string_value(json_object_get(pj, "reason"));
        if (streq_ptr(kind, "time_violation"))
                return reply_error(
                        c,
                        (unsigned) error_kind_http_status(ERROR_KIND_TIME_VIOLATION),
                        "time_violation",
                        "the pod's deadline has passed (%s)",
                        reason ?: state);
        return reply_error(
                c,
                MHD_HTTP_CONFLICT,
                "pod_not_running",
                "pod %s is %s%s%s",
                p->id,
                state,
                reason ? ": " : "",
                reason ?: "");
}

/* Running and within its deadline? Otherwise queue the answer and return false. */
static bool pod_check_callable(struct MHD_Connection *c, Pod *p, enum MHD_Result *ret) {
        PodState s;
        usec_t deadline;
        pthread_mutex_lock(&node_global->lock);
        s = p->state;
        deadline = p->deadline_mono;
        pthread_mutex_unlock(&node_global->lock);
        if (s == POD_RUNNING && now_usec(CLOCK_MONOTONIC) >= deadline) {
                *ret = reply_error(
                        c,
                        (unsigned) error_kind_http_status(ERROR_KIND_TIME_VIOLATION),
                        "time_violation",
                        "the pod's deadline has passed");
                return false;
        }
        if (s != POD_RUNNING) {
                if (s < POD_RUNNING)
                        *ret = reply_error(
                                c,
                                MHD_HTTP_CONFLICT,
                                "pod_not_running",
                                "pod %s is %s; wait for running",
                                p->id,
                                pod_state_to_string(s));
                else
                        *ret = reply_not_running(c, p);
                return false;
        }
        return true;
}

static usec_t pod_call_timeout(Pod *p) {
        usec_t now = now_usec(CLOCK_MONOTONIC),
               t = (usec_t) node_global->config.tool_timeout_sec * USEC_PER_SEC;
        pthread_mutex_lock(&node_global->lock);
        usec_t left = p->deadline_mono > now ? p->deadline_mono - now : 0;
        pthread_mutex_unlock(&node_global->lock);
        return NUCLEUS_MIN(t, left + 2 * USEC_PER_SEC);
}

static enum MHD_Result reply_channel_error(struct MHD_Connection *c, Pod *p, int r) {
        if (r == -ETIMEDOUT)
                return reply_error(c, MHD_HTTP_GATEWAY_TIMEOUT, "internal", "the guest did not answer in time");
        if (r == -E2BIG) /* the request itself is too large for one channel frame; the pod is fine */
                return reply_error(
                        c,
                        MHD_HTTP_CONTENT_TOO_LARGE,
                        "too_large",
                        "the request is larger than the %u bytes one tool call may carry to the guest "
                        "(its JSON arguments, content included, as encoded); split the content into "
                        "several writes or upload it as a workspace import",
                        (unsigned) CHANNEL_PAYLOAD_MAX);
        /* Channel gone: the pod ended (or is ending). Let the supervisor record why first. */
        for (int i = 0; i < 50; i++) {
                PodState s;
                pthread_mutex_lock(&node_global->lock);
                s = p->state;
                pthread_mutex_unlock(&node_global->lock);
                if (s == POD_EXITED || s == POD_FAILED)
                        break;
                (void) usleep(20 * 1000);
        }
        return reply_not_running(c, p);
}

/* Add the weak-isolation warning to an answer of the local driver. */
static void answer_mark(Pod *p, json_t *ans) {
        if (p->weak && json_is_object(ans))
                json_object_set_new(ans, "warning", json_string(API_WEAK_WARNING));
}

/* ---- handlers --------------------------------------------------------------------------- */

static enum MHD_Result h_create(struct MHD_Connection *c, Req *q, const char *actor) {
        _cleanup_json_ json_t *out = NULL;
        _cleanup_free_ char *err = NULL;
        _cleanup_(pod_unrefp) Pod *p = NULL;
        NodeSpec *spec = NULL;
        int r;

        r = nodespec_parse(q->body, q->n_body, &spec, &err);
        if (r < 0)
                return reply_error(
                        c,
                        r == -EFBIG ? MHD_HTTP_CONTENT_TOO_LARGE : MHD_HTTP_BAD_REQUEST,
                        r == -EFBIG ? "too_large" : "invalid_request",
                        "invalid spec: %s",
                        err ?: "?");
        VmmDriver d = spec->driver >= 0 ? (VmmDriver) spec->driver : node_global->config.driver;
        r = pod_create(node_global, spec, d, actor, &p, &err);
        if (r == -EBUSY)
                return reply_error(
                        c,
                        node_global->shutting_down ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_CONFLICT,
                        node_global->shutting_down ? "capacity" : "conflict",
                        "%s",
                        err ?: "pod limit reached");
        if (r < 0)
                return reply_error(
                        c,
                        MHD_HTTP_INTERNAL_SERVER_ERROR,
                        "internal",
                        "cannot create the pod: %s",
                        err ?: strerror(-r));
        out = pod_to_json(p);
        return reply_json(c, MHD_HTTP_CREATED, out);
}

static enum MHD_Result h_list(struct MHD_Connection *c) {
        _cleanup_json_ json_t *arr = json_array();
        Pod **list;
        size_t k = 0;

        pthread_mutex_lock(&node_global->lock);
        list = xnew0(Pod *, node_global->n_pods + 1);
        for (size_t i = 0; i < node_global->n_pods; i++) {
                list[k++] = node_global->pods[i];
                node_global->pods[i]->n_ref++;
        }
        pthread_mutex_unlock(&node_global->lock);
        for (size_t i = 0; i < k; i++) {
                json_array_append_new(arr, pod_to_json(list[i]));
                pod_unref(list[i]);
        }
        free(list);
        _cleanup_json_ json_t *out = json_pack("{s:O}", "pods", arr);
        return reply_json(c, MHD_HTTP_OK, out);
}

static enum MHD_Result h_delete(struct MHD_Connection *c, Pod *p, const char *actor) {
        AuditEvent ev = { .actor = actor, .op = "pod_delete", .decision = "allow" };
        PodState s;
        pthread_mutex_lock(&node_global->lock);
        s = p->state;
        pthread_mutex_unlock(&node_global->lock);
        if (s != POD_EXITED && s != POD_FAILED) {
                pod_audit(p, &ev);
                pod_terminate(p, POD_EXITED, "deleted by the API", "pod_not_running");
        }
        _cleanup_json_ json_t *out = pod_to_json(p);
        return reply_json(c, MHD_HTTP_OK, out);
}

/* Append the last API_LOGS_MAX bytes of <pod>/<name> to buf under a header line. */
static void logs_append(Pod *p, const char *name, const char *title, char **buf, size_t *n) {
        _cleanup_free_ char *path = xasprintf("%s/%s", p->dir, name), *data = NULL;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        size_t k = 0;

        if (fd < 0)
                return;
        off_t size = lseek(fd, 0, SEEK_END);
        off_t from = size > (off_t) API_LOGS_MAX ? size - (off_t) API_LOGS_MAX : 0;
        if (lseek(fd, from, SEEK_SET) < 0 || read_full_fd(fd, API_LOGS_MAX, &data, &k) < 0)
                return;
        _cleanup_free_ char *head = xasprintf("==> %s <==\n", title);
        *buf = xrealloc(*buf, *n + strlen(head) + k + 2);
        memcpy(*buf + *n, head, strlen(head));
        *n += strlen(head);
        memcpy(*buf + *n, data, k);
        *n += k;
        if (k > 0 && data[k - 1] != '\n')
                (*buf)[(*n)++] = '\n';
        (*buf)[*n] = 0;
}

static enum MHD_Result h_logs(struct MHD_Connection *c, Pod *p, const char *query) {
        _cleanup_free_ char *data = NULL;
        uint32_t tail = 0;
        size_t n = 0;

        if (query) {
                const char *t = startswith(query, "tail=");
                if (!t || strchr(t, '&') || safe_atou32(t, &tail) < 0 || tail > 100000)
                        return reply_error(
                                c,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request",
                                "query: only tail=N (0..100000) is understood");
        }
        /* The node's own lines about this pod, then the VM console (or proxy output). */
        data = xstrdup("");
        logs_append(p, "node.log", "node", &data, &n);
        logs_append(p, "console.log", "console", &data, &n);
        /* Lossy: keep text, newlines and tabs; a CR that ends a line (serial consoles write
         * CRLF) is dropped; anything else non-printable ASCII becomes '?'. */
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char) data[i];
                if (ch == '\r' && i + 1 < n && data[i + 1] == '\n')
                        continue;
                data[w++] = (ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f ? '?' : (char) ch;
        }
        n = w;
        size_t start = 0;
        if (tail > 0) {
                uint32_t lines = 0;
                for (size_t i = n; i > 0; i--)
                        if (data[i - 1] == '\n' && i != n && ++lines == tail) {
                                start = i;
                                break;
                        }
        } else if (query)
                start = n;
        return reply_raw(c, MHD_HTTP_OK, "text/plain; charset=utf-8", data + start, n - start);
}

static enum MHD_Result h_audit(struct MHD_Connection *c, Pod *p) {
        _cleanup_free_ char *path = xasprintf("%s/audit.jsonl", p->dir), *data = NULL;
        size_t n = 0;
        int r;
        pthread_mutex_lock(&p->audit_lock);
        r = read_full_file_at(AT_FDCWD, path, API_AUDIT_MAX, &data, &n);
        pthread_mutex_unlock(&p->audit_lock);
        if (r < 0)
                return reply_error(
                        c,
                        MHD_HTTP_INTERNAL_SERVER_ERROR,
                        "io_error",
                        "cannot read the audit log: %s",
                        strerror(-r));
        return reply_raw(c, MHD_HTTP_OK, "application/x-ndjson", data, n);
}

/* One proxy call on behalf of a client, with audit and metrics. Takes args. */

/* The flags of an exported patch are computed here from the patch itself (patch-flags.h), so
 * every API client gets them; the guest's own list may only add to them (paths outside the
 * patch: a changed .git/hooks file, a nested repository left out), never take one away. */
static void export_set_flags(json_t *response, const char *data, size_t n) {
        PatchSummary s = {};
        _cleanup_free_ char *err = NULL;
        json_t *flags;
        if (patch_flags_compute(data ?: "", n, &s, &err) < 0) {
                flags = json_array();
                patch_flags_add(flags, "(patch)", "unparsed", err ?: "the patch cannot be parsed");
        } else {
                flags = json_incref(s.flags);
                json_t *changed = json_array();
                STRV_FOREACH(c, s.paths)
                        json_array_append_new(changed, json_string(*c));
                json_object_set_new(response, "changed", changed);
        }
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(response, "flagged"), i, v) {
                const char *path = json_is_string(v) ? json_string_value(v)
                                                     : json_string_value(json_object_get(v, "path"));
                const char *reason = json_string_value(json_object_get(v, "reason"));
                if (!path)
                        continue;
                _cleanup_free_ char *r = xasprintf("guest: %s", reason ?: "flagged");
                patch_flags_add(
                        flags, path, r, json_string_value(json_object_get(v, "why")) ?: "reported by the pod");
        }
        json_object_set_new(response, "flagged", flags);
        patch_summary_done(&s);
}

static enum MHD_Result proxy_call(
        struct MHD_Connection *c,
        Pod *p,
        const char *actor,
        const char *op,
        const char *audit_op,
        json_t *args,
        const void *upload,
        size_t n_upload,
        size_t max_data) {
        ChannelReply rep = {};
        enum MHD_Result ret;
        char args_sha[65];
        int r;

        if (!pod_check_callable(c, p, &ret))
                return ret;
        if (upload)
                sha256_hex(upload, n_upload, args_sha);
        r = channel_call(
                p->channel,
                op,
                args,
                streq(op, "export") ? CHANNEL_WANT_END : 0,
                upload,
                n_upload,
                pod_call_timeout(p),
                max_data,
                &rep);
        if (r < 0) {
                AuditEvent ev = { .actor = actor,
                                  .op = audit_op,
                                  .decision = "error",
                                  .kind = "internal",
                                  .args = upload ? NULL : args,
                                  .args_sha256 = upload ? args_sha : NULL };
                pod_audit(p, &ev);
                metrics_tool_call(op, "error", NULL);
                return reply_channel_error(c, p, r);
        }
        if (rep.n_data > 0 && !json_object_get(rep.response, "error") &&
            !json_object_get(rep.response, "patch")) {
                /* Patch bytes travel as data frames; hand them to the client inside the answer. */
                json_object_set_new(rep.response, "patch", json_stringn_nocheck(rep.data, rep.n_data));
                if (rep.data_truncated)
                        json_object_set_new(rep.response, "patch_truncated", json_true());
        }
        if (streq(op, "export") && !json_object_get(rep.response, "error"))
                export_set_flags(rep.response, rep.data, rep.n_data);
        const char *kind = NULL, *decision = answer_decision(rep.response, &kind);
        _cleanup_free_ char *text = json_dumps(rep.response, JSON_COMPACT | JSON_SORT_KEYS);
        AuditEvent ev = { .actor = actor,
                          .op = audit_op,
                          .decision = decision,
                          .kind = kind,
                          .args = upload ? NULL : args,
                          .args_sha256 = upload ? args_sha : NULL,
                          .result = text,
                          .result_len = text ? strlen(text) : 0 };
        pod_audit(p, &ev);
        metrics_tool_call(op, decision, kind);
        if (upload)
                metrics_bytes("upload", n_upload);
        if (rep.n_data)
                metrics_bytes("download", rep.n_data);
        answer_mark(p, rep.response);
        ret = reply_json(c, answer_status(rep.response), rep.response);
        channel_reply_done(&rep);
        return ret;
}

/* ---- run as server-sent events --------------------------------------------------------- */

typedef struct RunStream {
        Pod *pod;
        uint32_t stream;
        char *actor;
        json_t *args;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        char *buf; /* pending SSE text */
        size_t n_buf, off;
        bool done;
        pthread_t waiter;
} RunStream;

static int run_on_data(void *userdata, const void *p, size_t n) {
        RunStream *s = userdata;
        _cleanup_json_ json_t *j = json_pack("{s:s%}", "data", (const char *) p, n);
        _cleanup_free_ char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (!text) /* not UTF-8: send it base64-free as replaced text */
                return 0;
        _cleanup_free_ char *chunk = xasprintf("event: output\ndata: %s\n\n", text);
        pthread_mutex_lock(&s->lock);
        if (s->n_buf - s->off < 8u * 1024u * 1024u) {
                s->buf = xrealloc(s->buf, s->n_buf + strlen(chunk));
                memcpy(s->buf + s->n_buf, chunk, strlen(chunk));
                s->n_buf += strlen(chunk);
        }
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return 0;
}

static void *run_waiter(void *userdata) {
        RunStream *s = userdata;
        ChannelReply rep = {};
        _cleanup_free_ char *chunk = NULL, *text = NULL;
        int r = channel_wait(s->pod->channel, s->stream, pod_call_timeout(s->pod), 0, run_on_data, s, &rep);
        if (r < 0) {
                rep.response = json_pack(
                        "{s:s,s:s}",
                        "error",
                        r == -ETIMEDOUT ? "the guest did not answer in time" : "the pod ended during the call",
                        "kind",
                        r == -ETIMEDOUT ? "internal" : "pod_not_running");
        }
        const char *kind = NULL, *decision = answer_decision(rep.response, &kind);
        text = json_dumps(rep.response, JSON_COMPACT | JSON_SORT_KEYS);
        AuditEvent ev = { .actor = s->actor,
                          .op = "run",
                          .decision = decision,
                          .kind = kind,
                          .args = s->args,
                          .result = text,
                          .result_len = text ? strlen(text) : 0 };
        pod_audit(s->pod, &ev);
        metrics_tool_call("run", decision, kind);
        answer_mark(s->pod, rep.response);
        _cleanup_free_ char *out = json_dumps(rep.response, JSON_COMPACT);
        chunk = xasprintf("event: result\ndata: %s\n\n", out ?: "{}");
        pthread_mutex_lock(&s->lock);
        s->buf = xrealloc(s->buf, s->n_buf + strlen(chunk));
        memcpy(s->buf + s->n_buf, chunk, strlen(chunk));
        s->n_buf += strlen(chunk);
        s->done = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        channel_reply_done(&rep);
        return NULL;
}

static ssize_t run_reader(void *cls, uint64_t pos, char *buf, size_t max) {
        RunStream *s = cls;
        ssize_t n;
        pthread_mutex_lock(&s->lock);
        while (s->off == s->n_buf && !s->done)
                pthread_cond_wait(&s->cond, &s->lock);
        if (s->off == s->n_buf && s->done) {
                pthread_mutex_unlock(&s->lock);
                return MHD_CONTENT_READER_END_OF_STREAM;
        }
        n = (ssize_t) NUCLEUS_MIN(max, s->n_buf - s->off);
        memcpy(buf, s->buf + s->off, (size_t) n);
        s->off += (size_t) n;
        pthread_mutex_unlock(&s->lock);
        return n;
}

static void run_free(void *cls) {
        RunStream *s = cls;
        (void) pthread_join(s->waiter, NULL);
        pod_unref(s->pod);
        json_decref(s->args);
        free(s->actor);
        free(s->buf);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

static enum MHD_Result h_run_sse(struct MHD_Connection *c, Pod *p, const char *actor, json_t *args) {
        RunStream *s = xnew0(RunStream, 1);
        struct MHD_Response *resp;
        enum MHD_Result ret;
        int r;

        r = channel_begin(p->channel, "run", args, 0, &s->stream);
        if (r < 0) {
                free(s);
                return reply_channel_error(c, p, r);
        }
        s->pod = pod_ref(p);
        s->actor = xstrdup(actor);
        s->args = json_incref(args);
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        if (pthread_create(&s->waiter, NULL, run_waiter, s) != 0)
                oom_abort();
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, run_reader, s, run_free);
        (void) MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        (void) MHD_add_response_header(resp, "Cache-Control", "no-store");
        if (p->weak)
                (void) MHD_add_response_header(resp, "X-Nucleus-Warning", API_WEAK_WARNING);
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* ---- /events ------------------------------------------------------------------------------ */

typedef struct EventStream {
        Pod *pod;
        PodSub *sub;
        char *cur;
        size_t n_cur, off;
        bool ended;
} EventStream;

static ssize_t events_reader(void *cls, uint64_t pos, char *buf, size_t max) {
        EventStream *e = cls;
        while (e->off == e->n_cur) {
                free(e->cur);
                e->cur = NULL;
                e->n_cur = e->off = 0;
                if (e->ended)
                        return MHD_CONTENT_READER_END_OF_STREAM;
                char *chunk = NULL;
                int r = pod_sub_next(e->pod, e->sub, API_SSE_KEEPALIVE, &chunk);
                if (r > 0)
                        e->cur = chunk;
                else if (r == 0)
                        e->cur = xstrdup(": keep-alive\n\n");
                else {
                        e->cur = xstrdup(r == -ENOBUFS ? "event: overflow\ndata: {}\n\n" : "");
                        e->ended = true;
                }
                e->n_cur = strlen(e->cur);
        }
        size_t n = NUCLEUS_MIN(max, e->n_cur - e->off);
        memcpy(buf, e->cur + e->off, n);
        e->off += n;
        return (ssize_t) n;
}

static void events_free(void *cls) {
        EventStream *e = cls;
        pod_unsubscribe(e->pod, e->sub);
        pod_unref(e->pod);
        free(e->cur);
        free(e);
}

static enum MHD_Result h_events(struct MHD_Connection *c, Pod *p) {
        EventStream *e = xnew0(EventStream, 1);
        struct MHD_Response *resp;
        enum MHD_Result ret;

        e->pod = pod_ref(p);
        e->sub = pod_subscribe(p);
        e->cur = xstrdup(": nucleus-node audit events\n\n");
        e->n_cur = strlen(e->cur);
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, events_reader, e, events_free);
        (void) MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        (void) MHD_add_response_header(resp, "Cache-Control", "no-store");
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* ---- approvals ------------------------------------------------------------------------- */

static enum MHD_Result h_approval(struct MHD_Connection *c, Pod *p, const char *actor, json_t *body) {
        const char *token = json_string_value(json_object_get(body, "token"));
        _cleanup_free_ char *err = NULL;
        ApprovalToken t = {};
        enum MHD_Result ret;
        ApprovalResult ar;
        char tsha[65];

        if (!token)
                return reply_error(
                        c, MHD_HTTP_BAD_REQUEST, "invalid_request", "body: {\"token\": \"nat1....\"} expected");
        if (!node_global->have_approver_pub)
                return reply_error(
                        c,
                        MHD_HTTP_FORBIDDEN,
                        "not_configured",
                        "no approver public key configured on the node (approver_public_key)");
        if (!pod_check_callable(c, p, &ret))
                return ret;
        sha256_hex(token, strlen(token), tsha);
        ar = approval_token_verify(token, node_global->approver_pub, &t, &err);
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
                return reply_json(c, (unsigned) error_kind_http_status(ERROR_KIND_APPROVAL_INVALID), j);
        }
        _cleanup_json_ json_t *args = json_pack("{s:s}", "token", token);
        ChannelReply rep = {};
        int r = channel_call(p->channel, "approve", args, 0, NULL, 0, pod_call_timeout(p), 0, &rep);
        if (r < 0)
                return reply_channel_error(c, p, r);
        const char *kind = NULL, *decision = answer_decision(rep.response, &kind);
        _cleanup_free_ char *text = json_dumps(rep.response, JSON_COMPACT | JSON_SORT_KEYS);
        AuditEvent ev = { .actor = actor,
                          .op = "approval",
                          .decision = decision,
                          .kind = kind,
                          .args_sha256 = tsha,
                          .result = text,
                          .result_len = text ? strlen(text) : 0 };
        pod_audit(p, &ev);
        metrics_approval(streq(decision, "allow") ? "accepted" : "rejected");
        metrics_tool_call("approve", decision, kind);
        answer_mark(p, rep.response);
        ret = reply_json(c, answer_status(rep.response), rep.response);
        channel_reply_done(&rep);
        return ret;
}

/* ---- routing ---------------------------------------------------------------------------- */

static enum MHD_Result h_pod_route(
        struct MHD_Connection *c,
        Req *q,
        const char *method,
        const char *rest,
        const char *query,
        const char *actor) {
        /* rest: "<id>" or "<id>/<sub...>" */
        const char *slash = strchr(rest, '/');
        size_t idlen = slash ? (size_t) (slash - rest) : strlen(rest);
        const char *sub = slash ? slash + 1 : NULL;
        _cleanup_(pod_unrefp) Pod *p = NULL;
        char id[37];

        if (!pod_id_ok(rest, idlen))
                return reply_error(
                        c, MHD_HTTP_NOT_FOUND, "not_found", "no such pod (ids are lower-case UUIDs)");
        memcpy(id, rest, 36);
        id[36] = 0;
        p = pod_find(node_global, id);
        if (!p)
                return reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "no pod %s", id);

        if (!sub) {
                if (streq(method, "GET")) {
                        _cleanup_json_ json_t *j = pod_to_json(p);
                        return reply_json(c, MHD_HTTP_OK, j);
                }
                if (streq(method, "DELETE"))
                        return h_delete(c, p, actor);
                return reply_error(
                        c, MHD_HTTP_METHOD_NOT_ALLOWED, "invalid_request", "use GET or DELETE on a pod");
        }
        if (query && !streq(sub, "logs"))
                return reply_error(
                        c, MHD_HTTP_BAD_REQUEST, "invalid_request", "this route takes no query string");
        if (streq(sub, "cancel") && streq(method, "POST"))
                return h_delete(c, p, actor);
        if (streq(sub, "logs") && streq(method, "GET"))
                return h_logs(c, p, query);
        if (streq(sub, "audit") && streq(method, "GET"))
                return h_audit(c, p);
        if (streq(sub, "events") && streq(method, "GET"))
                return h_events(c, p);
        if (streq(sub, "workspace") && streq(method, "PUT")) {
                enum MHD_Result ret;
                if (q->n_body == 0)
                        return reply_error(
                                c, MHD_HTTP_BAD_REQUEST, "invalid_request", "empty body: send a tar archive");
                if (!pod_check_callable(c, p, &ret))
                        return ret;
                _cleanup_json_ json_t *args = json_object();
                return proxy_call(c, p, actor, "import", "workspace_import", args, q->body, q->n_body, 0);
        }
        if (streq(sub, "workspace/patch") && streq(method, "GET")) {
                _cleanup_json_ json_t *args = json_object();
                return proxy_call(
                        c, p, actor, "export", "workspace_export", args, NULL, 0, node_global->config.max_patch_bytes);
        }
        const char *op = startswith(sub, "tools/");
        if (op && streq(method, "POST")) {
                _cleanup_json_ json_t *args = NULL;
                _cleanup_free_ char *err = NULL;
                if (!op_name_ok(op, strlen(op)))
                        return reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "unknown tool operation");
                if (streq(op, "configure") || streq(op, "import") || streq(op, "export") ||
                    streq(op, "approve"))
                        return reply_error(
                                c,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request",
                                "'%s' is not a tool call: use the pod's workspace and approvals routes",
                                op);
                if (q->n_body == 0)
                        args = json_object();
                else if (json_parse_strict(q->body, q->n_body, q->n_body, &args, &err) < 0 || !json_is_object(args))
                        return reply_error(
                                c,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request",
                                "body: a JSON object of arguments expected%s%s",
                                err ? ": " : "",
                                err ?: "");
                const char *accept = header(c, "Accept");
                if (streq(op, "run") && accept && strstr(accept, "text/event-stream")) {
                        enum MHD_Result ret;
                        if (!pod_check_callable(c, p, &ret))
                                return ret;
                        return h_run_sse(c, p, actor, args);
                }
                return proxy_call(c, p, actor, op, op, args, NULL, 0, 1024 * 1024);
        }
        if (streq(sub, "approvals") && streq(method, "POST")) {
                _cleanup_json_ json_t *body = NULL;
                _cleanup_free_ char *err = NULL;
                if (json_parse_strict(q->body, q->n_body, q->n_body, &body, &err) < 0 || !json_is_object(body))
                        return reply_error(
                                c,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request",
                                "body: {\"token\": ...} expected%s%s",
                                err ? ": " : "",
                                err ?: "");
                return h_approval(c, p, actor, body);
        }
        return reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "no route %s /v1/pods/{id}/%s", method, sub);
}

static size_t body_cap_for(const char *method, const char *path) {
        if (streq(method, "PUT") && endswith(path, "/workspace"))
                return node_global->config.max_workspace_bytes;
        return node_global->config.max_body_bytes;
}

static enum MHD_Result reply_auth_failure(struct MHD_Connection *c, AuthVerifyResult vr, const char *missing) {
        static const char *const msg[_AUTH_VERIFY_RESULT_MAX] = {
                [AUTH_VERIFY_MISSING_HEADER] = "a signing header is missing",
                [AUTH_VERIFY_BAD_TIMESTAMP] = "X-Nucleus-Timestamp is not a unix time in seconds",
                [AUTH_VERIFY_SKEW] = "X-Nucleus-Timestamp is more than 60 s away from the node's clock",
                [AUTH_VERIFY_BAD_NONCE] = "X-Nucleus-Nonce must be 32..128 hex characters",
                [AUTH_VERIFY_BAD_ACTOR] = "X-Nucleus-Actor must be printable ASCII, at most 256 bytes",
                [AUTH_VERIFY_BAD_REQUEST] = "the method, path or X-Nucleus-Content-SHA256 (64 lowercase "
                                            "hex) "
                                            "cannot be signed",
                [AUTH_VERIFY_BAD_SIGNATURE] = "signature does not match (method, path with query, "
                                              "timestamp, nonce, actor, body)",
                [AUTH_VERIFY_REPLAY] = "nonce already used: replayed request refused",
                [AUTH_VERIFY_CACHE_FULL] = "too many requests in the replay window; retry later",
        };
        const char *detail = auth_verify_result_to_string(vr) ?: "other";
        _cleanup_free_ char *m = vr == AUTH_VERIFY_MISSING_HEADER && missing
                ? xasprintf("missing header %s", missing)
                : xstrdup((int) vr >= 0 && vr < _AUTH_VERIFY_RESULT_MAX && msg[vr] ? msg[vr] : "unauthorized");
        return reply_unauthorized(c, detail, m);
}

static AuthRequest auth_request_of(struct MHD_Connection *c, const char *method, const char *uri) {
        return (AuthRequest){
                .method = method,
                .path = uri,
                .timestamp = header(c, AUTH_HEADER_TIMESTAMP),
                .nonce = header(c, AUTH_HEADER_NONCE),
                .actor = header(c, AUTH_HEADER_ACTOR) ?: "",
                .signature = header(c, AUTH_HEADER_SIGNATURE),
                .body_sha256 = header(c, AUTH_HEADER_CONTENT_SHA256),
        };
}

/* A workspace upload of an authenticated request streams into an unlinked temp file in the
 * state dir instead of memory. */
static bool is_workspace_upload(const char *method, const char *path) {
        return streq(method, "PUT") && startswith(path, "/v1/pods/") && endswith(path, "/workspace");
}

/* First call of a request (headers only, no body byte read yet): every check that does not
 * need the body. Returns true to go on; false when an answer was queued (*ret). */
static bool request_begin(
        struct MHD_Connection *c, Req *q, const char *method, const char *path, enum MHD_Result *ret) {
        const char *cl = header(c, "Content-Length");
        const char *missing = NULL;
        bool health = streq(path, "/v1/health");
        uint64_t len = 0;
        AuthVerifyResult vr;

        q->started = true;
        AuthRequest ar = auth_request_of(c, method, q->uri);
        bool declared = !health && ar.body_sha256;
        q->cap = body_cap_for(method, path) ?: 1;
        if (!declared)
                q->cap = NUCLEUS_MIN(q->cap, (size_t) API_PREAUTH_BODY_MAX);
        if (health)
                q->cap = 1; /* GET, no body */
        if (cl && (safe_atou64(cl, &len) < 0 || len > q->cap)) {
                q->rejected = true;
                *ret = reply_error(
                        c,
                        MHD_HTTP_CONTENT_TOO_LARGE,
                        "too_large",
                        "request body of %s bytes exceeds the limit of %zu bytes%s",
                        cl,
                        q->cap,
                        declared || health ? "" : " (without X-Nucleus-Content-SHA256)");
                return false;
        }
        if (health)
                return true;

        /* Everything about the headers, then (with a declared digest) the MAC itself. */
        vr = auth_precheck_request(&ar, (int64_t) time(NULL), &missing);
        if (vr == AUTH_VERIFY_OK && declared)
                vr = auth_verify_request(
                        node_global->node_key, &ar, node_global->nonces, (int64_t) time(NULL), &missing);
        if (vr != AUTH_VERIFY_OK) {
                q->rejected = true;
                *ret = reply_auth_failure(c, vr, missing);
                return false;
        }
        if (declared) {
                q->authed = true;
                memcpy(q->declared_sha256, ar.body_sha256, sizeof(q->declared_sha256));
                crypto_hash_sha256_init(&q->hash);
                conn_mark_authed(c);
                if (is_workspace_upload(method, path)) {
                        q->body_fd = open(node_global->config.state_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
                        if (q->body_fd < 0) {
                                q->rejected = true;
                                *ret = reply_error(
                                        c,
                                        MHD_HTTP_INTERNAL_SERVER_ERROR,
                                        "io_error",
                                        "cannot create a temp file for the upload: %s",
                                        strerror(errno));
                                return false;
                        }
                }
        } else if (len > 0 && !preauth_reserve(q, (size_t) len)) {
                q->rejected = true;
                *ret = reply_error(
                        c,
                        MHD_HTTP_SERVICE_UNAVAILABLE,
                        "capacity",
                        "too many unauthenticated request bodies in flight; retry later or send "
                        "X-Nucleus-Content-SHA256");
                return false;
        }
        return true;
}

/* One piece of the body. Returns true to go on; false when an answer was queued. */
static bool request_body(struct MHD_Connection *c, Req *q, const char *data, size_t n, enum MHD_Result *ret) {
        if (q->n_body + n > q->cap) {
                q->rejected = true;
                *ret = reply_error(
                        c,
                        MHD_HTTP_CONTENT_TOO_LARGE,
                        "too_large",
                        "request body exceeds the limit of %zu bytes%s",
                        q->cap,
                        q->authed ? "" : " (without X-Nucleus-Content-SHA256)");
                return false;
        }
        if (!q->authed && q->n_body + n > q->preauth_reserved &&
            !preauth_reserve(q, q->n_body + n - q->preauth_reserved)) {
                q->rejected = true;
                *ret = reply_error(
                        c,
                        MHD_HTTP_SERVICE_UNAVAILABLE,
                        "capacity",
                        "too many unauthenticated request bodies in flight; retry later");
                return false;
        }
        if (q->authed)
                crypto_hash_sha256_update(&q->hash, (const uint8_t *) data, n);
        if (q->body_fd >= 0) {
                int r = loop_write(q->body_fd, data, n);
                if (r < 0) {
                        q->rejected = true;
                        *ret = reply_error(
                                c,
                                MHD_HTTP_INTERNAL_SERVER_ERROR,
                                "io_error",
                                "cannot store the upload: %s",
                                strerror(-r));
                        return false;
                }
        } else {
                q->body = xrealloc(q->body, q->n_body + n + 1);
                memcpy(q->body + q->n_body, data, n);
                q->body[q->n_body + n] = 0;
        }
        q->n_body += n;
        return true;
}

/* The whole body arrived: check it against the declared digest (authed) or verify the
 * request (unsigned digest, small body). Returns true when authenticated. */
static bool request_complete(struct MHD_Connection *c, Req *q, const char *method, enum MHD_Result *ret) {
        if (q->authed) {
                uint8_t d[crypto_hash_sha256_BYTES];
                char hex[65];
                crypto_hash_sha256_final(&q->hash, d);
                sodium_bin2hex(hex, sizeof hex, d, sizeof d);
                if (!memeq_consttime(hex, q->declared_sha256, 64)) {
                        *ret = reply_unauthorized(
                                c,
                                "content_mismatch",
                                "the body does not match X-Nucleus-Content-SHA256 (it was discarded)");
                        return false;
                }
                if (q->body_fd >= 0 && q->n_body > 0) {
                        void *m = mmap(NULL, q->n_body, PROT_READ, MAP_PRIVATE, q->body_fd, 0);
                        if (m == MAP_FAILED) {
                                *ret = reply_error(
                                        c,
                                        MHD_HTTP_INTERNAL_SERVER_ERROR,
                                        "io_error",
                                        "cannot map the upload: %s",
                                        strerror(errno));
                                return false;
                        }
                        q->body = m;
                        q->mapped = true;
                }
                return true;
        }
        AuthRequest ar = auth_request_of(c, method, q->uri);
        ar.body = q->body;
        ar.body_len = q->n_body;
        const char *missing = NULL;
        AuthVerifyResult vr = auth_verify_request(
                node_global->node_key, &ar, node_global->nonces, (int64_t) time(NULL), &missing);
        preauth_release(q);
        if (vr != AUTH_VERIFY_OK) {
                *ret = reply_auth_failure(c, vr, missing);
                return false;
        }
        conn_mark_authed(c);
        return true;
}

static enum MHD_Result api_handler(
        void *cls,
        struct MHD_Connection *c,
        const char *url,
        const char *method,
        const char *version,
        const char *upload_data,
        size_t *upload_data_size,
        void **con_cls) {
        Req *q = *con_cls;
        const char *uri, *query;
        _cleanup_free_ char *path = NULL;
        enum MHD_Result ret = MHD_NO;

        if (!q) /* the URI log callback always runs first; be defensive */
                return MHD_NO;
        uri = q->uri;
        query = strchr(uri, '?');
        path = query ? xstrndup(uri, (size_t) (query - uri)) : xstrdup(uri);
        if (query)
                query++;

        if (q->rejected) {
                *upload_data_size = 0; /* discard the rest of the body */
                return MHD_YES;
        }
        if (!q->started) {
                /* First call: headers only. Refuse before reading any body byte. */
                if (!request_begin(c, q, method, path, &ret))
                        return ret;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;
                *upload_data_size = 0;
                if (!request_body(c, q, upload_data, n, &ret))
                        return ret;
                return MHD_YES;
        }

        /* Complete request. */
        if (streq(path, "/v1/health")) {
                if (!streq(method, "GET"))
                        return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "invalid_request", "use GET");
                return reply_raw(c, MHD_HTTP_OK, "application/json", "{\"status\":\"ok\"}", 15);
        }
        if (!request_complete(c, q, method, &ret))
                return ret;
        const char *actor_h = header(c, AUTH_HEADER_ACTOR);
        /* The audit log wants a non-empty actor; the signature covered whatever was sent. */
        const char *actor = isempty(actor_h) ? "unknown" : actor_h;

        if (streq(path, "/v1/pods")) {
                if (streq(method, "POST"))
                        return h_create(c, q, actor);
                if (streq(method, "GET"))
                        return h_list(c);
                return reply_error(
                        c, MHD_HTTP_METHOD_NOT_ALLOWED, "invalid_request", "use GET or POST on /v1/pods");
        }
        const char *rest = startswith(path, "/v1/pods/");
        if (rest)
                return h_pod_route(c, q, method, rest, query, actor);
        return reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "no route %s %s", method, path);
}

static void *api_uri_log(void *cls, const char *uri, struct MHD_Connection *c) {
        Req *q = xnew0(Req, 1);
        q->uri = xstrdup(uri ?: "");
        q->body_fd = -EBADF;
        /* Until it authenticates, a connection gets a short idle timeout. */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        ApiConn *ac = ci ? ci->socket_context : NULL;
        if (ac && !ac->authed)
                (void) MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, API_UNAUTH_TIMEOUT_SEC);
        return q;
}

static void api_notify_connection(
        void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode toe) {
        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                *socket_context = xnew0(ApiConn, 1);
                __atomic_add_fetch(&api_unauth_connections, 1, __ATOMIC_SEQ_CST);
                return;
        }
        ApiConn *ac = *socket_context;
        if (!ac)
                return;
        if (!ac->authed)
                __atomic_sub_fetch(&api_unauth_connections, 1, __ATOMIC_SEQ_CST);
        free(ac);
        *socket_context = NULL;
}

/* Refuse new connections while API_UNAUTH_CONNECTIONS_MAX have not authenticated yet. */
static enum MHD_Result api_accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
        return __atomic_load_n(&api_unauth_connections, __ATOMIC_SEQ_CST) >= API_UNAUTH_CONNECTIONS_MAX
                ? MHD_NO
                : MHD_YES;
}

static void api_completed(
        void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
        Req *q = *con_cls;
        if (!q)
                return;
        free(q->uri);
        if (q->mapped)
                (void) munmap(q->body, q->n_body);
        else
                free(q->body);
        safe_close(q->body_fd);
        preauth_release(q);
        free(q);
        *con_cls = NULL;
}

/* ---- metrics server ------------------------------------------------------------------- */

static enum MHD_Result metrics_handler(
        void *cls,
        struct MHD_Connection *c,
        const char *url,
        const char *method,
        const char *version,
        const char *upload_data,
        size_t *upload_data_size,
        void **con_cls) {
        ApiServer *s = cls;
        if (*upload_data_size > 0) {
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (!streq(url, "/metrics") || !streq(method, "GET"))
                return reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "only GET /metrics here");
        _cleanup_free_ char *text = metrics_render(s->node);
        return reply_raw(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
}

/* ---- lifecycle ------------------------------------------------------------------------- */

int api_parse_listen(const char *addr, struct sockaddr_storage *ret, socklen_t *ret_len) {
        _cleanup_free_ char *host = NULL;
        const char *port;
        uint32_t p;

        memset(ret, 0, sizeof *ret);
        if (addr[0] == '[') {
                const char *end = strchr(addr, ']');
                if (!end || end[1] != ':')
                        return -EINVAL;
                host = xstrndup(addr + 1, (size_t) (end - addr - 1));
                port = end + 2;
        } else {
                const char *colon = strrchr(addr, ':');
                if (!colon)
                        return -EINVAL;
                host = xstrndup(addr, (size_t) (colon - addr));
                port = colon + 1;
        }
        if (safe_atou32(port, &p) < 0 || p > 65535)
                return -EINVAL;
        if (streq(host, "localhost"))
                host = mfree(host), host = xstrdup("127.0.0.1");
        struct sockaddr_in *in4 = (struct sockaddr_in *) ret;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ret;
        if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons((uint16_t) p);
                *ret_len = sizeof *in4;
                return 0;
        }
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t) p);
                *ret_len = sizeof *in6;
                return 0;
        }
        return -EINVAL;
}

static int api_start_internal(Node *n, const char *addr, bool metrics, ApiServer **ret) {
        struct sockaddr_storage sa;
        socklen_t salen;
        ApiServer *s;
        int r;

        r = api_parse_listen(addr, &sa, &salen);
        if (r < 0)
                return r;
        s = xnew0(ApiServer, 1);
        s->node = n;
        s->metrics = metrics;
        unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
        if (sa.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        if (metrics)
                s->d = MHD_start_daemon(
                        flags,
                        0,
                        NULL,
                        NULL,
                        metrics_handler,
                        s,
                        MHD_OPTION_SOCK_ADDR,
                        &sa,
                        MHD_OPTION_CONNECTION_LIMIT,
                        16u,
                        MHD_OPTION_CONNECTION_TIMEOUT,
                        30u,
                        MHD_OPTION_END);
        else
                s->d = MHD_start_daemon(
                        flags,
                        0,
                        api_accept_policy,
                        NULL,
                        api_handler,
                        s,
                        MHD_OPTION_NOTIFY_CONNECTION,
                        api_notify_connection,
                        s,
                        MHD_OPTION_SOCK_ADDR,
                        &sa,
                        MHD_OPTION_URI_LOG_CALLBACK,
                        api_uri_log,
                        s,
                        MHD_OPTION_NOTIFY_COMPLETED,
                        api_completed,
                        s,
                        MHD_OPTION_CONNECTION_LIMIT,
                        API_CONNECTION_LIMIT,
                        MHD_OPTION_CONNECTION_TIMEOUT,
                        600u,
                        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                        (size_t) (API_HEADER_MAX * 4),
                        MHD_OPTION_END);
        if (!s->d) {
                free(s);
                return -EADDRNOTAVAIL;
        }
        *ret = s;
        return 0;
}

int api_start(Node *n, const char *addr, ApiServer **ret) {
        return api_start_internal(n, addr, false, ret);
}

int api_metrics_start(Node *n, const char *addr, ApiServer **ret) {
        return api_start_internal(n, addr, true, ret);
}

ApiServer *api_stop(ApiServer *s) {
        if (!s)
                return NULL;
        MHD_stop_daemon(s->d);
        free(s);
        return NULL;
}
