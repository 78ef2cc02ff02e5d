/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helper (not installed): check approval tokens the way the proxy does.
 *   test-approval-check PUBHEX POD OP ARGS_SHA256|- TOKEN...
 * Feeds every TOKEN through one ApprovalRegistry (so replays are visible) and prints one
 * result per line ("ok", "bad_signature", "exhausted", ...). Exit 0 unless usage is wrong.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "approval.h"

int main(int argc, char **argv) {
        uint8_t pk[32];
        size_t got = 0;
        ApprovalRegistry *reg = NULL;

        if (argc < 6 || sodium_init() < 0 || strlen(argv[1]) != 64 ||
            sodium_hex2bin(pk, 32, argv[1], 64, NULL, &got, NULL) != 0 || got != 32) {
                fprintf(stderr, "usage: test-approval-check PUBHEX POD OP ARGS_SHA256|- TOKEN...\n");
                return 2;
        }
        if (approval_registry_new(0, &reg) < 0)
                return 1;
        const char *args = strcmp(argv[4], "-") == 0 ? NULL : argv[4];
        for (int i = 5; i < argc; i++) {
                char *err = NULL;
                ApprovalResult r = approval_registry_use(
                        reg, argv[i], pk, argv[2], argv[3], args, (int64_t) time(NULL), &err);
                printf("%s\n", approval_result_to_string(r));
                free(err);
        }
        approval_registry_free(reg);
        return 0;
}
