/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP API of nucleus-node: the server, authentication and the limits before it. Clients are
 * untrusted until their signature verified: header and body sizes are capped before anything
 * is buffered (413), the request target is taken raw (as signed) and routed without decoding
 * through the one route table (api-routes.c), and every answer is JSON {"error","kind"} on
 * failure. Handlers (api-pods.c, api-tools.c, api-approvals.c) run on MHD's per-connection
 * threads and may block on the pod's channel.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc-util.h"
#include "api-internal.h"
#include "api.h"
#include "fd-util.h"
#include "id-util.h"
#include "json-util.h"
#include "log.h"
#include "metrics.h"
#include "parse-util.h"
#include "pod.h"
#include "sign.h"
#include "string-util.h"

#define API_HEADER_MAX 16384u
#define API_CONNECTION_LIMIT 128u
/* Before a request authenticated (docs/api.md "Before authentication"): at most this many
 * connections, each with a short idle timeout, at most this much body per request without a
 * declared X-Nucleus-Content-SHA256, and this much such body across all connections. */
#define API_UNAUTH_CONNECTIONS_MAX 32u
#define API_UNAUTH_TIMEOUT_SEC 10u  /* idle, from accept: the first request's headers must come */
#define API_UNAUTH_DEADLINE_SEC 15u /* from accept to an authenticated request, however slow */
#define API_UNAUTH_PER_ADDR 16u     /* one address's share of API_UNAUTH_CONNECTIONS_MAX */
#define API_AUTH_TIMEOUT_SEC 60u
#define API_PREAUTH_BODY_MAX (1024u * 1024u)
#define API_PREAUTH_TOTAL_MAX (8u * 1024u * 1024u)
/* After authentication (docs/api.md "Scoped credentials"): connections signed with scoped
 * credentials, all pods together and one pod's, so that one pod's agent (through its MCP
 * server) cannot take the connections other pods' clients and the node key's holder need. */
#define API_SCOPED_CONNECTIONS_MAX 96u
#define API_POD_CONNECTIONS_MAX 16u

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
        int body_fd;                   /* temp file holding a streamed upload (API_STREAM), or -1 */
        size_t preauth_reserved;       /* bytes held from the global pre-auth budget */
        Pod *big_body_pod;             /* holds one of its (and the node's) big tool bodies */
        char *path;                    /* uri up to '?' */
        /* Signed with a scoped credential (X-Nucleus-Key-Id): its secret, scope and pod. */
        bool scoped;
        uint8_t key[AUTH_KEY_SIZE];
        PodCredScope cred_scope;
        Pod *cred_pod;
        const char *query; /* in uri after '?', or NULL */
        ApiMatch match;    /* the route table's answer for method and path */
} Req;

/* Per-connection state (MHD socket context): counted as unauthenticated until one of its
 * requests authenticated. Unauthenticated ones are also on a list (oldest first) so that they
 * can be evicted: idle or slow connections must not lock clients out. */
typedef struct ApiConn {
        bool authed;
        bool evicted;
        int fd; /* the connection's socket (MHD owns it) */
        struct sockaddr_storage addr;
        usec_t accepted; /* CLOCK_MONOTONIC */
        /* The key that authenticates answers on this connection's current request: the node
         * key, the scoped credential's secret that signed it, or none (an unknown key id). */
        enum {
                ANSWER_NODE_KEY,
                ANSWER_SCOPED,
                ANSWER_NONE
        } answer;
        uint8_t answer_key[AUTH_KEY_SIZE];
        Pod *scoped_pod;             /* counted against this pod's credentials (a reference), or NULL */
        struct ApiConn *prev, *next; /* unauthenticated list, under api_conn_lock */
} ApiConn;

static pthread_mutex_t api_conn_lock = PTHREAD_MUTEX_INITIALIZER;
static ApiConn *api_unauth_head, *api_unauth_tail; /* oldest first */

static bool addr_same(const struct sockaddr_storage *a, const struct sockaddr *b) {
        if (a->ss_family != b->sa_family)
                return false;
        if (b->sa_family == AF_INET)
                return ((const struct sockaddr_in *) a)->sin_addr.s_addr ==
                        ((const struct sockaddr_in *) b)->sin_addr.s_addr;
        if (b->sa_family == AF_INET6)
                return memcmp(&((const struct sockaddr_in6 *) a)->sin6_addr,
                              &((const struct sockaddr_in6 *) b)->sin6_addr,
                              sizeof(struct in6_addr)) == 0;
        return false;
}

