/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Request signing for the node API (DESIGN.md §4, docs/api.md "Signing").
 * HMAC-SHA256 with the 32-byte node secret over
 *   "nucleus-v1\nMETHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nACTOR\nhex(sha256(body))".
 * Verification treats every header as hostile: lengths are capped, syntax is strict, the MAC
 * is compared in constant time, and a bounded nonce cache refuses replays (fail closed when
 * full). Nonces are only remembered after the MAC verified, so an unauthenticated peer
 * cannot fill the cache.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_HEADER_TIMESTAMP "X-Nucleus-Timestamp"
#define AUTH_HEADER_NONCE "X-Nucleus-Nonce"
#define AUTH_HEADER_ACTOR "X-Nucleus-Actor"
#define AUTH_HEADER_SIGNATURE "X-Nucleus-Signature"
/* Optional: hex SHA-256 of the body, declared up front so the server can verify the MAC before
 * reading any body byte (the signed string already carries this digest as its last line). */
#define AUTH_HEADER_CONTENT_SHA256 "X-Nucleus-Content-SHA256"
/* Optional: the id of a scoped credential (docs/api.md "Scoped credentials"). Absent, the
 * request is signed with the node key; present, with that credential's secret, and the id is
 * appended to the signed string as its eighth line (so it cannot be swapped for another). The
 * node's answer is then authenticated with the same secret. */
#define AUTH_HEADER_KEY_ID "X-Nucleus-Key-Id"
#define AUTH_KEY_ID_MAX 80U /* [a-z0-9.-], at least 8 */

/* The node's answer to a signed request: hex HMAC-SHA256 with the node key over
 *   "nucleus-v1-response\nNONCE\nSTATUS\nBODY"
 * where NONCE is the request's X-Nucleus-Nonce, STATUS the decimal HTTP status and BODY the
 * hex SHA-256 of the answer body, or the literal "stream" for a streamed answer (events,
 * followed logs) whose body is not known when the headers are sent. Clients refuse an answer
 * without a valid one: a process squatting on the node's port cannot produce it. */
#define AUTH_HEADER_RESPONSE_MAC "X-Nucleus-Response-MAC"
#define AUTH_RESPONSE_STREAM "stream"

#define AUTH_KEY_SIZE 32U          /* node secret, raw bytes */
#define AUTH_SIGNATURE_HEX_LEN 64U /* hex HMAC-SHA256 */
#define AUTH_MAX_SKEW_SEC 60       /* |now - timestamp| must be <= this */
#define AUTH_NONCE_MIN_HEX 32U     /* 16 bytes */
#define AUTH_NONCE_MAX_HEX 128U
#define AUTH_ACTOR_MAX 256U /* printable ASCII, may be empty */
#define AUTH_METHOD_MAX 16U
#define AUTH_PATH_MAX 8192U
#define AUTH_TIMESTAMP_MAX_LEN 19U /* decimal digits of a positive int64 */
#define AUTH_NONCE_CACHE_DEFAULT_CAPACITY 65536U

typedef enum AuthVerifyResult {
        AUTH_VERIFY_OK,
        AUTH_VERIFY_MISSING_HEADER, /* a required header is absent (see reterr_header) */
        AUTH_VERIFY_BAD_TIMESTAMP,  /* not a plain decimal unix time */
        AUTH_VERIFY_SKEW,           /* more than AUTH_MAX_SKEW_SEC away from now */
        AUTH_VERIFY_BAD_NONCE,      /* not 32..128 lowercase-or-uppercase hex chars, even length */
        AUTH_VERIFY_BAD_ACTOR,      /* too long or not printable ASCII */
        AUTH_VERIFY_BAD_REQUEST,    /* method/path unusable (empty, too long, control chars) */
        AUTH_VERIFY_BAD_SIGNATURE,  /* malformed hex or MAC mismatch */
        AUTH_VERIFY_REPLAY,         /* nonce already seen inside the window */
        AUTH_VERIFY_CACHE_FULL,     /* nonce cache full of live entries: refused (fail closed) */
        _AUTH_VERIFY_RESULT_MAX,
        _AUTH_VERIFY_RESULT_INVALID = -22,
} AuthVerifyResult;

