/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest's NIC through ioctl (netif-util.h). Runs as root in the guest; the addresses come
 * from the node (kernel command line or configure), parsed strictly.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fd-util.h"
#include "netif-util.h"
#include "parse-util.h"
#include "string-util.h"

static int parse_ipv4(const char *s, struct in_addr *ret) {
        if (!s || inet_pton(AF_INET, s, ret) != 1)
                return -EINVAL;
        return 0;
}

int netif_address_parse(const char *address, const char *gateway, const char *dns, NetifAddress *ret) {
        NetifAddress a = {};
        char buf[INET_ADDRSTRLEN];
        uint32_t prefix;

        if (!address)
                return -EINVAL;
        const char *slash = strchr(address, '/');
        if (!slash || (size_t) (slash - address) >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, address, (size_t) (slash - address));
        buf[slash - address] = 0;
        if (parse_ipv4(buf, &a.addr) < 0 || safe_atou32(slash + 1, &prefix) < 0 || prefix < 1 || prefix > 32)
                return -EINVAL;
        a.prefix = prefix;
        if (parse_ipv4(gateway, &a.gateway) < 0 || parse_ipv4(dns, &a.dns) < 0)
                return -EINVAL;
        *ret = a;
        return 0;
}

static int ifreq_set_up(int sk, const char *ifname, bool up) {
        struct ifreq ifr = {};
        (void) snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
        if (ioctl(sk, SIOCGIFFLAGS, &ifr) < 0)
                return -errno;
        ifr.ifr_flags = (short) (up ? ifr.ifr_flags | IFF_UP : ifr.ifr_flags & ~IFF_UP);
        if (ioctl(sk, SIOCSIFFLAGS, &ifr) < 0)
                return -errno;
        return 0;
}

int netif_loopback_up(void) {
        _cleanup_close_ int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (sk < 0)
                return -errno;
        return ifreq_set_up(sk, "lo", true);
}

static void closedir_netif(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

static int first_nic(char *ifname, size_t size) {
        __attribute__((cleanup(closedir_netif))) DIR *d = opendir("/sys/class/net");
        struct dirent *de;
        if (!d)
                return 0;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || streq(de->d_name, "lo") || strlen(de->d_name) >= size)
                        continue;
                (void) snprintf(ifname, size, "%s", de->d_name);
                return 1;
        }
        return 0;
}

int netif_wait_first(char *ifname, size_t size, usec_t timeout) {
        usec_t deadline = now_usec(CLOCK_BOOTTIME) + timeout;
        for (;;) {
                if (first_nic(ifname, size) > 0)
                        return 0;
                if (now_usec(CLOCK_BOOTTIME) >= deadline)
                        return -ETIMEDOUT;
                (void) nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
        }
}

static void set_sin(struct sockaddr *sa, struct in_addr a) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = a };
        memcpy(sa, &sin, sizeof(sin));
}

static struct in_addr prefix_mask(unsigned prefix) {
        return (struct in_addr){ .s_addr = htonl(prefix >= 32 ? 0xffffffffu : ~(0xffffffffu >> prefix)) };
}

int netif_configure(const char *ifname, const NetifAddress *a) {
        _cleanup_close_ int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = {};
        int r;

        if (sk < 0)
                return -errno;
        /* Down first: the kernel then drops every route through the link and its neighbour
         * cache, so nothing of an earlier address (a restored parent's) survives. */
        if ((r = ifreq_set_up(sk, ifname, false)) < 0)
                return r;
        (void) snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
        set_sin(&ifr.ifr_addr, a->addr);
        if (ioctl(sk, SIOCSIFADDR, &ifr) < 0)
                return -errno;
        set_sin(&ifr.ifr_netmask, prefix_mask(a->prefix));
        if (ioctl(sk, SIOCSIFNETMASK, &ifr) < 0)
                return -errno;
        if ((r = ifreq_set_up(sk, ifname, true)) < 0)
                return r;

        struct rtentry rt = {};
        set_sin(&rt.rt_dst, (struct in_addr){ .s_addr = INADDR_ANY });
        set_sin(&rt.rt_genmask, (struct in_addr){ .s_addr = INADDR_ANY });
        set_sin(&rt.rt_gateway, a->gateway);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        rt.rt_dev = (char *) ifname;
        if (ioctl(sk, SIOCADDRT, &rt) < 0)
                return -errno;
        return 0;
}

int netif_has_address(const char *ifname, const NetifAddress *a) {
        _cleanup_close_ int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = {};

        if (sk < 0)
                return -errno;
        (void) snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
        if (ioctl(sk, SIOCGIFFLAGS, &ifr) < 0)
                return -errno;
        if (!(ifr.ifr_flags & IFF_UP))
                return 0;
        if (ioctl(sk, SIOCGIFADDR, &ifr) < 0)
                return errno == EADDRNOTAVAIL ? 0 : -errno;
        struct sockaddr_in sin;
        memcpy(&sin, &ifr.ifr_addr, sizeof(sin));
        if (sin.sin_addr.s_addr != a->addr.s_addr)
                return 0;
        if (ioctl(sk, SIOCGIFNETMASK, &ifr) < 0)
                return -errno;
        memcpy(&sin, &ifr.ifr_netmask, sizeof(sin));
        return sin.sin_addr.s_addr == prefix_mask(a->prefix).s_addr;
}

int netif_write_resolv_conf(struct in_addr dns) {
        char ns[INET_ADDRSTRLEN], buf[64];
        struct stat st, ours;

        if (!inet_ntop(AF_INET, &dns, ns, sizeof(ns)))
                return -EINVAL;
        int n = snprintf(buf, sizeof(buf), "nameserver %s\n", ns);
        if (mkdir(NETIF_RESOLV_DIR, 0755) < 0 && errno != EEXIST)
                return -errno;
        /* In place, not by rename: a bind mount of the file over /etc/resolv.conf keeps its
         * inode, so a rewrite (a restored pod's new address) reaches it. */
        _cleanup_close_ int fd = open(
                NETIF_RESOLV_CONF, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
        if (fd < 0)
                return -errno;
        int r = loop_write(fd, buf, (size_t) n);
        if (r < 0)
                return r;
        if (fstat(fd, &ours) < 0)
                return -errno;
        /* The image's /etc/resolv.conf links here; an imported image's own plain file is
         * covered by a bind mount (the rootfs is read-only). Already the same file: done. */
        if (lstat("/etc/resolv.conf", &st) == 0 && S_ISREG(st.st_mode) &&
            (st.st_dev != ours.st_dev || st.st_ino != ours.st_ino) &&
            mount(NETIF_RESOLV_CONF, "/etc/resolv.conf", NULL, MS_BIND, NULL) < 0)
                return -errno;
        return 0;
}

int netif_apply(const NetifAddress *a, usec_t timeout, bool *ret_changed) {
        char ifname[IFNAMSIZ] = {};
        int r;

        r = netif_wait_first(ifname, sizeof(ifname), timeout);
        if (r < 0)
                return r;
        r = netif_has_address(ifname, a);
        if (r < 0)
                return r;
        bool changed = r == 0;
        if (changed) {
                r = netif_configure(ifname, a);
                if (r < 0)
                        return r;
        }
        r = netif_write_resolv_conf(a->dns);
        if (r < 0)
                return r;
        if (ret_changed)
                *ret_changed = changed;
        return 0;
}
