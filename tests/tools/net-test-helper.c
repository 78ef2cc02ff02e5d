/* SPDX-License-Identifier: Apache-2.0 */
/*
 * net-test-helper: test driver for the network library (not installed). `pod` sets up one pod
 * network from a JSON network section, prints its info as one JSON line, then obeys commands on
 * stdin ("drift", "tap", "dns_events", "teardown") one per line, answering one JSON line each. `cleanup` runs
 * net_cleanup_stale, `cleanup-pod` net_cleanup_pod, `doctor` prints the checks. Input comes from the test suite.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "json-util.h"
#include "log.h"
#include "net.h"
#include "parse-util.h"
#include "string-util.h"

static char **json_strv(json_t *a) {
        char **l = xcalloc(1, sizeof(char *));
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v) {
                if (json_is_string(v))
                        strv_extend(&l, json_string_value(v));
        }
        return l;
}

static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

static void print_json(json_t *j) {
        _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
        pthread_mutex_lock(&print_lock);
        printf("%s\n", s);
        fflush(stdout);
        pthread_mutex_unlock(&print_lock);
}

/* What the node does on drift, minus the kill: report it (the test then tears down). */
static void on_drift(void *userdata, int result, const char *detail) {
        _cleanup_json_ json_t *o = json_pack(
                "{s:s,s:i,s:s}", "killed", "network policy drift", "result", result, "detail", detail ? detail : "");
        print_json(o);
}

/* What the node does with the DNS filter's refusals (audit + metric), kept here for the
 * "dns_events" command: the refused queries in order. */
static pthread_mutex_t dns_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *dns_events;

static void on_dns_event(
        void *userdata, const char *reason, const char *name, const char *entry, unsigned limit, bool detail) {
        pthread_mutex_lock(&dns_lock);
        if (!dns_events)
                dns_events = json_array();
        if (json_array_size(dns_events) < 4096)
                json_array_append_new(
                        dns_events,
                        json_pack(
                                "{s:s,s:s,s:s?,s:i,s:b}",
                                "reason",
                                reason,
                                "name",
                                name,
                                "entry",
                                entry,
                                "limit",
                                (int) limit,
                                "detail",
                                detail));
        pthread_mutex_unlock(&dns_lock);
}

