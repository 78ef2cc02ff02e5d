/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The human-facing side of the approvals queue (docs/approvals.md), shared by
 * `nucleus approvals`, `nucleus console`, its webhook approver and `nucleus run`: list the
 * node's pending approvals, and decide one. Deciding mints an approval token with the approver
 * key (it never leaves this process) bound to exactly the pending record the human saw: its
 * pod, capability and arguments digest, with the record's digest sent along so the node
 * refuses a decision about anything else.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "client.h"

typedef enum CliApprovalDecision {
        CLI_APPROVAL_ONCE,   /* this call, once */
        CLI_APPROVAL_POD,    /* this exact call for the rest of the pod (when offered) */
        CLI_APPROVAL_REFUSE, /* refuse, with an optional reason */
        _CLI_APPROVAL_DECISION_MAX,
        _CLI_APPROVAL_DECISION_INVALID = -EINVAL,
} CliApprovalDecision;

const char *cli_approval_decision_to_string(CliApprovalDecision d);
/* "once", "pod", "refuse" (also "approve" = once). */
CliApprovalDecision cli_approval_decision_from_string(const char *s);

/* GET /v1/approvals: {"approvals": [...pending...], "approvers_attached": bool}. */
int cli_approvals_list(NucleusClient *c, json_t **ret, ClientError *reterr);

/* Find one pending approval by id (or a unique id prefix) in the node's list. Returns 0 and a
 * new reference, -ENOENT, -EEXIST (ambiguous prefix), or a client error. */
int cli_approvals_find(NucleusClient *c, const char *id, json_t **ret, char **reterr);

/*
 * cli_approval_decide:
 *   Decides `pending` (a record from the node's list). `digest` is the digest of the record as
 *   the human saw it (the page's, the webhook's): it must equal the record's own, else
 *   -EBADMSG before anything is sent. For approvals the token is minted with the approver
 *   key from secrets_dir. Returns 0 and the decided record (optional ret), or a negative
 *   errno with *reterr (malloc'd, printable).
 */
int cli_approval_decide(
        NucleusClient *c,
        const char *secrets_dir,
        const json_t *pending,
        const char *digest,
        CliApprovalDecision decision,
        const char *reason,
        json_t **ret,
        char **reterr);

/* Tell the node a human-facing approver is attached for ttl_sec seconds (console, serve),
 * so `nucleus run` and nucleus-mcp hold calls instead of refusing them. */
int cli_approvers_heartbeat(NucleusClient *c, const char *name, unsigned ttl_sec, ClientError *reterr);

/* One human-readable line (operation, pod, arguments) made visible: caller frees. */
char *cli_approval_describe(const json_t *pending, size_t max);
