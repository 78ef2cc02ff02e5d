/* SPDX-License-Identifier: Apache-2.0 */
/* Policy JSON (placeholder until the strict parser lands). */
#include "policy-internal.h"

int policy_from_json(const json_t *j, Policy **ret, char **reterr) {
        return -EOPNOTSUPP;
}
int policy_from_json_text(const char *text, size_t n, Policy **ret, char **reterr) {
        return -EOPNOTSUPP;
}
json_t *policy_to_json(const Policy *p) {
        return NULL;
}
char *policy_canonical_json(const Policy *p) {
        return NULL;
}
int policy_sha256(const Policy *p, char ret_hex[static 65]) {
        return -EOPNOTSUPP;
}
