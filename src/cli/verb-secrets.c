/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus secrets: work in progress (engineer C). */
#include <stdio.h>

#include "cli.h"

int verb_secrets(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "nucleus secrets: not implemented yet.\n");
        return CLI_EXIT_FAILURE;
}
