/* SPDX-License-Identifier: Apache-2.0 */
/*
 * External agents of `nucleus run` (docs/run.md): Claude Code (--agent claude), Codex
 * (--agent codex), any MCP agent (--agent mcp -- CMD..., or --agent-cmd "CMD..."). Each
 * adapter writes the agent's own MCP configuration for the pod, turns off the agent's
 * built-in tools that act on the host, points it at the run's model gateway with the per-run
 * token (never a provider key), runs it in an empty working directory with a private
 * throwaway home and an environment built from nothing, and reads what it prints for the
 * run's final text.
 */
#pragma once

#include <errno.h>
#include <signal.h>
#include <stdbool.h>

#include "client-settings.h"
#include "llm.h"

typedef enum RunAgentKind {
        RUN_AGENT_CMD,    /* --agent-cmd "CMD ..." */
        RUN_AGENT_CLAUDE, /* --agent claude */
        RUN_AGENT_CODEX,  /* --agent codex */
        RUN_AGENT_MCP,    /* --agent mcp -- CMD ... */
        _RUN_AGENT_KIND_MAX,
        _RUN_AGENT_KIND_INVALID = -EINVAL,
} RunAgentKind;

RunAgentKind run_agent_kind_from_string(const char *s);
const char *run_agent_kind_to_string(RunAgentKind k);

typedef struct RunAgentSpec {
        RunAgentKind kind;
        char *const *argv;  /* CMD, MCP: the agent's command; CLAUDE, CODEX: NULL (found on PATH) */
        char *const *extra; /* CLAUDE, CODEX: arguments after "--", added before the task */
        const char *task;
        unsigned max_turns;
        const char *pod;
        const ClientSettings *node; /* for nucleus-mcp: node URL and key file path */
        char *const *ops;           /* the pod's tools */
        const char *gateway_url;    /* "http://127.0.0.1:PORT"; NULL: no model access */
        const char *token;          /* the run's model token */
        LlmProvider provider;       /* of the gateway */
        const char *model;
        bool json_output; /* agent output never reaches our stdout */
        volatile sig_atomic_t *interrupt;
} RunAgentSpec;

typedef struct RunAgentResult {
        int exit_status;  /* exit code, or 128+signal */
        char *final_text; /* the agent's last answer ("" when none) */
} RunAgentResult;

void run_agent_result_done(RunAgentResult *r);

/* Before any pod exists: the agent can be found and the model fits it (Claude Code speaks the
 * Anthropic format, Codex the Responses API). Returns 0 or <0 with *reterr. */
int run_agent_check(RunAgentKind kind, char *const *argv, bool have_model, LlmProvider provider, char **reterr);

/* Runs the agent to completion. Returns 0 (the agent ran; see ret->exit_status) or <0
 * (logged). */
int run_agent_external(const RunAgentSpec *s, RunAgentResult *ret);

/* Parsers of what the agents print, exposed for tests: one line of Claude Code's
 * stream-json or Codex's --json; updates *text with the latest answer text. */
void run_agent_parse_line(RunAgentKind kind, const char *line, size_t n, char **text);
