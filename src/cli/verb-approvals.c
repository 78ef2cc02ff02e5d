/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus approvals: the node's pending approvals from the terminal (docs/approvals.md).
 *   nucleus approvals [list]                 pending approvals of every pod
 *   nucleus approvals approve ID [--for-pod] approve once (or this exact call for the pod)
 *   nucleus approvals refuse ID [--reason R] refuse; the agent gets the reason
 *   nucleus approvals serve                  stay attached as an approver: heartbeat, and
 *                                            post pending approvals to [approvals] webhook
 * Everything shown comes from the agent: made visible before printing.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-approvals.h"
#include "cli-webhook.h"
#include "cli.h"
#include "client-settings.h"
#include "escape.h"
#include "json-util.h"
#include "log.h"
#include "string-util.h"

static void usage(void) {
        printf("Usage: nucleus approvals [list]\n"
               "       nucleus approvals approve ID [--for-pod]\n"
               "       nucleus approvals refuse ID [--reason TEXT]\n"
               "       nucleus approvals serve\n\n"
               "List and decide the calls that wait for a human approval. ID may be a unique prefix.\n"
               "'serve' keeps an approver attached (so runs without a terminal hold their calls) and\n"
               "posts each pending approval to [approvals] webhook in config.toml.\n\n"
               "Options:\n"
               "      --for-pod           approve this exact call for the rest of the pod (when offered)\n"
               "      --reason TEXT       why the call is refused (shown to the agent)\n"
               "      --output FORMAT     text (default) or json\n"
               "  -h, --help              Show this help\n");
}

static volatile sig_atomic_t serve_stop = 0;

static void on_stop_signal(int sig) {
        serve_stop = 1;
}

static int print_list(NucleusClient *c, OutputMode output) {
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *res = NULL;
        size_t i;
        json_t *a;

        if (cli_approvals_list(c, &res, &e) < 0) {
                _cleanup_free_ char *d = client_error_describe(&e);
                return cli_fail(output, e.kind ?: "io_error", "%s", d);
        }
        if (output == OUTPUT_JSON)
                return cli_print_json(res) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        json_t *list = json_object_get(res, "approvals");
        if (json_array_size(list) == 0) {
                printf("No pending approvals.\n");
                return CLI_EXIT_OK;
        }
        printf("%-10s %-10s %-12s %-20s %s\n", "ID", "POD", "OPERATION", "EXPIRES", "CALL");
        json_array_foreach(list, i, a) {
                const char *id = json_string_value(json_object_get(a, "id")) ?: "?";
                const char *pod = json_string_value(json_object_get(a, "pod")) ?: "?";
                _cleanup_free_ char *op = string_make_visible(
                                            json_string_value(json_object_get(a, "operation")) ?: "?"),
                                    *exp = string_make_visible(
                                            json_string_value(json_object_get(a, "expires")) ?: "?"),
                                    *desc = cli_approval_describe(a, 200),
                                    *why = string_make_visible(
                                            json_string_value(json_object_get(a, "reason")) ?: "");
                printf("%-10.8s %-10.8s %-12s %-20s %s\n", id, pod, op, exp, desc);
                printf("%-10s why: %s\n", "", why);
        }
        return CLI_EXIT_OK;
}

static int
        decide(NucleusClient *c,
               const char *secrets_dir,
               const char *id,
               CliApprovalDecision d,
               const char *reason,
               OutputMode output) {
        _cleanup_json_ json_t *pending = NULL, *res = NULL;
        _cleanup_free_ char *err = NULL;
        int r;

        r = cli_approvals_find(c, id, &pending, &err);
        if (r < 0)
                return cli_fail(output, r == -ENOENT ? "not_found" : "invalid_request", "%s", err);
        if (output == OUTPUT_TEXT) {
                _cleanup_free_ char *desc = cli_approval_describe(pending, 2000);
                fprintf(stderr, "%s: %s\n", d == CLI_APPROVAL_REFUSE ? "Refusing" : "Approving", desc);
        }
        /* The terminal shows the record it fetched: its own digest is what the human saw. */
        r = cli_approval_decide(
                c,
                secrets_dir,
                pending,
                json_string_value(json_object_get(pending, "digest")),
                d,
                reason,
                &res,
                &err);
        if (r < 0)
                return cli_fail(output, "approval_failed", "%s", err);
        if (output == OUTPUT_JSON)
                return cli_print_json(res) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        printf("%s %s\n",
               json_string_value(json_object_get(res, "state")) ?: "decided",
               json_string_value(json_object_get(res, "id")) ?: id);
        return CLI_EXIT_OK;
}

