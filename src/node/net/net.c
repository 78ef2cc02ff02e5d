/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-pod network lifecycle: address allocation, namespace, links, nftables (pod namespace and
 * host), dnsmasq, drift check, teardown and stale cleanup. Runs as root in nucleus-node. Trusts
 * the parsed NetPolicy (net-entry.c validated it) and its own state directory; trusts nothing
 * found on the machine by name alone (processes are matched by namespace inode before a kill).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "net-exec.h"
#include "net-dnsfilter.h"
#include "net-internal.h"
#include "parse-util.h"
#include "string-util.h"

#define NET_DEFAULT_STATE_DIR "/var/lib/nucleus/net"
#define NET_DEFAULT_POOL "10.201.0.0/16"
#define NET_NETNS_DIR "/run/netns"

static inline void closedirp_net(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

struct NetPod {
        NetPlan plan;
        NetPodInfo info;
        char netns_path[64];
        char gw[INET_ADDRSTRLEN];
        char guest[INET_ADDRSTRLEN];
        char cmdline[128];
        char host_table_full[48];
        int netns_fd;
        PidRef dnsmasq;
        NetDnsProxy *dns_filter; /* the guest's DNS goes here first; dnsmasq is behind it */
        char *state_dir;         /* <state>/pods/<short> */
        char *alloc_path;
        char *baseline_pod;  /* normalised `nft -j list ruleset` in the namespace */
        char *baseline_host; /* normalised `nft -j list table inet <host_table>` */
        /* drift monitor (net_pod_monitor_start); joined by teardown */
        bool monitor_running;
        pthread_t monitor;
        int monitor_stop_fd; /* eventfd: written by teardown to stop the thread */
        uint64_t monitor_period_usec;
        NetDriftCallback monitor_cb;
        void *monitor_userdata;
};

static int set_err(char **reterr, int r, const char *fmt, ...) _printf_(3, 4);
static int set_err(char **reterr, int r, const char *fmt, ...) {
        if (reterr && !*reterr) {
                va_list ap;
                va_start(ap, fmt);
                *reterr = xvasprintf(fmt, ap);
                va_end(ap);
        }
        return r;
}

static const char *cfg_state_dir(const NetConfig *c) {
        return c && c->state_dir ? c->state_dir : NET_DEFAULT_STATE_DIR;
}
static const char *cfg_pool(const NetConfig *c) {
        return c && c->pool ? c->pool : NET_DEFAULT_POOL;
}

/* First IPv4 nameserver in /etc/resolv.conf that is not loopback (the namespace cannot reach
 * the host's loopback). */
static int resolv_conf_upstream(struct in_addr *ret) {
        _cleanup_free_ char *data = NULL;
        int r = read_full_file_at(AT_FDCWD, "/etc/resolv.conf", 1U << 20, &data, NULL);
        if (r < 0)
                return r;
        char *save = NULL;
        for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *v = startswith(line, "nameserver");
                struct in_addr a;
                if (!v || (*v != ' ' && *v != '\t'))
                        continue;
                v += strspn(v, " \t");
                v[strcspn(v, " \t#;")] = 0;
                if (inet_pton(AF_INET, v, &a) != 1)
                        continue;
                if ((ntohl(a.s_addr) >> 24) == 127)
                        continue;
                *ret = a;
                return 0;
        }
        return -ENOENT;
}

/* True if any address on the host lies inside [base, base+8). */
static bool block_in_use_on_host(uint32_t base) {
        struct ifaddrs *ifa = NULL;
        bool used = false;
        if (getifaddrs(&ifa) < 0)
                return true; /* cannot tell: do not use it */
        for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
                if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
                        continue;
                uint32_t a = ntohl(((struct sockaddr_in *) i->ifa_addr)->sin_addr.s_addr);
                if (a >= base && a < base + 8)
                        used = true;
        }
        freeifaddrs(ifa);
        return used;
}

/* Claim a free /29 block: <state>/alloc/<index> created O_EXCL holding the pod id. The first
 * probe is derived from the pod id, so a pod's block is usually predictable. */
static int alloc_claim(
        NetPod *pod, const char *state_dir, const char *pod_id, uint32_t base, unsigned prefix, char **reterr) {
        _cleanup_free_ char *dir = xasprintf("%s/alloc", state_dir);
        uint32_t n = net_pool_blocks(prefix);
        uint32_t start;
        int r;

        r = mkdir_p_at(AT_FDCWD, dir, 0700);
        if (r < 0)
                return set_err(reterr, r, "cannot create %s: %s", dir, strerror(-r));
        if (n == 0)
                return set_err(reterr, -EINVAL, "pool has no /29 block");
        (void) sscanf(pod->plan.short_id, "%8x", &start);
        for (uint32_t k = 0; k < n; k++) {
                uint32_t idx = (start + k) % n;
                _cleanup_free_ char *p = xasprintf("%s/%u", dir, idx);
                _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0) {
                        if (errno == EEXIST)
                                continue;
                        return set_err(reterr, -errno, "cannot create %s: %m", p);
                }
                if (block_in_use_on_host(base + 8U * idx)) {
                        (void) unlink(p); /* someone else (another node?) uses it */
                        continue;
                }
                _cleanup_free_ char *content = xasprintf("%s\n", pod_id);
                r = loop_write(fd, content, strlen(content));
                if (r < 0) {
                        (void) unlink(p);
                        return set_err(reterr, r, "cannot write %s: %s", p, strerror(-r));
                }
                r = net_plan_addresses(&pod->plan, base, prefix, idx);
                if (r < 0) {
                        (void) unlink(p);
                        return set_err(reterr, r, "block %u outside the pool", idx);
                }
                pod->alloc_path = TAKE_PTR(p);
                return 0;
        }
        return set_err(reterr, -ENOSPC, "network pool exhausted (%u pods of /29): enlarge [net] pool", n);
}

