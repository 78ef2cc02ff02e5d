/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus patch (GET /v1/pods/ID/workspace/patch): the workspace changes as a binary git patch;
 * paths a host would execute or parse are flagged.
 */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent-workspace.h"
#include "alloc-util.h"
#include "cli-api.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "parse-util.h"
#include "string-util.h"

static void patch_usage(void) {
        printf("Usage: nucleus patch POD [OPTIONS]\n\n"
               "Fetch the pod's workspace changes as a binary git patch (apply with 'git apply').\n"
               "Changes a host would run, load or obey (build files, CI, editor and agent config,\n"
               "hooks, symlinks, executables, binaries) are FLAGGED on stderr with the reason:\n"
               "review them before applying.\n\n"
               "Options:\n"
               "  -o, --out FILE          Save the patch to FILE (0600) instead of printing it\n"
               "  -d, --dir DIR           The tree it will be applied to: also flag paths that\n"
               "                          symlinks already in DIR make reachable as flagged ones\n"
               "      --output FORMAT     text (default) or json (the node's export answer)\n"
               "  -h, --help              Show this help\n");
}

int verb_patch(int argc, char **argv) {
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "out", required_argument, NULL, 'o' },
                { "dir", required_argument, NULL, 'd' },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_(agent_patch_done) AgentPatch patch = {};
        _cleanup_free_ char *err = NULL;
        OutputMode mode = OUTPUT_TEXT;
        const char *pod, *out = NULL, *dir = NULL;
        _cleanup_free_ char *pod_id = NULL;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "ho:d:", options, NULL)) >= 0)
                switch (ch) {
                case 'o':
                        out = optarg;
                        break;
                case 'd':
                        dir = optarg;
                        break;
                default:
                        r = cli_option_common(ch, patch_usage, &mode);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        r = cli_api_open_pod_operand(argc, argv, mode, &c, &pod, &pod_id);
        if (r != 0)
                return r;
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/workspace/patch", pod);
        r = cli_api_call(c, "GET", path, NULL, NULL, 0, &resp, &e);
        if (r < 0)
                return cli_api_fail(mode, &e, &resp);
        r = agent_patch_parse(resp.content_type, resp.body, resp.size, &patch, &err);
        if (r < 0)
                return cli_fail(
                        mode, "internal", "the node's patch answer is malformed: %s", err ?: strerror(-r));
        if (out) {
                r = write_file_atomic_at(AT_FDCWD, out, patch.patch ?: "", patch.size, 0600);
                if (r < 0)
                        return cli_fail(mode, "io_error", "cannot save the patch to %s: %s", out, strerror(-r));
        }
        size_t n_changed = strv_length(patch.changed);
        if (dir)
                agent_patch_flag_host(&patch, dir);
        agent_patch_print_flags(&patch, "FLAGGED: ");
        if (mode == OUTPUT_JSON) {
                _cleanup_json_ json_t *j = cli_api_answer(&resp);
                if (!j) /* a raw patch answer */
                        j = json_pack("{s:s%}", "patch", patch.patch ?: "", patch.size);
                if (out)
                        json_object_set_new(j, "path", json_string(out));
                /* The CLI's own flags: the node's list plus what this side computed. */
                json_object_set(j, "flagged", patch.flags);
                return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        }
        if (out) {
                printf("%s\n", out);
                log_info("%zu changed path(s), %zu bytes of patch saved to %s", n_changed, patch.size, out);
        } else if (patch.size > 0) {
                /* Raw for pipes ('| git apply'); on a terminal the guest's bytes are defused. */
                if (isatty(STDOUT_FILENO)) {
                        _cleanup_free_ char *vis = escape_text(patch.patch, patch.size, ESCAPE_KEEP_NEWLINE);
                        fputs(vis, stdout);
                } else if (fwrite(patch.patch, 1, patch.size, stdout) != patch.size)
                        return cli_fail(mode, "io_error", "cannot write the patch to stdout");
        } else
                log_info("no changes");
        return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}
