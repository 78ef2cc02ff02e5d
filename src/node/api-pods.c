/* SPDX-License-Identifier: Apache-2.0 */
/*
 * API handlers of the pod lifecycle: create, list, get, delete, logs, the audit log and the
 * /events stream (server-sent events from the pod's audit appends).
 */
#include <fcntl.h>
#include <sodium.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "net.h"
#include "api-internal.h"
#include "image.h"
#include "fd-util.h"
#include "json-util.h"
#include "nodespec.h"
#include "podspec.h"
#include "parse-util.h"
#include "string-util.h"

#define API_LOGS_MAX (8u * 1024u * 1024u)
#define API_AUDIT_MAX (64u * 1024u * 1024u)
#define API_SSE_KEEPALIVE (15 * USEC_PER_SEC)

enum MHD_Result api_h_create(ApiCall *a) {
        struct MHD_Connection *c = a->c;
        Node *n = a->node;
        _cleanup_json_ json_t *out = NULL;
        _cleanup_free_ char *err = NULL;
        _cleanup_(pod_unrefp) Pod *p = NULL;
        NodeSpec *spec = NULL;
        int r;

        r = nodespec_parse(a->body, a->n_body, &spec, &err);
        if (r < 0)
                return api_reply_error(
                        c,
                        r == -EFBIG ? MHD_HTTP_CONTENT_TOO_LARGE : MHD_HTTP_BAD_REQUEST,
                        r == -EFBIG ? "too_large" : "invalid_request",
                        "invalid spec: %s",
                        err ?: "?");
        r = nodespec_resolve_timeout(spec, n->config.default_timeout_sec, n->config.max_timeout_sec, &err);
        if (r < 0) {
                nodespec_free(spec);
                return api_reply_error(c, MHD_HTTP_BAD_REQUEST, "invalid_request", "invalid spec: %s", err);
        }
        /* The network section and the setup hosts together, as boot will build them: a conflict
         * between the two is the caller's mistake, said now rather than at boot. */
        if (spec->has_network || strv_length(spec->setup_hosts) > 0) {
                _cleanup_(net_policy_freep) NetPolicy *np = NULL;
                r = net_policy_from_strv(spec->allow, spec->deny, spec->dns_allow, &np, &err);
                if (r >= 0)
                        r = net_policy_set_setup_hosts(np, spec->setup_hosts, &err);
                if (r < 0) {
                        nodespec_free(spec);
                        return api_reply_error(
                                c,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request",
                                "invalid spec: spec.%s",
                                err ?: "network");
                }
        }
        VmmDriver d = spec->driver >= 0 ? (VmmDriver) spec->driver : n->config.driver;
        if (d == VMM_DRIVER_LOCAL && strv_length(spec->setup_hosts) > 0) {
                nodespec_free(spec);
                return api_reply_error(
                        c,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request",
                        "invalid spec: spec.setup.hosts: the local driver cannot give a pod a network; use "
                        "the qemu driver, or drop the hosts (the setup step then runs offline)");
        }
        /* A VM pod needs its image built on this node: refused now, with the command that builds
         * it, rather than at boot. (The local driver runs the host's programs: no image.) */
        if (d != VMM_DRIVER_LOCAL && n->config.images_dir) {
                _cleanup_free_ char *idir = nodespec_image_dir(spec, n->config.images_dir);
                _cleanup_json_ json_t *m = NULL;
                if (image_manifest_load(idir, &m) < 0) {
                        bool named = spec->image && !streq(spec->image, PODSPEC_IMAGE_DEFAULT);
                        _cleanup_free_ char *name = xstrdup(spec->image ?: PODSPEC_IMAGE_DEFAULT);
                        nodespec_free(spec);
                        return api_reply_error(
                                c,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request",
                                "invalid spec: spec.image: the image '%s' is not built on this node (%s); "
                                "build it with 'nucleus image build%s%s'",
                                name,
                                idir,
                                named ? " --name " : "",
                                named ? name : "");
                }
        }
        r = pod_create(n, spec, d, a->actor, &p, &err);
        if (r == -EBUSY)
                return api_reply_error(
                        c,
                        n->shutting_down ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_CONFLICT,
                        n->shutting_down ? "capacity" : "conflict",
                        "%s",
                        err ?: "pod limit reached");
        if (r < 0)
                return api_reply_error(
                        c,
                        MHD_HTTP_INTERNAL_SERVER_ERROR,
                        "internal",
                        "cannot create the pod: %s",
                        err ?: strerror(-r));
        out = pod_to_json(p);
        return api_reply_json(c, MHD_HTTP_CREATED, out);
}

