/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The setup step of `nucleus run` (docs/run.md "Dependencies"): commands from --setup and a
 * policy file's [setup] table, split into argv here (never handed to a shell), the package-index
 * hosts from --setup-host and [setup] hosts, and the call that runs them in the pod between the
 * workspace upload and the agent's first turn. The commands are the user's own input.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "client.h"

#define RUN_SETUP_COMMANDS_MAX 32U
#define RUN_SETUP_HOSTS_MAX 32U
#define RUN_SETUP_TIMEOUT_MAX 86400U

typedef struct RunSetup {
        json_t *commands;         /* array of argv arrays, in order; NULL until one is added */
        char **hosts;             /* normalised names (dns_allow syntax), no duplicates */
        uint64_t timeout_seconds; /* per command; 0 = the node's default (600) */
} RunSetup;

void run_setup_done(RunSetup *s);

/* Add one command as written by the user. where names the source for messages ("--setup",
 * "policy.toml: setup.commands[1]"). Shell syntax (; & | < > ` $( ) newlines, $ * ? [ ~) is refused
 * with the fix (write `sh -c '...'` to ask for a shell); quotes and backslashes work as in sh.
 * Returns 0, or -EINVAL/-E2BIG with *reterr. */
int run_setup_add_command(RunSetup *s, const char *where, const char *command, char **reterr);

/* Add one host; refused unless it is a DNS name as dns_allow takes it. Returns 0 or -EINVAL. */
int run_setup_add_host(RunSetup *s, const char *where, const char *host, char **reterr);

/* A policy file's "setup" table: {commands: [string | [argv...]], hosts: [names],
 * timeout_seconds: N}; unknown keys are errors. file names the file for messages. */
int run_setup_from_json(RunSetup *s, const json_t *setup, const char *file, char **reterr);

/* Run the step in pod pod_id (POST /v1/pods/{id}/setup). Prints one line per command on
 * stderr; a failed command's output is shown in full. Returns 0 when every command exited 0
 * (and the baseline was recorded again), else <0 with *reterr. */
int run_setup_execute(NucleusClient *client, const char *pod_id, const RunSetup *s, char **reterr);
