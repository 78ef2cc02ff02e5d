/* SPDX-License-Identifier: Apache-2.0 */
/* The files `nucleus run` keeps per pod in <state dir>/runs/ (<pod>.patch, <pod>.audit.jsonl),
 * and their removal for `nucleus rm` and `nucleus prune`. */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "time-util.h"

/*
 * cli_runs_remove:
 *   Removes the run files of pod (pod non-NULL), or of every pod whose files were last
 *   modified before older_than (CLOCK_REALTIME usec; pod NULL), except those of the pods
 *   listed in keep (a JSON array of id strings, may be NULL: pods still live). Only names of
 *   the form <pod-id>.patch / <pod-id>.audit.jsonl[.sealed] are touched, through a directory
 *   fd (unlinkat never follows a symlink). Appends each removed path to removed (array).
 *   Returns: the number of files removed (0 when the runs dir does not exist), or -errno.
 */
int cli_runs_remove(const char *pod, usec_t older_than, json_t *keep, json_t *removed, uint64_t *ret_bytes);

/* Parses a duration like 90s, 30m, 12h, 7d or 2w (a bare number is seconds) into usec.
 * Returns 0 or -EINVAL. */
int cli_parse_duration(const char *s, usec_t *ret);
