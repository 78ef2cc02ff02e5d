/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small helpers of nucleus-node: recursive removal inside the node's own state dir.
 */
#pragma once

/* Remove path and everything below it without following symlinks (openat + O_NOFOLLOW,
 * unlinkat). Only for paths the node created itself. Returns 0 or the first -errno. */
int node_rm_rf(const char *path);
