/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Channel messages on top of frames: request {"op","args"}, error {"error","kind"}, events, and
 * the error kinds shared by the proxy, the node API and the CLI (docs/channel.md "Error kinds"). Payloads
 * are untrusted: parsing is strict (duplicate keys rejected, types checked, size capped).
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "frame.h"
#include "json-util.h"
#include "macro.h"

typedef enum ErrorKind {
        ERROR_KIND_SANDBOX_ESCAPE,
        ERROR_KIND_PATH_DENIED,
        ERROR_KIND_COMMAND_DENIED,
        ERROR_KIND_INSUFFICIENT_CAPABILITY,
        ERROR_KIND_APPROVAL_REQUIRED,
        ERROR_KIND_APPROVAL_INVALID,
        ERROR_KIND_BUDGET_EXHAUSTED,
        ERROR_KIND_TIME_VIOLATION,
        ERROR_KIND_NOT_FOUND,
        ERROR_KIND_ALREADY_EXISTS,
        ERROR_KIND_NOT_UNIQUE,
        ERROR_KIND_INVALID_REQUEST,
        ERROR_KIND_TOO_LARGE,
        ERROR_KIND_NOT_CONFIGURED,
        ERROR_KIND_UNSUPPORTED,
        ERROR_KIND_IO_ERROR,
        ERROR_KIND_INTERNAL,
        ERROR_KIND_UNAUTHORIZED,
        ERROR_KIND_CONFLICT,
        ERROR_KIND_CAPACITY,
        ERROR_KIND_POD_NOT_RUNNING,
        ERROR_KIND_NETWORK_DENIED,
        _ERROR_KIND_MAX,
        _ERROR_KIND_INVALID = -EINVAL,
} ErrorKind;

const char *error_kind_to_string(ErrorKind k);
ErrorKind error_kind_from_string(const char *s);
/* HTTP status for a kind: 403 policy denials, 402 budget, 400 invalid_request, 404, 401, 413,
 * 408 time_violation, 409 conflict, 503 capacity, 500 internal/io_error. */
int error_kind_http_status(ErrorKind k);

/* Build {"error": message, "kind": kind}. Returns a new reference. */
json_t *proto_error_new(ErrorKind kind, const char *fmt, ...) _printf_(2, 3);

/* Build {"op": op, "args": args}; steals args (NULL means {}). */
json_t *proto_request_new(const char *op, json_t *args);

/*
 * Parse a JSON payload (object only, duplicate keys rejected, <= PROTO_MAX_PAYLOAD).
 * Returns 0 and a new reference, or -EBADMSG with *reterr set to a message naming the line and
 * column (caller frees).
 */
int proto_json_parse(const void *payload, size_t length, json_t **ret, char **reterr);

/*
 * Split a request object: "op" must be a non-empty string of [a-z_] (<= 32 chars), "args" an
 * object (absent means {}), and no other keys. Returns 0 with borrowed pointers into req, or
 * -EINVAL with *reterr naming the problem (caller frees).
 */
int proto_request_parse(json_t *req, const char **ret_op, json_t **ret_args, char **reterr);

/* Dump j compactly (canonical: sorted keys) and send it as a frame of the given type.
 * Returns 0, -EMSGSIZE if the text exceeds the cap, or the write/queue error. */
int proto_send_json(int fd, FrameType type, uint32_t stream_id, const json_t *j);
int proto_queue_json(FrameQueue *q, FrameType type, uint32_t stream_id, const json_t *j);
