/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host side of a run's workspace: packing the working directory into a tar for
 * PUT /v1/pods/{id}/workspace (git-tracked and untracked-but-not-ignored files when it is a git
 * work tree, else every regular file and symlink; never the secret store or config dir), with
 * the current branch's history built by construction (a fresh repository fetched from the
 * user's, shallow unless asked otherwise, never the user's .git itself), streaming it to the
 * node with progress, and reading the node's patch answer. The directory is the user's own;
 * the patch answer comes from the node and is untrusted (sizes capped, paths made visible
 * before printing).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "client.h"

#define AGENT_WORKSPACE_MAX_FILES 1000000U
#define AGENT_HISTORY_ALL UINT32_MAX /* AgentTarOptions.history: every commit of the branch */
#define AGENT_HISTORY_DEFAULT 1U     /* the commit checked out, no ancestors (secrets in history) */
#define AGENT_UPLOAD_PROGRESS_MIN ((uint64_t) 4 * 1024 * 1024) /* smaller uploads are quiet */

typedef struct AgentTarOptions {
        uint32_t history; /* commits of the current branch to send: 0 none, AGENT_HISTORY_ALL all */
} AgentTarOptions;

typedef struct AgentTar {
        int fd;                 /* unlinked temp file holding the tar stream, or -EBADF */
        uint64_t size;          /* bytes in fd */
        char sha256[65];        /* hex SHA-256 of the stream (the request is signed with it) */
        size_t n_files;         /* regular files and symlinks packed */
        size_t n_excluded;      /* paths skipped because they are in the secret store/config dir */
        bool from_git;          /* file list from `git ls-files` */
        uint64_t n_commits;     /* commits of history sent (0: none) */
        bool history_shallow;   /* older commits were left out */
        char *branch;           /* branch the history is of (NULL: detached or none) */
        bool history_subdir;    /* none sent: the directory is a subdirectory of its work tree */
        char *largest;          /* the largest regular file packed (NULL: none) */
        uint64_t largest_bytes; /* its size in bytes */
} AgentTar;

void agent_tar_done(AgentTar *t);

/*
 * agent_workspace_tar:
 *   Packs dir (absolute, canonical) into an unlinked temp file ($TMPDIR, else /tmp). Paths under
 *   any of exclude (absolute, canonical; NULL-terminated, may be NULL) are skipped and counted;
 *   files are opened with O_NOFOLLOW relative to dir, symlinks are stored as symlinks (never
 *   followed), other file types are skipped. In a git work tree with o->history > 0, a .git
 *   directory built by construction is added: a pack of the current branch's last o->history
 *   commits fetched into a fresh repository (shallow beyond them), HEAD, the branch ref, an
 *   index of the checked-out commit and a config holding only user.name/user.email; the
 *   working tree files on top are the uploaded state. Nothing of the user's .git (config,
 *   hooks, other branches, remotes) is copied. o may be NULL (defaults).
 *   Returns: 0, -E2BIG over AGENT_WORKSPACE_MAX_FILES, other <0 with *reterr.
 */
int agent_workspace_tar(
        const char *dir, char *const *exclude, const AgentTarOptions *o, AgentTar *ret, char **reterr);

/*
 * agent_workspace_upload:
 *   PUT /v1/pods/{pod}/workspace streaming t->fd, with progress on stderr (bytes, files, rate)
 *   when progress and the tar is over AGENT_UPLOAD_PROGRESS_MIN. Returns as
 *   client_request_upload.
 */
int agent_workspace_upload(
        NucleusClient *c,
        const char *pod,
        const AgentTar *t,
        bool progress,
        ClientResponse *ret,
        ClientError *reterr);

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
