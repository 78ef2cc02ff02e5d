/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Locations of Nucleus files (see client-paths.h for the resolution order). Environment values
 * are the caller's own and trusted as much as the caller; relative paths are refused so a
 * stray variable cannot point secrets at the current directory.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "alloc-util.h"
#include "client-paths.h"
#include "string-util.h"

static const char *config_file_override = NULL;

void client_paths_set_config_file(const char *path) {
        config_file_override = path;
}

int client_paths_config_file_is_explicit(void) {
        return config_file_override != NULL;
}

/* Three-state: 1 and *ret set when the variable is set and absolute, 0 when unset or empty,
 * -EINVAL when set to a relative path. */
static int env_abs(const char *name, const char **ret) {
        const char *e = secure_getenv(name);
        if (isempty(e))
                return 0;
        if (e[0] != '/')
                return -EINVAL;
        *ret = e;
        return 1;
}

static int base_dir(
        const char *own_var,
        const char *xdg_var,
        const char *root_default,
        const char *home_suffix,
        char **ret,
        const char **ret_source) {
        const char *e;
        int r;

        r = env_abs(own_var, &e);
        if (r < 0)
                return r;
        if (r > 0) {
                *ret = xstrdup(e);
                *ret_source = own_var;
                return 0;
        }
        r = env_abs(xdg_var, &e);
        if (r < 0)
                return r;
        if (r > 0) {
                *ret = xasprintf("%s/nucleus", e);
                *ret_source = xdg_var;
                return 0;
        }
        if (geteuid() == 0) {
                *ret = xstrdup(root_default);
                *ret_source = "default for root";
                return 0;
        }
        r = env_abs("HOME", &e);
        if (r <= 0)
                return r < 0 ? r : -ENOENT;
        *ret = xasprintf("%s/%s", e, home_suffix);
        *ret_source = "default ($HOME)";
        return 0;
}

static const char *config_dir_source = NULL, *state_dir_source = NULL;

int client_config_dir(char **ret) {
        return base_dir(
                "NUCLEUS_CONFIG_DIR", "XDG_CONFIG_HOME", "/etc/nucleus", ".config/nucleus", ret, &config_dir_source);
}

int client_state_dir(char **ret) {
        return base_dir(
                "NUCLEUS_STATE_DIR",
                "XDG_STATE_HOME",
                "/var/lib/nucleus",
                ".local/state/nucleus",
                ret,
                &state_dir_source);
}

const char *client_config_dir_source(void) {
        _cleanup_free_ char *d = NULL;
        if (client_config_dir(&d) < 0)
                return "unset";
        return config_dir_source;
}

const char *client_state_dir_source(void) {
        _cleanup_free_ char *d = NULL;
        if (client_state_dir(&d) < 0)
                return "unset";
        return state_dir_source;
}

static int under(int (*base)(char **), const char *name, char **ret) {
        _cleanup_free_ char *d = NULL;
        int r = base(&d);
        if (r < 0)
                return r;
        *ret = xasprintf("%s/%s", d, name);
        return 0;
}

int client_config_file(char **ret) {
        if (config_file_override) {
                if (config_file_override[0] != '/') {
                        _cleanup_free_ char *cwd = getcwd(NULL, 0);
                        if (!cwd)
                                return -errno;
                        *ret = xasprintf("%s/%s", cwd, config_file_override);
                } else
                        *ret = xstrdup(config_file_override);
                return 0;
        }
        return under(client_config_dir, "config.toml", ret);
}

int client_secrets_dir(char **ret) {
        return under(client_config_dir, "secrets", ret);
}

int client_node_config_file(char **ret) {
        return under(client_config_dir, "node.toml", ret);
}

int client_images_dir(char **ret) {
        const char *e;
        int r = env_abs("NUCLEUS_IMAGES_DIR", &e);
        if (r < 0)
                return r;
        if (r > 0) {
                *ret = xstrdup(e);
                return 0;
        }
        return under(client_state_dir, "images", ret);
}

int client_run_dir(char **ret) {
        return under(client_state_dir, "run", ret);
}

int client_log_dir(char **ret) {
        return under(client_state_dir, "log", ret);
}

int client_pid_file(char **ret) {
        return under(client_run_dir, "nucleus-node.pid", ret);
}

int client_node_log_file(char **ret) {
        return under(client_log_dir, "nucleus-node.log", ret);
}

int client_secret_file(const char *name, char **ret) {
        if (isempty(name) || strchr(name, '/') || name[0] == '.')
                return -EINVAL;
        _cleanup_free_ char *d = NULL;
        int r = client_secrets_dir(&d);
        if (r < 0)
                return r;
        *ret = xasprintf("%s/%s", d, name);
        return 0;
}
