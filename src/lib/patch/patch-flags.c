/* SPDX-License-Identifier: Apache-2.0 */
/* Flags of a patch; see patch-flags.h and docs/policy.md "Flagged paths". */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unicase.h>
#include <unistd.h>
#include <unistr.h>

#include "alloc-util.h"
#include "escape.h"
#include "fd-util.h"
#include "glob.h"
#include "patch-flags.h"
#include "string-util.h"

#define PATCH_MAX_NUMSTAT (64U * 1024U * 1024U)
#define HOST_WALK_MAX_DEPTH 32U
#define HOST_WALK_MAX_ENTRIES 500000U

/* ---- folding and the catalogue ---- */

char *patch_path_fold(const char *path) {
        size_t n = strlen(path);
        uint8_t *clean = xnew(uint8_t, n * 3 + 1), *c = clean;
        const uint8_t *p = (const uint8_t *) path, *end = p + n;
        while (p < end) {
                ucs4_t uc;
                int k = u8_mbtoucr(&uc, p, (size_t) (end - p));
                if (k < 0) {
                        c += u8_uctomb(c, 0xFFFD, 3);
                        p++;
                        continue;
                }
                if (uc == '/' || !escape_codepoint_is_hidden(uc) || uc == '\t' || uc == '\n') {
                        memcpy(c, p, (size_t) k);
                        c += k;
                }
                p += k;
        }
        size_t fl = 0;
        uint8_t *folded = u8_casefold(clean, (size_t) (c - clean), NULL, UNINORM_NFKC, NULL, &fl);
        free(clean);
        if (!folded) /* cannot happen on valid input; never match less than the raw path */
                return xstrdup(path);
        /* Per component: cut at ':' (NTFS alternate streams), strip trailing dots and spaces. */
        char *out = xnew(char, fl + 1), *o = out;
        for (size_t i = 0; i < fl;) {
                size_t j = i;
                while (j < fl && folded[j] != '/')
                        j++;
                size_t len = j - i;
                const uint8_t *colon = memchr(folded + i, ':', len);
                if (colon)
                        len = (size_t) (colon - (folded + i));
                while (len > 0 && (folded[i + len - 1] == '.' || folded[i + len - 1] == ' '))
                        len--;
                /* "." and ".." stay themselves (a path of dots is not a trailing-dot name). */
                if (len == 0 && j > i && folded[i] == '.')
                        len = j - i;
                memcpy(o, folded + i, len);
                o += len;
                if (j < fl)
                        *o++ = '/';
                i = j + 1;
        }
        *o = 0;
        free(folded);
        return out;
}

/* Matching cost stays linear in the path: a glob without "**" spans a fixed number of
 * components, so only the suffix with that many is tried; a glob with "**" starts with a
 * literal component (the build refuses others, scripts/gen-flag-catalogue.py), so only the
 * suffixes that start with it are tried. */
static bool rule_matches(const PatchFlagRule *rule, const char *f, const size_t *starts, size_t nc) {
        const char *g = rule->glob;
        if (!strstr(g, "**")) {
                size_t k = 1;
                for (const char *c = g; *c; c++)
                        k += *c == '/';
                return nc >= k && glob_match(g, f + starts[nc - k]);
        }
        size_t first = strcspn(g, "/");
        for (size_t i = 0; i < nc; i++) {
                const char *c = f + starts[i];
                if (strncmp(c, g, first) == 0 && (c[first] == '/' || !c[first]) && glob_match(g, c))
                        return true;
        }
        return false;
}

const PatchFlagRule *patch_flag_match(const char *path) {
        _cleanup_free_ char *f = patch_path_fold(path);
        size_t nc = 1;
        for (const char *c = f; *c; c++)
                nc += *c == '/';
        _cleanup_free_ size_t *starts = xnew(size_t, nc);
        starts[0] = 0;
        size_t k = 1;
        for (size_t i = 0; f[i]; i++)
                if (f[i] == '/')
                        starts[k++] = i + 1;
        for (size_t i = 0; i < patch_flag_rules_n; i++)
                if (rule_matches(&patch_flag_rules[i], f, starts, nc))
                        return &patch_flag_rules[i];
        return NULL;
}

