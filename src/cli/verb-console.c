/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus console: a local web page of the node's pods, their live tool calls, pending
 * approvals, patches and audit state (docs/console.md). The page is served by this process
 * (console-server.c); it stays attached as an approver while it runs, so runs without a
 * terminal hold their calls for it, and it feeds [approvals] webhook when configured.
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
#include "console-server.h"
#include "json-util.h"
#include "log.h"

#define CONSOLE_DEFAULT_LISTEN "127.0.0.1:8090"
#define CONSOLE_HEARTBEAT_TTL_SEC 30

static volatile sig_atomic_t console_stop = 0;

static void on_stop_signal(int sig) {
        console_stop = 1;
}

static void usage(void) {
        printf("Usage: nucleus console [OPTIONS]\n\n"
               "Serve a local web page of the node's pods, live tool calls, pending approvals,\n"
               "patches and audit state. Open the printed URL once: it logs the browser in.\n\n"
               "Options:\n"
               "      --listen ADDR:PORT  where to serve (default %s; port 0 picks one)\n"
               "      --output FORMAT     text (default) or json: the URL as {\"url\": ...}\n"
               "  -h, --help              Show this help\n",
               CONSOLE_DEFAULT_LISTEN);
}

int verb_console(int argc, char **argv) {
        enum {
                ARG_LISTEN = 0x100
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "listen", required_argument, NULL, ARG_LISTEN },
                {},
        };
        _cleanup_(client_settings_done) ClientSettings s = {};
        _cleanup_client_free_ NucleusClient *node = NULL, *hook_node = NULL, *beat = NULL;
        _cleanup_(console_server_stopp) ConsoleServer *srv = NULL;
        _cleanup_(cli_webhook_freep) CliWebhook *w = NULL;
        _cleanup_free_ char *err = NULL;
        const char *listen = CONSOLE_DEFAULT_LISTEN;
        OutputMode output = OUTPUT_TEXT;
        int opt, r;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case ARG_LISTEN:
                        listen = optarg;
                        break;
                default:
                        r = cli_option_common(opt, usage, &output);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        if (optind < argc)
                return cli_usage_error("console", "unexpected argument '%s'", argv[optind]);

        r = client_settings_load(&s, &err);
        if (r >= 0)
                r = client_open(&s, &node, &err);
        if (r >= 0)
                r = client_open(&s, &hook_node, &err);
        if (r >= 0)
                r = client_open(&s, &beat, &err);
        if (r < 0)
                return cli_fail(output, "invalid_config", "%s", err ?: strerror(-r));

        ConsoleOptions o = { .listen = listen, .secrets_dir = s.secrets_dir, .node_url = s.url, .ui = true };
        r = console_server_start(&o, node, &srv, &err);
        if (r < 0)
                return cli_fail(output, "invalid_request", "%s", err);
        r = cli_webhook_new(hook_node, &s, console_server_url(srv), &w, &err);
        if (r < 0)
                return cli_fail(output, "invalid_config", "%s", err);
        console_server_set_webhook(srv, w);

        if (output == OUTPUT_JSON) {
                _cleanup_json_ json_t *j = json_pack("{s:s}", "url", console_server_login_url(srv));
                (void) cli_print_json(j);
        } else
                printf("%s\n", console_server_login_url(srv));
        fflush(stdout);
        fprintf(stderr,
                "nucleus console: open the URL above once (it logs the browser in); serving %s%s; Ctrl-C to "
                "stop\n",
                console_server_url(srv),
                w ? ", webhook approver on" : "");

        struct sigaction sa = { .sa_handler = on_stop_signal };
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        unsigned tick = 0;
        while (!console_stop) {
                if (tick % 25 == 0) {
                        _cleanup_client_error_ ClientError e = {};
                        if (cli_approvers_heartbeat(beat, "nucleus console", CONSOLE_HEARTBEAT_TTL_SEC, &e) <
                                    0 &&
                            tick == 0) {
                                _cleanup_free_ char *d = client_error_describe(&e);
                                log_warning("cannot register as an approver with the node: %s", d);
                        }
                }
                if (w && tick % 5 == 0)
                        cli_webhook_poll(w);
                tick++;
                usleep(200 * 1000);
        }
        fprintf(stderr, "nucleus console: stopped\n");
        return CLI_EXIT_OK;
}
