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
#ifdef NUCLEUS_HAVE_SPEC_DEP
#        include "config.h"
DEFINE_TRIVIAL_CLEANUP_FUNC(CliConfig *, cli_config_free);
#endif
#include "json-util.h"
#include "sign.h"

void client_settings_done(ClientSettings *s) {
        if (!s)
                return;
        free(s->config_file);
        free(s->url);
        free(s->actor);
        free(s->key_file);
        free(s->secrets_dir);
        free(s->vm_name);
        json_decref(s->config_json);
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
        _cleanup_free_ char *default_secrets = NULL;
        const char *cfg_url = NULL, *cfg_actor = NULL, *cfg_secrets = NULL, *cfg_vm = NULL;
        int r;

        r = client_config_file(&s.config_file);
        if (r >= 0)
                r = client_secrets_dir(&default_secrets);
        if (r < 0) {
                if (reterr)
                        *reterr = xstrdup("Cannot locate the config directory: set HOME or XDG_CONFIG_HOME "
                                          "(or NUCLEUS_CONFIG_DIR) to an absolute path");
                return r;
        }
#ifdef NUCLEUS_HAVE_SPEC_DEP
        _cleanup_(cli_config_freep) CliConfig *cfg = NULL;
        r = cli_config_load(s.config_file, client_paths_config_file_is_explicit(), &cfg, reterr);
        if (r < 0)
                return r;
        s.config_found = cfg->path != NULL;
        if (s.config_found) {
                cfg_url = cfg->origins[CLI_NODE_URL].source == CONFIG_SOURCE_FILE ? cfg->node.url : NULL;
                cfg_actor = cfg->origins[CLI_NODE_ACTOR].source == CONFIG_SOURCE_FILE ? cfg->node.actor : NULL;
                cfg_vm = cfg->vm.name;
                cfg_secrets = cfg->auth.secrets_dir;
        }
        s.config_json = cli_config_to_json(cfg, true);
#else
        /* Built without src/lib/spec: only the environment and defaults apply. */
        if (client_paths_config_file_is_explicit() && access(s.config_file, F_OK) < 0) {
                r = -errno;
                if (reterr)
                        *reterr = xasprintf("Cannot read config file %s: %s", s.config_file, strerror(-r));
                return r;
        }
#endif
        pick(&s.url, &s.url_source, "NUCLEUS_NODE_URL", cfg_url, "config.toml [node] url", CLIENT_DEFAULT_URL);
        pick(&s.actor,
             &s.actor_source,
             "NUCLEUS_NODE_ACTOR",
             cfg_actor,
             "config.toml [node] actor",
             CLIENT_DEFAULT_ACTOR);
        pick(&s.secrets_dir,
             &s.secrets_dir_source,
             NULL,
             cfg_secrets,
             "config.toml [auth] secrets_dir",
             default_secrets);
        _cleanup_free_ char *key = xasprintf("%s/node.key", s.secrets_dir);
        pick(&s.key_file, &s.key_file_source, "NUCLEUS_NODE_KEY_FILE", NULL, NULL, key);
        if (streq(s.key_file_source, "default") && cfg_secrets)
                s.key_file_source = "config.toml [auth] secrets_dir";
        const char *unused;
        pick(&s.vm_name, &unused, NULL, cfg_vm, NULL, "nucleus");

        *ret = s;
        s = (ClientSettings){};
        return 0;
}

int client_load_key_file(const char *path, uint8_t key[static CLIENT_KEY_SIZE], char **reterr) {
#ifdef NUCLEUS_HAVE_AUTH_DEP
        int k = secret_load_file(path, key, CLIENT_KEY_SIZE, /* strict_perms= */ true, reterr);
        if (k == -ENOENT && reterr) {
                /* The usual cause is a machine (or environment) that was never set up. */
                free(*reterr);
                *reterr = xasprintf(
                        "the node key %s does not exist; fix: run 'nucleus setup' (or point "
                        "NUCLEUS_NODE_KEY_FILE / [auth] secrets_dir at the node's key)",
                        path);
        }
        return k;
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
        if (r < 0 && reterr) {
                /* Name the value that is wrong (client_new checks the actor after the URL). */
                bool bad_actor = s->actor && (string_has_cc(s->actor, NULL) || strlen(s->actor) > 256);
                _cleanup_free_ char *url = string_make_visible(s->url ?: ""),
                                    *actor = string_make_visible(s->actor ?: "");
                if (!bad_actor)
                        *reterr = xasprintf(
                                "Invalid node URL '%s' (from %s); fix: use http://HOST:PORT, e.g. "
                                "http://127.0.0.1:8080",
                                url,
                                s->url_source);
                else
                        *reterr = xasprintf(
                                "Invalid actor '%s' (from %s); fix: at most 256 characters, no "
                                "control characters",
                                actor,
                                s->actor_source);
        }
        return r;
}