static int nft_apply(int netns_fd, const char *ruleset, char **reterr) {
        const char *nft = net_find_program("nft");
        if (!nft)
                return set_err(reterr, -ENOENT, "nft not found (install nftables)");
        char *argv[] = { (char *) nft, (char *) "-f", (char *) "-", NULL };
        return net_run_ok(netns_fd, argv, ruleset, reterr);
}

static int nft_snapshot(int netns_fd, const char *table, char **ret, char **reterr) {
        const char *nft = net_find_program("nft");
        _cleanup_free_ char *out = NULL, *err = NULL;
        int r;

        if (!nft)
                return set_err(reterr, -ENOENT, "nft not found");
        char *argv_rs[] = { (char *) nft, (char *) "-j", (char *) "list", (char *) "ruleset", NULL };
        char *argv_t[] = { (char *) nft,   (char *) "-j", (char *) "list", (char *) "table", (char *) "inet",
                           (char *) table, NULL };
        r = net_run(netns_fd, table ? argv_t : argv_rs, NULL, &out, &err);
        if (r < 0)
                return set_err(reterr, r, "cannot run nft: %s", strerror(-r));
        if (r != 0)
                return set_err(
                        reterr, -EIO, "nft list %s failed: %s", table ? table : "ruleset", err ? err : "");
        char *norm = net_ruleset_normalize(out, strlen(out));
        if (!norm)
                return set_err(reterr, -EBADMSG, "cannot parse nft -j output");
        *ret = norm;
        return 0;
}

static int ip_batch(int netns_fd, const char *batch, char **reterr) {
        const char *ip = net_find_program("ip");
        if (!ip)
                return set_err(reterr, -ENOENT, "ip not found (install iproute2)");
        char *argv[] = { (char *) ip, (char *) "-batch", (char *) "-", NULL };
        return net_run_ok(netns_fd, argv, batch, reterr);
}

static int netns_add(const char *name, char **reterr) {
        const char *ip = net_find_program("ip");
        if (!ip)
                return set_err(reterr, -ENOENT, "ip not found (install iproute2)");
        char *argv[] = { (char *) ip, (char *) "netns", (char *) "add", (char *) name, NULL };
        return net_run_ok(-1, argv, NULL, reterr);
}

static int netns_del(const char *name) {
        const char *ip = net_find_program("ip");
        _cleanup_free_ char *p = xasprintf(NET_NETNS_DIR "/%s", name);
        if (!ip)
                return -ENOENT;
        if (access(p, F_OK) < 0)
                return 0;
        char *argv[] = { (char *) ip, (char *) "netns", (char *) "del", (char *) name, NULL };
        return net_run_ok(-1, argv, NULL, NULL);
}

static int link_del(const char *name) {
        const char *ip = net_find_program("ip");
        _cleanup_free_ char *p = xasprintf("/sys/class/net/%s", name);
        if (!ip)
                return -ENOENT;
        if (access(p, F_OK) < 0)
                return 0;
        char *argv[] = { (char *) ip, (char *) "link", (char *) "del", (char *) name, NULL };
        return net_run_ok(-1, argv, NULL, NULL);
}

static int host_table_del(const char *table) {
        const char *nft = net_find_program("nft");
        _cleanup_free_ char *out = NULL;
        if (!nft)
                return -ENOENT;
        char *argv_l[] = { (char *) nft,    (char *) "list", (char *) "table",
                           (char *) "inet", (char *) table,  NULL };
        if (net_run(-1, argv_l, NULL, &out, NULL) != 0)
                return 0; /* no such table */
        char *argv[] = { (char *) nft,    (char *) "delete", (char *) "table",
                         (char *) "inet", (char *) table,    NULL };
        return net_run_ok(-1, argv, NULL, NULL);
}

/* SIGKILL every process whose network namespace is the one at path (matched by dev+inode, not by
 * name or pid file). Returns the number killed. */
static int kill_netns_processes(const char *netns_path) {
        struct stat ns;
        _cleanup_(closedirp_net) DIR *d = NULL;
        int n = 0;

        if (stat(netns_path, &ns) < 0)
                return 0;
        d = opendir("/proc");
        if (!d)
                return -errno;
        for (struct dirent *de; (de = readdir(d));) {
                uint32_t pid;
                struct stat st;
                char p[64];
                if (safe_atou32(de->d_name, &pid) < 0 || pid <= 1 || (pid_t) pid == getpid())
                        continue;
                (void) snprintf(p, sizeof(p), "/proc/%u/ns/net", pid);
                if (stat(p, &st) < 0)
                        continue;
                if (st.st_dev == ns.st_dev && st.st_ino == ns.st_ino) {
                        (void) kill((pid_t) pid, SIGKILL);
                        n++;
                }
        }
        return n;
}

