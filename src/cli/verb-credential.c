/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus credential POD --out FILE: mint a credential scoped to one pod (POST
 * /v1/pods/ID/credentials, docs/api.md "Scoped credentials") and save it, 0600, as the file
 * nucleus-mcp --credential and the client library read. The secret goes to that file only:
 * never to the terminal, never on a command line.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-api.h"
#include "json-util.h"
#include "log.h"
#include "secrets.h"
#include "string-util.h"

static void credential_usage(void) {
        printf("Usage: nucleus credential POD --out FILE [OPTIONS]\n\n"
               "Mint a credential scoped to one pod and save it as FILE (created, mode 0600).\n"
               "It signs that pod's tool, status, event, lease and approval-queue calls and\n"
               "nothing else, and expires with the pod: give it to an MCP server or an SDK\n"
               "instead of the node key (docs/mcp.md).\n\n"
               "Options:\n"
               "      --out FILE          Where to save it (must not exist)\n"
               "      --scope SCOPE       pod (default) or run (budget reserve/settle only)\n"
               "      --output FORMAT     text (default) or json ({\"key_id\",\"scope\",\"pod\",\"file\"})\n"
               "  -h, --help              Show this help\n");
}

int verb_credential(int argc, char **argv) {
        enum {
                ARG_OUT = 0x100,
                ARG_SCOPE,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "out", required_argument, NULL, ARG_OUT },
                { "scope", required_argument, NULL, ARG_SCOPE },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        OutputMode mode = OUTPUT_TEXT;
        const char *pod, *out = NULL, *scope = "pod";
        _cleanup_free_ char *pod_id = NULL;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (ch) {
                case ARG_OUT:
                        out = optarg;
                        break;
                case ARG_SCOPE:
                        if (!streq(optarg, "pod") && !streq(optarg, "run"))
                                return cli_usage_error("credential", "--scope is pod or run, not '%s'", optarg);
                        scope = optarg;
                        break;
                default:
                        r = cli_option_common(ch, credential_usage, &mode);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        r = cli_pod_operand(argc, argv, 1, &pod);
        if (r != 0)
                return r;
        if (isempty(out))
                return cli_usage_error("credential", "--out FILE is required (the secret goes only there)");
        if (access(out, F_OK) == 0)
                return cli_fail(
                        mode, "already_exists", "%s exists; choose a new file (it is created 0600)", out);
        r = cli_api_open_pod(mode, &c, &pod, &pod_id);
        if (r != 0)
                return r;
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/credentials", pod);
        _cleanup_free_ char *body = xasprintf("{\"scope\":\"%s\"}", scope);
        r = cli_api_call(c, "POST", path, "application/json", body, strlen(body), &resp, &e);
        if (r < 0)
                return cli_api_fail(mode, &e, &resp);
        _cleanup_json_ json_t *j = NULL;
        r = cli_api_answer_object(mode, &resp, &j);
        if (r != 0)
                return r;
        /* The answer as the node sent it: the file format the readers expect. */
        r = secret_write_new(out, resp.body, resp.size);
        explicit_bzero_safe(resp.body, resp.size);
        if (r < 0)
                return cli_fail(mode, "io_error", "cannot write %s: %s", out, strerror(-r));
        _cleanup_free_ char *kid = cli_api_field(j, "key_id");
        json_t *sv = json_object_get(j, "secret");
        if (sv)
                (void) json_string_set(sv, "");
        if (mode == OUTPUT_JSON) {
                _cleanup_json_ json_t *o = json_pack(
                        "{s:s,s:s,s:s,s:s}", "key_id", kid ?: "", "scope", scope, "pod", pod, "file", out);
                return cli_print_json(o) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        }
        printf("%s\n", kid ?: "-");
        fprintf(stderr, "saved to %s (0600); it expires with pod %s\n", out, pod);
        return CLI_EXIT_OK;
}
