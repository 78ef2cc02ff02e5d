/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the approval token parser: any text, verified against a fixed public key. Inputs that
 * start with "SIGN:" have their payload part signed first, so the JSON checks are reached. */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "approval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static uint8_t pk[32], sk[64];
        static int init;
        if (size > 4096)
                return 0;
        if (!init) {
                uint8_t seed[32] = { 42 };
                if (sodium_init() < 0)
                        abort();
                crypto_sign_seed_keypair(pk, sk, seed);
                init = 1;
        }
        char *text = malloc(size * 2 + 200);
        if (!text)
                return 0;
        if (size >= 5 && memcmp(data, "SIGN:", 5) == 0) {
                /* nat1.<b64(payload)>.<b64(sig)> for the remaining bytes as payload */
                size_t plen = size - 5;
                strcpy(text, "nat1.");
                sodium_bin2base64(
                        text + 5, size * 2 + 100, data + 5, plen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
                size_t hl = strlen(text);
                uint8_t sig[64];
                crypto_sign_detached(sig, NULL, (const uint8_t *) text, hl, sk);
                text[hl] = '.';
                sodium_bin2base64(text + hl + 1, 100, sig, 64, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        } else {
                memcpy(text, data, size);
                text[size] = 0;
        }
        ApprovalToken t;
        char *err = NULL;
        if (approval_token_verify(text, pk, &t, &err) == APPROVAL_OK) {
                if (t.uses < 1 || t.uses > APPROVAL_USES_MAX || strlen(t.nonce) != 32)
                        abort();
                (void) approval_token_check(&t, "pod", "op", NULL, 0);
        }
        free(err);
        free(text);
        return 0;
}
