/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the verbs: output modes, JSON printing, usage errors, option parsing of
 * the small verbs, pod id validation (ids go into URL paths). */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "escape.h"
#include "cli-opt.h"
#include "cli-pod.h"
#include "cli.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "string-util.h"

static const char *const output_mode_table[_OUTPUT_MODE_MAX] = {
        [OUTPUT_TEXT] = "text",
        [OUTPUT_JSON] = "json",
};
DEFINE_STRING_TABLE_LOOKUP(output_mode, OutputMode);

static const char *verb_name = NULL;

void cli_set_verb(const char *verb) {
        verb_name = verb;
}

const char *cli_verb(void) {
        return verb_name;
}

/* "nucleus" or "nucleus VERB", the prefix of our usage messages. */
static void print_prefix(void) {
        if (verb_name)
                fprintf(stderr, "nucleus %s: ", verb_name);
        else
                fputs("nucleus: ", stderr);
}

static int usage_hint(void) {
        if (verb_name)
                fprintf(stderr, "Run 'nucleus %s --help' for usage.\n", verb_name);
        else
                fputs("Run 'nucleus --help' for usage.\n", stderr);
        return CLI_EXIT_USAGE;
}

int cli_parse_output(const char *value, OutputMode *ret) {
        OutputMode m = output_mode_from_string(value);
        if (m < 0) {
                print_prefix();
                fprintf(stderr, "--output must be 'text' or 'json', not '%s'.\n", value);
                return usage_hint();
        }
        *ret = m;
        return 0;
}

int cli_option_common(int c, void (*usage)(void), OutputMode *output) {
        int r;

        switch (c) {
        case 'h':
                usage();
                return CLI_EXIT_OK;
        case CLI_ARG_OUTPUT:
                if (!output)
                        cli_assert_not_reached();
                r = cli_parse_output(optarg, output);
                return r != 0 ? r : CLI_OPTION_CONTINUE;
        case '?':
        case ':':
                return usage_hint();
        default:
                cli_assert_not_reached();
        }
}

int cli_print_json(const json_t *j) {
        _cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
        if (!text)
                return -EIO;
        /* The same JSON, with every hidden code point of the agent's strings as a \u escape. */
        _cleanup_free_ char *shown = escape_text(text, strlen(text), ESCAPE_JSON);
        fputs(shown, stdout);
        fputc('\n', stdout);
        return fflush(stdout) == 0 ? 0 : -EIO;
}

void cli_print_json_failure(OutputMode mode, const char *kind, const char *msg) {
        if (mode != OUTPUT_JSON)
                return;
        _cleanup_json_ json_t *j = json_pack("{s:b,s:s,s:s}", "ok", false, "error", msg, "kind", kind);
        (void) cli_print_json(j);
}

int cli_fail(OutputMode mode, const char *kind, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *msg = xvasprintf(fmt, ap);
        va_end(ap);
        /* One log line per line of msg: the logger turns a newline into '?'. */
        const char *line = msg;
        for (;;) {
                size_t n = strcspn(line, "\n");
                log_error("%.*s", (int) n, line);
                if (!line[n] || !line[n + 1])
                        break;
                line += n + 1;
        }
        cli_print_json_failure(mode, kind, msg);
        return CLI_EXIT_FAILURE;
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
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                {},
        };
        int c, r;

        *done = false;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                r = cli_option_common(c, usage, output);
                if (r != CLI_OPTION_CONTINUE) {
                        *done = true;
                        return r;
                }
        }
        return 0;
}

int cli_parse_simple_no_args(int argc, char **argv, void (*usage)(void), OutputMode *output, bool *done) {
        int r = cli_parse_simple(argc, argv, usage, output, done);
        if (*done)
                return r;
        if (optind < argc) {
                *done = true;
                return cli_usage_error(cli_verb() ?: "", "unexpected argument '%s'", argv[optind]);
        }
        return 0;
}
