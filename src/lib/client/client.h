/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signed HTTP client for the nucleus-node API (libcurl). Every request carries the
 * X-Nucleus-* headers of DESIGN.md §4 (see client-sign.h). Responses from the node are
 * untrusted: bodies are capped, error documents are decoded into { message, kind } and made
 * printable before anyone shows them.
 */
#pragma once

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "time-util.h"

#define CLIENT_KEY_SIZE 32
#define CLIENT_DEFAULT_URL "http://127.0.0.1:8080"
#define CLIENT_DEFAULT_ACTOR "nucleus-cli"
#define CLIENT_BODY_MAX ((size_t) 64 * 1024 * 1024)

typedef struct NucleusClient NucleusClient;

/* Failure detail for a request. status is the HTTP status (0 for transport errors); message
 * and kind are never NULL after a failed call (kind is one of the error kinds of docs/channel.md,
 * or "io_error" with status 0 for transport failures). */
typedef struct ClientError {
        long status;
        char *message;
        char *kind;
} ClientError;

void client_error_done(ClientError *e);
#define _cleanup_client_error_ _cleanup_(client_error_done)

typedef struct ClientResponse {
        long status;        /* HTTP status */
        char *body;         /* NUL-terminated; may contain NULs before size */
        size_t size;        /* bytes of body */
        char *content_type; /* NULL when the server sent none */
} ClientResponse;

void client_response_done(ClientResponse *r);

/*
 * client_new:
 *   Arguments: url: "http://host:port" (optionally with a path prefix; https allowed);
 *              key: the 32-byte node secret (copied; wiped on free); actor: free text
 *              (audit only, no control characters; NULL means "nucleus-cli").
 *   Returns: 0, or -EINVAL for a malformed URL or actor.
 */
int client_new(
        const char *url, const uint8_t key[static CLIENT_KEY_SIZE], const char *actor, NucleusClient **ret);
/*
 * client_new_scoped:
 *   As client_new, signing with a scoped credential (docs/api.md "Scoped credentials"): secret
 *   is its 32-byte secret, key_id its id (sent as X-Nucleus-Key-Id and signed). The node
 *   authenticates its answers with that secret too. Returns 0, or -EINVAL (also for a
 *   malformed key id).
 */
int client_new_scoped(
        const char *url,
        const uint8_t secret[static CLIENT_KEY_SIZE],
        const char *key_id,
        const char *actor,
        NucleusClient **ret);
/* Does c sign with a scoped credential (not the node key)? */
bool client_is_scoped(const NucleusClient *c);
NucleusClient *client_free(NucleusClient *c);
/* An independent copy (URL, key, actor, timeouts), e.g. for a background thread. */
NucleusClient *client_clone(const NucleusClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(NucleusClient *, client_free);
#define _cleanup_client_free_ _cleanup_(client_freep)

/* Connect timeout and total timeout (0 = none, for streams). Defaults 5 s and 60 s. */
void client_set_timeouts(NucleusClient *c, usec_t connect, usec_t total);

/* While *flag (the caller's, e.g. set by a SIGINT handler; it must outlive the setting) is
 * non-zero, this client's requests fail with -EINTR (kind "interrupted"): a new one at once,
 * one in flight within about a second (a tool call that runs a long command included). NULL
 * turns it off again, e.g. for the cleanup that follows an interrupt. Clones do not inherit
 * it. */
void client_set_interrupt(NucleusClient *c, const volatile sig_atomic_t *flag);
const char *client_url(const NucleusClient *c);

/*
 * client_request:
 *   Sends a signed request; path_query starts with '/' and is signed exactly as sent.
 *   Returns: 0 with *ret filled for ANY HTTP status (the caller looks at ret->status) of an
 *            answer that carries a valid X-Nucleus-Response-MAC (the node holds our key);
 *            -EPROTO (kind "node_unauthenticated") for an answer without one, -EREMOTEIO
 *            (kind "unauthorized") for such a 401; a negative errno for transport failures
 *            (-ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH, -EFBIG when the body exceeds
 *            CLIENT_BODY_MAX, -EIO), with *reterr (optional) describing it.
 */
int client_request(
        NucleusClient *c,
        const char *method,
        const char *path_query,
        const char *content_type,
        const void *body,
        size_t body_len,
        ClientResponse *ret,
        ClientError *reterr);

/* Progress of a streamed upload: bytes sent so far of total. Return 0 to go on, <0 to stop. */
typedef int (*ClientProgressFn)(uint64_t sent, uint64_t total, void *userdata);

/*
 * client_request_upload:
 *   As client_request, with the body streamed from fd (size bytes from offset 0, read with
 *   pread: the caller's offset is untouched) instead of memory, signed by its SHA-256 (hex,
 *   computed by the caller while writing the file). progress (optional) is called as the body
 *   goes out. The node checks the digest before it uses the body.
 *   Returns: as client_request; a progress callback's error is returned as is.
 */
int client_request_upload(
        NucleusClient *c,
        const char *method,
        const char *path_query,
        const char *content_type,
        int fd,
        uint64_t size,
        const char *body_sha256,
        ClientProgressFn progress,
        void *userdata,
        ClientResponse *ret,
        ClientError *reterr);

/*
 * client_call_json:
 *   A request whose answer is JSON. body may be NULL (no body). On 2xx returns 0 and the
 *   parsed document in *ret (optional). On an HTTP error returns -EREMOTEIO with
 *   reterr->{status,message,kind} decoded from the node's {"error","kind"} document; a 2xx
 *   answer that is not JSON is -EBADMSG; transport failures as client_request.
 */
int client_call_json(
        NucleusClient *c,
        const char *method,
        const char *path_query,
        const json_t *body,
        json_t **ret,
        ClientError *reterr);

/*
 * client_stream:
 *   A streaming GET (timeouts: connect only). Each chunk of the body is passed to on_data as
 *   it arrives; when the response is text/event-stream, on_event is called instead once per
 *   complete event with its "event" name (NULL when absent) and its joined "data" lines.
 *   Callbacks return 0 to continue or a negative errno to stop (returned by the call).
 *   A non-2xx answer is decoded as in client_call_json (-EREMOTEIO).
 */
typedef int (*ClientDataFn)(const char *data, size_t n, void *userdata);
typedef int (*ClientEventFn)(const char *event, const char *data, void *userdata);
int client_stream(
        NucleusClient *c,
        const char *path_query,
        ClientDataFn on_data,
        ClientEventFn on_event,
        void *userdata,
        ClientError *reterr);

/* Decode a non-2xx response into *ret (message made printable; kind from the document or
 * derived from the status). Always succeeds. */
void client_error_from_response(const ClientResponse *resp, ClientError *ret);

/* One line for humans: "message (kind)", plus the fix for kinds the user can act on
 * (unauthorized: the CLI and node secrets differ; transport failure: start the node). Caller
 * frees. */
char *client_error_describe(const ClientError *e);
