/* SPDX-License-Identifier: Apache-2.0 */
/* Command decisions (placeholder). */
#include "policy-internal.h"

int policy_check_command(const Policy *p, char *const *argv, PolicyDecision *ret) {
        return -EOPNOTSUPP;
}
int policy_check_command_string(const Policy *p, const char *command, PolicyDecision *ret) {
        return -EOPNOTSUPP;
}
bool policy_grants_shell(const Policy *p) {
        return false;
}
bool policy_env_name_allowed(const char *name) {
        return false;
}