void patch_flags_add(json_t *flags, const char *path, const char *reason, const char *why) {
        size_t i;
        json_t *v;
        json_array_foreach(flags, i, v) {
                if (streq_ptr(json_string_value(json_object_get(v, "path")), path) &&
                    streq_ptr(json_string_value(json_object_get(v, "reason")), reason))
                        return;
        }
        json_t *o = json_object();
        /* Paths are bytes; a name that is not UTF-8 is kept as its visible form. */
        if (utf8_is_valid(path))
                json_object_set_new(o, "path", json_string(path));
        else {
                _cleanup_free_ char *vis = string_make_visible(path);
                json_object_set_new(o, "path", json_string(vis));
        }
        json_object_set_new(o, "reason", json_string(reason));
        json_object_set_new(o, "why", json_string(why));
        json_array_append_new(flags, o);
}

void patch_summary_done(PatchSummary *s) {
        s->paths = strv_free(s->paths);
        if (s->flags)
                json_decref(s->flags);
        s->flags = NULL;
}

/* ---- git apply --numstat --summary -z ---- */

/* Run git apply on the patch in a fresh private directory (so no repository is found and no
 * configuration read). Returns its stdout. */
static int git_numstat(const char *patch, size_t n, char **ret, size_t *ret_n, char **reterr) {
        const char *td = secure_getenv("TMPDIR");
        _cleanup_free_ char *dir = xasprintf("%s/nucleus-patch-XXXXXX", isempty(td) ? "/tmp" : td);
        if (!mkdtemp(dir))
                return -errno;
        _cleanup_free_ char *file = xasprintf("%s/patch", dir);
        _cleanup_free_ char *out = NULL, *e_home = xasprintf("HOME=%s", dir),
                            *e_xdg = xasprintf("XDG_CONFIG_HOME=%s", dir),
                            *e_ceil = xasprintf("GIT_CEILING_DIRECTORIES=%s", dir);
        size_t got = 0;
        int r = write_file_atomic_at(AT_FDCWD, file, patch, n, 0600);
        int pfd[2] = { -EBADF, -EBADF };
        pid_t pid = -1;
        if (r >= 0 && pipe2(pfd, O_CLOEXEC) < 0)
                r = -errno;
        if (r >= 0 && (pid = fork()) < 0)
                r = -errno;
        if (r >= 0 && pid == 0) {
                char *argv[] = { (char *) "git",
                                 (char *) "apply",
                                 (char *) "--numstat",
                                 (char *) "--summary",
                                 (char *) "-z",
                                 (char *) "patch",
                                 NULL };
                char *envp[] = { (char *) "PATH=/usr/bin:/bin",
                                 e_home,
                                 e_xdg,
                                 e_ceil,
                                 (char *) "GIT_CONFIG_NOSYSTEM=1",
                                 (char *) "GIT_CONFIG_GLOBAL=/dev/null",
                                 (char *) "GIT_ATTR_NOSYSTEM=1",
                                 (char *) "LC_ALL=C",
                                 NULL };
                int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (devnull < 0 || chdir(dir) < 0 || dup2(devnull, 0) < 0 || dup2(pfd[1], 1) < 0 ||
                    dup2(devnull, 2) < 0)
                        _exit(127);
                (void) signal(SIGPIPE, SIG_DFL);
                execve("/usr/bin/git", argv, envp);
                execve("/usr/local/bin/git", argv, envp);
                execve("/opt/homebrew/bin/git", argv, envp);
                _exit(127);
        }
        pfd[1] = safe_close(pfd[1]);
        if (r >= 0) {
                r = read_full_fd(pfd[0], PATCH_MAX_NUMSTAT, &out, &got);
                int status = 0;
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                        ;
                if (r >= 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
                        *reterr = xstrdup(
                                WIFEXITED(status) && WEXITSTATUS(status) == 127 ? "git is not installed (it "
                                                                                  "parses patches)"
                                                                                : "git apply cannot parse "
                                                                                  "the patch");
                        r = -EBADMSG;
                }
        }
        safe_close(pfd[0]);
        (void) unlink(file);
        (void) rmdir(dir);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(out);
        *ret_n = got;
        return 0;
}

