/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers of nucleus-node. node_rm_rf walks with dir fds and never follows a symlink, so a
 * workspace that a guest filled with links cannot redirect the removal outside the pod dir.
 */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "node-util.h"
#include "node.h"
#include "string-util.h"

static int rm_rf_children(int dfd, unsigned depth) {
        DIR *d;
        int r = 0;

        if (depth > 256)
                return -ELOOP;
        d = fdopendir(dfd);
        if (!d) {
                safe_close(dfd);
                return -errno;
        }
        for (struct dirent *de; (de = readdir(d));) {
                struct stat st;
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        int sub = openat(dirfd(d), de->d_name, O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                        if (sub >= 0) {
                                int q = rm_rf_children(sub, depth + 1);
                                if (q < 0 && r == 0)
                                        r = q;
                        }
                        if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && r == 0)
                                r = -errno;
                } else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && r == 0)
                        r = -errno;
        }
        closedir(d);
        return r;
}

int node_rm_rf(const char *path) {
        struct stat st;
        int r;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlink(path) < 0 ? -errno : 0;
        int dfd = open(path, O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (dfd < 0)
                return -errno;
        r = rm_rf_children(dfd, 0);
        if (rmdir(path) < 0 && r == 0)
                r = -errno;
        return r;
}

void node_wake(Node *n) {
        uint64_t one = 1;
        if (n && n->wake_fd >= 0)
                (void) !write(n->wake_fd, &one, sizeof one);
}

int node_raise_nofile(uint64_t *ret_soft, uint64_t *ret_hard) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (rl.rlim_cur != rl.rlim_max) {
                struct rlimit raised = { .rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max };
                if (setrlimit(RLIMIT_NOFILE, &raised) < 0)
                        return -errno;
                rl = raised;
        }
        if (ret_soft)
                *ret_soft = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t) rl.rlim_cur;
        if (ret_hard)
                *ret_hard = rl.rlim_max == RLIM_INFINITY ? UINT64_MAX : (uint64_t) rl.rlim_max;
        return 0;
}
