/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the verbs: output modes, JSON printing, usage errors, option parsing of
 * the small verbs, pod id validation (ids go into URL paths). */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli-opt.h"
#include "cli-pod.h"
#include "cli.h"
#include "macro.h"
#include "string-util.h"

static const char *const output_mode_table[_OUTPUT_MODE_MAX] = {
        [OUTPUT_TEXT] = "text",
        [OUTPUT_JSON] = "json",
};
DEFINE_STRING_TABLE_LOOKUP(output_mode, OutputMode);

int cli_parse_output(const char *value, OutputMode *ret) {
        OutputMode m = output_mode_from_string(value);
        if (m < 0) {
                fprintf(stderr, "nucleus: --output must be 'text' or 'json', not '%s'.\n", value);
                return CLI_EXIT_USAGE;
        }
        *ret = m;
        return 0;
}

int cli_print_json(const json_t *j) {
        if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15)) < 0)
                return -EIO;
        fputc('\n', stdout);
        return fflush(stdout) == 0 ? 0 : -EIO;
}

int cli_usage_error(const char *verb, const char *fmt, ...) {
        va_list ap;
        fprintf(stderr, "nucleus %s: ", verb);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nRun 'nucleus %s --help' for usage.\n", verb);
        return CLI_EXIT_USAGE;
}

int cli_parse_simple(int argc, char **argv, void (*usage)(void), OutputMode *output, bool *done) {
        enum {
                ARG_OUTPUT = 0x100
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "output", required_argument, NULL, ARG_OUTPUT },
                {},
        };
        int c, r;

        *done = false;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        usage();
                        *done = true;
                        return CLI_EXIT_OK;
                case ARG_OUTPUT:
                        r = cli_parse_output(optarg, output);
                        if (r != 0) {
                                *done = true;
                                return r;
                        }
                        break;
                case '?':
                        *done = true;
                        return CLI_EXIT_USAGE;
                default:
                        cli_assert_not_reached();
                }
        return 0;
}

bool cli_pod_id_valid(const char *id) {
        size_t n = id ? strlen(id) : 0;
        return n > 0 && n <= 64 &&
                strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}
