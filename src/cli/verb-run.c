/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus run: the main job. Builds a pod spec from the policy flags, uploads the working
 * directory as a tar, creates the pod, lets an agent (a model through src/agent, a --script
 * plan, or an external MCP agent via --agent-cmd) act only through the pod's tools, then
 * saves the patch, fetches the audit log and ALWAYS deletes the pod (errors and Ctrl-C
 * included). Trusts the user's flags and files; the node's and the model's answers are
 * untrusted and made visible before they reach the terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent-node.h"
#include "agent-workspace.h"
#include "agent.h"
#include "alloc-util.h"
#include "approval.h"
#include <curl/curl.h>
#include "cli-files.h"
#include "cli-policy.h"
#include "config.h"
DEFINE_TRIVIAL_CLEANUP_FUNC(CliConfig *, cli_config_free);
#include "cli.h"
#include "client-paths.h"
#include "client-lease.h"
#include "client-settings.h"
#include "client.h"
#include "fd-util.h"
#include "json-util.h"
#include "llm.h"
#include "parse-util.h"
#include "log.h"
#include "policy.h"
#include "podspec.h"
#include "pricing.h"
#include "toml.h"
#include "process-util.h"
#include "run-agent.h"
#include "run-gateway.h"
#include "secrets.h"
#include "string-util.h"
#include "time-util.h"
#include "tools.h"
#include "words.h"

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
} RunOptions;

static volatile sig_atomic_t run_interrupted = 0;
static volatile sig_atomic_t run_signal = 0; /* the first signal that ended the run */

static void on_signal(int sig) {
        if (!run_signal)
                run_signal = sig;
        run_interrupted = 1;
}

static void help(void) {
        printf("Usage: nucleus run \"TASK\" [OPTIONS]\n"
               "Run an agent on TASK inside a fresh microVM pod with enforced permissions.\n\n"
               "  -d, --dir DIR            working directory to upload (default .)\n"
               "  -p, --profile NAME       permission profile (default: config.toml default_profile,\n"
               "                           else restrictive)\n"
               "  -c, --config FILE        policy file (.json or .toml) instead of a profile\n"
               "      --allow-command \"CMD ARGS\"  also allow commands starting with these words, for\n"
               "                           this run only (repeatable; blocks still apply)\n"
               "      --max-cost USD       budget for the pod (default: config.toml [budget], else the\n"
               "                           profile's)\n"
               "      --timeout S          pod deadline in seconds (default: [budget] timeout_seconds,\n"
               "                           else the node's default capped by the policy's window)\n"
               "      --network allow=IP[:PORT],dns=NAME,...  give the pod a default-deny network\n"
               "      --max-turns N        model turns (default 50)\n"
               "      --model M            model name (config [model] model)\n"
               "      --provider P         openai (any OpenAI-compatible server) or anthropic\n"
               "      --base-url URL       model API base URL\n"
               "      --api-key-env NAME   environment variable holding the API key\n"
               "      --price-in USD       price per million input tokens\n"
               "      --price-out USD      price per million output tokens\n"
               "      --script PLAN.json   deterministic agent: a listed sequence of tool calls\n"
               "      --agent claude|codex|mcp  run Claude Code, Codex or any MCP agent (mcp: its command\n"
               "                           after --; claude/codex: extra arguments after --)\n"
               "      --agent-cmd \"CMD..\"  run an external MCP agent wired to nucleus-mcp for the pod\n"
               "      --patch-out FILE     where to save the patch (default in the state dir)\n"
               "      --audit-out FILE     where to save the pod's audit log (default in the state dir)\n"
               "      --apply              apply the patch to DIR with git apply\n"
               "      --apply-flagged      also apply when the patch touches flagged paths\n"
               "      --include-untracked-binaries\n"
               "                           keep new binary files (build artefacts) in the patch\n"
               "      --output text|json   JSON: one document on stdout, nothing else\n"
               "      --history N|all|none commits of the current branch to upload with the\n"
               "                           files (default 1: history can hold deleted secrets)\n"
               "      --scratch-mib N      the pod's scratch disk (default: sized from the workspace)\n"
               "      --image NAME         guest image built with 'nucleus image build --name NAME'\n");
}

/* --network allow=...,dns=... -> the spec's network section. Returns 0, or -EINVAL with
 * *reterr naming the bad item. */
static int parse_network(const char *s, json_t **ret, char **reterr) {
        _cleanup_json_ json_t *allow = json_array(), *dns = json_array();
        _cleanup_free_ char *copy = xstrdup(s);
        char *save = NULL;
        for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                const char *v;
                if ((v = startswith(w, "allow=")) && *v)
                        json_array_append_new(allow, json_string(v));
                else if ((v = startswith(w, "dns=")) && *v)
                        json_array_append_new(dns, json_string(v));
                else {
                        _cleanup_free_ char *vis = string_make_visible(w);
                        *reterr = xasprintf("--network: '%s' is not allow=IP[/N][:PORT] or dns=NAME", vis);
                        return -EINVAL;
                }
        }
        if (json_array_size(allow) + json_array_size(dns) == 0) {
                *reterr = xstrdup("--network needs at least one allow=IP[/N][:PORT] or dns=NAME");
                return -EINVAL;
        }
        *ret = json_pack("{s:O, s:O}", "allow", allow, "dns_allow", dns);
        return 0;
}

/* ---- options ---- */

/* Every value that can be checked without the network is checked here, so a usage error
 * (exit 2) never costs a pod. Returns 1 to go on, 0 after --help, -EINVAL after a usage
 * error was printed. */
static int parse_options(int argc, char **argv, RunOptions *o) {
        enum {
                ARG_MAX_COST = 0x100,
                ARG_TIMEOUT,
                ARG_NETWORK,
                ARG_MAX_TURNS,
                ARG_MODEL,
                ARG_PROVIDER,
                ARG_BASE_URL,
                ARG_API_KEY_ENV,
                ARG_PRICE_IN,
                ARG_PRICE_OUT,
                ARG_SCRIPT,
                ARG_AGENT_CMD,
                ARG_AGENT,
                ARG_APPLY,
                ARG_APPLY_FLAGGED,
                ARG_INCLUDE_UNTRACKED_BINARIES,
                ARG_PATCH_OUT,
                ARG_AUDIT_OUT,
                ARG_OUTPUT,
                ARG_ALLOW_COMMAND,
                ARG_HISTORY,
                ARG_SCRATCH_MIB,
                ARG_IMAGE,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "dir", required_argument, NULL, 'd' },
                { "profile", required_argument, NULL, 'p' },
                { "config", required_argument, NULL, 'c' },
                { "max-cost", required_argument, NULL, ARG_MAX_COST },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "network", required_argument, NULL, ARG_NETWORK },
                { "max-turns", required_argument, NULL, ARG_MAX_TURNS },
                { "model", required_argument, NULL, ARG_MODEL },
                { "provider", required_argument, NULL, ARG_PROVIDER },
                { "base-url", required_argument, NULL, ARG_BASE_URL },
                { "api-key-env", required_argument, NULL, ARG_API_KEY_ENV },
                { "price-in", required_argument, NULL, ARG_PRICE_IN },
                { "price-out", required_argument, NULL, ARG_PRICE_OUT },
                { "script", required_argument, NULL, ARG_SCRIPT },
                { "agent-cmd", required_argument, NULL, ARG_AGENT_CMD },
                { "agent", required_argument, NULL, ARG_AGENT },
                { "apply", no_argument, NULL, ARG_APPLY },
                { "apply-flagged", no_argument, NULL, ARG_APPLY_FLAGGED },
                { "include-untracked-binaries", no_argument, NULL, ARG_INCLUDE_UNTRACKED_BINARIES },
                { "patch-out", required_argument, NULL, ARG_PATCH_OUT },
                { "audit-out", required_argument, NULL, ARG_AUDIT_OUT },
                { "output", required_argument, NULL, ARG_OUTPUT },
                { "allow-command", required_argument, NULL, ARG_ALLOW_COMMAND },
                { "history", required_argument, NULL, ARG_HISTORY },
                { "scratch-mib", required_argument, NULL, ARG_SCRATCH_MIB },
                { "image", required_argument, NULL, ARG_IMAGE },
                {},
        };
        int c;
        uint32_t u;
        uint64_t m;

