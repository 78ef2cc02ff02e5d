/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The network library's nftables side (docs/network.md): rulesets applied in one `nft -f`
 * transaction, normalised snapshots of what is in force, and the drift monitor that compares
 * them with what was applied.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "alloc-util.h"
#include "net-exec.h"
#include "net-pod.h"
#include "string-util.h"

int net_nft_apply(int netns_fd, const char *ruleset, char **reterr) {
        const char *nft = net_find_program("nft");
        if (!nft)
                return net_set_err(reterr, -ENOENT, "nft not found (install nftables)");
        char *argv[] = { (char *) nft, (char *) "-f", (char *) "-", NULL };
        return net_run_ok(netns_fd, argv, ruleset, reterr);
}

int net_nft_snapshot(int netns_fd, const char *table, char **ret, char **reterr) {
        const char *nft = net_find_program("nft");
        _cleanup_free_ char *out = NULL, *err = NULL;
        int r;

        if (!nft)
                return net_set_err(reterr, -ENOENT, "nft not found");
        char *argv_rs[] = { (char *) nft, (char *) "-j", (char *) "list", (char *) "ruleset", NULL };
        char *argv_t[] = { (char *) nft,   (char *) "-j", (char *) "list", (char *) "table", (char *) "inet",
                           (char *) table, NULL };
        r = net_run(netns_fd, table ? argv_t : argv_rs, NULL, &out, &err);
        if (r < 0)
                return net_set_err(reterr, r, "cannot run nft: %s", strerror(-r));
        if (r != 0)
                return net_set_err(
                        reterr, -EIO, "nft list %s failed: %s", table ? table : "ruleset", err ? err : "");
        char *norm = net_ruleset_normalize(out, strlen(out));
        if (!norm)
                return net_set_err(reterr, -EBADMSG, "cannot parse nft -j output");
        *ret = norm;
        return 0;
}

int net_host_table_del(const char *table) {
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

void net_monitor_stop(NetPod *pod) {
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

static char *first_difference(const char *a, const char *b) {
        size_t i = 0;
        while (a[i] && a[i] == b[i])
                i++;
        size_t from = i > 60 ? i - 60 : 0;
        return xasprintf("applied ...%.120s... now ...%.120s...", a + from, b + from);
}

int net_pod_setup_window(NetPod *pod, bool open) {
        if (!pod || !pod->plan.setup || !pod->filter)
                return -EINVAL;
        if (open) {
                _cleanup_free_ char *batch = xasprintf(
                        "add element inet %s %s { tcp, udp }\n", NET_POD_TABLE, NET_SET_SETUP_OPEN);
                int r = net_nft_apply(pod->netns_fd, batch, NULL);
                if (r < 0)
                        return r;
                net_dns_filter_set_setup_open(pod->filter, true);
                return 0;
        }
        /* Names first (no new answer for them), then in one transaction the gate and the
         * address sets: whatever dnsmasq adds to the address sets later is behind a shut gate. */
        net_dns_filter_set_setup_open(pod->filter, false);
        _cleanup_free_ char *batch = xasprintf(
                "flush set inet %s %s\nflush set inet %s %s\nflush set inet %s %s\n",
                NET_POD_TABLE,
                NET_SET_SETUP_OPEN,
                NET_POD_TABLE,
                NET_SET_SETUP4,
                NET_POD_TABLE,
                NET_SET_SETUP6);
        return net_nft_apply(pod->netns_fd, batch, NULL);
}

int net_pod_check_drift(NetPod *pod, char **reterr) {
        _cleanup_free_ char *now_pod = NULL, *now_host = NULL;
        int r;

        if (!pod)
                return -EINVAL;
        r = net_nft_snapshot(pod->netns_fd, NULL, &now_pod, reterr);
        if (r < 0)
                return r;
        if (!streq(now_pod, pod->baseline_pod)) {
                if (reterr && !*reterr) {
                        _cleanup_free_ char *d = first_difference(pod->baseline_pod, now_pod);
                        *reterr = xasprintf("pod namespace ruleset changed: %s", d);
                }
                return 1;
        }
        r = net_nft_snapshot(-1, pod->plan.host_table, &now_host, reterr);
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
