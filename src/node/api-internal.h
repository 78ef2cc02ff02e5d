/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the API files share: the route table's types (api-routes.c), the call a handler gets,
 * and the answer helpers (api.c). The server, authentication and the limits before
 * authentication live in api.c; handlers in api-pods.c, api-tools.c and api-approvals.c.
 */
#pragma once
#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

#include "hash-util.h"
#include "node.h"
#include "pod.h"

typedef struct ApiRoute ApiRoute;

/* Who may call a route (docs/api.md "Scoped credentials"): the one column that
 * api_scope_decide reads for every signed request. */
typedef enum ApiScope {
        API_SCOPE_PUBLIC, /* no signature at all (GET /v1/health only) */
        API_SCOPE_NODE,   /* the node key only: create, list, delete, workspace, approvals, ... */
        API_SCOPE_POD,    /* the node key, or a POD credential of the pod named by {id}: tools,
                           * status, events, lease, its approval queue */
        API_SCOPE_RUN,    /* only a RUN credential of the pod named by {id} (budget reserve/settle) */
        _API_SCOPE_MAX,
} ApiScope;

/* Who signed a request: the node key, or a credential of one pod. */
typedef struct ApiCaller {
        bool scoped;        /* false: the node key */
        PodCredScope scope; /* scoped: POD_CRED_POD or POD_CRED_RUN */
        const char *pod_id; /* scoped: the pod the credential belongs to */
        bool pod_ended;     /* scoped: that pod has ended (or is ending) */
} ApiCaller;

typedef enum ApiScopeDecision {
        API_SCOPE_ALLOW,
        API_SCOPE_DENY_NODE_ONLY, /* a NODE route signed with a credential */
        API_SCOPE_DENY_RUN_ONLY,  /* a RUN route signed with anything but a RUN credential */
        API_SCOPE_DENY_POD_CRED,  /* a POD route signed with a RUN credential */
        API_SCOPE_DENY_OTHER_POD, /* a credential of another pod (or a route without {id}) */
        API_SCOPE_DENY_ENDED,     /* the credential's pod has ended */
        _API_SCOPE_DECISION_MAX,
} ApiScopeDecision;

/* The scope decision for a signed request: route's scope column, the {id} of its path (NULL
 * when none), the caller. Pure (unit-tested); api.c calls it once per request, right after the
 * signature verified. */
ApiScopeDecision api_scope_decide(const ApiRoute *route, const char *path_pod_id, const ApiCaller *who);
/* Stable short name ("node_key_required", ...) and a sentence for a refusal. */
const char *api_scope_decision_detail(ApiScopeDecision d);
const char *api_scope_decision_message(ApiScopeDecision d);

/* Which configured limit caps the request body (checked from Content-Length before any body
 * byte is read, and again while it streams). */
typedef enum ApiBodyCap {
        API_CAP_NONE,      /* no body expected: 1 byte at most */
        API_CAP_JSON,      /* [api] max_body_bytes: specs, tool arguments, small JSON */
        API_CAP_WORKSPACE, /* [api] max_workspace_bytes: workspace tar uploads */
        API_CAP_TOOL,      /* tool calls: api_tool_body_cap() (a write's content may be large) */
} ApiBodyCap;

/* The body cap of a pod's tool calls with a declared X-Nucleus-Content-SHA256: room for a
 * write of the pod's max_file_bytes as JSON (2 x max_file_bytes + 1 MiB: escaped text or
 * base64 with the other arguments), at most [node] max_tool_body_bytes, and never below
 * max_body_bytes. Pure. */
uint64_t api_tool_body_cap(uint64_t max_body_bytes, uint64_t max_tool_body_bytes, uint64_t max_file_bytes);

/* Streamed writes (api-tools.c) in flight on the node at once; more answer 503 capacity. */
#define API_WRITE_STREAMS_MAX 8u
/* The bytes of a write's content: the "content" string or the decoded "content_base64"
 * (exactly one). Returns 0 with *ret pointing into args (content) or at *ret_owned (the
 * decoded base64, malloc'd; NULL for content) and *ret_n; or -EINVAL with a malloc'd *reterr. */
