/* SPDX-License-Identifier: Apache-2.0 */
#include <sodium.h>
#include <stdint.h>

#include "hash-util.h"

void sha256_hex(const void *p, size_t n, char ret[static SHA256_HEX_SIZE]) {
        uint8_t d[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(d, n > 0 ? p : (const void *) "", n);
        sodium_bin2hex(ret, SHA256_HEX_SIZE, d, sizeof d);
}
