/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Workspace upload (tar) and patch answer parsing; see agent-workspace.h. Files are read with
 * O_NOFOLLOW relative to the directory fd; the node's answers are untrusted.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent-workspace.h"
#include "alloc-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "patch-flags.h"
#include "process-util.h"
#include "string-util.h"

void agent_tar_done(AgentTar *t) {
        if (!t)
                return;
        t->data = mfree(t->data);
        t->size = 0;
}

void agent_patch_done(AgentPatch *p) {
        if (!p)
                return;
        p->patch = mfree(p->patch);
        p->flagged = strv_free(p->flagged);
        p->changed = strv_free(p->changed);
        if (p->flags)
                json_decref(p->flags);
        p->flags = NULL;
}

char *agent_find_program(const char *name) {
        static const char *const dirs[] = { "/usr/local/bin", "/usr/bin", "/bin" };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                char *p = xasprintf("%s/%s", dirs[i], name);
                if (access(p, X_OK) == 0)
                        return p;
                free(p);
        }
        return NULL;
}

typedef struct Sink {
        char *buf;
        size_t size, alloc;
        bool overflow;
} Sink;

static la_ssize_t sink_write(struct archive *a, void *userdata, const void *buf, size_t n) {
        Sink *s = userdata;
        if (n > AGENT_WORKSPACE_MAX_BYTES || s->size > AGENT_WORKSPACE_MAX_BYTES - n) {
                s->overflow = true;
                archive_set_error(a, E2BIG, "workspace larger than %zu bytes", AGENT_WORKSPACE_MAX_BYTES);
                return -1;
        }
        if (s->size + n > s->alloc) {
                s->alloc = NUCLEUS_MAX(s->alloc * 2, s->size + n + 65536);
                s->buf = xrealloc(s->buf, s->alloc);
        }
        memcpy(s->buf + s->size, buf, n);
        s->size += n;
        return (la_ssize_t) n;
}

/* `git -C dir ls-files -co --exclude-standard -z` into a strv. Returns 1 with a list, 0 when
 * dir is not a git work tree (or git is missing), <0 on errors. */
static int git_list(const char *dir, char ***ret) {
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        _cleanup_close_ int rd = pipefd[0];
        _cleanup_close_ int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
        _cleanup_free_ char *git = agent_find_program("git");
        if (!git)
                return 0; /* no git: walk the directory */
        char *argv[] = { git,
                         (char *) "-C",
                         (char *) dir,
                         (char *) "ls-files",
                         (char *) "-co",
                         (char *) "--exclude-standard",
                         (char *) "-z",
                         NULL };
        char *envp[] = { (char *) "PATH=/usr/local/bin:/usr/bin:/bin",
                         (char *) "LC_ALL=C",
                         (char *) "GIT_CONFIG_NOSYSTEM=1",
                         NULL };
        PidRef pid = PIDREF_NULL;
        int r = spawn_argv(argv, envp, nullfd, pipefd[1], nullfd, &pid);
        safe_close(pipefd[1]);
        if (r < 0)
                return 0;
        _cleanup_free_ char *out = NULL;
        size_t n = 0;
        r = read_full_fd(rd, 64 * 1024 * 1024, &out, &n);
        int status = 0;
        int w = pidref_wait(&pid, &status);
        pidref_done(&pid);
        if (r < 0)
                return r;
        if (w < 0 || status != 0)
                return 0; /* not a work tree */
        char **l = NULL;
        for (size_t i = 0; i < n;) {
                size_t len = strnlen(out + i, n - i);
                if (len > 0)
                        strv_extend(&l, out + i);
                i += len + 1;
                if (strv_length(l) > AGENT_WORKSPACE_MAX_FILES) {
                        strv_free(l);
                        return -E2BIG;
                }
        }
        *ret = l;
        return 1;
}

static int walk(int dfd, const char *prefix, char ***list, size_t depth) {
        _cleanup_close_ int fd = openat(
                dfd, prefix[0] ? prefix : ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (depth > 64)
                return -ELOOP;
        DIR *d = fdopendir(fd);
        if (!d)
                return -errno;
        TAKE_FD(fd);
        struct dirent *de;
        int r = 0;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (!prefix[0] && streq(de->d_name, ".git"))
                        continue;
                _cleanup_free_ char *p = prefix[0] ? xasprintf("%s/%s", prefix, de->d_name)
                                                   : xstrdup(de->d_name);
                struct stat st;
                if (fstatat(dfd, p, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode))
                        r = walk(dfd, p, list, depth + 1);
                else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode))
                        strv_extend(list, p);
                if (r < 0)
                        break;
                if (strv_length(*list) > AGENT_WORKSPACE_MAX_FILES) {
                        r = -E2BIG;
                        break;
                }
        }
        closedir(d);
        return r;
}

