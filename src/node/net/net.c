/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-pod network lifecycle: address allocation, namespace, links and tap, setup and teardown
 * (nftables in net-nft.c, dnsmasq in net-dnsmasq.c, stale cleanup in net-cleanup.c). Runs as
 * root in nucleus-node. Trusts
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
#include "net-pod.h"
#include "parse-util.h"
#include "string-util.h"

int net_set_err(char **reterr, int r, const char *fmt, ...) {
        if (reterr && !*reterr) {
                va_list ap;
                va_start(ap, fmt);
                *reterr = xvasprintf(fmt, ap);
                va_end(ap);
        }
        return r;
}

const char *net_cfg_state_dir(const NetConfig *c) {
        return c && c->state_dir ? c->state_dir : NET_DEFAULT_STATE_DIR;
}
static const char *cfg_pool(const NetConfig *c) {
        return c && c->pool ? c->pool : NET_DEFAULT_POOL;
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
                return net_set_err(reterr, r, "cannot create %s: %s", dir, strerror(-r));
        if (n == 0)
                return net_set_err(reterr, -EINVAL, "pool has no /29 block");
        (void) sscanf(pod->plan.short_id, "%8x", &start);
        for (uint32_t k = 0; k < n; k++) {
                uint32_t idx = (start + k) % n;
                _cleanup_free_ char *p = xasprintf("%s/%u", dir, idx);
                _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0) {
                        if (errno == EEXIST)
                                continue;
                        return net_set_err(reterr, -errno, "cannot create %s: %m", p);
                }
                if (block_in_use_on_host(base + 8U * idx)) {
                        (void) unlink(p); /* someone else (another node?) uses it */
                        continue;
                }
                _cleanup_free_ char *content = xasprintf("%s\n", pod_id);
                r = loop_write(fd, content, strlen(content));
                if (r < 0) {
                        (void) unlink(p);
                        return net_set_err(reterr, r, "cannot write %s: %s", p, strerror(-r));
                }
                r = net_plan_addresses(&pod->plan, base, prefix, idx);
                if (r < 0) {
                        (void) unlink(p);
                        return net_set_err(reterr, r, "block %u outside the pool", idx);
                }
                pod->alloc_path = TAKE_PTR(p);
                return 0;
        }
        return net_set_err(reterr, -ENOSPC, "network pool exhausted (%u pods of /29): enlarge [net] pool", n);
}

static int ip_batch(int netns_fd, const char *batch, char **reterr) {
        const char *ip = net_find_program("ip");
        if (!ip)
                return net_set_err(reterr, -ENOENT, "ip not found (install iproute2)");
        char *argv[] = { (char *) ip, (char *) "-batch", (char *) "-", NULL };
        return net_run_ok(netns_fd, argv, batch, reterr);
}

static int netns_add(const char *name, char **reterr) {
        const char *ip = net_find_program("ip");
        if (!ip)
                return net_set_err(reterr, -ENOENT, "ip not found (install iproute2)");
        char *argv[] = { (char *) ip, (char *) "netns", (char *) "add", (char *) name, NULL };
        return net_run_ok(-1, argv, NULL, reterr);
}

