/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The network library's DNS side (docs/network.md): the pod's dnsmasq (resolving only the
 * allowed names, adding their addresses to the nftables sets) and the guest's DNS filter in
 * front of it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "net-exec.h"
#include "net-pod.h"
#include "parse-util.h"
#include "string-util.h"

int net_resolv_conf_upstream(struct in_addr *ret) {
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

int net_start_dnsmasq(NetPod *pod, const NetPolicy *policy, char **reterr) {
        const char *bin = net_find_program("dnsmasq");
        _cleanup_free_ char *pid_file = xasprintf("%s/dnsmasq.pid", pod->state_dir);
        _cleanup_free_ char *log_file = xasprintf("%s/dnsmasq.log", pod->state_dir);
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_close_ int logfd = -EBADF;
        int r;

        if (!bin)
                return net_set_err(reterr, -ENOENT, "dnsmasq not found (install dnsmasq-base)");
        (void) unlink(pid_file);
        argv = net_dnsmasq_argv(&pod->plan, policy, bin, pid_file, log_file);
        logfd = open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (logfd < 0)
                return net_set_err(reterr, -errno, "cannot open %s: %m", log_file);
        r = net_spawn(pod->netns_fd, argv, -1, logfd, logfd, &pod->dnsmasq);
        if (r < 0)
                return net_set_err(reterr, r, "cannot start dnsmasq: %s", strerror(-r));

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
                        return net_set_err(reterr, -EIO, "dnsmasq exited at start: %s", log ? log : "");
                }
                (void) usleep(10 * 1000);
        }
        return net_set_err(reterr, -ETIMEDOUT, "dnsmasq did not start within 5 s");
}

int net_start_dns_filter(NetPod *pod, const NetConfig *config, const NetPolicy *policy, char **reterr) {
        struct sockaddr_in listen = { .sin_family = AF_INET,
                                      .sin_port = htons(53),
                                      .sin_addr = pod->plan.gw_addr };
        struct sockaddr_in up = { .sin_family = AF_INET,
                                  .sin_port = htons(NET_DNSMASQ_PORT),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        unsigned limit = policy->dns_wildcard_names ?: config->dns_wildcard_names;
        NetDnsFilter *f = net_dns_filter_new(policy->dns_allow, limit);
        net_dns_filter_add_setup(f, policy->setup_hosts);
        pod->filter = f;
        int r = net_dns_proxy_start(
                pod->netns_fd, &listen, &up, f, config->dns_event, config->dns_event_userdata, &pod->dns_filter);
        if (r < 0)
                return net_set_err(reterr, r, "cannot start the DNS filter: %s", strerror(-r));
        return 0;
}

void net_kill_dnsmasq_by_pidfile(const char *pod_state_dir) {
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
