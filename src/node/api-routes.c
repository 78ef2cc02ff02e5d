/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node's routes: ONE table, read by every step that needs to know a route (the body cap and
 * temp-file streaming at header time, authentication, dispatch). Adding a route is one row
 * here and a handler in the file of its area (prototype in api-internal.h).
 *
 * Columns (docs/api.md "Routes"):
 *   method   HTTP method, exact.
 *   pattern  path segments as sent (never decoded). "{id}" matches a lower-case UUID and is
 *            resolved to the pod before the handler runs (404 otherwise); any other "{name}"
 *            matches one non-empty segment and reaches the handler in ApiCall.args[], in order.
 *   handler  enum MHD_Result h(ApiCall *a).
 *   cap      which limit caps the body: API_CAP_NONE, API_CAP_JSON (max_body_bytes),
 *            API_CAP_WORKSPACE (max_workspace_bytes), API_CAP_TOOL (api_tool_body_cap: the
 *            pod's max_file_bytes as JSON within max_tool_body_bytes; a body over
 *            max_body_bytes streams into a temp file). An unsigned-digest body is capped lower
 *            still (api.c, "Before authentication").
 *   flags    API_STREAM: the authenticated body streams into an unlinked temp file instead of
 *            memory (uploads); API_QUERY: the route takes a query string (others answer 400).
 *   scope    who may call it: API_SCOPE_PUBLIC (no signature), API_SCOPE_NODE (node key only),
 *            API_SCOPE_POD (also a POD credential of that pod), API_SCOPE_RUN (only a RUN
 *            credential of that pod). api_scope_decide below is the one decision.
 *
 * A path no pattern matches is 404; a path that matches with another method is 405.
 */
#include <string.h>

#include "alloc-util.h"
#include "api-internal.h"
#include "id-util.h"
#include "string-util.h"