#define RUN_USAGE(...) ((void) cli_usage_error("run", __VA_ARGS__), -EINVAL)
        *o = (RunOptions){ .dir = ".", .agent = _RUN_AGENT_KIND_INVALID, .history = AGENT_HISTORY_DEFAULT };
        /* Everything after the first "--" belongs to the agent (--agent). */
        int dashdash = argc;
        for (int i = 1; i < argc; i++)
                if (streq(argv[i], "--")) {
                        dashdash = i;
                        break;
                }
        _cleanup_strv_free_ char **after = dashdash < argc ? strv_copy(argv + dashdash + 1) : NULL;
        argc = dashdash;
        while ((c = getopt_long(argc, argv, "hd:p:c:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case 'd':
                        if (isempty(optarg))
                                return RUN_USAGE("--dir needs a directory");
                        o->dir = optarg;
                        break;
                case 'p':
                        if (!policy_profile_canonical_name(optarg)) {
                                const char *const *names = policy_profile_names();
                                _cleanup_free_ char *list = strv_join((char *const *) names, ", ");
                                return RUN_USAGE("--profile: unknown profile '%s' (known: %s)", optarg, list);
                        }
                        o->profile = optarg;
                        break;
                case 'c':
                        if (!endswith(optarg, ".json") && !endswith(optarg, ".toml"))
                                return RUN_USAGE(
                                        "--config %s: a policy file ends in .json or .toml (the same keys "
                                        "in "
                                        "both; see docs/policy.md)",
                                        optarg);
                        o->policy_file = optarg;
                        break;
                case ARG_MAX_COST:
                        if (pricing_parse_usd(optarg, &m) < 0)
                                return RUN_USAGE("--max-cost: '%s' is not a USD amount like 0.50", optarg);
                        o->max_cost = optarg;
                        break;
                case ARG_TIMEOUT:
                        if (safe_atou32(optarg, &u) < 0 || u == 0 || u > RUN_TIMEOUT_MAX_SEC)
                                return RUN_USAGE(
                                        "--timeout needs a number of seconds 1..%u, got '%s'",
                                        RUN_TIMEOUT_MAX_SEC,
                                        optarg);
                        o->timeout_sec = u;
                        break;
                case ARG_NETWORK:
                        o->network = optarg;
                        break;
                case ARG_MAX_TURNS:
                        if (safe_atou32(optarg, &u) < 0 || u == 0 || u > RUN_MAX_TURNS_MAX)
                                return RUN_USAGE(
                                        "--max-turns needs a number 1..%u, got '%s'", RUN_MAX_TURNS_MAX, optarg);
                        o->max_turns = u;
                        break;
                case ARG_MODEL:
                        if (isempty(optarg) || string_has_cc(optarg, NULL))
                                return RUN_USAGE("--model needs a model name");
                        o->model = optarg;
                        break;
                case ARG_PROVIDER: {
                        LlmProvider prov = llm_provider_from_string(optarg);
                        if (prov < 0 || prov == LLM_PROVIDER_SCRIPT)
                                return RUN_USAGE("--provider: '%s' is not openai or anthropic", optarg);
                        o->provider = optarg;
                        break;
                }
                case ARG_BASE_URL:
                        if ((!startswith(optarg, "http://") && !startswith(optarg, "https://")) ||
                            string_has_cc(optarg, NULL) || strpbrk(optarg, " \"'<>\\"))
                                return RUN_USAGE("--base-url: '%s' is not an http:// or https:// URL", optarg);
                        o->base_url = optarg;
                        break;
                case ARG_API_KEY_ENV:
                        if (isempty(optarg) || (optarg[0] >= '0' && optarg[0] <= '9') ||
                            strspn(optarg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
                                    strlen(optarg))
                                return RUN_USAGE("--api-key-env takes the NAME of an environment variable "
                                                 "(never the "
                                                 "key itself)");
                        o->api_key_env = optarg;
                        break;
                case ARG_PRICE_IN:
                        if (pricing_parse_usd(optarg, &m) < 0)
                                return RUN_USAGE("--price-in: '%s' is not a USD amount", optarg);
                        o->price_in = optarg;
                        break;
                case ARG_PRICE_OUT:
                        if (pricing_parse_usd(optarg, &m) < 0)
                                return RUN_USAGE("--price-out: '%s' is not a USD amount", optarg);
                        o->price_out = optarg;
                        break;
                case ARG_SCRIPT:
                        if (isempty(optarg))
                                return RUN_USAGE("--script needs a plan file");
                        o->script = optarg;
                        break;
                case ARG_AGENT_CMD:
                        if (isempty(optarg))
                                return RUN_USAGE("--agent-cmd needs a command");
                        o->agent_cmd = optarg;
                        break;
                case ARG_AGENT:
                        o->agent = run_agent_kind_from_string(optarg);
                        if (o->agent < 0)
                                return RUN_USAGE("--agent: '%s' is not claude, codex or mcp", optarg);
                        break;
                case ARG_APPLY:
                        o->apply = true;
                        break;
                case ARG_INCLUDE_UNTRACKED_BINARIES:
                        o->include_untracked_binaries = true;
                        break;
                case ARG_APPLY_FLAGGED:
                        o->apply_flagged = true;
                        break;
                case ARG_PATCH_OUT:
                        if (isempty(optarg))
                                return RUN_USAGE("--patch-out needs a file name");
                        o->patch_out = optarg;
                        break;
                case ARG_AUDIT_OUT:
                        if (isempty(optarg))
                                return RUN_USAGE("--audit-out needs a file name");
                        o->audit_out = optarg;
                        break;
                case ARG_OUTPUT:
                        if (cli_parse_output(optarg, &o->output) != 0)
                                return -EINVAL;
                        break;
                case ARG_ALLOW_COMMAND: {
                        _cleanup_strv_free_ char **w = NULL;
                        unsigned meta = 0;
                        if (words_split(optarg, &w, &meta) < 0 || !w[0] || meta)
                                return RUN_USAGE(
                                        "--allow-command '%s': give the command's words, without shell "
                                        "syntax or variables",
                                        optarg);
                        if (o->n_allow_commands >= ELEMENTSOF(o->allow_commands))
                                return RUN_USAGE("--allow-command: at most %zu", ELEMENTSOF(o->allow_commands));
                        o->allow_commands[o->n_allow_commands++] = optarg;
                        break;
                }
                case ARG_HISTORY:
                        if (streq(optarg, "all"))
                                o->history = AGENT_HISTORY_ALL;
                        else if (streq(optarg, "none"))
                                o->history = 0;
                        else if (safe_atou32(optarg, &u) < 0 || u == 0 || u == AGENT_HISTORY_ALL)
                                return RUN_USAGE(
                                        "--history needs a number of commits, all or none, got '%s'", optarg);
                        else
                                o->history = u;
                        break;
                case ARG_SCRATCH_MIB:
                        if (safe_atou32(optarg, &u) < 0 || u < PODSPEC_SCRATCH_MIB_MIN ||
                            u > PODSPEC_SCRATCH_MIB_MAX)
                                return RUN_USAGE(
                                        "--scratch-mib needs a size in MiB between %u and %u, got '%s'",
                                        PODSPEC_SCRATCH_MIB_MIN,
                                        PODSPEC_SCRATCH_MIB_MAX,
                                        optarg);
                        o->scratch_mib = u;
                        break;
                case ARG_IMAGE:
                        /* An image is a name in the node's store, never a path (docs/podspec.md). */
                        if (isempty(optarg) || strlen(optarg) > 64 ||
                            !((optarg[0] >= 'a' && optarg[0] <= 'z') ||
                              (optarg[0] >= '0' && optarg[0] <= '9')) ||
                            strspn(optarg, "abcdefghijklmnopqrstuvwxyz0123456789._-") != strlen(optarg) ||
                            strstr(optarg, ".."))
                                return RUN_USAGE(
                                        "--image: '%s' is not an image name ([a-z0-9][a-z0-9._-]*)", optarg);
                        o->image = optarg;
                        break;
                case '?':
                case ':':
                        /* getopt named the problem. */
                        fprintf(stderr, "Run 'nucleus run --help' for usage.\n");
                        return -EINVAL;
                default:
                        cli_assert_not_reached();
                }

        if (optind >= argc)
                return RUN_USAGE("a TASK is required: nucleus run \"TASK\" (use - to read it from stdin)");
        if (optind + 1 < argc)
                return RUN_USAGE(
                        "expected exactly one TASK, got %d arguments (quote the task: nucleus run \"fix the "
                        "tests\")",
                        argc - optind);
        o->task = argv[optind];

        /* Combinations. */
        if (o->script && o->agent_cmd)
                return RUN_USAGE("--script and --agent-cmd exclude each other");
        if (o->agent >= 0 && (o->script || o->agent_cmd))
                return RUN_USAGE("--agent excludes --script and --agent-cmd");
        if (o->agent == RUN_AGENT_MCP) {
                if (strv_length(after) == 0)
                        return RUN_USAGE("--agent mcp needs the agent's command after \"--\"");
                o->agent_argv = TAKE_PTR(after);
        } else if (o->agent >= 0)
                o->agent_extra = TAKE_PTR(after);
        else if (after)
                return RUN_USAGE("arguments after \"--\" go with --agent only");
        if (o->agent_cmd) {
                unsigned meta = 0;
                o->agent = RUN_AGENT_CMD;
                if (words_split(o->agent_cmd, &o->agent_argv, &meta) < 0 || strv_length(o->agent_argv) == 0)
                        return RUN_USAGE("--agent-cmd: cannot split '%s' into words", o->agent_cmd);
        }
        if (o->profile && o->policy_file)
                return RUN_USAGE("--profile and --config exclude each other (the file is the whole policy)");
        if (o->apply_flagged && !o->apply)
                return RUN_USAGE("--apply-flagged only goes with --apply");
        if (o->script) {
                const char *which = "--script";
                const struct {
                        const char *flag, *value;
                } model_flags[] = {
                        { "--model", o->model },       { "--provider", o->provider },
                        { "--base-url", o->base_url }, { "--api-key-env", o->api_key_env },
                        { "--price-in", o->price_in }, { "--price-out", o->price_out },
                };
                for (size_t i = 0; i < ELEMENTSOF(model_flags); i++)
                        if (model_flags[i].value)
                                return RUN_USAGE(
                                        "%s does not go with %s: there is no model client to configure",
                                        model_flags[i].flag,
                                        which);
        }
        if (o->network) {
                _cleanup_json_ json_t *n = NULL;
                _cleanup_free_ char *err = NULL;
                if (parse_network(o->network, &n, &err) < 0)
                        return RUN_USAGE("%s", err);
        }
        return 1;
#undef RUN_USAGE
}

/* ---- policy and spec ---- */

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

static void run_defaults_done(RunDefaults *d) {
        d->profile = mfree(d->profile);
        d->image = mfree(d->image);
}

static int run_defaults_load(const RunOptions *o, const char *config_file, RunDefaults *ret) {
        _cleanup_(cli_config_freep) CliConfig *cfg = NULL;
        _cleanup_free_ char *err = NULL;
        int r;

        (void) o;
        r = cli_config_load(config_file, false, &cfg, &err);
        if (r < 0)
                return log_error_errno(r, "%s", err ? err : "cannot load config.toml");
#define FROM_FILE(f) (cfg->origins[(f)].source == CONFIG_SOURCE_FILE)
        *ret = (RunDefaults){
                .profile = xstrdup(cfg->default_profile ?: "restrictive"),
                .have_max_cost = FROM_FILE(CLI_BUDGET_MAX_COST_USD),
                .max_cost_micros = cfg->budget.max_cost_usd_micros,
                .have_input_tokens = FROM_FILE(CLI_BUDGET_MAX_INPUT_TOKENS),
                .max_input_tokens = cfg->budget.max_input_tokens,
                .have_output_tokens = FROM_FILE(CLI_BUDGET_MAX_OUTPUT_TOKENS),
                .max_output_tokens = cfg->budget.max_output_tokens,
                .timeout_sec = FROM_FILE(CLI_BUDGET_TIMEOUT_SECONDS) ? cfg->budget.timeout_seconds : 0,
                .image = FROM_FILE(CLI_IMAGES_DEFAULT) ? xstrdup(cfg->images.default_image) : NULL,
        };
#undef FROM_FILE
        return 0;
}

/* How the spec names the policy: by profile (the node builds it, --max-cost tightening it)
 * or inline (a policy file, a budget above the profile's own, or token limits from
 * config.toml). */
typedef struct PolicyForm {
        bool inline_policy;
        bool have_max_cost;
        uint64_t max_cost_micros;
} PolicyForm;

/* Returns 0, or a negative errno after logging (a bad policy file, an unknown profile). */
static int load_policy(const RunOptions *o, const RunDefaults *d, Policy **ret, PolicyForm *ret_form) {
        _cleanup_(policy_freep) Policy *p = NULL;
        const char *profile = o->profile ?: d->profile;
        int r;

        if (o->policy_file) {
                _cleanup_free_ char *err = NULL;
                r = cli_policy_file_load(o->policy_file, &p, &err);
                if (r < 0)
                        return log_error_errno(r, "%s", err);
        } else {
                r = policy_profile_new(profile, &p);
                if (r < 0) {
                        const char *const *names = policy_profile_names();
                        _cleanup_free_ char *list = strv_join((char *const *) names, ", ");
                        return log_error_errno(r, "unknown profile '%s' (known: %s)", profile, list);
                }
        }
        *ret_form = (PolicyForm){ .inline_policy = o->policy_file != NULL };

        /* --allow-command: added to the allowlist of this run's policy, which then goes inline
         * (the node records the policy it enforces in the audit log). */
        for (size_t i = 0; i < o->n_allow_commands; i++) {
                if (p->commands.unrestricted)
                        break; /* every command is already allowed; blocks still apply */
                strv_extend(&p->commands.allowed, o->allow_commands[i]);
                ret_form->inline_policy = true;
        }
        if (o->n_allow_commands > 0) {
                /* A set again, and checked as the node will. */
                _cleanup_json_ json_t *j = policy_to_json(p);
                _cleanup_(policy_freep) Policy *q = NULL;
                _cleanup_free_ char *err = NULL;
                r = policy_from_json(j, &q, &err);
                if (r < 0)
                        return log_error_errno(r, "--allow-command: %s", err ? err : "invalid policy");
                policy_free(p);
                p = TAKE_PTR(q);
        }

        /* A flag wins over config.toml; the policy file is the whole policy, so config.toml's
         * budget applies only to profiles. */
        bool have_cost = o->max_cost || (!o->policy_file && d->have_max_cost);
        if (have_cost) {
                uint64_t m = d->max_cost_micros;
                if (o->max_cost) {
                        r = pricing_parse_usd(o->max_cost, &m);
                        if (r < 0)
                                return log_error_errno(
                                        r, "--max-cost: '%s' is not a USD amount like 0.50", o->max_cost);
                }
                if (m > p->max_usd_micros)
                        ret_form->inline_policy = true; /* the node only lets overrides tighten */
                ret_form->have_max_cost = true;
                ret_form->max_cost_micros = m;
                p->max_usd_micros = m;
        }
        if (!o->policy_file && d->have_input_tokens && d->max_input_tokens != p->max_input_tokens) {
                p->max_input_tokens = d->max_input_tokens;
                ret_form->inline_policy = true;
        }
        if (!o->policy_file && d->have_output_tokens && d->max_output_tokens != p->max_output_tokens) {
                p->max_output_tokens = d->max_output_tokens;
                ret_form->inline_policy = true;
        }
        policy_normalize(p);
        *ret = TAKE_PTR(p);
        return 0;
}

/* The pod spec. timeout_sec 0 sends none: the node then picks min(its default, the policy's
 * window), so a run without --timeout or [budget] timeout_seconds never asks for more. */
static json_t *build_spec(
        const RunOptions *o,
        const Policy *p,
        const PolicyForm *form,
        const char *dir,
        json_t *network,
        uint64_t timeout_sec,
        uint32_t scratch_mib,
        const char *image) {
        const char *base = strrchr(dir, '/');
        base = base && base[1] ? base + 1 : "workspace";
        _cleanup_free_ char *name = xasprintf("run-%.40s", base);
        for (char *c = name; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
                        *c = (*c >= 'A' && *c <= 'Z') ? (char) (*c - 'A' + 'a') : '-';
        json_t *pol;
        if (form->inline_policy || !p->name)
                pol = json_pack("{s:o}", "inline", policy_to_json(p));
        else {
                pol = json_pack("{s:s}", "profile", p->name);
                if (form->have_max_cost)
                        json_object_set_new(
                                pol, "max_cost_usd", json_real((double) form->max_cost_micros / 1e6));
        }
        /* Held by this run's renewals (docs/api.md "Leases"): a CLI that dies without cleaning
         * up leaves a pod the node ends after its grace period. */
        json_t *spec = json_pack("{s:o}", "policy", pol);
        if (timeout_sec > 0)
                json_object_set_new(spec, "timeout_seconds", json_integer((json_int_t) timeout_sec));
        if (network)
                json_object_set(spec, "network", network);
        json_object_set_new(spec, "resources", json_pack("{s:I}", "scratch_mib", (json_int_t) scratch_mib));
        /* --image, else config.toml [images] default when set there, else the node's default. */
        if (o->image ?: image)
                json_object_set_new(spec, "image", json_string(o->image ?: image));
        /* The pod is held by this run's lease renewals from creation on (the node's default
         * grace period): a CLI that dies without cleaning up leaves nothing running. */
        json_object_set_new(spec, "lease", json_object());
        return json_pack(
                "{s:s, s:s, s:{s:s, s:{s:s}}, s:o}",
                "apiVersion",
                "nucleus/v1",
                "kind",
                "Pod",
                "metadata",
                "name",
                name,
                "labels",
                "nucleus.run",
                "true",
                "spec",
                spec);
}

/* ---- model ---- */

static const char *env_or(const char *flag, const char *env) {
        if (flag)
                return flag;
        const char *e = secure_getenv(env);
        return isempty(e) ? NULL : e;
}

/* Model settings: flags > environment (NUCLEUS_MODEL_*) > config.toml [model] (values set in
 * the file only; its built-in defaults do not count as "a model is configured") > defaults. */
static int model_config(
        const RunOptions *o, const char *config_file, LlmConfig *ret, uint64_t *ret_in, uint64_t *ret_out) {
        const char *model = env_or(o->model, "NUCLEUS_MODEL");
        const char *provider = env_or(o->provider, "NUCLEUS_MODEL_PROVIDER");
        const char *base = env_or(o->base_url, "NUCLEUS_MODEL_BASE_URL");
        const char *keyenv = env_or(o->api_key_env, "NUCLEUS_MODEL_API_KEY_ENV");
        const char *pin = env_or(o->price_in, "NUCLEUS_MODEL_PRICE_IN");
        const char *pout = env_or(o->price_out, "NUCLEUS_MODEL_PRICE_OUT");
        bool have_cfg_prices = false;
        uint64_t cfg_in = 0, cfg_out = 0, connect_s = 0, idle_s = 0;
        LlmProvider prov;
        int r;

        _cleanup_(cli_config_freep) CliConfig *cfg = NULL;
        _cleanup_free_ char *cerr = NULL;
        r = cli_config_load(config_file, false, &cfg, &cerr);
        if (r < 0)
                return log_error_errno(r, "%s", cerr ? cerr : "cannot load config.toml");
#define FROM_FILE(f) (cfg->origins[(f)].source == CONFIG_SOURCE_FILE)
        connect_s = cfg->model.connect_timeout_seconds;
        idle_s = cfg->model.idle_timeout_seconds;
        bool file_model = FROM_FILE(CLI_MODEL_MODEL) || FROM_FILE(CLI_MODEL_PROVIDER) ||
                FROM_FILE(CLI_MODEL_BASE_URL);
        if (file_model) {
                /* A [model] section: its values (and its per-provider defaults) fill the gaps. */
                if (!provider)
                        provider = cfg->model.provider;
                if (!model && !(o->provider && !FROM_FILE(CLI_MODEL_MODEL)))
                        model = cfg->model.model;
                if (!base && FROM_FILE(CLI_MODEL_BASE_URL))
                        base = cfg->model.base_url;
                if (!keyenv && FROM_FILE(CLI_MODEL_API_KEY_ENV))
                        keyenv = cfg->model.api_key_env;
                have_cfg_prices = true;
                cfg_in = cfg->model.price_in_per_mtok_usd_micros;
                cfg_out = cfg->model.price_out_per_mtok_usd_micros;
        }
#undef FROM_FILE

        if (!model)
                return log_error_errno(
                        -ENOENT,
                        "no model configured: add a [model] section to config.toml, pass --model (and "
                        "--base-url, --provider), set NUCLEUS_MODEL, or use --script PLAN.json");
        if (provider) {
                prov = llm_provider_from_string(provider);
                if (prov < 0 || prov == LLM_PROVIDER_SCRIPT)
                        return log_error_errno(
                                -EINVAL, "--provider: '%s' is not openai or anthropic", provider);
        } else
                prov = (base && strstr(base, "anthropic")) || startswith(model, "claude")
                        ? LLM_PROVIDER_ANTHROPIC
                        : LLM_PROVIDER_OPENAI;
        bool official = !base;
        if (!base)
                base = prov == LLM_PROVIDER_ANTHROPIC ? "https://api.anthropic.com"
                                                      : "https://api.openai.com/v1";
        if (!keyenv) {
                keyenv = prov == LLM_PROVIDER_ANTHROPIC ? "ANTHROPIC_API_KEY" : "OPENAI_API_KEY";
                /* Local servers (Ollama, llama.cpp, vLLM) usually need no key. */
                if (!official && isempty(secure_getenv(keyenv)))
                        keyenv = NULL;
        }
        *ret_in = have_cfg_prices ? cfg_in : 0;
        *ret_out = have_cfg_prices ? cfg_out : 0;
        if (pin && (r = pricing_parse_usd(pin, ret_in)) < 0)
                return log_error_errno(r, "--price-in: '%s' is not a USD amount", pin);
        if (pout && (r = pricing_parse_usd(pout, ret_out)) < 0)
                return log_error_errno(r, "--price-out: '%s' is not a USD amount", pout);
        *ret = (LlmConfig){
                .provider = prov,
                .base_url = xstrdup(base),
                .model = xstrdup(model),
                .api_key_env = keyenv ? xstrdup(keyenv) : NULL,
                .connect_timeout_ms = connect_s * 1000,
                .idle_timeout_ms = idle_s * 1000,
                .stream = true,
        };
        return 0;
}

/* ---- the pod ---- */

typedef struct RunContext {
        const RunOptions *opts;
        NucleusClient *client;
        char *pod;
        char *secrets_dir;
        unsigned approvals_granted;
        unsigned approvals_refused;
} RunContext;

static int hook_call_tool(void *userdata, const char *op, json_t *args, json_t **ret, char **reterr) {
        RunContext *c = userdata;
        return agent_node_call_tool(c->client, c->pod, op, args, ret, reterr);
}

/* An external agent's tool calls and denials, from the pod's audit log (the node's records,
 * not the agent's word): every result record of a tool operation. */
static void stats_from_audit(const char *path, AgentStats *st) {
        static const char *const tool_ops[] = { "read", "list", "write",     "edit", "glob",
                                                "grep", "run",  "web_fetch", NULL };
        _cleanup_free_ char *data = NULL;
        size_t n = 0;
        char *save = NULL;

        if (!path || read_full_file_at(AT_FDCWD, path, 256U * 1024U * 1024U, &data, &n) < 0)
                return;
        for (char *l = strtok_r(data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                _cleanup_json_ json_t *rec = NULL;
                if (json_parse_strict(l, strlen(l), 16U * 1024U * 1024U, &rec, NULL) < 0)
                        continue;
                const char *op = json_string_value(json_object_get(rec, "op"));
                const char *decision = json_string_value(json_object_get(rec, "decision"));
                const char *kind = json_string_value(json_object_get(rec, "kind"));
                if (!op || !strv_contains((char **) tool_ops, op) ||
                    !(streq_ptr(decision, "allow") || streq_ptr(decision, "deny") ||
                      streq_ptr(decision, "error")))
                        continue;
                st->tool_calls++;
                bool denied = !streq(decision, "allow");
                json_array_append_new(
                        st->calls,
                        json_pack("{s:s, s:s}", "tool", op, "outcome", denied ? (kind ?: decision) : "ok"));
                if (denied) {
                        const char *k = kind ?: decision;
                        st->denials++;
                        json_int_t c = json_integer_value(json_object_get(st->denials_by_kind, k));
                        json_object_set_new(st->denials_by_kind, k, json_integer(c + 1));
                }
        }
}

/* What is left of the pod's budget, from its status (max - used - reserved). */
static int pod_budget_left(RunContext *c, uint64_t *ret) {
        _cleanup_json_ json_t *answer = NULL, *args = json_object();
        _cleanup_free_ char *err = NULL;
        int r = agent_node_call_tool(c->client, c->pod, "status", args, &answer, &err);
        if (r < 0)
                return log_error_errno(r, "reading the pod's budget failed: %s", err ? err : strerror(-r));
        json_t *b = json_object_get(answer, "budget");
        json_t *max = json_object_get(b, "max_usd_micros"), *used = json_object_get(b, "used_usd_micros"),
               *res = json_object_get(b, "reserved_usd_micros");
        if (!json_is_integer(max) || !json_is_integer(used) || json_integer_value(max) < 0 ||
            json_integer_value(used) < 0 || json_integer_value(res) < 0)
                return log_error_errno(-EBADMSG, "the pod's status has no budget");
        uint64_t spent = (uint64_t) json_integer_value(used) + (uint64_t) json_integer_value(res);
        *ret = (uint64_t) json_integer_value(max) > spent ? (uint64_t) json_integer_value(max) - spent : 0;
        return 0;
}

/* Starts the run's model gateway and points the built-in client at it (*llm is replaced). */
static int start_gateway(
        RunContext *c,
        const ClientSettings *settings,
        const LlmConfig *mcfg,
        uint64_t price_in,
        uint64_t price_out,
        uint64_t timeout_sec,
        RunGateway *gateway,
        LlmClient **llm) {
        _cleanup_free_ char *err = NULL;
        uint64_t left = 0;
        int r;

        r = pod_budget_left(c, &left);
        if (r < 0)
                return r;
        RunGatewayOptions go = {
                .model = mcfg,
                .price_in = price_in,
                .price_out = price_out,
                .max_usd_micros = left,
                .timeout_sec = timeout_sec,
                .node = settings,
                .pod = c->pod,
        };
        r = run_gateway_start(&go, gateway);
        if (r < 0)
                return r;
        if (!llm)
                return 0;
        _cleanup_free_ char *base = run_gateway_base_url(gateway, mcfg->provider);
        LlmConfig gc = *mcfg;
        gc.base_url = base;
        gc.api_key_env = NULL;
        gc.api_key = gateway->token;
        LlmClient *n = NULL;
        r = llm_client_new(&gc, &n, &err);
        if (r < 0)
                return log_error_errno(r, "%s", err ? err : "cannot set up the model client");
        llm_client_free(*llm);
        *llm = n;
        return 0;
}

static int prompt_yes_no(void) {
        char line[32];
        if (!fgets(line, sizeof line, stdin))
                return 0;
        line[strcspn(line, "\r\n")] = 0;
        return streq(line, "y") || streq(line, "Y") || streq(line, "yes") || streq(line, "YES");
}

/* Without a terminal: when a console or another approver is attached to the node, hold the
 * call there as a pending approval and wait for its decision (docs/approvals.md). */
static int approve_through_queue(
        RunContext *c, const char *op, json_t *args, const char *operation, const char *desc, json_t *answer) {
        _cleanup_json_ json_t *res = NULL;
        _cleanup_free_ char *err = NULL;

        if (!agent_node_approvers_attached(c->client, c->pod)) {
                fprintf(stderr,
                        "[approval] %s needs approval (%s); stdin is not a terminal: denied (no approver is "
                        "attached: 'nucleus console' or 'nucleus approvals serve' decides without one)\n",
                        desc,
                        operation);
                c->approvals_refused++;
                return 0;
        }
        fprintf(stderr,
                "[approval] %s needs approval (%s); waiting for a decision in the approvals queue\n",
                desc,
                operation);
        int r = agent_node_hold_approval(c->client, c->pod, op, args, 0, &run_interrupted, &res, &err);
        if (r < 0) {
                log_error("holding the call for approval failed: %s", err ?: strerror(-r));
                c->approvals_refused++;
                return 0;
        }
        if (r == 2) {
                /* Already covered by an approval for the rest of the pod: it ran. */
                json_object_clear(answer);
                json_object_update(answer, res);
                c->approvals_granted++;
                return AGENT_APPROVE_RAN;
        }
        if (r == 1) {
                c->approvals_granted++;
                fprintf(stderr, "[approval] approved; retrying\n");
                return 1;
        }
        _cleanup_free_ char *why = string_make_visible(
                json_string_value(json_object_get(res, "decision_reason")) ?: "");
        const char *state = json_string_value(json_object_get(res, "state")) ?: "refused";
        fprintf(stderr, "[approval] %s%s%s\n", state, *why ? ": " : "", why);
        _cleanup_free_ char *msg = xasprintf(
                "a human %s this call%s%s; do not retry",
                streq(state, "refused") ? "refused" : "did not approve",
                *why ? ": " : "",
                why);
        json_object_set_new(answer, "error", json_string(msg));
        json_object_set_new(answer, "refusal_reason", json_string(why));
        c->approvals_refused++;
        return -ECANCELED;
}

static int hook_approve(void *userdata, const char *op, json_t *args, json_t *answer) {
        RunContext *c = userdata;
        _cleanup_free_ char *desc = agent_describe_call(op, args, 2000), *err = NULL, *token = NULL;
        const char *operation = json_string_value(json_object_get(answer, "operation"));
        uint8_t key[APPROVAL_SECRET_KEY_SIZE];
        char digest[65];
        int r;

        if (!operation || operation_from_string(operation) < 0)
                operation = agent_call_operation(op, args);
        if (!operation)
                return 0;
        if (!isatty(STDIN_FILENO))
                return approve_through_queue(c, op, args, operation, desc, answer);
        fprintf(stderr,
                "\n[approval] The policy requires a human approval for '%s':\n    %s\n"
                "Approve this exact call once? [y/N] ",
                operation,
                desc);
        fflush(stderr);
        if (!prompt_yes_no() || run_interrupted) {
                fprintf(stderr, "[approval] refused\n");
                c->approvals_refused++;
                return 0;
        }
        r = secret_load(c->secrets_dir, SECRET_APPROVER, key, sizeof key, &err);
        if (r < 0) {
                log_error("cannot load the approver key: %s", err ? err : strerror(-r));
                return r;
        }
        const char *want = json_string_value(json_object_get(answer, "args_sha256"));
        if (want && strlen(want) == 64)
                memcpy(digest, want, 65);
        else if ((r = approval_args_sha256(agent_call_approval_args(op, args), digest)) < 0) {
                explicit_bzero_safe(key, sizeof key);
                return r;
        }
        ApprovalToken t = {
                .version = 1,
                .has_args = true,
                .uses = 1,
                .expires_at = (int64_t) time(NULL) + RUN_APPROVAL_TTL_SEC,
        };
        snprintf(t.pod, sizeof t.pod, "%s", c->pod);
        snprintf(t.operation, sizeof t.operation, "%s", operation);
        memcpy(t.args_sha256, digest, 65);
        r = approval_token_mint(key, &t, &token, NULL);
        explicit_bzero_safe(key, sizeof key);
        if (r < 0)
                return log_error_errno(r, "minting the approval token failed: %m");
        r = agent_node_submit_approval(c->client, c->pod, token, &err);
        if (r < 0) {
                log_error("the node refused the approval: %s", err ? err : strerror(-r));
                return r;
        }
        c->approvals_granted++;
        fprintf(stderr, "[approval] granted once; retrying\n");
        return 1;
}

static int wait_running(NucleusClient *client, const char *pod, char **reterr) {
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s", pod);
        usec_t until = now_usec(CLOCK_MONOTONIC) + RUN_BOOT_TIMEOUT_USEC;
        for (;;) {
                _cleanup_json_ json_t *j = NULL;
                _cleanup_client_error_ ClientError e = {};
                if (run_interrupted)
                        return -EINTR;
                int r = client_call_json(client, "GET", path, NULL, &j, &e);
                if (r < 0) {
                        *reterr = client_error_describe(&e);
                        return r;
                }
                const char *state = json_string_value(json_object_get(j, "state"));
                if (streq_ptr(state, "running"))
                        return 0;
                if (streq_ptr(state, "failed") || streq_ptr(state, "exited") || streq_ptr(state, "stopping")) {
                        _cleanup_free_ char *reason = string_make_visible(
                                json_string_value(json_object_get(j, "reason")) ?: "no reason given");
                        *reterr = xasprintf("pod %s is %s: %s", pod, state, reason);
                        return -EIO;
                }
                if (now_usec(CLOCK_MONOTONIC) > until) {
                        *reterr = xasprintf(
                                "pod %s did not become ready in %llu s (state %s)",
                                pod,
                                (unsigned long long) (RUN_BOOT_TIMEOUT_USEC / USEC_PER_SEC),
                                state ? state : "?");
                        return -ETIMEDOUT;
                }
                (void) usleep(300 * 1000);
        }
}

/* The paths never uploaded (config dir, secret store), canonical. Refuses (-EPERM) when dir
 * itself lies inside one of them. Called before the pod exists. */
static int workspace_excludes(const char *dir, char ***ret, char **reterr) {
        _cleanup_strv_free_ char **exclude = NULL;
        _cleanup_free_ char *cfg = NULL, *sec = NULL;

        if (client_config_dir(&cfg) >= 0) {
                char real[PATH_MAX];
                strv_extend(&exclude, realpath(cfg, real) ? real : cfg);
        }
        if (client_secrets_dir(&sec) >= 0) {
                char real[PATH_MAX];
                strv_extend(&exclude, realpath(sec, real) ? real : sec);
        }
        STRV_FOREACH(e, exclude) {
                const char *rest = startswith(dir, *e);
                if (rest && (*rest == 0 || *rest == '/')) {
                        *reterr = xasprintf(
                                "refusing to upload %s: it is inside the Nucleus config/secret store %s",
                                dir,
                                *e);
                        return -EPERM;
                }
        }
        *ret = TAKE_PTR(exclude);
        return 0;
}

/* The scratch disk a workspace needs when the user named none: the files, their baseline
 * pack (about as much again) and the history, room for builds and test output, and never less
 * than the spec's default. */
static uint32_t scratch_for(uint64_t tar_bytes) {
        uint64_t mib = (tar_bytes * 3) / (1024 * 1024) + 1024;
        if (mib < PODSPEC_SCRATCH_MIB_DEFAULT)
                mib = PODSPEC_SCRATCH_MIB_DEFAULT;
        return (uint32_t) NUCLEUS_MIN(mib, (uint64_t) PODSPEC_SCRATCH_MIB_MAX);
}

/* Refuse, before a byte is sent, an upload the node or the pod's disk cannot take (the node
 * checks the same from Content-Length; this says it without a half-sent stream). */
static int upload_fits(const json_t *pod, const AgentTar *tar, char **reterr) {
        json_t *cap = json_object_get(pod, "max_upload_bytes"), *scratch = json_object_get(pod, "scratch_mib");
        if (json_is_integer(cap) && tar->size > (uint64_t) json_integer_value(cap)) {
                *reterr = xasprintf(
                        "the workspace tar is %llu MiB, over the node's upload cap of %llu MiB ([node] "
                        "max_upload_bytes in node.toml)",
                        (unsigned long long) (tar->size >> 20),
                        (unsigned long long) ((uint64_t) json_integer_value(cap) >> 20));
                return -EFBIG;
        }
        if (json_is_integer(scratch) && tar->size > ((uint64_t) json_integer_value(scratch) << 20) / 2) {
                *reterr = xasprintf(
                        "the workspace tar is %llu MiB, too large for the pod's %llu MiB scratch disk (the "
                        "files and their baseline need about twice that); use --scratch-mib",
                        (unsigned long long) (tar->size >> 20),
                        (unsigned long long) json_integer_value(scratch));
                return -EFBIG;
        }
        return 0;
}

static int upload_workspace(RunContext *c, const AgentTar *tar, bool progress, char **reterr) {
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_client_error_ ClientError e = {};
        int r = agent_workspace_upload(c->client, c->pod, tar, progress, &resp, &e);
        if (r < 0) {
                *reterr = client_error_describe(&e);
                return r;
        }
        if (resp.status < 200 || resp.status >= 300) {
                client_error_from_response(&resp, &e);
                *reterr = client_error_describe(&e);
                return -EREMOTEIO;
        }
        return 0;
}

static int delete_pod(NucleusClient *client, const char *pod) {
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s", pod);
        _cleanup_client_error_ ClientError e = {};
        int r = client_call_json(client, "DELETE", path, NULL, NULL, &e);
        if (r < 0 && e.status != 404) {
                _cleanup_free_ char *d = client_error_describe(&e);
                log_error("could not delete pod %s: %s", pod, d);
                return r;
        }
        return 0;
}

static int fetch_to_file(
        NucleusClient *client,
        const char *path_query,
        const char *file,
        char **ret_ct,
        char **ret_body,
        size_t *ret_size) {
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_client_error_ ClientError e = {};
        int r = client_request(client, "GET", path_query, NULL, NULL, 0, &resp, &e);
        if (r < 0)
                return r;
        if (resp.status < 200 || resp.status >= 300)
                return -EREMOTEIO;
        if (file) {
                r = write_file_atomic_at(AT_FDCWD, file, resp.body, resp.size, 0600);
                if (r < 0)
                        return r;
        }
        if (ret_ct)
                *ret_ct = resp.content_type ? xstrdup(resp.content_type) : NULL;
        if (ret_body) {
                *ret_body = TAKE_PTR(resp.body);
                *ret_size = resp.size;
        }
        return 0;
}

/* Runs argv (no shell) with a minimal environment; captures stdout (capped). */
static int run_capture(char *const argv[], char **ret_out, int *ret_status) {
        _cleanup_free_ char *prog = argv[0][0] == '/' ? xstrdup(argv[0]) : agent_find_program(argv[0]);
        int pipefd[2];
        if (!prog)
                return -ENOENT;
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        _cleanup_close_ int rd = pipefd[0];
        _cleanup_close_ int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
        char *envp[] = { (char *) "PATH=/usr/local/bin:/usr/bin:/bin", (char *) "LC_ALL=C", NULL };
        PidRef pid = PIDREF_NULL;
        _cleanup_strv_free_ char **args = strv_copy(argv);
        free(args[0]);
        args[0] = xstrdup(prog);
        int r = spawn_argv(args, envp, nullfd, pipefd[1], pipefd[1], &pid);
        safe_close(pipefd[1]);
        if (r < 0)
                return r;
        _cleanup_free_ char *out = NULL;
        size_t n;
        r = read_full_fd(rd, 4 * 1024 * 1024, &out, &n);
        int status = 0;
        (void) pidref_wait(&pid, &status);
        pidref_done(&pid);
        if (r < 0)
                return r;
        *ret_status = status;
        if (ret_out)
                *ret_out = TAKE_PTR(out);
        return 0;
}

/* ---- output ---- */

static json_t *strv_to_json(char *const *l) {
        json_t *a = json_array();
        STRV_FOREACH(s, l)
                json_array_append_new(a, json_string(*s));
        return a;
}

static void print_summary(
        const char *pod,
        const AgentStats *st,
        const char *patch_path,
        const AgentPatch *patch,
        const char *diffstat,
        bool applied,
        const char *apply_note,
        const char *audit_path,
        const RunContext *c,
        json_t *model_calls) {
        char usd[32];
        fprintf(stderr, "\n--- nucleus run summary ---\n");
        fprintf(stderr, "pod:         %s (deleted)\n", pod);
        _cleanup_free_ char *detail = string_make_visible(st->stop_detail ?: "");
        fprintf(stderr, "stopped:     %s: %s\n", agent_stop_to_string(st->stop), detail);
        fprintf(stderr, "turns:       %u\n", st->turns);
        fprintf(stderr,
                "tokens:      %llu in, %llu out\n",
                (unsigned long long) st->input_tokens,
                (unsigned long long) st->output_tokens);
        fprintf(stderr, "model cost:  %s\n", pricing_format_usd(usd, st->cost_micros));
        if (json_array_size(model_calls) > 0) {
                RunGatewayTotals t;
                run_gateway_totals(model_calls, &t);
                fprintf(stderr,
                        "model calls: %u through the gateway (%s charged to the pod, %u refused)\n",
                        t.calls,
                        pricing_format_usd(usd, t.cost_micros),
                        t.refused);
        }
        fprintf(stderr, "tool calls:  %u (%u denied", st->tool_calls, st->denials);
        const char *k;
        json_t *v;
        bool first = true;
        json_object_foreach(st->denials_by_kind, k, v) {
                fprintf(stderr, "%s%s %lld", first ? ": " : ", ", k, (long long) json_integer_value(v));
                first = false;
        }
        fprintf(stderr, ")\n");
        if (c->approvals_granted + c->approvals_refused > 0)
                fprintf(stderr,
                        "approvals:   %u granted, %u refused\n",
                        c->approvals_granted,
                        c->approvals_refused);
        if (!patch_path)
                fprintf(stderr, "patch:       not available\n");
        else if (!patch->patch || patch->size == 0)
                fprintf(stderr, "patch:       no changes\n");
        else {
                fprintf(stderr, "patch:       %s\n", patch_path);
                if (diffstat) {
                        _cleanup_free_ char *vis = escape_text(diffstat, strlen(diffstat), ESCAPE_KEEP_NEWLINE);
                        fputs(vis, stderr);
                        if (!endswith(vis, "\n"))
                                fputc('\n', stderr);
                }
                agent_patch_print_flags(patch, "FLAGGED:     ");
                fprintf(stderr,
                        "applied:     %s%s%s\n",
                        applied ? "yes" : "no",
                        apply_note ? " - " : "",
                        apply_note ? apply_note : "");
        }
        if (audit_path)
                fprintf(stderr, "audit log:   %s\n", audit_path);
}

/* ---- checks before any pod exists ---- */

/* -d DIR: an existing, readable directory; its canonical path into dir. Logs and returns
 * -errno otherwise (a usage error: nothing was created). */
static int check_workspace(const char *path, char dir[static PATH_MAX]) {
        struct stat st;

        if (!realpath(path, dir))
                return log_error_errno(-errno, "--dir %s: %m", path);
        if (stat(dir, &st) < 0)
                return log_error_errno(-errno, "--dir %s: %m", path);
        if (!S_ISDIR(st.st_mode))
                return log_error_errno(
                        -ENOTDIR, "--dir %s: not a directory (the workspace is a directory)", path);
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || access(dir, R_OK | X_OK) < 0)
                return log_error_errno(-errno, "--dir %s: cannot read it: %m", path);
        return 0;
}

/* A cheap look at the model endpoint before a pod boots: name resolution and a TCP (and TLS)
 * connection to the base URL, nothing sent, no key used. Proxies from the environment apply
 * as they do for the model client itself. */
static int model_reachable(const char *base_url, char **reterr) {
        char errbuf[CURL_ERROR_SIZE] = "";
        CURL *curl = curl_easy_init();
        if (!curl)
                return log_oom();
        (void) curl_easy_setopt(curl, CURLOPT_URL, base_url);
        (void) curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        (void) curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(curl, CURLOPT_CONNECT_ONLY, 1L);
        (void) curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long) RUN_MODEL_PROBE_TIMEOUT_MS);
        (void) curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
        CURLcode rc = curl_easy_perform(curl);
        curl_easy_cleanup(curl);
        if (rc == CURLE_OK)
                return 0;
        _cleanup_free_ char *vis = string_make_visible(base_url),
                            *why = string_make_visible(errbuf[0] ? errbuf : curl_easy_strerror(rc));
        *reterr = xasprintf(
                "the model endpoint %s is not reachable: %s (check --base-url / [model] base_url; no pod "
                "was "
                "created)",
                vis,
                why);
        return -EHOSTUNREACH;
}

/* ---- the lease ---- */

/* Starts renewing the lease of a pod created with spec.lease (docs/api.md "Leases"), a third of
 * the node's grace period apart, from src/lib/client's renewer thread (its own client, so a
 * long model turn never delays a renewal). A node without leases reports no grace period:
 * then nothing renews, and the pod ends at its deadline or when we delete it. Returns the
 * renewer or NULL. */
static ClientLease *run_lease_start(NucleusClient *client, const char *pod, json_t *created) {
        json_t *grace = json_object_get(created, "lease_grace_seconds");
        if (!json_is_integer(grace) || json_integer_value(grace) <= 0)
                return NULL;
        usec_t interval = NUCLEUS_MAX((usec_t) json_integer_value(grace) * USEC_PER_SEC / 3, USEC_PER_SEC / 2);

        /* Signals are the main thread's business (they end the run, interrupting what it
         * waits for); the renewer inherits this mask. */
        sigset_t all, old;
        sigfillset(&all);
        (void) pthread_sigmask(SIG_BLOCK, &all, &old);
        ClientLease *l = NULL;
        int r = client_lease_start(client, pod, interval, &l);
        (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0) {
                log_warning_errno(r, "cannot renew pod %s's lease: %m", pod);
                return NULL;
        }
        return l;
}

/* ---- the verb ---- */

int verb_run(int argc, char **argv) {
        RunOptions o;
        _cleanup_(policy_freep) Policy *policy = NULL;
        _cleanup_(client_settings_done) ClientSettings settings = {};
        _cleanup_client_free_ NucleusClient *client = NULL;
        _cleanup_(llm_client_freep) LlmClient *llm = NULL;
        _cleanup_(llm_config_done) LlmConfig mcfg = {};
        _cleanup_json_ json_t *network = NULL, *spec = NULL, *created = NULL, *tools = NULL;
        _cleanup_strv_free_ char **ops = NULL, **exclude = NULL;
        _cleanup_free_ char *err = NULL, *task_buf = NULL, *state = NULL, *patch_path = NULL,
                            *audit_path = NULL, *diffstat = NULL, *apply_note = NULL, *run_error = NULL;
        _cleanup_(agent_tar_done) AgentTar tar = { .fd = -EBADF };
        AgentPatch patch = {};
        AgentStats st = {};
        RunContext ctx = {};
        PolicyForm form = {};
        uint64_t price_in = 0, price_out = 0;
        char dir[PATH_MAX];
        bool applied = false, have_patch = false, stats_set = false, have_model = false;
        _cleanup_(run_defaults_done) RunDefaults defaults = {};
        _cleanup_(client_lease_stopp) ClientLease *lease = NULL;
        _cleanup_(run_gateway_stop_and_free_records) RunGateway gateway = RUN_GATEWAY_NULL;
        _cleanup_json_ json_t *model_calls = NULL;
        uint64_t timeout_sec = 0;
        int agent_exit = -1, r;

        r = parse_options(argc, argv, &o);
        if (r <= 0)
                return r < 0 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
        ctx.opts = &o;

        if (streq(o.task, "-")) {
                size_t n;
                r = read_full_fd(STDIN_FILENO, 1024 * 1024, &task_buf, &n);
                if (r < 0)
                        return log_error_errno(r, "reading the task from stdin: %m"), CLI_EXIT_FAILURE;
                o.task = task_buf;
        }
        _cleanup_free_ char *trimmed = xstrdup(o.task);
        {
                size_t l = strlen(trimmed);
                while (l > 0 && strchr(" \t\r\n", trimmed[l - 1]))
                        trimmed[--l] = 0;
        }
        o.task = trimmed + strspn(trimmed, " \t\r\n");
        if (isempty(o.task))
                return cli_usage_error("run", "the task cannot be empty");

        r = check_workspace(o.dir, dir);
        if (r < 0)
                return CLI_EXIT_USAGE;
        r = client_settings_load(&settings, &err);
        if (r < 0)
                return log_error_errno(r, "%s", err ? err : "cannot load settings"), CLI_EXIT_FAILURE;
        r = run_defaults_load(&o, settings.config_file, &defaults);
        if (r < 0)
                return CLI_EXIT_FAILURE;
        if (load_policy(&o, &defaults, &policy, &form) < 0)
                return o.policy_file ? CLI_EXIT_FAILURE : CLI_EXIT_USAGE;
        if (workspace_excludes(dir, &exclude, &err) < 0)
                return log_error_errno(-EPERM, "%s", err), CLI_EXIT_FAILURE;
        if (o.network && parse_network(o.network, &network, &err) < 0)
                return log_error("%s", err), CLI_EXIT_USAGE;
        ops = agent_ops_for_policy(policy);
        tools = agent_tools_for_ops(ops);

        /* The agent before the pod: a bad model config or plan must not cost a VM boot. */
        if (o.script) {
                LlmConfig sc = { .provider = LLM_PROVIDER_SCRIPT, .script_path = (char *) o.script };
                r = llm_client_new(&sc, &llm, &err);
        } else if (o.agent < 0) {
                if (model_config(&o, settings.config_file, &mcfg, &price_in, &price_out) < 0)
                        return CLI_EXIT_FAILURE;
                r = llm_client_new(&mcfg, &llm, &err);
        } else {
                /* External agents reach a model only through the run's gateway: Claude Code
                 * and Codex always, other agents when a model is named. */
                have_model = o.agent == RUN_AGENT_CLAUDE || o.agent == RUN_AGENT_CODEX || o.model ||
                        o.provider || o.base_url || !isempty(secure_getenv("NUCLEUS_MODEL"));
                if (have_model && model_config(&o, settings.config_file, &mcfg, &price_in, &price_out) < 0)
                        return CLI_EXIT_FAILURE;
                r = run_agent_check(o.agent, o.agent_argv, have_model, mcfg.provider, &err);
        }
        if (r < 0)
                return log_error_errno(r, "%s", err ? err : "cannot set up the model client"),
                       CLI_EXIT_FAILURE;
        if (!o.script && (o.agent < 0 || have_model) && model_reachable(mcfg.base_url, &err) < 0)
                return log_error("%s", err), CLI_EXIT_FAILURE;

        r = client_open(&settings, &client, &err);
        if (r < 0)
                return log_error_errno(r, "%s", err ? err : "cannot reach the node"), CLI_EXIT_FAILURE;
        client_set_timeouts(client, 10 * USEC_PER_SEC, 0);
        ctx.client = client;
        if (client_secrets_dir(&ctx.secrets_dir) < 0)
                ctx.secrets_dir = NULL;
        if (client_state_dir(&state) < 0)
                state = NULL;

        /* A closed pipe (| head), a closed terminal and a polite kill end the run like Ctrl-C:
         * the pod is deleted, then we exit 128+N. SIGPIPE's default action would kill us before
         * any of that. */
        static const int run_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE };
        struct sigaction sa = { .sa_handler = on_signal }, old_sa[ELEMENTSOF(run_signals)];
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < ELEMENTSOF(run_signals); i++)
                (void) sigaction(run_signals[i], &sa, &old_sa[i]);

        /* Pack the workspace first: its size picks the scratch disk, and a workspace the node
         * cannot take is refused before a VM boots. */
        {
                AgentTarOptions to = { .history = o.history };
                r = agent_workspace_tar(dir, exclude, &to, &tar, &err);
                if (r < 0) {
                        log_error("packing %s failed: %s", dir, err ? err : strerror(-r));
                        goto restore;
                }
                err = mfree(err);
                if (tar.n_excluded > 0)
                        log_warning(
                                "left out %zu file(s) of the Nucleus config/secret store inside %s",
                                tar.n_excluded,
                                dir);
        }

        /* Create the pod. From here on, every path goes through `cleanup:`. */
        timeout_sec = o.timeout_sec ?: defaults.timeout_sec;
        spec = build_spec(
                &o, policy, &form, dir, network, timeout_sec, o.scratch_mib ?: scratch_for(tar.size), defaults.image);
        {
                _cleanup_client_error_ ClientError e = {};
                r = client_call_json(client, "POST", "/v1/pods", spec, &created, &e);
                if (r < 0) {
                        _cleanup_free_ char *d = client_error_describe(&e);
                        log_error("creating the pod failed: %s", d);
                        goto restore;
                }
        }
        const char *id = json_string_value(json_object_get(created, "id"));
        if (!id) {
                log_error("the node's answer to POST /v1/pods has no pod id");
                r = -EBADMSG;
                goto restore;
        }
        ctx.pod = xstrdup(id);
        /* The pod lives only while we renew its lease: a CLI that dies without cleaning up
         * (SIGKILL, a closed laptop) leaves a pod the node ends after the grace period. */
        lease = run_lease_start(client, ctx.pod, created);
        json_t *pod_timeout = json_object_get(created, "timeout_seconds");
        if (json_is_integer(pod_timeout) && json_integer_value(pod_timeout) > 0)
                timeout_sec = (uint64_t) json_integer_value(pod_timeout);
        fprintf(stderr,
                "[nucleus] pod %s created (profile %s, deadline %llus); booting...\n",
                ctx.pod,
                policy->name ? policy->name : "custom",
                (unsigned long long) timeout_sec);
        for (size_t i = 0; i < o.n_allow_commands; i++) {
                _cleanup_free_ char *vis = string_make_visible(o.allow_commands[i]);
                fprintf(stderr,
                        "[nucleus] also allowed for this run: %s%s\n",
                        vis,
                        policy->commands.unrestricted ? " (the policy already allows every command)" : "");
        }

        r = upload_fits(created, &tar, &err);
        if (r < 0) {
                run_error = xasprintf("uploading the workspace: %s", err);
                goto cleanup;
        }
        r = wait_running(client, ctx.pod, &err);
        if (r < 0) {
                run_error = xstrdup(
                        r == -EINTR ? "interrupted while the pod was booting" : (err ? err : "boot failed"));
                goto cleanup;
        }
        err = mfree(err);
        r = upload_workspace(&ctx, &tar, true, &err);
        if (r < 0) {
                run_error = xasprintf("uploading the workspace failed: %s", err ? err : strerror(-r));
                goto cleanup;
        }
        {
                _cleanup_free_ char *hist = NULL;
                if (tar.n_commits > 0)
                        hist = xasprintf(
                                ", history: %llu commit%s of %s%s",
                                (unsigned long long) tar.n_commits,
                                tar.n_commits == 1 ? "" : "s",
                                tar.branch ?: "a detached HEAD",
                                tar.history_shallow ? " (shallow; --history all for more)" : "");
                fprintf(stderr,
                        "[nucleus] workspace uploaded: %zu files%s, %llu KiB%s\n",
                        tar.n_files,
                        tar.from_git ? " (git ls-files)" : "",
                        (unsigned long long) (tar.size / 1024),
                        hist ?: "");
        }
        {
                _cleanup_free_ char *l = strv_join(ops, " ");
                fprintf(stderr, "[nucleus] tools offered: %s\n", l);
        }
        if (run_interrupted) {
                run_error = xstrdup("interrupted");
                goto cleanup;
        }

        /* The built-in loop reaches its model only through the run's gateway, which holds the
         * key, meters every call against what is left of the pod's budget and charges it. */
        if (!o.script && (o.agent < 0 || have_model)) {
                /* A little later than the loop's own deadline, which ends its requests itself. */
                r = start_gateway(
                        &ctx,
                        &settings,
                        &mcfg,
                        price_in,
                        price_out,
                        timeout_sec > 0 ? timeout_sec + 2 : 0,
                        &gateway,
                        o.agent < 0 ? &llm : NULL);
                if (r < 0) {
                        run_error = xstrdup("the model gateway could not be started");
                        goto cleanup;
                }
        }

        if (o.agent >= 0) {
                RunAgentSpec as = {
                        .kind = o.agent,
                        .argv = o.agent_argv,
                        .extra = o.agent_extra,
                        .task = o.task,
                        .max_turns = o.max_turns ?: RUN_MAX_TURNS_DEFAULT,
                        .pod = ctx.pod,
                        .node = &settings,
                        .ops = ops,
                        .gateway_url = gateway.url,
                        .token = gateway.token,
                        .provider = mcfg.provider,
                        .model = mcfg.model,
                        .json_output = o.output == OUTPUT_JSON,
                        .interrupt = &run_interrupted,
                };
                RunAgentResult ar = { .exit_status = -1 };
                r = run_agent_external(&as, &ar);
                agent_exit = ar.exit_status;
                st = (AgentStats){
                        .stop = run_interrupted ? AGENT_STOP_INTERRUPTED
                                                : (agent_exit == 0 ? AGENT_STOP_DONE : AGENT_STOP_ERROR),
                        .stop_detail = xasprintf(
                                "%s agent exited with status %d", run_agent_kind_to_string(o.agent), agent_exit),
                        .denials_by_kind = json_object(),
                        .calls = json_array(),
                        .final_text = ar.final_text ? TAKE_PTR(ar.final_text) : xstrdup(""),
                };
                run_agent_result_done(&ar);
                stats_set = true;
                if (r < 0)
                        run_error = xstrdup("the external agent could not be run");
        } else {
                AgentHooks hooks = {
                        .call_tool = hook_call_tool,
                        .approve = hook_approve,
                        .charge = NULL, /* the gateway charges the pod */
                        .userdata = &ctx,
                };
                AgentOptions ao = {
                        .task = o.task,
                        .tools = tools,
                        .max_turns = o.max_turns ?: RUN_MAX_TURNS_DEFAULT,
                        .deadline = timeout_sec > 0 ? now_usec(CLOCK_MONOTONIC) + timeout_sec * USEC_PER_SEC
                                                    : 0,
                        .price_in = price_in,
                        .price_out = price_out,
                        .interrupt = &run_interrupted,
                        .text_out = o.output == OUTPUT_JSON ? NULL : stdout,
                        .log_out = stderr,
                };
                (void) agent_run(llm, &ao, &hooks, &st);
                stats_set = true;
        }

        /* The patch (also after Ctrl-C: what was done is worth keeping for review). */
        {
                _cleanup_free_ char *ct = NULL, *body = NULL,
                                    *path = xasprintf("/v1/pods/%s/workspace/patch", ctx.pod);
                size_t n = 0;
                r = fetch_to_file(client, path, NULL, &ct, &body, &n);
                if (r < 0)
                        log_warning("could not fetch the patch: %s", strerror(-r));
                else if (agent_patch_parse(ct, body, n, &patch, &err) < 0)
                        log_warning("%s", err);
                else {
                        have_patch = true;
                        /* Build artefacts (the project's .gitignore already kept out the
                         * ignored ones): new binary files stay out unless asked for. */
                        _cleanup_strv_free_ char **dropped = NULL;
                        if (!o.include_untracked_binaries)
                                agent_patch_drop_new_binaries(&patch, &dropped);
                        STRV_FOREACH(d, dropped) {
                                _cleanup_free_ char *vis = string_make_visible(*d);
                                log_info(
                                        "left out of the patch: %s (a new binary file; "
                                        "--include-untracked-binaries keeps it)",
                                        vis);
                        }
                        agent_patch_flag_host(&patch, dir);
                }
        }
        if (have_patch && patch.size > 0) {
                if (o.patch_out)
                        patch_path = xstrdup(o.patch_out);
                else if (state) {
                        _cleanup_free_ char *runs = xasprintf("%s/runs", state);
                        (void) cli_mkdir_parents_p(runs, 0755, 0700);
                        patch_path = xasprintf("%s/%s.patch", runs, ctx.pod);
                }
                if (patch_path &&
                    (r = write_file_atomic_at(AT_FDCWD, patch_path, patch.patch, patch.size, 0600)) < 0) {
                        log_error_errno(r, "cannot save the patch to %s: %m", patch_path);
                        patch_path = mfree(patch_path);
                }
                if (patch_path) {
                        char *sargv[] = { (char *) "git", (char *) "apply", (char *) "--stat", patch_path, NULL };
                        int status = -1;
                        if (run_capture(sargv, &diffstat, &status) < 0 || status != 0)
                                diffstat = mfree(diffstat);
                }
                if (o.apply && patch_path) {
                        if (patch.flagged && !o.apply_flagged)
                                apply_note = xstrdup("refused: the patch touches flagged paths (listed "
                                                     "above with "
                                                     "their reasons: review them, then use "
                                                     "--apply-flagged)");
                        else {
                                char *aargv[] = { (char *) "git",
                                                  (char *) "-C",
                                                  dir,
                                                  (char *) "apply",
                                                  (char *) "--whitespace=nowarn",
                                                  patch_path,
                                                  NULL };
                                _cleanup_free_ char *out = NULL;
                                int status = -1;
                                r = run_capture(aargv, &out, &status);
                                applied = r >= 0 && status == 0;
                                if (!applied) {
                                        _cleanup_free_ char *vis = string_make_visible(out ?: strerror(-r));
                                        apply_note = xasprintf("git apply failed: %s", vis);
                                }
                        }
                }
        }

