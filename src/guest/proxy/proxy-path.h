/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Workspace path resolution. Requested paths are untrusted: they are normalized lexically
 * (only to judge them and to reject '..' above the root), then every open goes through
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) on the workspace root fd, so the kernel
 * decides containment. The policy is then checked on the path the fd really has.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "message.h"
#include "proxy.h"

#define PROXY_PATH_MAX 4096U

/* Turn a requested path into a normalized workspace-relative path ("." for the root).
 * Absolute paths are accepted only under the workspace root. Returns 0, or <0 with
 * *reterr_kind (sandbox_escape / invalid_request) and a malloc'd *reterr message. */
int proxy_path_normalize(Proxy *p, const char *path, char **ret_rel, ErrorKind *reterr_kind, char **reterr_msg);

/* openat2 beneath the workspace root. resolve adds to RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS.
 * Returns the fd or -errno (-EXDEV / -ELOOP mean an escape or a refused link). */
int proxy_openat2(Proxy *p, int dirfd, const char *rel, int flags, mode_t mode, uint64_t resolve);

/* How proxy_mkdir_beneath() treats symbolic links among the components that already exist. */
typedef enum ProxyMkdirFlags {
        /* Existing components may be symlinks whose target lies beneath the root. */
        PROXY_MKDIR_FOLLOW_BENEATH = 1 << 0,
        /* New directories are given to the agent's uid and gid (else they stay root's). */
        PROXY_MKDIR_AGENT_OWNED = 1 << 1,
} ProxyMkdirFlags;

/* mkdir -p of rel beneath a root: rootfd, or the workspace root when rootfd < 0. Returns an
 * O_PATH fd of the directory rel ("." is the root itself), or -errno: -ELOOP (a symlink where
 * none may be followed), -EXDEV (a symlink leading out of the root), -ENOTDIR (a component is
 * not a directory). Existing components are resolved as one path from the root, so "beneath"
 * always means beneath the root, never beneath the component that holds a link; a missing
 * component is created with mode and opened at once with RESOLVE_NO_SYMLINKS, so a link
 * swapped in between is refused.
 *
 * Whether existing symlinks are followed is the one difference between the callers, and it
 * is deliberate:
 *  - write and edit (proxy-files.c) pass PROXY_MKDIR_FOLLOW_BENEATH. The workspace is the
 *    agent's project as it sees it, and links in it (uploaded with the project, or made by
 *    its commands) are part of it: "src/x" through "src -> lib/src" must work as in a shell.
 *    The kernel keeps the resolution beneath the root, and the caller judges the policy on
 *    the path the fd really has (proxy_fd_relpath), not on the name that was asked for.
 *  - import (proxy-import.c) and the export's scratch tree (proxy-export.c) follow none. An
 *    import unpacks an untrusted archive whose earlier entries can plant links that would
 *    send later entries elsewhere (into .git, onto a blocked path, out of the root); its
 *    entries are placed by the names the archive gives, so a followed link would put a file
 *    under another name than the one accounted for. The scratch tree is the proxy's own,
 *    where a link is never legitimate. */
int proxy_mkdir_beneath(Proxy *p, int rootfd, const char *rel, mode_t mode, ProxyMkdirFlags flags);

/* The workspace-relative path an fd really refers to ("." for the root), via
 * /proc/self/fd. -EXDEV if it is not under the workspace. Without procfs (p->have_proc_fd
 * false) every open uses RESOLVE_NO_SYMLINKS, so the path opened is the normalized requested
 * one: fallback_rel is returned. */
int proxy_fd_relpath(Proxy *p, int fd, const char *fallback_rel, char **ret_rel);

/* Map an errno from resolution to an error kind. */
ErrorKind proxy_errno_kind(int r);

/* Split "a/b/c" into parent "a/b" ("." when none) and leaf "c". Leaf is never "." or "..". */
int proxy_path_split(const char *rel, char **ret_parent, char **ret_leaf);

/* True when a component of the workspace-relative path rel is exactly ".git". */
bool proxy_path_has_git_component(const char *rel);

/* True when rel matches one of the policy's paths.blocked globs. Such files are kept
 * root-owned and mode 0600 (directories 0700) when the proxy materializes them, so commands
 * (the agent uid) cannot read them either; the proxy (root) still serves and exports them. */
bool proxy_path_read_blocked(Proxy *p, const char *rel);
