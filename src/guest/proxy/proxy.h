/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus-tool-proxy: shared state of the in-guest enforcement point. One Proxy per process,
 * one peer (the node) at a time, one epoll loop. Everything arriving on the channel is
 * untrusted; the command-line options come from guest init (trusted).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "approval.h"
#include "configure.h"
#include "frame.h"
#include "hash-util.h"
#include "message.h"
#include "policy.h"
#include "process-util.h"
#include "time-util.h"
#include "transport.h"

typedef struct Proxy Proxy;
typedef struct Request Request;
typedef struct Job Job;

/* Limits applied to operations; configure may lower or raise them within hard caps. */
typedef struct ProxyLimits {
        uint64_t max_read_bytes;        /* one read answer (before base64) */
        uint64_t max_file_bytes;        /* write/edit content and files edit will load */
        uint64_t max_output_bytes;      /* per stream (stdout, stderr) kept for a run answer */
        uint64_t max_import_bytes;      /* whole tar stream */
        uint64_t max_list_entries;      /* list/glob answers */
        uint64_t max_walk_entries;      /* directory entries visited by glob/grep */
        uint64_t max_grep_matches;      /* default match cap for grep */
        uint64_t max_grep_file_bytes;   /* files larger than this are skipped by grep */
        usec_t default_command_timeout; /* run without timeout_seconds */
        usec_t max_command_timeout;     /* cap for timeout_seconds */
        uint64_t rlimit_nproc;          /* RLIMIT_NPROC for commands */
        uint64_t rlimit_nofile;         /* RLIMIT_NOFILE */
        uint64_t rlimit_fsize;          /* RLIMIT_FSIZE bytes */
        uint64_t rlimit_as;             /* RLIMIT_AS bytes */
        uint64_t max_concurrent_jobs;   /* running commands at once */
} ProxyLimits;

typedef struct ProxyCosts {
        uint64_t base_usd_micros;           /* reserved+charged for every side effect */
        uint64_t run_usd_micros_per_second; /* run: reserved for the timeout, settled on use */
} ProxyCosts;

/* What configure decided (docs/proxy.md "configure"); defaults until then (proxy_init). */
typedef struct ProxyConfig {
        char *pod_id;
        Policy *policy;
        char policy_sha256[65];
        ProxyLimits limits;
        ProxyCosts costs;
        bool have_approver;
        uint8_t approver_key[APPROVAL_PUBLIC_KEY_SIZE];
        char **env;       /* NAME=value strings added to every command's environment */
        char **dns_allow; /* web_fetch hosts: host or host:port */
} ProxyConfig;

struct Request {
        Proxy *proxy;
        uint32_t stream_id;
        char *op;             /* owned copy */
        json_t *args;         /* owned reference */
        char args_sha256[65]; /* of canonical args (approval field removed) */
        usec_t start;         /* CLOCK_MONOTONIC */
        BudgetReservation reservation;
        bool reserved;
        char *approval_token;   /* token to consume once everything else passed, or NULL */
        Operation approval_op;  /* operation the token must name */
        char approval_args[65]; /* args digest the token must carry ("" = none) */
};

/* Result of a policy gate: 0 = go ahead, else an error JSON was produced. */
typedef struct Proxy {
        /* command line */
        char *workspace_path; /* absolute, no trailing slash */
        int workspace_fd;     /* O_PATH|O_DIRECTORY of workspace_path */
        char *workspace_real; /* realpath, for /proc/self/fd checks */
        bool have_proc_fd;    /* /proc/self/fd usable; else symlinks are never followed */
        uid_t agent_uid;
        gid_t agent_gid;
        char *agent_home;  /* HOME for commands */
        char *state_dir;   /* root-only dir outside the workspace (baseline git) */
        bool guest_system; /* --guest-system: this proxy runs in a guest and owns its system state
                            * (wall clock, CRNG, NIC, resolver); false on a host */

        /* channel */
        Transport *transport;
        int epoll_fd;
        int conn_fd; /* -EBADF when no peer */
        FrameDecoder decoder;
        FrameQueue out;
        bool want_out; /* EPOLLOUT armed */
        bool drop_peer;
        /* Frames read but not handled yet, in arrival order (tool work); control requests
         * (proxy_frame_is_control) never wait here. */
        struct DeferredFrame *deferred, **deferred_tail;
        size_t deferred_bytes;

        /* configuration: committed once by configure, with one assignment */
        bool configured;
        ProxyConfig cfg;
        TimeWindow window;
        BudgetMeter *budget;
        ApprovalRegistry *approvals;
        char **pending_tokens; /* approve op: verified tokens waiting to be used */
        char **used_nonces; /* nonces consumed at least once (registry_remaining cannot tell unknown from used up) */
        char *fetch_helper; /* path of nucleus-web-fetch, or NULL */
        char *fetch_libdir; /* its loader and libraries (initramfs /nucleus/lib), or NULL */

        /* audit event rate limit (token bucket, see emit_audit) */
        uint64_t audit_tokens;  /* events that may be sent now; <= PROXY_AUDIT_BURST */
        usec_t audit_refill;    /* CLOCK_MONOTONIC of the last refill */
        uint64_t audit_dropped; /* events not sent since the last audit_dropped summary */

        /* jobs (running commands, imports) */
        Job *jobs;
        unsigned n_jobs;
        Job *graveyard; /* removed during a loop iteration; freed after it */
        bool terminating;
        bool setup_closed;          /* setup_done ran or an agent operation arrived: no more setup */
        bool commands_share_pid_ns; /* no PID namespace per command: a command's orphans are
                                     * no longer our descendants (export's freeze scans uids) */
} Proxy;

