/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus logs: work in progress (engineer C). */
#include <stdio.h>

#include "cli.h"

int verb_logs(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "nucleus logs: not implemented yet.\n");
        return CLI_EXIT_FAILURE;
}
