/* SPDX-License-Identifier: Apache-2.0 */
/* File-descriptor helpers; see fd-util.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "parse-util.h"

#ifndef CLOSE_RANGE_CLOEXEC
#        define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

int safe_close(int fd) {
        if (fd >= 0) {
                PROTECT_ERRNO;
                (void) close(fd);
        }
        return -EBADF;
}

FILE *safe_fclose(FILE *f) {
        if (f) {
                PROTECT_ERRNO;
                (void) fclose(f);
        }
        return NULL;
}

int loop_write(int fd, const void *buf, size_t n) {
        const uint8_t *p = buf;
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -EIO;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int loop_read_exact(int fd, void *buf, size_t n) {
        uint8_t *p = buf;
        while (n > 0) {
                ssize_t k = read(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -EIO;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int read_full_fd(int fd, size_t max, char **ret_data, size_t *ret_size) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, alloc = 0;

        for (;;) {
                if (alloc - size < 4096 + 1) {
                        size_t want = alloc ? alloc * 2 : 8192;
                        if (want > max + 1 + 4096)
                                want = max + 1 + 4096;
                        if (want <= alloc)
                                return -EFBIG;
                        buf = xrealloc(buf, want);
                        alloc = want;
                }
                ssize_t k = read(fd, buf + size, alloc - size - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                size += (size_t) k;
                if (size > max)
                        return -EFBIG;
        }
        if (!buf)
                buf = xmalloc(1);
        buf[size] = 0;
        *ret_data = TAKE_PTR(buf);
        if (ret_size)
                *ret_size = size;
        return 0;
}

int read_full_file_at(int dirfd, const char *path, size_t max, char **ret_data, size_t *ret_size) {
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return read_full_fd(fd, max, ret_data, ret_size);
}

int write_file_atomic_at(int dirfd, const char *path, const void *data, size_t n, mode_t mode) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        uint8_t rnd[8];
        int r;

        for (size_t i = 0; i < sizeof(rnd); i++)
                rnd[i] = (uint8_t) random();
        tmp = xasprintf("%s.tmp%02x%02x%02x%02x%02x%02x", path, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
        /* O_EXCL + explicit mode: the file never exists with wider permissions (umask can only
         * narrow it; fchmod below sets it exactly). */
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode & 07777);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, mode & 07777) < 0) {
                r = -errno;
                goto fail;
        }
        r = loop_write(fd, data, n);
        if (r < 0)
                goto fail;
        if (fsync(fd) < 0) {
                r = -errno;
                goto fail;
        }
        if (renameat(dirfd, tmp, dirfd, path) < 0) {
                r = -errno;
                goto fail;
        }
        return 0;
fail:
        (void) unlinkat(dirfd, tmp, 0);
        return r;
}