static void monitor_stop(NetPod *pod) {
        if (!pod->monitor_running)
                return;
        uint64_t one = 1;
        (void) !write(pod->monitor_stop_fd, &one, sizeof(one));
        if (pthread_equal(pthread_self(), pod->monitor))
                (void) pthread_detach(pod->monitor); /* called from the callback: cannot join */
        else
                (void) pthread_join(pod->monitor, NULL);
        pod->monitor_running = false;
}

static void pod_free(NetPod *pod) {
        if (!pod)
                return;
        monitor_stop(pod);
        pod->monitor_stop_fd = safe_close(pod->monitor_stop_fd);
        pod->dns_filter = net_dns_proxy_stop(pod->dns_filter);
        pod->netns_fd = safe_close(pod->netns_fd);
        pidref_kill_and_wait(&pod->dnsmasq);
        free(pod->state_dir);
        free(pod->alloc_path);
        free(pod->baseline_pod);
        free(pod->baseline_host);
        free(pod);
}

/* A dnsmasq that outlived its namespace (the namespace is gone but the process is not): found
 * by its pid file, killed only if its command line names this pod's state dir. */
static void kill_dnsmasq_by_pidfile(const char *pod_state_dir) {
        _cleanup_free_ char *pf = xasprintf("%s/dnsmasq.pid", pod_state_dir), *data = NULL, *cmd = NULL,
                            *cmdpath = NULL;
        size_t n = 0;
        uint32_t pid;

        if (read_full_file_at(AT_FDCWD, pf, 64, &data, NULL) < 0)
                return;
        data[strcspn(data, "\n")] = 0;
        if (safe_atou32(data, &pid) < 0 || pid <= 1)
                return;
        cmdpath = xasprintf("/proc/%u/cmdline", pid);
        if (read_full_file_at(AT_FDCWD, cmdpath, 1U << 16, &cmd, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++)
                if (cmd[i] == 0)
                        cmd[i] = ' ';
        if (strstr(cmd, "dnsmasq") && strstr(cmd, pod_state_dir))
                (void) kill((pid_t) pid, SIGKILL);
}

/* Remove everything named by plan; used by teardown, failed setup and stale cleanup. */
static int plan_remove(const NetPlan *plan, const char *pod_state_dir, const char *alloc_path) {
        _cleanup_free_ char *nsp = xasprintf(NET_NETNS_DIR "/%s", plan->netns);
        int r, ret = 0;

        (void) kill_netns_processes(nsp);
        if (pod_state_dir)
                kill_dnsmasq_by_pidfile(pod_state_dir);
        r = host_table_del(plan->host_table);
        if (r < 0 && ret == 0)
                ret = r;
        r = link_del(plan->host_veth);
        if (r < 0 && ret == 0)
                ret = r;
        r = netns_del(plan->netns);
        if (r < 0 && ret == 0)
                ret = r;
        if (pod_state_dir) {
                static const char *const files[] = { "dnsmasq.pid", "dnsmasq.log", "pod.nft", "host.nft" };
                for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                        _cleanup_free_ char *f = xasprintf("%s/%s", pod_state_dir, files[i]);
                        (void) unlink(f);
                }
                (void) rmdir(pod_state_dir);
        }
        /* Keep the record while anything is left, so the next node start retries. */
        if (alloc_path && ret == 0)
                (void) unlink(alloc_path);
        return ret;
}

static int start_dnsmasq(NetPod *pod, const NetPolicy *policy, char **reterr) {
        const char *bin = net_find_program("dnsmasq");
        _cleanup_free_ char *pid_file = xasprintf("%s/dnsmasq.pid", pod->state_dir);
        _cleanup_free_ char *log_file = xasprintf("%s/dnsmasq.log", pod->state_dir);
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_close_ int logfd = -EBADF;
        int r;

        if (!bin)
                return set_err(reterr, -ENOENT, "dnsmasq not found (install dnsmasq-base)");
        (void) unlink(pid_file);
        argv = net_dnsmasq_argv(&pod->plan, policy, bin, pid_file, log_file);
        logfd = open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (logfd < 0)
                return set_err(reterr, -errno, "cannot open %s: %m", log_file);
        r = net_spawn(pod->netns_fd, argv, -1, logfd, logfd, &pod->dnsmasq);
        if (r < 0)
                return set_err(reterr, r, "cannot start dnsmasq: %s", strerror(-r));

        /* dnsmasq writes its pid file after binding its sockets: wait for it (5 s). */
        for (unsigned i = 0; i < 500; i++) {
                int status;
                if (access(pid_file, F_OK) == 0)
                        return 0;
                pid_t w = waitpid(pod->dnsmasq.pid, &status, WNOHANG);
                if (w == pod->dnsmasq.pid) {
                        pidref_done(&pod->dnsmasq);
                        _cleanup_free_ char *log = NULL;
                        (void) read_full_file_at(AT_FDCWD, log_file, 4096, &log, NULL);
                        return set_err(reterr, -EIO, "dnsmasq exited at start: %s", log ? log : "");
                }
                (void) usleep(10 * 1000);
        }
        return set_err(reterr, -ETIMEDOUT, "dnsmasq did not start within 5 s");
}

