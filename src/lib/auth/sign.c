/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Node API request signing and verification (see sign.h). All header values are untrusted:
 * they are length-capped and syntax-checked before use; the MAC check is constant-time.
 */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "alloc-util.h"
#include "sign.h"
#include "string-util.h"

static const char *const auth_verify_result_table[_AUTH_VERIFY_RESULT_MAX] = {
        [AUTH_VERIFY_OK] = "ok",
        [AUTH_VERIFY_MISSING_HEADER] = "missing_header",
        [AUTH_VERIFY_BAD_TIMESTAMP] = "bad_timestamp",
        [AUTH_VERIFY_SKEW] = "skew",
        [AUTH_VERIFY_BAD_NONCE] = "bad_nonce",
        [AUTH_VERIFY_BAD_ACTOR] = "bad_actor",
        [AUTH_VERIFY_BAD_REQUEST] = "bad_request",
        [AUTH_VERIFY_BAD_SIGNATURE] = "bad_signature",
        [AUTH_VERIFY_REPLAY] = "replay",
        [AUTH_VERIFY_CACHE_FULL] = "cache_full",
};

DEFINE_STRING_TABLE_LOOKUP(auth_verify_result, AuthVerifyResult)

static bool field_ok(const char *s, size_t max) {
        /* Printable ASCII only; in particular no "\n" that would shift the signed lines. */
        size_t n = 0;
        for (; s[n]; n++) {
                if (n >= max)
                        return false;
                if ((unsigned char) s[n] < 0x20 || (unsigned char) s[n] >= 0x7f)
                        return false;
        }
        return true;
}

int auth_parse_timestamp(const char *s, int64_t *ret) {
        size_t n = strlen(s);
        if (n == 0 || n > AUTH_TIMESTAMP_MAX_LEN)
                return -EINVAL;
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        if (v > (uint64_t) INT64_MAX)
                return -ERANGE;
        *ret = (int64_t) v;
        return 0;
}

bool auth_nonce_is_valid(const char *s) {
        size_t n = 0;
        for (; s[n]; n++) {
                if (n >= AUTH_NONCE_MAX_HEX)
                        return false;
                char c = s[n];
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
                        return false;
        }
        return n >= AUTH_NONCE_MIN_HEX && n % 2 == 0;
}

static bool auth_sha256_hex_is_valid(const char *s) {
        /* Exactly 64 lowercase hex: the form that appears in the signed string. */
        size_t n = strnlen(s, 65);
        return n == 64 && strspn(s, "0123456789abcdef") == 64;
}

bool auth_key_id_is_valid(const char *s) {
        size_t n = strnlen(s, AUTH_KEY_ID_MAX + 1);
        return n >= 8 && n <= AUTH_KEY_ID_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789.-") == n;
}

/* HMAC-SHA256 under key of the n lines (joined by "\n", no trailing newline). */
static void mac_lines(
        const uint8_t key[AUTH_KEY_SIZE],
        const char *const *lines,
        size_t n,
        uint8_t ret_mac[crypto_auth_hmacsha256_BYTES]) {
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, key, AUTH_KEY_SIZE);
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        crypto_auth_hmacsha256_update(&st, (const uint8_t *) "\n", 1);
                crypto_auth_hmacsha256_update(&st, (const uint8_t *) lines[i], strlen(lines[i]));
        }
        crypto_auth_hmacsha256_final(&st, ret_mac);
        sodium_memzero(&st, sizeof(st));
}

