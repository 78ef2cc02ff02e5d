/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the request-signature verifier: input = NUL-separated method, path, timestamp, nonce,
 * actor, signature, then (when the first byte is odd) a key id (X-Nucleus-Key-Id), then the
 * body. Must never crash; must accept only a correct MAC for the fixed key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static AuthNonceCache *cache;
        static const uint8_t key[AUTH_KEY_SIZE] = { 7 };
        char *fields[8] = {};
        if (size > 16384)
                return 0;
        if (!cache && auth_nonce_cache_new(1024, &cache) < 0)
                abort();
        char *buf = malloc(size + 1);
        if (!buf)
                return 0;
        memcpy(buf, data, size);
        buf[size] = 0;
        size_t n = 0;
        char *p = buf;
        size_t want = size > 0 && (data[0] & 1) ? 7 : 6;
        while (n < want && p < buf + size) {
                fields[n++] = p;
                p += strlen(p) + 1;
        }
        const char *body = p < buf + size ? p : "";
        size_t body_len = p < buf + size ? (size_t) (buf + size - p) : 0;
        AuthRequest r = { fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], body, body_len };
        r.key_id = want == 7 ? fields[6] : NULL;
        int64_t ts = 0;
        if (fields[2])
                (void) auth_parse_timestamp(fields[2], &ts);
        AuthVerifyResult v = auth_verify_request(key, &r, cache, ts, NULL);
        if (v == AUTH_VERIFY_OK) {
                /* Only possible if the input carries the right MAC for this key: recompute. */
                char sig[AUTH_SIGNATURE_HEX_LEN + 1];
                if (auth_sign_request_key_id(
                            key, r.key_id, r.method, r.path, r.timestamp, r.nonce, r.actor, body, body_len, NULL, sig) <
                            0 ||
                    strcasecmp(sig, r.signature) != 0)
                        abort();
        }
        free(buf);
        return 0;
}