static bool excluded(const char *dir, const char *rel, char *const *exclude) {
        _cleanup_free_ char *abs = xasprintf("%s/%s", dir, rel);
        STRV_FOREACH(e, exclude) {
                const char *rest = startswith(abs, *e);
                if (rest && (*rest == 0 || *rest == '/'))
                        return true;
        }
        return false;
}

static int add_file(struct archive *a, int dfd, const char *rel, char **reterr) {
        struct stat st;
        if (fstatat(dfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return 0; /* listed by git but deleted in the work tree */
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, rel);
        archive_entry_set_mtime(e, st.st_mtime, 0);
        int r = 0;

        if (S_ISLNK(st.st_mode)) {
                char target[PATH_MAX];
                ssize_t l = readlinkat(dfd, rel, target, sizeof target - 1);
                if (l < 0) {
                        archive_entry_free(e);
                        return 0;
                }
                target[l] = 0;
                archive_entry_set_filetype(e, AE_IFLNK);
                archive_entry_set_perm(e, 0777);
                archive_entry_set_symlink(e, target);
                if (archive_write_header(a, e) != ARCHIVE_OK)
                        r = -EIO;
        } else if (S_ISREG(st.st_mode)) {
                _cleanup_close_ int fd = openat(
                        dfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
                struct stat fst;
                if (fd < 0 || fstat(fd, &fst) < 0 || !S_ISREG(fst.st_mode)) {
                        archive_entry_free(e);
                        return 0;
                }
                archive_entry_set_filetype(e, AE_IFREG);
                archive_entry_set_perm(e, (fst.st_mode & 0111) ? 0755 : 0644);
                archive_entry_set_size(e, fst.st_size);
                if (archive_write_header(a, e) != ARCHIVE_OK)
                        r = -EIO;
                char buf[65536];
                off_t left = fst.st_size;
                while (r >= 0 && left > 0) {
                        ssize_t k = read(fd, buf, (size_t) NUCLEUS_MIN((off_t) sizeof buf, left));
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k <= 0) {
                                r = k < 0 ? -errno : -EIO; /* shrank while packing */
                                break;
                        }
                        if (archive_write_data(a, buf, (size_t) k) != k)
                                r = -EIO;
                        left -= k;
                }
        }
        archive_entry_free(e);
        if (r < 0 && reterr && !*reterr)
                *reterr = xasprintf("%s: %s", rel, archive_error_string(a) ?: strerror(-r));
        return r;
}

int agent_workspace_tar(const char *dir, char *const *exclude, AgentTar *ret, char **reterr) {
        char **files = NULL;
        Sink sink = {};
        AgentTar t = {};
        int r;

        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
                r = -errno;
                *reterr = xasprintf("%s: %s", dir, strerror(-r));
                return r;
        }
        r = git_list(dir, &files);
        if (r < 0) {
                *reterr = xasprintf("%s: listing files with git failed: %s", dir, strerror(-r));
                return r;
        }
        t.from_git = r > 0;
        if (!t.from_git) {
                r = walk(dfd, "", &files, 0);
                if (r < 0) {
                        strv_free(files);
                        *reterr = xasprintf("%s: %s", dir, r == -E2BIG ? "too many files" : strerror(-r));
                        return r;
                }
        }
        strv_sort_uniq(files);

        struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        archive_write_set_bytes_in_last_block(a, 1);
        /* Names are bytes: store them as they are (pax hdrcharset=BINARY), never translated
         * through the locale, so a name that is not valid in it (or not UTF-8 at all) packs
         * like any other instead of failing with "Can't translate pathname to UTF-8". */
        if (archive_write_set_format_option(a, "pax", "hdrcharset", "BINARY") != ARCHIVE_OK ||
            archive_write_open2(a, &sink, NULL, sink_write, NULL, NULL) != ARCHIVE_OK) {
                *reterr = xasprintf("tar: %s", archive_error_string(a) ?: "cannot open");
                archive_write_free(a);
                strv_free(files);
                return -EIO;
        }
        r = 0;
        STRV_FOREACH(f, files) {
                if (excluded(dir, *f, exclude)) {
                        t.n_excluded++;
                        continue;
                }
                r = add_file(a, dfd, *f, reterr);
                if (r < 0)
                        break;
                t.n_files++;
        }
        if (r >= 0 && archive_write_close(a) != ARCHIVE_OK)
                r = -EIO;
        archive_write_free(a);
        strv_free(files);
        if (sink.overflow) {
                free(*reterr);
                *reterr = xasprintf(
                        "%s: the workspace is larger than %zu MiB", dir, AGENT_WORKSPACE_MAX_BYTES >> 20);
                free(sink.buf);
                return -E2BIG;
        }
        if (r < 0) {
                if (!*reterr)
                        *reterr = xasprintf("%s: packing failed: %s", dir, strerror(-r));
                free(sink.buf);
                return r;
        }
        t.data = sink.buf;
        t.size = sink.size;
        *ret = t;
        return 0;
}

