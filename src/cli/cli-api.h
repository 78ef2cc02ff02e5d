/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node API as the CLI verbs call it: open the configured client, one signed request, the
 * answer decoded, a failure reported the same way by every verb; plus the POD operand and the
 * wait-for-state loop the pod verbs share. Everything the node answers is untrusted: messages
 * are made printable, JSON is re-encoded by jansson.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "cli-pod.h"
#include "cli.h"
#include "client.h"
#include "time-util.h"

/* Open the client of the CLI config (node URL, key); a failure is reported (not_configured)
 * and its exit code returned. Returns 0 on success. */
int cli_api_open(OutputMode mode, NucleusClient **ret);
/* A failed call: "message (kind)" plus its fix on stderr; in JSON mode the node's own error
 * document when it sent one (it carries detail, operation, args_sha256...), else
 * {"ok": false, "error", "kind"}. Returns CLI_EXIT_FAILURE. */
int cli_api_fail(OutputMode mode, const ClientError *e, const ClientResponse *resp);
/* A request with a raw body; a non-2xx answer is decoded into *e and returns -EREMOTEIO. */
int cli_api_call(
        NucleusClient *c,
        const char *method,
        const char *path,
        const char *content_type,
        const void *body,
        size_t n,
        ClientResponse *resp,
        ClientError *e);
/* The answer as a JSON object, or NULL. */
json_t *cli_api_answer(const ClientResponse *resp);
/* The answer as a JSON object in *ret (0), or a reported failure and its exit code. */
int cli_api_answer_object(OutputMode mode, const ClientResponse *resp, json_t **ret);
/* A string or integer field of an answer, made printable (malloc'd), or NULL. */
char *cli_api_field(const json_t *o, const char *k);

/* The POD operand of a verb (want: operands in all, the POD first); usage error otherwise. */
int cli_pod_operand(int argc, char **argv, int want, const char **ret);
/* The prologue of a verb on one pod, after its operands were checked: open the client
 * (cli_api_open()) and resolve the POD operand (an id, a unique id prefix or a name;
 * cli_pod_resolve()) to the pod's id: *pod then points to *ret_owned. A failure (an ambiguous
 * POD: the candidates listed) is reported and its exit code returned; 0 otherwise. */
int cli_api_open_pod(OutputMode mode, NucleusClient **ret, const char **pod, char **ret_owned);
/* The same for a verb whose only operand is POD (cli_pod_operand(), then cli_api_open_pod()):
 * *pod points to *ret_owned after 0. */
int cli_api_open_pod_operand(
        int argc, char **argv, OutputMode mode, NucleusClient **ret, const char **pod, char **ret_owned);
/* Read a whole file (or stdin for "-"), capped. */
int cli_read_input(const char *path, size_t max, char **ret, size_t *ret_n);
/* The pod id on stdout, its state (and reason) on stderr. */
void cli_print_pod_line(const json_t *pod);

/* Pod states, NULL-terminated. */
extern const char *const cli_pod_states[];
/* Poll until the pod is in state want (0, *ret = the pod object), ends in another state or
 * the timeout passes (a failure already reported; CLI_EXIT_FAILURE). */
int cli_pod_wait_state(
        NucleusClient *c, OutputMode mode, const char *pod, const char *want, usec_t timeout, json_t **ret);
