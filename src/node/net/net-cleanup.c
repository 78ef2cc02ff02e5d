/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Removing a pod's network (docs/network.md): its namespace and the processes in it, the
 * host veth and host table, dnsmasq and the state files, and the block's allocation record,
 * which stays while anything is left so the next node start retries. A parked namespace (a
 * warm pool pod's, net_pod_park) is named and recorded like any other and goes the same way.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "net-exec.h"
#include "net-pod.h"
#include "parse-util.h"
#include "string-util.h"

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

int net_plan_remove(const NetPlan *plan, const char *pod_state_dir, const char *alloc_path) {
        _cleanup_free_ char *nsp = xasprintf(NET_NETNS_DIR "/%s", plan->netns);
        int r, ret = 0;

        (void) kill_netns_processes(nsp);
        if (pod_state_dir)
                net_kill_dnsmasq_by_pidfile(pod_state_dir);
        r = net_host_table_del(plan->host_table);
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
                (void) net_plan_remove(&plan, pod_dir, path);
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
        pod_dir = xasprintf("%s/pods/%s", net_cfg_state_dir(config), plan.short_id);
        nsp = xasprintf(NET_NETNS_DIR "/%s", plan.netns);
        veth = xasprintf("/sys/class/net/%s", plan.host_veth);
        found = access(pod_dir, F_OK) >= 0 || access(nsp, F_OK) >= 0 || access(veth, F_OK) >= 0;

        /* The allocation record that names this pod, if any. */
        alloc_dir = xasprintf("%s/alloc", net_cfg_state_dir(config));
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
        r = net_plan_remove(&plan, pod_dir, alloc_path);
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
                                                (void) net_host_table_del(name);
                                }
                        }
                }
        }
        return n;
}

int net_cleanup_stale(const NetConfig *config, bool all) {
        int n = cleanup_recorded(net_cfg_state_dir(config));
        if (n < 0)
                return n;
        if (all) {
                int m = cleanup_all_on_host();
                if (m > n)
                        n = m;
        }
        return n;
}
