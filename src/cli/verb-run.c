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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent-node.h"
#include "agent-workspace.h"
#include "agent.h"
#include "alloc-util.h"
#include "cli-files.h"
#include "cli.h"
#include "client-paths.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "run-internal.h"
#include "string-util.h"
#include "time-util.h"
#include "tools.h"

volatile sig_atomic_t run_interrupted = 0;
static volatile sig_atomic_t run_signal = 0; /* the first signal that ended the run */

static void on_signal(int sig) {
        if (!run_signal)
                run_signal = sig;
        run_interrupted = 1;
}

/* What ended an interrupted run, in the user's words: a closed terminal or a kill is not a
 * Ctrl-C. Returns a new string. */
static char *run_interrupt_detail(int sig) {
        switch (sig) {
        case SIGINT:
                return xstrdup("interrupted (Ctrl-C)");
        case SIGHUP:
                return xstrdup("interrupted (SIGHUP: the terminal closed)");
        case SIGPIPE:
                return xstrdup("interrupted (SIGPIPE: the output was closed)");
        case SIGTERM:
                return xstrdup("interrupted (SIGTERM)");
        default:
                return xasprintf("interrupted (signal %d)", sig);
        }
}

/* ---- the verb ---- */

/* --output json promises one document on stdout: run_main() says whether it was asked for
 * and whether the run's document went out. */
static bool run_json_wanted = false, run_json_printed = false;

static int run_main(int argc, char **argv);

int verb_run(int argc, char **argv) {
        run_json_wanted = run_json_printed = false;
        int r = run_main(argc, argv);
        /* A run that failed before it began (the node unreachable, the pod refused, a bad
         * plan) still answers a script with a document; usage errors (2) print none. */
        if (r == CLI_EXIT_FAILURE && run_json_wanted && !run_json_printed)
                cli_print_json_failure(
                        OUTPUT_JSON, "error", log_last_error()[0] ? log_last_error() : "nucleus run failed");
        return r;
}

