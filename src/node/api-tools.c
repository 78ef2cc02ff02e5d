/* SPDX-License-Identifier: Apache-2.0 */
/*
 * API handlers that call into a pod's proxy: tool calls (also `run` as server-sent events),
 * workspace import and export, with audit records and metrics for each; and what every call
 * into a pod checks first (running, within its deadline).
 */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "alloc-util.h"
#include "api-internal.h"
#include "id-util.h"
#include "audit-detail.h"
#include "audit.h"
#include "json-util.h"
#include "message.h"
#include "metrics.h"
#include "patch-flags.h"
#include "string-util.h"

/* Decision for the audit log and metrics from a proxy answer. */
const char *api_answer_decision(json_t *ans, const char **ret_kind) {
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

unsigned api_answer_status(json_t *ans) {
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
                return api_reply_error(
                        c,
                        (unsigned) error_kind_http_status(ERROR_KIND_TIME_VIOLATION),
                        "time_violation",
                        "the pod's deadline has passed (%s)",
                        reason ?: state);
        return api_reply_error(
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
bool api_pod_check_callable(struct MHD_Connection *c, Pod *p, enum MHD_Result *ret) {
        PodState s;
        usec_t deadline;
        pthread_mutex_lock(&p->node->lock);
        s = p->state;
        deadline = p->deadline_mono;
        pthread_mutex_unlock(&p->node->lock);
        if (s == POD_RUNNING && now_usec(CLOCK_MONOTONIC) >= deadline) {
                *ret = api_reply_error(
                        c,
                        (unsigned) error_kind_http_status(ERROR_KIND_TIME_VIOLATION),
                        "time_violation",
                        "the pod's deadline has passed");
                return false;
        }
        if (s != POD_RUNNING) {
                if (s < POD_RUNNING)
                        *ret = api_reply_error(
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

usec_t api_pod_call_timeout(Pod *p) {
        usec_t now = now_usec(CLOCK_MONOTONIC), t = (usec_t) p->node->config.tool_timeout_sec * USEC_PER_SEC;
        pthread_mutex_lock(&p->node->lock);
        usec_t left = p->deadline_mono > now ? p->deadline_mono - now : 0;
        pthread_mutex_unlock(&p->node->lock);
        return NUCLEUS_MIN(t, left + 2 * USEC_PER_SEC);
}

enum MHD_Result api_reply_channel_error(struct MHD_Connection *c, Pod *p, int r) {
        if (r == -ETIMEDOUT)
                return api_reply_error(
                        c, MHD_HTTP_GATEWAY_TIMEOUT, "internal", "the guest did not answer in time");
        if (r == -E2BIG) /* the request itself is too large for one channel frame; the pod is fine */
                return api_reply_error(
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
                pthread_mutex_lock(&p->node->lock);
                s = p->state;
                pthread_mutex_unlock(&p->node->lock);
                if (s == POD_EXITED || s == POD_FAILED)
                        break;
                (void) usleep(20 * 1000);
        }
        return reply_not_running(c, p);
}

/* Add the weak-isolation warning to an answer of the local driver. */
int api_audit_request(
        struct MHD_Connection *c,
        Pod *p,
        const char *actor,
        const char *audit_op,
        const json_t *args,
        const char *args_sha256,
        const json_t *detail,
        uint64_t *ret_seq,
        enum MHD_Result *ret) {
        AuditEvent ev = { .actor = actor,
                          .op = audit_op,
                          .decision = "request",
                          .args = args_sha256 ? NULL : args,
                          .args_sha256 = args_sha256,
                          .detail = detail };
        int r = pod_audit_seq(p, &ev, ret_seq);
        if (r < 0) {
                metrics_audit_refused();
                *ret = api_reply_error(
                        c,
                        MHD_HTTP_SERVICE_UNAVAILABLE,
                        "audit_unavailable",
                        "the call was refused: its audit record could not be written (%s); nothing reached "
                        "the pod",
                        strerror(-r));
        }
        return r;
}

void api_answer_mark(Pod *p, json_t *ans) {
        if (p->weak && json_is_object(ans))
                json_object_set_new(ans, "warning", json_string(API_WEAK_WARNING));
}

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
                STRV_FOREACH(c, s.paths) {
                        /* Names are bytes; JSON carries UTF-8: others in their visible form. */
                        _cleanup_free_ char *vis = utf8_is_valid(*c) ? xstrdup(*c) : string_make_visible(*c);
                        json_array_append_new(changed, json_string(vis));
                }
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

static int canonical_hash_chunk(const char *buf, size_t n, void *userdata) {
        crypto_hash_sha256_update(userdata, (const unsigned char *) buf, n);
        return 0;
}

void api_args_sha256(const json_t *j, char ret[static 65]) {
        crypto_hash_sha256_state st;
        uint8_t d[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_init(&st);
        if (json_dump_callback(j, canonical_hash_chunk, &st, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY) <
            0)
                oom_abort();
        crypto_hash_sha256_final(&st, d);
        sodium_bin2hex(ret, 65, d, sizeof d);
}

/* One proxy call on behalf of a client, with audit and metrics. Takes args. */
static enum MHD_Result proxy_call(
        struct MHD_Connection *c,
        Pod *p,
        const char *actor,
        const char *op,
        const char *audit_op,
        json_t *args,
        json_t *wire_args,
        const void *upload,
        size_t n_upload,
        size_t max_data,
        int64_t hold_ttl) {
        ChannelReply rep = {};
        /* An upload is the call's arguments (import) unless wire_args carries the call and the
         * upload is a write's content: that call is audited by its full arguments, digested
         * once here (they hold the whole content) instead of by every audit record. */
        bool upload_is_args = upload && !wire_args;
        enum MHD_Result ret;
        char args_sha[65];
        const char *digest = NULL;
        int r;

        if (!api_pod_check_callable(c, p, &ret))
                return ret;
        if (upload_is_args) {
                sha256_hex(upload, n_upload, args_sha);
                digest = args_sha;
        } else if (wire_args) {
                api_args_sha256(args, args_sha);
                digest = args_sha;
        }
        /* What the record shows of the arguments (redacted; docs/audit.md). */
        _cleanup_json_ json_t *detail = upload_is_args ? NULL : audit_detail_for_call(op, args);
        uint64_t req_seq = 0;
        if (api_audit_request(c, p, actor, audit_op, args, digest, detail, &req_seq, &ret) < 0)
                return ret;
        r = channel_call(
                p->channel,
                op,
                wire_args ?: args,
                streq(op, "export") ? CHANNEL_WANT_END : 0,
                upload,
                n_upload,
                api_pod_call_timeout(p),
                max_data,
                &rep);
        if (r < 0) {
                AuditEvent ev = { .actor = actor,
                                  .op = audit_op,
                                  .decision = "error",
                                  .kind = r == -ETIMEDOUT ? "timeout" : "pod_not_running",
                                  .args = digest ? NULL : args,
                                  .args_sha256 = digest,
                                  .detail = detail,
                                  .request_seq = req_seq };
                (void) pod_audit(p, &ev);
                metrics_tool_call(op, "error", NULL);
                return api_reply_channel_error(c, p, r);
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
        const char *kind = NULL, *decision = api_answer_decision(rep.response, &kind);
        _cleanup_free_ char *text = json_dumps(rep.response, JSON_COMPACT | JSON_SORT_KEYS);
        AuditEvent ev = { .actor = actor,
                          .op = audit_op,
                          .decision = decision,
                          .kind = kind,
                          .args = digest ? NULL : args,
                          .args_sha256 = digest,
                          .detail = detail,
                          .result = text,
                          .result_len = text ? strlen(text) : 0,
                          .request_seq = req_seq };
        (void) pod_audit(p, &ev);
        metrics_tool_call(op, decision, kind);
        if (hold_ttl >= 0 && streq_ptr(kind, "approval_required")) {
                /* A streamed write is held by its wire arguments (content digest and size, not the
                 * content); the token binds to those, which a retry sends again. */
                int h = api_approval_hold(p, actor, op, wire_args ?: args, rep.response, hold_ttl);
                if (h == -EBUSY) {
                        channel_reply_done(&rep);
                        return api_reply_error(
                                c,
                                MHD_HTTP_TOO_MANY_REQUESTS,
                                "too_many_pending",
                                "the pod already has %u pending approvals: decide or withdraw one first",
                                APPROVAL_QUEUE_MAX_PENDING);
                }
        }
        if (upload)
                metrics_bytes("upload", n_upload);
        if (rep.n_data)
                metrics_bytes("download", rep.n_data);
        api_answer_mark(p, rep.response);
        ret = api_reply_json(c, api_answer_status(rep.response), rep.response);
        channel_reply_done(&rep);
        return ret;
}

/* ---- run as server-sent events --------------------------------------------------------- */

typedef struct RunStream {
        Pod *pod;
        uint32_t stream;
        char *actor;
        json_t *args;
        uint64_t request_seq; /* the call's "request" audit record */
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
        int r = channel_wait(s->pod->channel, s->stream, api_pod_call_timeout(s->pod), 0, run_on_data, s, &rep);
        if (r < 0) {
                rep.response = json_pack(
                        "{s:s,s:s}",
                        "error",
                        r == -ETIMEDOUT ? "the guest did not answer in time" : "the pod ended during the call",
                        "kind",
                        r == -ETIMEDOUT ? "internal" : "pod_not_running");
        }
        const char *kind = NULL, *decision = api_answer_decision(rep.response, &kind);
        text = json_dumps(rep.response, JSON_COMPACT | JSON_SORT_KEYS);
        _cleanup_json_ json_t *detail = audit_detail_for_call("run", s->args);
        AuditEvent ev = { .actor = s->actor,
                          .op = "run",
                          .decision = decision,
                          .kind = kind,
                          .args = s->args,
                          .detail = detail,
                          .result = text,
                          .result_len = text ? strlen(text) : 0,
                          .request_seq = s->request_seq };
        (void) pod_audit(s->pod, &ev);
        metrics_tool_call("run", decision, kind);
        api_answer_mark(s->pod, rep.response);
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
        struct MHD_Response *resp;
        enum MHD_Result ret;
        uint64_t req_seq = 0;
        int r;

        _cleanup_json_ json_t *detail = audit_detail_for_call("run", args);
        if (api_audit_request(c, p, actor, "run", args, NULL, detail, &req_seq, &ret) < 0)
                return ret;
        RunStream *s = xnew0(RunStream, 1);
        s->request_seq = req_seq;
        r = channel_begin(p->channel, "run", args, 0, &s->stream);
        if (r < 0) {
                free(s);
                AuditEvent ev = { .actor = actor,
                                  .op = "run",
                                  .decision = "error",
                                  .kind = "pod_not_running",
                                  .args = args,
                                  .request_seq = req_seq };
                (void) pod_audit(p, &ev);
                return api_reply_channel_error(c, p, r);
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
        api_answer_sign(c, resp, MHD_HTTP_OK, NULL, SIZE_MAX);
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
}

enum MHD_Result api_h_workspace_put(ApiCall *a) {
        enum MHD_Result ret;
        if (a->n_body == 0)
                return api_reply_error(
                        a->c, MHD_HTTP_BAD_REQUEST, "invalid_request", "empty body: send a tar archive");
        if (!api_pod_check_callable(a->c, a->pod, &ret))
                return ret;
        _cleanup_json_ json_t *args = json_object();
        return proxy_call(
                a->c, a->pod, a->actor, "import", "workspace_import", args, NULL, a->body, a->n_body, 0, -1);
}

enum MHD_Result api_h_workspace_patch(ApiCall *a) {
        _cleanup_json_ json_t *args = json_object();
        return proxy_call(
                a->c,
                a->pod,
                a->actor,
                "export",
                "workspace_export",
                args,
                NULL,
                NULL,
                0,
                a->node->config.max_patch_bytes,
                -1);
}

/* ---- write with streamed content ------------------------------------------------------ */

/* Streamed writes in flight on this node: each holds its decoded content in memory. */
static unsigned api_write_streams;

int api_write_content(const json_t *args, const uint8_t **ret, size_t *ret_n, uint8_t **ret_owned, char **reterr) {
        const json_t *jc = json_object_get(args, "content"), *jb = json_object_get(args, "content_base64");
        if (!!jc == !!jb || (jc && !json_is_string(jc)) || (jb && !json_is_string(jb))) {
                *reterr = xstrdup("write: exactly one of 'content' or 'content_base64' (a string) is "
                                  "required");
                return -EINVAL;
        }
        if (jc) {
                *ret = (const uint8_t *) json_string_value(jc);
                *ret_n = json_string_length(jc);
                *ret_owned = NULL;
                return 0;
        }
        const char *s = json_string_value(jb);
        size_t len = json_string_length(jb), cap = len / 4 * 3 + 3, n = 0;
        _cleanup_free_ uint8_t *b = xmalloc(cap + 1);
        if (sodium_base642bin(b, cap, s, len, NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
                *reterr = xstrdup("write: bad content_base64 (standard base64 with padding expected)");
                return -EINVAL;
        }
        b[n] = 0;
        *ret = b;
        *ret_n = n;
        *ret_owned = TAKE_PTR(b);
        return 0;
}

json_t *api_write_wire_args(const json_t *args, const void *content, size_t n) {
        char sha[65];
        sha256_hex(content, n, sha);
        /* Shallow: the other arguments are shared, the content is never copied. */
        json_t *w = json_copy((json_t *) args);
        if (!w)
                oom_abort();
        json_object_del(w, "content");
        json_object_del(w, "content_base64");
        json_object_set_new(w, "content_bytes", json_integer((json_int_t) n));
        json_object_set_new(w, "content_sha256", json_string(sha));
        return w;
}

/* A write whose request does not fit one channel frame: the request without its content, then
 * the decoded content as data frames and an end frame (docs/proxy.md "Size"). The proxy judges
 * the path and the size before it accepts a byte of the content; what the audit log records
 * is the call as the client made it. */
static enum MHD_Result tool_write_streamed(ApiCall *a, json_t *args, int64_t hold_ttl) {
        _cleanup_free_ uint8_t *owned = NULL;
        _cleanup_free_ char *err = NULL;
        const uint8_t *content = NULL;
        size_t n = 0;

        if (api_write_content(args, &content, &n, &owned, &err) < 0)
                return api_reply_error(a->c, MHD_HTTP_BAD_REQUEST, "invalid_request", "%s", err);
        /* The content stays in memory until the guest has it: bound how many do at once. */
        if (__atomic_add_fetch(&api_write_streams, 1, __ATOMIC_SEQ_CST) > API_WRITE_STREAMS_MAX) {
                __atomic_sub_fetch(&api_write_streams, 1, __ATOMIC_SEQ_CST);
                return api_reply_error(
                        a->c,
                        MHD_HTTP_SERVICE_UNAVAILABLE,
                        "capacity",
                        "%u large writes are in flight on this node; retry when one has ended",
                        API_WRITE_STREAMS_MAX);
        }
        _cleanup_json_ json_t *wire = api_write_wire_args(args, content, n);
        enum MHD_Result ret = proxy_call(
                a->c, a->pod, a->actor, "write", "write", args, wire, content, n, 1024 * 1024, hold_ttl);
        __atomic_sub_fetch(&api_write_streams, 1, __ATOMIC_SEQ_CST);
        return ret;
}

/* POST /v1/pods/{id}/tools/{op}: one tool call (args[0] is the operation). */
enum MHD_Result api_h_tool(ApiCall *a) {
        struct MHD_Connection *c = a->c;
        const char *op = a->args[0];
        _cleanup_json_ json_t *args = NULL;
        _cleanup_free_ char *err = NULL;

        if (!operation_name_valid(op))
                return api_reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "unknown tool operation");
        if (streq(op, "configure") || streq(op, "reconfigure") || streq(op, "import") ||
            streq(op, "export") || streq(op, "approve") || streq(op, "setup") || streq(op, "setup_done"))
                return api_reply_error(
                        c,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request",
                        "'%s' is not a tool call: use the pod's workspace, setup, approvals and fork routes",
                        op);
        /* Nothing of the agent runs while the setup step does: its network window is open and
         * the baseline is not recorded yet (api-setup.c). And once the agent has acted, the
         * setup step never begins (the proxy ends its setup phase at the agent's first
         * operation, which may still be running): marked in the same lock as the check. */
        pthread_mutex_lock(&a->node->lock);
        bool in_setup = a->pod->setup_running;
        if (!in_setup && !streq(op, "status") && !streq(op, "charge"))
                a->pod->agent_acted = true;
        pthread_mutex_unlock(&a->node->lock);
        if (in_setup)
                return api_reply_error(
                        c,
                        MHD_HTTP_CONFLICT,
                        "conflict",
                        "the pod's setup step is running (its network window is open); tool calls wait "
                        "until it has ended");
        /* A pod credential calls tools; spending the pod's budget is the node key's (and the
         * run credential's reserve/settle), never the tool route's (docs/api.md). */
        if (a->key_id && streq(op, "charge"))
                return api_reply_error(
                        c,
                        MHD_HTTP_FORBIDDEN,
                        "insufficient_capability",
                        "a pod credential cannot charge the pod's budget (node key only)");
        if (a->n_body == 0)
                args = json_object();
        else if (json_parse_strict(a->body, a->n_body, a->n_body, &args, &err) < 0 || !json_is_object(args))
                return api_reply_error(
                        c,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request",
                        "body: a JSON object of arguments expected%s%s",
                        err ? ": " : "",
                        err ?: "");
        int64_t hold_ttl = -1;
        if (a->query) {
                _cleanup_free_ char *qerr = NULL;
                if (api_approval_parse_hold(a->query, &hold_ttl, &qerr) < 0)
                        return api_reply_error(c, MHD_HTTP_BAD_REQUEST, "invalid_request", "%s", qerr);
        }
        const char *accept = api_header(c, "Accept");
        if (streq(op, "run") && accept && strstr(accept, "text/event-stream")) {
                enum MHD_Result ret;
                if (!api_pod_check_callable(c, a->pod, &ret))
                        return ret;
                return h_run_sse(c, a->pod, a->actor, args);
        }
        /* content_bytes and content_sha256 are how the node itself streams a large write to the
         * proxy (tool_write_streamed); from a client they would announce content that never
         * comes, and the proxy would hold one of its few write streams for it until the call
         * timed out. */
        if (streq(op, "write") &&
            (json_object_get(args, "content_bytes") || json_object_get(args, "content_sha256")))
                return api_reply_error(
                        c,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request",
                        "write: send the content as 'content' or 'content_base64'; 'content_bytes' and "
                        "'content_sha256' are the node's own wire arguments");
        if (streq(op, "write") && channel_request_size(op, args) > CHANNEL_PAYLOAD_MAX)
                return tool_write_streamed(a, args, hold_ttl);
        return proxy_call(c, a->pod, a->actor, op, op, args, NULL, NULL, 0, 1024 * 1024, hold_ttl);
}