static int serve(NucleusClient *c, const ClientSettings *s, OutputMode output) {
        _cleanup_(cli_webhook_freep) CliWebhook *w = NULL;
        _cleanup_free_ char *err = NULL;
        int r;

        r = cli_webhook_new(c, s, NULL, &w, &err);
        if (r < 0)
                return cli_fail(output, "invalid_config", "%s", err);
        struct sigaction sa = { .sa_handler = on_stop_signal };
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        fprintf(stderr,
                "nucleus approvals: attached as an approver%s; Ctrl-C to stop\n",
                w ? " (webhook on)" : "");
        while (!serve_stop) {
                _cleanup_client_error_ ClientError e = {};
                if (cli_approvers_heartbeat(c, "nucleus approvals serve", 30, &e) < 0) {
                        _cleanup_free_ char *d = client_error_describe(&e);
                        log_warning("approver heartbeat failed: %s", d);
                }
                if (w)
                        cli_webhook_poll(w);
                for (int i = 0; i < 10 && !serve_stop; i++)
                        usleep(200 * 1000);
        }
        return CLI_EXIT_OK;
}

int verb_approvals(int argc, char **argv) {
        enum {
                ARG_FOR_POD = 0x100,
                ARG_REASON
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "for-pod", no_argument, NULL, ARG_FOR_POD },
                { "reason", required_argument, NULL, ARG_REASON },
                {},
        };
        _cleanup_(client_settings_done) ClientSettings s = {};
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_free_ char *err = NULL;
        OutputMode output = OUTPUT_TEXT;
        const char *reason = NULL;
        bool for_pod = false;
        int opt, r;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case ARG_FOR_POD:
                        for_pod = true;
                        break;
                case ARG_REASON:
                        reason = optarg;
                        break;
                default:
                        r = cli_option_common(opt, usage, &output);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        const char *sub = optind < argc ? argv[optind++] : "list";
        bool takes_id = streq(sub, "approve") || streq(sub, "refuse");
        if (!takes_id && !streq(sub, "list") && !streq(sub, "serve"))
                return cli_usage_error(
                        "approvals", "unknown subcommand '%s' (list, approve, refuse, serve)", sub);
        if (takes_id && optind >= argc)
                return cli_usage_error("approvals", "'%s' needs an approval id", sub);
        const char *id = takes_id ? argv[optind++] : NULL;
        if (optind < argc)
                return cli_usage_error("approvals", "unexpected argument '%s'", argv[optind]);
        if (for_pod && !streq(sub, "approve"))
                return cli_usage_error("approvals", "--for-pod goes with 'approve'");
        if (reason && !streq(sub, "refuse"))
                return cli_usage_error("approvals", "--reason goes with 'refuse'");
        if (reason && (strlen(reason) > 200 || string_has_cc(reason, NULL)))
                return cli_usage_error("approvals", "--reason: at most 200 printable characters");

        r = client_settings_load(&s, &err);
        if (r >= 0)
                r = client_open(&s, &c, &err);
        if (r < 0)
                return cli_fail(output, "invalid_config", "%s", err ?: strerror(-r));
        if (streq(sub, "list"))
                return print_list(c, output);
        if (streq(sub, "serve"))
                return serve(c, &s, output);
        return decide(
                c,
                s.secrets_dir,
                id,
                streq(sub, "refuse") ? CLI_APPROVAL_REFUSE
                        : for_pod    ? CLI_APPROVAL_POD
                                     : CLI_APPROVAL_ONCE,
                reason,
                output);
}
