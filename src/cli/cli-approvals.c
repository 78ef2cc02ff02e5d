/* SPDX-License-Identifier: Apache-2.0 */
/* The human-facing side of the approvals queue: see cli-approvals.h. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "alloc-util.h"
#include "approval.h"
#include "cli-approvals.h"
#include "escape.h"
#include "json-util.h"
#include "secrets.h"
#include "string-util.h"

static const char *const decision_table[_CLI_APPROVAL_DECISION_MAX] = {
        [CLI_APPROVAL_ONCE] = "once",
        [CLI_APPROVAL_POD] = "pod",
        [CLI_APPROVAL_REFUSE] = "refuse",
};

const char *cli_approval_decision_to_string(CliApprovalDecision d) {
        return d >= 0 && d < _CLI_APPROVAL_DECISION_MAX ? decision_table[d] : NULL;
}

CliApprovalDecision cli_approval_decision_from_string(const char *s) {
        if (!s)
                return _CLI_APPROVAL_DECISION_INVALID;
        if (streq(s, "approve"))
                return CLI_APPROVAL_ONCE;
        for (int i = 0; i < _CLI_APPROVAL_DECISION_MAX; i++)
                if (streq(s, decision_table[i]))
                        return (CliApprovalDecision) i;
        return _CLI_APPROVAL_DECISION_INVALID;
}

int cli_approvals_list(NucleusClient *c, json_t **ret, ClientError *reterr) {
        return client_call_json(c, "GET", "/v1/approvals", NULL, ret, reterr);
}

int cli_approvals_find(NucleusClient *c, const char *id, json_t **ret, char **reterr) {
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *all = NULL;
        json_t *found = NULL, *a;
        size_t i, n = id ? strlen(id) : 0;

        if (n == 0) {
                *reterr = xstrdup("no approval id given");
                return -EINVAL;
        }
        int r = cli_approvals_list(c, &all, &e);
        if (r < 0) {
                *reterr = client_error_describe(&e);
                return r;
        }
        json_array_foreach(json_object_get(all, "approvals"), i, a) {
                const char *aid = json_string_value(json_object_get(a, "id"));
                if (!aid || strncmp(aid, id, n) != 0)
                        continue;
                if (found) {
                        *reterr = xasprintf("approval id prefix '%s' is ambiguous", id);
                        return -EEXIST;
                }
                found = a;
        }
        if (!found) {
                _cleanup_free_ char *vis = string_make_visible(id);
                *reterr = xasprintf("no pending approval '%s' (decided, expired, or never held)", vis);
                return -ENOENT;
        }
        *ret = json_incref(found);
        return 0;
}

int cli_approval_decide(
        NucleusClient *c,
        const char *secrets_dir,
        const json_t *pending,
        const char *digest,
        CliApprovalDecision decision,
        const char *reason,
        json_t **ret,
        char **reterr) {
        const char *id = json_string_value(json_object_get(pending, "id"));
        const char *pod = json_string_value(json_object_get(pending, "pod"));
        const char *op = json_string_value(json_object_get(pending, "operation"));
        const char *own = json_string_value(json_object_get(pending, "digest"));
        const char *args_sha = json_string_value(json_object_get(pending, "args_sha256"));
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *body = NULL, *res = NULL;
        _cleanup_free_ char *token = NULL, *path = NULL;
        int r;

        if (!id || !pod || !op || !own || strlen(own) != 64) {
                *reterr = xstrdup("the node's pending approval record is malformed");
                return -EBADMSG;
        }
        if (!digest || strlen(digest) != 64 || !memeq_consttime(digest, own, 64)) {
                *reterr = xstrdup("the approval shown is not the one pending (digest differs): refusing to "
                                  "decide");
                return -EBADMSG;
        }
        if (decision == CLI_APPROVAL_REFUSE) {
                body = json_pack("{s:s,s:s,s:s}", "decision", "refuse", "digest", own, "reason", reason ?: "");
        } else {
                bool pod_scope = decision == CLI_APPROVAL_POD;
                if (pod_scope) {
                        bool offered = false;
                        size_t i;
                        json_t *s;
                        json_array_foreach(json_object_get(pending, "scopes"), i, s)
                                offered = offered || streq(json_string_value(s) ?: "", "pod");
                        if (!offered) {
                                *reterr = xasprintf(
                                        "'%s' cannot be approved for the rest of the pod: approve it once",
                                        op);
                                return -EPERM;
                        }
                }
                uint8_t key[APPROVAL_SECRET_KEY_SIZE];
                _cleanup_free_ char *err = NULL;
                r = secret_load(secrets_dir, SECRET_APPROVER, key, sizeof key, &err);
                if (r < 0) {
                        *reterr = xasprintf("cannot load the approver key: %s", err ?: strerror(-r));
                        return r;
                }
                int64_t now = (int64_t) time(NULL);
                ApprovalToken t = {
                        .version = 1,
                        .uses = pod_scope ? 1000 : 1,
                        .expires_at = now + (pod_scope ? APPROVAL_MAX_TTL_SEC - 60 : 600),
                };
                snprintf(t.pod, sizeof t.pod, "%s", pod);
                snprintf(t.operation, sizeof t.operation, "%s", op);
                if (args_sha && strlen(args_sha) == 64) {
                        t.has_args = true;
                        memcpy(t.args_sha256, args_sha, 65);
                }
                r = approval_token_mint(key, &t, &token, NULL);
                explicit_bzero_safe(key, sizeof key);
                if (r < 0) {
                        *reterr = xstrdup("minting the approval token failed");
                        return r;
                }
                body = json_pack(
                        "{s:s,s:s,s:s,s:s}",
                        "decision",
                        "approve",
                        "digest",
                        own,
                        "scope",
                        pod_scope ? "pod" : "once",
                        "token",
                        token);
        }
        if (!body)
                abort();
        path = xasprintf("/v1/pods/%s/approvals/%s", pod, id);
        r = client_call_json(c, "POST", path, body, &res, &e);
        if (token)
                explicit_bzero_safe(token, strlen(token));
        if (r < 0) {
                *reterr = client_error_describe(&e);
                return r;
        }
        if (ret)
                *ret = TAKE_PTR(res);
        return 0;
}

int cli_approvers_heartbeat(NucleusClient *c, const char *name, unsigned ttl_sec, ClientError *reterr) {
        _cleanup_json_ json_t *body = json_pack("{s:s,s:I}", "name", name, "ttl_seconds", (json_int_t) ttl_sec),
                              *res = NULL;
        return client_call_json(c, "POST", "/v1/approvers", body, &res, reterr);
}

char *cli_approval_describe(const json_t *pending, size_t max) {
        const char *op = json_string_value(json_object_get(pending, "operation")) ?: "?";
        const char *tool = json_string_value(json_object_get(pending, "tool")) ?: "?";
        _cleanup_free_ char *args = json_dumps(json_object_get(pending, "args"), JSON_COMPACT | JSON_SORT_KEYS);
        _cleanup_free_ char *line = xasprintf("%s (%s) %s", op, tool, args ?: "{}");
        if (strlen(line) > max)
                strcpy(line + max - 3, "...");
        return string_make_visible(line);
}
