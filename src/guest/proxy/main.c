/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus-tool-proxy: the in-guest enforcement point. Parses its command line (from guest
 * init or the local driver: trusted), opens the workspace and the channel transport, and runs
 * the single-threaded epoll loop. Everything from the channel is untrusted (proxy-*.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "log.h"
#include "parse-util.h"
#include "proxy.h"
#include "sandbox.h"
#include "string-util.h"

static char *arg_channel_dev = NULL;
static char *arg_unix = NULL;
static uint32_t arg_vsock_port = 0;
static int arg_fd = -1;
static bool arg_guest_system = false;
static char *arg_workspace = NULL;
static char *arg_agent_user = NULL;
static char *arg_state_dir = NULL;
static char *arg_fetch_helper = NULL;
static char *arg_fetch_libdir = NULL;

int proxy_channel_start(Proxy *p);
int proxy_run_loop(Proxy *p);

static void help(void) {
        printf("nucleus-tool-proxy — policy-enforcing tool proxy (runs inside the pod's VM)\n\n"
               "Channel (exactly one):\n"
               "  --channel-dev PATH   virtio-serial port (e.g. /dev/virtio-ports/org.nucleus.channel.0)\n"
               "  --vsock-port N       listen on AF_VSOCK port N (any CID)\n"
               "  --unix PATH          listen on a unix socket (created 0600), one peer at a time\n"
               "  --fd N               an inherited, connected stream fd\n"
               "Options:\n"
               "  --workspace DIR      workspace root (default /workspace)\n"
               "  --agent-user U       NAME or UID:GID commands run as (default agent, else 1000:1000)\n"
               "  --state-dir DIR      root-only directory outside the workspace (default /run/nucleus)\n"
               "  --fetch-helper PATH  nucleus-web-fetch helper for web_fetch (default: none)\n"
               "  --guest-system       this proxy owns the system it runs on (the guest init passes\n"
               "                       it): configure/reconfigure may set the wall clock, reseed\n"
               "                       the CRNG, address the NIC and write the resolver. Never on\n"
               "                       a host: those are the host's\n"
               "  --fetch-libdir DIR   run the helper through DIR/ld-linux-x86-64.so.2 with DIR's\n"
               "                       libraries (the guest's own copy, independent of the rootfs)\n"
               "  --log-level LEVEL    err|warning|notice|info|debug\n"
               "  -h, --help\n");
}

/* Look NAME up in /etc/passwd without NSS (the binary is static). */
static int lookup_user(const char *name, uid_t *ret_uid, gid_t *ret_gid, char **ret_home) {
        _cleanup_fclose_ FILE *f = fopen("/etc/passwd", "re");
        char line[1024];
        if (!f)
                return -errno;
        while (fgets(line, sizeof line, f)) {
                char *fields[7] = {}, *save = NULL, *s = line;
                size_t n = 0;
                line[strcspn(line, "\n")] = 0;
                for (char *t = strsep(&s, ":"); t && n < 7; t = strsep(&s, ":"))
                        fields[n++] = t;
                (void) save;
                if (n < 6 || !streq(fields[0], name))
                        continue;
                uint32_t u, g;
                if (safe_atou32(fields[2], &u) < 0 || safe_atou32(fields[3], &g) < 0)
                        return -EINVAL;
                *ret_uid = u;
                *ret_gid = g;
                *ret_home = xstrdup(fields[5]);
                return 0;
        }
        return -ENOENT;
}

static int parse_agent(Proxy *p, const char *spec) {
        const char *colon = strchr(spec, ':');
        if (colon) {
                _cleanup_free_ char *u = xstrndup(spec, (size_t) (colon - spec));
                uint32_t uid, gid;
                if (safe_atou32(u, &uid) < 0 || safe_atou32(colon + 1, &gid) < 0)
                        return -EINVAL;
                p->agent_uid = uid;
                p->agent_gid = gid;
                p->agent_home = xstrdup(p->workspace_path);
        } else {
                char *home = NULL;
                int r = lookup_user(spec, &p->agent_uid, &p->agent_gid, &home);
                if (r < 0) {
                        if (!streq(spec, "agent"))
                                return r;
                        /* Default user missing from the image: use the documented ids. */
                        p->agent_uid = 1000;
                        p->agent_gid = 1000;
                        home = xstrdup(p->workspace_path);
                }
                p->agent_home = home;
        }
        if (p->agent_uid == 0 || p->agent_gid == 0)
                return -EPERM; /* commands never run as root */
        return 0;
}

static int parse_argv(int argc, char **argv) {
        enum {
                ARG_CHANNEL_DEV = 0x100,
                ARG_VSOCK,
                ARG_UNIX,
                ARG_FD,
                ARG_WORKSPACE,
                ARG_AGENT,
                ARG_STATE,
                ARG_FETCH,
                ARG_FETCH_LIBDIR,
                ARG_LOG,
                ARG_GUEST_SYSTEM
        };
        static const struct option options[] = {
                { "channel-dev", required_argument, NULL, ARG_CHANNEL_DEV },
                { "vsock-port", required_argument, NULL, ARG_VSOCK },
                { "unix", required_argument, NULL, ARG_UNIX },
                { "fd", required_argument, NULL, ARG_FD },
                { "workspace", required_argument, NULL, ARG_WORKSPACE },
                { "agent-user", required_argument, NULL, ARG_AGENT },
                { "state-dir", required_argument, NULL, ARG_STATE },
                { "fetch-helper", required_argument, NULL, ARG_FETCH },
                { "fetch-libdir", required_argument, NULL, ARG_FETCH_LIBDIR },
                { "log-level", required_argument, NULL, ARG_LOG },
                { "guest-system", no_argument, NULL, ARG_GUEST_SYSTEM },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c, n = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_CHANNEL_DEV:
                        arg_channel_dev = optarg, n++;
                        break;
                case ARG_VSOCK:
                        if (safe_atou32(optarg, &arg_vsock_port) < 0 || arg_vsock_port == 0) {
                                log_error("--vsock-port: '%s' is not a port number", optarg);
                                return -EINVAL;
                        }
                        n++;
                        break;
                case ARG_UNIX:
                        arg_unix = optarg, n++;
                        break;
                case ARG_GUEST_SYSTEM:
                        arg_guest_system = true;
                        break;
                case ARG_FD: {
                        int32_t v;
                        if (safe_atoi32(optarg, &v) < 0 || v < 0 || fcntl(v, F_GETFD) < 0) {
                                log_error("--fd: '%s' is not an open file descriptor", optarg);
                                return -EINVAL;
                        }
                        arg_fd = v, n++;
                        break;
                }
                case ARG_WORKSPACE:
                        arg_workspace = optarg;
                        break;
                case ARG_AGENT:
                        arg_agent_user = optarg;
                        break;
                case ARG_STATE:
                        arg_state_dir = optarg;
                        break;
                case ARG_FETCH:
                        arg_fetch_helper = optarg;
                        break;
                case ARG_FETCH_LIBDIR:
                        arg_fetch_libdir = optarg;
                        break;
                case ARG_LOG: {
                        int l = log_level_from_string(optarg);
                        if (l < 0) {
                                log_error("--log-level: unknown level '%s'", optarg);
                                return -EINVAL;
                        }
                        log_set_max_level(l);
                        break;
                }
                case 'h':
                        help();
                        return 0;
                case '?':
                        return -EINVAL;
                default:
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                log_error("Unexpected argument '%s'", argv[optind]);
                return -EINVAL;
        }
        if (n != 1) {
                log_error("Exactly one of --channel-dev, --vsock-port, --unix, --fd is required");
                return -EINVAL;
        }
        return 1;
}

int main(int argc, char **argv) {
        Proxy proxy = { .workspace_fd = -EBADF, .epoll_fd = -EBADF, .conn_fd = -EBADF };
        Proxy *p = &proxy;
        int r;

        log_set_prefix("nucleus-tool-proxy");
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;

        if (geteuid() != 0)
                log_warning("Not running as root: commands cannot switch to the agent user");
        proxy_init_defaults(p);

        /* Workspace root: an absolute path without trailing slash; the fd is the capability. */
        const char *ws = arg_workspace ?: "/workspace";
        if (ws[0] != '/') {
                log_error("--workspace must be an absolute path");
                return 2;
        }
        p->workspace_path = xstrdup(ws);
        while (strlen(p->workspace_path) > 1 && endswith(p->workspace_path, "/"))
                p->workspace_path[strlen(p->workspace_path) - 1] = 0;
        p->workspace_fd = open(p->workspace_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (p->workspace_fd < 0)
                return log_error_errno(errno, "Cannot open workspace %s: %m", p->workspace_path), 1;
        p->workspace_real = realpath(p->workspace_path, NULL);
        if (!p->workspace_real)
                return log_error_errno(errno, "Cannot resolve workspace %s: %m", p->workspace_path), 1;

        p->have_proc_fd = access("/proc/self/fd", X_OK) == 0;
        if (!p->have_proc_fd)
                log_warning("/proc is not mounted: file operations will not follow any symlink");

        r = parse_agent(p, arg_agent_user ?: "agent");
        if (r < 0)
                return log_error_errno(
                               r, "--agent-user %s: unknown user or root (%m)", arg_agent_user ?: "agent"),
                       2;

        p->state_dir = xstrdup(arg_state_dir ?: "/run/nucleus");
        if (startswith(p->state_dir, p->workspace_real) || startswith(p->state_dir, p->workspace_path)) {
                log_error("--state-dir must be outside the workspace");
                return 2;
        }
        if (mkdir(p->state_dir, 0700) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Cannot create state dir %s: %m", p->state_dir), 1;
        (void) chmod(p->state_dir, 0700);
        if (arg_fetch_helper)
                p->fetch_helper = xstrdup(arg_fetch_helper);
        if (arg_fetch_libdir)
                p->fetch_libdir = xstrdup(arg_fetch_libdir);
        p->guest_system = arg_guest_system;

        if (sandbox_landlock_abi() < 0)
                log_warning("Landlock is not available on this kernel: commands are confined by uid, "
                            "rlimits and seccomp only");

        /* A peer vanishing must not kill us; children get default dispositions back. */
        (void) signal(SIGPIPE, SIG_IGN);

        TransportKind kind = arg_channel_dev ? TRANSPORT_CHARDEV
                : arg_vsock_port             ? TRANSPORT_VSOCK
                : arg_unix                   ? TRANSPORT_UNIX
                                             : TRANSPORT_FD;
        r = transport_new(kind, arg_channel_dev ?: arg_unix, arg_vsock_port, arg_fd, &p->transport);
        if (r < 0)
                return log_error_errno(r, "Bad channel arguments: %m"), 2;
        r = transport_setup(p->transport);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the channel: %m"), 1;

        p->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (p->epoll_fd < 0)
                return log_error_errno(errno, "epoll_create1: %m"), 1;
        /* Which implementation of each grammar-parsed program the image holds: read once, before
         * the channel opens, so that configure (on a pooled pod: the whole claim) does not wait
         * for it. The image is read-only and no agent command has run yet. */
        proxy_resolve_implementations(RUN_DEFAULT_PATH);
        r = proxy_channel_start(p);
        if (r < 0)
                return log_error_errno(r, "Cannot open the channel: %m"), 1;
        log_info(
                "Ready: workspace %s, agent %u:%u",
                p->workspace_path,
                (unsigned) p->agent_uid,
                (unsigned) p->agent_gid);

        r = proxy_run_loop(p);
        proxy_handle_peer_gone(p);
        transport_free(p->transport);
        return r < 0 ? 1 : 0;
}