static int fd_walk_proc(int from, bool close_them, const int *except, size_t n_except) {
        _cleanup_close_ int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct statfs sfs;

        if (dfd < 0)
                return -errno;
        /* Only trust the listing if it really is procfs (a bind mount could lie). */
        if (fstatfs(dfd, &sfs) < 0)
                return -errno;
        if (sfs.f_type != PROC_SUPER_MAGIC)
                return -ENOTSUP;

        DIR *d = fd_opendir_at(dfd);
        if (!d)
                return -errno;
        struct dirent *de;
        while ((de = readdir(d))) {
                uint32_t v;
                if (de->d_name[0] == '.')
                        continue;
                if (safe_atou32(de->d_name, &v) < 0 || v > INT32_MAX)
                        continue;
                int fd = (int) v;
                if (fd < from || fd == dfd || fd == dirfd(d))
                        continue;
                bool keep = false;
                for (size_t i = 0; i < n_except; i++)
                        if (except[i] == fd)
                                keep = true;
                if (keep)
                        continue;
                if (close_them)
                        (void) close(fd);
                else
                        (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
        closedir(d);
        return 0;
}

int fd_cloexec_from(int from) {
        static int close_range_ok = -1; /* cached probe: -1 unknown, 0 no, 1 yes */

        if (close_range_ok != 0) {
                if (syscall(SYS_close_range, (unsigned) from, ~0U, CLOSE_RANGE_CLOEXEC) == 0) {
                        close_range_ok = 1;
                        return 0;
                }
                if (!IN_SET_ERRNO_UNSUPPORTED(errno))
                        return -errno;
                /* FIXME: drop the fallback once we require Linux >= 5.11 (CLOSE_RANGE_CLOEXEC). */
                close_range_ok = 0;
        }
        return fd_walk_proc(from, false, NULL, 0);
}

int fd_close_all_from(int from, const int *except, size_t n_except) {
        if (n_except == 0 && syscall(SYS_close_range, (unsigned) from, ~0U, 0) == 0)
                return 0;
        int r = fd_walk_proc(from, true, except, n_except);
        if (r == -ENOTSUP || r == -ENOENT) {
                /* No procfs (early PID 1): brute force over the soft limit. */
                long max = sysconf(_SC_OPEN_MAX);
                if (max < 0 || max > 65536)
                        max = 65536;
                for (int fd = from; fd < max; fd++) {
                        bool keep = false;
                        for (size_t i = 0; i < n_except; i++)
                                if (except[i] == fd)
                                        keep = true;
                        if (!keep)
                                (void) close(fd);
                }
                return 0;
        }
        return r;
}

int fd_set_nonblock(int fd, bool nonblock) {
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        int nflags = nonblock ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
        if (nflags != flags && fcntl(fd, F_SETFL, nflags) < 0)
                return -errno;
        return 0;
}

int fd_set_cloexec(int fd, bool cloexec) {
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0)
                return -errno;
        int nflags = cloexec ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
        if (nflags != flags && fcntl(fd, F_SETFD, nflags) < 0)
                return -errno;
        return 0;
}

int fd_move_above_stdio(int fd) {
        if (fd < 0 || fd > 2)
                return fd;
        int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        int r = nfd < 0 ? -errno : nfd;
        (void) close(fd);
        return r;
}

DIR *fd_opendir_at(int dirfd) {
        int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return NULL;
        fd = fd_move_above_stdio(fd);
        if (fd < 0) {
                errno = -fd;
                return NULL;
        }
        DIR *d = fdopendir(fd);
        if (!d) {
                int e = errno;
                (void) close(fd);
                errno = e;
        }
        return d;
}

static int mkdir_one_at(int dirfd, const char *path, mode_t mode) {
        struct stat st;
        if (mkdirat(dirfd, path, mode) >= 0)
                return 0;
        if (errno != EEXIST)
                return -errno;
        if (fstatat(dirfd, path, &st, 0) < 0)
                return -errno;
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int mkdir_components_at(int dirfd, const char *path, mode_t mode, bool last) {
        _cleanup_free_ char *p = xstrdup(path);
        int r;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/' || s[-1] == '/')
                        continue;
                *s = 0;
                r = mkdir_one_at(dirfd, p, mode);
                *s = '/';
                if (r < 0)
                        return r;
        }
        return last ? mkdir_one_at(dirfd, p, mode) : 0;
}

int mkdir_p_at(int dirfd, const char *path, mode_t mode) {
        if (!path || !*path)
                return -EINVAL;
        return mkdir_components_at(dirfd, path, mode, true);
}

int mkdir_parents_at(int dirfd, const char *path, mode_t mode) {
        if (!path || !*path)
                return -EINVAL;
        return mkdir_components_at(dirfd, path, mode, false);
}

int copy_file_sparse(int src, int dst) {
        struct stat st;
        if (fstat(src, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (ioctl(dst, FICLONE, src) >= 0)
                return 0;
        off_t pos = 0;
        while (pos < st.st_size) {
                off_t data = lseek(src, pos, SEEK_DATA);
                if (data < 0) {
                        if (errno == ENXIO)
                                break; /* only a hole is left */
                        return -errno;
                }
                off_t hole = lseek(src, data, SEEK_HOLE);
                if (hole < 0)
                        return -errno;
                off_t in = data, out = data;
                while (in < hole) {
                        ssize_t k = copy_file_range(src, &in, dst, &out, (size_t) (hole - in), 0);
                        if (k < 0) {
                                if (errno == EINTR)
                                        continue;
                                return -errno;
                        }
                        if (k == 0)
                                return -EIO; /* src shrank under us */
                }
                pos = hole;
        }
        if (ftruncate(dst, st.st_size) < 0)
                return -errno;
        return 0;
}
