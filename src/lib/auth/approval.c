/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ed25519 approval tokens and the use-counting registry (see approval.h, docs/approvals.md).
 * Token text is untrusted: every size is capped before decoding, the signature is verified
 * before the payload is parsed, and the payload must be canonical JSON with exactly the
 * documented fields.
 */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "alloc-util.h"
#include "approval.h"
#include "hash-util.h"
#include "id-util.h"
#include "json-util.h"
#include "string-util.h"

static const char *const approval_result_table[_APPROVAL_RESULT_MAX] = {
        [APPROVAL_OK] = "ok",
        [APPROVAL_MALFORMED] = "malformed",
        [APPROVAL_BAD_SIGNATURE] = "bad_signature",
        [APPROVAL_EXPIRED] = "expired",
        [APPROVAL_TTL_TOO_LONG] = "ttl_too_long",
        [APPROVAL_WRONG_POD] = "wrong_pod",
        [APPROVAL_WRONG_OPERATION] = "wrong_operation",
        [APPROVAL_WRONG_ARGS] = "wrong_args",
        [APPROVAL_EXHAUSTED] = "exhausted",
        [APPROVAL_REGISTRY_FULL] = "registry_full",
};

DEFINE_STRING_TABLE_LOOKUP(approval_result, ApprovalResult)

