/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers of nucleus-node. node_rm_rf walks with dir fds and never follows a symlink, so a
 * workspace that a guest filled with links cannot redirect the removal outside the pod dir.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "api.h"
#include "fd-util.h"
#include "node-util.h"
#include "node.h"
#include "parse-util.h"
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

/* The node's listen addresses (api.h): HOST:PORT with an IP host, [ADDR]:PORT for IPv6,
 * "localhost" as 127.0.0.1. */
int api_parse_listen(const char *addr, struct sockaddr_storage *ret, socklen_t *ret_len) {
        _cleanup_free_ char *host = NULL;
        const char *port;
        uint32_t p;

        memset(ret, 0, sizeof *ret);
        if (addr[0] == '[') {
                const char *end = strchr(addr, ']');
                if (!end || end[1] != ':')
                        return -EINVAL;
                host = xstrndup(addr + 1, (size_t) (end - addr - 1));
                port = end + 2;
        } else {
                const char *colon = strrchr(addr, ':');
                if (!colon)
                        return -EINVAL;
                host = xstrndup(addr, (size_t) (colon - addr));
                port = colon + 1;
        }
        if (safe_atou32(port, &p) < 0 || p > 65535)
                return -EINVAL;
        if (streq(host, "localhost"))
                host = mfree(host), host = xstrdup("127.0.0.1");
        struct sockaddr_in *in4 = (struct sockaddr_in *) ret;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ret;
        if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons((uint16_t) p);
                *ret_len = sizeof *in4;
                return 0;
        }
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t) p);
                *ret_len = sizeof *in6;
                return 0;
        }
        return -EINVAL;
}

uint64_t node_json_u64(const json_t *v) {
        return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t) json_integer_value(v) : 0;
}
