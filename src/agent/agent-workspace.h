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
        char **flagged; /* paths with at least one flag (sorted, unique) */
        json_t *flags;  /* [{"path", "reason", "why"}]: what a host would run, load or obey */
        char **changed; /* every path the patch names */
} AgentPatch;

void agent_patch_done(AgentPatch *p);

/* Accepts either a JSON document {"patch": "...", "flagged": [...], "changed": [...]} or a raw
 * patch. The flags are computed here from the patch itself (patch_flags_compute: the CLI does
 * not rely on the node's list), then the node's list is added (it may add, never remove). A
 * patch that cannot be parsed is one flag ("unparsed"), never "no flags". Returns 0 or
 * -EBADMSG. */
int agent_patch_parse(const char *content_type, const char *body, size_t n, AgentPatch *ret, char **reterr);

/* Add the flags that only the host's tree shows (symlinks already on the host that make a
 * patched path reachable under a flagged name: patch_flags_host_aliases). */
void agent_patch_flag_host(AgentPatch *p, const char *dir);

/* Leave the patch's new binary files out (patch_drop_new_binaries), recompute its flags and
 * keep the node's other ones. *ret_dropped: the names left out (strv, may be NULL). */
void agent_patch_drop_new_binaries(AgentPatch *p, char ***ret_dropped);

/* One line per flag on stderr: prefix, path, reason and why, all escaped (escape.h). */
void agent_patch_print_flags(const AgentPatch *p, const char *prefix);