/* ---- the extended headers of each "diff --git" block ---- */

/* A path as git writes it in a header: bare, or C-quoted ("a\tb", "\303\251"). */
static char *header_path(const char *s, size_t n) {
        if (n < 2 || s[0] != '"' || s[n - 1] != '"')
                return xstrndup(s, n);
        char *out = xnew(char, n), *o = out;
        for (size_t i = 1; i + 1 < n; i++) {
                if (s[i] != '\\' || i + 2 >= n) {
                        *o++ = s[i];
                        continue;
                }
                char c = s[++i];
                static const char from[] = "abtnvfr\"\\", to[] = "\a\b\t\n\v\f\r\"\\";
                const char *k = strchr(from, c);
                if (k && c)
                        *o++ = to[k - from];
                else if (c >= '0' && c <= '3' && i + 2 < n) {
                        *o++ = (char) (((c - '0') << 6) | ((s[i + 1] - '0') << 3) | (s[i + 2] - '0'));
                        i += 2;
                } else
                        *o++ = c;
        }
        *o = 0;
        return out;
}

static unsigned parse_mode(const char *s) {
        return (unsigned) strtoul(s, NULL, 8);
}

PatchFile *patch_headers_parse(const char *patch, size_t n, size_t *ret_n) {
        PatchFile *files = NULL;
        size_t nf = 0;
        enum {
                OUTSIDE,
                HEADER,
                HUNK
        } state = OUTSIDE;
        bool want_first = false;
        for (const char *p = patch, *end = patch + n; p < end;) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t len = nl ? (size_t) (nl - p) : (size_t) (end - p);
                _cleanup_free_ char *line = xstrndup(p, len);
                p += len + 1;
                const char *v;
                if (startswith(line, "diff --git ")) {
                        files = xreallocarray(files, nf + 1, sizeof *files);
                        files[nf++] = (PatchFile){};
                        state = HEADER;
                        continue;
                }
                if (nf == 0)
                        continue;
                PatchFile *f = &files[nf - 1];
                if (state == HEADER) {
                        if ((v = startswith(line, "old mode ")))
                                f->old_mode = parse_mode(v);
                        else if ((v = startswith(line, "new mode ")))
                                f->new_mode = parse_mode(v);
                        else if ((v = startswith(line, "new file mode "))) {
                                f->new_mode = parse_mode(v);
                                f->created = true;
                        } else if ((v = startswith(line, "deleted file mode "))) {
                                f->old_mode = parse_mode(v);
                                f->deleted = true;
                        } else if ((v = startswith(line, "index "))) {
                                const char *m = strchr(v, ' ');
                                if (m) {
                                        if (!f->old_mode && !f->created)
                                                f->old_mode = parse_mode(m + 1);
                                        if (!f->new_mode && !f->deleted)
                                                f->new_mode = parse_mode(m + 1);
                                }
                        } else if ((v = startswith(line, "rename from ")) || (v = startswith(line, "copy from "))) {
                                free(f->old_path);
                                f->old_path = header_path(v, strlen(v));
                        } else if (startswith(line, "GIT binary patch") || startswith(line, "Binary files "))
                                f->binary = true;
                        else if (startswith(line, "@@ ")) {
                                state = HUNK;
                                goto hunk;
                        }
                        continue;
                }
                if (state != HUNK)
                        continue;
hunk:
                if ((v = startswith(line, "@@ -"))) {
                        const char *plus = strstr(v, " +");
                        want_first = plus && (strtoul(plus + 2, NULL, 10) <= 1);
                        continue;
                }
                if (want_first && (line[0] == ' ' || line[0] == '+')) {
                        f->shebang = startswith(line + 1, "#!") != NULL;
                        want_first = false;
                }
        }
        *ret_n = nf;
        return files;
}