cleanup:
        /* The gateway's records of this run's model calls (before the pod goes). */
        model_calls = run_gateway_stop(&gateway);

        /* Always: delete the pod, then keep its audit log (sealed on delete). */
        if (ctx.pod) {
                _cleanup_free_ char *apath = xasprintf("/v1/pods/%s/audit", ctx.pod);
                if (o.audit_out)
                        audit_path = xstrdup(o.audit_out);
                else if (state) {
                        _cleanup_free_ char *runs = xasprintf("%s/runs", state);
                        (void) cli_mkdir_parents_p(runs, 0755, 0700);
                        audit_path = xasprintf("%s/%s.audit.jsonl", runs, ctx.pod);
                }
                /* Before the delete (the node may drop the pod's files), then again after it
                 * to get the sealed log when the node keeps it. */
                if (audit_path && fetch_to_file(client, apath, audit_path, NULL, NULL, NULL) < 0)
                        audit_path = mfree(audit_path);
                lease = client_lease_stop(lease);
                int d = delete_pod(client, ctx.pod);
                if (d >= 0) {
                        _cleanup_free_ char *sealed = audit_path ? xasprintf("%s.sealed", audit_path) : NULL;
                        if (sealed && fetch_to_file(client, apath, sealed, NULL, NULL, NULL) >= 0)
                                (void) rename(sealed, audit_path);
                        else if (sealed)
                                (void) unlink(sealed);
                } else if (!run_error)
                        run_error = xstrdup("the pod could not be deleted");
        }
        if (!stats_set)
                st = (AgentStats){
                        .stop = run_interrupted ? AGENT_STOP_INTERRUPTED : AGENT_STOP_ERROR,
                        .stop_detail = xstrdup(run_error ? run_error : "not started"),
                        .denials_by_kind = json_object(),
                        .calls = json_array(),
                        .final_text = xstrdup(""),
                };
        if (run_error)
                log_error("%s", run_error);
        if (o.agent >= 0 && stats_set) {
                /* An external agent's counts come from the node and the gateway. */
                RunGatewayTotals t;
                stats_from_audit(audit_path, &st);
                run_gateway_totals(model_calls, &t);
                st.turns = t.calls;
                st.input_tokens = t.input_tokens;
                st.output_tokens = t.output_tokens;
                st.cost_micros = t.cost_micros;
        }

        if (o.output == OUTPUT_JSON) {
                _cleanup_json_ json_t *doc = agent_stats_to_json(&st);
                json_object_set_new(doc, "pod", json_string(ctx.pod ? ctx.pod : ""));
                json_object_set_new(doc, "ok", json_boolean(st.stop == AGENT_STOP_DONE && !run_error));
                if (run_error)
                        json_object_set_new(doc, "error", json_string(run_error));
                json_object_set_new(doc, "profile", json_string(policy->name ? policy->name : "custom"));
                json_t *added = json_array();
                for (size_t i = 0; i < o.n_allow_commands; i++)
                        json_array_append_new(added, json_string(o.allow_commands[i]));
                json_object_set_new(doc, "allowed_commands_added", added);
                json_object_set_new(doc, "tools", strv_to_json(ops));
                json_object_set_new(
                        doc,
                        "workspace",
                        json_pack(
                                "{s:s, s:I, s:I, s:b}",
                                "dir",
                                dir,
                                "files",
                                (json_int_t) tar.n_files,
                                "bytes",
                                (json_int_t) tar.size,
                                "from_git",
                                tar.from_git));
                json_object_set_new(
                        doc,
                        "approvals",
                        json_pack(
                                "{s:I, s:I}",
                                "granted",
                                (json_int_t) ctx.approvals_granted,
                                "refused",
                                (json_int_t) ctx.approvals_refused));
                if (o.agent >= 0) {
                        json_object_set_new(doc, "agent", json_string(run_agent_kind_to_string(o.agent)));
                        json_object_set_new(doc, "agent_exit_status", json_integer(agent_exit));
                }
                json_t *pj = json_pack(
                        "{s:b, s:I, s:o, s:o, s:b}",
                        "available",
                        have_patch,
                        "bytes",
                        (json_int_t) patch.size,
                        "changed",
                        strv_to_json(patch.changed),
                        "flagged",
                        strv_to_json(patch.flagged),
                        "applied",
                        applied);
                json_object_set_new(pj, "flags", patch.flags ? json_copy(patch.flags) : json_array());
                if (!isempty(patch_path))
                        json_object_set_new(pj, "path", json_string(patch_path));
                if (diffstat)
                        json_object_set_new(pj, "diffstat", json_string(diffstat));
                if (apply_note)
                        json_object_set_new(pj, "apply_note", json_string(apply_note));
                json_object_set_new(doc, "patch", pj);
                if (audit_path)
                        json_object_set_new(doc, "audit_log", json_string(audit_path));
                json_object_set(doc, "model_calls", model_calls);
                (void) cli_print_json(doc);
        } else if (ctx.pod)
                print_summary(
                        ctx.pod,
                        &st,
                        have_patch ? (patch_path ? patch_path : "") : NULL,
                        &patch,
                        diffstat,
                        applied,
                        apply_note,
                        audit_path,
                        &ctx,
                        model_calls);

        r = (st.stop == AGENT_STOP_DONE && !run_error && !(o.apply && patch.size > 0 && !applied)) ? 0 : -EIO;

restore:
        lease = client_lease_stop(lease);
        for (size_t i = 0; i < ELEMENTSOF(run_signals); i++)
                (void) sigaction(run_signals[i], &old_sa[i], NULL);
        agent_patch_done(&patch);
        agent_stats_done(&st);
        free(ctx.pod);
        free(ctx.secrets_dir);
        if (run_signal > 0)
                return 128 + run_signal;
        return r < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}
