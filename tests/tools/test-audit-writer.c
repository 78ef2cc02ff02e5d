/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helper (not installed): write an audit log through the library.
 *   test-audit-writer LOG POD SECRET_KEY_FILE N [--no-seal]
 * Appends N records (a mix of allow/deny with args/result digests) then a seal. Used by
 * tests/integration/test_audit_tool.py to check nucleus-audit against library output.
 */
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "audit.h"
#include "json-util.h"
#include "parse-util.h"
#include "secrets.h"

int main(int argc, char **argv) {
        uint8_t sk[64];
        uint32_t n;
        char *err = NULL;
        AuditLog *log = NULL;
        int r;

        if (argc < 5 || safe_atou32(argv[4], &n) < 0) {
                fprintf(stderr, "usage: test-audit-writer LOG POD SECRET_KEY_FILE N [--no-seal]\n");
                return 2;
        }
        if (secret_load_file(argv[3], sk, 64, true, &err) < 0) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        r = audit_log_open(argv[1], argv[2], sk, &log);
        if (r < 0) {
                fprintf(stderr, "open: %s\n", strerror(-r));
                return 1;
        }
        for (uint32_t i = 0; i < n; i++) {
                _cleanup_json_ json_t *args = json_pack("{s:s,s:i}", "path", "src/main.c", "i", (int) i);
                AuditEvent ev = {
                        .actor = "test-writer",
                        .op = i % 2 ? "write_files" : "read_files",
                        .decision = i % 3 == 2 ? "deny" : "allow",
                        .kind = i % 3 == 2 ? "path_denied" : NULL,
                        .args = args,
                        .result = "result",
                        .result_len = 6,
                };
                r = audit_log_append(log, &ev, NULL);
                if (r < 0) {
                        fprintf(stderr, "append: %s\n", strerror(-r));
                        return 1;
                }
        }
        if (!(argc > 5 && strcmp(argv[5], "--no-seal") == 0)) {
                r = audit_log_seal(log);
                if (r < 0) {
                        fprintf(stderr, "seal: %s\n", strerror(-r));
                        return 1;
                }
        }
        audit_log_free(log);
        return 0;
}
