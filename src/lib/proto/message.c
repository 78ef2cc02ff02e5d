/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON messages carried in frames (see message.h). Payloads come from the other side of a
 * trust boundary: parse strictly, check every type, and never trust sizes.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "alloc-util.h"
#include "message.h"
#include "id-util.h"
#include "string-util.h"

static const char *const error_kind_table[_ERROR_KIND_MAX] = {
        [ERROR_KIND_SANDBOX_ESCAPE] = "sandbox_escape",
        [ERROR_KIND_PATH_DENIED] = "path_denied",
        [ERROR_KIND_COMMAND_DENIED] = "command_denied",
        [ERROR_KIND_INSUFFICIENT_CAPABILITY] = "insufficient_capability",
        [ERROR_KIND_APPROVAL_REQUIRED] = "approval_required",
        [ERROR_KIND_APPROVAL_INVALID] = "approval_invalid",
        [ERROR_KIND_BUDGET_EXHAUSTED] = "budget_exhausted",
        [ERROR_KIND_TIME_VIOLATION] = "time_violation",
        [ERROR_KIND_NOT_FOUND] = "not_found",
        [ERROR_KIND_ALREADY_EXISTS] = "already_exists",
        [ERROR_KIND_NOT_UNIQUE] = "not_unique",
        [ERROR_KIND_INVALID_REQUEST] = "invalid_request",
        [ERROR_KIND_TOO_LARGE] = "too_large",
        [ERROR_KIND_NOT_CONFIGURED] = "not_configured",
        [ERROR_KIND_UNSUPPORTED] = "unsupported",
        [ERROR_KIND_IO_ERROR] = "io_error",
        [ERROR_KIND_INTERNAL] = "internal",
        [ERROR_KIND_UNAUTHORIZED] = "unauthorized",
        [ERROR_KIND_CONFLICT] = "conflict",
        [ERROR_KIND_CAPACITY] = "capacity",
        [ERROR_KIND_POD_NOT_RUNNING] = "pod_not_running",
        [ERROR_KIND_NETWORK_DENIED] = "network_denied",
};
DEFINE_STRING_TABLE_LOOKUP(error_kind, ErrorKind);

int error_kind_http_status(ErrorKind k) {
        switch (k) {
        case ERROR_KIND_SANDBOX_ESCAPE:
        case ERROR_KIND_PATH_DENIED:
        case ERROR_KIND_COMMAND_DENIED:
        case ERROR_KIND_INSUFFICIENT_CAPABILITY:
        case ERROR_KIND_APPROVAL_REQUIRED:
        case ERROR_KIND_APPROVAL_INVALID:
        case ERROR_KIND_NETWORK_DENIED:
                return 403;
        case ERROR_KIND_BUDGET_EXHAUSTED:
                return 402;
        case ERROR_KIND_TIME_VIOLATION:
                return 408;
        case ERROR_KIND_NOT_FOUND:
        case ERROR_KIND_POD_NOT_RUNNING:
                return 404;
        case ERROR_KIND_ALREADY_EXISTS:
        case ERROR_KIND_NOT_UNIQUE:
        case ERROR_KIND_CONFLICT:
        case ERROR_KIND_NOT_CONFIGURED:
                return 409;
        case ERROR_KIND_INVALID_REQUEST:
                return 400;
        case ERROR_KIND_TOO_LARGE:
                return 413;
        case ERROR_KIND_UNSUPPORTED:
                return 501;
        case ERROR_KIND_UNAUTHORIZED:
                return 401;
        case ERROR_KIND_CAPACITY:
                return 503;
        case ERROR_KIND_IO_ERROR:
        case ERROR_KIND_INTERNAL:
        default:
                return 500;
        }
}

json_t *proto_error_new(ErrorKind kind, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *msg = xvasprintf(fmt, ap);
        va_end(ap);
        /* Messages quote the peer's input (keys, paths): keep the JSON encodable whatever it was. */
        (void) utf8_make_valid(msg);
        const char *k = error_kind_to_string(kind) ?: "internal";
        json_t *j = json_pack("{s:s, s:s}", "error", msg, "kind", k);
        if (!j)
                oom_abort();
        return j;
}

json_t *proto_request_new(const char *op, json_t *args) {
        json_t *j = json_pack("{s:s, s:o}", "op", op, "args", args ?: json_object());
        if (!j)
                oom_abort();
        return j;
}

int proto_json_parse(const void *payload, size_t length, json_t **ret, char **reterr) {
        json_t *j = NULL;
        int r;

        if (!payload || length == 0) {
                *reterr = xstrdup("empty payload, expected a JSON object");
                return -EBADMSG;
        }
        r = json_parse_strict(payload, length, PROTO_MAX_PAYLOAD, &j, reterr);
        if (r < 0)
                return -EBADMSG;
        if (!json_is_object(j)) {
                json_decref(j);
                *reterr = xstrdup("payload is not a JSON object");
                return -EBADMSG;
        }
        *ret = j;
        return 0;
}

int proto_request_parse(json_t *req, const char **ret_op, json_t **ret_args, char **reterr) {
        const char *key;
        json_t *v;

        if (!json_is_object(req)) {
                *reterr = xstrdup("request is not a JSON object");
                return -EINVAL;
        }
        json_object_foreach(req, key, v)
                if (!streq(key, "op") && !streq(key, "args")) {
                        _cleanup_free_ char *vis = string_make_visible(key);
                        *reterr = xasprintf("request: unknown key '%s'", vis);
                        return -EINVAL;
                }
        json_t *op = json_object_get(req, "op");
        if (!json_is_string(op)) {
                *reterr = xstrdup("request: \"op\" must be a string");
                return -EINVAL;
        }
        if (!operation_name_valid(json_string_value(op))) {
                *reterr = xstrdup("request: \"op\" must be 1-32 characters of [a-z_]");
                return -EINVAL;
        }
        json_t *args = json_object_get(req, "args");
        if (args && !json_is_object(args)) {
                *reterr = xstrdup("request: \"args\" must be an object");
                return -EINVAL;
        }
        if (!args) {
                args = json_object();
                json_object_set_new(req, "args", args);
        }
        *ret_op = json_string_value(op);
        *ret_args = args;
        return 0;
}

static char *dump(const json_t *j, size_t *ret_n) {
        char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
        if (!s)
                oom_abort();
        *ret_n = strlen(s);
        return s;
}

int proto_send_json(int fd, FrameType type, uint32_t stream_id, const json_t *j) {
        size_t n;
        _cleanup_free_ char *s = dump(j, &n);
        return frame_write(fd, type, stream_id, s, n);
}

int proto_queue_json(FrameQueue *q, FrameType type, uint32_t stream_id, const json_t *j) {
        size_t n;
        _cleanup_free_ char *s = dump(j, &n);
        return frame_queue_push(q, type, stream_id, s, n);
}