/* Loop sources: epoll data.ptr points at one of these. */
typedef struct LoopSource {
        int fd;
        void (*callback)(Proxy *p, struct LoopSource *s, uint32_t events);
        void *userdata;
} LoopSource;

int proxy_loop_add(Proxy *p, LoopSource *s, uint32_t events);
int proxy_loop_mod(Proxy *p, LoopSource *s, uint32_t events);
void proxy_loop_del(Proxy *p, LoopSource *s);

/* ---- channel (proxy-channel.c) ---- */
/* Queue a frame/JSON for the peer; silently dropped when there is no peer. */
void proxy_send(Proxy *p, FrameType type, uint32_t stream_id, const void *buf, size_t n);
void proxy_send_json(Proxy *p, FrameType type, uint32_t stream_id, json_t *j);
/* For long work inside one loop turn (git on a big workspace): one frame the node ignores but
 * counts as the guest being alive (its liveness watch, src/node/channel.c). */
void proxy_keepalive(Proxy *p);

/* ---- requests (proxy-ops.c) ---- */
/* Finish a request: send the response (takes result), emit the audit event, free req. */
void request_finish(Request *req, json_t *result);
/* Same with an error built from kind + message. */
void request_fail(Request *req, ErrorKind kind, const char *fmt, ...) _printf_(3, 4);
Request *request_free(Request *req);
void proxy_handle_frame(Proxy *p, Frame *f);
/* True for a request of a control operation (configure, status, charge, approve): small, fast,
 * no workspace I/O. The channel handles those as soon as they are read, ahead of tool work
 * read earlier (which runs one request per loop turn), so a status never queues behind slow
 * greps. */
bool proxy_frame_is_control(const Frame *f);
void proxy_handle_peer_gone(Proxy *p);

/*
 * The policy gate, in the documented order (docs/proxy.md "Check order"):
 *   deadline -> policy decision (capability, path/command rules, obligation) -> approval
 *   token (verified, bound to pod/op/args; consumed later) -> budget reservation.
 * decision: what policy_check_path/command said (consumed). Returns 0 when the caller may
 * execute; otherwise the request was already failed (and freed when it was async: never).
 */
int request_gate(Request *req, PolicyDecision *decision, uint64_t reserve_usd_micros);
/* Deadline only (ops without a policy decision). Returns 0 or fails the request. */
int request_check_deadline(Request *req);
/* Consume the approval (if any) and settle the reservation with the actual cost. */
void request_settle(Request *req, uint64_t actual_usd_micros);

/* ---- ops ---- */
void op_configure(Request *req);
void op_reconfigure(Request *req);
/* The PATH of every command the proxy runs. */
#define RUN_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
/* Tell the command analysis which implementation (upstream, busybox, toybox) of each program it
 * parses by a grammar is installed along path_list (proxy-impl.c). */
void proxy_resolve_implementations(const char *path_list);
/* Every git configuration file of every repository in the workspace holds only keys on the git
 * configuration allow list (proxy-gitcheck.c). 0, or < 0 with a malloc'd *reterr naming the
 * file, line and key. */
int proxy_git_config_check(Proxy *p, char **reterr);
void op_status(Request *req);
void op_charge(Request *req);
void op_approve(Request *req);
void op_read(Request *req);
void op_write(Request *req);
void op_edit(Request *req);
void op_list(Request *req);
void op_glob(Request *req);
void op_grep(Request *req);
void op_run(Request *req);
void op_web_fetch(Request *req);
void op_import(Request *req);
void op_export(Request *req);
/* The setup step (proxy-setup.c): node-only, before the agent's first operation. */
void op_setup(Request *req);
void op_setup_done(Request *req);
bool proxy_op_is_setup(const char *op);
/* Record the workspace as the baseline the export compares against (proxy-import.c): a new
 * commit in the root-only baseline repository. 0 and *ret_commit, or -errno. */