static void patch_flagged_refresh(AgentPatch *p) {
        size_t i;
        json_t *v;
        p->flagged = strv_free(p->flagged);
        json_array_foreach(p->flags, i, v) {
                const char *path = json_string_value(json_object_get(v, "path"));
                if (path)
                        strv_extend(&p->flagged, path);
        }
        strv_sort_uniq(p->flagged);
}

void agent_patch_print_flags(const AgentPatch *p, const char *prefix) {
        size_t i;
        json_t *v;
        json_array_foreach(p->flags, i, v) {
                _cleanup_free_ char *path = string_make_visible(
                                            json_string_value(json_object_get(v, "path")) ?: "?"),
                                    *reason = string_make_visible(
                                            json_string_value(json_object_get(v, "reason")) ?: "?"),
                                    *why = string_make_visible(
                                            json_string_value(json_object_get(v, "why")) ?: "");
                fprintf(stderr, "%s%s [%s] %s\n", prefix, path, reason, why);
        }
}

void agent_patch_drop_new_binaries(AgentPatch *p, char ***ret_dropped) {
        _cleanup_free_ char *kept = NULL, *err = NULL;
        size_t kn = 0;
        char **dropped = NULL;
        patch_drop_new_binaries(p->patch ?: "", p->size, &kept, &kn, &dropped);
        *ret_dropped = dropped;
        if (!dropped)
                return;
        AgentPatch q = {};
        if (agent_patch_parse(NULL, kept, kn, &q, &err) < 0) /* cannot happen: no NUL */
                return;
        size_t i;
        json_t *v;
        json_array_foreach(p->flags, i, v) {
                const char *path = json_string_value(json_object_get(v, "path"));
                if (path && !strv_contains(dropped, path))
                        patch_flags_add(
                                q.flags,
                                path,
                                json_string_value(json_object_get(v, "reason")) ?: "flagged",
                                json_string_value(json_object_get(v, "why")) ?: "");
        }
        patch_flagged_refresh(&q);
        agent_patch_done(p);
        *p = q;
}

void agent_patch_flag_host(AgentPatch *p, const char *dir) {
        if (!p->changed || !dir)
                return;
        if (patch_flags_host_aliases(dir, p->changed, p->flags) < 0)
                patch_flags_add(p->flags, dir, "unchecked", "the host tree's symbolic links could not be read");
        patch_flagged_refresh(p);
}

int agent_patch_parse(const char *content_type, const char *body, size_t n, AgentPatch *ret, char **reterr) {
        AgentPatch p = { .flags = json_array() };
        _cleanup_json_ json_t *j = NULL;
        if (content_type && strstr(content_type, "json")) {
                _cleanup_free_ char *perr = NULL;
                if (json_parse_strict(body, n, 256 * 1024 * 1024, &j, &perr) < 0 || !json_is_object(j)) {
                        *reterr = xasprintf("patch answer: %s", perr ? perr : "not a JSON object");
                        agent_patch_done(&p);
                        return -EBADMSG;
                }
                json_t *pt = json_object_get(j, "patch");
                if (pt && !json_is_string(pt)) {
                        *reterr = xstrdup("patch answer: \"patch\" is not a string");
                        agent_patch_done(&p);
                        return -EBADMSG;
                }
                p.patch = xstrdup(pt ? json_string_value(pt) : "");
                p.size = pt ? json_string_length(pt) : 0;
        } else {
                if (memchr(body, 0, n)) {
                        *reterr = xstrdup("patch answer contains NUL bytes");
                        agent_patch_done(&p);
                        return -EBADMSG;
                }
                p.patch = xstrndup(body, n);
                p.size = n;
        }
        /* Our own reading of the patch first. */
        PatchSummary sum = {};
        _cleanup_free_ char *perr = NULL;
        if (patch_flags_compute(p.patch, p.size, &sum, &perr) < 0)
                patch_flags_add(p.flags, "(patch)", "unparsed", perr ?: "the patch cannot be parsed");
        else {
                p.changed = TAKE_PTR(sum.paths);
                json_array_extend(p.flags, sum.flags);
        }
        patch_summary_done(&sum);
        /* Then the node's list, which can only add. */
        size_t i;
        json_t *v;
        json_array_foreach(j ? json_object_get(j, "flagged") : NULL, i, v) {
                const char *path = json_is_string(v) ? json_string_value(v)
                                                     : json_string_value(json_object_get(v, "path"));
                const char *reason = json_string_value(json_object_get(v, "reason"));
                const char *why = json_string_value(json_object_get(v, "why"));
                if (path)
                        patch_flags_add(p.flags, path, reason ?: "flagged", why ?: "flagged by the node");
        }
        patch_flagged_refresh(&p);
        *ret = p;
        return 0;
}
