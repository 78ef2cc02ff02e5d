/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Request signing for the node API: fresh timestamp and nonce here, the signature itself from
 * src/lib/auth (auth_sign_request), so client and node share one implementation of the
 * string to sign.
 */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "client-sign.h"
#include "sign.h"
#include "string-util.h"

int client_sign(
        const uint8_t key[static 32],
        const char *key_id,
        const char *method,
        const char *path_query,
        const char *actor,
        const void *body,
        size_t body_len,
        uint64_t now,
        ClientSignedHeaders *ret) {
        uint8_t nonce[16];
        ClientSignedHeaders h = {};
        int r;

        if (isempty(method) || !path_query || path_query[0] != '/' || !actor)
                return -EINVAL;
        /* Newlines would let one field masquerade as the next in the signed string. */
        if (string_has_cc(method, NULL) || string_has_cc(path_query, NULL) || string_has_cc(actor, NULL))
                return -EINVAL;
        if (sodium_init() < 0)
                return -EIO;

        randombytes_buf(nonce, sizeof(nonce));
        (void) snprintf(h.timestamp, sizeof(h.timestamp), "%" PRIu64, now);
        sodium_bin2hex(h.nonce, sizeof(h.nonce), nonce, sizeof(nonce));
        r = auth_sign_request_key_id(
                key, key_id, method, path_query, h.timestamp, h.nonce, actor, body, body_len, NULL, h.signature);
        if (r < 0)
                return r;
        /* Declared so the node can check the MAC before it reads the body (docs/api.md). */
        uint8_t digest[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(digest, body ? body : (const void *) "", body ? body_len : 0);
        sodium_bin2hex(h.content_sha256, sizeof(h.content_sha256), digest, sizeof(digest));
        *ret = h;
        return 0;
}

int client_sign_digest(
        const uint8_t key[static 32],
        const char *key_id,
        const char *method,
        const char *path_query,
        const char *actor,
        const char *body_sha256,
        uint64_t now,
        ClientSignedHeaders *ret) {
        uint8_t nonce[16];
        ClientSignedHeaders h = {};

        if (isempty(method) || !path_query || path_query[0] != '/' || !actor || !body_sha256 ||
            strlen(body_sha256) != 64)
                return -EINVAL;
        if (string_has_cc(method, NULL) || string_has_cc(path_query, NULL) || string_has_cc(actor, NULL))
                return -EINVAL;
        if (sodium_init() < 0)
                return -EIO;
        randombytes_buf(nonce, sizeof(nonce));
        (void) snprintf(h.timestamp, sizeof(h.timestamp), "%" PRIu64, now);
        sodium_bin2hex(h.nonce, sizeof(h.nonce), nonce, sizeof(nonce));
        int r = auth_sign_request_key_id(
                key, key_id, method, path_query, h.timestamp, h.nonce, actor, NULL, 0, body_sha256, h.signature);
        if (r < 0)
                return r;
        memcpy(h.content_sha256, body_sha256, 64);
        h.content_sha256[64] = 0;
        *ret = h;
        return 0;
}
