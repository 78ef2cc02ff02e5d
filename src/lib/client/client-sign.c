/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Request signing for the node API with libsodium: HMAC-SHA256 over
 * "nucleus-v1\nMETHOD\npath?query\ntimestamp\nnonce\nactor\nhex(sha256(body))".
 * FIXME: call src/lib/auth's signer once it lands, so there is one implementation.
 */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "client-sign.h"
#include "string-util.h"

int client_sign(
        const uint8_t key[static 32],
        const char *method,
        const char *path_query,
        const char *actor,
        const void *body,
        size_t body_len,
        uint64_t now,
        ClientSignedHeaders *ret) {
        uint8_t body_hash[crypto_hash_sha256_BYTES], nonce[16], mac[crypto_auth_hmacsha256_BYTES];
        char body_hex[2 * crypto_hash_sha256_BYTES + 1];
        crypto_auth_hmacsha256_state st;

        if (isempty(method) || !path_query || path_query[0] != '/' || !actor)
                return -EINVAL;
        /* Newlines would let one field masquerade as the next in the signed string. */
        if (string_has_cc(method, NULL) || string_has_cc(path_query, NULL) || string_has_cc(actor, NULL))
                return -EINVAL;
        if (sodium_init() < 0)
                return -EIO;

        crypto_hash_sha256(body_hash, body ?: (const void *) "", body_len);
        sodium_bin2hex(body_hex, sizeof(body_hex), body_hash, sizeof(body_hash));
        randombytes_buf(nonce, sizeof(nonce));

        ClientSignedHeaders h = {};
        (void) snprintf(h.timestamp, sizeof(h.timestamp), "%" PRIu64, now);
        sodium_bin2hex(h.nonce, sizeof(h.nonce), nonce, sizeof(nonce));

        crypto_auth_hmacsha256_init(&st, key, 32);
#define FIELD(s) crypto_auth_hmacsha256_update(&st, (const unsigned char *) (s), strlen(s))
#define NL crypto_auth_hmacsha256_update(&st, (const unsigned char *) "\n", 1)
        FIELD("nucleus-v1");
        NL;
        FIELD(method);
        NL;
        FIELD(path_query);
        NL;
        FIELD(h.timestamp);
        NL;
        FIELD(h.nonce);
        NL;
        FIELD(actor);
        NL;
        FIELD(body_hex);
#undef FIELD
#undef NL
        crypto_auth_hmacsha256_final(&st, mac);
        sodium_memzero(&st, sizeof(st));
        sodium_bin2hex(h.signature, sizeof(h.signature), mac, sizeof(mac));

        *ret = h;
        return 0;
}
