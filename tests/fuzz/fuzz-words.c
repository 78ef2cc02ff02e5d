/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the word splitter (quote/split round trip) and the command decision on its output, and
 * check that the compiled policy (policy_compile) decides exactly as the interpreted one: the
 * same verdict, kind, operation and message for the input as a command, and the same blocking
 * rule for it as a path. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "policy-internal.h"
#include "policy.h"
#include "string-util.h"
#include "words.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static Policy *profiles[3], *interpreted[3];
        _cleanup_free_ char *s = NULL;
        _cleanup_strv_free_ char **w = NULL, **w2 = NULL;
        if (size > 16 * 1024)
                return 0;
        if (!profiles[0]) {
                if (policy_profile_new("fix_issue", &profiles[0]) < 0 ||
                    policy_profile_new("local_dev", &profiles[1]) < 0 ||
                    policy_profile_new("database_client", &profiles[2]) < 0)
                        abort();
                for (size_t i = 0; i < 3; i++) {
                        interpreted[i] = policy_copy(profiles[i]);
                        policy_compiled_free(interpreted[i]->compiled);
                        interpreted[i]->compiled = NULL;
                }
        }
        s = xmalloc(size + 1);
        memcpy(s, data, size);
        s[size] = 0;
        for (size_t i = 0; i < 3; i++) {
                PolicyDecision d = {}, e = {};
                if (policy_check_command_string(profiles[i], s, &d) < 0 || !d.message ||
                    policy_check_command_string(interpreted[i], s, &e) < 0 || !e.message)
                        abort();
                if (d.verdict != e.verdict || !streq_ptr(d.kind, e.kind) || d.operation != e.operation ||
                    !streq(d.message, e.message))
                        abort();
                policy_decision_done(&d);
                policy_decision_done(&e);
                if (!streq_ptr(
                            policy_blocked_rule_for(profiles[i], s),
                            policy_blocked_rule_for(interpreted[i], s)))
                        abort();
        }
        if (words_split(s, &w, NULL) < 0)
                return 0;
        _cleanup_free_ char *j = words_join(w);
        if (words_split(j, &w2, NULL) < 0)
                abort();
        for (size_t i = 0; w[i] || w2[i]; i++)
                if (!w[i] || !w2[i] || strcmp(w[i], w2[i]) != 0)
                        abort();
        for (size_t i = 0; i < 3; i++) {
                PolicyDecision d = {};
                if (policy_check_command_at(profiles[i], w, i == 0 ? "sub/dir" : NULL, &d) < 0 || !d.message)
                        abort();
                policy_decision_done(&d);
        }
        return 0;
}
