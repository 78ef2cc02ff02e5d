/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus run: the workspace. Checked and packed before any pod exists (what is never
 * uploaded, what the node and the pod's disk can take), then uploaded into the pod.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "client-paths.h"
#include "fd-util.h"
#include "json-util.h"
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

        /* A run started from the home directory (no -d, the usual slip) would pack everything
         * in it, ~/.ssh and ~/.aws included, into the pod; so would / or a directory above the
         * home directory. Those are refused: a project is a directory of its own. */
        const char *homes[] = { secure_getenv("HOME"), NULL };
        struct passwd *pw = getpwuid(getuid());
        homes[1] = pw ? pw->pw_dir : NULL;
        for (size_t i = 0; i < ELEMENTSOF(homes); i++) {
                char home[PATH_MAX];
                if (isempty(homes[i]) || !realpath(homes[i], home) || streq(home, "/"))
                        continue;
                size_t n = strlen(dir);
                if (streq(dir, home) || streq(dir, "/") || (strncmp(home, dir, n) == 0 && home[n] == '/'))
                        return log_error_errno(
                                -EPERM,
                                "--dir %s: %s %s your home directory: its keys and credentials "
                                "(~/.ssh, ~/.aws, ...) would be uploaded into the pod; run from the "
                                "project instead (-d ~/src/PROJECT, or cd there first)",
                                path,
                                dir,
                                streq(dir, home) ? "is" : "holds");
        }
        if (streq(dir, "/"))
                return log_error_errno(
                        -EPERM, "--dir %s: / is the whole machine; run from the project instead", path);
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

char *run_toolchain_hint(const char *dir, const char *image) {
        static const struct {
                const char *marker;  /* a file at the project's top */
                const char *package; /* the Debian package that brings its toolchain */
                const char *recipe;  /* the shipped image recipe that has it (docs/images.md) */
                const char *what;
        } table[] = {
                { "pyproject.toml", "python3", "python", "Python" },
                { "setup.py", "python3", "python", "Python" },
                { "setup.cfg", "python3", "python", "Python" },
                { "requirements.txt", "python3", "python", "Python" },
                { "package.json", "nodejs", "node", "Node" },
                { "Cargo.toml", "cargo", "rust", "Rust" },
                { "go.mod", "golang-go", "go", "Go" },
        };
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return NULL;
        size_t i;
        for (i = 0; i < ELEMENTSOF(table); i++)
                if (faccessat(dfd, table[i].marker, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                        break;
        if (i == ELEMENTSOF(table))
                return NULL;

        /* The image's package list; an image imported from a container image has none (its
         * contents are unknown here), and another machine's node has its own images. */
        _cleanup_free_ char *images = NULL, *path = NULL, *data = NULL, *err = NULL;
        _cleanup_json_ json_t *m = NULL;
        size_t n = 0;
        if (client_images_dir(&images) < 0)
                return NULL;
        path = image && !streq(image, "default") ? xasprintf("%s/%s/manifest.json", images, image)
                                                 : xasprintf("%s/manifest.json", images);
        if (read_full_file_at(AT_FDCWD, path, 1U << 20, &data, &n) < 0 ||
            json_parse_strict(data, n, 1U << 20, &m, &err) < 0)
                return NULL;
        json_t *pk = json_object_get(json_object_get(m, "rootfs"), "packages"), *v;
        if (!json_is_array(pk) || json_array_size(pk) == 0)
                return NULL;
        size_t j;
        json_array_foreach(pk, j, v)
                if (streq_ptr(json_string_value(v), table[i].package))
                        return NULL;
        _cleanup_free_ char *built = xasprintf("%s/%s/manifest.json", images, table[i].recipe);
        _cleanup_free_ char *how = access(built, F_OK) == 0
                ? xasprintf("the %s image is built here: add --image %s", table[i].recipe, table[i].recipe)
                : xasprintf(
                          "build the image that has it once with 'nucleus image build --name %s', then add "
                          "--image %s",
                          table[i].recipe,
                          table[i].recipe);
        return xasprintf(
                "%s looks like a %s project (%s) but the %s image has no %s, so its tests cannot run "
                "in the pod; %s (or set [images] default = \"%s\" in config.toml)",
                dir,
                table[i].what,
                table[i].marker,
                image ?: "default",
                table[i].package,
                how,
                table[i].recipe);
}
