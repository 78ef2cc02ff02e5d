/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers for the image builder: run build tools by argv with a fixed environment and their
 * output in the build log, hash files, walk and remove trees. Paths come from our own build
 * code, never from a guest.
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "hash-util.h"
#include "image-internal.h"
#include "log.h"
#include "string-util.h"

void image_progress(const ImageCtx *ctx, const char *fmt, ...) {
        char msg[1024];
        va_list ap;

        if (ctx->opts && ctx->opts->quiet)
                return;
        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        usec_t t = now_usec(CLOCK_MONOTONIC) - ctx->started;
        fprintf(stderr, "image: [%5.1fs] %s\n", (double) t / (double) USEC_PER_SEC, msg);
}

static char *const image_envp[] = {
        (char *) "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        (char *) "LANG=C.UTF-8",
        (char *) "LC_ALL=C.UTF-8",
        (char *) "DEBIAN_FRONTEND=noninteractive",
        (char *) "HOME=/root",
        NULL,
};

static int image_spawn(ImageCtx *ctx, char *const argv[], const char *cwd, int out_fd, pid_t *ret_pid) {
        int err_fd = ctx->log_fd >= 0 ? ctx->log_fd : STDERR_FILENO;
        if (out_fd < 0)
                out_fd = err_fd;

        if (ctx->log_fd >= 0) {
                _cleanup_free_ char *line = strv_join(argv, " ");
                dprintf(ctx->log_fd, "+ %s\n", line);
        }
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
                    dup2(err_fd, STDERR_FILENO) < 0)
                        _exit(127);
                (void) fd_close_all_from(3, NULL, 0);
                if (cwd && chdir(cwd) < 0)
                        _exit(127);
                (void) signal(SIGPIPE, SIG_DFL);
                execvpe(argv[0], argv, image_envp);
                dprintf(STDERR_FILENO, "exec %s: %m\n", argv[0]);
                _exit(127);
        }
        *ret_pid = pid;
        return 0;
}

static void log_tail(ImageCtx *ctx) {
        /* Show the last lines of the build log: the tool's own reason for failing. */
        _cleanup_free_ char *path = xasprintf("%s/build.log", ctx->cache_dir);
        _cleanup_free_ char *data = NULL;
        size_t n;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        off_t size = lseek(fd, 0, SEEK_END);
        if (size > 2048)
                (void) lseek(fd, size - 2048, SEEK_SET);
        else
                (void) lseek(fd, 0, SEEK_SET);
        if (read_full_fd(fd, 4096, &data, &n) < 0)
                return;
        fprintf(stderr, "image: last lines of %s:\n%s\n", path, data);
}

static int image_wait(ImageCtx *ctx, const char *what, pid_t pid) {
        usec_t start = now_usec(CLOCK_MONOTONIC), last = start;
        int status;

        for (;;) {
                pid_t p = waitpid(pid, &status, WNOHANG);
                if (p < 0 && errno != EINTR)
                        return -errno;
                if (p == pid)
                        break;
                usec_t n = now_usec(CLOCK_MONOTONIC);
                if (what && n - last >= 15 * USEC_PER_SEC) {
                        image_progress(
                                ctx,
                                "%s: still running (%llus)",
                                what,
                                (unsigned long long) ((n - start) / USEC_PER_SEC));
                        last = n;
                }
                (void) usleep(50 * 1000);
        }
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
}

int image_run(ImageCtx *ctx, const char *what, char *const argv[], const char *cwd) {
        pid_t pid;
        int r = image_spawn(ctx, argv, cwd, -1, &pid);
        if (r < 0)
                return log_error_errno(r, "image: cannot start %s: %m", argv[0]);
        r = image_wait(ctx, what, pid);
        if (r < 0)
                return log_error_errno(r, "image: waiting for %s: %m", argv[0]);
        if (r != 0) {
                log_tail(ctx);
                log_error("image: %s failed with status %d (see %s/build.log)", argv[0], r, ctx->cache_dir);
                return -EIO;
        }
        return 0;
}

int image_run_capture(ImageCtx *ctx, char *const argv[], size_t max, char **ret_out) {
        int p[2];
        pid_t pid;
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        _cleanup_close_ int rfd = p[0];
        int r = image_spawn(ctx, argv, NULL, p[1], &pid);
        (void) close(p[1]);
        if (r < 0)
                return r;
        _cleanup_free_ char *out = NULL;
        size_t n;
        int rr = read_full_fd(rfd, max, &out, &n);
        r = image_wait(ctx, NULL, pid);
        if (rr < 0)
                return rr;
        if (r != 0) {
                log_error("image: %s failed with status %d", argv[0], r);
                return -EIO;
        }
        *ret_out = TAKE_PTR(out);
        return 0;
}

static void hex_digest(const unsigned char d[crypto_hash_sha256_BYTES], char ret_hex[static IMAGE_SHA256_HEX]) {
        static const char hx[] = "0123456789abcdef";
        for (size_t i = 0; i < crypto_hash_sha256_BYTES; i++) {
                ret_hex[2 * i] = hx[d[i] >> 4];
                ret_hex[2 * i + 1] = hx[d[i] & 15];
        }
        ret_hex[64] = 0;
}

