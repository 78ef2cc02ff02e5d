/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshot and fork handlers (docs/api.md "Snapshots and forks", docs/snapshot.md):
 * POST /v1/pods/{id}/snapshot, GET /v1/pods/{id}/snapshots, POST /v1/pods/{id}/fork,
 * DELETE /v1/snapshots/{sid}.
 * The work is pod-snapshot.c's; here the body is checked and errors get their status.
 */
#include <errno.h>
#include <string.h>

#include "alloc-util.h"
#include "api-internal.h"
#include "json-util.h"
#include "pod.h"
#include "string-util.h"

static enum MHD_Result snapshot_error(struct MHD_Connection *c, int r, const char *err) {
        unsigned status = r == -EBUSY              ? MHD_HTTP_CONFLICT
                : r == -ESTALE || r == -ECONNRESET ? MHD_HTTP_CONFLICT
                : r == -EOPNOTSUPP                 ? MHD_HTTP_BAD_REQUEST
                : r == -EINVAL                     ? MHD_HTTP_BAD_REQUEST
                : r == -ENOENT                     ? MHD_HTTP_NOT_FOUND
                : r == -EDQUOT                     ? MHD_HTTP_CONFLICT
                : r == -ENOSPC                     ? MHD_HTTP_CONFLICT
                                                   : MHD_HTTP_INTERNAL_SERVER_ERROR;
        const char *kind = r == -EBUSY             ? "conflict"
                : r == -ESTALE || r == -ECONNRESET ? "pod_not_running"
                : r == -EOPNOTSUPP                 ? "unsupported"
                : r == -EINVAL                     ? "invalid_request"
                : r == -ENOENT                     ? "not_found"
                : r == -EDQUOT                     ? "budget_exhausted"
                : r == -ENOSPC                     ? "snapshot_cap"
                                                   : "internal";
        return api_reply_error(c, status, kind, "%s", err ?: strerror(-r));
}

enum MHD_Result api_h_snapshot(ApiCall *a) {
        _cleanup_json_ json_t *out = NULL;
        _cleanup_free_ char *err = NULL;
        if (a->n_body > 0) {
                _cleanup_json_ json_t *body = NULL;
                if (json_parse_strict(a->body, a->n_body, 4096, &body, &err) < 0 || !json_is_object(body) ||
                    json_object_size(body) > 0)
                        return api_reply_error(
                                a->c,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request",
                                "snapshot: expected an empty body or {}");
        }
        int r = pod_snapshot(a->pod, a->actor, &out, &err);
        if (r < 0)
                return snapshot_error(a->c, r, err);
        return api_reply_json(a->c, MHD_HTTP_CREATED, out);
}

enum MHD_Result api_h_snapshots(ApiCall *a) {
        _cleanup_json_ json_t *list = pod_snapshots_list(a->pod);
        _cleanup_json_ json_t *out = json_pack("{s:O}", "snapshots", list);
        return api_reply_json(a->c, MHD_HTTP_OK, out);
}

enum MHD_Result api_h_fork(ApiCall *a) {
        _cleanup_json_ json_t *body = NULL, *out = NULL;
        _cleanup_free_ char *err = NULL;
        const char *snapshot = NULL;
        json_int_t count = 1;

        if (a->n_body > 0) {
                const char *key;
                json_t *v;
                if (json_parse_strict(a->body, a->n_body, 4096, &body, &err) < 0 || !json_is_object(body))
                        return api_reply_error(
                                a->c,
                                MHD_HTTP_BAD_REQUEST,
                                "invalid_request",
                                "fork: expected {\"count\": N, \"snapshot\": ID} (both optional)");
                json_object_foreach(body, key, v) {
                        if (streq(key, "count") && json_is_integer(v))
                                count = json_integer_value(v);
                        else if (streq(key, "snapshot") && json_is_string(v))
                                snapshot = json_string_value(v);
                        else {
                                _cleanup_free_ char *vis = string_make_visible(key);
                                return api_reply_error(
                                        a->c,
                                        MHD_HTTP_BAD_REQUEST,
                                        "invalid_request",
                                        "fork: $.%s: unknown key or wrong type (count: integer, snapshot: "
                                        "string)",
                                        vis);
                        }
                }
        }
        if (count < 1 || count > 16)
                return api_reply_error(
                        a->c, MHD_HTTP_BAD_REQUEST, "invalid_request", "fork: $.count: expected 1..16");
        int r = pod_fork(a->pod, snapshot, (unsigned) count, a->actor, &out, &err);
        if (r < 0)
                return snapshot_error(a->c, r, err);
        return api_reply_json(a->c, MHD_HTTP_CREATED, out);
}

enum MHD_Result api_h_snapshot_delete(ApiCall *a) {
        _cleanup_json_ json_t *out = NULL;
        _cleanup_free_ char *err = NULL;
        int r = pod_snapshot_delete(a->node, a->args[0], &out, &err);
        if (r < 0)
                return snapshot_error(a->c, r, err);
        return api_reply_json(a->c, MHD_HTTP_OK, out);
}
