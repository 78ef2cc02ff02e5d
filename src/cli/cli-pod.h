/* SPDX-License-Identifier: Apache-2.0 */
/* Pod id validation for verbs that put a user-given id into a URL path. */
#pragma once

#include <stdbool.h>

/* 1..64 characters of [A-Za-z0-9_-]: nothing that could change the URL's meaning. */
bool cli_pod_id_valid(const char *id);
