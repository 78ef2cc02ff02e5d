/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus-node: the host daemon. Parses flags (and the node config file), loads the secret
 * files it names (never secrets on the command line), cleans what an earlier run left, then
 * serves the API and metrics until SIGTERM/SIGINT, when every pod is ended and cleaned.
 */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "api.h"
#include "cgroup.h"
#include "fd-util.h"
#include "image.h"
#include "log.h"
#include "net.h"
#include "config.h"
#include "node-util.h"
#include "node.h"
#include "nucleus-config.h"
#include "parse-util.h"
#include "pod.h"
#include "secrets.h"
#include "string-util.h"

static char *arg_config = NULL;

static void help(void) {
        printf("Usage: nucleus-node [OPTIONS]\n\n"
               "The Nucleus host daemon: pods, microVMs, the signed HTTP API and metrics.\n\n"
               "  --config PATH           node config (TOML); flags override it\n"
               "  --listen ADDR           API address (default 127.0.0.1:8080)\n"
               "  --metrics-listen ADDR   metrics address (default 127.0.0.1:9080; \"\" disables)\n"
               "  --state-dir DIR         state dir (default /var/lib/nucleus/node)\n"
               "  --images-dir DIR        guest images (default /var/lib/nucleus/images)\n"
               "  --driver NAME           default driver: qemu, firecracker, local (default qemu)\n"
               "  --accel NAME            auto, kvm or tcg (default auto)\n"
               "  --max-pods N            live pods at once (default 8)\n"
               "  --lease-grace SEC       leased pods end after SEC without a renewal (default 30)\n"
               "  --liveness-timeout SEC  a guest silent on its channel this long fails its pod "
               "(default 15)\n"
               "  --log-level LEVEL       err, warning, notice, info, debug (default info)\n"
               "  --node-key PATH         node API HMAC key file (64 hex)\n"
               "  --approver-pub PATH     approver Ed25519 public key file (64 hex)\n"
               "  --audit-key PATH        audit Ed25519 secret key file (128 hex)\n"
               "  --proxy-path PATH       host nucleus-tool-proxy (local driver)\n"
               "  --firecracker-path PATH firecracker binary; --jailer-path PATH the jailer\n"
               "  --version, --help\n\n"
               "Secrets are read from files only; no option takes a secret value.\n");
}

enum {
        OPT_CONFIG = 0x100,
        OPT_LISTEN,
        OPT_METRICS,
        OPT_STATE,
        OPT_IMAGES,
        OPT_DRIVER,
        OPT_ACCEL,
        OPT_MAX_PODS,
        OPT_LOG,
        OPT_NODE_KEY,
        OPT_APPROVER,
        OPT_AUDIT_KEY,
        OPT_PROXY,
        OPT_FC,
        OPT_JAILER,
        OPT_LEASE_GRACE,
        OPT_LIVENESS,
        OPT_VERSION,
        OPT_HELP,
};

static const struct option options[] = {
        { "config", required_argument, NULL, OPT_CONFIG },
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "metrics-listen", required_argument, NULL, OPT_METRICS },
        { "state-dir", required_argument, NULL, OPT_STATE },
        { "images-dir", required_argument, NULL, OPT_IMAGES },
        { "driver", required_argument, NULL, OPT_DRIVER },
        { "accel", required_argument, NULL, OPT_ACCEL },
        { "max-pods", required_argument, NULL, OPT_MAX_PODS },
        { "lease-grace", required_argument, NULL, OPT_LEASE_GRACE },
        { "liveness-timeout", required_argument, NULL, OPT_LIVENESS },
        { "log-level", required_argument, NULL, OPT_LOG },
        { "node-key", required_argument, NULL, OPT_NODE_KEY },
        { "approver-pub", required_argument, NULL, OPT_APPROVER },
        { "audit-key", required_argument, NULL, OPT_AUDIT_KEY },
        { "proxy-path", required_argument, NULL, OPT_PROXY },
        { "firecracker-path", required_argument, NULL, OPT_FC },
        { "jailer-path", required_argument, NULL, OPT_JAILER },
        { "version", no_argument, NULL, OPT_VERSION },
        { "help", no_argument, NULL, OPT_HELP },
        {},
};

