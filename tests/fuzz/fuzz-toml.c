/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the TOML subset parser and the config schemas on top of it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_t *j = NULL;
        char *err = NULL;
        SpecPosTable pos = {};
        if (size > 64 * 1024)
                return 0;
        int r = toml_parse((const char *) data, size, "fuzz.toml", &j, &pos, &err);
        if (r == 0) {
                if (!json_is_object(j) || err)
                        abort();
                char *s = json_dump_canonical(j);
                free(s);
                json_decref(j);
        } else if (!err)
                abort();
        free(err);
        spec_pos_done(&pos);
        return 0;
}
