/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus stop: work in progress (engineer C). */
#include <stdio.h>

#include "cli.h"

int verb_stop(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "nucleus stop: not implemented yet.\n");
        return CLI_EXIT_FAILURE;
}