static void set_str(char **dst, const char *v) {
        free(*dst);
        *dst = xstrdup(v);
}

/* The node config file is parsed by src/lib/spec (node_config_load: strict TOML, unknown keys
 * are errors); its values are copied over the defaults, then flags override them. */
static int apply_config_file(const char *path, NodeSettings *c) {
        _cleanup_free_ char *err = NULL;
        NodeConfig *f = NULL;
        int r;

        r = node_config_load(path, true, &f, &err);
        if (r < 0)
                return log_error_errno(r, "%s", err ?: "cannot load the node config");
        set_str(&c->listen, f->listen);
        set_str(&c->metrics_listen, f->metrics_listen);
        set_str(&c->state_dir, f->state_dir);
        set_str(&c->images_dir, f->images_dir);
        if (f->driver) {
                c->driver = vmm_driver_from_string(f->driver);
                if ((int) c->driver < 0) {
                        node_config_free(f);
                        return log_error_errno(
                                -EINVAL, "%s: pods.driver '%s' is not supported", path, f->driver);
                }
        }
        if (f->accel)
                set_str(&c->accel, f->accel);
        c->max_pods = f->max_pods;
        c->tcg_tb_mib = f->tcg_tb_mib;
        c->ksm = f->ksm;
        json_decref(c->pool_images);
        c->pool_images = json_incref(f->pool_images);
        c->pool_memory_budget_mib = f->pool_memory_budget_mib;
        c->pool_restore = !streq_ptr(f->pool_restore, "off");
        c->snapshots_max_count = f->snapshots_max_count;
        c->snapshots_max_bytes = f->snapshots_max_mib * 1024 * 1024;
        c->pool_network = f->pool_network;
        c->max_body_bytes = f->max_body_bytes;
        c->max_workspace_bytes = f->max_upload_bytes;
        c->max_tool_body_bytes = f->max_tool_body_bytes;
        c->default_timeout_sec = (unsigned) f->default_timeout_seconds;
        c->max_timeout_sec = (unsigned) f->max_timeout_seconds;
        c->lease_grace_sec = f->lease_grace_seconds;
        c->liveness_sec = f->liveness_timeout_seconds;
        c->keep_ended = f->keep_ended;
        c->keep_ended_sec = f->keep_ended_seconds;
        if (f->firecracker_binary && f->firecracker_binary[0] == '/')
                set_str(&c->firecracker_path, f->firecracker_binary);
        if (f->node_secret_file)
                set_str(&c->node_key_path, f->node_secret_file);
        if (f->approver_public_key_file)
                set_str(&c->approver_pub_path, f->approver_public_key_file);
        if (f->audit_signing_key_file)
                set_str(&c->audit_key_path, f->audit_signing_key_file);
        if (f->net_pool)
                set_str(&c->net_pool, f->net_pool);
        if (!isempty(f->net_dns_upstream))
                set_str(&c->net_dns_upstream, f->net_dns_upstream);
        c->net_dns_wildcard_names = f->net_dns_wildcard_names;
        node_config_free(f);
        return 0;
}

