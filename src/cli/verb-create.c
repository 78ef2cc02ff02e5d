/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus create (POST /v1/pods): a PodSpec file to a pod, optionally waiting until it runs.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "cli-api.h"
#include "json-util.h"
#include "log.h"
#include "parse-util.h"
#include "podspec.h"
#include "string-util.h"

#define SPEC_MAX_BYTES ((size_t) 2 * 1024 * 1024) /* the node's default max_body_bytes */

static void create_usage(void) {
        printf("Usage: nucleus create -f SPEC [OPTIONS]\n\n"
               "Create a pod from a PodSpec (YAML or JSON, docs/podspec.md). Prints the pod id on\n"
               "stdout and its state on stderr.\n\n"
               "Options:\n"
               "  -f, --file SPEC         The PodSpec file ('-' reads stdin)\n"
               "      --wait              Wait until the pod is running (see 'nucleus wait')\n"
               "      --timeout S         With --wait: give up after S seconds (default 120)\n"
               "      --output FORMAT     text (default) or json (the pod object)\n"
               "  -h, --help              Show this help\n");
}

int verb_create(int argc, char **argv) {
        enum {
                ARG_WAIT = 0x100,
                ARG_TIMEOUT,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "file", required_argument, NULL, 'f' },
                { "wait", no_argument, NULL, ARG_WAIT },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_free_ char *spec = NULL;
        OutputMode mode = OUTPUT_TEXT;
        const char *file = NULL;
        bool wait = false;
        uint32_t timeout_s = 120;
        size_t n = 0;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "hf:", options, NULL)) >= 0)
                switch (ch) {
                case 'f':
                        file = optarg;
                        break;
                case ARG_WAIT:
                        wait = true;
                        break;
                case ARG_TIMEOUT:
                        if (safe_atou32(optarg, &timeout_s) < 0 || timeout_s == 0)
                                return cli_usage_error(
                                        "create",
                                        "--timeout needs a positive number of seconds, not '%s'",
                                        optarg);
                        break;
                default:
                        r = cli_option_common(ch, create_usage, &mode);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        if (!file)
                return cli_usage_error("create", "-f SPEC is required");
        if (optind < argc)
                return cli_usage_error("create", "unexpected argument '%s'", argv[optind]);

        r = cli_read_input(file, SPEC_MAX_BYTES, &spec, &n);
        if (r == -EFBIG)
                return cli_fail(mode, "too_large", "%s: larger than %zu bytes", file, SPEC_MAX_BYTES);
        if (r < 0)
                return cli_fail(mode, "io_error", "cannot read %s: %s", file, strerror(-r));
        /* Checked here first, with the same parser as the node, so an error names this file and
         * its line (the node can only name its "request body") and nothing reaches the node for
         * a spec it would refuse. The node checks it again, and everything past the document
         * (images built, profiles, limits) only it can. */
        _cleanup_(podspec_freep) PodSpec *parsed = NULL;
        _cleanup_free_ char *perr = NULL;
        if (podspec_parse(spec, n, streq(file, "-") ? "stdin" : file, &parsed, &perr) < 0)
                return cli_fail(
                        mode,
                        "invalid_request",
                        "invalid spec: %s (docs/podspec.md)",
                        perr ?: "the document could not be parsed");
        const char *p = spec + strspn(spec, " \t\r\n");
        const char *ct = *p == '{' ? "application/json" : "application/yaml";

        r = cli_api_open(mode, &c);
        if (r != 0)
                return r;
        r = cli_api_call(c, "POST", "/v1/pods", ct, spec, n, &resp, &e);
        if (r < 0)
                return cli_api_fail(mode, &e, &resp);
        _cleanup_json_ json_t *pod = cli_api_answer(&resp);
        const char *id = json_string_value(json_object_get(pod, "id"));
        if (!id || !cli_pod_id_valid(id))
                return cli_fail(mode, "internal", "the node's answer carries no valid pod id");
        if (wait) {
                json_t *final = NULL;
                _cleanup_free_ char *idc = xstrdup(id);
                r = cli_pod_wait_state(c, mode, idc, "running", (usec_t) timeout_s * USEC_PER_SEC, &final);
                if (r != 0) {
                        json_decref(final);
                        return r;
                }
                json_decref(pod);
                pod = final;
        }
        if (mode == OUTPUT_JSON)
                return cli_print_json(pod) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        cli_print_pod_line(pod);
        _cleanup_free_ char *warning = cli_api_field(pod, "warning");
        if (warning)
                log_warning("%s", warning);
        return CLI_EXIT_OK;
}
