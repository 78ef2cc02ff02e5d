/* SPDX-License-Identifier: Apache-2.0 */
/* File helpers for setup: idempotent writes, directory creation, generated config texts. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

typedef enum WriteResult {
        WRITE_UNCHANGED, /* file already had this content */
        WRITE_CREATED,
        WRITE_UPDATED, /* content differed and force was given */
        WRITE_KEPT,    /* content differs, kept because force was not given */
} WriteResult;

/* Write content to path atomically with mode (exact from creation) unless it already holds
 * exactly that. Returns a WriteResult (>= 0) or a negative errno. */
int cli_write_if_changed(const char *path, const char *content, mode_t mode, bool force);

/* mkdir -p with mode for every created component. Returns 0 or -errno. */
int cli_mkdir_p(const char *path, mode_t mode);

/* Like cli_mkdir_p(), but missing ancestors get parent_mode and only the last component gets
 * mode (e.g. 0755 ancestors for a private 0700 leaf). Existing directories are not touched. */
int cli_mkdir_parents_p(const char *path, mode_t parent_mode, mode_t mode);

/* The directory the node of this machine keeps for pod (<[node] state_dir of node.toml, else
 * <state dir>/node>/pods/<pod>), where its audit.jsonl, console.log and node.log stay after the
 * node forgot the pod (a restart). NULL when it does not exist or pod is not a plain name. */
char *cli_local_pod_dir(const char *pod);

/* Set one key of a TOML file's text in place: the line "key = ..." of [section] is replaced
 * by "key = value" (value already TOML: a quoted string or a number); a missing key is added
 * at the end of its section, a missing section at the end of the text. Every other line
 * (comments, the user's edits) stays as it was. Returns the new text (caller frees). */
char *cli_toml_set_key(const char *text, const char *section, const char *key, const char *value);

/* Quote s as a TOML basic string (escapes ", \ and control characters). Caller frees. */
char *cli_toml_quote(const char *s);

/* What a workspace upload (nucleus run, nucleus upload) leaves out: the config dir and the
 * secret store, canonical, into *ret. Refuses (-EPERM, *reterr says why) a dir that lies inside
 * one of them. Called before any pod exists. */
int cli_workspace_excludes(const char *dir, char ***ret, char **reterr);

/* Find a helper program built with us: $env, next to nucleus, in the build tree (build_rel
 * relative to our directory), the libexec dir, then $PATH. Returns 0 or -ENOENT. */
int cli_find_helper(const char *name, const char *env, const char *build_rel, char **ret);
