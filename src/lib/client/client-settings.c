/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Resolution of the node URL, actor and secret file (see client-settings.h). The config file
 * is parsed by src/lib/spec's loader; the secret file by src/lib/auth's secret store, which
 * refuses files other users could read.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "client-paths.h"
#include "client-settings.h"
#include "fd-util.h"
#include "string-util.h"
#ifdef NUCLEUS_HAVE_AUTH_DEP
#        include "secrets.h"
#endif

void client_settings_done(ClientSettings *s) {
        if (!s)
                return;
        free(s->config_file);
        free(s->url);
        free(s->actor);
        free(s->key_file);
        free(s->mode);
        free(s->vm_name);
        *s = (ClientSettings){};
}

static void
        pick(char **dst,
             const char **dst_source,
             const char *env,
             const char *cfg,
             const char *cfg_source,
             const char *def) {
        const char *e = env ? secure_getenv(env) : NULL;
        if (!isempty(e)) {
                *dst = xstrdup(e);
                *dst_source = env;
        } else if (!isempty(cfg)) {
                *dst = xstrdup(cfg);
                *dst_source = cfg_source;
        } else {
                *dst = def ? xstrdup(def) : NULL;
                *dst_source = "default";
        }
}

int client_settings_load(ClientSettings *ret, char **reterr) {
        _cleanup_(client_settings_done) ClientSettings s = {};
        _cleanup_free_ char *default_key = NULL;
        const char *cfg_url = NULL, *cfg_actor = NULL, *cfg_key = NULL, *cfg_mode = NULL, *cfg_vm = NULL;
        struct stat st;
        int r;

        r = client_config_file(&s.config_file);
        if (r < 0) {
                if (reterr)
                        *reterr = xstrdup("Cannot locate the config directory: set HOME or XDG_CONFIG_HOME "
                                          "(or NUCLEUS_CONFIG_DIR) to an absolute path");
                return r;
        }
        if (stat(s.config_file, &st) < 0) {
                if (errno != ENOENT || client_paths_config_file_is_explicit()) {
                        r = -errno;
                        if (reterr)
                                *reterr = xasprintf(
                                        "Cannot read config file %s: %s", s.config_file, strerror(-r));
                        return r;
                }
        } else {
                /* FIXME: parse with src/lib/spec's config.toml loader once it lands; until
                 * then only the environment and defaults apply. */
                s.config_found = false;
        }

        pick(&s.url, &s.url_source, "NUCLEUS_NODE_URL", cfg_url, "config.toml [node] url", CLIENT_DEFAULT_URL);
        pick(&s.actor,
             &s.actor_source,
             "NUCLEUS_NODE_ACTOR",
             cfg_actor,
             "config.toml [node] actor",
             CLIENT_DEFAULT_ACTOR);
        r = client_secret_file("node.key", &default_key);
        if (r < 0) {
                if (reterr)
                        *reterr = xstrdup("Cannot locate the secrets directory: set HOME or "
                                          "XDG_CONFIG_HOME");
                return r;
        }
        pick(&s.key_file,
             &s.key_file_source,
             "NUCLEUS_NODE_KEY_FILE",
             cfg_key,
             "config.toml [auth] node_key_file",
             default_key);
        pick(&s.mode, &s.mode_source, NULL, cfg_mode, "config.toml [node] mode", "daemon");
        const char *unused;
        pick(&s.vm_name, &unused, NULL, cfg_vm, NULL, "nucleus");

        *ret = s;
        s = (ClientSettings){};
        return 0;
}

int client_load_key_file(const char *path, uint8_t key[static CLIENT_KEY_SIZE], char **reterr) {
#ifdef NUCLEUS_HAVE_AUTH_DEP
        return secret_load_file(path, key, CLIENT_KEY_SIZE, /* strict_perms= */ true, reterr);
#else
        /* Minimal reader until src/lib/auth's store is built in. */
        _cleanup_close_ int fd = -EBADF;
        _cleanup_(erase_and_freep) char *text = NULL;
        _cleanup_free_ void *raw = NULL;
        size_t n = 0, rawlen = 0;
        struct stat st;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                if (reterr)
                        *reterr = r == -ENOENT
                                ? xasprintf("%s does not exist; fix: run 'nucleus setup'", path)
                                : xasprintf("Cannot open %s: %s", path, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || (st.st_mode & 077) || st.st_uid != geteuid()) {
                if (reterr)
                        *reterr = xasprintf(
                                "%s must be a regular file owned by uid %u with mode 0600; "
                                "fix: chmod 600 %s",
                                path,
                                (unsigned) geteuid(),
                                path);
                return -EPERM;
        }
        r = read_full_fd(fd, 4096, &text, &n);
        if (r < 0)
                return r;
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
                text[--n] = 0;
        if (n != 2 * CLIENT_KEY_SIZE || unhexmem(text, n, &raw, &rawlen) < 0 || rawlen != CLIENT_KEY_SIZE) {
                if (reterr)
                        *reterr = xasprintf(
                                "%s must hold 64 hex characters; fix: nucleus secrets rotate", path);
                return -EINVAL;
        }
        memcpy(key, raw, CLIENT_KEY_SIZE);
        explicit_bzero_safe(raw, rawlen);
        return 0;
#endif
}

int client_open(const ClientSettings *s, NucleusClient **ret, char **reterr) {
        uint8_t key[CLIENT_KEY_SIZE];
        int r;

        r = client_load_key_file(s->key_file, key, reterr);
        if (r < 0)
                return r;
        r = client_new(s->url, key, s->actor, ret);
        explicit_bzero_safe(key, sizeof(key));
        if (r < 0 && reterr)
                *reterr = xasprintf(
                        "Invalid node URL '%s' (from %s) or actor '%s' (from %s)",
                        s->url,
                        s->url_source,
                        s->actor,
                        s->actor_source);
        return r;
}

int client_open_default(NucleusClient **ret, char **reterr) {
        _cleanup_(client_settings_done) ClientSettings s = {};
        int r = client_settings_load(&s, reterr);
        if (r < 0)
                return r;
        return client_open(&s, ret, reterr);
}