static void unauth_unlink_locked(ApiConn *ac) {
        if (ac->prev)
                ac->prev->next = ac->next;
        else if (api_unauth_head == ac)
                api_unauth_head = ac->next;
        if (ac->next)
                ac->next->prev = ac->prev;
        else if (api_unauth_tail == ac)
                api_unauth_tail = ac->prev;
        ac->prev = ac->next = NULL;
}

/* Evict an unauthenticated connection: shut its socket down, so that MHD's thread for it sees
 * the end and closes it (MHD owns the fd; it is never closed here). */
static void unauth_evict_locked(ApiConn *ac) {
        if (ac->evicted)
                return;
        ac->evicted = true;
        if (ac->fd >= 0)
                (void) shutdown(ac->fd, SHUT_RDWR);
}

static unsigned api_unauth_connections; /* __atomic */
static unsigned api_scoped_connections; /* __atomic: connections held by scoped credentials */
/* The node key, for authenticating answers (set once by api_start before the daemon runs). */
static uint8_t api_answer_key[AUTH_KEY_SIZE];
static size_t api_preauth_bytes; /* __atomic: unsigned body bytes buffered */

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

/* A tool call whose body is larger than a JSON body (a big write) is read into a temp file,
 * but its handler then parses and decodes it whole, in memory, at several times its size: only
 * API_BIG_TOOL_BODIES_MAX run on the node at once and API_POD_BIG_TOOL_BODIES_MAX per pod, each
 * taken before one byte of the body is read, so that a pod's credentials cannot make the node
 * hold gigabytes with a few connections. */
#define API_BIG_TOOL_BODIES_MAX 4u
#define API_POD_BIG_TOOL_BODIES_MAX 2u
static unsigned api_big_tool_bodies; /* __atomic */

static bool big_body_hold(Req *q, Pod *p) {
        unsigned all = __atomic_add_fetch(&api_big_tool_bodies, 1, __ATOMIC_SEQ_CST);
        unsigned mine = __atomic_add_fetch(&p->api_big_bodies, 1, __ATOMIC_SEQ_CST);
        if (all > API_BIG_TOOL_BODIES_MAX || mine > API_POD_BIG_TOOL_BODIES_MAX) {
                __atomic_sub_fetch(&api_big_tool_bodies, 1, __ATOMIC_SEQ_CST);
                __atomic_sub_fetch(&p->api_big_bodies, 1, __ATOMIC_SEQ_CST);
                return false;
        }
        q->big_body_pod = pod_ref(p);
        return true;
}

static void big_body_release(Req *q) {
        if (!q->big_body_pod)
                return;
        __atomic_sub_fetch(&api_big_tool_bodies, 1, __ATOMIC_SEQ_CST);
        __atomic_sub_fetch(&q->big_body_pod->api_big_bodies, 1, __ATOMIC_SEQ_CST);
        q->big_body_pod = pod_unref(q->big_body_pod);
}

/* The connection authenticated: out of the unauthenticated count, normal idle timeout. */
static void conn_mark_authed(struct MHD_Connection *c) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        ApiConn *ac = ci ? ci->socket_context : NULL;
        if (!ac || ac->authed)
                return;
        pthread_mutex_lock(&api_conn_lock);
        ac->authed = true;
        unauth_unlink_locked(ac);
        pthread_mutex_unlock(&api_conn_lock);
        __atomic_sub_fetch(&api_unauth_connections, 1, __ATOMIC_SEQ_CST);
        (void) MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, API_AUTH_TIMEOUT_SEC);
}

/* ---- helpers ---------------------------------------------------------------------------- */

void api_answer_sign(
        struct MHD_Connection *c, struct MHD_Response *r, unsigned status, const void *body, size_t n) {
        char mac[AUTH_SIGNATURE_HEX_LEN + 1];
        const char *nonce = api_header(c, AUTH_HEADER_NONCE);
        /* Any well-formed nonce gets a MAC, also on refusals (a 401 from the real node is
         * distinguishable from one by a squatter); a malformed one gets none. */
        if (!nonce || !auth_nonce_is_valid(nonce))
                return;
        /* An answer to a request signed with a scoped credential is authenticated with that
         * credential's secret (its client does not hold the node key). The metrics server has
         * no socket context: the node key. */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        const ApiConn *ac = ci ? ci->socket_context : NULL;
        const uint8_t *key = api_answer_key;
        if (ac && ac->answer == ANSWER_NONE)
                return;
        if (ac && ac->answer == ANSWER_SCOPED)
                key = ac->answer_key;
        if (auth_sign_response(key, nonce, status, body, n, mac) >= 0)
                (void) MHD_add_response_header(r, AUTH_HEADER_RESPONSE_MAC, mac);
}