int proxy_baseline_record(Proxy *p, char **ret_commit);

/* ---- jobs (proxy-run.c, proxy-import.c) ---- */
struct Job {
        Job *next;
        Proxy *proxy;
        Request *req;                       /* NULL once answered */
        uint32_t stream_id;                 /* the request's stream */
        void (*on_frame)(Job *j, Frame *f); /* data/end/cancel on the job's stream */
        void (*free)(Job *j);
        void *data;
};
Job *proxy_find_job(Proxy *p, uint32_t stream_id);
void proxy_add_job(Proxy *p, Job *j);
/* Unlink; j->free runs after the current loop iteration (sources may still have events). */
void proxy_remove_job(Proxy *p, Job *j);
/* Earliest timer among jobs (CLOCK_MONOTONIC usec) or USEC_INFINITY; and the tick. */
usec_t proxy_jobs_next_deadline(Proxy *p);
void proxy_jobs_reap_graveyard(Proxy *p);
void proxy_jobs_tick(Proxy *p);

/* Fork a confined child (sandbox.c) as the agent and track it as a job of req: argv via PATH,
 * cwd_fd beneath the workspace, stdin bytes (or /dev/null), killed at timeout. Output is kept
 * up to cap bytes per pipe. on_done NULL: answer as `run`; else on_done builds the answer from
 * the wait status and stdout. Returns 0 (req now owned by the job) or <0 (req was failed). The
 * caller has passed request_gate(). */
int proxy_spawn(
        Request *req,
        char **argv,
        int cwd_fd,
        const void *stdin_data,
        size_t stdin_n,
        usec_t timeout,
        bool stream,
        void (*on_done)(Request *req, int status, bool timed_out, const char *out, size_t n),
        uint64_t cap);

/* ---- helpers (proxy-util.c) ---- */
/* Default limits and costs (before configure). */
void proxy_init_defaults(Proxy *p);
/* Parse helpers for args: each fails the request with invalid_request and returns <0. */
int args_get_string(Request *req, const char *key, bool required, const char **ret);
int args_get_bool(Request *req, const char *key, bool def, bool *ret);
int args_get_u64(Request *req, const char *key, uint64_t def, uint64_t max, uint64_t *ret);
/* Reject unknown keys: allowed is NULL-terminated. */
int args_check_keys(Request *req, const char *const *allowed);
/* req's "argv" member ja as a strv: 1..max_args strings without NUL, max_bytes in all
 * (each counted with its terminator), argv[0] not empty. On error the request has failed
 * (invalid_request, naming req->op) and -EINVAL is returned. */
int request_argv(Request *req, json_t *ja, size_t max_args, size_t max_bytes, char ***ret);
/* base64 (libsodium, original variant with padding) helpers. */
char *base64_encode(const void *p, size_t n);
int base64_decode(const char *s, size_t len, size_t max, uint8_t **ret, size_t *ret_n);

/* The one home of the baseline: the root-only git directory (a pack, not loose objects) that
 * holds the workspace as uploaded, under p->state_dir (in a VM the scratch disk's root-owned
 * filesystem root, beside the agent's workspace; see src/guest/init/init.h INIT_SCRATCH_DIR).
 * Import writes it; export diffs against it. Caller frees. */
char *proxy_baseline_dir(Proxy *p);

/* git's last stderr line of the most recent failed git run of import/export ("" if none). */
const char *proxy_git_last_error(void);

/* Run git as root on the baseline repository with a fixed configuration (no hooks, fsmonitor,
 * pager, external diff; the policy's git hardening environment) and work tree work_tree.
 * stdin: feed(fd, userdata) writes it through a pipe (the child must not fill its stdout
 * meanwhile), else in_fd, else /dev/null. extra_env (NULL-terminated, at most 16) goes first.
 * Captures stdout up to max bytes when ret_out. -ENOSPC / -EIO / -EFBIG / feed's error. */
int proxy_git_exec(
        Proxy *p,
        const char *work_tree,
        int in_fd,
        int (*feed)(int fd, void *userdata),
        void *userdata,
        char *const *extra_env,
        char **args,
        size_t max,
        char **ret_out,
        size_t *ret_n);
/* Digests of the flagged files under the workspace's top-level .git (which git never shows):
 * {path: digest}. */
json_t *proxy_flag_manifest(Proxy *p);
/* The catalogue group of a path (patch-flags.h), or NULL. */
const char *proxy_flag_reason(const char *rel);
bool utf8_valid(const char *p, size_t n);
/* Put bytes into obj under key (UTF-8 string) or key_base64 when not valid UTF-8/has NUL. */
void json_set_bytes(json_t *obj, const char *key, const void *p, size_t n);
