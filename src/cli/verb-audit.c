/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus audit: work in progress (engineer C). */
#include <stdio.h>

#include "cli.h"

int verb_audit(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "nucleus audit: not implemented yet.\n");
        return CLI_EXIT_FAILURE;
}
