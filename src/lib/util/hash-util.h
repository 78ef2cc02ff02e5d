/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SHA-256 as the project writes it everywhere (audit records, approval and argument digests,
 * image manifests, tool-call digests): 64 lower-case hex characters. libsodium underneath;
 * a library of its own (nucleus-hash) so the static guest init, which links util, does not
 * need libsodium.
 */
#pragma once

#include <stddef.h>

#define SHA256_HEX_SIZE 65 /* 64 hex characters and the NUL */

/* The lower-case hex SHA-256 of n bytes at p (p may be NULL when n is 0). */
void sha256_hex(const void *p, size_t n, char ret[static SHA256_HEX_SIZE]);
