/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus config: work in progress (engineer C). */
#include <stdio.h>

#include "cli.h"

int verb_config(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "nucleus config: not implemented yet.\n");
        return CLI_EXIT_FAILURE;
}
