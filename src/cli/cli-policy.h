/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy files for the CLI: loading (`nucleus run --config`, `nucleus profiles show --config`),
 * writing them back (`nucleus profiles export`), and printing a whole policy.
 */
#pragma once

#include <jansson.h>
#include <stdio.h>

#include "policy.h"

/* Read a policy file: .toml (the JSON schema's keys as TOML tables) or .json. Returns 0, or a
 * negative errno with a malloc'd *reterr naming the file and the problem. */
int cli_policy_file_load(const char *path, Policy **ret, char **reterr);
/* The same, and the file's [setup] table (nucleus run's setup step; not part of the policy) in
 * *ret_setup (NULL when absent; a new reference). */
int cli_policy_file_load_setup(const char *path, Policy **ret, json_t **ret_setup, char **reterr);

/* TOML text that cli_policy_file_load() reads back to an equal policy. NULL with *reterr when
 * the policy holds something TOML cannot say (a time window without limit: use JSON). */
char *cli_policy_to_toml(const Policy *p, char **reterr);

/* Everything the policy says, commands included, for people. Agent-controlled text is made
 * visible (string_make_visible) before printing. */
void cli_policy_print(FILE *f, const Policy *p);
