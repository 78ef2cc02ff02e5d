/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared declarations of the `nucleus` CLI: one verb_<name>() per verb-<name>.c, plus the few
 * helpers every verb uses (output mode, option parsing conventions). Verbs parse their own
 * options from argv (argv[0] is the verb name); global options are parsed in main.c.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* A switch default that cannot happen (getopt returned an option we did not declare). */
#define cli_assert_not_reached() abort()

/* Exit codes (DESIGN.md §10): 0 ok, 1 failure, 2 usage. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE 2

typedef enum OutputMode {
        OUTPUT_TEXT,
        OUTPUT_JSON,
        _OUTPUT_MODE_MAX,
        _OUTPUT_MODE_INVALID = -EINVAL,
} OutputMode;

const char *output_mode_to_string(OutputMode m);
OutputMode output_mode_from_string(const char *s);

/* The verb being run ("ps"), for messages; set by main.c before dispatching. */
void cli_set_verb(const char *verb);
const char *cli_verb(void);

/* Parse an --output argument; logs and returns CLI_EXIT_USAGE on a bad value, else 0. */
int cli_parse_output(const char *value, OutputMode *ret);

/* The options every verb has, for its struct option table, and their shared handling. */
#define CLI_ARG_OUTPUT 0x1000
#define CLI_OPTION_HELP \
        { "help", no_argument, NULL, 'h' }
#define CLI_OPTION_OUTPUT \
        { "output", required_argument, NULL, CLI_ARG_OUTPUT }
#define CLI_OPTION_CONTINUE (-1)

/* Handle a getopt_long() result that is not one of the verb's own options: -h/--help (prints
 * usage, returns CLI_EXIT_OK), --output (into *output, which may be NULL when the verb has
 * none; returns CLI_OPTION_CONTINUE or CLI_EXIT_USAGE), '?'/':' (getopt already named the
 * problem; adds "Run 'nucleus VERB --help'" and returns CLI_EXIT_USAGE). Anything else is a
 * programming error (abort). */
int cli_option_common(int c, void (*usage)(void), OutputMode *output);

/* Print a JSON document on stdout (pretty, one document, trailing newline). Returns 0 or
 * -EIO. Nothing else may be written to stdout in JSON mode. */
#include <jansson.h>
int cli_print_json(const json_t *j);

/* In JSON mode print {"ok": false, "error": msg, "kind": kind} on stdout; nothing otherwise. */
void cli_print_json_failure(OutputMode mode, const char *kind, const char *msg);

/* Log the formatted failure on stderr (log_error, prefixed with the verb) and, in JSON mode,
 * print it with cli_print_json_failure(). Returns CLI_EXIT_FAILURE. */
int cli_fail(OutputMode mode, const char *kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Print "unknown option / missing argument" style usage errors consistently; returns 2. */
int cli_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Verbs. Each returns a process exit code (0, 1 or 2). */
int verb_setup(int argc, char **argv);
int verb_start(int argc, char **argv);
int verb_stop(int argc, char **argv);
int verb_snapshot(int argc, char **argv);
int verb_fork(int argc, char **argv);
int verb_doctor(int argc, char **argv);
int verb_profiles(int argc, char **argv);
int verb_config(int argc, char **argv);
int verb_secrets(int argc, char **argv);
int verb_ps(int argc, char **argv);
int verb_rm(int argc, char **argv);
int verb_prune(int argc, char **argv);
int verb_logs(int argc, char **argv);
int verb_audit(int argc, char **argv);
int verb_image(int argc, char **argv);
int verb_run(int argc, char **argv);
/* The pod verbs of docs/api.md, one verb-<name>.c each, over cli-api.h */
int verb_create(int argc, char **argv);
int verb_delete(int argc, char **argv); /* also "cancel" */
int verb_wait(int argc, char **argv);
int verb_upload(int argc, char **argv);
int verb_patch(int argc, char **argv);
int verb_tool(int argc, char **argv);
int verb_approve(int argc, char **argv);
int verb_credential(int argc, char **argv);
int verb_approvals(int argc, char **argv);
int verb_console(int argc, char **argv);