enum MHD_Result api_reply_raw(
        struct MHD_Connection *c, unsigned status, const char *ctype, const void *data, size_t n) {
        struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *) data, MHD_RESPMEM_MUST_COPY);
        enum MHD_Result ret;
        if (!r)
                return MHD_NO;
        (void) MHD_add_response_header(r, "Content-Type", ctype);
        (void) MHD_add_response_header(r, "Cache-Control", "no-store");
        api_answer_sign(c, r, status, data ?: "", data ? n : 0);
        ret = MHD_queue_response(c, status, r);
        MHD_destroy_response(r);
        return ret;
}

enum MHD_Result api_reply_json(struct MHD_Connection *c, unsigned status, json_t *j) {
        _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
        if (!text)
                return MHD_NO;
        return api_reply_raw(c, status, "application/json", text, strlen(text));
}

_printf_(4, 5) enum MHD_Result
        api_reply_error(struct MHD_Connection *c, unsigned status, const char *kind, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        msg = xvasprintf(fmt, ap);
        va_end(ap);
        _cleanup_json_ json_t *j = json_pack("{s:s,s:s}", "error", msg, "kind", kind);
        return api_reply_json(c, status, j);
}

static enum MHD_Result reply_unauthorized(struct MHD_Connection *c, const char *detail, const char *msg) {
        _cleanup_json_ json_t *j = json_pack(
                "{s:s,s:s,s:s}", "error", msg, "kind", "unauthorized", "detail", detail);
        metrics_auth_failure(detail);
        return api_reply_json(c, MHD_HTTP_UNAUTHORIZED, j);
}

const char *api_header(struct MHD_Connection *c, const char *name) {
        return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

uint64_t api_tool_body_cap(uint64_t max_body_bytes, uint64_t max_tool_body_bytes, uint64_t max_file_bytes) {
        uint64_t want = max_file_bytes > (UINT64_MAX - (UINT64_C(1) << 20)) / 2
                ? UINT64_MAX
                : 2 * max_file_bytes + (UINT64_C(1) << 20);
        return NUCLEUS_MAX(max_body_bytes, NUCLEUS_MIN(want, max_tool_body_bytes));
}

/* The body limit of a route (configured); unknown routes get the JSON limit (they end in 404
 * or 405 after authentication). */
static size_t body_cap_for(Node *n, const ApiRoute *r) {
        switch (r ? r->cap : API_CAP_JSON) {
        case API_CAP_NONE:
                return 1;
        case API_CAP_WORKSPACE:
                return n->config.max_workspace_bytes;
        case API_CAP_TOOL:
                /* Every pod's proxy runs with the default max_file_bytes (nodespec_configure
                 * sends no limits). The cap is the same for every pod, so an answer given
                 * before authentication says nothing about which pods exist. */
                return (size_t) NUCLEUS_MIN(
                        api_tool_body_cap(
                                n->config.max_body_bytes,
                                n->config.max_tool_body_bytes,
                                CONFIGURE_DEFAULT_MAX_FILE_BYTES),
                        (uint64_t) SIZE_MAX);
        case API_CAP_JSON:
        default:
                return n->config.max_body_bytes;
        }
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
                .timestamp = api_header(c, AUTH_HEADER_TIMESTAMP),
                .nonce = api_header(c, AUTH_HEADER_NONCE),
                .actor = api_header(c, AUTH_HEADER_ACTOR) ?: "",
                .signature = api_header(c, AUTH_HEADER_SIGNATURE),
                .body_sha256 = api_header(c, AUTH_HEADER_CONTENT_SHA256),
                .key_id = api_header(c, AUTH_HEADER_KEY_ID),
        };
}

static ApiConn *conn_of(struct MHD_Connection *c) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        return ci ? ci->socket_context : NULL;
}