static int compute_mac(
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
        uint8_t ret_mac[crypto_auth_hmacsha256_BYTES]) {
        uint8_t digest[crypto_hash_sha256_BYTES];
        char digest_hex[crypto_hash_sha256_BYTES * 2 + 1];

        if (!method || !path || !timestamp || !nonce || !actor)
                return -EINVAL;
        if (!field_ok(method, AUTH_METHOD_MAX) || !field_ok(path, AUTH_PATH_MAX) ||
            !field_ok(timestamp, AUTH_TIMESTAMP_MAX_LEN) || !field_ok(nonce, AUTH_NONCE_MAX_HEX) ||
            !field_ok(actor, AUTH_ACTOR_MAX))
                return -EINVAL;
        if (!body && body_len > 0)
                return -EINVAL;
        if (key_id && !auth_key_id_is_valid(key_id))
                return -EINVAL;

        if (body_sha256) {
                if (!auth_sha256_hex_is_valid(body_sha256))
                        return -EINVAL;
                memcpy(digest_hex, body_sha256, sizeof(digest_hex));
        } else {
                crypto_hash_sha256(digest, body ? body : (const void *) "", body_len);
                sodium_bin2hex(digest_hex, sizeof(digest_hex), digest, sizeof(digest));
        }

        /* A request without a key id signs seven lines; with one, the key id is the eighth. */
        const char *parts[] = { "nucleus-v1", method, path, timestamp, nonce, actor, digest_hex, key_id };
        mac_lines(key, parts, key_id ? ELEMENTSOF(parts) : ELEMENTSOF(parts) - 1, ret_mac);
        return 0;
}

int auth_sign_request(
        const uint8_t key[AUTH_KEY_SIZE],
        const char *method,
        const char *path,
        const char *timestamp,
        const char *nonce,
        const char *actor,
        const void *body,
        size_t body_len,
        char ret_hex[AUTH_SIGNATURE_HEX_LEN + 1]) {
        return auth_sign_request_key_id(
                key, NULL, method, path, timestamp, nonce, actor, body, body_len, NULL, ret_hex);
}

int auth_sign_response(
        const uint8_t key[AUTH_KEY_SIZE],
        const char *nonce,
        unsigned status,
        const void *body,
        size_t body_len,
        char ret_hex[AUTH_SIGNATURE_HEX_LEN + 1]) {
        uint8_t digest[crypto_hash_sha256_BYTES], mac[crypto_auth_hmacsha256_BYTES];
        char digest_hex[crypto_hash_sha256_BYTES * 2 + 1], status_text[16];

        if (!nonce || !auth_nonce_is_valid(nonce) || status < 100 || status > 999)
                return -EINVAL;
        bool stream = !body && body_len == SIZE_MAX;
        if (!body && body_len > 0 && !stream)
                return -EINVAL;
        if (!stream) {
                crypto_hash_sha256(digest, body ? body : (const void *) "", body_len);
                sodium_bin2hex(digest_hex, sizeof(digest_hex), digest, sizeof(digest));
        }
        (void) snprintf(status_text, sizeof(status_text), "%u", status);
        const char *parts[] = {
                "nucleus-v1-response", nonce, status_text, stream ? AUTH_RESPONSE_STREAM : digest_hex
        };
        mac_lines(key, parts, ELEMENTSOF(parts), mac);
        sodium_bin2hex(ret_hex, AUTH_SIGNATURE_HEX_LEN + 1, mac, sizeof(mac));
        return 0;
}

int auth_sign_request_digest(
        const uint8_t key[AUTH_KEY_SIZE],
        const char *method,
        const char *path,
        const char *timestamp,
        const char *nonce,
        const char *actor,
        const char *body_sha256,
        char ret_hex[AUTH_SIGNATURE_HEX_LEN + 1]) {
        if (!body_sha256)
                return -EINVAL;
        return auth_sign_request_key_id(
                key, NULL, method, path, timestamp, nonce, actor, NULL, 0, body_sha256, ret_hex);
}

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
        char ret_hex[AUTH_SIGNATURE_HEX_LEN + 1]) {
        uint8_t mac[crypto_auth_hmacsha256_BYTES];
        int r = compute_mac(
                key,
                key_id,
                method,
                path,
                timestamp,
                nonce,
                actor,
                body_sha256 ? NULL : body,
                body_sha256 ? 0 : body_len,
                body_sha256,
                mac);
        if (r < 0)
                return r;
        sodium_bin2hex(ret_hex, AUTH_SIGNATURE_HEX_LEN + 1, mac, sizeof(mac));
        return 0;
}

