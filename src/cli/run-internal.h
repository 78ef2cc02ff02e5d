/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the files of `nucleus run` share (verb-run.c is the verb; docs/run.md): its options
 * (run-options.c), the policy, pod spec and model settings (run-config.c), the workspace
 * checks and upload (run-workspace.c), the pod's hooks, approvals and lifetime (run-pod.c)
 * and the summary (run-output.c).
 */
#pragma once

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "agent-workspace.h"
#include "agent.h"
#include "cli.h"
#include "client-lease.h"
#include "client-settings.h"
#include "client.h"
#include "llm.h"
#include "policy.h"
#include "run-agent.h"
#include "run-gateway.h"
#include "run-setup.h"

#define RUN_BOOT_TIMEOUT_USEC (600 * USEC_PER_SEC) /* TCG boots are slow */
#define RUN_APPROVAL_TTL_SEC 300
#define RUN_TIMEOUT_MAX_SEC 86400 /* the node's own ceiling ([pods] max_timeout_seconds) */
#define RUN_MAX_TURNS_DEFAULT 50
#define RUN_MAX_TURNS_MAX 10000
#define RUN_MODEL_PROBE_TIMEOUT_MS 5000

typedef struct RunOptions {
        const char *task;
        const char *dir;
        const char *profile;
        const char *policy_file;
        const char *allow_commands[32]; /* --allow-command: allowlist additions for this run */
        size_t n_allow_commands;
        const char *max_cost;
        uint64_t timeout_sec;
        const char *network;
        unsigned max_turns;
        const char *model;
        const char *provider;
        const char *base_url;
        const char *api_key_env;
        const char *price_in;
        const char *price_out;
        const char *script;
        const char *agent_cmd;
        RunAgentKind agent; /* --agent; RUN_AGENT_CMD with --agent-cmd; -1 for the built-in loop */
        char **agent_argv;  /* --agent mcp: the command after "--"; --agent-cmd: its words */
        char **agent_extra; /* --agent claude|codex: arguments after "--" */
        bool apply;
        bool apply_flagged;
        bool include_untracked_binaries;
        const char *patch_out;
        const char *audit_out;
        OutputMode output;
        bool keep_text_stdout;
        uint32_t history;     /* commits of history to upload (AgentTarOptions.history) */
        uint32_t scratch_mib; /* 0: sized from the workspace */
        const char *image;    /* named guest image (spec.image); NULL: the node's default */
        const char *setup_commands[RUN_SETUP_COMMANDS_MAX]; /* --setup, in order (run-setup.h) */
        size_t n_setup_commands;
        const char *setup_hosts[RUN_SETUP_HOSTS_MAX]; /* --setup-host */
        size_t n_setup_hosts;
} RunOptions;

/* Set by the run's signal handler (verb-run.c): the run ends, the pod is still deleted. */
extern volatile sig_atomic_t run_interrupted;

/* ---- options (run-options.c) ---- */

void run_help(void);

/* --network allow=...,dns=... -> the spec's network section. Returns 0, or -EINVAL with
 * *reterr naming the bad item. */
int run_parse_network(const char *s, json_t **ret, char **reterr);

/* Every value that can be checked without the network is checked here, so a usage error
 * (exit 2) never costs a pod. Returns 1 to go on, 0 after --help, -EINVAL after a usage
 * error was printed. */
int run_parse_options(int argc, char **argv, RunOptions *o);

/* ---- policy, spec and model (run-config.c) ---- */

/* What config.toml adds to run's flags (docs/config.md). Only values set in the file count:
 * the loader's built-in defaults would otherwise override the profile's own budget. */
typedef struct RunDefaults {
        char *profile;      /* default_profile; never NULL after run_defaults_load() */
        bool have_max_cost; /* [budget] max_cost_usd */
        uint64_t max_cost_micros;
        bool have_input_tokens; /* [budget] max_input_tokens */
        uint64_t max_input_tokens;
        bool have_output_tokens; /* [budget] max_output_tokens */
        uint64_t max_output_tokens;
        uint64_t timeout_sec; /* [budget] timeout_seconds; 0: not set */
        char *image;          /* [images] default when set in the file; NULL: the node's default */
} RunDefaults;

void run_defaults_done(RunDefaults *d);
int run_defaults_load(const RunOptions *o, const char *config_file, RunDefaults *ret);

/* How the spec names the policy: by profile (the node builds it, --max-cost tightening it)
 * or inline (a policy file, a budget above the profile's own, or token limits from
 * config.toml). */
typedef struct PolicyForm {
        bool inline_policy;
        bool have_max_cost;
        uint64_t max_cost_micros;
} PolicyForm;

/* Returns 0, or a negative errno after logging (a bad policy file, an unknown profile). */
int run_load_policy(const RunOptions *o, const RunDefaults *d, Policy **ret, PolicyForm *ret_form);
/* The setup step (run-setup.h): the policy file's [setup] table, then --setup commands and
 * --setup-host hosts. Returns 0, or -EINVAL after logging (nothing was created). */