static bool is_lower_hex(const char *s, size_t len) {
        if (strlen(s) != len)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static bool operation_ok(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > APPROVAL_OP_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
                        return false;
        return true;
}

int approval_args_sha256(const json_t *args, char ret[65]) {
        if (!args)
                return -EINVAL;
        _cleanup_free_ char *text = json_dump_canonical(args);
        sha256_hex(text, strlen(text), ret);
        return 0;
}

static json_t *token_to_json(const ApprovalToken *t) {
        json_t *j = json_object();
        if (t->has_args)
                json_object_set_new(j, "args_sha256", json_string(t->args_sha256));
        json_object_set_new(j, "exp", json_integer(t->expires_at));
        json_object_set_new(j, "nonce", json_string(t->nonce));
        json_object_set_new(j, "op", json_string(t->operation));
        json_object_set_new(j, "pod", json_string(t->pod));
        json_object_set_new(j, "uses", json_integer(t->uses));
        json_object_set_new(j, "v", json_integer(1));
        return j;
}

static bool token_fields_ok(const ApprovalToken *t) {
        return pod_id_valid(t->pod) && operation_ok(t->operation) &&
                (!t->has_args || is_lower_hex(t->args_sha256, 64)) && t->uses >= 1 &&
                t->uses <= APPROVAL_USES_MAX && t->expires_at > 0 && is_lower_hex(t->nonce, 32);
}

int approval_token_mint(
        const uint8_t secret_key[APPROVAL_SECRET_KEY_SIZE],
        const ApprovalToken *t,
        char **ret_text,
        char ret_nonce[33]) {
        ApprovalToken tok = *t;
        uint8_t sig[crypto_sign_BYTES];

        if (sodium_init() < 0)
                return -EIO;
        tok.version = 1;
        if (isempty(tok.nonce)) {
                uint8_t rnd[16];
                randombytes_buf(rnd, sizeof(rnd));
                sodium_bin2hex(tok.nonce, sizeof(tok.nonce), rnd, sizeof(rnd));
        }
        if (!tok.has_args)
                tok.args_sha256[0] = 0;
        if (!token_fields_ok(&tok))
                return -EINVAL;

        _cleanup_json_ json_t *j = token_to_json(&tok);
        _cleanup_free_ char *payload = json_dump_canonical(j);
        size_t plen = strlen(payload);
        size_t b64len = sodium_base64_ENCODED_LEN(plen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        size_t siglen = sodium_base64_ENCODED_LEN(sizeof(sig), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        size_t prefix = strlen(APPROVAL_TOKEN_PREFIX);
        char *text = xmalloc(prefix + b64len + 1 + siglen);

        memcpy(text, APPROVAL_TOKEN_PREFIX, prefix);
        sodium_bin2base64(
                text + prefix, b64len, (const uint8_t *) payload, plen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        size_t signed_len = strlen(text);
        crypto_sign_detached(sig, NULL, (const uint8_t *) text, signed_len, secret_key);
        text[signed_len] = '.';
        sodium_bin2base64(
                text + signed_len + 1, siglen, sig, sizeof(sig), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        if (ret_nonce)
                memcpy(ret_nonce, tok.nonce, 33);
        *ret_text = text;
        return 0;
}

#define FAIL(res, ...)                                    \
        ({                                                \
                if (reterr)                               \
                        *reterr = xasprintf(__VA_ARGS__); \
                (res);                                    \
        })

static int copy_string_field(json_t *j, const char *key, char *buf, size_t bufsize, bool required) {
        json_t *v = json_object_get(j, key);
        if (!v)
                return required ? -ENOENT : 0;
        if (!json_is_string(v) || json_string_length(v) >= bufsize ||
            strlen(json_string_value(v)) != json_string_length(v))
                return -EINVAL;
        memcpy(buf, json_string_value(v), json_string_length(v) + 1);
        return 1;
}

ApprovalResult approval_token_verify(
        const char *text, const uint8_t public_key[APPROVAL_PUBLIC_KEY_SIZE], ApprovalToken *ret, char **reterr) {
        uint8_t payload[APPROVAL_PAYLOAD_MAX + 1], sig[crypto_sign_BYTES];
        size_t plen = 0, slen = 0;
        const char *end = NULL;
        ApprovalToken t = {};

        if (sodium_init() < 0)
                return FAIL(APPROVAL_MALFORMED, "libsodium unavailable");
        if (!text)
                return FAIL(APPROVAL_MALFORMED, "no token");
        size_t n = strnlen(text, APPROVAL_TOKEN_MAX + 1);
        if (n > APPROVAL_TOKEN_MAX)
                return FAIL(APPROVAL_MALFORMED, "token longer than %u bytes", APPROVAL_TOKEN_MAX);
        const char *body = startswith(text, APPROVAL_TOKEN_PREFIX);
        if (!body)
                return FAIL(APPROVAL_MALFORMED, "token does not start with \"%s\"", APPROVAL_TOKEN_PREFIX);
        const char *dot = strchr(body, '.');
        if (!dot || dot == body || strchr(dot + 1, '.') || dot[1] == 0)
                return FAIL(APPROVAL_MALFORMED, "token must be nat1.<payload>.<signature>");

        size_t b64plen = (size_t) (dot - body);
        if (b64plen > sodium_base64_ENCODED_LEN(APPROVAL_PAYLOAD_MAX, sodium_base64_VARIANT_URLSAFE_NO_PADDING))
                return FAIL(APPROVAL_MALFORMED, "token payload too large");
        if (sodium_base642bin(
                    payload,
                    APPROVAL_PAYLOAD_MAX,
                    body,
                    b64plen,
                    NULL,
                    &plen,
                    &end,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
            end != dot)
                return FAIL(APPROVAL_MALFORMED, "token payload is not base64url without padding");
        if (sodium_base642bin(
                    sig,
                    sizeof(sig),
                    dot + 1,
                    strlen(dot + 1),
                    NULL,
                    &slen,
                    &end,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
            *end != 0 || slen != sizeof(sig))
                return FAIL(APPROVAL_MALFORMED, "token signature is not 64 bytes of base64url");

        if (crypto_sign_verify_detached(sig, (const uint8_t *) text, (size_t) (dot - text), public_key) != 0)
                return FAIL(APPROVAL_BAD_SIGNATURE, "token signature does not verify with the approver key");

        /* Signed by the approver; still parse strictly (defence against a buggy minter). */
        _cleanup_free_ char *perr = NULL;
        _cleanup_json_ json_t *j = NULL;
        if (memchr(payload, 0, plen))
                return FAIL(APPROVAL_MALFORMED, "token payload contains NUL");
        if (json_parse_strict((const char *) payload, plen, APPROVAL_PAYLOAD_MAX, &j, &perr) < 0)
                return FAIL(APPROVAL_MALFORMED, "token payload: %s", perr ? perr : "bad JSON");
        if (!json_is_object(j))
                return FAIL(APPROVAL_MALFORMED, "token payload is not an object");
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v) {
                if (!streq(key, "v") && !streq(key, "pod") && !streq(key, "op") && !streq(key, "args_sha256") &&
                    !streq(key, "uses") && !streq(key, "exp") && !streq(key, "nonce"))
                        return FAIL(APPROVAL_MALFORMED, "token payload has unknown field \"%s\"", key);
        }

        v = json_object_get(j, "v");
        if (!json_is_integer(v) || json_integer_value(v) != 1)
                return FAIL(APPROVAL_MALFORMED, "token version must be 1");
        t.version = 1;
        if (copy_string_field(j, "pod", t.pod, sizeof(t.pod), true) <= 0 || !pod_id_valid(t.pod))
                return FAIL(APPROVAL_MALFORMED, "token field \"pod\" missing or invalid");
        if (copy_string_field(j, "op", t.operation, sizeof(t.operation), true) <= 0 ||
            !operation_ok(t.operation))
                return FAIL(APPROVAL_MALFORMED, "token field \"op\" missing or invalid");
        int r = copy_string_field(j, "args_sha256", t.args_sha256, sizeof(t.args_sha256), false);
        if (r < 0 || (r > 0 && !is_lower_hex(t.args_sha256, 64)))
                return FAIL(APPROVAL_MALFORMED, "token field \"args_sha256\" must be 64 lowercase hex");
        t.has_args = r > 0;
        if (copy_string_field(j, "nonce", t.nonce, sizeof(t.nonce), true) <= 0 || !is_lower_hex(t.nonce, 32))
                return FAIL(APPROVAL_MALFORMED, "token field \"nonce\" must be 32 lowercase hex");
        v = json_object_get(j, "uses");
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > APPROVAL_USES_MAX)
                return FAIL(APPROVAL_MALFORMED, "token field \"uses\" must be 1..%u", APPROVAL_USES_MAX);
        t.uses = (uint32_t) json_integer_value(v);
        v = json_object_get(j, "exp");
        if (!json_is_integer(v) || json_integer_value(v) <= 0)
                return FAIL(APPROVAL_MALFORMED, "token field \"exp\" must be a positive unix time");
        t.expires_at = (int64_t) json_integer_value(v);

        _cleanup_free_ char *canon = json_dump_canonical(j);
        if (strlen(canon) != plen || memcmp(canon, payload, plen) != 0)
                return FAIL(APPROVAL_MALFORMED, "token payload is not canonical JSON");

        if (ret)
                *ret = t;
        return APPROVAL_OK;
}

ApprovalResult approval_token_check(
        const ApprovalToken *t, const char *pod, const char *operation, const char *args_sha256, int64_t now) {
        if (now >= t->expires_at)
                return APPROVAL_EXPIRED;
        if (!pod || !streq(t->pod, pod))
                return APPROVAL_WRONG_POD;
        if (!operation || !streq(t->operation, operation))
                return APPROVAL_WRONG_OPERATION;
        if (t->has_args) {
                if (!args_sha256 || strlen(args_sha256) != 64 ||
                    !memeq_consttime(t->args_sha256, args_sha256, 64))
                        return APPROVAL_WRONG_ARGS;
        }
        return APPROVAL_OK;
}

/* Registry: a fixed-capacity array; entries are dropped once expired. Small by design
 * (approvals are rare), so a linear scan under the lock is fine. */
typedef struct ApprovalEntry {
        char nonce[33];
        uint8_t payload_digest[32]; /* the nonce is bound to the first token that carried it */
        int64_t expires_at;
        uint32_t remaining;
        bool used;
} ApprovalEntry;

struct ApprovalRegistry {
        pthread_mutex_t lock;
        ApprovalEntry *entries;
        size_t capacity;
};

int approval_registry_new(size_t capacity, ApprovalRegistry **ret) {
        if (capacity == 0)
                capacity = APPROVAL_REGISTRY_DEFAULT_CAPACITY;
        if (capacity > 1U << 20)
                return -EINVAL;
        ApprovalRegistry *r = xnew0(ApprovalRegistry, 1);
        r->entries = xnew0(ApprovalEntry, capacity);
        r->capacity = capacity;
        pthread_mutex_init(&r->lock, NULL);
        *ret = r;
        return 0;
}

ApprovalRegistry *approval_registry_free(ApprovalRegistry *r) {
        if (!r)
                return NULL;
        pthread_mutex_destroy(&r->lock);
        free(r->entries);
        free(r);
        return NULL;
}

ApprovalResult approval_registry_use(
        ApprovalRegistry *r,
        const char *text,
        const uint8_t public_key[APPROVAL_PUBLIC_KEY_SIZE],
        const char *pod,
        const char *operation,
        const char *args_sha256,
        int64_t now,
        char **reterr) {
        ApprovalToken t;
        ApprovalResult res;
        uint8_t digest[32];

        res = approval_token_verify(text, public_key, &t, reterr);
        if (res != APPROVAL_OK)
                return res;
        res = approval_token_check(&t, pod, operation, args_sha256, now);
        if (res != APPROVAL_OK) {
                if (reterr)
                        *reterr = xasprintf(
                                "approval token %s (token: pod %s, operation %s)",
                                approval_result_to_string(res),
                                t.pod,
                                t.operation);
                return res;
        }
        if (t.expires_at - now > APPROVAL_MAX_TTL_SEC) {
                if (reterr)
                        *reterr = xasprintf(
                                "approval token expires more than %d s from now", APPROVAL_MAX_TTL_SEC);
                return APPROVAL_TTL_TOO_LONG;
        }
        crypto_hash_sha256(digest, (const uint8_t *) text, strlen(text));

        pthread_mutex_lock(&r->lock);
        ApprovalEntry *free_slot = NULL, *e = NULL;
        for (size_t i = 0; i < r->capacity; i++) {
                ApprovalEntry *x = &r->entries[i];
                if (x->used && x->expires_at <= now)
                        x->used = false; /* expired: its token can never verify again */
                if (!x->used) {
                        if (!free_slot)
                                free_slot = x;
                        continue;
                }
                if (streq(x->nonce, t.nonce)) {
                        e = x;
                        break;
                }
        }
        if (e) {
                if (sodium_memcmp(e->payload_digest, digest, sizeof(digest)) != 0 || e->remaining == 0)
                        res = APPROVAL_EXHAUSTED;
                else
                        e->remaining--;
        } else if (!free_slot)
                res = APPROVAL_REGISTRY_FULL;
        else {
                *free_slot = (ApprovalEntry){
                        .expires_at = t.expires_at,
                        .remaining = t.uses - 1,
                        .used = true,
                };
                memcpy(free_slot->nonce, t.nonce, sizeof(t.nonce));
                memcpy(free_slot->payload_digest, digest, sizeof(digest));
        }
        pthread_mutex_unlock(&r->lock);

        if (res != APPROVAL_OK && reterr)
                *reterr = xasprintf(
                        res == APPROVAL_EXHAUSTED ? "approval token already used (nonce %s)"
                                                  : "approval registry full (nonce %s refused)",
                        t.nonce);
        return res;
}

uint32_t approval_registry_remaining(ApprovalRegistry *r, const char *nonce, int64_t now) {
        uint32_t n = 0;
        pthread_mutex_lock(&r->lock);
        for (size_t i = 0; i < r->capacity; i++)
                if (r->entries[i].used && r->entries[i].expires_at > now && streq(r->entries[i].nonce, nonce)) {
                        n = r->entries[i].remaining;
                        break;
                }
        pthread_mutex_unlock(&r->lock);
        return n;
}
