/* SPDX-License-Identifier: Apache-2.0 */
/* Pods as users name them: id validation for verbs that put an id into a URL path, and the
 * resolution of what a user typed (an id, a unique id prefix, a name) to one pod id. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "client.h"

#define CLI_POD_FULL_ID_LEN 36 /* a pod id: a UUID */

/* pod_id_valid() (id-util.h): one URL path segment that means itself. */
bool cli_pod_id_valid(const char *id);

/* True for a pod state that will not change any more. */
bool cli_pod_state_ended(const char *state);

/*
 * cli_pod_resolve:
 *   Arguments: ref: what the user typed; it must pass cli_pod_id_valid() (the caller checks,
 *              as a usage error). pods: the node's pod list (GET /v1/pods answer: {"pods":
 *              [...]}) or NULL to fetch it with c.
 *   Returns: 0 and *ret_id (malloc'd) when ref is an id the node lists, the only pod whose id
 *            starts with ref, or the only pod (else the only live pod) named ref. A ref that
 *            matches nothing is returned as is (the node then answers not_found, and verbs
 *            that read a node's earlier pods from disk still can). -EEXIST when ref is
 *            ambiguous: *reterr lists the candidates (id, name, state). Transport and node
 *            errors: the negative errno and *reterr.
 *   Notes: a full id (36 characters) is taken as is without asking the node.
 */
int cli_pod_resolve(NucleusClient *c, json_t *pods, const char *ref, char **ret_id, char **reterr);
