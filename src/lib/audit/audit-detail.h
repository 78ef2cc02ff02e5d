/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What an audit record shows of an operation's arguments (the record's "detail", docs/audit.md
 * "Arguments in records"): the argv of a command, the paths of a file operation, the URL of a
 * fetch, so `nucleus audit show` reads like a transcript. Arguments come from the agent and
 * are untrusted: every value is capped, and anything that looks like a secret (environment
 * values, secret-named flags and assignments, credentials in URLs, well-known token formats,
 * long random-looking strings) is replaced by "<redacted>" before the record is written.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#define AUDIT_DETAIL_REDACTED "<redacted>"
#define AUDIT_DETAIL_STRING_MAX 256U /* bytes of one shown value; longer ones are cut, "..." added */
#define AUDIT_DETAIL_ARGV_MAX 64U    /* argv elements shown; the rest counted in "argv_more" */

/*
 * audit_detail_for_call:
 *   Arguments: op: the tool operation ("run", "read", "web_fetch", ...); args: its arguments
 *   as sent to the proxy (may be NULL or not an object).
 *   Returns: a new JSON object to put in AuditEvent.detail, or NULL when the operation shows
 *   nothing (unknown operations, no arguments). Never fails otherwise.
 */
json_t *audit_detail_for_call(const char *op, const json_t *args);

/* True when a single argument or value looks like a secret by itself: a well-known token
 * format (sk-..., ghp_..., AKIA...), a bearer credential, or a long random-looking string. */
bool audit_detail_looks_secret(const char *s);

/* True when a name (a flag, a variable, a query parameter, a header) says its value is a
 * secret: password, token, secret, key, auth, credential, cookie, session, signature. */
bool audit_detail_secret_name(const char *name);