/* The guest's DNS filter (net-dnsfilter.c): a thread of ours with sockets in the namespace, on
 * the gateway's port 53; it forwards only judged, rebuilt queries to dnsmasq on 127.0.0.1:53. */
static int start_dns_filter(NetPod *pod, const NetConfig *config, const NetPolicy *policy, char **reterr) {
        struct sockaddr_in listen = { .sin_family = AF_INET,
                                      .sin_port = htons(53),
                                      .sin_addr = pod->plan.gw_addr };
        struct sockaddr_in up = { .sin_family = AF_INET,
                                  .sin_port = htons(NET_DNSMASQ_PORT),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        unsigned limit = policy->dns_wildcard_names ?: config->dns_wildcard_names;
        NetDnsFilter *f = net_dns_filter_new(policy->dns_allow, limit);
        int r = net_dns_proxy_start(
                pod->netns_fd, &listen, &up, f, config->dns_event, config->dns_event_userdata, &pod->dns_filter);
        if (r < 0)
                return set_err(reterr, r, "cannot start the DNS filter: %s", strerror(-r));
        return 0;
}

static char *ip4s(struct in_addr a, char *buf) {
        return (char *) inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

int net_pod_setup(
        const NetConfig *config, const char *pod_id, const NetPolicy *policy, NetPod **ret, char **reterr) {
        _cleanup_free_ char *pod_rules = NULL, *host_rules = NULL, *ns_batch = NULL, *host_batch1 = NULL,
                            *host_batch2 = NULL, *sysctl_path = NULL;
        char h[INET_ADDRSTRLEN], n[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN], gn[INET_ADDRSTRLEN];
        NetPod *pod = NULL;
        uint32_t base;
        unsigned prefix;
        int r;

        if (!policy)
                return set_err(reterr, -EINVAL, "no network policy");
        pod = xcalloc(1, sizeof(NetPod));
        pod->netns_fd = -EBADF;
        pod->monitor_stop_fd = -EBADF;
        pod->dnsmasq = PIDREF_NULL;

        r = net_plan_names(&pod->plan, pod_id);
        if (r < 0) {
                pod_free(pod);
                return set_err(reterr, r, "invalid pod id for network names");
        }
        if (net_pool_parse(cfg_pool(config), &base, &prefix) < 0) {
                pod_free(pod);
                return set_err(
                        reterr,
                        -EINVAL,
                        "network pool '%s' is not an IPv4 CIDR with prefix 8..26",
                        cfg_pool(config));
        }
        pod->plan.dns = strv_length(policy->dns_allow) > 0;
        pod->plan.dns_upstream_port = config ? config->dns_upstream_port : 0;
        if (pod->plan.dns) {
                if (config && config->dns_upstream) {
                        if (inet_pton(AF_INET, config->dns_upstream, &pod->plan.dns_upstream) != 1) {
                                pod_free(pod);
                                return set_err(
                                        reterr,
                                        -EINVAL,
                                        "DNS upstream '%s' is not an IPv4 address",
                                        config->dns_upstream);
                        }
                } else if (resolv_conf_upstream(&pod->plan.dns_upstream) < 0) {
                        pod_free(pod);
                        return set_err(
                                reterr,
                                -ENOENT,
                                "no usable IPv4 nameserver in /etc/resolv.conf; configure the DNS upstream");
                }
        }

        pod->state_dir = xasprintf("%s/pods/%s", cfg_state_dir(config), pod->plan.short_id);
        r = mkdir_p_at(AT_FDCWD, pod->state_dir, 0700);
        if (r < 0) {
                (void) set_err(reterr, r, "cannot create %s: %s", pod->state_dir, strerror(-r));
                pod_free(pod);
                return r;
        }
        r = alloc_claim(pod, cfg_state_dir(config), pod_id, base, prefix, reterr);
        if (r < 0) {
                (void) rmdir(pod->state_dir);
                pod_free(pod);
                return r;
        }

        /* From here on, failure removes everything the plan names. */
        (void) snprintf(pod->netns_path, sizeof(pod->netns_path), NET_NETNS_DIR "/%s", pod->plan.netns);
        if (access(pod->netns_path, F_OK) == 0) {
                r = set_err(reterr, -EEXIST, "network namespace %s exists already", pod->plan.netns);
                (void) unlink(pod->alloc_path);
                (void) rmdir(pod->state_dir);
                pod_free(pod);
                return r;
        }
        r = netns_add(pod->plan.netns, reterr);
        if (r < 0)
                goto fail;
        pod->netns_fd = open(pod->netns_path, O_RDONLY | O_CLOEXEC);
        if (pod->netns_fd < 0) {
                r = set_err(reterr, -errno, "cannot open %s: %m", pod->netns_path);
                goto fail;
        }

        /* 1. Policy before any link exists. */
        pod_rules = net_ruleset_pod(&pod->plan, policy);
        host_rules = net_ruleset_host(&pod->plan);
        if (!pod_rules || !host_rules) {
                r = -ENOMEM;
                goto fail;
        }
        {
                _cleanup_free_ char *f = xasprintf("%s/pod.nft", pod->state_dir);
                (void) write_file_atomic_at(AT_FDCWD, f, pod_rules, strlen(pod_rules), 0600);
                f = mfree(f);
                f = xasprintf("%s/host.nft", pod->state_dir);
                (void) write_file_atomic_at(AT_FDCWD, f, host_rules, strlen(host_rules), 0600);
        }
        r = nft_apply(pod->netns_fd, pod_rules, reterr);
        if (r < 0)
                goto fail;
        r = nft_apply(-1, host_rules, reterr);
        if (r < 0)
                goto fail;

        /* 2. Namespace settings: route for the guest, no IPv6 at all. */
        static const char *const ns_sysctls[][2] = {
                { "/proc/sys/net/ipv6/conf/all/disable_ipv6", "1" },
                { "/proc/sys/net/ipv6/conf/default/disable_ipv6", "1" },
                { "/proc/sys/net/ipv4/ip_forward", "1" },
        };
        for (size_t i = 0; i < ELEMENTSOF(ns_sysctls); i++) {
                r = net_sysctl_write(pod->netns_fd, ns_sysctls[i][0], ns_sysctls[i][1]);
                if (r < 0) {
                        (void) set_err(
                                reterr,
                                r,
                                "cannot set %s in the pod namespace: %s",
                                ns_sysctls[i][0],
                                strerror(-r));
                        goto fail;
                }
        }

        /* 3. Links. */
        host_batch1 = xasprintf(
                "link add %s type veth peer name %s netns %s\n",
                pod->plan.host_veth,
                pod->plan.ns_veth,
                pod->plan.netns);
        r = ip_batch(-1, host_batch1, reterr);
        if (r < 0)
                goto fail;
        sysctl_path = xasprintf("/proc/sys/net/ipv6/conf/%s/disable_ipv6", pod->plan.host_veth);
        r = net_sysctl_write(-1, sysctl_path, "1");
        if (r < 0) {
                (void) set_err(reterr, r, "cannot disable IPv6 on %s: %s", pod->plan.host_veth, strerror(-r));
                goto fail;
        }
        {
                _cleanup_free_ char *tapopts = NULL;
                if (config && config->tap_uid != (uid_t) -1 && config->tap_gid != (gid_t) -1)
                        tapopts = xasprintf(
                                " user %u group %u", (unsigned) config->tap_uid, (unsigned) config->tap_gid);
                else if (config && config->tap_uid != (uid_t) -1)
                        tapopts = xasprintf(" user %u", (unsigned) config->tap_uid);
                ns_batch = xasprintf(
                        "link set lo up\n"
                        "link add %1$s type bridge\n"
                        "tuntap add dev %2$s mode tap vnet_hdr%3$s\n"
                        "link set %2$s master %1$s\n"
                        "addr add %4$s/30 dev %1$s\n"
                        "link set %1$s up\n"
                        "link set %2$s up\n"
                        "addr add %5$s/30 dev %6$s\n"
                        "link set %6$s up\n"
                        "route add default via %7$s dev %6$s\n",
                        pod->plan.bridge,
                        pod->plan.tap,
                        tapopts ? tapopts : "",
                        ip4s(pod->plan.gw_addr, g),
                        ip4s(pod->plan.ns_addr, n),
                        pod->plan.ns_veth,
                        ip4s(pod->plan.host_addr, h));
        }
        r = ip_batch(pod->netns_fd, ns_batch, reterr);
        if (r < 0)
                goto fail;
        host_batch2 = xasprintf(
                "addr add %s/30 dev %s\n"
                "link set %s up\n"
                "route add %s/30 via %s dev %s\n",
                ip4s(pod->plan.host_addr, h),
                pod->plan.host_veth,
                pod->plan.host_veth,
                ip4s(pod->plan.guest_net, gn),
                ip4s(pod->plan.ns_addr, n),
                pod->plan.host_veth);
        r = ip_batch(-1, host_batch2, reterr);
        if (r < 0)
                goto fail;
        /* The host must route for the pods (like any NAT router); doctor reports it. */
        r = net_sysctl_write(-1, "/proc/sys/net/ipv4/ip_forward", "1");
        if (r < 0) {
                (void) set_err(reterr, r, "cannot enable net.ipv4.ip_forward on the host: %s", strerror(-r));
                goto fail;
        }

        /* 4. DNS: dnsmasq on the namespace's loopback, our filter where the guest asks. */
        if (pod->plan.dns) {
                r = start_dnsmasq(pod, policy, reterr);
                if (r < 0)
                        goto fail;
                r = start_dns_filter(pod, config, policy, reterr);
                if (r < 0)
                        goto fail;
        }

        /* 5. Drift baselines: what the kernel holds right after we applied it. */
        r = nft_snapshot(pod->netns_fd, NULL, &pod->baseline_pod, reterr);
        if (r < 0)
                goto fail;
        r = nft_snapshot(-1, pod->plan.host_table, &pod->baseline_host, reterr);
        if (r < 0)
                goto fail;

        ip4s(pod->plan.gw_addr, pod->gw);
        ip4s(pod->plan.guest_addr, pod->guest);
        (void) snprintf(
                pod->cmdline, sizeof(pod->cmdline), "nucleus.net=%s/30,%s,%s", pod->guest, pod->gw, pod->gw);
        (void) snprintf(pod->host_table_full, sizeof(pod->host_table_full), "inet %s", pod->plan.host_table);
        pod->info = (NetPodInfo){
                .netns_name = pod->plan.netns,
                .netns_path = pod->netns_path,
                .netns_fd = pod->netns_fd,
                .tap = pod->plan.tap,
                .mac = pod->plan.mac,
                .guest_addr = pod->guest,
                .guest_prefix = 30,
                .gateway = pod->gw,
                .dns = pod->gw,
                .cmdline = pod->cmdline,
                .host_veth = pod->plan.host_veth,
                .host_table = pod->host_table_full,
        };
        *ret = pod;
        return 0;

fail:
        pod->dns_filter = net_dns_proxy_stop(pod->dns_filter);
        pidref_kill_and_wait(&pod->dnsmasq);
        pod->netns_fd = safe_close(pod->netns_fd);
        (void) plan_remove(&pod->plan, pod->state_dir, pod->alloc_path);
        pod_free(pod);
        return r;
}

const NetPodInfo *net_pod_info(const NetPod *pod) {
        return pod ? &pod->info : NULL;
}

int net_pod_enter(const NetPod *pod) {
        if (!pod || pod->netns_fd < 0)
                return -EBADF;
        return RET_NERRNO(setns(pod->netns_fd, CLONE_NEWNET));
}

int net_pod_open_tap(const NetPod *pod, bool vnet_hdr) {
        _cleanup_close_ int self = -EBADF, fd = -EBADF;
        struct ifreq ifr = {};
        int r = 0;

        if (!pod || pod->netns_fd < 0)
                return -EBADF;
        self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (self < 0)
                return -errno;
        if (setns(pod->netns_fd, CLONE_NEWNET) < 0)
                return -errno;
        fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                r = -errno;
        else {
                (void) snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", pod->plan.tap);
                ifr.ifr_flags = (short) (IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0));
                if (ioctl(fd, TUNSETIFF, &ifr) < 0)
                        r = -errno;
        }
        /* Back to where we were, whatever happened; if that fails the thread is unusable. */
        if (setns(self, CLONE_NEWNET) < 0)
                abort();
        if (r < 0)
                return r;
        return TAKE_FD(fd);
}

static char *first_difference(const char *a, const char *b) {
        size_t i = 0;
        while (a[i] && a[i] == b[i])
                i++;
        size_t from = i > 60 ? i - 60 : 0;
        return xasprintf("applied ...%.120s... now ...%.120s...", a + from, b + from);
}

int net_pod_check_drift(NetPod *pod, char **reterr) {
        _cleanup_free_ char *now_pod = NULL, *now_host = NULL;
        int r;

        if (!pod)
                return -EINVAL;
        r = nft_snapshot(pod->netns_fd, NULL, &now_pod, reterr);
        if (r < 0)
                return r;
        if (!streq(now_pod, pod->baseline_pod)) {
                if (reterr && !*reterr) {
                        _cleanup_free_ char *d = first_difference(pod->baseline_pod, now_pod);
                        *reterr = xasprintf("pod namespace ruleset changed: %s", d);
                }
                return 1;
        }
        r = nft_snapshot(-1, pod->plan.host_table, &now_host, reterr);
        if (r < 0)
                return r;
        if (!streq(now_host, pod->baseline_host)) {
                if (reterr && !*reterr) {
                        _cleanup_free_ char *d = first_difference(pod->baseline_host, now_host);
                        *reterr = xasprintf("host table %s changed: %s", pod->plan.host_table, d);
                }
                return 1;
        }
        return 0;
}

static void *monitor_thread(void *userdata) {
        NetPod *pod = userdata;
        for (;;) {
                struct pollfd pfd = { .fd = pod->monitor_stop_fd, .events = POLLIN };
                int timeout_ms = (int) NUCLEUS_MIN(pod->monitor_period_usec / 1000, (uint64_t) INT32_MAX);
                int r = poll(&pfd, 1, timeout_ms);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0) {
                        /* Cannot wait, cannot watch: fail closed. */
                        r = -errno;
                        pod->monitor_cb(pod->monitor_userdata, r, "drift monitor cannot wait");
                        return NULL;
                }
                if (r > 0)
                        return NULL; /* stop requested by teardown */
                _cleanup_free_ char *detail = NULL;
                r = net_pod_check_drift(pod, &detail);
                if (r != 0) {
                        /* Fail closed: a failed check is reported like drift. Report once, stop. */
                        pod->monitor_cb(pod->monitor_userdata, r, detail ? detail : strerror(r < 0 ? -r : EIO));
                        return NULL;
                }
        }
}

