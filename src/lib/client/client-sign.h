/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one place the client signs a request (DESIGN.md §4, docs/api.md "Signing").
 * Kept isolated so it can defer to src/lib/auth's signer: inputs are our own request, the key
 * is the node secret (never logged). The signature comes from src/lib/auth/sign.h.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct ClientSignedHeaders {
        char timestamp[24];      /* decimal unix seconds */
        char nonce[33];          /* 32 lowercase hex chars (16 random bytes) */
        char signature[65];      /* lowercase hex HMAC-SHA256 */
        char content_sha256[65]; /* X-Nucleus-Content-SHA256: lowercase hex SHA-256 of the body */
} ClientSignedHeaders;

/* Computes the headers for METHOD path_query body with the 32-byte key at time now (unix
 * seconds). key_id: NULL for the node key, else the id of the scoped credential whose secret
 * key is (sent as X-Nucleus-Key-Id and signed). Returns 0 or -EINVAL (actor or method with
 * control characters or newlines, a malformed key id). */
int client_sign(
        const uint8_t key[static 32],
        const char *key_id,
        const char *method,
        const char *path_query,
        const char *actor,
        const void *body,
        size_t body_len,
        uint64_t now,
        ClientSignedHeaders *ret);

/* As client_sign, for a body known by its SHA-256 (64 lowercase hex): a streamed upload. */
int client_sign_digest(
        const uint8_t key[static 32],
        const char *key_id,
        const char *method,
        const char *path_query,
        const char *actor,
        const char *body_sha256,
        uint64_t now,
        ClientSignedHeaders *ret);
