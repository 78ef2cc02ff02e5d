/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus upload (PUT /v1/pods/ID/workspace): a directory as the pod's /workspace, packed like
 * `nucleus run` packs it (never the config dir or secret store).
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent-workspace.h"
#include "alloc-util.h"
#include "cli-api.h"
#include "cli-files.h"
#include "json-util.h"
#include "log.h"
#include "parse-util.h"
#include "string-util.h"

static void upload_usage(void) {
        printf("Usage: nucleus upload POD [OPTIONS]\n\n"
               "Upload a directory as the pod's /workspace (a tar, like 'nucleus run': in a git work\n"
               "tree the tracked and untracked-but-not-ignored files, else every file; never the\n"
               "Nucleus config dir or secret store).\n\n"
               "Options:\n"
               "  -d, --dir DIR           The directory (default: the current one)\n"
               "      --output FORMAT     text (default) or json (the node's import answer)\n"
               "  -h, --help              Show this help\n");
}

int verb_upload(int argc, char **argv) {
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "dir", required_argument, NULL, 'd' },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_(agent_tar_done) AgentTar tar = { .fd = -EBADF };
        _cleanup_strv_free_ char **exclude = NULL;
        _cleanup_free_ char *err = NULL;
        OutputMode mode = OUTPUT_TEXT;
        const char *pod, *dir_arg = ".";
        _cleanup_free_ char *pod_id = NULL;
        char dir[PATH_MAX];
        int ch, r;

        while ((ch = getopt_long(argc, argv, "hd:", options, NULL)) >= 0)
                switch (ch) {
                case 'd':
                        dir_arg = optarg;
                        break;
                default:
                        r = cli_option_common(ch, upload_usage, &mode);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        r = cli_pod_operand(argc, argv, 1, &pod);
        if (r != 0)
                return r;
        if (!realpath(dir_arg, dir))
                return cli_fail(mode, "io_error", "cannot use directory %s: %m", dir_arg);
        r = cli_workspace_excludes(dir, &exclude, &err);
        if (r < 0)
                return cli_fail(mode, "invalid_request", "%s", err);
        r = cli_api_open_pod(mode, &c, &pod, &pod_id);
        if (r != 0)
                return r;
        r = agent_workspace_tar(dir, exclude, NULL, &tar, &err);
        if (r == -E2BIG)
                return cli_fail(
                        mode, "too_large", "%s: %s", dir, err ?: "over the workspace size or file limit");
        if (r < 0)
                return cli_fail(mode, "io_error", "cannot pack %s: %s", dir, err ?: strerror(-r));
        if (tar.n_excluded > 0)
                log_warning(
                        "left out %zu file(s) of the Nucleus config/secret store inside %s",
                        tar.n_excluded,
                        dir);
        r = agent_workspace_upload(c, pod, &tar, true, &resp, &e);
        if (r >= 0 && (resp.status < 200 || resp.status >= 300)) {
                client_error_from_response(&resp, &e);
                r = -EREMOTEIO;
        }
        if (r < 0)
                return cli_api_fail(mode, &e, &resp);
        _cleanup_json_ json_t *j = NULL;
        r = cli_api_answer_object(mode, &resp, &j);
        if (r != 0)
                return r;
        if (mode == OUTPUT_JSON)
                return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        printf("uploaded %zu files%s (%llu KiB) to pod %s\n",
               tar.n_files,
               tar.from_git ? " (git ls-files)" : "",
               (unsigned long long) (tar.size / 1024),
               pod);
        return CLI_EXIT_OK;
}