bool api_client_gone(struct MHD_Connection *c) {
        const ApiConn *ac = conn_of(c);
        if (!ac || ac->fd < 0)
                return false;
        /* MHD's thread for this connection is in our handler: nobody else polls the socket. */
        struct pollfd pfd = { .fd = ac->fd, .events = POLLRDHUP };
        return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* X-Nucleus-Key-Id names the credential whose secret must have signed the request: look it up
 * (its pod must still be in the table) first thing, so that every answer to the request, an
 * early 413 included, is authenticated with that secret; an unknown one gets answers without a
 * MAC (and 401 unknown_key once the headers are checked: request_check_key). */
static void request_lookup_key(struct MHD_Connection *c, Node *n, Req *q, const char *key_id) {
        ApiConn *ac = conn_of(c);
        if (!key_id)
                return;
        if (!auth_key_id_is_valid(key_id) ||
            pod_credential_find(n, key_id, &q->cred_pod, q->key, &q->cred_scope) < 0) {
                if (ac)
                        ac->answer = ANSWER_NONE;
                return;
        }
        q->scoped = true;
        if (ac) {
                memcpy(ac->answer_key, q->key, sizeof ac->answer_key);
                ac->answer = ANSWER_SCOPED;
        }
}

static bool request_check_key(struct MHD_Connection *c, Req *q, const char *key_id, enum MHD_Result *ret) {
        if (!key_id || q->scoped)
                return true;
        *ret = reply_unauthorized(
                c,
                "unknown_key",
                "X-Nucleus-Key-Id names no credential of this node (never minted, or its pod's record "
                "was removed)");
        return false;
}

/* Count this connection against the credential's pod (once per connection, released when it
 * closes). False when that pod's, or all scoped credentials', share of connections is taken. */
static bool conn_hold_scoped(struct MHD_Connection *c, Pod *p) {
        ApiConn *ac = conn_of(c);
        if (!ac || ac->scoped_pod)
                return true;
        unsigned pod_n = __atomic_add_fetch(&p->api_connections, 1, __ATOMIC_SEQ_CST);
        unsigned all_n = __atomic_add_fetch(&api_scoped_connections, 1, __ATOMIC_SEQ_CST);
        if (pod_n > API_POD_CONNECTIONS_MAX || all_n > API_SCOPED_CONNECTIONS_MAX) {
                __atomic_sub_fetch(&p->api_connections, 1, __ATOMIC_SEQ_CST);
                __atomic_sub_fetch(&api_scoped_connections, 1, __ATOMIC_SEQ_CST);
                return false;
        }
        ac->scoped_pod = pod_ref(p);
        return true;
}

static void conn_release_scoped(ApiConn *ac) {
        if (!ac->scoped_pod)
                return;
        __atomic_sub_fetch(&ac->scoped_pod->api_connections, 1, __ATOMIC_SEQ_CST);
        __atomic_sub_fetch(&api_scoped_connections, 1, __ATOMIC_SEQ_CST);
        ac->scoped_pod = pod_unref(ac->scoped_pod);
}

/* 503 capacity, and the connection closed after it: it holds no slot while it waits. */
static enum MHD_Result reply_capacity_close(struct MHD_Connection *c) {
        _cleanup_free_ char *msg = xasprintf(
                "too many connections signed with scoped credentials (at most %u per pod, %u for all "
                "pods); close one and retry",
                API_POD_CONNECTIONS_MAX,
                API_SCOPED_CONNECTIONS_MAX);
        _cleanup_json_ json_t *j = json_pack("{s:s,s:s}", "error", msg, "kind", "capacity");
        _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
        if (!text)
                return MHD_NO;
        size_t n = strlen(text);
        struct MHD_Response *r = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_COPY);
        if (!r)
                return MHD_NO;
        (void) MHD_add_response_header(r, "Content-Type", "application/json");
        (void) MHD_add_response_header(r, "Cache-Control", "no-store");
        (void) MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
        api_answer_sign(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, text, n);
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_SERVICE_UNAVAILABLE, r);
        MHD_destroy_response(r);
        return ret;
}

/* The one scope check (docs/api.md "Scoped credentials"), once the signature verified: the
 * route table's scope column against who signed. Returns false with 403 queued. */
