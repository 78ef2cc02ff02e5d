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
