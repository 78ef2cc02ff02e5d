/* SPDX-License-Identifier: Apache-2.0 */
/* Profiles (placeholder). */
#include "policy-internal.h"

const char *const policy_block_sensitive[] = { NULL };
void command_policy_default_blocks(CommandPolicy *c) {
}
int policy_profile_new(const char *name, Policy **ret) {
        return -EOPNOTSUPP;
}
const char *const *policy_profile_names(void) {
        static const char *const n[] = { NULL };
        return n;
}
const char *policy_profile_canonical_name(const char *name) {
        return NULL;
}