/* ?state=S[,S...] of GET /v1/pods: a bit per PodState. "live" and "ended" name groups.
 * Returns 0 and the mask (all states without a query), or -EINVAL. */
static int list_state_filter(const char *query, unsigned *ret) {
        if (!query) {
                *ret = ~0u;
                return 0;
        }
        const char *v = startswith(query, "state=");
        if (!v || isempty(v) || strlen(v) > 256)
                return -EINVAL;
        _cleanup_free_ char *copy = xstrdup(v);
        unsigned mask = 0;
        char *save = NULL;
        for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                if (streq(w, "live"))
                        mask |= (1u << POD_PENDING) | (1u << POD_BOOTING) | (1u << POD_CONFIGURING) |
                                (1u << POD_RUNNING) | (1u << POD_STOPPING);
                else if (streq(w, "ended"))
                        mask |= (1u << POD_EXITED) | (1u << POD_FAILED);
                else {
                        PodState st = pod_state_from_string(w);
                        if (st < 0)
                                return -EINVAL;
                        mask |= 1u << st;
                }
        }
        *ret = mask;
        return 0;
}

/* GET /v1/pool: the warm pool per image (pooled pods are never in GET /v1/pods). */
enum MHD_Result api_h_pool(ApiCall *a) {
        _cleanup_json_ json_t *out = pod_pool_to_json(a->node);
        return api_reply_json(a->c, MHD_HTTP_OK, out);
}

enum MHD_Result api_h_list(ApiCall *a) {
        Node *n = a->node;
        _cleanup_json_ json_t *arr = json_array();
        Pod **list;
        size_t k = 0;
        unsigned mask;

        if (list_state_filter(a->query, &mask) < 0)
                return api_reply_error(
                        a->c,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request",
                        "query: only state=S[,S...] with S one of pending, booting, configuring, running, "
                        "stopping, exited, failed, live, ended");
        pthread_mutex_lock(&n->lock);
        list = xnew0(Pod *, n->n_pods + 1);
        for (size_t i = 0; i < n->n_pods; i++) {
                if (!(mask & (1u << n->pods[i]->state)))
                        continue;
                list[k++] = n->pods[i];
                n->pods[i]->n_ref++;
        }
        pthread_mutex_unlock(&n->lock);
        for (size_t i = 0; i < k; i++) {
                json_array_append_new(arr, pod_to_json(list[i]));
                pod_unref(list[i]);
        }
        free(list);
        _cleanup_json_ json_t *out = json_pack("{s:O}", "pods", arr);
        return api_reply_json(a->c, MHD_HTTP_OK, out);
}

enum MHD_Result api_h_get(ApiCall *a) {
        _cleanup_json_ json_t *j = pod_to_json(a->pod);
        return api_reply_json(a->c, MHD_HTTP_OK, j);
}

enum MHD_Result api_h_delete(ApiCall *a) {
        Pod *p = a->pod;
        AuditEvent ev = { .actor = a->actor, .op = "pod_delete", .decision = "allow" };
        PodState s;
        pthread_mutex_lock(&p->node->lock);
        s = p->state;
        pthread_mutex_unlock(&p->node->lock);
        if (s != POD_EXITED && s != POD_FAILED) {
                pod_audit(p, &ev);
                pod_terminate(p, POD_EXITED, "deleted by the API", "pod_not_running");
        }
        _cleanup_json_ json_t *out = pod_to_json(p);
        return api_reply_json(a->c, MHD_HTTP_OK, out);
}