int api_write_content(const json_t *args, const uint8_t **ret, size_t *ret_n, uint8_t **ret_owned, char **reterr);
/* SHA-256 (hex) of json_dump_canonical(j) (what an audit record's args_sha256 is), computed
 * as the text is produced: a write's arguments hold its whole content, and their text is then
 * never in memory at once. */
void api_args_sha256(const json_t *j, char ret[static 65]);
/* A write's arguments as streamed to the proxy: args without content/content_base64, plus
 * "content_bytes" (n) and "content_sha256" (of the n bytes). New reference. */
json_t *api_write_wire_args(const json_t *args, const void *content, size_t n);

/* Route flags. */
enum {
        API_STREAM = 1u << 0, /* an authenticated body streams into an unlinked temp file in the
                               * state dir (mmap'd for the handler), not into memory */
        API_QUERY = 1u << 1,  /* takes a query string; every other route refuses one (400) */
};

#define API_ARGS_MAX 4

/* One request, as a handler sees it: authenticated (unless public), its route matched. */
typedef struct ApiCall {
        struct MHD_Connection *c;
        Node *node;
        const char *method;
        const char *actor; /* X-Nucleus-Actor as signed; "unknown" when empty */
        const char *query; /* after '?', or NULL */
        const char *body;  /* the verified body (NUL-terminated unless streamed), or NULL */
        size_t n_body;
        Pod *pod;                       /* the pod named by {id} (a reference the dispatcher owns) */
        const char *key_id;             /* the scoped credential that signed it, or NULL (node key) */
        const char *args[API_ARGS_MAX]; /* the other {name} segments, in pattern order */
} ApiCall;

typedef enum MHD_Result (*ApiHandler)(ApiCall *a);

struct ApiRoute {
        const char *method;  /* "GET", "POST", "PUT", "DELETE" */
        const char *pattern; /* segments; "{id}" is a pod id, any other "{name}" one segment */
        ApiHandler handler;
        ApiBodyCap cap;
        unsigned flags; /* API_STREAM, API_QUERY */
        ApiScope scope;
};

/* A request path matched against the table. */
typedef struct ApiMatch {
        const ApiRoute *route; /* the route for this method and path, or NULL */
        const ApiRoute *any;   /* the first route whose pattern matches, with any method, or NULL */
        char *pod_id;          /* the {id} segment (not yet checked), or NULL */
        char *args[API_ARGS_MAX];
} ApiMatch;

/* Match a raw request path (no query). Returns true when some pattern matches. */
bool api_route_match(const char *method, const char *path, ApiMatch *ret);
void api_match_done(ApiMatch *m);
/* "GET or POST": the methods the table has for the pattern of r (malloc'd). */
char *api_route_methods(const ApiRoute *r);

/* ---- answers (api.c) ---- */
/* Add X-Nucleus-Response-MAC (sign.h, docs/api.md) to an answer: over the body, or for a
 * streamed answer body == NULL, n == SIZE_MAX. Every answer of the API goes through this. */
void api_answer_sign(
        struct MHD_Connection *c, struct MHD_Response *r, unsigned status, const void *body, size_t n);
enum MHD_Result api_reply_raw(
        struct MHD_Connection *c, unsigned status, const char *ctype, const void *data, size_t n);
enum MHD_Result api_reply_json(struct MHD_Connection *c, unsigned status, json_t *j);
_printf_(4, 5) enum MHD_Result
        api_reply_error(struct MHD_Connection *c, unsigned status, const char *kind, const char *fmt, ...);
const char *api_header(struct MHD_Connection *c, const char *name);
/* Has the client of this connection gone (closed or reset its end) while its request is being
 * handled? For long handlers that can stop between steps. Never reads from the socket. */
bool api_client_gone(struct MHD_Connection *c);