/* clang-format off */
static const ApiRoute api_routes[] = {
        /* method   pattern                             handler                   cap                flags       scope */
        { "GET",    "/v1/health",                       api_h_health,             API_CAP_NONE,      0,          API_SCOPE_PUBLIC },
        { "POST",   "/v1/pods",                         api_h_create,             API_CAP_JSON,      0,          API_SCOPE_NODE },
        { "GET",    "/v1/pods",                         api_h_list,               API_CAP_JSON,      API_QUERY,  API_SCOPE_NODE },
        { "GET",    "/v1/pool",                         api_h_pool,               API_CAP_JSON,      0,          API_SCOPE_NODE },
        { "POST",   "/v1/pods/prune",                   api_h_prune,              API_CAP_JSON,      0,          API_SCOPE_NODE },
        { "GET",    "/v1/pods/{id}",                    api_h_get,                API_CAP_JSON,      0,          API_SCOPE_POD },
        { "DELETE", "/v1/pods/{id}",                    api_h_delete,             API_CAP_JSON,      0,          API_SCOPE_NODE },
        { "POST",   "/v1/pods/{id}/cancel",             api_h_delete,             API_CAP_JSON,      0,          API_SCOPE_NODE },
        { "POST",   "/v1/pods/{id}/remove",             api_h_remove,             API_CAP_JSON,      0,          API_SCOPE_NODE },
        { "POST",   "/v1/pods/{id}/lease",              api_h_lease,              API_CAP_JSON,      0,          API_SCOPE_POD },
        { "POST",   "/v1/pods/{id}/credentials",        api_h_credentials,        API_CAP_JSON,      0,          API_SCOPE_NODE },
        { "POST",   "/v1/pods/{id}/budget/reserve",     api_h_budget_reserve,     API_CAP_JSON,      0,          API_SCOPE_RUN },
        { "POST",   "/v1/pods/{id}/budget/settle",      api_h_budget_settle,      API_CAP_JSON,      0,          API_SCOPE_RUN },
        { "POST",   "/v1/pods/{id}/snapshot",           api_h_snapshot,           API_CAP_JSON,      0,          API_SCOPE_NODE },
        { "GET",    "/v1/pods/{id}/snapshots",          api_h_snapshots,          API_CAP_NONE,      0,          API_SCOPE_NODE },
        { "POST",   "/v1/pods/{id}/fork",               api_h_fork,               API_CAP_JSON,      0,          API_SCOPE_NODE },
        { "DELETE", "/v1/snapshots/{sid}",              api_h_snapshot_delete,    API_CAP_NONE,      0,          API_SCOPE_NODE },
        { "GET",    "/v1/pods/{id}/logs",               api_h_logs,               API_CAP_JSON,      API_QUERY,  API_SCOPE_NODE },
        { "GET",    "/v1/pods/{id}/audit",              api_h_audit,              API_CAP_JSON,      0,          API_SCOPE_NODE },
        { "GET",    "/v1/pods/{id}/events",             api_h_events,             API_CAP_JSON,      0,          API_SCOPE_POD },
        { "PUT",    "/v1/pods/{id}/workspace",          api_h_workspace_put,      API_CAP_WORKSPACE, API_STREAM, API_SCOPE_NODE },
        { "GET",    "/v1/pods/{id}/workspace/patch",    api_h_workspace_patch,    API_CAP_JSON,      0,          API_SCOPE_NODE },
        { "POST",   "/v1/pods/{id}/setup",              api_h_setup,              API_CAP_JSON,      0,          API_SCOPE_NODE },
        { "POST",   "/v1/pods/{id}/tools/{op}",         api_h_tool,               API_CAP_TOOL,      API_QUERY,  API_SCOPE_POD },
        { "POST",   "/v1/pods/{id}/approvals",          api_h_approval,           API_CAP_JSON,      0,          API_SCOPE_NODE },
        { "GET",    "/v1/pods/{id}/approvals",          api_h_pod_approvals,      API_CAP_NONE,      0,          API_SCOPE_POD },
        { "GET",    "/v1/pods/{id}/approvals/{aid}",    api_h_pod_approval_get,   API_CAP_NONE,      API_QUERY,  API_SCOPE_POD },
        { "POST",   "/v1/pods/{id}/approvals/{aid}",    api_h_pod_approval_decide, API_CAP_JSON,     0,          API_SCOPE_NODE },
        { "DELETE", "/v1/pods/{id}/approvals/{aid}",    api_h_pod_approval_withdraw, API_CAP_NONE,   0,          API_SCOPE_POD },
        { "GET",    "/v1/approvals",                    api_h_approvals_all,      API_CAP_NONE,      0,          API_SCOPE_NODE },
        { "POST",   "/v1/approvers",                    api_h_approvers,          API_CAP_JSON,      0,          API_SCOPE_NODE },
};
/* clang-format on */

ApiScopeDecision api_scope_decide(const ApiRoute *route, const char *path_pod_id, const ApiCaller *who) {
        if (!route || route->scope == API_SCOPE_PUBLIC)
                return API_SCOPE_ALLOW;
        if (!who->scoped)
                /* The node key signs everything but the run's own budget operations. */
                return route->scope == API_SCOPE_RUN ? API_SCOPE_DENY_RUN_ONLY : API_SCOPE_ALLOW;
        switch (route->scope) {
        case API_SCOPE_POD:
                if (who->scope != POD_CRED_POD)
                        return API_SCOPE_DENY_POD_CRED;
                break;
        case API_SCOPE_RUN:
                if (who->scope != POD_CRED_RUN)
                        return API_SCOPE_DENY_RUN_ONLY;
                break;
        case API_SCOPE_NODE:
        default:
                return API_SCOPE_DENY_NODE_ONLY;
        }
        if (!path_pod_id || !who->pod_id || !streq(path_pod_id, who->pod_id))
                return API_SCOPE_DENY_OTHER_POD;
        if (who->pod_ended)
                return API_SCOPE_DENY_ENDED;
        return API_SCOPE_ALLOW;
}