static bool request_authorize(struct MHD_Connection *c, Req *q, enum MHD_Result *ret) {
        ApiCaller who = { .scoped = q->scoped };
        if (q->scoped) {
                who.scope = q->cred_scope;
                who.pod_id = q->cred_pod->id;
                who.pod_ended = pod_has_ended(q->cred_pod);
        }
        ApiScopeDecision d = api_scope_decide(q->match.route, q->match.pod_id, &who);
        if (d == API_SCOPE_ALLOW && q->scoped && !conn_hold_scoped(c, q->cred_pod)) {
                *ret = reply_capacity_close(c);
                return false;
        }
        if (d == API_SCOPE_ALLOW)
                return true;
        _cleanup_json_ json_t *j = json_pack(
                "{s:s,s:s,s:s}",
                "error",
                api_scope_decision_message(d),
                "kind",
                "insufficient_capability",
                "detail",
                api_scope_decision_detail(d));
        *ret = api_reply_json(c, MHD_HTTP_FORBIDDEN, j);
        return false;
}

/* Does the request need no signature? (Also for a wrong method on such a path: 405 unsigned.) */
static bool req_public(const Req *q) {
        const ApiRoute *r = q->match.route ?: q->match.any;
        return r && r->scope == API_SCOPE_PUBLIC;
}

/* A workspace upload the node cannot take, refused from its Content-Length before one byte of
 * it is read, naming the limit and where it is set: the node's cap, or the pod's scratch disk
 * (the tar unpacks onto it and the baseline pack takes about as much again). Returns true when
 * an answer was queued (*ret). */
static bool workspace_upload_refused(
        struct MHD_Connection *c, Node *n, const ApiMatch *m, uint64_t len, enum MHD_Result *ret) {
        uint64_t cap = n->config.max_workspace_bytes;
        if (len > cap) {
                *ret = api_reply_error(
                        c,
                        MHD_HTTP_CONTENT_TOO_LARGE,
                        "too_large",
                        "the workspace upload of %llu bytes exceeds this node's upload cap of %llu bytes "
                        "([node] max_upload_bytes in node.toml)",
                        (unsigned long long) len,
                        (unsigned long long) cap);
                return true;
        }
        if (!m->pod_id || !pod_id_is_uuid(m->pod_id))
                return false;
        _cleanup_(pod_unrefp) Pod *p = pod_find(n, m->pod_id);
        /* The local driver has no scratch disk: the workspace is a host directory. */
        if (!p || p->scratch_mib == 0 || p->driver == VMM_DRIVER_LOCAL)
                return false;
        uint64_t scratch = p->scratch_mib * UINT64_C(1048576);
        if (len > scratch / 2) {
                *ret = api_reply_error(
                        c,
                        MHD_HTTP_CONTENT_TOO_LARGE,
                        "too_large",
                        "the workspace upload of %llu bytes does not fit the pod's scratch disk of %llu MiB "
                        "(the files and their baseline need about twice the upload); give the pod a larger "
                        "disk (resources.scratch_mib, nucleus run --scratch-mib)",
                        (unsigned long long) len,
                        (unsigned long long) p->scratch_mib);
                return true;
        }
        return false;
}

/* What a 413 adds to its limit: where the limit comes from. */
static const char *body_cap_hint(const Req *q, bool declared) {
        if (!declared)
                return " (without X-Nucleus-Content-SHA256)";
        if (q->match.route && q->match.route->cap == API_CAP_TOOL)
                return " for this pod's tool calls (twice its max_file_bytes plus 1 MiB, at most [node] "
                       "max_tool_body_bytes, at least [node] max_body_bytes)";
        return "";
}

/* First call of a request (headers only, no body byte read yet): every check that does not
 * need the body. Returns true to go on; false when an answer was queued (*ret). */
