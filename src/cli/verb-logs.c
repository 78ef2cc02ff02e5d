/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus logs POD [--follow] [--tail N]: a pod's console log (signed GET /v1/pods/ID/logs).
 * --follow polls until the pod ends. The text comes from the guest and is untrusted: control
 * characters are made visible except newlines and tabs.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-pod.h"
#include "cli-files.h"
#include "cli.h"
#include "client-settings.h"
#include "fd-util.h"
#include "json-util.h"
#include "parse-util.h"
#include "string-util.h"

static void usage(void) {
        printf("Usage: nucleus logs POD [OPTIONS]\n\n"
               "Show a pod's logs.\n\n"
               "Options:\n"
               "  -f, --follow            Keep printing new output until the pod ends (Ctrl-C stops)\n"
               "      --tail N            Only the last N lines\n"
               "      --events            Stream the pod's live audit events instead (one line each:\n"
               "                          EVENT JSON) until the pod ends\n"
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

/* --events: one line per server-sent event, "EVENT DATA" (DATA is the node's JSON record). */
static int on_event(const char *event, const char *data, void *userdata) {
        (void) userdata;
        _cleanup_free_ char *vis = string_make_visible(data);
        printf("%s %s\n", event ?: "audit", vis);
        fflush(stdout);
        return 0;
}

static int fetch(NucleusClient *c, const char *path, ClientResponse *resp, ClientError *e) {
        int r = client_request(c, "GET", path, NULL, NULL, 0, resp, e);
        if (r >= 0 && (resp->status < 200 || resp->status >= 300)) {
                client_error_from_response(resp, e);
                return -EREMOTEIO;
        }
        return r;
}

/* Is the pod finished? Errors count as "no" (the next poll reports them). */
static bool pod_finished(NucleusClient *c, const char *pod) {
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s", pod);
        _cleanup_json_ json_t *j = NULL;
        _cleanup_client_error_ ClientError e = {};
        if (client_call_json(c, "GET", path, NULL, &j, &e) < 0)
                return false;
        const char *st = json_string_value(json_object_get(j, "state"));
        return st && (streq(st, "exited") || streq(st, "failed"));
}

/*
 * --follow: the node serves a bounded window of the console log (the last N bytes), so poll
 * it and print what is new: the part after the previously printed text. When the window
 * slid past what we saw, resynchronise on the last 4 KiB we printed. Ends when the pod has
 * exited or failed (after one last fetch) or on an error.
 */
static int follow(NucleusClient *c, const char *pod, const char *path, ClientError *e) {
        _cleanup_free_ char *seen = xstrdup("");
        size_t seen_n = 0;

        for (;;) {
                bool finished = pod_finished(c, pod);
                _cleanup_(client_response_done) ClientResponse resp = {};
                int r = fetch(c, path, &resp, e);
                if (r < 0)
                        return r;
                size_t from = 0;
                if (seen_n > 0) {
                        size_t k = NUCLEUS_MIN(seen_n, (size_t) 4096);
                        const char *tail = seen + seen_n - k;
                        if (resp.size >= seen_n && memcmp(resp.body, seen, seen_n) == 0)
                                from = seen_n;
                        else {
                                const char *hit = memmem(resp.body, resp.size, tail, k);
                                /* Without an overlap everything is new (the log rolled over). */
                                from = hit ? (size_t) (hit - resp.body) + k : 0;
                        }
                }
                if (from < resp.size)
                        print_untrusted(resp.body + from, resp.size - from);
                free(seen);
                seen = TAKE_PTR(resp.body);
                seen_n = resp.size;
                resp.size = 0;
                if (finished)
                        return 0;
                (void) usleep(500 * 1000);
        }
}

int verb_logs(int argc, char **argv) {
        enum {
                ARG_TAIL = 0x100,
                ARG_EVENTS,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                { "follow", no_argument, NULL, 'f' },
                { "tail", required_argument, NULL, ARG_TAIL },
                { "events", no_argument, NULL, ARG_EVENTS },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_free_ char *err = NULL, *path = NULL;
        bool follow_mode = false, events = false;
        uint32_t tail = 0;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "hf", options, NULL)) >= 0)
                switch (ch) {
                case 'f':
                        follow_mode = true;
                        break;
                case ARG_EVENTS:
                        events = true;
                        break;
                case ARG_TAIL:
                        if (safe_atou32(optarg, &tail) < 0 || tail == 0)
                                return cli_usage_error(
                                        "logs", "--tail needs a positive number, not '%s'", optarg);
                        break;
                default:
                        r = cli_option_common(ch, usage, NULL);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
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
        if (events && (follow_mode || tail > 0))
                return cli_usage_error("logs", "--events cannot be combined with --follow or --tail");
        if (events) {
                /* A stream has no total timeout; only connecting is bounded. */
                _cleanup_free_ char *epath = xasprintf("/v1/pods/%s/events", pod);
                r = client_stream(c, epath, NULL, on_event, NULL, &e);
                if (r < 0) {
                        _cleanup_free_ char *d = client_error_describe(&e);
                        fprintf(stderr, "nucleus logs: %s\n", d);
                        return CLI_EXIT_FAILURE;
                }
                return CLI_EXIT_OK;
        }
        if (tail > 0)
                path = xasprintf("/v1/pods/%s/logs?tail=%u", pod, tail);
        else
                path = xasprintf("/v1/pods/%s/logs", pod);
        if (follow_mode)
                r = follow(c, pod, path, &e);
        else {
                _cleanup_(client_response_done) ClientResponse resp = {};
                r = fetch(c, path, &resp, &e);
                if (r >= 0)
                        print_untrusted(resp.body, resp.size);
        }
        if (r < 0) {
                _cleanup_free_ char *d = client_error_describe(&e), *local = NULL;
                fprintf(stderr, "nucleus logs: %s\n", d);
                if (e.status == 404 && (local = cli_local_pod_dir(pod)))
                        /* A node forgets the pods of its earlier runs; their files stay. */
                        fprintf(stderr,
                                "nucleus logs: the node does not know this pod (restarted since?); "
                                "its logs stay in %s (console.log, node.log)\n",
                                local);
                return CLI_EXIT_FAILURE;
        }
        return CLI_EXIT_OK;
}