int net_pod_monitor_start(NetPod *pod, uint64_t period_usec, NetDriftCallback cb, void *userdata) {
        if (!pod || !cb || period_usec < 100 * 1000 || pod->monitor_running)
                return -EINVAL;
        if (pod->monitor_stop_fd < 0) {
                pod->monitor_stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (pod->monitor_stop_fd < 0)
                        return -errno;
        }
        pod->monitor_period_usec = period_usec;
        pod->monitor_cb = cb;
        pod->monitor_userdata = userdata;
        int r = pthread_create(&pod->monitor, NULL, monitor_thread, pod);
        if (r != 0)
                return -r;
        pod->monitor_running = true;
        return 0;
}

int net_pod_teardown(NetPod *pod) {
        int r;
        if (!pod)
                return 0;
        monitor_stop(pod);
        pidref_kill_and_wait(&pod->dnsmasq);
        pod->netns_fd = safe_close(pod->netns_fd);
        r = plan_remove(&pod->plan, pod->state_dir, pod->alloc_path);
        pod_free(pod);
        return r;
}

static int cleanup_recorded(const char *state_dir) {
        _cleanup_free_ char *dir = xasprintf("%s/alloc", state_dir);
        _cleanup_(closedirp_net) DIR *d = opendir(dir);
        int n = 0;

        if (!d)
                return errno == ENOENT ? 0 : -errno;
        for (struct dirent *de; (de = readdir(d));) {
                uint32_t idx;
                NetPlan plan = {};
                _cleanup_free_ char *path = NULL, *data = NULL, *pod_dir = NULL;
                if (safe_atou32(de->d_name, &idx) < 0)
                        continue;
                path = xasprintf("%s/%s", dir, de->d_name);
                if (read_full_file_at(AT_FDCWD, path, 1024, &data, NULL) < 0)
                        continue;
                data[strcspn(data, "\n")] = 0;
                if (net_plan_names(&plan, data) < 0) {
                        (void) unlink(path);
                        continue;
                }
                pod_dir = xasprintf("%s/pods/%s", state_dir, plan.short_id);
                (void) plan_remove(&plan, pod_dir, path);
                n++;
        }
        return n;
}

