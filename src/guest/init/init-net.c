/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest network setup through ioctl (no ip(8) in the image, no netlink library): loopback
 * always, one NIC only when the host put nucleus.net= on the command line. Inputs were
 * validated by init-cmdline.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/route.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include "fd-util.h"
#include "init.h"
#include "string-util.h"

static int ifreq_set_up(int sk, const char *ifname) {
        struct ifreq ifr = {};
        (void) snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
        if (ioctl(sk, SIOCGIFFLAGS, &ifr) < 0)
                return -errno;
        ifr.ifr_flags = (short) (ifr.ifr_flags | IFF_UP);
        if (ioctl(sk, SIOCSIFFLAGS, &ifr) < 0)
                return -errno;
        return 0;
}

int init_net_loopback_up(void) {
        _cleanup_close_ int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (sk < 0)
                return -errno;
        return ifreq_set_up(sk, "lo");
}

static int first_nic(char *ifname, size_t size) {
        _cleanup_(closedirp) DIR *d = opendir("/sys/class/net");
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

int init_net_wait_nic(char *ifname, size_t size, usec_t timeout) {
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

int init_net_configure(const char *ifname, const InitNetConfig *c) {
        _cleanup_close_ int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = {};
        int r;

        if (sk < 0)
                return -errno;
        (void) snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
        set_sin(&ifr.ifr_addr, c->addr);
        if (ioctl(sk, SIOCSIFADDR, &ifr) < 0)
                return -errno;
        struct in_addr mask = { .s_addr = htonl(c->prefix == 32 ? 0xffffffffu : ~(0xffffffffu >> c->prefix)) };
        set_sin(&ifr.ifr_netmask, mask);
        if (ioctl(sk, SIOCSIFNETMASK, &ifr) < 0)
                return -errno;
        if ((r = ifreq_set_up(sk, ifname)) < 0)
                return r;

        struct rtentry rt = {};
        set_sin(&rt.rt_dst, (struct in_addr){ .s_addr = INADDR_ANY });
        set_sin(&rt.rt_genmask, (struct in_addr){ .s_addr = INADDR_ANY });
        set_sin(&rt.rt_gateway, c->gateway);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        rt.rt_dev = (char *) ifname;
        if (ioctl(sk, SIOCADDRT, &rt) < 0)
                return -errno;
        return 0;
}
