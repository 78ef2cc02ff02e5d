/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Approval tokens (DESIGN.md §6; exact format in docs/approvals.md).
 * Text form: "nat1." base64url(payload) "." base64url(signature), no padding, where payload is
 * the canonical JSON (sorted keys, compact) of
 *   {"args_sha256":"<64 hex>"?, "exp":<unix s>, "nonce":"<32 hex>", "op":"<capability>",
 *    "pod":"<pod id>", "uses":<1..1000>, "v":1}
 * and signature = Ed25519(approver secret key, ASCII bytes of "nat1." base64url(payload)).
 * Tokens are untrusted input: sizes are capped, the signature is checked before the JSON is
 * parsed, and the payload must be byte-for-byte canonical (no malleable encodings).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define APPROVAL_TOKEN_PREFIX "nat1."
#define APPROVAL_TOKEN_MAX 2048U   /* whole text form, bytes */
#define APPROVAL_PAYLOAD_MAX 1024U /* decoded payload, bytes */
#define APPROVAL_POD_MAX 128U      /* pod id: [A-Za-z0-9._-], 1..128 */
#define APPROVAL_OP_MAX 64U        /* operation: [a-z0-9_], 1..64 */
#define APPROVAL_USES_MAX 1000U
#define APPROVAL_MAX_TTL_SEC 86400 /* registry refuses tokens expiring later than now + this */
#define APPROVAL_PUBLIC_KEY_SIZE 32U
#define APPROVAL_SECRET_KEY_SIZE 64U
#define APPROVAL_REGISTRY_DEFAULT_CAPACITY 4096U

typedef struct ApprovalToken {
        unsigned version;                    /* always 1 */
        char pod[APPROVAL_POD_MAX + 1];      /* pod id the token is bound to */
        char operation[APPROVAL_OP_MAX + 1]; /* capability name, e.g. "git_push" */
        bool has_args;                       /* args_sha256 present */
        char args_sha256[65];                /* hex SHA-256 of canonical JSON args; "" if !has_args */
        uint32_t uses;                       /* 1..APPROVAL_USES_MAX */
        int64_t expires_at;                  /* unix seconds; invalid when now >= expires_at */
        char nonce[33];                      /* 32 lowercase hex chars (16 bytes) */
} ApprovalToken;

typedef enum ApprovalResult {
        APPROVAL_OK,
        APPROVAL_MALFORMED,     /* not a token: syntax, sizes, encoding, JSON fields */
        APPROVAL_BAD_SIGNATURE, /* not signed by the configured approver key */
        APPROVAL_EXPIRED,       /* now >= exp */
        APPROVAL_TTL_TOO_LONG,  /* exp > now + APPROVAL_MAX_TTL_SEC */
        APPROVAL_WRONG_POD,
        APPROVAL_WRONG_OPERATION,
        APPROVAL_WRONG_ARGS,    /* args digest differs, or the token has none but one was required */
        APPROVAL_EXHAUSTED,     /* nonce already used `uses` times (replay) */
        APPROVAL_REGISTRY_FULL, /* fail closed */
        _APPROVAL_RESULT_MAX,
        _APPROVAL_RESULT_INVALID = -22,
} ApprovalResult;

/* "ok", "malformed", "bad_signature", "expired", "ttl_too_long", "wrong_pod",
 * "wrong_operation", "wrong_args", "exhausted", "registry_full". Every non-OK result maps to
 * error kind "approval_invalid" with this string as detail. */
const char *approval_result_to_string(ApprovalResult r);
ApprovalResult approval_result_from_string(const char *s);

/*
 * approval_token_mint: sign a token.
 * Arguments: secret_key (Ed25519, 64 bytes as libsodium/nacl "signing key + public key");
 *   t: fields (version is forced to 1; nonce "" = generate a random one, written back to
 *   ret_nonce if non-NULL).
 * Returns: 0 and a malloc'd text token in *ret_text, or -EINVAL if a field is out of range.
 */
int approval_token_mint(
        const uint8_t secret_key[APPROVAL_SECRET_KEY_SIZE],
        const ApprovalToken *t,
        char **ret_text,
        char ret_nonce[33]);

/*
 * approval_token_verify: parse and verify a token's signature and syntax (not its binding,
 * expiry or use count: see approval_token_check and the registry).
 * Returns: APPROVAL_OK and *ret filled, APPROVAL_MALFORMED or APPROVAL_BAD_SIGNATURE.
 *   On failure, *reterr (if non-NULL) gets a malloc'd human-readable reason.
 */
ApprovalResult approval_token_verify(
        const char *text, const uint8_t public_key[APPROVAL_PUBLIC_KEY_SIZE], ApprovalToken *ret, char **reterr);

/* Check a verified token against the call it is used for. args_sha256 may be NULL when the
 * operation has no argument binding; a token with args_sha256 then does not match (a token
 * bound to arguments is only good for exactly those arguments). */
ApprovalResult approval_token_check(
        const ApprovalToken *t, const char *pod, const char *operation, const char *args_sha256, int64_t now);

/* Hex SHA-256 of the canonical (sorted, compact) JSON text of args. ret is 65 bytes. For a
 * command, args is the argv array: ["git","push","origin","main"]. */
#include <jansson.h>
int approval_args_sha256(const json_t *args, char ret[65]);

/* Registry: remembers every nonce it accepted until its expiry, counts uses; thread-safe. */
typedef struct ApprovalRegistry ApprovalRegistry;

int approval_registry_new(size_t capacity, ApprovalRegistry **ret);
ApprovalRegistry *approval_registry_free(ApprovalRegistry *r);
static inline void approval_registry_freep(ApprovalRegistry **r) {
        if (*r)
                *r = approval_registry_free(*r);
}

/*
 * approval_registry_use: verify `text` with public_key, check it against (pod, operation,
 * args_sha256) at now, and consume one use of its nonce.
 * Returns: APPROVAL_OK, or the first failing check. A token presented again after all of its
 *   `uses` were consumed gets APPROVAL_EXHAUSTED (that is how replays are refused).
 *   Failed checks consume nothing. reterr as approval_token_verify.
 * Notes: the caller must consume only once the operation is otherwise authorized (policy,
 *   paths, budget), so a refusal for another reason does not eat the approval.
 */
ApprovalResult approval_registry_use(
        ApprovalRegistry *r,
        const char *text,
        const uint8_t public_key[APPROVAL_PUBLIC_KEY_SIZE],
        const char *pod,
        const char *operation,
        const char *args_sha256,
        int64_t now,
        char **reterr);

/* Uses left for a nonce (0 when unknown, exhausted or expired at now). */
uint32_t approval_registry_remaining(ApprovalRegistry *r, const char *nonce, int64_t now);