/* Two passes: find --config first, load it, then apply every flag over it. */
static int parse_argv(int argc, char **argv, NodeSettings *c) {
        int opt, r;

        opterr = 0;
        optind = 1;
        while ((opt = getopt_long(argc, argv, "", options, NULL)) >= 0)
                if (opt == OPT_CONFIG)
                        set_str(&arg_config, optarg);
        if (arg_config) {
                r = apply_config_file(arg_config, c);
                if (r < 0)
                        return r;
        }
        opterr = 1;
        optind = 1;
        while ((opt = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                uint32_t u;
                switch (opt) {
                case OPT_CONFIG:
                        break;
                case OPT_LISTEN:
                        set_str(&c->listen, optarg);
                        break;
                case OPT_METRICS:
                        set_str(&c->metrics_listen, optarg);
                        break;
                case OPT_STATE:
                        set_str(&c->state_dir, optarg);
                        break;
                case OPT_IMAGES:
                        set_str(&c->images_dir, optarg);
                        break;
                case OPT_DRIVER:
                        c->driver = vmm_driver_from_string(optarg);
                        if ((int) c->driver < 0) {
                                log_error("--driver: '%s' is not one of qemu, firecracker, local", optarg);
                                return -EINVAL;
                        }
                        break;
                case OPT_ACCEL:
                        if (!streq(optarg, "auto") && !streq(optarg, "kvm") && !streq(optarg, "tcg")) {
                                log_error("--accel: '%s' is not one of auto, kvm, tcg", optarg);
                                return -EINVAL;
                        }
                        set_str(&c->accel, optarg);
                        break;
                case OPT_MAX_PODS:
                        if (safe_atou32(optarg, &u) < 0 || u < 1 || u > 1024) {
                                log_error("--max-pods: '%s' is not a number in 1..1024", optarg);
                                return -EINVAL;
                        }
                        c->max_pods = u;
                        break;
                case OPT_LEASE_GRACE:
                case OPT_LIVENESS:
                        if (safe_atou32(optarg, &u) < 0 || u < 1 || u > 3600) {
                                log_error(
                                        "--%s: '%s' is not a number of seconds in 1..3600",
                                        opt == OPT_LEASE_GRACE ? "lease-grace" : "liveness-timeout",
                                        optarg);
                                return -EINVAL;
                        }
                        if (opt == OPT_LEASE_GRACE)
                                c->lease_grace_sec = u;
                        else
                                c->liveness_sec = u;
                        break;
                case OPT_LOG:
                        r = log_level_from_string(optarg);
                        if (r < 0) {
                                log_error(
                                        "--log-level: '%s' is not one of err, warning, notice, info, debug",
                                        optarg);
                                return -EINVAL;
                        }
                        log_set_max_level(r);
                        break;
                case OPT_NODE_KEY:
                        set_str(&c->node_key_path, optarg);
                        break;
                case OPT_APPROVER:
                        set_str(&c->approver_pub_path, optarg);
                        break;
                case OPT_AUDIT_KEY:
                        set_str(&c->audit_key_path, optarg);
                        break;
                case OPT_PROXY:
                        set_str(&c->proxy_path, optarg);
                        break;
                case OPT_FC:
                        set_str(&c->firecracker_path, optarg);
                        break;
                case OPT_JAILER:
                        set_str(&c->jailer_path, optarg);
                        break;
                case OPT_VERSION:
                        printf("nucleus-node %s\n", NUCLEUS_VERSION);
                        return 0;
                case OPT_HELP:
                        help();
                        return 0;
                case '?':
                        log_error("unknown option or missing value (see --help)");
                        return -EINVAL;
                default:
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                log_error("unexpected argument '%s' (see --help)", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static int load_secrets(Node *n) {
        NodeSettings *c = &n->config;
        _cleanup_free_ char *err = NULL;
        int r;

        if (!c->node_key_path)
                return log_error_errno(
                        -ENOKEY,
                        "No node key: set node_key (config) or --node-key PATH "
                        "(a 0600 file of 64 hex characters; 'nucleus setup' creates it)");
        r = secret_load_file(c->node_key_path, n->node_key, AUTH_KEY_SIZE, true, &err);
        if (r < 0)
                return log_error_errno(r, "Cannot load the node key: %s", err ?: "?");
        if (!c->audit_key_path)
                return log_error_errno(
                        -ENOKEY,
                        "No audit signing key: set audit_key (config) or --audit-key PATH "
                        "(a 0600 file of 128 hex characters; 'nucleus setup' creates it)");
        err = mfree(err);
        r = secret_load_file(c->audit_key_path, n->audit_key, 64, true, &err);
        if (r < 0)
                return log_error_errno(r, "Cannot load the audit key: %s", err ?: "?");
        n->have_audit_key = true;
        if (c->approver_pub_path) {
                err = mfree(err);
                r = secret_load_file(c->approver_pub_path, n->approver_pub, 32, false, &err);
                if (r < 0)
                        return log_error_errno(r, "Cannot load the approver public key: %s", err ?: "?");
                n->have_approver_pub = true;
        } else
                log_warning("No approver public key configured: every approval will be refused "
                            "(approver_public_key)");
        return 0;
}

static int mkdir_mode(const char *p, mode_t mode) {
        struct stat st;
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
                return -errno;
        if (lstat(p, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        if (chmod(p, mode) < 0)
                return -errno;
        return 0;
}

static void pick_accel(Node *n) {
        const char *want = n->config.accel;
        if (n->config.driver == VMM_DRIVER_LOCAL) {
                n->accel_in_use = xstrdup("none");
                return;
        }
        if (streq(want, "kvm") || streq(want, "tcg")) {
                n->accel_in_use = xstrdup(want);
                return;
        }
        /* auto: a bounded probe boot decides (a /dev/kvm that exists is not proof it works). */
        _cleanup_free_ char *k = xasprintf("%s/" IMAGE_QEMU_KERNEL, n->config.images_dir ?: "");
        _cleanup_free_ char *i = xasprintf("%s/" IMAGE_INITRAMFS, n->config.images_dir ?: "");
        _cleanup_free_ char *reason = NULL;
        ImageAccel a = IMAGE_ACCEL_TCG;
        if (access(k, R_OK) >= 0 && access(i, R_OK) >= 0 &&
            image_kvm_probe("/usr/bin/qemu-system-x86_64", k, i, IMAGE_KVM_PROBE_TIMEOUT, &a, &reason) >= 0)
                log_info("Acceleration: %s (%s)", image_accel_to_string(a), reason ?: "probe");
        else
                log_info("Acceleration: tcg (no images to probe KVM with)");
        n->accel_in_use = xstrdup(image_accel_to_string(a));
}

static void node_settings_done(NodeSettings *c) {
        char **strs[] = { &c->listen,        &c->metrics_listen,   &c->state_dir,         &c->images_dir,
                          &c->accel,         &c->node_key_path,    &c->approver_pub_path, &c->audit_key_path,
                          &c->proxy_path,    &c->firecracker_path, &c->jailer_path,       &c->vmm_user,
                          &c->net_state_dir, &c->net_pool,         &c->net_dns_upstream };
        for (size_t i = 0; i < ELEMENTSOF(strs); i++)
                *strs[i] = mfree(*strs[i]);
        json_decref(c->pool_images);
        c->pool_images = NULL;
}

/* Everything main allocated, on every return path. */
static void node_donep(Node *n) {
        node_settings_done(&n->config);
        n->cgroup_root = mfree(n->cgroup_root);
        n->accel_in_use = mfree(n->accel_in_use);
        n->snapshots_busy = strv_free(n->snapshots_busy);
        arg_config = mfree(arg_config);
}

static void node_config_defaults(NodeSettings *c) {
        c->listen = xstrdup("127.0.0.1:8080");
        c->metrics_listen = xstrdup("127.0.0.1:9080");
        c->state_dir = xstrdup("/var/lib/nucleus/node");
        c->images_dir = xstrdup("/var/lib/nucleus/images");
        c->driver = VMM_DRIVER_QEMU;
        c->accel = xstrdup("auto");
        c->max_pods = 8;
        c->proxy_path = xstrdup(NUCLEUS_LIBEXECDIR "/nucleus-tool-proxy");
        c->firecracker_path = xstrdup("/usr/bin/firecracker");
        c->vmm_user = xstrdup("nucleus-vmm");
        c->max_body_bytes = 2 * 1024 * 1024;
        c->max_workspace_bytes = 256 * 1024 * 1024;
        c->max_tool_body_bytes = 64 * 1024 * 1024;
        c->max_patch_bytes = 64 * 1024 * 1024;
        c->boot_timeout_sec = 180;
        c->tool_timeout_sec = 600;
        c->default_timeout_sec = 3600;
        c->lease_grace_sec = 30;
        c->liveness_sec = 15;
        c->keep_ended = 100;
        c->keep_ended_sec = 7 * 24 * 3600;
        c->max_timeout_sec = 86400;
        c->default_vcpus = 1;
        c->default_memory_mib = 512;
        c->tcg_tb_mib = 32;
        c->default_scratch_mib = 1024;
        c->pool_images = json_object(); /* no warm pool unless [pool.images] names one */
        c->pool_memory_budget_mib = 4096;
        c->pool_restore = true;
        c->snapshots_max_count = 32;
        c->snapshots_max_bytes = UINT64_C(16384) * 1024 * 1024;
}

int main(int argc, char **argv) {
        _cleanup_(node_donep) Node node = { .wake_fd = -EBADF };
        _cleanup_free_ char *pods_dir = NULL, *why = NULL;
        ApiServer *api = NULL, *metrics = NULL;
        sigset_t mask;
        int r, sig = 0;

        log_set_prefix("nucleus-node");
        node_config_defaults(&node.config);
        r = parse_argv(argc, argv, &node.config);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        pthread_mutex_init(&node.lock, NULL);

        r = node_raise_nofile(&node.nofile_soft, &node.nofile_hard);
        if (r < 0)
                log_warning_errno(r, "Cannot raise the open-files soft limit to the hard limit: %m");
        else
                log_debug("Open files limit: %" PRIu64 " (hard %" PRIu64 ")", node.nofile_soft, node.nofile_hard);

        /* Block the signals we wait for before any thread starts, so all threads inherit it. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);

        if (node.config.state_dir[0] != '/')
                return log_error_errno(
                               -EINVAL, "--state-dir must be an absolute path: %s", node.config.state_dir),
                       1;
        r = load_secrets(&node);
        if (r < 0)
                return 1;
        r = auth_nonce_cache_new(0, &node.nonces);
        if (r < 0)
                return log_error_errno(r, "Cannot create the nonce cache: %m"), 1;

        if (!node.config.net_state_dir)
                node.config.net_state_dir = xasprintf("%s/net", node.config.state_dir);
        node.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (node.wake_fd < 0)
                return log_error_errno(-errno, "eventfd: %m"), 1;

        /* The VMM's user: dedicated when it exists, else root with QEMU's -sandbox. */
        struct passwd *pw = node.config.vmm_user ? getpwnam(node.config.vmm_user) : NULL;
        if (pw && pw->pw_uid != 0) {
                node.vmm_uid = pw->pw_uid;
                node.vmm_gid = pw->pw_gid;
                log_info("VMMs run as user %s (%u)", node.config.vmm_user, (unsigned) pw->pw_uid);
        } else
                log_notice(
                        "No '%s' user: VMMs run as root, confined by QEMU's -sandbox only ('nucleus setup' "
                        "creates the user)",
                        node.config.vmm_user ?: "nucleus-vmm");

        /* With a dedicated VMM user, the state dirs are traversable (not listable) by others so
         * QEMU can reach its own pod's vm/ dir; pod dirs are 0710 root:<vmm group>. */
        pods_dir = xasprintf("%s/pods", node.config.state_dir);
        if ((r = mkdir_mode(node.config.state_dir, node.vmm_uid ? 0711 : 0700)) < 0 ||
            (r = mkdir_mode(pods_dir, node.vmm_uid ? 0711 : 0700)) < 0)
                return log_error_errno(r, "Cannot create the state dir %s: %m", node.config.state_dir), 1;

        r = cgroup_node_setup(NULL, &node.cgroup_root, &why);
        if (r <= 0)
                log_notice(
                        "cgroup v2 limits unavailable, VMMs run without memory/cpu/pids limits: %s",
                        why ?: strerror(r < 0 ? -r : EOPNOTSUPP));

        if (node.config.driver == VMM_DRIVER_LOCAL)
                log_warning("Default driver 'local': pods run in bubblewrap on the host kernel, weaker "
                            "isolation than a microVM");
        pick_accel(&node);

        /* What an earlier run left behind: pod dirs with live processes, sockets, disks; netns. */
        r = pod_cleanup_stale(&node);
        if (r > 0)
                log_info("Cleaned %d pod(s) left by an earlier run", r);
        pod_snapshots_cleanup_stale(&node);
        {
                NetConfig nc = NET_CONFIG_NULL;
                nc.state_dir = node.config.net_state_dir;
                nc.pool = node.config.net_pool;
                r = net_cleanup_stale(&nc, false);
                if (r > 0)
                        log_info("Cleaned the networks of %d pod(s) left by an earlier run", r);
                else if (r < 0)
                        log_warning_errno(r, "Stale network cleanup failed: %m");
        }

        r = pod_supervisor_start(&node);
        if (r < 0)
                return log_error_errno(r, "Cannot start the supervisor: %m"), 1;
        r = pod_pool_start(&node);
        if (r < 0)
                log_warning_errno(r, "Cannot start the warm pool, creates boot cold: %m");
        r = api_start(&node, node.config.listen, &api);
        if (r < 0) {
                log_error_errno(r, "Cannot listen on %s: %m", node.config.listen);
                goto finish;
        }
        if (!isempty(node.config.metrics_listen)) {
                r = api_metrics_start(&node, node.config.metrics_listen, &metrics);
                if (r < 0) {
                        log_error_errno(r, "Cannot listen for metrics on %s: %m", node.config.metrics_listen);
                        goto finish;
                }
        }
        log_info(
                "nucleus-node %s listening on %s (metrics %s), driver %s, accel %s, state %s",
                NUCLEUS_VERSION,
                node.config.listen,
                isempty(node.config.metrics_listen) ? "off" : node.config.metrics_listen,
                vmm_driver_to_string(node.config.driver),
                node.accel_in_use,
                node.config.state_dir);

        for (;;) {
                if (sigwait(&mask, &sig) != 0)
                        continue;
                if (sig == SIGTERM || sig == SIGINT)
                        break;
        }
        log_info("Received %s: ending every pod", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        r = 0;

finish:
        /* Pods end before the API stops: stopping the API waits for every connection thread,
         * and a tool call in flight (a command that runs for minutes) holds its thread until
         * its pod ends. From here on creates are refused (shutting_down), so none slips in
         * between. */
        pthread_mutex_lock(&node.lock);
        node.shutting_down = true;
        pthread_mutex_unlock(&node.lock);
        pod_pool_stop(&node);
        log_debug("Pool stopped; ending pods");
        pod_terminate_all(&node, "node shutdown");
        log_debug("Pods ended; stopping the API");
        api = api_stop(api);
        metrics = api_stop(metrics);
        log_debug("API stopped; stopping the supervisor");
        pod_supervisor_stop(&node);
        log_debug("Supervisor stopped; freeing pods");
        pthread_mutex_lock(&node.lock);
        Pod **pods = TAKE_PTR(node.pods);
        size_t n = node.n_pods;
        node.n_pods = 0;
        pthread_mutex_unlock(&node.lock);
        for (size_t i = 0; i < n; i++)
                pod_unref(pods[i]);
        free(pods);
        auth_nonce_cache_free(node.nonces);
        node.wake_fd = safe_close(node.wake_fd);
        explicit_bzero_safe(node.node_key, sizeof node.node_key);
        explicit_bzero_safe(node.audit_key, sizeof node.audit_key);

        return r < 0 ? 1 : 0;
}