bool auth_verify_response(
        const uint8_t key[AUTH_KEY_SIZE],
        const char *nonce,
        unsigned status,
        const void *body,
        size_t body_len,
        const char *mac) {
        char want[AUTH_SIGNATURE_HEX_LEN + 1], got[AUTH_SIGNATURE_HEX_LEN + 1] = {};
        if (!mac || strnlen(mac, AUTH_SIGNATURE_HEX_LEN + 1) != AUTH_SIGNATURE_HEX_LEN)
                return false;
        if (auth_sign_response(key, nonce, status, body, body_len, want) < 0)
                return false;
        /* Compare lower-cased text in constant time (hex is case-insensitive on the wire). */
        for (size_t i = 0; i < AUTH_SIGNATURE_HEX_LEN; i++)
                got[i] = (char) ((mac[i] >= 'A' && mac[i] <= 'F') ? mac[i] - 'A' + 'a' : mac[i]);
        return sodium_memcmp(want, got, AUTH_SIGNATURE_HEX_LEN) == 0;
}

int auth_make_headers(
        const uint8_t key[AUTH_KEY_SIZE],
        const char *method,
        const char *path,
        const char *actor,
        const void *body,
        size_t body_len,
        AuthHeaders *ret) {
        AuthHeaders h = {};
        uint8_t rnd[AUTH_NONCE_MIN_HEX / 2];

        if (sodium_init() < 0)
                return -EIO;
        (void) snprintf(h.timestamp, sizeof(h.timestamp), "%lld", (long long) time(NULL));
        randombytes_buf(rnd, sizeof(rnd));
        sodium_bin2hex(h.nonce, sizeof(h.nonce), rnd, sizeof(rnd));
        int r = auth_sign_request(
                key, method, path, h.timestamp, h.nonce, actor ? actor : "", body, body_len, h.signature);
        if (r < 0)
                return r;
        *ret = h;
        return 0;
}

static AuthVerifyResult precheck(
        const AuthRequest *req,
        int64_t now,
        const char **reterr_header,
        int64_t *ret_ts,
        uint8_t want[crypto_auth_hmacsha256_BYTES]) {
        int64_t ts;

        const struct {
                const char *value;
                const char *name;
        } required[] = {
                { req->timestamp, AUTH_HEADER_TIMESTAMP },
                { req->nonce, AUTH_HEADER_NONCE },
                { req->actor, AUTH_HEADER_ACTOR },
                { req->signature, AUTH_HEADER_SIGNATURE },
        };
        for (size_t i = 0; i < ELEMENTSOF(required); i++)
                if (!required[i].value) {
                        if (reterr_header)
                                *reterr_header = required[i].name;
                        return AUTH_VERIFY_MISSING_HEADER;
                }

        if (auth_parse_timestamp(req->timestamp, &ts) < 0)
                return AUTH_VERIFY_BAD_TIMESTAMP;
        if (ts > now ? ts - now > AUTH_MAX_SKEW_SEC : now - ts > AUTH_MAX_SKEW_SEC)
                return AUTH_VERIFY_SKEW;
        if (!auth_nonce_is_valid(req->nonce))
                return AUTH_VERIFY_BAD_NONCE;
        if (!field_ok(req->actor, AUTH_ACTOR_MAX))
                return AUTH_VERIFY_BAD_ACTOR;
        if (!req->method || !req->path || isempty(req->method) || isempty(req->path) ||
            !field_ok(req->method, AUTH_METHOD_MAX) || !field_ok(req->path, AUTH_PATH_MAX))
                return AUTH_VERIFY_BAD_REQUEST;
        if (!req->body && req->body_len > 0)
                return AUTH_VERIFY_BAD_REQUEST;

        /* Exactly 64 hex chars (either case), decoded; anything else is a bad signature. */
        if (strnlen(req->signature, AUTH_SIGNATURE_HEX_LEN + 1) != AUTH_SIGNATURE_HEX_LEN)
                return AUTH_VERIFY_BAD_SIGNATURE;
        size_t got = 0;
        const char *end = NULL;
        if (sodium_hex2bin(
                    want, crypto_auth_hmacsha256_BYTES, req->signature, AUTH_SIGNATURE_HEX_LEN, NULL, &got, &end) !=
                    0 ||
            got != crypto_auth_hmacsha256_BYTES || *end != '\0')
                return AUTH_VERIFY_BAD_SIGNATURE;
        if (req->body_sha256 && !auth_sha256_hex_is_valid(req->body_sha256))
                return AUTH_VERIFY_BAD_REQUEST;
        if (req->key_id && !auth_key_id_is_valid(req->key_id))
                return AUTH_VERIFY_BAD_REQUEST;
        *ret_ts = ts;
        return AUTH_VERIFY_OK;
}

