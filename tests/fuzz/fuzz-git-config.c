/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the git config parser (git-config.h): input is a config file's text. Invariants: the
 * result is one of the documented codes, and an error always comes with a message. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "git-config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *err = NULL;
        int r = git_config_check_text((const char *) data, size, &err);
        if (r != 0 && r != -EPERM && r != -EINVAL && r != -E2BIG)
                abort();
        if ((r != 0) != (err != NULL))
                abort();
        free(err);
        return 0;
}
