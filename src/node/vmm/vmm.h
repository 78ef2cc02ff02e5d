/* SPDX-License-Identifier: Apache-2.0 */
/*
 * VMM drivers behind one interface (STYLE.md rule 2): qemu (default), firecracker, local
 * (bubblewrap, weaker isolation). The node calls only these functions; backend differences
 * live in vmm-<name>.c. Inputs come from the node's own config and a validated pod spec.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "process-util.h"
#include "time-util.h"

typedef enum VmmDriver {
        VMM_DRIVER_QEMU,
        VMM_DRIVER_FIRECRACKER,
        VMM_DRIVER_LOCAL,
        _VMM_DRIVER_MAX,
        _VMM_DRIVER_INVALID = -EINVAL,
} VmmDriver;

const char *vmm_driver_to_string(VmmDriver d);
VmmDriver vmm_driver_from_string(const char *s);

/* Everything a backend needs to start one pod's VM. Strings are borrowed for the call. */
typedef struct VmmLaunch {
        const char *pod_id;       /* uuid */
        const char *pod_dir;      /* absolute, 0700, owned by the node */
        const char *image_dir;    /* absolute dir with vmlinuz/vmlinux/initramfs/rootfs/manifest */
        const char *accel;        /* "kvm", "tcg" or "auto" */
        unsigned vcpus;           /* >= 1 */
        uint64_t memory_mib;      /* >= 64 */
        unsigned tcg_tb_mib;      /* QEMU under TCG: translation cache, MiB (0: the builder's) */
        bool ksm;                 /* QEMU: guest RAM mergeable by the host's KSM */
        uint64_t scratch_mib;     /* size of the pod's scratch disk */
        const char *net_cmdline;  /* "nucleus.net=..." or NULL (then no NIC) */
        const char *netns_path;   /* /run/netns/<name> to run the VMM in, or NULL */
        const char *tap_name;     /* tap inside netns_path, or NULL */
        const char *tap_mac;      /* guest MAC for the tap's NIC */
        const struct NetPod *net; /* the per-pod network (src/node/net): the VMM child enters its netns */
        const char *cgroup_dir;   /* cgroup v2 dir to place the VMM in before exec, or NULL */
        const char *proxy_path;   /* local driver: host path of nucleus-tool-proxy */
        const char *firecracker_path; /* firecracker driver: binary */
        const char *jailer_path;      /* firecracker driver: jailer or NULL */
        const char *restore_scratch;  /* qemu: the scratch disk is a copy of this file (a snapshot's)
                                       * and the VM waits for vmm_load_state instead of booting */
        uid_t run_uid;                /* drop to this uid/gid (0: stay root, sandboxed) */
        gid_t run_gid;
} VmmLaunch;

typedef struct Vmm Vmm;

/* Check that the driver can run here (binary present, KVM for firecracker...). Returns 0, or
 * -errno with a malloc'd human message in *reterr naming the fix. */
int vmm_probe(VmmDriver d, const VmmLaunch *l, char **reterr);
/* Start the VM. On success *ret owns the VMM process (pidfd) and its files. On failure the
 * process (if any) is killed and *reterr explains. */
int vmm_start(VmmDriver d, const VmmLaunch *l, Vmm **ret, char **reterr);
/* Connect the host end of the channel; waits up to timeout for the VM to offer it. Returns a
 * connected stream fd (owned by the caller). */
int vmm_connect_channel(Vmm *vm, usec_t timeout, int *ret_fd, char **reterr);
/* The VMM's process (pidfd valid while the Vmm lives), for the supervisor's poll. */
const PidRef *vmm_pid(Vmm *vm);
/* Whether the driver is weaker than a VM (local). */
bool vmm_is_weak(const Vmm *vm);
const char *vmm_accel(const Vmm *vm);
/* Kill the VMM (SIGKILL), reap it and remove the files it created (sockets, disks, pid file).
 * Idempotent. Returns the wait status-derived exit (>=0) or -errno. */
int vmm_stop(Vmm *vm);
Vmm *vmm_free(Vmm *vm);
DEFINE_TRIVIAL_CLEANUP_FUNC(Vmm *, vmm_free);

/* Snapshots (qemu only; -EOPNOTSUPP elsewhere). vmm_save_state pauses the VM, writes its
 * memory and device state into state_fd (QEMU migration to "fd:", the descriptor passed over
 * QMP), calls paused(userdata) while the VM is still paused and its disks flushed (copy the
 * scratch disk there), then resumes the VM, whatever paused() returned. vmm_scratch_path is
 * the VM's scratch disk. vmm_load_state feeds a VM started with l->restore_scratch the saved
 * state and runs it. All return 0 or -errno with *reterr. */
int vmm_save_state(
        Vmm *vm, int state_fd, int (*paused)(void *userdata, char **reterr), void *userdata, char **reterr);
int vmm_load_state(Vmm *vm, int state_fd, usec_t timeout, char **reterr);
char *vmm_scratch_path(Vmm *vm);

/* Remove leftovers of an earlier node run in a pod dir: kill the process named in vmm.pid if it
 * still is a VMM we started (checked by /proc/<pid>/cmdline naming the pod dir), remove
 * sockets and disks. Returns 0 or -errno. */
int vmm_cleanup_stale(int pod_dir_fd, const char *pod_dir);
