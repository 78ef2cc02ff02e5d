/* SPDX-License-Identifier: Apache-2.0 */
/* Idempotent file writes and helper lookup for setup (see cli-files.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-files.h"
#include "cli-node.h"
#include "client-paths.h"
#include "fd-util.h"
#include "nucleus-config.h"
#include "string-util.h"

#ifdef NUCLEUS_HAVE_SPEC_DEP
#        include "config.h"
#endif

/* mkdir with exactly mode (not narrowed by the umask) when it creates the directory. */
static int mkdir_exact(const char *p, mode_t mode) {
        if (mkdir(p, mode) < 0)
                return errno == EEXIST ? 0 : -errno;
        if (chmod(p, mode) < 0)
                return -errno;
        return 0;
}

int cli_mkdir_parents_p(const char *path, mode_t parent_mode, mode_t mode) {
        _cleanup_free_ char *p = xstrdup(path);
        int r;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                r = mkdir_exact(p, parent_mode);
                if (r < 0)
                        return r;
                *s = '/';
        }
        return mkdir_exact(p, mode);
}

int cli_mkdir_p(const char *path, mode_t mode) {
        return cli_mkdir_parents_p(path, mode, mode);
}

int cli_write_if_changed(const char *path, const char *content, mode_t mode, bool force) {
        _cleanup_free_ char *old = NULL, *dir = NULL;
        size_t n = 0;
        int r;

        r = read_full_file_at(AT_FDCWD, path, 1024 * 1024, &old, &n);
        if (r >= 0 && n == strlen(content) && memcmp(old, content, n) == 0) {
                /* Same content: still make sure the mode is what we want. */
                struct stat st;
                if (stat(path, &st) == 0 && (st.st_mode & 07777) != mode && chmod(path, mode) < 0)
                        return -errno;
                return WRITE_UNCHANGED;
        }
        if (r >= 0 && !force)
                return WRITE_KEPT;
        if (r < 0 && r != -ENOENT)
                return r;

        dir = xstrdup(path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = 0;
                r = cli_mkdir_p(dir, 0755);
                if (r < 0)
                        return r;
        }
        r = write_file_atomic_at(AT_FDCWD, path, content, strlen(content), mode);
        if (r < 0)
                return r;
        return old ? WRITE_UPDATED : WRITE_CREATED;
}

/* The [section] name of a header line ("[node]  # x" -> "node"), or NULL. */
static char *toml_header(const char *line, size_t n) {
        size_t i = 0;
        while (i < n && (line[i] == ' ' || line[i] == '\t'))
                i++;
        if (i >= n || line[i] != '[' || (i + 1 < n && line[i + 1] == '['))
                return NULL;
        const char *close = memchr(line + i, ']', n - i);
        if (!close)
                return NULL;
        const char *b = line + i + 1, *e = close;
        while (b < e && (*b == ' ' || *b == '\t'))
                b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
        return xstrndup(b, (size_t) (e - b));
}

/* Does this line assign key ("key = ...", "key=...")? */
static bool toml_assigns(const char *line, size_t n, const char *key) {
        size_t i = 0, k = strlen(key);
        while (i < n && (line[i] == ' ' || line[i] == '\t'))
                i++;
        if (n - i < k || memcmp(line + i, key, k) != 0)
                return false;
        i += k;
        while (i < n && (line[i] == ' ' || line[i] == '\t'))
                i++;
        return i < n && line[i] == '=';
}

char *cli_toml_set_key(const char *text, const char *section, const char *key, const char *value) {
        _cleanup_free_ char *out = xstrdup("");
        bool done = false, in_section = false;
        size_t last_in_section = 0; /* offset in out after the section's last non-blank line */
        const char *p = text;

#define APPEND(fmt, ...)                                          \
        do {                                                      \
                char *_n = xasprintf("%s" fmt, out, __VA_ARGS__); \
                free(out);                                        \
                out = _n;                                         \
        } while (0)
        while (*p) {
                size_t n = strcspn(p, "\n");
                _cleanup_free_ char *hdr = toml_header(p, n);
                if (hdr) {
                        in_section = streq(hdr, section);
                        if (in_section)
                                last_in_section = strlen(out) + n + 1;
                }
                if (!hdr && in_section && !done && toml_assigns(p, n, key)) {
                        APPEND("%s = %s\n", key, value);
                        done = true;
                } else
                        APPEND("%.*s\n", (int) n, p);
                if (!hdr && in_section && n > 0 && strspn(p, " \t") < n)
                        last_in_section = strlen(out);
                p += n;
                if (*p == '\n')
                        p++;
        }
        if (!done && last_in_section > 0) {
                _cleanup_free_ char *head = xstrndup(out, last_in_section);
                char *n = xasprintf("%s%s = %s\n%s", head, key, value, out + last_in_section);
                free(out);
                out = n;
        } else if (!done)
                APPEND("\n[%s]\n%s = %s\n", section, key, value);
#undef APPEND
        return TAKE_PTR(out);
}