AuthVerifyResult auth_precheck_request(const AuthRequest *req, int64_t now, const char **reterr_header) {
        uint8_t want[crypto_auth_hmacsha256_BYTES];
        int64_t ts;
        assert(req);
        return precheck(req, now, reterr_header, &ts, want);
}

AuthVerifyResult auth_verify_request(
        const uint8_t key[AUTH_KEY_SIZE],
        const AuthRequest *req,
        AuthNonceCache *cache,
        int64_t now,
        const char **reterr_header) {
        uint8_t mac[crypto_auth_hmacsha256_BYTES], want[crypto_auth_hmacsha256_BYTES];
        AuthVerifyResult vr;
        int64_t ts = 0;
        int r;

        assert(key && req && cache);
        vr = precheck(req, now, reterr_header, &ts, want);
        if (vr != AUTH_VERIFY_OK)
                return vr;

        r = compute_mac(
                key,
                req->key_id,
                req->method,
                req->path,
                req->timestamp,
                req->nonce,
                req->actor,
                req->body_sha256 ? NULL : req->body,
                req->body_sha256 ? 0 : req->body_len,
                req->body_sha256,
                mac);
        if (r < 0)
                return AUTH_VERIFY_BAD_REQUEST;
        if (sodium_memcmp(mac, want, sizeof(mac)) != 0)
                return AUTH_VERIFY_BAD_SIGNATURE;

        /* Remember the nonce for as long as this timestamp could still pass the skew check.
         * Nonces are case-folded so "AB.." and "ab.." are one nonce. */
        char folded[AUTH_NONCE_MAX_HEX + 1];
        size_t i = 0;
        for (; req->nonce[i] && i < AUTH_NONCE_MAX_HEX; i++)
                folded[i] =
                        (char) ((req->nonce[i] >= 'A' && req->nonce[i] <= 'F') ? req->nonce[i] + 32
                                                                               : req->nonce[i]);
        folded[i] = 0;
        r = auth_nonce_cache_insert(cache, folded, ts + AUTH_MAX_SKEW_SEC + 1, now);
        if (r == -EEXIST)
                return AUTH_VERIFY_REPLAY;
        if (r < 0)
                return AUTH_VERIFY_CACHE_FULL;
        return AUTH_VERIFY_OK;
}

/* Nonce cache: open addressing over 2*capacity slots keyed by a keyed BLAKE2b digest of the
 * nonce (a per-cache random key, so peers cannot aim collisions). Expired slots are reused in
 * place; when `used` reaches capacity the table is rebuilt without expired entries, and if
 * it is still full the insert fails closed. */
typedef struct NonceSlot {
        uint8_t digest[16];
        int64_t expires_at;
        bool used;
} NonceSlot;