int run_load_setup(const RunOptions *o, RunSetup *ret);
/* The pod spec. timeout_sec 0 sends none: the node then picks min(its default, the policy's
 * window), so a run without --timeout or [budget] timeout_seconds never asks for more. */
json_t *run_build_spec(
        const RunOptions *o,
        const Policy *p,
        const PolicyForm *form,
        const char *dir,
        json_t *network,
        uint64_t timeout_sec,
        uint32_t scratch_mib,
        const char *image);
/* Model settings: flags > environment (NUCLEUS_MODEL_*) > config.toml [model] (values set in
 * the file only; its built-in defaults do not count as "a model is configured") > defaults. */
int run_model_config(
        const RunOptions *o, const char *config_file, LlmConfig *ret, uint64_t *ret_in, uint64_t *ret_out);
/* A cheap look at the model endpoint before a pod boots: name resolution and a TCP (and TLS)
 * connection to the base URL, nothing sent, no key used. Proxies from the environment apply
 * as they do for the model client itself. */
int run_model_reachable(const char *base_url, char **reterr);

/* ---- the run's state, shared by the hooks and the summary ---- */

typedef struct RunContext {
        const RunOptions *opts;
        NucleusClient *client;
        char *pod;
        char *secrets_dir;
        unsigned approvals_granted;
        unsigned approvals_refused;
} RunContext;

/* ---- the workspace (run-workspace.c) ---- */

/* -d DIR: an existing, readable directory; its canonical path into dir. Logs and returns
 * -errno otherwise (a usage error: nothing was created). */
int run_check_workspace(const char *path, char dir[static PATH_MAX]);
/* The scratch disk a workspace needs when the user named none: the files, their baseline
 * pack (about as much again) and the history, room for builds and test output, and never less
 * than the spec's default. */
uint32_t run_scratch_for(uint64_t tar_bytes);
/* Refuse, before a byte is sent, an upload the node or the pod's disk cannot take (the node
 * checks the same from Content-Length; this says it without a half-sent stream). */
int run_upload_fits(const json_t *pod, const AgentTar *tar, char **reterr);
int run_upload_workspace(RunContext *c, const AgentTar *tar, bool progress, char **reterr);
/* The project in dir needs a toolchain (a Python, Node, Rust or Go project by its marker
 * files) that the image (NULL: the default one) lacks, by the package list of its manifest in
 * this machine's images dir: a hint naming the image that has it, for before any pod exists
 * (otherwise the agent finds out by failing its first test run, turns and money later).
 * Returns a new string, or NULL when there is nothing to say or nothing known. */
char *run_toolchain_hint(const char *dir, const char *image);

/* ---- the pod (run-pod.c) ---- */

int run_hook_call_tool(void *userdata, const char *op, json_t *args, json_t **ret, char **reterr);
int run_hook_approve(void *userdata, const char *op, json_t *args, json_t *answer);
/* An external agent's tool calls and denials, from the pod's audit log (the node's records,
 * not the agent's word): every result record of a tool operation. */
void run_stats_from_audit(const char *path, AgentStats *st);
/* Starts the run's model gateway and points the built-in client at it (*llm is replaced). */
int run_start_gateway(
        RunContext *c,
        const ClientSettings *settings,
        const LlmConfig *mcfg,
        uint64_t price_in,
        uint64_t price_out,
        uint64_t timeout_sec,
        RunGateway *gateway,
        LlmClient **llm);
int run_wait_running(NucleusClient *client, const char *pod, char **reterr);
int run_delete_pod(NucleusClient *client, const char *pod);
/* GET path_query into file (0600) and/or *ret_body. On failure *reterr (when not NULL) gets
 * what went wrong, the node's own message for a refusal (a pod that has ended). */
int run_fetch_to_file(
        NucleusClient *client,
        const char *path_query,
        const char *file,
        char **ret_ct,
        char **ret_body,
        size_t *ret_size,
        char **reterr);
/* Runs argv (no shell) with a minimal environment; captures stdout (capped). */
int run_capture(char *const argv[], char **ret_out, int *ret_status);
/* Starts renewing the lease of a pod created with spec.lease (docs/api.md "Leases"), a third of
 * the node's grace period apart, from src/lib/client's renewer thread (its own client, so a
 * long model turn never delays a renewal). A node without leases reports no grace period:
 * then nothing renews, and the pod ends at its deadline or when we delete it. Returns the
 * renewer or NULL. */
ClientLease *run_lease_start(NucleusClient *client, const char *pod, json_t *created);

/* ---- output (run-output.c) ---- */

json_t *run_strv_to_json(char *const *l);
void run_print_summary(
        const char *pod,
        const AgentStats *st,
        const char *patch_path,
        const AgentPatch *patch,
        const char *diffstat,
        bool applied,
        const char *apply_note,
        const char *audit_path,
        const RunContext *c,
        json_t *model_calls);
