/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus run: its options. Every value that can be checked without the network is checked
 * here, so a usage error (exit 2) never costs a pod.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "cli-files.h"
#include "json-util.h"
#include "log.h"
#include "parse-util.h"
#include "podspec.h"
#include "pricing.h"
#include "run-internal.h"
#include "string-util.h"
#include "words.h"

void run_help(void) {
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
               "      --setup \"CMD ARGS\"   run CMD in the pod before the agent starts, as the agent's\n"
               "                           user in /workspace, argv without a shell (repeatable; e.g.\n"
               "                           'pip install -r requirements.txt'); a failure ends the run\n"
               "      --setup-host HOST    package-index host the pod may reach during setup only\n"
               "                           (repeatable; e.g. pypi.org, files.pythonhosted.org)\n"
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

int run_parse_network(const char *s, json_t **ret, char **reterr) {
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

int run_parse_options(int argc, char **argv, RunOptions *o) {
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
                ARG_SETUP,
                ARG_SETUP_HOST,
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
                { "setup", required_argument, NULL, ARG_SETUP },
                { "setup-host", required_argument, NULL, ARG_SETUP_HOST },
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
                        run_help();
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
                case ARG_SETUP:
                case ARG_SETUP_HOST: {
                        /* Checked now (a usage error costs no pod); run_load_setup builds the step. */
                        _cleanup_(run_setup_done) RunSetup probe = {};
                        _cleanup_free_ char *serr = NULL;
                        bool host = c == ARG_SETUP_HOST;
                        if ((host ? run_setup_add_host(&probe, "--setup-host", optarg, &serr)
                                  : run_setup_add_command(&probe, "--setup", optarg, &serr)) < 0)
                                return RUN_USAGE("%s", serr);
                        if (host) {
                                if (o->n_setup_hosts >= ELEMENTSOF(o->setup_hosts))
                                        return RUN_USAGE(
                                                "--setup-host: at most %zu", ELEMENTSOF(o->setup_hosts));
                                o->setup_hosts[o->n_setup_hosts++] = optarg;
                        } else {
                                if (o->n_setup_commands >= ELEMENTSOF(o->setup_commands))
                                        return RUN_USAGE("--setup: at most %zu", ELEMENTSOF(o->setup_commands));
                                o->setup_commands[o->n_setup_commands++] = optarg;
                        }
                        break;
                }
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
                if (run_parse_network(o->network, &n, &err) < 0)
                        return RUN_USAGE("%s", err);
        }
        return 1;
#undef RUN_USAGE
}
