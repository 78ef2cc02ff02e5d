/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Backend table for the VMM drivers. Only vmm*.c include this.
 */
#pragma once
#include <pthread.h>

#include "vmm.h"

struct Vmm {
        const struct VmmOps *ops;
        PidRef pid;         /* the VMM (or bwrap) process */
        char *pod_dir;      /* absolute */
        char *channel_path; /* unix socket of the channel, or NULL when channel_fd is used */
        int channel_fd;     /* pre-connected channel (local driver), or -EBADF */
        char *accel;        /* what is actually in use */
        void *data;         /* backend private */
        /* Serialises the backend's use of data with its cleanup at the VMM's end (qemu: the
         * monitor connection, used by snapshots while the pod may be ending). */
        pthread_mutex_t data_lock;
        bool data_closed; /* under data_lock: cleanup released what data held */
        bool stopped;
};

typedef struct VmmOps {
        const char *name;
        bool weak_isolation;
        int (*probe)(const VmmLaunch *l, char **reterr);
        int (*start)(const VmmLaunch *l, Vmm *vm, char **reterr);
        int (*connect)(Vmm *vm, usec_t timeout, int *ret_fd, char **reterr);
        void (*cleanup)(Vmm *vm); /* after the process is gone: remove files, close descriptors */
        void (*free_data)(Vmm *vm);
        int (*save_state)(Vmm *vm, int state_fd, int (*paused)(void *, char **), void *userdata, char **reterr);
        int (*load_state)(Vmm *vm, int state_fd, usec_t timeout, char **reterr);
} VmmOps;

extern const VmmOps vmm_qemu_ops;
extern const VmmOps vmm_firecracker_ops;
extern const VmmOps vmm_local_ops;

/* Shared helpers for backends. */
/* Connect to a unix stream socket at path, retrying until timeout while it is absent or
 * refuses (the VMM creates it). Stops early if the VMM process died. */
int vmm_connect_unix_retry(Vmm *vm, const char *path, usec_t timeout, int *ret_fd);
/* Give the VMM user (uid, gid) the files names[] (NULL-terminated) in the directory dir and,
 * with give_dir, the directory itself: each file through an fd opened without following a
 * link, blocking or taking a terminal, and only a regular file with one link; the directory
 * last, so that until then only root can change what is in it (the VMM user is shared by every
 * pod's QEMU). Returns 0, -EBADFD for a file that is not a regular single-link file, or -errno
 * (ELOOP or ENOTDIR for a symlink). */
int vmm_hand_over(const char *dir, bool give_dir, const char *const *names, uid_t uid, gid_t gid);
/* Is the peer of the connected unix socket fd the process pid (SO_PEERCRED: the process that
 * listened)? 0, -EPERM when another process listens there (a socket some other process of the
 * shared VMM user put in place of the VMM's), or -errno. */
int vmm_socket_peer_is(int fd, pid_t pid);
/* chmod a socket the VMM created in its dir, without following a link put in its place: only
 * a socket is changed. 0, -ENOTSOCK for anything else, or -errno. */
int vmm_socket_chmod(const char *path, mode_t mode);
/* Write vmm.pid in the pod dir. */
int vmm_write_pidfile(Vmm *vm);
/* Fork a child that joins cgroup_dir, changes to cwd (if set; after the privilege drop, so the
 * VMM user must be able to enter it), drops to uid/gid (when nonzero), sets stdin /dev/null,
 * stdout+stderr to log_fd, closes other fds except keep_fd (moved to VMM_KEEP_FD when >= 0) and execs
 * argv with an empty environment. */
#define VMM_KEEP_FD 3 /* the number keep_fd has in the VMM */
int vmm_spawn(const VmmLaunch *l, const char *cwd, char *const argv[], int log_fd, int keep_fd, PidRef *ret);
/* The same with n_keep descriptors (at most VMM_KEEP_FDS_MAX): keep[i] is VMM_KEEP_FD + i in
 * the VMM. */
#define VMM_KEEP_FDS_MAX 4
int vmm_spawn_fds(
        const VmmLaunch *l,
        const char *cwd,
        char *const argv[],
        int log_fd,
        const int *keep,
        size_t n_keep,
        PidRef *ret);

/* Append each string argument to *l (NULL-terminated list). */
void vmm_strv_extend_many(char ***l, ...);
#define VMM_STRV_EXTEND(l, ...) vmm_strv_extend_many((l), __VA_ARGS__, (const char *) NULL)