struct AuthNonceCache {
        pthread_mutex_t lock;
        NonceSlot *slots;
        size_t n_slots; /* power of two, >= 2 * capacity */
        size_t capacity;
        size_t used;
        uint8_t key[crypto_generichash_KEYBYTES];
};

int auth_nonce_cache_new(size_t capacity, AuthNonceCache **ret) {
        if (sodium_init() < 0)
                return -EIO;
        if (capacity == 0)
                capacity = AUTH_NONCE_CACHE_DEFAULT_CAPACITY;
        if (capacity > (1U << 24))
                return -EINVAL;
        AuthNonceCache *c = xnew0(AuthNonceCache, 1);
        size_t n = 16;
        while (n < capacity * 2)
                n <<= 1;
        c->slots = xnew0(NonceSlot, n);
        c->n_slots = n;
        c->capacity = capacity;
        randombytes_buf(c->key, sizeof(c->key));
        pthread_mutex_init(&c->lock, NULL);
        *ret = c;
        return 0;
}

AuthNonceCache *auth_nonce_cache_free(AuthNonceCache *c) {
        if (!c)
                return NULL;
        pthread_mutex_destroy(&c->lock);
        free(c->slots);
        sodium_memzero(c->key, sizeof(c->key));
        free(c);
        return NULL;
}

static size_t slot_index(const AuthNonceCache *c, const uint8_t digest[16]) {
        uint64_t h;
        memcpy(&h, digest, sizeof(h));
        return (size_t) (h & (c->n_slots - 1));
}

static void cache_rebuild(AuthNonceCache *c, int64_t now) {
        NonceSlot *old = c->slots;
        c->slots = xnew0(NonceSlot, c->n_slots);
        c->used = 0;
        for (size_t i = 0; i < c->n_slots; i++) {
                if (!old[i].used || old[i].expires_at <= now)
                        continue;
                size_t j = slot_index(c, old[i].digest);
                while (c->slots[j].used)
                        j = (j + 1) & (c->n_slots - 1);
                c->slots[j] = old[i];
                c->used++;
        }
        free(old);
}

int auth_nonce_cache_insert(AuthNonceCache *c, const char *nonce, int64_t expires_at, int64_t now) {
        uint8_t digest[16];
        int r;

        crypto_generichash(
                digest, sizeof(digest), (const uint8_t *) nonce, strlen(nonce), c->key, sizeof(c->key));

        pthread_mutex_lock(&c->lock);
        size_t i = slot_index(c, digest), reuse = SIZE_MAX;
        for (;; i = (i + 1) & (c->n_slots - 1)) {
                NonceSlot *s = &c->slots[i];
                if (!s->used)
                        break;
                if (memcmp(s->digest, digest, sizeof(digest)) == 0) {
                        if (s->expires_at > now) {
                                r = -EEXIST;
                                goto finish;
                        }
                        reuse = i; /* same nonce, expired: renew in place */
                        break;
                }
                if (reuse == SIZE_MAX && s->expires_at <= now)
                        reuse = i;
        }
        if (reuse != SIZE_MAX) {
                memcpy(c->slots[reuse].digest, digest, sizeof(digest));
                c->slots[reuse].expires_at = expires_at;
                r = 0;
                goto finish;
        }
        if (c->used >= c->capacity) {
                cache_rebuild(c, now);
                if (c->used >= c->capacity) {
                        r = -ENOSPC;
                        goto finish;
                }
                i = slot_index(c, digest);
                while (c->slots[i].used)
                        i = (i + 1) & (c->n_slots - 1);
        }
        memcpy(c->slots[i].digest, digest, sizeof(digest));
        c->slots[i].expires_at = expires_at;
        c->slots[i].used = true;
        c->used++;
        r = 0;
finish:
        pthread_mutex_unlock(&c->lock);
        return r;
}

size_t auth_nonce_cache_size(AuthNonceCache *c) {
        pthread_mutex_lock(&c->lock);
        size_t n = c->used;
        pthread_mutex_unlock(&c->lock);
        return n;
}