/* ---- calls into a pod (api-tools.c) ---- */
/* Running and within its deadline? Otherwise queue the answer and return false. */
bool api_pod_check_callable(struct MHD_Connection *c, Pod *p, enum MHD_Result *ret);
usec_t api_pod_call_timeout(Pod *p);
enum MHD_Result api_reply_channel_error(struct MHD_Connection *c, Pod *p, int r);
/* Decision ("allow", "deny", "error") and kind for the audit log from a proxy answer. */
const char *api_answer_decision(json_t *ans, const char **ret_kind);
unsigned api_answer_status(json_t *ans);
/* Fail closed (docs/audit.md): write the "request" record of a call (args, or a digest of an
 * upload, and the shown arguments: detail, from audit_detail_for_call) before anything
 * reaches the guest. Returns 0 and the
 * record's seq, or queues 503 audit_unavailable in *ret (and counts it) and returns <0:
 * the caller must then not make the call. */
int api_audit_request(
        struct MHD_Connection *c,
        Pod *p,
        const char *actor,
        const char *audit_op,
        const json_t *args,
        const char *args_sha256,
        const json_t *detail,
        uint64_t *ret_seq,
        enum MHD_Result *ret);
/* Add the weak-isolation warning to an answer of the local driver. */
void api_answer_mark(Pod *p, json_t *ans);
#define API_WEAK_WARNING \
        "driver local: the proxy runs on the host in bubblewrap; weaker isolation than a microVM"

/* ---- handlers ---- */
/* api.c */
enum MHD_Result api_h_health(ApiCall *a);
/* api-pods.c */
enum MHD_Result api_h_create(ApiCall *a);
enum MHD_Result api_h_list(ApiCall *a);
enum MHD_Result api_h_pool(ApiCall *a);
enum MHD_Result api_h_get(ApiCall *a);
enum MHD_Result api_h_delete(ApiCall *a);
enum MHD_Result api_h_logs(ApiCall *a);
enum MHD_Result api_h_audit(ApiCall *a);
enum MHD_Result api_h_events(ApiCall *a);
enum MHD_Result api_h_lease(ApiCall *a);
enum MHD_Result api_h_remove(ApiCall *a);
enum MHD_Result api_h_prune(ApiCall *a);
enum MHD_Result api_h_credentials(ApiCall *a);
/* api-budget.c */
enum MHD_Result api_h_budget_reserve(ApiCall *a);
enum MHD_Result api_h_budget_settle(ApiCall *a);
/* api-tools.c */
enum MHD_Result api_h_tool(ApiCall *a);
enum MHD_Result api_h_workspace_put(ApiCall *a);
enum MHD_Result api_h_workspace_patch(ApiCall *a);
enum MHD_Result api_h_setup(ApiCall *a);
/* api-snapshot.c */
enum MHD_Result api_h_snapshot(ApiCall *a);
enum MHD_Result api_h_snapshots(ApiCall *a);
enum MHD_Result api_h_snapshot_delete(ApiCall *a);
enum MHD_Result api_h_fork(ApiCall *a);
/* api-approvals.c */
enum MHD_Result api_h_approval(ApiCall *a);
enum MHD_Result api_h_approvals_all(ApiCall *a);
enum MHD_Result api_h_approvers(ApiCall *a);
enum MHD_Result api_h_pod_approvals(ApiCall *a);
enum MHD_Result api_h_pod_approval_get(ApiCall *a);
enum MHD_Result api_h_pod_approval_decide(ApiCall *a);
enum MHD_Result api_h_pod_approval_withdraw(ApiCall *a);
/* The approvals queue (api-approvals.c, docs/approvals.md). A tool call's query
 * "approval=hold[&approval_ttl=N]": *ret_ttl = N (0 = default) when holding, -1 when not;
 * -EINVAL with *reterr for anything else. */
int api_approval_parse_hold(const char *query, int64_t *ret_ttl, char **reterr);
/* The proxy answered approval_required for tool(args): record a pending approval from its
 * answer, audit and publish it, and add it to answer as "approval". -EBUSY at the cap. */
int api_approval_hold(Pod *p, const char *actor, const char *tool, json_t *args, json_t *answer, int64_t ttl);
