/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus-node: shared state of the daemon (configuration, the pod table, secrets). One
 * instance per process, passed explicitly (each Pod points at its Node); the HTTP threads, the
 * supervisor and the boot threads share it under node->lock.
 */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "sign.h"
#include "time-util.h"
#include "vmm/vmm.h"

typedef struct Pod Pod;
typedef struct NetConfig NetConfig;

typedef struct NodeSettings {
        char *listen;                 /* "127.0.0.1:8080" */
        char *metrics_listen;         /* "127.0.0.1:9080" ("" disables) */
        char *state_dir;              /* absolute; created 0700 */
        char *images_dir;             /* guest images (qemu/firecracker) */
        VmmDriver driver;             /* default driver for specs that name none */
        char *accel;                  /* "auto", "kvm", "tcg" */
        unsigned max_pods;            /* live pods (not exited/failed) at once; >= 1 */
        char *node_key_path;          /* 64 hex: HMAC key of the API */
        char *approver_pub_path;      /* 64 hex: Ed25519 public key approvals are verified with */
        char *audit_key_path;         /* 128 hex: Ed25519 secret key the audit log is signed with */
        char *proxy_path;             /* host nucleus-tool-proxy (local driver) */
        char *firecracker_path;       /* firecracker binary */
        char *jailer_path;            /* jailer binary, or NULL (no jailer) */
        char *vmm_user;               /* user the VMM runs as ("nucleus-vmm"); absent user: root + sandbox */
        uint64_t max_body_bytes;      /* JSON bodies (specs, tool calls); 413 beyond */
        uint64_t max_workspace_bytes; /* PUT workspace tar ([node] max_upload_bytes); 413 beyond */
        uint64_t max_tool_body_bytes; /* one tool call's body at most (api_tool_body_cap) */
        uint64_t max_patch_bytes;     /* workspace patch collected from the guest */
        unsigned boot_timeout_sec;    /* VM start to configured proxy */
        unsigned tool_timeout_sec;    /* one tool call at most (still capped by the deadline) */
        unsigned default_timeout_sec; /* pod deadline when the spec names none */
        unsigned max_timeout_sec;     /* cap on the spec's timeout */
        unsigned lease_grace_sec;     /* leased pods: grace without renewal (spec may override) */
        unsigned liveness_sec;        /* a guest silent on its channel this long fails its pod */
        unsigned keep_ended;          /* ended pods kept (memory and state dir) */
        uint64_t keep_ended_sec;      /* ... for at most this long after their end */
        unsigned default_vcpus;
        uint64_t default_memory_mib;
        uint64_t default_scratch_mib;
        unsigned tcg_tb_mib; /* QEMU TCG translation cache per pod ([pods] tcg_tb_mib) */
        bool ksm;            /* guest RAM offered to the host's KSM ([pods] ksm) */
        char *net_state_dir; /* the network library's NetConfig.state_dir */
        char *net_pool;      /* the network library's NetConfig.pool */
        char *net_dns_upstream; /* the network library's NetConfig.dns_upstream ([net] dns_upstream); NULL: resolv.conf */
        unsigned net_dns_wildcard_names; /* NetConfig.dns_wildcard_names ([net] dns_wildcard_names) */
        json_t *pool_images;             /* [pool.images]: image name -> pods kept booted (owned) */
        uint64_t pool_memory_budget_mib; /* [pool] memory_budget_mib */
        bool pool_restore;               /* [pool] restore = "auto" (true) | "off" */
        unsigned snapshots_max_count;    /* [snapshots] max_count (0: no cap) */
        uint64_t snapshots_max_bytes;    /* [snapshots] max_mib in bytes (0: no cap) */
        bool pool_network;               /* [pool] network: pooled pods get a parked NIC (qemu only) */
} NodeSettings;

typedef struct Node {
        NodeSettings config;
        uint8_t node_key[AUTH_KEY_SIZE];
        uint8_t approver_pub[32];
        bool have_approver_pub;
        uint8_t audit_key[64];
        bool have_audit_key;
        AuthNonceCache *nonces;
        uid_t vmm_uid; /* 0: stay root */
        gid_t vmm_gid;
        char *cgroup_root; /* cgroup v2 dir for pods, or NULL when unavailable */
        char *accel_in_use;
        uint64_t nofile_soft, nofile_hard; /* RLIMIT_NOFILE after raising the soft limit at start */

        pthread_mutex_t lock; /* protects pods[] and every Pod's state fields */
        Pod **pods;
        size_t n_pods;
        int wake_fd; /* eventfd: wakes the supervisor after changes */
        bool shutting_down;
        usec_t approvers_until; /* CLOCK_MONOTONIC: a human-facing approver is attached until then (under lock) */
        pthread_t supervisor_thread, drift_thread; /* pod-supervisor.c */
        bool supervisor_running, drift_running;
        struct PodPool *pool;  /* pod-pool.c: the warm pool's thread and pods, or NULL */
        char **snapshots_busy; /* under lock: ids of snapshots children restore from now, one entry
                                * per child (pod-snapshot.c); such a snapshot is not removed */
} Node;

void node_wake(Node *n);
