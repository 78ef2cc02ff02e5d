/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus approve (POST /v1/pods/ID/approvals): hand an approval token to the pod.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-api.h"
#include "cli-opt.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "parse-util.h"
#include "string-util.h"

#define TOKEN_MAX_BYTES ((size_t) 16 * 1024)

static void approve_usage(void) {
        printf("Usage: nucleus approve POD TOKEN|- [OPTIONS]\n\n"
               "Hand an approval token (docs/approvals.md) to the pod; a later matching call uses\n"
               "it. '-' reads the token from stdin (keeps it out of the process list and history).\n\n"
               "Options:\n"
               "      --output FORMAT     text (default) or json (the proxy's approve answer)\n"
               "  -h, --help              Show this help\n");
}

int verb_approve(int argc, char **argv) {
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_free_ char *buf = NULL;
        OutputMode mode = OUTPUT_TEXT;
        const char *pod, *token;
        _cleanup_free_ char *pod_id = NULL;
        int r;

        bool done;
        r = cli_parse_simple(argc, argv, approve_usage, &mode, &done);
        if (done)
                return r;
        r = cli_pod_operand(argc, argv, 2, &pod);
        if (r != 0)
                return r;
        token = argv[optind + 1];
        if (streq(token, "-")) {
                size_t n;
                r = read_full_fd(STDIN_FILENO, TOKEN_MAX_BYTES, &buf, &n);
                if (r < 0)
                        return cli_fail(mode, "io_error", "cannot read the token from stdin: %s", strerror(-r));
                buf[strcspn(buf, " \t\r\n")] = 0;
                token = buf;
        }
        if (isempty(token) || strlen(token) > TOKEN_MAX_BYTES)
                return cli_usage_error("approve", "the token is empty or too long");
        r = cli_api_open_pod(mode, &c, &pod, &pod_id);
        if (r != 0)
                return r;
        _cleanup_json_ json_t *req = json_pack("{s:s}", "token", token);
        if (!req)
                return cli_usage_error("approve", "the token is not valid UTF-8");
        _cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/approvals", pod);
        r = cli_api_call(c, "POST", path, "application/json", body, strlen(body), &resp, &e);
        if (r < 0)
                return cli_api_fail(mode, &e, &resp);
        _cleanup_json_ json_t *j = NULL;
        r = cli_api_answer_object(mode, &resp, &j);
        if (r != 0)
                return r;
        if (mode == OUTPUT_JSON)
                return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        _cleanup_free_ char *op = cli_api_field(j, "operation"), *uses = cli_api_field(j, "uses");
        printf("approved %s for pod %s (%s use%s)\n",
               op ?: "-",
               pod,
               uses ?: "?",
               uses && streq(uses, "1") ? "" : "s");
        return CLI_EXIT_OK;
}
