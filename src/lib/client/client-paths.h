/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where Nucleus keeps its files on this machine: the CLI config, the secrets, the node config,
 * state, images, logs and the pid file. One function per location so that every program (CLI,
 * MCP server, node helpers) agrees. Inputs are environment variables of the invoking user
 * (read with secure_getenv); nothing here touches the filesystem.
 *
 * Resolution (first match wins; documented in docs/cli.md "Files"):
 *   config dir:  $NUCLEUS_CONFIG_DIR, $XDG_CONFIG_HOME/nucleus, /etc/nucleus (uid 0),
 *                $HOME/.config/nucleus
 *   config file: client_paths_set_config_file() (nucleus -c / $NUCLEUS_CONFIG),
 *                <config dir>/config.toml
 *   secrets dir: <config dir>/secrets                       (0700; files 0600)
 *   node config: <config dir>/node.toml
 *   state dir:   $NUCLEUS_STATE_DIR, $XDG_STATE_HOME/nucleus, /var/lib/nucleus (uid 0),
 *                $HOME/.local/state/nucleus
 *   images dir:  $NUCLEUS_IMAGES_DIR, <state dir>/images
 *   run dir:     <state dir>/run (pid file nucleus-node.pid); log dir <state dir>/log
 */
#pragma once

/* Override the CLI config file (from `nucleus -c PATH` or $NUCLEUS_CONFIG). Not copied. */
void client_paths_set_config_file(const char *path);
/* True when the config file was set explicitly (then a missing file is an error). */
int client_paths_config_file_is_explicit(void);

/* Each returns 0 and a malloc'd absolute path, or -ENOENT when neither the variable nor
 * $HOME gives a base, or -EINVAL when a variable holds a relative path. */
int client_config_dir(char **ret);
int client_config_file(char **ret);
int client_secrets_dir(char **ret);
int client_node_config_file(char **ret);
int client_state_dir(char **ret);
int client_images_dir(char **ret);
int client_run_dir(char **ret);
int client_log_dir(char **ret);
int client_pid_file(char **ret);
int client_node_log_file(char **ret);
/* <secrets dir>/<name>, name being one of node.key, approver.key, approver.pub, audit.key,
 * audit.pub. */
int client_secret_file(const char *name, char **ret);

/* Where a value came from, for `nucleus config`. Static strings such as "$XDG_CONFIG_HOME",
 * "default (root)", "default ($HOME)". */
const char *client_config_dir_source(void);
const char *client_state_dir_source(void);
