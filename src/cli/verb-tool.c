/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus tool (POST /v1/pods/ID/tools/OP): one tool call of the pod's proxy, its JSON answer on
 * stdout; a policy denial exits 1 with "denied: KIND: message".
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "id-util.h"
#include "cli-api.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "parse-util.h"
#include "string-util.h"

/* JSON-ARGS from stdin: the node's default [node] max_tool_body_bytes (a write of a large file). */
#define ARGS_MAX_BYTES ((size_t) 64 * 1024 * 1024)

static void tool_usage(void) {
        printf("Usage: nucleus tool POD OPERATION [JSON-ARGS] [OPTIONS]\n\n"
               "Call one tool of the pod's proxy (read, write, edit, list, glob, grep, run, status,\n"
               "web_fetch, ...; docs/proxy.md) and print its JSON answer on stdout. JSON-ARGS is a\n"
               "JSON object ('-' reads it from stdin). Exit 0 only when the call was allowed and\n"
               "executed (a command's own exit status is in the answer); a denial prints\n"
               "'denied: KIND: message' on stderr and exits 1.\n\n"
               "Options:\n"
               "      --arg KEY=VALUE     Set argument KEY to the string VALUE (repeatable)\n"
               "      --arg-json KEY=JSON Set argument KEY to a JSON value, e.g. argv='[\"ls\"]'\n"
               "      --output FORMAT     text (default) or json (exactly the answer, or the error)\n"
               "  -h, --help              Show this help\n\n"
               "Example: nucleus tool POD run --arg-json argv='[\"git\",\"status\"]'\n");
}

/* KEY=VALUE into args; value a string or (as_json) a JSON value. Returns 0 or an exit code. */
static int add_arg(json_t *args, const char *kv, bool as_json) {
        const char *eq = strchr(kv, '=');
        const char *opt = as_json ? "--arg-json" : "--arg";
        if (!eq || eq == kv)
                return cli_usage_error("tool", "%s needs KEY=VALUE, not '%s'", opt, kv);
        _cleanup_free_ char *key = xstrndup(kv, (size_t) (eq - kv));
        if (json_object_get(args, key))
                return cli_usage_error("tool", "argument '%s' given twice", key);
        json_t *v;
        if (as_json) {
                json_error_t je;
                v = json_loads(eq + 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
                if (!v)
                        return cli_usage_error("tool", "%s %s: not JSON: %s", opt, key, je.text);
        } else
                v = json_string(eq + 1);
        if (!v)
                return cli_usage_error("tool", "%s %s: not valid UTF-8", opt, key);
        json_object_set_new(args, key, v);
        return 0;
}

int verb_tool(int argc, char **argv) {
        enum {
                ARG_ARG = 0x100,
                ARG_ARG_JSON,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "arg", required_argument, NULL, ARG_ARG },
                { "arg-json", required_argument, NULL, ARG_ARG_JSON },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_json_ json_t *args = json_object(), *extra = json_object();
        OutputMode mode = OUTPUT_TEXT;
        const char *pod;
        _cleanup_free_ char *pod_id = NULL;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (ch) {
                case ARG_ARG:
                case ARG_ARG_JSON:
                        r = add_arg(extra, optarg, ch == ARG_ARG_JSON);
                        if (r != 0)
                                return r;
                        break;
                default:
                        r = cli_option_common(ch, tool_usage, &mode);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        if (argc - optind < 2 || argc - optind > 3)
                return cli_usage_error("tool", "expected POD OPERATION [JSON-ARGS]");
        r = cli_pod_operand(argc, argv, argc - optind, &pod);
        if (r != 0)
                return r;
        const char *op = argv[optind + 1];
        if (!operation_name_valid(op))
                return cli_usage_error("tool", "'%s' is not an operation name ([a-z_], at most 32)", op);
        if (argc - optind == 3) {
                const char *a = argv[optind + 2];
                _cleanup_free_ char *buf = NULL;
                size_t n;
                if (streq(a, "-")) {
                        r = read_full_fd(STDIN_FILENO, ARGS_MAX_BYTES, &buf, &n);
                        if (r < 0)
                                return cli_fail(
                                        mode,
                                        r == -EFBIG ? "too_large" : "io_error",
                                        "cannot read the arguments from stdin: %s%s",
                                        strerror(-r),
                                        r == -EFBIG ? " (at most 64 MiB)" : "");
                        a = buf;
                } else
                        n = strlen(a);
                json_error_t je;
                json_decref(args);
                args = json_loadb(a, n, JSON_REJECT_DUPLICATES, &je);
                if (!json_is_object(args))
                        return cli_usage_error(
                                "tool",
                                "JSON-ARGS must be a JSON object%s%s",
                                args ? "" : ": ",
                                args ? "" : je.text);
        }
        const char *k;
        json_t *v;
        json_object_foreach(extra, k, v) {
                if (json_object_get(args, k))
                        return cli_usage_error(
                                "tool", "argument '%s' given both in JSON-ARGS and as an option", k);
                json_object_set(args, k, v);
        }

        _cleanup_free_ char *body = json_dumps(args, JSON_COMPACT);
        if (!body)
                return cli_fail(mode, "internal", "cannot encode the arguments");
        r = cli_api_open_pod(mode, &c, &pod, &pod_id);
        if (r != 0)
                return r;
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/tools/%s", pod, op);
        r = client_request(c, "POST", path, "application/json", body, strlen(body), &resp, &e);
        if (r < 0)
                return cli_api_fail(mode, &e, NULL);
        if (resp.status < 200 || resp.status >= 300) {
                client_error_from_response(&resp, &e);
                /* Policy refusals (403), budget (402) and the time window (408) are denials;
                 * anything else (unknown pod, pod not running, bad arguments) an error. */
                if (resp.status == 402 || resp.status == 403 || resp.status == 408)
                        fprintf(stderr, "denied: %s: %s\n", e.kind ?: "internal", e.message ?: "");
                else {
                        _cleanup_free_ char *d = client_error_describe(&e);
                        log_error("%s", d);
                }
                if (mode == OUTPUT_JSON) {
                        _cleanup_json_ json_t *doc = cli_api_answer(&resp);
                        if (doc && json_is_string(json_object_get(doc, "kind"))) {
                                json_object_set_new(doc, "ok", json_false());
                                (void) cli_print_json(doc);
                        } else
                                cli_print_json_failure(mode, e.kind ?: "internal", e.message ?: "");
                }
                return CLI_EXIT_FAILURE;
        }
        _cleanup_json_ json_t *ans = NULL;
        r = cli_api_answer_object(mode, &resp, &ans);
        if (r != 0)
                return r;
        if (cli_print_json(ans) < 0)
                return CLI_EXIT_FAILURE;
        if (mode == OUTPUT_TEXT && streq(op, "run")) {
                json_t *ec = json_object_get(ans, "exit_code");
                if (json_is_integer(ec) && json_integer_value(ec) != 0)
                        log_info(
                                "the command ran and exited with status %lld",
                                (long long) json_integer_value(ec));
        }
        return CLI_EXIT_OK;
}
