/* SPDX-License-Identifier: Apache-2.0 */
/*
 * File-descriptor helpers: safe closing, ownership hand-over, bounded reads, full writes,
 * close-on-exec sweeps before exec. Inputs are fds owned by the caller.
 */
#pragma once

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#include <stdbool.h>

#include "macro.h"

/* Close fd if valid (>= 0), preserving errno. Always returns -EBADF, so
 * `fd = safe_close(fd);` is the only way to close by hand. */
int safe_close(int fd);

static inline void closep(int *fd) {
        (void) safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)
#define TAKE_FD(fd) TAKE_GENERIC(fd, int, -EBADF)

/* Close a FILE*, accepting NULL; returns NULL. */
#include <stdio.h>
FILE *safe_fclose(FILE *f);
static inline void fclosep(FILE **f) {
        (void) safe_fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Write all n bytes, retrying on EINTR/short writes. Returns 0 or -errno. */
int loop_write(int fd, const void *buf, size_t n);

/* Read exactly n bytes. Returns 0, -EIO on early EOF (ret_got says how many), or -errno. */
int loop_read_exact(int fd, void *buf, size_t n);

/* Read until EOF, at most max bytes. Returns 0 and a NUL-terminated malloc'd buffer
 * (caller frees) and its size without the NUL; -EFBIG if the input exceeds max. */
int read_full_fd(int fd, size_t max, char **ret_data, size_t *ret_size);

/* Like read_full_fd on a path opened O_RDONLY|O_CLOEXEC|O_NOCTTY (relative to dirfd,
 * AT_FDCWD allowed). */
int read_full_file_at(int dirfd, const char *path, size_t max, char **ret_data, size_t *ret_size);

/* Atomically write a file: create a temp file in the same directory with the given mode
 * (never wider, even for an instant), write, fsync, rename over path. */
int write_file_atomic_at(int dirfd, const char *path, const void *data, size_t n, mode_t mode);

/* Mark every fd >= from close-on-exec (close_range(CLOSE_RANGE_CLOEXEC), falling back to
 * walking /proc/self/fd after checking it is procfs). Returns 0 or -errno. */
/* Create the directory path and its missing parents, relative to dirfd (AT_FDCWD, or a
 * directory fd; an absolute path ignores it), each new one with mode (the umask applies);
 * existing ones are left as they are. Returns 0, -ENOTDIR when a component exists and is not a
 * directory, or another -errno. mkdir_parents_at creates the parents only. */
int mkdir_p_at(int dirfd, const char *path, mode_t mode);
int mkdir_parents_at(int dirfd, const char *path, mode_t mode);

int fd_cloexec_from(int from);

/* Close every fd >= from, except those listed. Used in forked children. */
int fd_close_all_from(int from, const int *except, size_t n_except);

int fd_set_nonblock(int fd, bool nonblock);
int fd_set_cloexec(int fd, bool cloexec);

/* Copy the regular file src into dst (empty, opened for writing) keeping its holes: a reflink
 * (FICLONE) where the filesystem shares extents, else copy_file_range over each data extent
 * (SEEK_DATA/SEEK_HOLE), then dst is sized like src. Returns 0 or -errno. */
int copy_file_sparse(int src, int dst);

/* Move fd to >= 3 with F_DUPFD_CLOEXEC; consumes fd. */
int fd_move_above_stdio(int fd);

/* A directory stream of the directory dirfd refers to (an O_PATH fd will do), on a new open
 * of it: the caller keeps dirfd, and the stream reads from the start whatever was read
 * through dirfd. Its fd is close-on-exec and above stdio. NULL with errno set on failure;
 * the caller closedir()s it. */
DIR *fd_opendir_at(int dirfd);