enum MHD_Result api_h_lease(ApiCall *a) {
        if (pod_lease_renew(a->pod) < 0)
                return api_reply_error(
                        a->c,
                        MHD_HTTP_CONFLICT,
                        "pod_not_running",
                        "pod %s has ended: its lease cannot be renewed",
                        a->pod->id);
        _cleanup_json_ json_t *j = pod_to_json(a->pod);
        _cleanup_json_ json_t *out = json_pack(
                "{s:s,s:O?,s:O?}",
                "id",
                a->pod->id,
                "lease_grace_seconds",
                json_object_get(j, "lease_grace_seconds"),
                "lease_expires",
                json_object_get(j, "lease_expires"));
        return api_reply_json(a->c, MHD_HTTP_OK, out);
}

enum MHD_Result api_h_remove(ApiCall *a) {
        int r = pod_remove(a->pod);
        if (r == -EAGAIN)
                return api_reply_error(
                        a->c,
                        MHD_HTTP_CONFLICT,
                        "conflict",
                        "a pod is being restored from a snapshot of pod %s; retry when it runs",
                        a->pod->id);
        if (r < 0)
                return api_reply_error(
                        a->c,
                        MHD_HTTP_CONFLICT,
                        "conflict",
                        "pod %s is still live: delete it first (DELETE /v1/pods/%s)",
                        a->pod->id,
                        a->pod->id);
        _cleanup_json_ json_t *out = json_pack("{s:s}", "removed", a->pod->id);
        return api_reply_json(a->c, MHD_HTTP_OK, out);
}

enum MHD_Result api_h_prune(ApiCall *a) {
        _cleanup_json_ json_t *body = NULL;
        uint64_t older = 0;
        if (a->n_body > 0) {
                _cleanup_free_ char *err = NULL;
                json_t *v;
                if (json_parse_strict(a->body, a->n_body, 4096, &body, &err) < 0 || !json_is_object(body) ||
                    json_object_size(body) > 1 ||
                    (json_object_size(body) == 1 &&
                     (!json_is_integer(v = json_object_get(body, "older_than_seconds")) ||
                      json_integer_value(v) < 0 || json_integer_value(v) > 315360000)))
                        return api_reply_error(
                                a->c,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request",
                                "body: {\"older_than_seconds\": N} (0..315360000) or nothing");
                if ((v = json_object_get(body, "older_than_seconds")))
                        older = (uint64_t) json_integer_value(v);
        }
        /* Snapshots first (of ended pods, taken more than N s ago; 0: all of them), so their
         * pods' records can go with the same prune. Then every ended pod (0) or those that
         * ended more than N s ago; one that still has snapshots keeps its record. */
        _cleanup_strv_free_ char **snaps = pod_snapshots_prune(a->node, older * USEC_PER_SEC);
        _cleanup_strv_free_ char **ids = pod_prune(a->node, older * USEC_PER_SEC, older ? UINT_MAX : 0);
        _cleanup_json_ json_t *arr = json_array(), *sarr = json_array();
        STRV_FOREACH(id, ids)
                json_array_append_new(arr, json_string(*id));
        STRV_FOREACH(id, snaps)
                json_array_append_new(sarr, json_string(*id));
        _cleanup_json_ json_t *out = json_pack("{s:O,s:O}", "removed", arr, "snapshots", sarr);
        return api_reply_json(a->c, MHD_HTTP_OK, out);
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

enum MHD_Result api_h_logs(ApiCall *a) {
        struct MHD_Connection *c = a->c;
        Pod *p = a->pod;
        const char *query = a->query;
        _cleanup_free_ char *data = NULL;
        uint32_t tail = 0;
        size_t n = 0;