int net_cleanup_pod(const NetConfig *config, const char *pod_id) {
        _cleanup_free_ char *pod_dir = NULL, *alloc_dir = NULL, *alloc_path = NULL, *nsp = NULL, *veth = NULL;
        NetPlan plan = {};
        bool found;
        int r;

        r = net_plan_names(&plan, pod_id);
        if (r < 0)
                return r;
        pod_dir = xasprintf("%s/pods/%s", cfg_state_dir(config), plan.short_id);
        nsp = xasprintf(NET_NETNS_DIR "/%s", plan.netns);
        veth = xasprintf("/sys/class/net/%s", plan.host_veth);
        found = access(pod_dir, F_OK) >= 0 || access(nsp, F_OK) >= 0 || access(veth, F_OK) >= 0;

        /* The allocation record that names this pod, if any. */
        alloc_dir = xasprintf("%s/alloc", cfg_state_dir(config));
        _cleanup_(closedirp_net) DIR *d = opendir(alloc_dir);
        if (d)
                for (struct dirent *de; (de = readdir(d));) {
                        uint32_t idx;
                        _cleanup_free_ char *path = NULL, *data = NULL;
                        if (safe_atou32(de->d_name, &idx) < 0)
                                continue;
                        path = xasprintf("%s/%s", alloc_dir, de->d_name);
                        if (read_full_file_at(AT_FDCWD, path, 1024, &data, NULL) < 0)
                                continue;
                        data[strcspn(data, "\n")] = 0;
                        if (streq(data, pod_id)) {
                                alloc_path = TAKE_PTR(path);
                                found = true;
                                break;
                        }
                }
        r = plan_remove(&plan, pod_dir, alloc_path);
        if (r < 0)
                return r;
        return found ? 1 : 0;
}