/* "ok", "missing_header", "bad_timestamp", "skew", "bad_nonce", "bad_actor", "bad_request",
 * "bad_signature", "replay", "cache_full": the `detail` sub-kind of an `unauthorized` error. */
const char *auth_verify_result_to_string(AuthVerifyResult r);
AuthVerifyResult auth_verify_result_from_string(const char *s);

/* The incoming request as the server saw it. NULL header = absent. */
typedef struct AuthRequest {
        const char *method;    /* "GET", "POST", ... exactly as received */
        const char *path;      /* path with query exactly as sent (the request target) */
        const char *timestamp; /* header values, NUL-terminated, or NULL when absent */
        const char *nonce;
        const char *actor;
        const char *signature;
        const void *body; /* may be NULL when body_len == 0 */
        size_t body_len;
        /* Declared body digest (X-Nucleus-Content-SHA256: 64 lowercase hex), or NULL. When set,
         * the MAC is checked over this digest and body/body_len are ignored: the caller must
         * then hash the body it reads and refuse the request if the two differ. */
        const char *body_sha256;
        /* X-Nucleus-Key-Id, or NULL: signed with the node key. The caller picks the key that
         * belongs to the id; the id is part of the signed string. */
        const char *key_id;
} AuthRequest;

/* Headers a client sends; filled by auth_make_headers(). */
typedef struct AuthHeaders {
        char timestamp[AUTH_TIMESTAMP_MAX_LEN + 1];
        char nonce[AUTH_NONCE_MIN_HEX + 1];
        char signature[AUTH_SIGNATURE_HEX_LEN + 1];
} AuthHeaders;

typedef struct AuthNonceCache AuthNonceCache;

/*
 * auth_sign_request: compute the signature of one request.
 * Arguments: key (AUTH_KEY_SIZE bytes); method, path, timestamp (decimal text), nonce, actor
 *   exactly as they will be sent; body/body_len (body may be NULL if body_len is 0).
 * Returns: 0 and ret_hex (65 bytes: 64 lowercase hex + NUL), or -EINVAL if a field contains a
 *   newline or NUL-unsafe data (a "\n" would make the signed string ambiguous).
 */
int auth_sign_request(
        const uint8_t key[AUTH_KEY_SIZE],
        const char *method,
        const char *path,
        const char *timestamp,
        const char *nonce,
        const char *actor,
        const void *body,
        size_t body_len,
        char ret_hex[AUTH_SIGNATURE_HEX_LEN + 1]);

/* auth_sign_request_digest: as auth_sign_request, for a body known only by its SHA-256
 * (lowercase hex, 64 characters): a large upload streamed from a file. -EINVAL as above or for a
 * malformed digest. */
int auth_sign_request_digest(
        const uint8_t key[AUTH_KEY_SIZE],
        const char *method,
        const char *path,
        const char *timestamp,
        const char *nonce,
        const char *actor,
        const char *body_sha256,
        char ret_hex[AUTH_SIGNATURE_HEX_LEN + 1]);

/* auth_sign_request_key_id: as auth_sign_request (body) or auth_sign_request_digest
 * (body_sha256 != NULL), for a request sent with X-Nucleus-Key-Id: key_id (NULL = none, then
 * identical to those) is appended to the signed string. -EINVAL also for a malformed key id. */
int auth_sign_request_key_id(
        const uint8_t key[AUTH_KEY_SIZE],
        const char *key_id,
        const char *method,
        const char *path,
        const char *timestamp,
        const char *nonce,
        const char *actor,
        const void *body,
        size_t body_len,
        const char *body_sha256,
        char ret_hex[AUTH_SIGNATURE_HEX_LEN + 1]);

/* True if s is a well-formed key id: 8..AUTH_KEY_ID_MAX characters of [a-z0-9.-]. */
bool auth_key_id_is_valid(const char *s);

