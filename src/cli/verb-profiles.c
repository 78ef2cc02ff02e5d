/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus profiles: work in progress (engineer C). */
#include <stdio.h>

#include "cli.h"

int verb_profiles(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "nucleus profiles: not implemented yet.\n");
        return CLI_EXIT_FAILURE;
}
