/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host side of a run's workspace: packing the working directory into a tar for
 * PUT /v1/pods/{id}/workspace (git-tracked and untracked-but-not-ignored files when it is a git
 * work tree, else every regular file and symlink; never the secret store or config dir), and
 * reading the node's patch answer. The directory is the user's own; the patch answer comes
 * from the node and is untrusted (sizes capped, paths made visible before printing).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define AGENT_WORKSPACE_MAX_BYTES ((size_t) 256 * 1024 * 1024) /* tar size cap */
#define AGENT_WORKSPACE_MAX_FILES 100000U

typedef struct AgentTar {
        void *data; /* the tar stream */
        size_t size;
        size_t n_files;    /* regular files and symlinks packed */
        size_t n_excluded; /* paths skipped because they are in the secret store/config dir */
        bool from_git;     /* file list from `git ls-files -co --exclude-standard` */
} AgentTar;

void agent_tar_done(AgentTar *t);

/*
 * agent_workspace_tar:
 *   Packs dir (absolute, canonical). Paths under any of exclude (absolute, canonical; NULL-
 *   terminated, may be NULL) are skipped and counted; files are opened with O_NOFOLLOW
 *   relative to dir, symlinks are stored as symlinks (never followed), other file types are
 *   skipped.
 *   Returns: 0, -E2BIG over AGENT_WORKSPACE_MAX_BYTES / _FILES, other <0 with *reterr.
 */
int agent_workspace_tar(const char *dir, char *const *exclude, AgentTar *ret, char **reterr);

/* Absolute path of a program in /usr/local/bin, /usr/bin or /bin (not $PATH: the user's
 * environment does not choose what we run on their files), or NULL. Caller frees. */
char *agent_find_program(const char *name);

/* The node's patch answer. */
typedef struct AgentPatch {
        char *patch; /* binary git patch text ("" when nothing changed) */
        size_t size;
        char **flagged; /* changed paths a host would execute or parse (.git/hooks, CI, rc files) */
        char **changed; /* all changed paths, when the node lists them */
} AgentPatch;

void agent_patch_done(AgentPatch *p);

/* Accepts either a JSON document {"patch": "...", "flagged": [...], "changed": [...]} (flagged
 * entries may be strings or {"path": ...}) or a raw patch (then flagged is computed with
 * agent_path_is_flagged() from the "diff --git" lines). Returns 0 or -EBADMSG. */
int agent_patch_parse(const char *content_type, const char *body, size_t n, AgentPatch *ret, char **reterr);

/* Paths a host would later execute or parse without the user asking: anything under .git/,
 * shell rc files, CI configuration (.github/workflows, .gitlab-ci.yml, ...), editor and agent
 * configuration (.vscode/, .claude/, CLAUDE.md, .mcp.json, ...), .envrc. */
bool agent_path_is_flagged(const char *path);
