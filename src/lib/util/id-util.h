/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The grammar of the names that cross program boundaries, in one place: pod ids (the node,
 * the proxy's configure, approval tokens, the CLI and the agent put them in URLs, tokens and
 * logs) and operation names (tool calls on the channel and the API, guest audit records).
 */
#pragma once

#include <stdbool.h>

#define POD_ID_MAX 128u        /* characters */
#define OPERATION_NAME_MAX 32u /* characters */

/* The ids the node mints: a lower-case UUID text (8-4-4-4-12 hex digits). */
bool pod_id_is_uuid(const char *s);

/* A pod id anywhere it is carried: 1..POD_ID_MAX of [A-Za-z0-9._-], not "." or ".." (so it is
 * one URL path segment that means itself). Every minted id is one. */
bool pod_id_valid(const char *s);

/* An operation name: 1..OPERATION_NAME_MAX of [a-z_]. */
bool operation_name_valid(const char *s);
