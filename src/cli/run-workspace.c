/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus run: the workspace. Checked and packed before any pod exists (what is never
 * uploaded, what the node and the pod's disk can take), then uploaded into the pod.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "client-paths.h"
#include "fd-util.h"
#include "log.h"
#include "podspec.h"
#include "run-internal.h"
#include "string-util.h"

int run_check_workspace(const char *path, char dir[static PATH_MAX]) {
        struct stat st;

        if (!realpath(path, dir))
                return log_error_errno(-errno, "--dir %s: %m", path);
        if (stat(dir, &st) < 0)
                return log_error_errno(-errno, "--dir %s: %m", path);
        if (!S_ISDIR(st.st_mode))
                return log_error_errno(
                        -ENOTDIR, "--dir %s: not a directory (the workspace is a directory)", path);
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || access(dir, R_OK | X_OK) < 0)
                return log_error_errno(-errno, "--dir %s: cannot read it: %m", path);
        return 0;
}

uint32_t run_scratch_for(uint64_t tar_bytes) {
        uint64_t mib = (tar_bytes * 3) / (1024 * 1024) + 1024;
        if (mib < PODSPEC_SCRATCH_MIB_DEFAULT)
                mib = PODSPEC_SCRATCH_MIB_DEFAULT;
        return (uint32_t) NUCLEUS_MIN(mib, (uint64_t) PODSPEC_SCRATCH_MIB_MAX);
}

/* What makes a tar large, for the refusals below: its largest file, and how to leave it out
 * (a file git does not track goes with an ignore rule). Returns a new string ("" when there
 * is no file to name). */
static char *largest_hint(const AgentTar *tar) {
        if (!tar->largest || tar->largest_bytes < (uint64_t) 1 << 20)
                return xstrdup("");
        _cleanup_free_ char *vis = string_make_visible(tar->largest);
        return xasprintf(
                "; the largest file is %s (%llu MiB)%s",
                vis,
                (unsigned long long) (tar->largest_bytes >> 20),
                tar->from_git ? ": if it need not go, list it in .gitignore or .git/info/exclude (untracked "
                                "files), or run from a directory without it"
                              : ": if it need not go, run from a directory without it");
}

int run_upload_fits(const json_t *pod, const AgentTar *tar, char **reterr) {
        json_t *cap = json_object_get(pod, "max_upload_bytes"), *scratch = json_object_get(pod, "scratch_mib");
        if (json_is_integer(cap) && tar->size > (uint64_t) json_integer_value(cap)) {
                _cleanup_free_ char *hint = largest_hint(tar);
                *reterr = xasprintf(
                        "the workspace tar is %llu MiB, over the node's upload cap of %llu MiB ([node] "
                        "max_upload_bytes in node.toml)%s",
                        (unsigned long long) (tar->size >> 20),
                        (unsigned long long) ((uint64_t) json_integer_value(cap) >> 20),
                        hint);
                return -EFBIG;
        }
        if (json_is_integer(scratch) && tar->size > ((uint64_t) json_integer_value(scratch) << 20) / 2) {
                _cleanup_free_ char *hint = largest_hint(tar);
                *reterr = xasprintf(
                        "the workspace tar is %llu MiB, too large for the pod's %llu MiB scratch disk (the "
                        "files and their baseline need about twice that); use --scratch-mib%s",
                        (unsigned long long) (tar->size >> 20),
                        (unsigned long long) json_integer_value(scratch),
                        hint);
                return -EFBIG;
        }
        return 0;
}

int run_upload_workspace(RunContext *c, const AgentTar *tar, bool progress, char **reterr) {
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_client_error_ ClientError e = {};
        int r = agent_workspace_upload(c->client, c->pod, tar, progress, &resp, &e);
        if (r < 0) {
                *reterr = client_error_describe(&e);
                return r;
        }
        if (resp.status < 200 || resp.status >= 300) {
                client_error_from_response(&resp, &e);
                *reterr = client_error_describe(&e);
                return -EREMOTEIO;
        }
        return 0;
}