static int cleanup_all_on_host(void) {
        int n = 0;
        _cleanup_(closedirp_net) DIR *d = opendir(NET_NETNS_DIR);
        if (d)
                for (struct dirent *de; (de = readdir(d));) {
                        if (!startswith(de->d_name, "nucleus-"))
                                continue;
                        _cleanup_free_ char *p = xasprintf(NET_NETNS_DIR "/%s", de->d_name);
                        (void) kill_netns_processes(p);
                        (void) netns_del(de->d_name);
                        n++;
                }
        _cleanup_(closedirp_net) DIR *c = opendir("/sys/class/net");
        if (c)
                for (struct dirent *de; (de = readdir(c));)
                        if (startswith(de->d_name, "nuh-"))
                                (void) link_del(de->d_name);

        const char *nft = net_find_program("nft");
        _cleanup_free_ char *out = NULL;
        if (nft) {
                char *argv[] = { (char *) nft, (char *) "-j", (char *) "list", (char *) "tables", NULL };
                if (net_run(-1, argv, NULL, &out, NULL) == 0) {
                        _cleanup_json_ json_t *j = NULL;
                        if (json_parse_strict(out, strlen(out), 16U << 20, &j, NULL) >= 0) {
                                size_t i;
                                json_t *it;
                                json_array_foreach(json_object_get(j, "nftables"), i, it) {
                                        json_t *t = json_object_get(it, "table");
                                        const char *name = json_string_value(json_object_get(t, "name"));
                                        const char *fam = json_string_value(json_object_get(t, "family"));
                                        if (name && fam && streq(fam, "inet") && startswith(name, "nucleus_"))
                                                (void) host_table_del(name);
                                }
                        }
                }
        }
        return n;
}