static int cmd_pod(NetConfig *cfg, const char *pod_id, const char *spec, uint32_t monitor_ms) {
        _cleanup_json_ json_t *j = NULL;
        _cleanup_free_ char *err = NULL;
        _cleanup_strv_free_ char **allow = NULL, **deny = NULL, **dns = NULL;
        _cleanup_(net_policy_freep) NetPolicy *policy = NULL;
        NetPod *pod = NULL;
        int r;

        r = json_parse_strict(spec, strlen(spec), 1U << 20, &j, &err);
        if (r < 0)
                return log_error_errno(r, "bad spec JSON: %s", err ? err : "");
        allow = json_strv(json_object_get(j, "allow"));
        deny = json_strv(json_object_get(j, "deny"));
        dns = json_strv(json_object_get(j, "dns_allow"));
        r = net_policy_from_strv(allow, deny, dns, &policy, &err);
        if (r < 0) {
                _cleanup_json_ json_t *o = json_pack(
                        "{s:s,s:s}", "error", err ? err : "invalid", "kind", "invalid_request");
                print_json(o);
                return 2;
        }
        json_t *wn = json_object_get(j, "dns_wildcard_names");
        if (json_is_integer(wn))
                policy->dns_wildcard_names = (unsigned) json_integer_value(wn);
        cfg->dns_event = on_dns_event;
        r = net_pod_setup(cfg, pod_id, policy, &pod, &err);
        if (r < 0) {
                _cleanup_json_ json_t *o = json_pack(
                        "{s:s,s:i}", "error", err ? err : strerror(-r), "errno", -r);
                print_json(o);
                return 1;
        }
        const NetPodInfo *i = net_pod_info(pod);
        {
                _cleanup_json_ json_t *o = json_pack(
                        "{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:s,s:s}",
                        "netns",
                        i->netns_name,
                        "netns_path",
                        i->netns_path,
                        "tap",
                        i->tap,
                        "mac",
                        i->mac,
                        "guest_addr",
                        i->guest_addr,
                        "guest_prefix",
                        (int) i->guest_prefix,
                        "gateway",
                        i->gateway,
                        "dns",
                        i->dns,
                        "cmdline",
                        i->cmdline,
                        "host_veth",
                        i->host_veth,
                        "host_table",
                        i->host_table);
                print_json(o);
        }
        if (monitor_ms > 0) {
                r = net_pod_monitor_start(pod, (uint64_t) monitor_ms * 1000, on_drift, NULL);
                if (r < 0) {
                        (void) net_pod_teardown(pod);
                        return log_error_errno(r, "cannot start the drift monitor: %m");
                }
        }

        char line[64];
        while (fgets(line, sizeof(line), stdin)) {
                line[strcspn(line, "\n")] = 0;
                if (streq(line, "drift")) {
                        _cleanup_free_ char *d = NULL;
                        r = net_pod_check_drift(pod, &d);
                        _cleanup_json_ json_t *o = json_pack("{s:i,s:s?}", "drift", r, "detail", d);
                        print_json(o);
                } else if (streq(line, "tap")) {
                        int fd = net_pod_open_tap(pod, true);
                        _cleanup_json_ json_t *o = json_pack("{s:i}", "tap_fd", fd);
                        print_json(o);
                        if (fd >= 0)
                                (void) close(fd);
                } else if (streq(line, "dns_events")) {
                        pthread_mutex_lock(&dns_lock);
                        if (!dns_events)
                                dns_events = json_array();
                        _cleanup_json_ json_t *o = json_pack("{s:O}", "dns_events", dns_events);
                        pthread_mutex_unlock(&dns_lock);
                        print_json(o);
                } else if (streq(line, "teardown"))
                        break;
        }
        r = net_pod_teardown(pod);
        _cleanup_json_ json_t *o = json_pack("{s:i}", "teardown", r);
        print_json(o);
        return r < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
        NetConfig cfg = NET_CONFIG_NULL;
        const char *pod_id = NULL, *spec = NULL;
        uint32_t monitor_ms = 0;
        bool all = false;

        log_set_prefix("net-test-helper");
        if (argc < 2) {
                fprintf(stderr,
                        "usage: net-test-helper pod|cleanup|cleanup-pod|doctor [--state-dir D] [--pool "
                        "CIDR] "
                        "[--dns-upstream IP] [--dns-port N] [--pod-id ID] [--spec JSON] [--monitor-ms MS] "
                        "[--all]\n");
                return 2;
        }
        for (int i = 2; i < argc; i++) {
                const char *a = argv[i];
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (streq(a, "--all")) {
                        all = true;
                        continue;
                }
                if (!v) {
                        fprintf(stderr, "missing value for %s\n", a);
                        return 2;
                }
                i++;
                if (streq(a, "--state-dir"))
                        cfg.state_dir = v;
                else if (streq(a, "--pool"))
                        cfg.pool = v;
                else if (streq(a, "--dns-upstream"))
                        cfg.dns_upstream = v;
                else if (streq(a, "--dns-port")) {
                        uint32_t p;
                        if (safe_atou32(v, &p) < 0 || p == 0 || p > 65535)
                                return 2;
                        cfg.dns_upstream_port = (uint16_t) p;
                } else if (streq(a, "--monitor-ms")) {
                        if (safe_atou32(v, &monitor_ms) < 0)
                                return 2;
                } else if (streq(a, "--pod-id"))
                        pod_id = v;
                else if (streq(a, "--spec"))
                        spec = v;
                else {
                        fprintf(stderr, "unknown option %s\n", a);
                        return 2;
                }
        }

        if (streq(argv[1], "pod")) {
                if (!pod_id || !spec)
                        return 2;
                return cmd_pod(&cfg, pod_id, spec, monitor_ms);
        }
        if (streq(argv[1], "cleanup")) {
                int r = net_cleanup_stale(&cfg, all);
                printf("{\"cleaned\":%d}\n", r);
                return r < 0 ? 1 : 0;
        }
        if (streq(argv[1], "cleanup-pod")) {
                if (!pod_id)
                        return 2;
                int r = net_cleanup_pod(&cfg, pod_id);
                printf("{\"found\":%d}\n", r);
                return r < 0 ? 1 : 0;
        }
        if (streq(argv[1], "doctor")) {
                NetDoctorCheck checks[16];
                size_t n = net_doctor_checks(&cfg, checks, ELEMENTSOF(checks));
                _cleanup_json_ json_t *a = json_array();
                for (size_t i = 0; i < n; i++)
                        (void) json_array_append_new(
                                a,
                                json_pack(
                                        "{s:s,s:b,s:s}",
                                        "name",
                                        checks[i].name,
                                        "ok",
                                        checks[i].ok,
                                        "detail",
                                        checks[i].detail));
                print_json(a);
                return 0;
        }
        fprintf(stderr, "unknown command %s\n", argv[1]);
        return 2;
}