        if (query) {
                const char *t = startswith(query, "tail=");
                if (!t || strchr(t, '&') || safe_atou32(t, &tail) < 0 || tail > 100000)
                        return api_reply_error(
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
        return api_reply_raw(c, MHD_HTTP_OK, "text/plain; charset=utf-8", data + start, n - start);
}

enum MHD_Result api_h_audit(ApiCall *a) {
        struct MHD_Connection *c = a->c;
        Pod *p = a->pod;
        _cleanup_free_ char *path = xasprintf("%s/audit.jsonl", p->dir), *data = NULL;
        size_t n = 0;
        int r;
        pthread_mutex_lock(&p->audit_lock);
        r = read_full_file_at(AT_FDCWD, path, API_AUDIT_MAX, &data, &n);
        pthread_mutex_unlock(&p->audit_lock);
        if (r < 0)
                return api_reply_error(
                        c,
                        MHD_HTTP_INTERNAL_SERVER_ERROR,
                        "io_error",
                        "cannot read the audit log: %s",
                        strerror(-r));
        return api_reply_raw(c, MHD_HTTP_OK, "application/x-ndjson", data, n);
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

enum MHD_Result api_h_events(ApiCall *a) {
        struct MHD_Connection *c = a->c;
        Pod *p = a->pod;
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
        api_answer_sign(c, resp, MHD_HTTP_OK, NULL, SIZE_MAX);
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* POST /v1/pods/{id}/credentials (node key): mint a credential scoped to this pod
 * (docs/api.md "Scoped credentials"). Body {"scope": "pod"|"run"} or nothing (pod). The secret
 * is in this answer only: the node never shows it again, never logs or audits it (the audit
 * record names the key id and scope). */
enum MHD_Result api_h_credentials(ApiCall *a) {
        _cleanup_json_ json_t *body = NULL;
        PodCredScope scope = POD_CRED_POD;
        if (a->n_body > 0) {
                _cleanup_free_ char *err = NULL;
                const char *s = NULL;
                if (json_parse_strict(a->body, a->n_body, 4096, &body, &err) >= 0 && json_is_object(body))
                        s = json_object_size(body) == 0 ? "pod"
                                : json_object_size(body) == 1
                                ? json_string_value(json_object_get(body, "scope"))
                                : NULL;
                if (!s || !(streq(s, "pod") || streq(s, "run")))
                        return api_reply_error(
                                a->c,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request",
                                "body: {\"scope\": \"pod\"} (tool, status, event, lease and approval-queue "
                                "routes of this pod), {\"scope\": \"run\"} (its budget reserve and settle) "
                                "or nothing (pod)");
                if (streq(s, "run"))
                        scope = POD_CRED_RUN;
        }
        char key_id[POD_CRED_KEY_ID_MAX + 1];
        uint8_t secret[32];
        char secret_hex[2 * sizeof secret + 1];
        int r = pod_credential_mint(a->pod, scope, key_id, secret);
        if (r == -ESTALE)
                return api_reply_error(
                        a->c,
                        MHD_HTTP_CONFLICT,
                        "pod_not_running",
                        "pod %s has ended: no credential can be minted for it",
                        a->pod->id);
        if (r == -ENOSPC)
                return api_reply_error(
                        a->c,
                        MHD_HTTP_CONFLICT,
                        "conflict",
                        "pod %s already holds %d credentials (the most a pod may hold)",
                        a->pod->id,
                        POD_CREDENTIALS_MAX);
        if (r < 0)
                return api_reply_error(
                        a->c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "cannot mint: %s", strerror(-r));
        const char *scope_s = scope == POD_CRED_RUN ? "run" : "pod";
        _cleanup_json_ json_t *detail = json_pack("{s:s,s:s}", "key_id", key_id, "scope", scope_s);
        AuditEvent ev = { .actor = a->actor, .op = "credential_minted", .decision = "info", .detail = detail };
        (void) pod_audit(a->pod, &ev);
        sodium_bin2hex(secret_hex, sizeof secret_hex, secret, sizeof secret);
        explicit_bzero_safe(secret, sizeof secret);
        _cleanup_json_ json_t *out = json_pack(
                "{s:s,s:s,s:s,s:s}", "key_id", key_id, "secret", secret_hex, "scope", scope_s, "pod", a->pod->id);
        explicit_bzero_safe(secret_hex, sizeof secret_hex);
        enum MHD_Result ret = api_reply_json(a->c, MHD_HTTP_CREATED, out);
        /* Wipe the copy in the JSON document too. */
        json_t *sv = json_object_get(out, "secret");
        if (sv)
                (void) json_string_set(sv, "");
        return ret;
}