int net_cleanup_stale(const NetConfig *config, bool all) {
        int n = cleanup_recorded(cfg_state_dir(config));
        if (n < 0)
                return n;
        if (all) {
                int m = cleanup_all_on_host();
                if (m > n)
                        n = m;
        }
        return n;
}

static void check_set(NetDoctorCheck *c, const char *name, bool ok, const char *fmt, ...) _printf_(4, 5);
static void check_set(NetDoctorCheck *c, const char *name, bool ok, const char *fmt, ...) {
        va_list ap;
        (void) snprintf(c->name, sizeof(c->name), "%s", name);
        c->ok = ok;
        va_start(ap, fmt);
        (void) vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
        va_end(ap);
}

size_t net_doctor_checks(const NetConfig *config, NetDoctorCheck *checks, size_t n) {
        size_t k = 0;
        const char *nft = net_find_program("nft"), *dnsmasq = net_find_program("dnsmasq"),
                   *ip = net_find_program("ip");

        if (k < n) {
                bool ok = false;
                _cleanup_free_ char *err = NULL;
                if (nft) {
                        /* --check parses and validates against the kernel without committing. */
                        char *argv[] = { (char *) nft, (char *) "--check", (char *) "-f", (char *) "-", NULL };
                        ok = net_run_ok(
                                     -1,
                                     argv,
                                     "table inet nucleus_doctor {\n chain c {\n  type filter hook forward "
                                     "priority 0; policy drop;\n  ct state established accept\n }\n}\n",
                                     &err) == 0;
                }
                check_set(
                        &checks[k++],
                        "nftables",
                        ok,
                        "%s",
                        !nft         ? "nft not found: install nftables"
                                : ok ? "nft can load inet filter tables"
                                     : (err ? err : "nft --check failed"));
        }
        if (k < n)
                check_set(&checks[k++], "iproute2", ip != NULL, "%s", ip ? ip : "ip not found: install iproute2");
        if (k < n) {
                _cleanup_free_ char *out = NULL;
                bool present = false, nftset = false;
                unsigned maj = 0, min = 0;
                if (dnsmasq) {
                        char *argv[] = { (char *) dnsmasq, (char *) "--version", NULL };
                        if (net_run(-1, argv, NULL, &out, NULL) == 0 && out) {
                                present = sscanf(out, "Dnsmasq version %u.%u", &maj, &min) == 2;
                                nftset = strstr(out, " nftset") && !strstr(out, "no-nftset") &&
                                        (maj > 2 || (maj == 2 && min >= 87));
                        }
                }
                if (k < n) {
                        if (present)
                                check_set(&checks[k++], "dnsmasq", true, "dnsmasq %u.%u", maj, min);
                        else
                                check_set(
                                        &checks[k++],
                                        "dnsmasq",
                                        false,
                                        "dnsmasq not found: install dnsmasq-base");
                }
                if (k < n)
                        check_set(
                                &checks[k++],
                                "dnsmasq-nftset",
                                nftset,
                                "%s",
                                nftset ? "dnsmasq supports --nftset"
                                       : "dnsmasq >= 2.87 built with nftset is needed for dns_allow");
        }
        if (k < n) {
                _cleanup_free_ char *v = NULL;
                bool on = read_full_file_at(AT_FDCWD, "/proc/sys/net/ipv4/ip_forward", 16, &v, NULL) >= 0 &&
                        v[0] == '1';
                check_set(
                        &checks[k++],
                        "ip-forward",
                        true,
                        "%s",
                        on ? "net.ipv4.ip_forward=1"
                           : "net.ipv4.ip_forward=0; the node enables it when the first pod with a network "
                             "starts");
        }
        if (k < n) {
                struct stat st;
                if (stat("/dev/net/tun", &st) < 0 || !S_ISCHR(st.st_mode))
                        check_set(&checks[k++], "tun", false, "/dev/net/tun missing (modprobe tun)");
                else if ((st.st_mode & 0006) != 0006)
                        /* nucleus-node opens the tap as root and passes QEMU the fd, so the
                         * VMM user never opens the device itself. */
                        check_set(
                                &checks[k++],
                                "tun",
                                true,
                                "/dev/net/tun is mode %04o: fine, the node opens each tap as root and "
                                "passes the VMM the fd (net_pod_open_tap)",
                                (unsigned) (st.st_mode & 07777));
                else
                        check_set(&checks[k++], "tun", true, "/dev/net/tun usable");
        }
        if (k < n) {
                uint32_t b;
                unsigned p;
                bool ok = net_pool_parse(cfg_pool(config), &b, &p) == 0;
                if (ok)
                        check_set(
                                &checks[k++], "pool", true, "%s: %u pods", cfg_pool(config), net_pool_blocks(p));
                else
                        check_set(
                                &checks[k++],
                                "pool",
                                false,
                                "%s: not an IPv4 CIDR with prefix 8..26",
                                cfg_pool(config));
        }
        return k;
}