void patch_files_free(PatchFile *files, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(files[i].path);
                free(files[i].old_path);
        }
        free(files);
}

static void flag_file(const PatchFile *f, json_t *flags) {
        const char *names[] = { f->path, f->old_path };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                const PatchFlagRule *rule = names[i] ? patch_flag_match(names[i]) : NULL;
                if (rule)
                        patch_flags_add(flags, names[i], rule->group, rule->why);
        }
        if (f->old_mode == 0120000 || f->new_mode == 0120000)
                patch_flags_add(
                        flags, f->path, "symlink", "a symbolic link: the host follows it wherever it points");
        if (f->old_mode == 0160000 || f->new_mode == 0160000)
                patch_flags_add(
                        flags, f->path, "submodule", "a gitlink: git on the host treats it as a submodule");
        if (f->deleted)
                return;
        if (f->new_mode != 0120000 && f->new_mode != 0160000 && (f->new_mode & 0111))
                patch_flags_add(flags, f->path, "executable", "has an exec bit: the host can run it");
        if (f->binary)
                patch_flags_add(
                        flags,
                        f->path,
                        "binary",
                        "binary content (a program the host could run, or data nobody reviews)");
        if (f->shebang && !f->binary)
                patch_flags_add(flags, f->path, "script", "starts with '#!': the host can run it as a program");
}

int patch_flags_compute(const char *patch, size_t n, PatchSummary *ret, char **reterr) {
        PatchSummary s = { .flags = json_array() };
        _cleanup_free_ char *out = NULL;
        size_t on = 0, nf = 0;
        int r;

        if (n == 0) {
                *ret = s;
                return 0;
        }
        r = git_numstat(patch, n, &out, &on, reterr);
        if (r < 0) {
                patch_summary_done(&s);
                if (!*reterr)
                        *reterr = xasprintf("cannot run git apply: %s", strerror(-r));
                return r;
        }
        PatchFile *files = patch_headers_parse(patch, n, &nf);
        /* numstat entries ("ADDED\tDELETED\tPATH\0", "-\t-\t" for binary), one per block and in
         * the patch's order; the --summary lines follow. */
        size_t i = 0, off = 0;
        while (off < on && (out[off] == '-' || (out[off] >= '0' && out[off] <= '9'))) {
                const char *e = memchr(out + off, 0, on - off);
                const char *t1 = memchr(out + off, '\t', e ? (size_t) (e - (out + off)) : 0);
                const char *t2 = t1 ? memchr(t1 + 1, '\t', (size_t) (e - (t1 + 1))) : NULL;
                if (!e || !t2 || i >= nf) {
                        r = -EBADMSG;
                        break;
                }
                files[i].path = xstrndup(t2 + 1, (size_t) (e - (t2 + 1)));
                if (out[off] == '-')
                        files[i].binary = true;
                i++;
                off = (size_t) (e - out) + 1;
        }
        /* The summary names every creation, deletion and mode change; its count must agree
         * with what the headers said, or the two readings differ and nothing is trusted. */
        size_t creates = 0, deletes = 0, modes = 0, hc = 0, hd = 0, hm = 0;
        for (const char *l = out + off; r >= 0 && l < out + on;) {
                const char *e = memchr(l, '\n', (size_t) (out + on - l));
                size_t len = e ? (size_t) (e - l) : (size_t) (out + on - l);
                if (len > 13 && memcmp(l, " create mode ", 13) == 0)
                        creates++;
                else if (len > 13 && memcmp(l, " delete mode ", 13) == 0)
                        deletes++;
                else if (len > 13 && memcmp(l, " mode change ", 13) == 0)
                        modes++;
                l += len + 1;
        }
        for (size_t k = 0; k < nf; k++) {
                hc += files[k].created;
                hd += files[k].deleted;
                /* git's summary shows a mode change only inside a rename/copy or in place. */
                hm += !files[k].created && !files[k].deleted && files[k].old_mode && files[k].new_mode &&
                        files[k].old_mode != files[k].new_mode;
        }
        if (r >= 0 && (i != nf || creates != hc || deletes != hd || modes != hm))
                r = -EBADMSG;
        if (r < 0) {
                patch_files_free(files, nf);
                patch_summary_done(&s);
                *reterr = xasprintf(
                        "the patch's headers and git's reading of it disagree (%zu of %zu files)", i, nf);
                return -EBADMSG;
        }
        for (size_t k = 0; k < nf; k++) {
                strv_extend(&s.paths, files[k].path);
                if (files[k].old_path)
                        strv_extend(&s.paths, files[k].old_path);
                flag_file(&files[k], s.flags);
        }
        strv_sort_uniq(s.paths);
        patch_files_free(files, nf);
        *ret = s;
        return 0;
}