int client_load_credential_file(const char *path, ClientCredential *ret, char **reterr) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_(erase_and_freep) char *text = NULL;
        _cleanup_json_ json_t *j = NULL;
        _cleanup_free_ char *perr = NULL;
        _cleanup_free_ void *raw = NULL;
        ClientCredential c = {};
        size_t n = 0, rawlen = 0;
        struct stat st;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                if (reterr)
                        *reterr = xasprintf("cannot open the credential file %s: %s", path, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0)
                return -errno;
        /* A regular file of ours that nobody else can read; a pipe (an inherited descriptor)
         * is private to the processes that hold it. */
        if (!(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode)) || (S_ISREG(st.st_mode) && (st.st_mode & 077)) ||
            st.st_uid != geteuid()) {
                if (reterr)
                        *reterr = xasprintf(
                                "the credential file %s must be a regular file owned by uid %u with mode "
                                "0600; fix: chmod 600 %s",
                                path,
                                (unsigned) geteuid(),
                                path);
                return -EPERM;
        }
        r = read_full_fd(fd, 4096, &text, &n);
        if (r < 0) {
                if (reterr)
                        *reterr = xasprintf("cannot read the credential file %s: %s", path, strerror(-r));
                return r;
        }
        if (json_parse_strict(text, n, 4096, &j, &perr) < 0 || !json_is_object(j)) {
                if (reterr)
                        *reterr = xasprintf(
                                "the credential file %s is not a JSON object: %s",
                                path,
                                perr ?: "not an object");
                return -EINVAL;
        }
        const char *kid = json_string_value(json_object_get(j, "key_id")),
                   *sec = json_string_value(json_object_get(j, "secret")),
                   *pod = json_string_value(json_object_get(j, "pod")),
                   *scope = json_string_value(json_object_get(j, "scope"));
        const char *bad = !kid || strlen(kid) >= sizeof c.key_id || !auth_key_id_is_valid(kid) ? "key_id "
                                                                                                 "(8..80 "
                                                                                                 "characters"
                                                                                                 " of a-z, "
                                                                                                 "0-9, '.', "
                                                                                                 "'-')"
                : !sec || strlen(sec) != 2 * CLIENT_KEY_SIZE ||
                        unhexmem(sec, strlen(sec), &raw, &rawlen) < 0 || rawlen != CLIENT_KEY_SIZE
                ? "secret (64 hex characters)"
                : !pod || isempty(pod) || strlen(pod) >= sizeof c.pod ||
                        strspn(pod, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(pod)
                ? "pod (a pod id)"
                : !scope || !(streq(scope, "pod") || streq(scope, "run")) ? "scope (\"pod\" or \"run\")"
                                                                          : NULL;
        if (bad) {
                if (reterr)
                        *reterr = xasprintf(
                                "the credential file %s: missing or malformed member %s", path, bad);
                if (raw)
                        explicit_bzero_safe(raw, rawlen);
                return -EINVAL;
        }
        strcpy(c.key_id, kid);
        strcpy(c.pod, pod);
        strcpy(c.scope, scope);
        memcpy(c.secret, raw, CLIENT_KEY_SIZE);
        explicit_bzero_safe(raw, rawlen);
        *ret = c;
        explicit_bzero_safe(&c, sizeof c);
        return 0;
}

int client_open_scoped(const ClientSettings *s, const ClientCredential *cred, NucleusClient **ret, char **reterr) {
        int r = client_new_scoped(s->url, cred->secret, cred->key_id, s->actor, ret);
        if (r < 0 && reterr) {
                _cleanup_free_ char *url = string_make_visible(s->url ?: "");
                *reterr = xasprintf(
                        "Invalid node URL '%s' (from %s) or actor; fix: use http://HOST:PORT",
                        url,
                        s->url_source);
        }
        return r;
}

int client_open_default(NucleusClient **ret, char **reterr) {
        _cleanup_(client_settings_done) ClientSettings s = {};
        int r = client_settings_load(&s, reterr);
        if (r < 0)
                return r;
        return client_open(&s, ret, reterr);
}
