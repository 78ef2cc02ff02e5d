/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus delete / cancel (DELETE /v1/pods/ID): stop a pod; idempotent.
 */
#include <getopt.h>
#include <stdio.h>

#include "alloc-util.h"
#include "cli-api.h"
#include "cli-opt.h"
#include "json-util.h"
#include "log.h"
#include "parse-util.h"
#include "string-util.h"

static void delete_usage(void) {
        printf("Usage: nucleus delete POD [OPTIONS]\n"
               "       nucleus cancel POD [OPTIONS]\n\n"
               "Stop a pod and delete it (idempotent: a pod that already ended answers its final\n"
               "state). Its audit log and console log stay on the node.\n\n"
               "Options:\n"
               "      --output FORMAT     text (default) or json (the pod object)\n"
               "  -h, --help              Show this help\n");
}

int verb_delete(int argc, char **argv) {
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        OutputMode mode = OUTPUT_TEXT;
        const char *pod;
        _cleanup_free_ char *pod_id = NULL;
        int r;

        bool done;
        r = cli_parse_simple(argc, argv, delete_usage, &mode, &done);
        if (done)
                return r;
        r = cli_api_open_pod_operand(argc, argv, mode, &c, &pod, &pod_id);
        if (r != 0)
                return r;
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s", pod);
        r = cli_api_call(c, "DELETE", path, NULL, NULL, 0, &resp, &e);
        if (r < 0)
                return cli_api_fail(mode, &e, &resp);
        _cleanup_json_ json_t *j = NULL;
        r = cli_api_answer_object(mode, &resp, &j);
        if (r != 0)
                return r;
        if (mode == OUTPUT_JSON)
                return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        _cleanup_free_ char *state = cli_api_field(j, "state");
        printf("%s %s\n", pod, state ?: "-");
        return CLI_EXIT_OK;
}
