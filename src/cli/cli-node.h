/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Managing the local nucleus-node for start/stop/doctor/setup: finding its binary, the
 * pid-file daemon (used when systemd is not PID 1), systemd, and the signed readiness check.
 * Inputs are our own settings and files; the pid file is verified against /proc before any
 * signal is sent, so a stale pid never kills an unrelated process.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "client-settings.h"
#include "client.h"
#include "time-util.h"

/* How the node runs here. */
typedef enum NodeMode {
        NODE_MODE_DAEMON,  /* pid-file daemon started by `nucleus start` */
        NODE_MODE_SYSTEMD, /* nucleus-node.service */
        NODE_MODE_LIMA,    /* inside the Lima VM (macOS) */
        _NODE_MODE_MAX,
        _NODE_MODE_INVALID = -EINVAL,
} NodeMode;

const char *node_mode_to_string(NodeMode m);
NodeMode node_mode_from_string(const char *s);

/* How the node runs here: Lima on macOS (or the test platform override), systemd when it is
 * PID 1 and setup installed nucleus-node.service, else the pid-file daemon. */
NodeMode cli_node_mode(void);
#define CLI_SYSTEMD_UNIT_PATH "/etc/systemd/system/nucleus-node.service"

/* True when systemd is PID 1 (/run/systemd/system exists). */
bool cli_have_systemd(void);

/* Locate nucleus-node: $NUCLEUS_NODE_BINARY, next to this executable, the build tree
 * (../node/), the libexec dir, then $PATH. Returns 0 and a path, or -ENOENT. */
int cli_find_node_binary(char **ret);

/* Generic helper lookup on $PATH (absolute result). Returns 0 or -ENOENT. */
int cli_find_program(const char *name, char **ret);

/* Three-state: 1 and *ret_pid when the pid file names a live nucleus-node, 0 when there is
 * no pid file or it is stale (then it is removed), negative errno on other failures. */
int cli_daemon_pid(pid_t *ret_pid);

/* Start nucleus-node --config NODE_CONFIG detached (setsid, stdin /dev/null, stdout+stderr
 * appended to the node log, 0600), record its pid. Returns 0 and the pid, -EALREADY when one
 * runs, or a negative errno. */
int cli_daemon_start(const char *node_config, pid_t *ret_pid);

/* SIGTERM, wait up to timeout, then (force) SIGKILL. Returns 1 stopped, 0 was not running. */
int cli_daemon_stop(bool force, usec_t timeout);

/* Has the process exited? (for start's wait loop). */
bool cli_pid_alive(pid_t pid);

/*
 * cli_node_check:
 *   A signed GET /v1/health followed by a signed GET /v1/pods (health may be public; the
 *   second call proves our key is the node's). Returns 0 when both answer 2xx; otherwise a
 *   negative errno and *reterr filled (status 0 = transport failure, 401 = wrong key).
 */
int cli_node_check(NucleusClient *c, ClientError *reterr);

/* Last n lines of the node log (for error messages); NULL when unavailable. */
char *cli_node_log_tail(size_t n);

/* Run a helper (argv, clean env with PATH only), capture stdout up to max bytes (optional).
 * Returns its exit status (>= 0) or a negative errno. */
int cli_run_capture(char *const argv[], char **ret_stdout, size_t max);
/* Same with an explicit environment (NULL: the clean default). */
int cli_run_capture_env(char *const argv[], char *const envp[], char **ret_stdout, size_t max);