static int run_main(int argc, char **argv) {
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
        _cleanup_(run_setup_done) RunSetup setup = {};
        _cleanup_(client_lease_stopp) ClientLease *lease = NULL;
        _cleanup_(run_gateway_stop_and_free_records) RunGateway gateway = RUN_GATEWAY_NULL;
        _cleanup_json_ json_t *model_calls = NULL;
        uint64_t timeout_sec = 0;
        int agent_exit = -1, r;

        r = run_parse_options(argc, argv, &o);
        if (r <= 0)
                return r < 0 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
        ctx.opts = &o;
        run_json_wanted = o.output == OUTPUT_JSON;

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

        r = run_check_workspace(o.dir, dir);
        if (r < 0)
                return CLI_EXIT_USAGE;
        r = client_settings_load(&settings, &err);
        if (r < 0)
                return log_error_errno(r, "%s", err ? err : "cannot load settings"), CLI_EXIT_FAILURE;
        r = run_defaults_load(&o, settings.config_file, &defaults);
        if (r < 0)
                return CLI_EXIT_FAILURE;
        if (run_load_policy(&o, &defaults, &policy, &form) < 0)
                return o.policy_file ? CLI_EXIT_FAILURE : CLI_EXIT_USAGE;
        if (run_load_setup(&o, &setup) < 0)
                return CLI_EXIT_USAGE;
        if (cli_workspace_excludes(dir, &exclude, &err) < 0)
                return log_error_errno(-EPERM, "%s", err), CLI_EXIT_FAILURE;
        if (o.network && run_parse_network(o.network, &network, &err) < 0)
                return log_error("%s", err), CLI_EXIT_USAGE;
        ops = agent_ops_for_policy(policy);
        tools = agent_tools_for_ops(ops);

        /* The agent before the pod: a bad model config or plan must not cost a VM boot. */
        if (o.script) {
                LlmConfig sc = { .provider = LLM_PROVIDER_SCRIPT, .script_path = (char *) o.script };
                r = llm_client_new(&sc, &llm, &err);
        } else if (o.agent < 0) {
                if (run_model_config(&o, settings.config_file, &mcfg, &price_in, &price_out) < 0)
                        return CLI_EXIT_FAILURE;
                r = llm_client_new(&mcfg, &llm, &err);
        } else {
                /* External agents reach a model only through the run's gateway: Claude Code
                 * and Codex always, other agents when a model is named. */
                have_model = o.agent == RUN_AGENT_CLAUDE || o.agent == RUN_AGENT_CODEX || o.model ||
                        o.provider || o.base_url || !isempty(secure_getenv("NUCLEUS_MODEL"));
                if (have_model && run_model_config(&o, settings.config_file, &mcfg, &price_in, &price_out) < 0)
                        return CLI_EXIT_FAILURE;
                r = run_agent_check(o.agent, o.agent_argv, have_model, mcfg.provider, &err);
        }
        if (r < 0)
                return log_error_errno(r, "%s", err ? err : "cannot set up the model client"),
                       CLI_EXIT_FAILURE;
        if (!o.script && (o.agent < 0 || have_model) && run_model_reachable(mcfg.base_url, &err) < 0)
                return log_error("%s", err), CLI_EXIT_FAILURE;

        r = client_open(&settings, &client, &err);
        if (r < 0)
                return log_error_errno(r, "%s", err ? err : "cannot reach the node"), CLI_EXIT_FAILURE;
        client_set_timeouts(client, 10 * USEC_PER_SEC, 0);
        /* Ctrl-C (or a closed terminal) ends what the run waits for, a tool call running a long
         * command included, instead of waiting for it to finish; it is turned off again for
         * the patch and the cleanup. */
        client_set_interrupt(client, &run_interrupted);
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

        {
                _cleanup_free_ char *hint = run_toolchain_hint(dir, o.image ?: defaults.image);
                if (hint)
                        log_warning("%s", hint);
        }

        /* Create the pod. From here on, every path goes through `cleanup:`. */
        timeout_sec = o.timeout_sec ?: defaults.timeout_sec;
        spec = run_build_spec(
                &o,
                policy,
                &form,
                dir,
                network,
                timeout_sec,
                o.scratch_mib ?: run_scratch_for(tar.size),
                defaults.image);
        if (strv_length(setup.hosts) > 0)
                json_object_set_new(
                        json_object_get(spec, "spec"),
                        "setup",
                        json_pack("{s:o}", "hosts", run_strv_to_json(setup.hosts)));
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

        r = run_upload_fits(created, &tar, &err);
        if (r < 0) {
                run_error = xasprintf("uploading the workspace: %s", err);
                goto cleanup;
        }
        r = run_wait_running(client, ctx.pod, &err);
        if (r < 0) {
                run_error = xstrdup(
                        r == -EINTR ? "interrupted while the pod was booting" : (err ? err : "boot failed"));
                goto cleanup;
        }
        err = mfree(err);
        r = run_upload_workspace(&ctx, &tar, true, &err);
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
                else if (tar.history_subdir)
                        hist = xstrdup(", no history: a subdirectory of its git work tree (git in the pod "
                                       "would "
                                       "see the rest of the repository as deleted; run from the top for "
                                       "history)");
                fprintf(stderr,
                        "[nucleus] workspace uploaded: %zu files%s, %llu KiB%s\n",
                        tar.n_files,
                        tar.from_git ? " (git ls-files)" : "",
                        (unsigned long long) (tar.size / 1024),
                        hist ?: "");
        }
        /* The setup step: after the upload, before the agent's first turn (docs/run.md
         * "Dependencies"). A failure ends the run with nothing started for the agent. */
        if (json_array_size(setup.commands) > 0) {
                r = run_setup_execute(client, ctx.pod, &setup, &err);
                if (r < 0) {
                        run_error = TAKE_PTR(err);
                        goto cleanup;
                }
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
                r = run_start_gateway(
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
                        .call_tool = run_hook_call_tool,
                        .approve = run_hook_approve,
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
        client_set_interrupt(client, NULL);
        {
                _cleanup_free_ char *ct = NULL, *body = NULL,
                                    *path = xasprintf("/v1/pods/%s/workspace/patch", ctx.pod);
                size_t n = 0;
                _cleanup_free_ char *why = NULL;
                r = run_fetch_to_file(client, path, NULL, &ct, &body, &n, &why);
                if (r < 0)
                        log_warning("could not fetch the patch: %s", why ?: strerror(-r));
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
        client_set_interrupt(client, NULL);
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
                if (audit_path && run_fetch_to_file(client, apath, audit_path, NULL, NULL, NULL, NULL) < 0)
                        audit_path = mfree(audit_path);
                lease = client_lease_stop(lease);
                int d = run_delete_pod(client, ctx.pod);
                if (d >= 0) {
                        _cleanup_free_ char *sealed = audit_path ? xasprintf("%s.sealed", audit_path) : NULL;
                        if (sealed && run_fetch_to_file(client, apath, sealed, NULL, NULL, NULL, NULL) >= 0)
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
        if (st.stop == AGENT_STOP_INTERRUPTED && run_signal > 0) {
                free(st.stop_detail);
                st.stop_detail = run_interrupt_detail(run_signal);
        }
        if (run_error)
                log_error("%s", run_error);
        if (o.agent >= 0 && stats_set) {
                /* An external agent's counts come from the node and the gateway. */
                RunGatewayTotals t;
                run_stats_from_audit(audit_path, &st);
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
                json_object_set_new(doc, "tools", run_strv_to_json(ops));
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
                        run_strv_to_json(patch.changed),
                        "flagged",
                        run_strv_to_json(patch.flagged),
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
                run_json_printed = true;
        } else if (ctx.pod)
                run_print_summary(
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
