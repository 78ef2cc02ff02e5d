/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Glue between the agent (or nucleus-mcp) and a pod on nucleus-node, over the signed client
 * (src/lib/client): tool calls on POST /v1/pods/{id}/tools/{op}, approvals on
 * POST /v1/pods/{id}/approvals, model-usage charges through the proxy's `charge` op, and the
 * list of agent tools a policy grants. Node answers are untrusted JSON; they are passed on,
 * never interpreted beyond the error kind.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "client.h"
#include "policy.h"

/*
 * agent_node_call_tool:
 *   POST /v1/pods/{pod}/tools/{op} with args (JSON object) as the body.
 *   Returns: 0 and *ret_answer = the proxy's answer: its result for 2xx, or for a refusal the
 *     node's error document {"error","kind",...} (kind always set). <0 only for transport
 *     failures or an answer that is not JSON, with *reterr.
 */
int agent_node_call_tool(
        NucleusClient *c, const char *pod, const char *op, json_t *args, json_t **ret_answer, char **reterr);

/*
 * agent_node_submit_approval:
 *   POST /v1/pods/{pod}/approvals {"token": token}.
 *   Returns: 0 when the node accepted it, <0 otherwise with *reterr (message and kind).
 */
int agent_node_submit_approval(NucleusClient *c, const char *pod, const char *token, char **reterr);

/*
 * agent_node_charge:
 *   Charge model usage to the pod's budget meter through the proxy's `charge` op
 *   {"usd_micros", "input_tokens", "output_tokens"}.
 *   Returns: 0, -EDQUOT when the answer is budget_exhausted, other <0 with *reterr.
 */
int agent_node_charge(
        NucleusClient *c,
        const char *pod,
        uint64_t usd_micros,
        uint64_t input_tokens,
        uint64_t output_tokens,
        char **reterr);

/* The agent-facing operations a policy grants (NULL-terminated strv, sorted in tool-table
 * order): read/list (read_files), write (write_files), edit (edit_files), glob (glob_search),
 * grep (grep_search), run (run_bash, git_commit, git_push or create_pr), web_fetch (web_fetch),
 * each at level low_risk or above (operations needing approval are included: the approval
 * flow handles them), and status (always). */
char **agent_ops_for_policy(const Policy *p);

/* Which capability (approval token operation) a tool call exercises: for run, by argv as the
 * proxy judges it (git push -> git_push, git commit -> git_commit, gh pr create -> create_pr,
 * else run_bash); write -> write_files, edit -> edit_files, read/list -> read_files, ...
 * Returns a static string, or NULL when unknown. The node's answer's "operation" field, when
 * present, wins over this guess. */
const char *agent_call_operation(const char *op, json_t *args);

/* The JSON that an approval token's args_sha256 binds for a call: the argv array for run,
 * else the arguments object. Borrowed reference into args. */
json_t *agent_call_approval_args(const char *op, json_t *args);

/*
 * agent_node_hold_approval:
 *   For a call the proxy answered approval_required: asks the node to hold it as a pending
 *   approval (POST .../tools/{op}?approval=hold) and waits, until deadline (CLOCK_MONOTONIC
 *   µs; 0 = the pending record's own expiry) or *interrupted, for a human-facing approver
 *   (nucleus console, `nucleus approvals`, a webhook) to decide it (docs/approvals.md).
 *   Returns: 2 and *ret = the tool's answer when the call ran at once (an approval for the
 *   rest of the pod already covered it); 1 when approved (the caller retries the call, which
 *   the proxy now lets through once); 0 when refused, expired or withdrawn, *ret = the decided
 *   record (its "decision_reason" is the human's); <0 on transport failures with *reterr. A
 *   wait that ends without a decision withdraws the pending approval.
 */
int agent_node_hold_approval(
        NucleusClient *c,
        const char *pod,
        const char *op,
        json_t *args,
        usec_t deadline,
        const volatile int *interrupted,
        json_t **ret,
        char **reterr);

/* Is a human-facing approver attached to the node (a console or `approvals serve` sent a
 * heartbeat recently)? GET /v1/pods/{pod}/approvals. False on any error. */
bool agent_node_approvers_attached(NucleusClient *c, const char *pod);