/* ---- leaving new binaries out ---- */

/* The name of a created file from its "diff --git a/P b/P" line (both halves equal). */
static char *created_name(const char *line, size_t len) {
        const char *rest = line + 11;
        size_t rl = len - 11;
        if (rl > 0 && rest[0] == '"') {
                const char *q = memchr(rest + 1, '"', rl - 1);
                while (q && q[-1] == '\\')
                        q = memchr(q + 1, '"', (size_t) (rest + rl - (q + 1)));
                if (!q)
                        return NULL;
                _cleanup_free_ char *a = header_path(rest, (size_t) (q - rest) + 1);
                return startswith(a, "a/") ? xstrdup(a + 2) : NULL;
        }
        if (rl < 7 || (rl - 5) % 2 != 0)
                return NULL;
        size_t l = (rl - 5) / 2;
        if (memcmp(rest, "a/", 2) != 0 || memcmp(rest + 2 + l, " b/", 3) != 0 ||
            memcmp(rest + 2, rest + 5 + l, l) != 0)
                return NULL;
        return xstrndup(rest + 2, l);
}

void patch_drop_new_binaries(const char *patch, size_t n, char **ret, size_t *ret_n, char ***ret_dropped) {
        char *out = xnew(char, n + 1);
        size_t on = 0;
        char **dropped = NULL;
        const char *end = patch + n, *p = patch;
        while (p < end) {
                /* One block: from a "diff --git" line to the next one (or the text before the
                 * first block, kept as is). */
                const char *b = p, *q = p;
                bool first = true, created = false, binary = false, header = true;
                while (q < end) {
                        const char *nl = memchr(q, '\n', (size_t) (end - q));
                        size_t len = nl ? (size_t) (nl - q) : (size_t) (end - q);
                        bool starts = len >= 11 && memcmp(q, "diff --git ", 11) == 0;
                        if (starts && !first)
                                break;
                        if (header && !starts) {
                                if (len >= 14 && memcmp(q, "new file mode ", 14) == 0)
                                        created = true;
                                else if (
                                        (len >= 16 && memcmp(q, "GIT binary patch", 16) == 0) ||
                                        (len >= 13 && memcmp(q, "Binary files ", 13) == 0))
                                        binary = true;
                                else if (len >= 3 && (memcmp(q, "@@ ", 3) == 0 || memcmp(q, "---", 3) == 0))
                                        header = false;
                        }
                        first = false;
                        q += len + (nl ? 1 : 0);
                }
                char *name = NULL;
                if (created && binary) {
                        const char *nl = memchr(b, '\n', (size_t) (q - b));
                        name = created_name(b, nl ? (size_t) (nl - b) : (size_t) (q - b));
                }
                if (name)
                        strv_consume(&dropped, name);
                else {
                        memcpy(out + on, b, (size_t) (q - b));
                        on += (size_t) (q - b);
                }
                p = q;
        }
        out[on] = 0;
        *ret = out;
        *ret_n = on;
        *ret_dropped = dropped;
}

