/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `nucleus run`'s per-pod files in <state dir>/runs/, listed and removed through a directory
 * fd. The directory is ours, but names are still checked: only files that `nucleus run`
 * writes are ever removed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-pod.h"
#include "cli-runs.h"
#include "client-paths.h"
#include "fd-util.h"
#include "json-util.h"
#include "parse-util.h"
#include "string-util.h"

static const char *const run_suffixes[] = { ".patch", ".audit.jsonl", ".audit.jsonl.sealed", NULL };

/* The pod id a run file belongs to (malloc'd), or NULL for any other name. */
static char *run_file_pod(const char *name) {
        for (size_t i = 0; run_suffixes[i]; i++) {
                if (!endswith(name, run_suffixes[i]))
                        continue;
                _cleanup_free_ char *pod = xstrndup(name, strlen(name) - strlen(run_suffixes[i]));
                return cli_pod_id_valid(pod) ? TAKE_PTR(pod) : NULL;
        }
        return NULL;
}

/* "<dir>/<name>" as a JSON string (names are ASCII: run_file_pod() accepted them). */
static json_t *run_path_json(const char *dir, const char *name) {
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
        return json_string(p) ?: json_string("");
}

static bool in_list(json_t *list, const char *id) {
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v)
                if (streq_ptr(json_string_value(v), id))
                        return true;
        return false;
}

int cli_runs_remove(const char *pod, usec_t older_than, json_t *keep, json_t *removed, uint64_t *ret_bytes) {
        _cleanup_free_ char *state = NULL, *runs = NULL;
        int r, n = 0;

        r = client_state_dir(&state);
        if (r < 0)
                return r;
        runs = xasprintf("%s/runs", state);
        _cleanup_close_ int dfd = open(runs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return errno == ENOENT ? 0 : -errno;
        DIR *d = fd_opendir_at(dfd);
        if (!d)
                return -errno;
        struct dirent *de;
        while ((de = readdir(d))) {
                _cleanup_free_ char *owner = run_file_pod(de->d_name);
                struct stat st;
                if (!owner || (pod && !streq(owner, pod)) || (keep && in_list(keep, owner)))
                        continue;
                if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                usec_t mtime = (usec_t) st.st_mtim.tv_sec * USEC_PER_SEC + (usec_t) st.st_mtim.tv_nsec / 1000;
                if (!pod && mtime >= older_than)
                        continue;
                if (unlinkat(dfd, de->d_name, 0) < 0) {
                        if (errno == ENOENT)
                                continue;
                        r = -errno;
                        closedir(d);
                        return r;
                }
                n++;
                if (ret_bytes)
                        *ret_bytes += (uint64_t) st.st_size;
                if (removed)
                        json_array_append_new(removed, run_path_json(runs, de->d_name));
        }
        closedir(d);
        return n;
}

int cli_parse_duration(const char *s, usec_t *ret) {
        static const struct {
                char unit;
                uint64_t seconds;
        } units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 }, { 'w', 7 * 86400 } };
        size_t n = s ? strlen(s) : 0;
        uint64_t mult = 1, v;

        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
                if (s[n - 1] == units[i].unit) {
                        mult = units[i].seconds;
                        n--;
                }
        _cleanup_free_ char *num = xstrndup(s, n);
        if (safe_atou64(num, &v) < 0 || v > UINT64_MAX / mult / USEC_PER_SEC)
                return -EINVAL;
        *ret = v * mult * USEC_PER_SEC;
        return 0;
}