static void pod_free(NetPod *pod) {
        if (!pod)
                return;
        net_monitor_stop(pod);
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

static char *ip4s(struct in_addr a, char *buf) {
        return (char *) inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

/* The first half of a pod's network, common to a cold pod and a parked one: the plan's names,
 * the address block, the per-pod state dir and an empty namespace (open in pod->netns_fd).
 * Returns 0 and *ret; -errno with nothing left behind. */
static int pod_begin(const NetConfig *config, const char *pod_id, NetPod **ret, char **reterr) {
        NetPod *pod = NULL;
        uint32_t base;
        unsigned prefix;
        int r;

        pod = xcalloc(1, sizeof(NetPod));
        pod->netns_fd = -EBADF;
        pod->monitor_stop_fd = -EBADF;
        pod->dnsmasq = PIDREF_NULL;

        r = net_plan_names(&pod->plan, pod_id);
        if (r < 0) {
                pod_free(pod);
                return net_set_err(reterr, r, "invalid pod id for network names");
        }
        if (net_pool_parse(cfg_pool(config), &base, &prefix) < 0) {
                pod_free(pod);
                return net_set_err(
                        reterr,
                        -EINVAL,
                        "network pool '%s' is not an IPv4 CIDR with prefix 8..26",
                        cfg_pool(config));
        }
        pod->state_dir = xasprintf("%s/pods/%s", net_cfg_state_dir(config), pod->plan.short_id);
        r = mkdir_p_at(AT_FDCWD, pod->state_dir, 0700);
        if (r < 0) {
                (void) net_set_err(reterr, r, "cannot create %s: %s", pod->state_dir, strerror(-r));
                pod_free(pod);
                return r;
        }
        r = alloc_claim(pod, net_cfg_state_dir(config), pod_id, base, prefix, reterr);
        if (r < 0) {
                (void) rmdir(pod->state_dir);
                pod_free(pod);
                return r;
        }

        /* From here on, failure removes everything the plan names. */
        (void) snprintf(pod->netns_path, sizeof(pod->netns_path), NET_NETNS_DIR "/%s", pod->plan.netns);
        if (access(pod->netns_path, F_OK) == 0) {
                r = net_set_err(reterr, -EEXIST, "network namespace %s exists already", pod->plan.netns);
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
                r = net_set_err(reterr, -errno, "cannot open %s: %m", pod->netns_path);
                goto fail;
        }

        /* No IPv6 at all in the namespace; forwarding only matters once it is plumbed. */
        static const char *const ns_sysctls[][2] = {
                { "/proc/sys/net/ipv6/conf/all/disable_ipv6", "1" },
                { "/proc/sys/net/ipv6/conf/default/disable_ipv6", "1" },
                { "/proc/sys/net/ipv4/ip_forward", "1" },
        };
        for (size_t i = 0; i < ELEMENTSOF(ns_sysctls); i++) {
                r = net_sysctl_write(pod->netns_fd, ns_sysctls[i][0], ns_sysctls[i][1]);
                if (r < 0) {
                        (void) net_set_err(
                                reterr,
                                r,
                                "cannot set %s in the pod namespace: %s",
                                ns_sysctls[i][0],
                                strerror(-r));
                        goto fail;
                }
        }
        ip4s(pod->plan.gw_addr, pod->gw);
        ip4s(pod->plan.guest_addr, pod->guest);
        *ret = pod;
        return 0;

fail:
        pod->netns_fd = safe_close(pod->netns_fd);
        (void) net_plan_remove(&pod->plan, pod->state_dir, pod->alloc_path);
        pod_free(pod);
        return r;
}

static char *tap_owner_opts(const NetConfig *config) {
        if (config && config->tap_uid != (uid_t) -1 && config->tap_gid != (gid_t) -1)
                return xasprintf(" user %u group %u", (unsigned) config->tap_uid, (unsigned) config->tap_gid);
        if (config && config->tap_uid != (uid_t) -1)
                return xasprintf(" user %u", (unsigned) config->tap_uid);
        return xstrdup("");
}

/* What the VMM and the node see of the pod (parked: only the namespace, tap and MAC). */
static void pod_info_fill(NetPod *pod, bool parked) {
        if (parked)
                (void) snprintf(pod->cmdline, sizeof(pod->cmdline), "nucleus.net=%s", NET_CMDLINE_PARKED);
        else
                (void) snprintf(
                        pod->cmdline,
                        sizeof(pod->cmdline),
                        "nucleus.net=%s/30,%s,%s",
                        pod->guest,
                        pod->gw,
                        pod->gw);
        (void) snprintf(pod->host_table_full, sizeof(pod->host_table_full), "inet %s", pod->plan.host_table);
        pod->info = (NetPodInfo){
                .netns_name = pod->plan.netns,
                .netns_path = pod->netns_path,
                .netns_fd = pod->netns_fd,
                .tap = pod->plan.tap,
                .mac = pod->plan.mac,
                .guest_addr = parked ? NULL : pod->guest,
                .guest_prefix = parked ? 0 : 30,
                .gateway = parked ? NULL : pod->gw,
                .dns = parked ? NULL : pod->gw,
                .cmdline = pod->cmdline,
                .host_veth = parked ? NULL : pod->plan.host_veth,
                .host_table = parked ? NULL : pod->host_table_full,
                .parked = parked,
        };
}

/* The second half: the policy, the links around the tap (created here unless it was parked
 * with the namespace), routes, DNS and the drift baselines. On failure the caller removes the
 * plan (everything created here is named by it). */
static int pod_plumb(
        NetPod *pod, const NetConfig *config, const NetPolicy *policy, bool tap_exists, char **reterr) {
        _cleanup_free_ char *pod_rules = NULL, *host_rules = NULL, *ns_batch = NULL, *host_batch1 = NULL,
                            *host_batch2 = NULL, *sysctl_path = NULL, *tapopts = NULL;
        char h[INET_ADDRSTRLEN], n[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN], gn[INET_ADDRSTRLEN];
        int r;

        pod->plan.setup = strv_length(policy->setup_hosts) > 0;
        pod->plan.dns = strv_length(policy->dns_allow) > 0 || pod->plan.setup;
        pod->plan.dns_upstream_port = config ? config->dns_upstream_port : 0;
        if (pod->plan.dns) {
                if (config && config->dns_upstream) {
                        if (inet_pton(AF_INET, config->dns_upstream, &pod->plan.dns_upstream) != 1)
                                return net_set_err(
                                        reterr,
                                        -EINVAL,
                                        "DNS upstream '%s' is not an IPv4 address",
                                        config->dns_upstream);
                } else if (net_resolv_conf_upstream(&pod->plan.dns_upstream) < 0)
                        return net_set_err(
                                reterr,
                                -ENOENT,
                                "no usable IPv4 nameserver in /etc/resolv.conf; configure the DNS upstream");
        }

        /* 1. Policy before any link exists (a parked namespace's drop-everything table is
         *    replaced by it in the same transaction). */
        pod_rules = net_ruleset_pod(&pod->plan, policy);
        host_rules = net_ruleset_host(&pod->plan);
        if (!pod_rules || !host_rules)
                return -ENOMEM;
        {
                _cleanup_free_ char *f = xasprintf("%s/pod.nft", pod->state_dir);
                (void) write_file_atomic_at(AT_FDCWD, f, pod_rules, strlen(pod_rules), 0600);
                f = mfree(f);
                f = xasprintf("%s/host.nft", pod->state_dir);
                (void) write_file_atomic_at(AT_FDCWD, f, host_rules, strlen(host_rules), 0600);
        }
        r = net_nft_apply(pod->netns_fd, pod_rules, reterr);
        if (r < 0)
                return r;
        r = net_nft_apply(-1, host_rules, reterr);
        if (r < 0)
                return r;

        /* 2. Links. */
        host_batch1 = xasprintf(
                "link add %s type veth peer name %s netns %s\n",
                pod->plan.host_veth,
                pod->plan.ns_veth,
                pod->plan.netns);
        r = ip_batch(-1, host_batch1, reterr);
        if (r < 0)
                return r;
        sysctl_path = xasprintf("/proc/sys/net/ipv6/conf/%s/disable_ipv6", pod->plan.host_veth);
        r = net_sysctl_write(-1, sysctl_path, "1");
        if (r < 0)
                return net_set_err(
                        reterr, r, "cannot disable IPv6 on %s: %s", pod->plan.host_veth, strerror(-r));
        tapopts = tap_owner_opts(config);
        _cleanup_free_ char *tapadd = tap_exists
                ? xstrdup("")
                : xasprintf("tuntap add dev %s mode tap vnet_hdr%s\n", pod->plan.tap, tapopts);
        ns_batch = xasprintf(
                "link set lo up\n"
                "link add %1$s type bridge\n"
                "%3$s"
                "link set %2$s master %1$s\n"
                "addr add %4$s/30 dev %1$s\n"
                "link set %1$s up\n"
                "link set %2$s up\n"
                "addr add %5$s/30 dev %6$s\n"
                "link set %6$s up\n"
                "route add default via %7$s dev %6$s\n",
                pod->plan.bridge,
                pod->plan.tap,
                tapadd,
                ip4s(pod->plan.gw_addr, g),
                ip4s(pod->plan.ns_addr, n),
                pod->plan.ns_veth,
                ip4s(pod->plan.host_addr, h));
        r = ip_batch(pod->netns_fd, ns_batch, reterr);
        if (r < 0)
                return r;
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
                return r;
        /* The host must route for the pods (like any NAT router); doctor reports it. */
        r = net_sysctl_write(-1, "/proc/sys/net/ipv4/ip_forward", "1");
        if (r < 0)
                return net_set_err(
                        reterr, r, "cannot enable net.ipv4.ip_forward on the host: %s", strerror(-r));

        /* 3. DNS: dnsmasq on the namespace's loopback, our filter where the guest asks. */
        if (pod->plan.dns) {
                r = net_start_dnsmasq(pod, policy, reterr);
                if (r < 0)
                        return r;
                r = net_start_dns_filter(pod, config, policy, reterr);
                if (r < 0)
                        return r;
        }

        /* 4. Drift baselines: what the kernel holds right after we applied it. */
        r = net_nft_snapshot(pod->netns_fd, NULL, &pod->baseline_pod, reterr);
        if (r < 0)
                return r;
        r = net_nft_snapshot(-1, pod->plan.host_table, &pod->baseline_host, reterr);
        if (r < 0)
                return r;
        pod_info_fill(pod, false);
        return 0;
}

int net_pod_setup(
        const NetConfig *config, const char *pod_id, const NetPolicy *policy, NetPod **ret, char **reterr) {
        NetPod *pod = NULL;
        int r;

        if (!policy)
                return net_set_err(reterr, -EINVAL, "no network policy");
        r = pod_begin(config, pod_id, &pod, reterr);
        if (r < 0)
                return r;
        r = pod_plumb(pod, config, policy, false, reterr);
        if (r < 0) {
                (void) net_pod_teardown(pod);
                return r;
        }
        *ret = pod;
        return 0;
}

int net_pod_park(const NetConfig *config, const char *pod_id, NetPod **ret, char **reterr) {
        _cleanup_free_ char *rules = NULL, *tapopts = NULL, *batch = NULL;
        NetPod *pod = NULL;
        int r;

        r = pod_begin(config, pod_id, &pod, reterr);
        if (r < 0)
                return r;
        /* The table before the tap exists, as for a cold pod; no other link, no address, no
         * route: nothing the guest sends has anywhere to go. */
        rules = net_ruleset_parked();
        r = net_nft_apply(pod->netns_fd, rules, reterr);
        if (r >= 0) {
                tapopts = tap_owner_opts(config);
                batch = xasprintf("tuntap add dev %s mode tap vnet_hdr%s\n", pod->plan.tap, tapopts);
                r = ip_batch(pod->netns_fd, batch, reterr);
        }
        if (r < 0) {
                (void) net_pod_teardown(pod);
                return r;
        }
        pod->parked = true;
        pod_info_fill(pod, true);
        *ret = pod;
        return 0;
}

int net_pod_unpark(NetPod *pod, const NetConfig *config, const NetPolicy *policy, char **reterr) {
        if (!pod || !policy || !pod->parked)
                return net_set_err(reterr, -EINVAL, "internal: not a parked network");
        int r = pod_plumb(pod, config, policy, true, reterr);
        if (r < 0)
                return r; /* the caller ends the pod; teardown removes what the plan names */
        pod->parked = false;
        return 0;
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

int net_pod_teardown(NetPod *pod) {
        int r;
        if (!pod)
                return 0;
        net_monitor_stop(pod);
        pidref_kill_and_wait(&pod->dnsmasq);
        pod->netns_fd = safe_close(pod->netns_fd);
        r = net_plan_remove(&pod->plan, pod->state_dir, pod->alloc_path);
        pod_free(pod);
        return r;
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