/*
 * auth_make_headers: the full client-side header set for one request: timestamp = now,
 * a fresh random 16-byte nonce, and the signature. The actor header is the caller's string.
 * Returns 0, or -EINVAL as auth_sign_request.
 */
int auth_make_headers(
        const uint8_t key[AUTH_KEY_SIZE],
        const char *method,
        const char *path,
        const char *actor,
        const void *body,
        size_t body_len,
        AuthHeaders *ret);

/*
 * auth_verify_request: verify one request.
 * Arguments: key; req; cache (required: replay protection is not optional; shared by all
 *   threads of a server); now (unix seconds, normally time(NULL)); reterr_header (optional):
 *   for AUTH_VERIFY_MISSING_HEADER the name of the first missing header (static string).
 * Returns: AUTH_VERIFY_OK or the first failure, checked in this order: missing header,
 *   timestamp syntax, skew, nonce syntax, actor, method/path, signature (constant time),
 *   replay (the nonce is recorded only after the MAC verified).
 * Notes: thread-safe when cache is shared. A request is accepted at most once per nonce for
 *   as long as its timestamp could still pass the skew check.
 */
AuthVerifyResult auth_verify_request(
        const uint8_t key[AUTH_KEY_SIZE],
        const AuthRequest *req,
        AuthNonceCache *cache,
        int64_t now,
        const char **reterr_header);

/*
 * auth_precheck_request: every check of auth_verify_request that needs neither the key nor the
 *   body (missing header, timestamp, skew, nonce syntax, actor, method/path, signature syntax,
 *   declared digest syntax), for refusing a request before any of its body is read. The nonce
 *   is not recorded. Returns AUTH_VERIFY_OK or the first failure, as auth_verify_request.
 */
AuthVerifyResult auth_precheck_request(const AuthRequest *req, int64_t now, const char **reterr_header);

/*
 * auth_sign_response: the X-Nucleus-Response-MAC value for an answer.
 * Arguments: nonce: the request's nonce as received (validated: auth_nonce_is_valid);
 *   status: HTTP status; body/body_len: the whole answer body, or body == NULL with
 *   body_len == SIZE_MAX for a streamed answer (signs AUTH_RESPONSE_STREAM instead of a digest).
 * Returns: 0 and ret_hex, or -EINVAL for a bad nonce or status.
 */
int auth_sign_response(
        const uint8_t key[AUTH_KEY_SIZE],
        const char *nonce,
        unsigned status,
        const void *body,
        size_t body_len,
        char ret_hex[AUTH_SIGNATURE_HEX_LEN + 1]);

/*
 * auth_verify_response: check an answer's X-Nucleus-Response-MAC (mac may be NULL: absent)
 * against the nonce this client sent, in constant time. Same body convention as
 * auth_sign_response. Returns true only for a valid MAC.
 */
bool auth_verify_response(
        const uint8_t key[AUTH_KEY_SIZE],
        const char *nonce,
        unsigned status,
        const void *body,
        size_t body_len,
        const char *mac);

/* A bounded, expiring, thread-safe set of seen nonces. capacity 0 = default (65536). */
int auth_nonce_cache_new(size_t capacity, AuthNonceCache **ret);
AuthNonceCache *auth_nonce_cache_free(AuthNonceCache *c);
static inline void auth_nonce_cache_freep(AuthNonceCache **c) {
        if (*c)
                *c = auth_nonce_cache_free(*c);
}
/* Record nonce (any string) until expires_at (unix s). Returns 0 if new, -EEXIST if it is
 * already present and unexpired at now, -ENOSPC when the cache holds `capacity` live entries. */
int auth_nonce_cache_insert(AuthNonceCache *c, const char *nonce, int64_t expires_at, int64_t now);
/* Number of entries currently held (live or not yet purged). */
size_t auth_nonce_cache_size(AuthNonceCache *c);

/* Parse a decimal unix timestamp header strictly (digits only, no sign, <= 19 chars). */
int auth_parse_timestamp(const char *s, int64_t *ret);
/* True if s is 32..128 hex characters of even length. */
bool auth_nonce_is_valid(const char *s);
