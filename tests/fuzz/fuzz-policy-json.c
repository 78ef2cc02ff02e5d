/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the strict policy JSON parser; accepted policies must round-trip canonically. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(policy_freep) Policy *p = NULL, *q = NULL;
        _cleanup_free_ char *err = NULL, *err2 = NULL;
        if (size > 64 * 1024)
                return 0;
        if (policy_from_json_text((const char *) data, size, &p, &err) < 0)
                return 0;
        _cleanup_free_ char *canon = policy_canonical_json(p);
        if (policy_from_json_text(canon, strlen(canon), &q, &err2) < 0 || !policy_equal(p, q))
                abort();
        char hex[65];
        if (policy_sha256(p, hex) < 0)
                abort();
        PolicyDecision d = {};
        (void) policy_check_path(p, "src/main.rs", PATH_ACCESS_READ, &d);
        policy_decision_done(&d);
        (void) policy_check_command_string(p, "git -c core.pager=x log", &d);
        policy_decision_done(&d);
        return 0;
}
