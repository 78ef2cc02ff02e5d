/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent loop: alternate model turns and tool calls until the model stops calling tools or
 * a limit (turns, deadline, budget, Ctrl-C) is reached. Every tool call goes through the hooks
 * (in nucleus run: the node's signed tool route); denials go back to the model as error
 * results so it can adapt. Model output is untrusted: tool names not offered are refused
 * here, arguments are passed to the pod's proxy, which enforces the policy.
 */
#pragma once

#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "llm.h"

typedef enum AgentStop {
        AGENT_STOP_DONE,        /* the model answered without tool calls */
        AGENT_STOP_MAX_TURNS,   /* --max-turns reached */
        AGENT_STOP_DEADLINE,    /* --timeout / pod deadline reached */
        AGENT_STOP_BUDGET,      /* the pod's budget is exhausted */
        AGENT_STOP_INTERRUPTED, /* Ctrl-C */
        AGENT_STOP_ERROR,       /* model or node unreachable, malformed answers */
        _AGENT_STOP_MAX,
        _AGENT_STOP_INVALID = -EINVAL,
} AgentStop;

const char *agent_stop_to_string(AgentStop s);
AgentStop agent_stop_from_string(const char *s);

#define AGENT_APPROVE_RAN 2

typedef struct AgentHooks {
        /* Perform op(args) in the pod. Returns 0 with *ret_answer = the proxy's JSON answer (the
         * result, or {"error","kind",...} for a denial), or <0 on transport failure with
         * *reterr. Required. */
        int (*call_tool)(void *userdata, const char *op, json_t *args, json_t **ret_answer, char **reterr);
        /* The call was answered approval_required: ask a human. Returns 1 when an approval was
         * granted and submitted (the call is retried once), AGENT_APPROVE_RAN when the hook got
         * the approval and the call already ran (answer now holds its result), 0 when refused
         * (the denial is given to the model; a "refusal_reason" the hook put in answer is kept
         * with its message), <0 on error (treated as refused). NULL: always refused. */
        int (*approve)(void *userdata, const char *op, json_t *args, json_t *answer);
        /* Charge a model turn to the pod's meter. Returns 0, -EDQUOT when the budget is
         * exhausted (the run stops), other <0 on failure (the run stops: fail closed).
         * NULL: nothing is charged. */
        int (*charge)(void *userdata, uint64_t micros, uint64_t input_tokens, uint64_t output_tokens);
        void *userdata;
} AgentHooks;

typedef struct AgentOptions {
        const char *task;                 /* the user's task, required */
        const char *system;               /* system prompt; NULL: built-in */
        json_t *tools;                    /* offered tools (agent_tools_for_ops()); not consumed */
        unsigned max_turns;               /* model turns; 0: unlimited */
        uint64_t deadline;                /* CLOCK_MONOTONIC usec; 0: none */
        uint64_t price_in;                /* micro-USD per million input tokens */
        uint64_t price_out;               /* micro-USD per million output tokens */
        volatile sig_atomic_t *interrupt; /* set by a SIGINT handler; may be NULL */
        FILE *text_out;                   /* streamed model text (stdout); NULL: silent */
        FILE *log_out;                    /* one line per tool call and outcome (stderr); NULL: silent */
} AgentOptions;

typedef struct AgentStats {
        AgentStop stop;
        char *stop_detail; /* human-readable reason; never NULL after agent_run() */
        unsigned turns;    /* model turns completed */
        uint64_t input_tokens;
        uint64_t output_tokens;
        uint64_t cost_micros; /* computed from tokens x price */
        unsigned tool_calls;
        unsigned denials;        /* tool calls answered with an error kind */
        json_t *denials_by_kind; /* {"kind": count} */
        json_t *calls;           /* [{"tool","args","outcome","error"?}] */
        char *final_text;        /* last assistant text ("" if none) */
} AgentStats;

void agent_stats_done(AgentStats *s);
/* Summary object: stop, stop_detail, turns, tokens, cost_usd, tool_calls, denials, calls. */
json_t *agent_stats_to_json(const AgentStats *s);

/* Run the loop until it stops. Always fills *ret (stats so far) and returns 0; returns <0
 * only for invalid options (-EINVAL). The stop reason says why it ended. */
int agent_run(LlmClient *c, const AgentOptions *o, const AgentHooks *h, AgentStats *ret);

/* The one-line description of a tool call used in logs and the approval prompt:
 * `op {"compact":"args"}`, control and invisible characters made visible, capped at max bytes. */
char *agent_describe_call(const char *op, json_t *args, size_t max);
