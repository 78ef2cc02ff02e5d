/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus logs POD [--follow] [--tail N]: a pod's console and node log (signed GET
 * /v1/pods/ID/logs). --follow streams (server-sent events or a chunked body). The text comes
 * from the guest and is untrusted: control characters are made visible except newlines/tabs.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-pod.h"
#include "cli.h"
#include "client-settings.h"
#include "fd-util.h"
#include "parse-util.h"
#include "string-util.h"

static void usage(void) {
        printf("Usage: nucleus logs POD [OPTIONS]\n\n"
               "Show a pod's logs.\n\n"
               "Options:\n"
               "  -f, --follow            Keep printing new output until the pod ends (Ctrl-C stops)\n"
               "      --tail N            Only the last N lines\n"
               "  -h, --help              Show this help\n");
}

static void print_untrusted(const char *data, size_t n) {
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char) data[i];
                if (ch == '\n' || ch == '\t' || (ch >= 0x20 && ch != 0x7f))
                        fputc(ch, stdout);
                else
                        printf("\\x%02x", ch);
        }
        fflush(stdout);
}

static int on_data(const char *data, size_t n, void *userdata) {
        (void) userdata;
        print_untrusted(data, n);
        return 0;
}

static int on_event(const char *event, const char *data, void *userdata) {
        (void) event;
        (void) userdata;
        print_untrusted(data, strlen(data));
        fputc('\n', stdout);
        return 0;
}

int verb_logs(int argc, char **argv) {
        enum {
                ARG_TAIL = 0x100
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "follow", no_argument, NULL, 'f' },
                { "tail", required_argument, NULL, ARG_TAIL },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_free_ char *err = NULL, *path = NULL;
        bool follow = false;
        uint32_t tail = 0;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "hf", options, NULL)) >= 0)
                switch (ch) {
                case 'h':
                        usage();
                        return CLI_EXIT_OK;
                case 'f':
                        follow = true;
                        break;
                case ARG_TAIL:
                        if (safe_atou32(optarg, &tail) < 0 || tail == 0)
                                return cli_usage_error(
                                        "logs", "--tail needs a positive number, not '%s'", optarg);
                        break;
                case '?':
                        return CLI_EXIT_USAGE;
                default:
                        assert(!"unexpected option");
                }
        if (optind + 1 != argc)
                return cli_usage_error("logs", "expected exactly one POD id");
        const char *pod = argv[optind];
        if (!cli_pod_id_valid(pod))
                return cli_usage_error("logs", "'%s' is not a pod id (letters, digits, '-' and '_')", pod);

        r = client_open_default(&c, &err);
        if (r < 0) {
                fprintf(stderr, "nucleus logs: %s\n", err ?: strerror(-r));
                return CLI_EXIT_FAILURE;
        }
        if (tail > 0)
                path = xasprintf("/v1/pods/%s/logs?tail=%u%s", pod, tail, follow ? "&follow=1" : "");
        else
                path = xasprintf("/v1/pods/%s/logs%s", pod, follow ? "?follow=1" : "");
        if (follow)
                r = client_stream(c, path, on_data, on_event, NULL, &e);
        else {
                _cleanup_(client_response_done) ClientResponse resp = {};
                r = client_request(c, "GET", path, NULL, NULL, 0, &resp, &e);
                if (r >= 0 && (resp.status < 200 || resp.status >= 300)) {
                        client_error_from_response(&resp, &e);
                        r = -EREMOTEIO;
                } else if (r >= 0)
                        print_untrusted(resp.body, resp.size);
        }
        if (r < 0) {
                _cleanup_free_ char *d = client_error_describe(&e);
                fprintf(stderr, "nucleus logs: %s\n", d);
                return CLI_EXIT_FAILURE;
        }
        return CLI_EXIT_OK;
}
