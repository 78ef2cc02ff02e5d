/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus doctor: work in progress (engineer C). */
#include <stdio.h>

#include "cli.h"

int verb_doctor(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "nucleus doctor: not implemented yet.\n");
        return CLI_EXIT_FAILURE;
}
