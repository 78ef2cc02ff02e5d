/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus ps: work in progress (engineer C). */
#include <stdio.h>

#include "cli.h"

int verb_ps(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "nucleus ps: not implemented yet.\n");
        return CLI_EXIT_FAILURE;
}
