/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cgroup v2 placement of VMM processes. Paths are built from the node's own config and pod ids
 * the node generated (uuids), never from client input.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cgroup.h"
#include "fd-util.h"
#include "log.h"
#include "string-util.h"

static int write_str_at(int dfd, const char *file, const char *value) {
        _cleanup_close_ int fd = openat(dfd, file, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        return loop_write(fd, value, strlen(value));
}

uint64_t cgroup_memory_max_bytes(uint64_t memory_mib) {
        /* Guest RAM plus 256 MiB for QEMU itself (TCG translation cache, device state). */
        return (memory_mib + 256) * 1024 * 1024;
}

int cgroup_node_setup(const char *base, char **ret_root, char **ret_why) {
        _cleanup_free_ char *controllers = NULL, *root = NULL;
        _cleanup_close_ int dfd = -EBADF;
        const char *b = base ?: "/sys/fs/cgroup";
        int r;

        dfd = open(b, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (dfd < 0 || read_full_file_at(dfd, "cgroup.controllers", 4096, &controllers, NULL) < 0) {
                *ret_why = xasprintf("%s is not a cgroup v2 hierarchy (no cgroup.controllers)", b);
                return 0;
        }
        char *const want[] = { (char *) "memory", (char *) "cpu", (char *) "pids" };
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                _cleanup_free_ char *copy = xstrdup(controllers);
                bool found = false;
                for (char *tok = copy, *save = NULL, *w; (w = strtok_r(tok, " \n", &save)); tok = NULL)
                        if (streq(w, want[i]))
                                found = true;
                if (!found) {
                        *ret_why = xasprintf("cgroup v2 at %s lacks the '%s' controller", b, want[i]);
                        return 0;
                }
        }
        root = xasprintf("%s/nucleus-node", b);
        if (mkdir(root, 0755) < 0 && errno != EEXIST) {
                *ret_why = xasprintf("cannot create %s: %s", root, strerror(errno));
                return 0;
        }
        /* Enable the controllers for children: in the parent, then in our dir (which must
         * hold no processes itself: the VMMs live in per-pod leaves). */
        (void) write_str_at(dfd, "cgroup.subtree_control", "+memory +cpu +pids");
        _cleanup_close_ int rfd = open(root, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (rfd < 0) {
                *ret_why = xasprintf("cannot open %s: %s", root, strerror(errno));
                return 0;
        }
        r = write_str_at(rfd, "cgroup.subtree_control", "+memory +cpu +pids");
        if (r < 0) {
                *ret_why = xasprintf("cannot enable controllers in %s: %s", root, strerror(-r));
                return 0;
        }
        *ret_root = TAKE_PTR(root);
        return 1;
}

int cgroup_pod_create(
        const char *root,
        const char *pod_id,
        uint64_t memory_mib,
        unsigned vcpus,
        unsigned pids_max,
        char **ret_dir) {
        _cleanup_free_ char *dir = xasprintf("%s/pod-%s", root, pod_id);
        _cleanup_close_ int dfd = -EBADF;
        char buf[64];
        int r;

        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        dfd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        snprintf(buf, sizeof buf, "%" PRIu64, cgroup_memory_max_bytes(memory_mib));
        r = write_str_at(dfd, "memory.max", buf);
        if (r < 0)
                goto fail;
        snprintf(buf, sizeof buf, "%u 100000", (vcpus ?: 1) * 100000u);
        r = write_str_at(dfd, "cpu.max", buf);
        if (r < 0)
                goto fail;
        snprintf(buf, sizeof buf, "%u", pids_max);
        r = write_str_at(dfd, "pids.max", buf);
        if (r < 0)
                goto fail;
        *ret_dir = TAKE_PTR(dir);
        return 0;
fail:
        (void) rmdir(dir);
        return r;
}

int cgroup_pod_remove(const char *dir) {
        _cleanup_close_ int dfd = -EBADF;

        if (!dir)
                return 0;
        dfd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (dfd < 0)
                return errno == ENOENT ? 0 : -errno;
        (void) write_str_at(dfd, "cgroup.kill", "1");
        for (int i = 0; i < 100; i++) {
                if (rmdir(dir) >= 0 || errno == ENOENT)
                        return 0;
                if (errno != EBUSY)
                        return -errno;
                (void) usleep(10 * 1000);
        }
        return -EBUSY;
}
