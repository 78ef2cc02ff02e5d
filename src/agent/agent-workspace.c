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
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent-workspace.h"
#include "alloc-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "patch-flags.h"
#include "parse-util.h"
#include "process-util.h"
#include "string-util.h"
#include "time-util.h"

void agent_tar_done(AgentTar *t) {
        if (!t)
                return;
        t->fd = safe_close(t->fd);
        t->size = 0;
        t->branch = mfree(t->branch);
        t->largest = mfree(t->largest);
        t->largest_bytes = 0;
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

/* The tar goes to an unlinked temp file, hashed on the way: the upload streams from it and is
 * signed with the digest, so no workspace size has to fit in memory. */
typedef struct Sink {
        int fd;
        uint64_t size;
        crypto_hash_sha256_state hash;
} Sink;

static la_ssize_t sink_write(struct archive *a, void *userdata, const void *buf, size_t n) {
        Sink *s = userdata;
        int r = loop_write(s->fd, buf, n);
        if (r < 0) {
                archive_set_error(a, -r, "writing the workspace tar: %s", strerror(-r));
                return -1;
        }
        crypto_hash_sha256_update(&s->hash, buf, n);
        s->size += n;
        return (la_ssize_t) n;
}

static int tmpfile_open(void) {
        const char *t = secure_getenv("TMPDIR");
        int fd = open(isempty(t) ? "/tmp" : t, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0 && !isempty(t))
                fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        return fd < 0 ? -errno : fd;
}

/* Run the host's git with argv (after "git") and a fixed environment; capture stdout up to
 * max bytes. The user's own repository and configuration are read as their git would read
 * them: this is the user's machine and their trust. Returns the exit status (>= 0) with the
 * output in *ret_out (optional), or -errno; -ENOENT when git is not installed. */
static int host_git(char *const *args, const char *index_file, size_t max, char **ret_out, size_t *ret_n) {
        _cleanup_free_ char *git = agent_find_program("git");
        if (!git)
                return -ENOENT;
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        _cleanup_close_ int rd = pipefd[0];
        _cleanup_close_ int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
        char *argv[48] = { git };
        size_t n = 1;
        for (char *const *a = args; *a && n < ELEMENTSOF(argv) - 1; a++)
                argv[n++] = *a;
        argv[n] = NULL;
        const char *home = secure_getenv("HOME");
        _cleanup_free_ char *e_home = xasprintf("HOME=%s", isempty(home) ? "/nonexistent" : home);
        _cleanup_free_ char *e_index = index_file ? xasprintf("GIT_INDEX_FILE=%s", index_file) : NULL;
        char *envp[] = { (char *) "PATH=/usr/local/bin:/usr/bin:/bin",
                         (char *) "LC_ALL=C",
                         (char *) "GIT_TERMINAL_PROMPT=0",
                         e_home,
                         e_index,
                         NULL };
        PidRef pid = PIDREF_NULL;
        int r = spawn_argv(argv, envp, nullfd, pipefd[1], nullfd, &pid);
        safe_close(pipefd[1]);
        if (r < 0)
                return r;
        _cleanup_free_ char *out = NULL;
        size_t got = 0;
        r = read_full_fd(rd, max, &out, &got);
        int status = 0;
        int w = pidref_wait(&pid, &status);
        pidref_done(&pid);
        if (r < 0)
                return r;
        if (w < 0)
                return w;
        if (ret_out) {
                *ret_out = TAKE_PTR(out);
                *ret_n = got;
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int nul_list_append(const char *out, size_t n, char ***l) {
        for (size_t i = 0; i < n;) {
                size_t len = strnlen(out + i, n - i);
                if (len > 0 && i + len < n)
                        strv_extend(l, out + i);
                i += len + 1;
                if (strv_length(*l) > AGENT_WORKSPACE_MAX_FILES)
                        return -E2BIG;
        }
        return 0;
}

/* The tracked files (with the files of checked-out submodules: they travel as plain files)
 * and the untracked-but-not-ignored ones, into a strv. Returns 1 with a list, 0 when dir is
 * not a git work tree (or git is missing), <0 on errors. */
static int git_list(const char *dir, char ***ret) {
        char *tracked[] = { (char *) "-C",
                            (char *) dir,
                            (char *) "ls-files",
                            (char *) "-c",
                            (char *) "--recurse-submodules",
                            (char *) "-z",
                            NULL };
        char *others[] = { (char *) "-C",
                           (char *) dir,
                           (char *) "ls-files",
                           (char *) "-o",
                           (char *) "--exclude-standard",
                           (char *) "-z",
                           NULL };
        _cleanup_free_ char *t = NULL, *o = NULL;
        size_t tn = 0, on = 0;
        int r = host_git(tracked, NULL, 256 * 1024 * 1024, &t, &tn);
        if (r == -ENOENT || r > 0)
                return 0; /* no git, or not a work tree: walk the directory */
        if (r < 0)
                return r;
        r = host_git(others, NULL, 256 * 1024 * 1024, &o, &on);
        if (r != 0)
                return r < 0 ? r : 0;
        char **l = NULL;
        if ((r = nul_list_append(t, tn, &l)) < 0 || (r = nul_list_append(o, on, &l)) < 0) {
                strv_free(l);
                return r;
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

/* Add dfd/rel to the tar under tarname. */
static int add_file_as(struct archive *a, int dfd, const char *rel, const char *tarname, char **reterr) {
        struct stat st;
        if (fstatat(dfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return 0; /* listed by git but deleted in the work tree */
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, tarname);
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

static int add_file(struct archive *a, int dfd, const char *rel, char **reterr) {
        return add_file_as(a, dfd, rel, rel, reterr);
}

/* ---- history, by construction ---- */

/* Remove a temp tree we made (no symlinks followed: unlinkat on names from our own dirs). */
static void rm_tree_at(int dfd, const char *name, unsigned depth) {
        if (depth > 16)
                return;
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
                DIR *d = fd_opendir_at(fd);
                struct dirent *de;
                while (d && (de = readdir(d)))
                        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                                rm_tree_at(fd, de->d_name, depth + 1);
                if (d)
                        closedir(d);
                (void) unlinkat(dfd, name, AT_REMOVEDIR);
                return;
        }
        (void) unlinkat(dfd, name, 0);
}

static void rm_tree(char **p) {
        if (*p)
                rm_tree_at(AT_FDCWD, *p, 0);
        *p = mfree(*p);
}

static int tar_add_bytes(struct archive *a, const char *name, const void *data, size_t n, mode_t mode) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, name);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, mode);
        archive_entry_set_size(e, (la_int64_t) n);
        int r = archive_write_header(a, e) == ARCHIVE_OK ? 0 : -EIO;
        if (r == 0 && n > 0 && archive_write_data(a, data, n) != (la_ssize_t) n)
                r = -EIO;
        archive_entry_free(e);
        return r;
}

static int tar_add_dir(struct archive *a, const char *name) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, name);
        archive_entry_set_filetype(e, AE_IFDIR);
        archive_entry_set_perm(e, 0755);
        int r = archive_write_header(a, e) == ARCHIVE_OK ? 0 : -EIO;
        archive_entry_free(e);
        return r;
}

/* A value git config can hold between "name = " and the end of the line as is: printable, no
 * quote, backslash, comment character or surrounding blanks. Others are left out. */
static bool git_config_value_ok(const char *v) {
        size_t n = v ? strlen(v) : 0;
        if (n == 0 || n > 256 || v[0] == ' ' || v[n - 1] == ' ')
                return false;
        for (const char *c = v; *c; c++)
                if ((unsigned char) *c < 0x20 || *c == 0x7f || strchr("\"\\;#", *c))
                        return false;
        return true;
}

/* user.name / user.email as the user's git sees them for dir (trailing newline cut), or NULL. */
static char *host_git_config(const char *dir, const char *key) {
        char *args[] = { (char *) "-C", (char *) dir, (char *) "config", (char *) "--get", (char *) key, NULL };
        _cleanup_free_ char *out = NULL;
        size_t n = 0;
        if (host_git(args, NULL, 4096, &out, &n) != 0)
                return NULL;
        out[strcspn(out, "\n")] = 0;
        return git_config_value_ok(out) ? TAKE_PTR(out) : NULL;
}

/* Add the constructed .git of dir's current branch (see agent_workspace_tar) to a. Returns 1
 * when added, 0 when there is nothing to send (no commit yet), <0 with *reterr. */
static int history_add(struct archive *a, const char *dir, uint32_t depth, AgentTar *t, char **reterr) {
        _cleanup_(rm_tree) char *tmp = NULL;
        _cleanup_free_ char *head = NULL, *branch = NULL, *commit = NULL, *gitdir = NULL, *index = NULL,
                            *count = NULL, *depth_arg = NULL;
        size_t n = 0;
        int r;

        char *verify[] = { (char *) "-C", (char *) dir,        (char *) "rev-parse",
                           (char *) "-q", (char *) "--verify", (char *) "HEAD^{commit}",
                           NULL };
        if (host_git(verify, NULL, 128, &commit, &n) != 0)
                return 0; /* no commit yet: nothing to send */

        /* A subdirectory of the work tree (a package of a monorepo): the files are the
         * subdirectory's, the commits the whole repository's, so git in the pod would see
         * everything else as deleted. No history then; the caller says so. */
        _cleanup_free_ char *prefix = NULL;
        char *pfx[] = { (char *) "-C", (char *) dir, (char *) "rev-parse", (char *) "--show-prefix", NULL };
        if (host_git(pfx, NULL, PATH_MAX, &prefix, &n) == 0 && prefix[strcspn(prefix, "\n")] != 0 &&
            prefix[0] != '\n') {
                t->history_subdir = true;
                return 0;
        }
        commit[strcspn(commit, "\n")] = 0;
        char *sym[] = { (char *) "-C", (char *) dir,    (char *) "symbolic-ref",
                        (char *) "-q", (char *) "HEAD", NULL };
        if (host_git(sym, NULL, 4096, &head, &n) == 0) {
                head[strcspn(head, "\n")] = 0;
                const char *b = startswith(head, "refs/heads/");
                if (b && *b)
                        branch = xstrdup(b);
        }

        const char *tdir = secure_getenv("TMPDIR");
        tmp = xasprintf("%s/nucleus-history-XXXXXX", isempty(tdir) ? "/tmp" : tdir);
        if (!mkdtemp(tmp)) {
                r = -errno;
                tmp = mfree(tmp);
                *reterr = xasprintf("cannot make a temp dir for the history: %s", strerror(-r));
                return r;
        }
        gitdir = xasprintf("%s/h.git", tmp);
        index = xasprintf("%s/index", tmp);
        /* A fresh repository receives exactly the branch's commits (shallow beyond depth) from
         * the user's through git's own transport: nothing else of theirs comes along. */
        char *init[] = { (char *) "init", (char *) "-q", (char *) "--bare", gitdir, NULL };
        depth_arg = depth == AGENT_HISTORY_ALL ? NULL : xasprintf("--depth=%u", depth);
        char *fetch[] = { (char *) "--git-dir",
                          gitdir,
                          (char *) "fetch",
                          (char *) "-q",
                          (char *) "--no-tags",
                          (char *) "--no-write-fetch-head",
                          (char *) "--no-recurse-submodules",
                          (char *) dir,
                          (char *) "HEAD:refs/heads/nucleus-upload",
                          depth_arg,
                          NULL };
        char *repack[] = { (char *) "--git-dir", gitdir, (char *) "repack", (char *) "-a", (char *) "-d",
                           (char *) "-q",        NULL };
        char *readtree[] = { (char *) "--git-dir", gitdir, (char *) "read-tree", commit, NULL };
        char *countargs[] = { (char *) "--git-dir", gitdir, (char *) "rev-list",
                              (char *) "--count",   commit, NULL };
        const char *step = "init";
        r = host_git(init, NULL, 0, NULL, NULL);
        if (r == 0) {
                step = "fetch";
                r = host_git(fetch, NULL, 0, NULL, NULL);
        }
        if (r == 0) {
                step = "repack";
                r = host_git(repack, NULL, 0, NULL, NULL);
        }
        if (r == 0) {
                step = "read-tree";
                r = host_git(readtree, index, 0, NULL, NULL);
        }
        if (r == 0) {
                step = "rev-list";
                r = host_git(countargs, NULL, 64, &count, &n);
        }
        if (r != 0) {
                *reterr = xasprintf(
                        "building the history to upload failed (git %s: %s); --history none leaves it out",
                        step,
                        r < 0 ? strerror(-r) : "non-zero exit");
                return r < 0 ? r : -EIO;
        }
        count[strcspn(count, "\n")] = 0;
        (void) safe_atou64(count, &t->n_commits);
        _cleanup_free_ char *shallow_p = xasprintf("%s/shallow", gitdir), *shallow = NULL;
        size_t shallow_n = 0;
        t->history_shallow = read_full_file_at(AT_FDCWD, shallow_p, 16 * 1024 * 1024, &shallow, &shallow_n) >=
                0;

        /* HEAD names the branch (or the commit when detached); the ref holds the commit. */
        const char *bname = branch ? branch : NULL;
        _cleanup_free_ char *head_text = bname ? xasprintf("ref: refs/heads/%s\n", bname)
                                               : xasprintf("%s\n", commit);
        _cleanup_free_ char *ref_text = xasprintf("%s\n", commit);
        _cleanup_free_ char *name = host_git_config(dir, "user.name"),
                            *email = host_git_config(dir, "user.email");
        _cleanup_free_ char *config = xasprintf(
                "[user]\n%s%s%s%s%s%s",
                name ? "\tname = " : "",
                name ?: "",
                name ? "\n" : "",
                email ? "\temail = " : "",
                email ?: "",
                email ? "\n" : "");
        static const char *const dirs[] = {
                ".git",         ".git/refs",         ".git/refs/heads",  ".git/refs/tags",
                ".git/objects", ".git/objects/pack", ".git/objects/info"
        };
        r = 0;
        for (size_t i = 0; i < ELEMENTSOF(dirs) && r >= 0; i++)
                r = tar_add_dir(a, dirs[i]);
        if (r >= 0)
                r = tar_add_bytes(a, ".git/HEAD", head_text, strlen(head_text), 0644);
        if (r >= 0)
                r = tar_add_bytes(a, ".git/config", config, strlen(config), 0644);
        if (r >= 0 && bname) {
                /* Intermediate directories of a branch like feature/x. */
                _cleanup_free_ char *ref = xasprintf(".git/refs/heads/%s", bname);
                for (char *slash = strchr(ref + strlen(".git/refs/heads/"), '/'); slash && r >= 0;
                     slash = strchr(slash + 1, '/')) {
                        *slash = 0;
                        r = tar_add_dir(a, ref);
                        *slash = '/';
                }
                if (r >= 0)
                        r = tar_add_bytes(a, ref, ref_text, strlen(ref_text), 0644);
        }
        if (r >= 0 && t->history_shallow)
                r = tar_add_bytes(a, ".git/shallow", shallow, shallow_n, 0644);
        if (r >= 0) {
                _cleanup_free_ char *idx = NULL;
                size_t idx_n = 0;
                r = read_full_file_at(AT_FDCWD, index, 1024 * 1024 * 1024, &idx, &idx_n);
                if (r >= 0)
                        r = tar_add_bytes(a, ".git/index", idx, idx_n, 0644);
        }
        if (r >= 0) {
                _cleanup_free_ char *packdir = xasprintf("%s/objects/pack", gitdir);
                _cleanup_close_ int pfd = open(packdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                DIR *d = pfd >= 0 ? fd_opendir_at(pfd) : NULL;
                struct dirent *de;
                if (!d)
                        r = -errno;
                while (r >= 0 && d && (de = readdir(d))) {
                        if (!endswith(de->d_name, ".pack") && !endswith(de->d_name, ".idx"))
                                continue;
                        _cleanup_free_ char *rel = xasprintf("objects/pack/%s", de->d_name);
                        _cleanup_free_ char *tarname = xasprintf(".git/%s", rel);
                        _cleanup_close_ int gfd = open(gitdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        if (gfd < 0)
                                r = -errno;
                        else
                                r = add_file_as(a, gfd, rel, tarname, reterr);
                }
                if (d)
                        closedir(d);
        }
        if (r < 0) {
                if (!*reterr)
                        *reterr = xasprintf("packing the history failed: %s", strerror(-r));
                return r;
        }
        t->branch = branch ? xstrdup(branch) : NULL;
        return 1;
}

int agent_workspace_tar(
        const char *dir, char *const *exclude, const AgentTarOptions *o, AgentTar *ret, char **reterr) {
        static const AgentTarOptions defaults = { .history = AGENT_HISTORY_DEFAULT };
        _cleanup_(agent_tar_done) AgentTar t = { .fd = -EBADF };
        char **files = NULL;
        int r;

        if (!o)
                o = &defaults;
        if (sodium_init() < 0)
                return -EIO;
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

        Sink sink = { .fd = tmpfile_open() };
        if (sink.fd < 0) {
                strv_free(files);
                *reterr = xasprintf("cannot create a temp file for the workspace tar: %s", strerror(-sink.fd));
                return sink.fd;
        }
        t.fd = sink.fd;
        crypto_hash_sha256_init(&sink.hash);
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
                struct stat fst;
                if (fstatat(dfd, *f, &fst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(fst.st_mode) &&
                    (uint64_t) fst.st_size > t.largest_bytes) {
                        t.largest_bytes = (uint64_t) fst.st_size;
                        free(t.largest);
                        t.largest = xstrdup(*f);
                }
        }
        strv_free(files);
        if (r >= 0 && t.from_git && o->history > 0)
                r = history_add(a, dir, o->history, &t, reterr);
        if (r >= 0 && archive_write_close(a) != ARCHIVE_OK)
                r = -EIO;
        if (r < 0 && !*reterr)
                *reterr = xasprintf("%s: packing failed: %s", dir, archive_error_string(a) ?: strerror(-r));
        archive_write_free(a);
        if (r < 0)
                return r;
        uint8_t d[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_final(&sink.hash, d);
        sodium_bin2hex(t.sha256, sizeof(t.sha256), d, sizeof(d));
        t.size = sink.size;
        *ret = t;
        t = (AgentTar){ .fd = -EBADF };
        return 0;
}

/* ---- upload ---- */

typedef struct UploadProgress {
        const AgentTar *t;
        usec_t started, last;
        bool tty, shown;
} UploadProgress;

static void format_bytes(char *buf, size_t n, uint64_t b) {
        if (b >= (UINT64_C(1) << 30))
                (void) snprintf(buf, n, "%.1f GiB", (double) b / (double) (UINT64_C(1) << 30));
        else
                (void) snprintf(buf, n, "%.1f MiB", (double) b / (double) (UINT64_C(1) << 20));
}

static int upload_progress(uint64_t sent, uint64_t total, void *userdata) {
        UploadProgress *u = userdata;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        /* A line every 2 s (a rewritten one every 0.25 s on a terminal), and the last one. */
        if (sent < total && now - u->last < (u->tty ? 250 : 2000) * USEC_PER_MSEC)
                return 0;
        u->last = now;
        char s[32], tot[32], rate[32];
        double secs = (double) (now - u->started) / 1e6;
        format_bytes(s, sizeof s, sent);
        format_bytes(tot, sizeof tot, total);
        format_bytes(rate, sizeof rate, secs > 0.001 ? (uint64_t) ((double) sent / secs) : 0);
        fprintf(stderr,
                "%s[nucleus] uploading %s of %s (%zu files%s), %s/s%s",
                u->tty ? "\r" : "",
                s,
                tot,
                u->t->n_files,
                u->t->n_commits ? ", with history" : "",
                rate,
                u->tty && sent < total ? "" : "\n");
        u->shown = true;
        return 0;
}

int agent_workspace_upload(
        NucleusClient *c,
        const char *pod,
        const AgentTar *t,
        bool progress,
        ClientResponse *ret,
        ClientError *reterr) {
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/workspace", pod);
        UploadProgress u = {
                .t = t,
                .started = now_usec(CLOCK_MONOTONIC),
                .tty = isatty(STDERR_FILENO) == 1,
        };
        u.last = u.started;
        bool show = progress && t->size > AGENT_UPLOAD_PROGRESS_MIN;
        if (show)
                fprintf(stderr,
                        "[nucleus] uploading the workspace: %zu files, %.1f MiB\n",
                        t->n_files,
                        (double) t->size / (double) (1 << 20));
        return client_request_upload(
                c,
                "PUT",
                path,
                "application/x-tar",
                t->fd,
                t->size,
                t->sha256,
                show ? upload_progress : NULL,
                show ? &u : NULL,
                ret,
                reterr);
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
