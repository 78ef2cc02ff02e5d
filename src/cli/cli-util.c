/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the verbs: output modes, JSON printing, usage errors. */
#include <stdarg.h>
#include <stdio.h>

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
        if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) < 0)
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
