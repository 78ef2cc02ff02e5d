/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz PodSpec parsing (YAML and JSON) and check that accepted specs round-trip through
 * canonical JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "podspec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        PodSpec *s = NULL, *s2 = NULL;
        char *err = NULL;
        if (size > 64 * 1024)
                return 0;
        if (podspec_parse((const char *) data, size, "fuzz.yaml", &s, &err) == 0) {
                char *j = podspec_to_canonical_json(s);
                if (podspec_parse(j, strlen(j), "roundtrip", &s2, NULL) != 0)
                        abort();
                char *j2 = podspec_to_canonical_json(s2);
                if (strcmp(j, j2) != 0)
                        abort();
                free(j);
                free(j2);
                podspec_free(s2);
                podspec_free(s);
        } else if (!err)
                abort();
        free(err);
        return 0;
}