const char *api_scope_decision_detail(ApiScopeDecision d) {
        static const char *const t[_API_SCOPE_DECISION_MAX] = {
                [API_SCOPE_ALLOW] = "allow",
                [API_SCOPE_DENY_NODE_ONLY] = "node_key_required",
                [API_SCOPE_DENY_RUN_ONLY] = "run_credential_required",
                [API_SCOPE_DENY_POD_CRED] = "pod_credential_required",
                [API_SCOPE_DENY_OTHER_POD] = "other_pod",
                [API_SCOPE_DENY_ENDED] = "pod_ended",
        };
        return (int) d >= 0 && d < _API_SCOPE_DECISION_MAX ? t[d] : "other";
}

const char *api_scope_decision_message(ApiScopeDecision d) {
        static const char *const t[_API_SCOPE_DECISION_MAX] = {
                [API_SCOPE_ALLOW] = "allowed",
                [API_SCOPE_DENY_NODE_ONLY] = "this route takes the node key; a pod credential may call only "
                                             "its pod's tool, "
                                             "status, events, lease and approval-queue routes",
                [API_SCOPE_DENY_RUN_ONLY] = "only the run's own credential (scope run, minted for this pod) "
                                            "may reserve or "
                                            "settle its budget",
                [API_SCOPE_DENY_POD_CRED] = "a run credential may only reserve and settle its pod's budget; "
                                            "this route "
                                            "takes the node key or a pod credential",
                [API_SCOPE_DENY_OTHER_POD] = "this credential belongs to another pod",
                [API_SCOPE_DENY_ENDED] = "this credential expired with its pod (the pod has ended)",
        };
        return (int) d >= 0 && d < _API_SCOPE_DECISION_MAX ? t[d] : "refused";
}

void api_match_done(ApiMatch *m) {
        m->pod_id = mfree(m->pod_id);
        for (size_t i = 0; i < API_ARGS_MAX; i++)
                m->args[i] = mfree(m->args[i]);
}

/* Does path match pattern? On success (and with m) the placeholders are copied into m. */
static bool pattern_match(const char *pattern, const char *path, ApiMatch *m) {
        const char *p = pattern, *s = path;
        size_t n_args = 0;

        while (*p && *s) {
                if (*p != '/' || *s != '/')
                        return false;
                p++, s++;
                size_t pl = strcspn(p, "/"), sl = strcspn(s, "/");
                if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
                        if (sl == 0)
                                return false;
                        if (m) {
                                if (pl == 4 && memcmp(p, "{id}", 4) == 0)
                                        m->pod_id = xstrndup(s, sl);
                                else if (n_args < API_ARGS_MAX)
                                        m->args[n_args++] = xstrndup(s, sl);
                                else
                                        return false;
                        }
                } else if (pl != sl || memcmp(p, s, pl) != 0)
                        return false;
                p += pl, s += sl;
        }
        return *p == 0 && *s == 0;
}

bool api_route_match(const char *method, const char *path, ApiMatch *ret) {
        *ret = (ApiMatch){};
        for (size_t i = 0; i < ELEMENTSOF(api_routes); i++) {
                const ApiRoute *r = &api_routes[i];
                if (!pattern_match(r->pattern, path, NULL))
                        continue;
                if (!ret->any)
                        ret->any = r;
                if (streq(r->method, method)) {
                        ret->route = r;
                        break;
                }
        }
        if (!ret->any)
                return false;
        (void) pattern_match((ret->route ?: ret->any)->pattern, path, ret);
        return true;
}

char *api_route_methods(const ApiRoute *r) {
        char *s = NULL;
        for (size_t i = 0; i < ELEMENTSOF(api_routes); i++) {
                if (!streq(api_routes[i].pattern, r->pattern))
                        continue;
                char *t = s ? xasprintf("%s or %s", s, api_routes[i].method) : xstrdup(api_routes[i].method);
                free(s);
                s = t;
        }
        return s;
}