char *cli_toml_quote(const char *s) {
        size_t n = strlen(s);
        char *out = xnew(char, n * 6 + 3), *o = out;
        *o++ = '"';
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p == '"' || *p == '\\') {
                        *o++ = '\\';
                        *o++ = (char) *p;
                } else if (*p < 0x20 || *p == 0x7f)
                        o += sprintf(o, "\\u%04x", *p);
                else
                        *o++ = (char) *p;
        }
        *o++ = '"';
        *o = 0;
        return out;
}

int cli_find_helper(const char *name, const char *env, const char *build_rel, char **ret) {
        const char *e = env ? secure_getenv(env) : NULL;
        char self[PATH_MAX];

        if (!isempty(e)) {
                if (access(e, X_OK) < 0)
                        return -ENOENT;
                *ret = xstrdup(e);
                return 0;
        }
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = 0;
                char *slash = strrchr(self, '/');
                if (slash) {
                        *slash = 0;
                        _cleanup_free_ char *a = xasprintf("%s/%s", self, name);
                        _cleanup_free_ char *b = build_rel ? xasprintf("%s/%s/%s", self, build_rel, name)
                                                           : NULL;
                        char real[PATH_MAX];
                        if (access(a, X_OK) == 0 && realpath(a, real)) {
                                *ret = xstrdup(real);
                                return 0;
                        }
                        if (b && access(b, X_OK) == 0 && realpath(b, real)) {
                                *ret = xstrdup(real);
                                return 0;
                        }
                }
        }
        _cleanup_free_ char *lib = xasprintf("%s/%s", NUCLEUS_LIBEXECDIR, name);
        if (access(lib, X_OK) == 0) {
                *ret = TAKE_PTR(lib);
                return 0;
        }
        return cli_find_program(name, ret);
}

char *cli_local_pod_dir(const char *pod) {
        _cleanup_free_ char *node_state = NULL;

        if (!pod || strchr(pod, '/') || pod[0] == '.' || isempty(pod))
                return NULL;
#ifdef NUCLEUS_HAVE_SPEC_DEP
        _cleanup_free_ char *node_config = NULL, *err = NULL;
        if (client_node_config_file(&node_config) >= 0 && access(node_config, R_OK) == 0) {
                NodeConfig *nc = NULL;
                if (node_config_load(node_config, true, &nc, &err) >= 0) {
                        if (!isempty(nc->state_dir))
                                node_state = xstrdup(nc->state_dir);
                        node_config_free(nc);
                }
        }
#endif
        if (!node_state) {
                _cleanup_free_ char *state = NULL;
                if (client_state_dir(&state) < 0)
                        return NULL;
                node_state = xasprintf("%s/node", state);
        }
        char *p = xasprintf("%s/pods/%s", node_state, pod);
        struct stat st;
        if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
                return mfree(p);
        return p;
}

int cli_workspace_excludes(const char *dir, char ***ret, char **reterr) {
        _cleanup_strv_free_ char **exclude = NULL;
        _cleanup_free_ char *cfg = NULL, *sec = NULL;
        char real[PATH_MAX];

        if (client_config_dir(&cfg) >= 0)
                strv_extend(&exclude, realpath(cfg, real) ? real : cfg);
        if (client_secrets_dir(&sec) >= 0)
                strv_extend(&exclude, realpath(sec, real) ? real : sec);
        STRV_FOREACH(e, exclude) {
                const char *rest = startswith(dir, *e);
                if (rest && (*rest == 0 || *rest == '/')) {
                        *reterr = xasprintf(
                                "refusing to upload %s: it is inside the Nucleus config/secret store %s",
                                dir,
                                *e);
                        return -EPERM;
                }
        }
        *ret = TAKE_PTR(exclude);
        return 0;
}
