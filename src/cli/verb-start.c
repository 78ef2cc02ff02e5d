/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus start: work in progress (engineer C). */
#include <stdio.h>

#include "cli.h"

int verb_start(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "nucleus start: not implemented yet.\n");
        return CLI_EXIT_FAILURE;
}