static bool request_begin(struct MHD_Connection *c, Node *n, Req *q, const char *method, enum MHD_Result *ret) {
        const char *cl = api_header(c, "Content-Length");
        const char *missing = NULL;
        uint64_t len = 0;
        AuthVerifyResult vr;

        q->started = true;
        (void) api_route_match(method, q->path, &q->match);
        bool public = req_public(q);
        AuthRequest ar = auth_request_of(c, method, q->uri);
        bool declared = !public && ar.body_sha256;
        if (!public)
                request_lookup_key(c, n, q, ar.key_id);
        q->cap = body_cap_for(n, q->match.route) ?: 1;
        if (!declared)
                q->cap = NUCLEUS_MIN(q->cap, (size_t) API_PREAUTH_BODY_MAX);
        if (public)
                q->cap = 1; /* no body */
        if (cl && safe_atou64(cl, &len) >= 0 && q->match.route && q->match.route->cap == API_CAP_WORKSPACE &&
            workspace_upload_refused(c, n, &q->match, len, ret)) {
                q->rejected = true;
                return false;
        }
        if (cl && (safe_atou64(cl, &len) < 0 || len > q->cap)) {
                q->rejected = true;
                *ret = api_reply_error(
                        c,
                        MHD_HTTP_CONTENT_TOO_LARGE,
                        "too_large",
                        "request body of %s bytes exceeds the limit of %zu bytes%s",
                        cl,
                        q->cap,
                        body_cap_hint(q, declared || public));
                return false;
        }
        if (public)
                return true;

        /* Everything about the headers, then (with a declared digest) the MAC itself, with the
         * node key or the secret of the credential the request names. */
        vr = auth_precheck_request(&ar, (int64_t) time(NULL), &missing);
        if (vr == AUTH_VERIFY_OK && !request_check_key(c, q, ar.key_id, ret)) {
                q->rejected = true;
                return false;
        }
        if (vr == AUTH_VERIFY_OK && declared)
                vr = auth_verify_request(
                        q->scoped ? q->key : n->node_key, &ar, n->nonces, (int64_t) time(NULL), &missing);
        if (vr != AUTH_VERIFY_OK) {
                q->rejected = true;
                *ret = reply_auth_failure(c, vr, missing);
                return false;
        }
        /* A scoped credential outside its scope is refused before any body byte is read. */
        if (declared && !request_authorize(c, q, ret)) {
                q->rejected = true;
                return false;
        }
        if (declared) {
                q->authed = true;
                memcpy(q->declared_sha256, ar.body_sha256, sizeof(q->declared_sha256));
                crypto_hash_sha256_init(&q->hash);
                conn_mark_authed(c);
                /* A tool call larger than a JSON body (a big write) waits for its handler in an
                 * unlinked temp file too, not in memory, however slowly it arrives. */
                bool to_file = q->match.route &&
                        ((q->match.route->flags & API_STREAM) ||
                         (q->match.route->cap == API_CAP_TOOL && (!cl || len > n->config.max_body_bytes)));
                if (to_file && !(q->match.route->flags & API_STREAM) && q->cap > n->config.max_body_bytes) {
                        _cleanup_(pod_unrefp) Pod *p = q->match.pod_id ? pod_find(n, q->match.pod_id) : NULL;
                        if (p && !big_body_hold(q, p)) {
                                q->rejected = true;
                                *ret = api_reply_error(
                                        c,
                                        MHD_HTTP_SERVICE_UNAVAILABLE,
                                        "capacity",
                                        "too many large tool calls in flight (at most %u per pod, %u on the "
                                        "node); retry when one has answered",
                                        API_POD_BIG_TOOL_BODIES_MAX,
                                        API_BIG_TOOL_BODIES_MAX);
                                return false;
                        }
                }
                if (to_file) {
                        q->body_fd = open(n->config.state_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
                        if (q->body_fd < 0) {
                                q->rejected = true;
                                *ret = api_reply_error(
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
                *ret = api_reply_error(
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
                *ret = api_reply_error(
                        c,
                        MHD_HTTP_CONTENT_TOO_LARGE,
                        "too_large",
                        "request body exceeds the limit of %zu bytes%s",
                        q->cap,
                        body_cap_hint(q, q->authed));
                return false;
        }
        if (!q->authed && q->n_body + n > q->preauth_reserved &&
            !preauth_reserve(q, q->n_body + n - q->preauth_reserved)) {
                q->rejected = true;
                *ret = api_reply_error(
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
                        *ret = api_reply_error(
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
static bool request_complete(struct MHD_Connection *c, Node *n, Req *q, const char *method, enum MHD_Result *ret) {
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
                                *ret = api_reply_error(
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
                q->scoped ? q->key : n->node_key, &ar, n->nonces, (int64_t) time(NULL), &missing);
        preauth_release(q);
        if (vr != AUTH_VERIFY_OK) {
                *ret = reply_auth_failure(c, vr, missing);
                return false;
        }
        conn_mark_authed(c);
        return request_authorize(c, q, ret);
}

enum MHD_Result api_h_health(ApiCall *a) {
        return api_reply_raw(a->c, MHD_HTTP_OK, "application/json", "{\"status\":\"ok\"}", 15);
}

/* A complete, authenticated request (or a public one): route it through the table. */
static enum MHD_Result api_dispatch(struct MHD_Connection *c, Node *n, Req *q, const char *method) {
        const ApiRoute *r = q->match.route;
        _cleanup_(pod_unrefp) Pod *p = NULL;

        if (!q->match.any)
                return api_reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "no route %s %s", method, q->path);
        if (q->match.pod_id) {
                if (!pod_id_is_uuid(q->match.pod_id))
                        return api_reply_error(
                                c, MHD_HTTP_NOT_FOUND, "not_found", "no such pod (ids are lower-case UUIDs)");
                p = pod_find(n, q->match.pod_id);
                if (!p)
                        return api_reply_error(
                                c, MHD_HTTP_NOT_FOUND, "not_found", "no pod %s", q->match.pod_id);
        }
        if (!r) {
                _cleanup_free_ char *allowed = api_route_methods(q->match.any);
                return api_reply_error(
                        c,
                        MHD_HTTP_METHOD_NOT_ALLOWED,
                        "invalid_request",
                        "use %s on %s",
                        allowed,
                        q->match.any->pattern);
        }
        if (q->query && !(r->flags & API_QUERY))
                return api_reply_error(
                        c, MHD_HTTP_BAD_REQUEST, "invalid_request", "this route takes no query string");

        const char *actor_h = api_header(c, AUTH_HEADER_ACTOR);
        const char *key_id = q->scoped ? api_header(c, AUTH_HEADER_KEY_ID) : NULL;
        /* The audit log wants a non-empty actor; the signature covered whatever was sent. A
         * request signed with a credential says which (its id, never its secret). */
        _cleanup_free_ char *actor = key_id
                ? xasprintf("%s (credential %s)", isempty(actor_h) ? "unknown" : actor_h, key_id)
                : NULL;
        ApiCall call = {
                .c = c,
                .node = n,
                .method = method,
                .actor = actor
                        ?: isempty(actor_h) ? "unknown"
                                            : actor_h,
                .key_id = key_id,
                .query = q->query,
                .body = q->body,
                .n_body = q->n_body,
                .pod = p,
        };
        for (size_t i = 0; i < API_ARGS_MAX; i++)
                call.args[i] = q->match.args[i];
        return r->handler(&call);
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
        ApiServer *s = cls;
        Req *q = *con_cls;
        enum MHD_Result ret = MHD_NO;

        if (!q) /* the URI log callback always runs first; be defensive */
                return MHD_NO;
        if (q->rejected) {
                *upload_data_size = 0; /* discard the rest of the body */
                return MHD_YES;
        }
        if (!q->started) {
                /* First call: headers only. Refuse before reading any body byte. */
                if (!request_begin(c, s->node, q, method, &ret))
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
        if (!req_public(q) && !request_complete(c, s->node, q, method, &ret))
                return ret;
        return api_dispatch(c, s->node, q, method);
}

static void *api_uri_log(void *cls, const char *uri, struct MHD_Connection *c) {
        Req *q = xnew0(Req, 1);
        q->uri = xstrdup(uri ?: "");
        q->body_fd = -EBADF;
        const char *query = strchr(q->uri, '?');
        q->path = query ? xstrndup(q->uri, (size_t) (query - q->uri)) : xstrdup(q->uri);
        q->query = query ? query + 1 : NULL;
        /* Until it authenticates, a connection gets a short idle timeout. */
        ApiConn *ac = conn_of(c);
        if (ac) {
                /* Answers are authenticated with the node key until a key id says otherwise. */
                ac->answer = ANSWER_NODE_KEY;
                explicit_bzero_safe(ac->answer_key, sizeof ac->answer_key);
        }
        if (ac && !ac->authed)
                (void) MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, API_UNAUTH_TIMEOUT_SEC);
        return q;
}

static void api_notify_connection(
        void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode toe) {
        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                ApiConn *ac = xnew0(ApiConn, 1);
                const union MHD_ConnectionInfo *fi = MHD_get_connection_info(
                        c, MHD_CONNECTION_INFO_CONNECTION_FD);
                const union MHD_ConnectionInfo *ai = MHD_get_connection_info(
                        c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
                ac->fd = fi ? fi->connect_fd : -1;
                if (ai && ai->client_addr) {
                        socklen_t len = ai->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                               : sizeof(struct sockaddr_in);
                        memcpy(&ac->addr, ai->client_addr, len);
                }
                ac->accepted = now_usec(CLOCK_MONOTONIC);
                pthread_mutex_lock(&api_conn_lock);
                ac->prev = api_unauth_tail;
                if (api_unauth_tail)
                        api_unauth_tail->next = ac;
                else
                        api_unauth_head = ac;
                api_unauth_tail = ac;
                pthread_mutex_unlock(&api_conn_lock);
                *socket_context = ac;
                __atomic_add_fetch(&api_unauth_connections, 1, __ATOMIC_SEQ_CST);
                return;
        }
        ApiConn *ac = *socket_context;
        if (!ac)
                return;
        pthread_mutex_lock(&api_conn_lock);
        if (!ac->authed)
                unauth_unlink_locked(ac);
        pthread_mutex_unlock(&api_conn_lock);
        if (!ac->authed)
                __atomic_sub_fetch(&api_unauth_connections, 1, __ATOMIC_SEQ_CST);
        conn_release_scoped(ac);
        explicit_bzero_safe(ac->answer_key, sizeof ac->answer_key);
        free(ac);
        *socket_context = NULL;
}

/* Admission (docs/api.md "Before authentication"): an address may hold at most
 * API_UNAUTH_PER_ADDR unauthenticated connections (more are refused at accept); connections
 * that have not authenticated a request API_UNAUTH_DEADLINE_SEC after accept are evicted,
 * however slowly they trickle bytes; and when API_UNAUTH_CONNECTIONS_MAX are unauthenticated,
 * the oldest is evicted to make room, so idle connections cannot lock clients out. */
static enum MHD_Result api_accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        unsigned same = 0, live = 0;
        pthread_mutex_lock(&api_conn_lock);
        for (ApiConn *ac = api_unauth_head; ac; ac = ac->next) {
                if (!ac->evicted && now - ac->accepted > API_UNAUTH_DEADLINE_SEC * USEC_PER_SEC)
                        unauth_evict_locked(ac);
                if (ac->evicted)
                        continue;
                live++;
                if (addr && addr_same(&ac->addr, addr))
                        same++;
        }
        if (same >= API_UNAUTH_PER_ADDR) {
                pthread_mutex_unlock(&api_conn_lock);
                return MHD_NO;
        }
        if (live >= API_UNAUTH_CONNECTIONS_MAX)
                for (ApiConn *ac = api_unauth_head; ac; ac = ac->next)
                        if (!ac->evicted) {
                                unauth_evict_locked(ac);
                                break;
                        }
        pthread_mutex_unlock(&api_conn_lock);
        /* Evicted connections leave the count once MHD has closed them; allow some overlap. */
        return __atomic_load_n(&api_unauth_connections, __ATOMIC_SEQ_CST) >= 2 * API_UNAUTH_CONNECTIONS_MAX
                ? MHD_NO
                : MHD_YES;
}

static void api_completed(
        void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
        Req *q = *con_cls;
        if (!q)
                return;
        free(q->uri);
        free(q->path);
        api_match_done(&q->match);
        if (q->mapped)
                (void) munmap(q->body, q->n_body);
        else
                free(q->body);
        safe_close(q->body_fd);
        preauth_release(q);
        big_body_release(q);
        explicit_bzero_safe(q->key, sizeof q->key);
        pod_unref(q->cred_pod);
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
                return api_reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "only GET /metrics here");
        _cleanup_free_ char *text = metrics_render(s->node);
        return api_reply_raw(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
}

/* ---- lifecycle ------------------------------------------------------------------------- */

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
        if (!metrics)
                memcpy(api_answer_key, n->node_key, sizeof api_answer_key);
        /* MHD_USE_POLL: the listening and connection threads poll(), never select(), which
         * cannot watch a descriptor above 1,023 (the node raises its open-files limit). */
        unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                MHD_USE_ERROR_LOG;
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
                        /* From accept, not from the request line: a connection that sends
                         * nothing is gone after this (authenticated ones get longer). */
                        MHD_OPTION_CONNECTION_TIMEOUT,
                        API_UNAUTH_TIMEOUT_SEC,
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