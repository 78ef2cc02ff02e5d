/* SPDX-License-Identifier: Apache-2.0 */
/* The option loop shared by the small verbs that take only --output and --help. */
#pragma once

#include "cli.h"

/* Parses -h/--help and --output; leaves optind at the first operand. Returns 0 to continue,
 * or an exit code (>= 0 with *done set) when help was shown or usage was wrong. */
int cli_parse_simple(int argc, char **argv, void (*usage)(void), OutputMode *output, bool *done);

/* cli_parse_simple() for verbs without operands: an operand is a usage error naming the verb
 * (cli_verb()). */
int cli_parse_simple_no_args(int argc, char **argv, void (*usage)(void), OutputMode *output, bool *done);
