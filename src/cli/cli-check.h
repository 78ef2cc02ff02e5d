/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A list of check results for doctor (and setup's summary): each line is
 * "[OK|WARN|ERR] name: message" plus "  fix: ..." in text mode, or an array of
 * {status,name,message,fix} in JSON mode. Messages are made printable before output.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "cli.h"

typedef enum CheckStatus {
        CHECK_OK,
        CHECK_WARN,
        CHECK_ERR,
        _CHECK_STATUS_MAX,
        _CHECK_STATUS_INVALID = -EINVAL,
} CheckStatus;

const char *check_status_to_string(CheckStatus s);

typedef struct CheckList {
        OutputMode mode;
        json_t *items; /* array */
        unsigned n_ok, n_warn, n_err;
} CheckList;

void check_list_init(CheckList *l, OutputMode mode);
void check_list_done(CheckList *l);

/* Record (and in text mode print at once) a result. fix may be NULL. */
void check_add(CheckList *l, CheckStatus s, const char *name, const char *fix, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
