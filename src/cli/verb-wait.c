/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus wait (polls GET /v1/pods/ID): until the pod reaches a state, or fails when it ends first.
 */
#include <getopt.h>
#include <stdio.h>

#include "alloc-util.h"
#include "cli-api.h"
#include "json-util.h"
#include "log.h"
#include "parse-util.h"
#include "string-util.h"

static void wait_usage(void) {
        printf("Usage: nucleus wait POD [OPTIONS]\n\n"
               "Wait until a pod reaches a state. Fails when it ends in another state first.\n\n"
               "Options:\n"
               "      --state STATE       pending, booting, configuring, running (default),\n"
               "                          stopping, exited or failed\n"
               "      --timeout S         Give up after S seconds (default 120)\n"
               "      --output FORMAT     text (default) or json (the pod object)\n"
               "  -h, --help              Show this help\n");
}

int verb_wait(int argc, char **argv) {
        enum {
                ARG_STATE = 0x100,
                ARG_TIMEOUT,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "state", required_argument, NULL, ARG_STATE },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_json_ json_t *pod_obj = NULL;
        OutputMode mode = OUTPUT_TEXT;
        const char *pod, *want = "running";
        _cleanup_free_ char *pod_id = NULL;
        uint32_t timeout_s = 120;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (ch) {
                case ARG_STATE:
                        if (!strv_contains((char **) cli_pod_states, optarg))
                                return cli_usage_error("wait", "unknown state '%s'", optarg);
                        want = optarg;
                        break;
                case ARG_TIMEOUT:
                        if (safe_atou32(optarg, &timeout_s) < 0 || timeout_s == 0)
                                return cli_usage_error(
                                        "wait",
                                        "--timeout needs a positive number of seconds, not '%s'",
                                        optarg);
                        break;
                default:
                        r = cli_option_common(ch, wait_usage, &mode);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        r = cli_api_open_pod_operand(argc, argv, mode, &c, &pod, &pod_id);
        if (r != 0)
                return r;
        r = cli_pod_wait_state(c, mode, pod, want, (usec_t) timeout_s * USEC_PER_SEC, &pod_obj);
        if (r != 0)
                return r;
        if (mode == OUTPUT_JSON)
                return cli_print_json(pod_obj) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        printf("%s %s\n", pod, want);
        return CLI_EXIT_OK;
}