int image_sha256_file(const char *path, char ret_hex[static IMAGE_SHA256_HEX]) {
        crypto_hash_sha256_state st;
        unsigned char d[crypto_hash_sha256_BYTES];
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        _cleanup_free_ unsigned char *buf = xmalloc(1 << 20);
        crypto_hash_sha256_init(&st);
        for (;;) {
                ssize_t k = read(fd, buf, 1 << 20);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                crypto_hash_sha256_update(&st, buf, (unsigned long long) k);
        }
        crypto_hash_sha256_final(&st, d);
        hex_digest(d, ret_hex);
        return 0;
}

void image_sha256_buf(const void *p, size_t n, char ret_hex[static IMAGE_SHA256_HEX]) {
        sha256_hex(p, n, ret_hex);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        if (flag == FTW_DP)
                return rmdir(path) < 0 ? -1 : 0;
        return unlink(path) < 0 ? -1 : 0;
}

int image_rm_rf(const char *path) {
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return RET_NERRNO(unlink(path));
        if (nftw(path, rm_cb, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
                return negative_errno();
        return 0;
}

int image_open_in_root(int rootfd, const char *path, int flags, bool follow_symlinks) {
        struct open_how how = {
                .flags = (uint64_t) (flags | O_CLOEXEC),
                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV |
                        (follow_symlinks ? 0 : RESOLVE_NO_SYMLINKS),
        };
        int fd = (int) syscall(SYS_openat2, rootfd, path, &how, sizeof how);
        return fd < 0 ? -errno : fd;
}

int image_remove_at(int dfd, const char *name) {
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                safe_close(fd);
                return r;
        }
        int r = 0;
        struct dirent *de;
        while (r == 0 && (de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        r = image_remove_at(dirfd(d), de->d_name);
        closedir(d);
        if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                r = -errno;
        return r;
}

int image_copy_file(const char *src, const char *dst, mode_t mode) {
        _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (in < 0)
                return -errno;
        _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", dst, (int) getpid());
        _cleanup_close_ int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (out < 0)
                return -errno;
        _cleanup_free_ char *buf = xmalloc(1 << 20);
        int r = 0;
        for (;;) {
                ssize_t k = read(in, buf, 1 << 20);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        r = -errno;
                        break;
                }
                if (k == 0)
                        break;
                if ((r = loop_write(out, buf, (size_t) k)) < 0)
                        break;
        }
        if (r == 0 && fchmod(out, mode) < 0)
                r = -errno;
        if (r == 0 && rename(tmp, dst) < 0)
                r = -errno;
        if (r < 0)
                (void) unlink(tmp);
        return r;
}

static uint64_t usage_bytes, usage_entries;
static int usage_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        usage_bytes += (uint64_t) st->st_blocks * 512u;
        usage_entries++;
        return 0;
}

int image_tree_usage(const char *path, uint64_t *ret_bytes, uint64_t *ret_entries) {
        usage_bytes = usage_entries = 0;
        if (nftw(path, usage_cb, 64, FTW_PHYS | FTW_MOUNT) < 0)
                return negative_errno();
        *ret_bytes = usage_bytes;
        *ret_entries = usage_entries;
        return 0;
}

int image_elf_is_static(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        Elf64_Ehdr eh;
        if (fd < 0)
                return -errno;
        if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t) sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
            eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256)
                return -ENOEXEC;
        for (unsigned i = 0; i < eh.e_phnum; i++) {
                Elf64_Phdr ph;
                if (pread(fd, &ph, sizeof(ph), (off_t) (eh.e_phoff + (uint64_t) i * sizeof(ph))) !=
                    (ssize_t) sizeof(ph))
                        return -ENOEXEC;
                if (ph.p_type == PT_INTERP)
                        return 0;
        }
        return 1;
}

int image_elf_set_interp(char *data, size_t n, const char *interp) {
        Elf64_Ehdr eh;
        if (!data || n < sizeof(eh))
                return -ENOEXEC;
        memcpy(&eh, data, sizeof(eh));
        if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
            eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256 ||
            eh.e_phoff > n || (uint64_t) eh.e_phnum * sizeof(Elf64_Phdr) > n - eh.e_phoff)
                return -ENOEXEC;
        for (unsigned i = 0; i < eh.e_phnum; i++) {
                Elf64_Phdr ph;
                memcpy(&ph, data + eh.e_phoff + (uint64_t) i * sizeof(ph), sizeof(ph));
                if (ph.p_type != PT_INTERP)
                        continue;
                if (ph.p_offset > n || ph.p_filesz > n - ph.p_offset || ph.p_filesz == 0)
                        return -ENOEXEC;
                size_t len = strlen(interp);
                if (len + 1 > ph.p_filesz)
                        return -ENAMETOOLONG;
                /* The loader reads the NUL-terminated string; the rest of the segment is zeroed. */
                memset(data + ph.p_offset, 0, ph.p_filesz);
                memcpy(data + ph.p_offset, interp, len);
                return 0;
        }
        return -ENOEXEC;
}
