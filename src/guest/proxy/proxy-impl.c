/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which implementation of each program the command analysis parses by a grammar is installed
 * in this image (issue 13 class 2): busybox and toybox applets have other option grammars, so
 * the analysis must know (docs/policy.md, "Installed implementation"). Resolved once, at
 * the proxy's start (before its channel opens), along the commands' PATH: the first directory holding a name
 * wins, as for execvp. Input: the image's own /usr/bin etc. (root-owned; the agent cannot write there).
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "log.h"
#include "policy.h"
#include "proxy.h"
#include "string-util.h"

/* A multi-call binary is small; larger files are not scanned for its banner. */
#define IMPL_SCAN_MAX (4U * 1024U * 1024U)

static PolicyImpl impl_of(int dirfd, const char *dir, const char *name) {
        char path[PATH_MAX], real[PATH_MAX];
        if ((size_t) snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path || !realpath(path, real))
                return POLICY_IMPL_UNKNOWN;
        const char *base = strrchr(real, '/') ? strrchr(real, '/') + 1 : real;
        if (streq(base, "busybox"))
                return POLICY_IMPL_BUSYBOX;
        if (streq(base, "toybox"))
                return POLICY_IMPL_TOYBOX;
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return POLICY_IMPL_UNKNOWN;
        if (st.st_size < 4 || (uint64_t) st.st_size > IMPL_SCAN_MAX)
                return POLICY_IMPL_NATIVE;
        void *m = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
                return POLICY_IMPL_UNKNOWN;
        PolicyImpl r = POLICY_IMPL_NATIVE;
        if (memcmp(m, "\177ELF", 4) == 0) {
                if (memmem(m, (size_t) st.st_size, "BusyBox v", 9))
                        r = POLICY_IMPL_BUSYBOX;
                else if (memmem(m, (size_t) st.st_size, "toybox", 6))
                        r = POLICY_IMPL_TOYBOX;
        }
        (void) munmap(m, (size_t) st.st_size);
        return r;
}

void proxy_resolve_implementations(const char *path_list) {
        _cleanup_free_ char *copy = xstrdup(path_list);
        char *dirs[32];
        size_t n = 0;
        for (char *save = NULL, *d = strtok_r(copy, ":", &save); d && n < ELEMENTSOF(dirs);
             d = strtok_r(NULL, ":", &save))
                dirs[n++] = d;
        /* Last directory first, so that an earlier one overrides (PATH order). */
        while (n > 0) {
                const char *dir = dirs[--n];
                int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd < 0)
                        continue;
                DIR *d = fdopendir(dfd);
                if (!d) {
                        safe_close(dfd);
                        continue;
                }
                struct dirent *de;
                while ((de = readdir(d))) {
                        if (!policy_impl_wants(de->d_name))
                                continue;
                        PolicyImpl impl = impl_of(dirfd(d), dir, de->d_name);
                        policy_impl_set(de->d_name, impl);
                        if (impl != POLICY_IMPL_NATIVE)
                                log_info(
                                        "%s/%s is %s: commands with its options are refused",
                                        dir,
                                        de->d_name,
                                        policy_impl_to_string(impl));
                }
                closedir(d);
        }
}