/* ---- host symlinks (CLI side) ---- */

typedef struct HostLink {
        char *name;   /* the link, relative to the root */
        char *target; /* what it resolves to, relative to the root ("" = the root) */
} HostLink;

typedef struct HostWalk {
        const char *root_real;
        HostLink *links;
        size_t n_links, n_entries;
} HostWalk;

static void host_walk(HostWalk *w, const char *abs, const char *rel, unsigned depth) {
        if (depth > HOST_WALK_MAX_DEPTH)
                return;
        DIR *d = opendir(abs);
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d)) && w->n_entries < HOST_WALK_MAX_ENTRIES) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                w->n_entries++;
                _cleanup_free_ char *a = xasprintf("%s/%s", abs, de->d_name);
                _cleanup_free_ char *r = *rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
                struct stat st;
                if (lstat(a, &st) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        if (!streq(de->d_name, ".git"))
                                host_walk(w, a, r, depth + 1);
                        continue;
                }
                if (!S_ISLNK(st.st_mode))
                        continue;
                char real[PATH_MAX];
                if (!realpath(a, real))
                        continue;
                size_t rl = strlen(w->root_real);
                const char *inside = NULL;
                if (streq(real, w->root_real))
                        inside = "";
                else if (strncmp(real, w->root_real, rl) == 0 && real[rl] == '/')
                        inside = real + rl + 1;
                if (!inside)
                        continue;
                w->links = xreallocarray(w->links, w->n_links + 1, sizeof *w->links);
                w->links[w->n_links++] = (HostLink){ .name = TAKE_PTR(r), .target = xstrdup(inside) };
        }
        closedir(d);
}

int patch_flags_host_aliases(const char *root, char *const *paths, json_t *flags) {
        char root_real[PATH_MAX];
        if (!realpath(root, root_real))
                return -errno;
        HostWalk w = { .root_real = root_real };
        host_walk(&w, root_real, "", 0);

        STRV_FOREACH(p, paths) {
                /* A path below one of its own components that is a host symlink. */
                _cleanup_free_ char *copy = xstrdup(*p);
                for (char *slash = strchr(copy, '/'); slash; slash = strchr(slash + 1, '/')) {
                        *slash = 0;
                        _cleanup_free_ char *abs = xasprintf("%s/%s", root_real, copy);
                        struct stat st;
                        bool link = lstat(abs, &st) == 0 && S_ISLNK(st.st_mode);
                        if (link) {
                                _cleanup_free_ char *vis = string_make_visible(copy);
                                _cleanup_free_ char *why = xasprintf(
                                        "passes through '%s', a symbolic link on the host", vis);
                                patch_flags_add(flags, *p, "symlinked", why);
                        }
                        *slash = '/';
                        if (link)
                                break;
                }
                /* A path a host link makes reachable under another name. */
                for (size_t i = 0; i < w.n_links; i++) {
                        const HostLink *l = &w.links[i];
                        const char *rest = NULL;
                        if (!*l->target)
                                rest = *p;
                        else if (streq(*p, l->target))
                                rest = "";
                        else if (startswith(*p, l->target) && (*p)[strlen(l->target)] == '/')
                                rest = *p + strlen(l->target) + 1;
                        if (!rest)
                                continue;
                        _cleanup_free_ char *alias = *rest ? xasprintf("%s/%s", l->name, rest)
                                                           : xstrdup(l->name);
                        const PatchFlagRule *rule = patch_flag_match(alias);
                        if (!rule)
                                continue;
                        _cleanup_free_ char *vis = string_make_visible(alias);
                        _cleanup_free_ char *why = xasprintf(
                                "reachable as '%s' through a symbolic link on the host: %s", vis, rule->why);
                        patch_flags_add(flags, *p, "symlinked", why);
                }
        }
        for (size_t i = 0; i < w.n_links; i++) {
                free(w.links[i].name);
                free(w.links[i].target);
        }
        free(w.links);
        return 0;
}
