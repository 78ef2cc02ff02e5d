/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus setup: work in progress (engineer C). */
#include <stdio.h>

#include "cli.h"

int verb_setup(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "nucleus setup: not implemented yet.\n");
        return CLI_EXIT_FAILURE;
}
