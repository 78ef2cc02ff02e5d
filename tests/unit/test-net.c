/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the network library's pure parts: entry grammar, dns_allow names and matching,
 * address plan, generated nft rulesets and dnsmasq argv, drift normalisation. No root needed.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "alloc-util.h"
#include "net-internal.h"
#include "string-util.h"

static void test_entry_parse(void **state) {
        NetEntry e;
        char *err = NULL;
        char buf[64];

        assert_int_equal(net_entry_parse("10.0.0.0/8:443/tcp", &e, NULL), 0);
        assert_int_equal(e.family, AF_INET);
        assert_int_equal(e.prefix, 8);
        assert_int_equal(e.port, 443);
        assert_int_equal(e.proto, NET_ENTRY_PROTO_TCP);

        assert_int_equal(net_entry_parse("203.0.113.7", &e, NULL), 0);
        assert_int_equal(e.prefix, 32);
        assert_int_equal(e.port, 0);
        assert_int_equal(e.proto, NET_ENTRY_PROTO_ANY);

        assert_int_equal(net_entry_parse("203.0.113.7:53", &e, NULL), 0);
        assert_int_equal(e.port, 53);
        assert_int_equal(net_entry_parse("203.0.113.0/24/udp", &e, NULL), 0);
        assert_int_equal(e.proto, NET_ENTRY_PROTO_UDP);
        assert_int_equal(e.port, 0);

        assert_int_equal(net_entry_parse("2001:db8::/32", &e, NULL), 0);
        assert_int_equal(e.family, AF_INET6);
        assert_int_equal(e.prefix, 32);
        assert_int_equal(net_entry_parse("[2001:db8::1]:8443/tcp", &e, NULL), 0);
        assert_int_equal(e.port, 8443);
        assert_int_equal(e.prefix, 128);
        net_entry_format_addr(&e, buf, sizeof(buf));
        assert_string_equal(buf, "2001:db8::1/128");

        static const char *const bad[] = {
                "",
                "example.com",
                "10.0.0.1/8",
                "10.0.0.0/33",
                "10.0.0.0/8:0",
                "10.0.0.0/8:65536",
                "10.0.0.0:x",
                "[2001:db8::1",
                "[::1]x",
                "1.2.3.4/tcp/udp",
                "1.2.3.4 :80",
                "1.2.3.4:80/icmp",
                "/tcp",
                "::1:80:",
                "10.0.0.0/-1",
                "10.0.0.0/08x",
                "1.2.3.4:+80",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (net_entry_parse(bad[i], &e, &err) == 0)
                        fail_msg("accepted bad entry '%s'", bad[i]);
                assert_non_null(err);
                err = mfree(err);
        }
        char long_entry[300];
        memset(long_entry, '1', sizeof(long_entry) - 1);
        long_entry[sizeof(long_entry) - 1] = 0;
        assert_int_equal(net_entry_parse(long_entry, &e, NULL), -EINVAL);
}

static void test_dns_names(void **state) {
        char *n = NULL, *err = NULL;

        assert_int_equal(net_dns_name_normalize("API.Example.COM.", &n, NULL), 0);
        assert_string_equal(n, "api.example.com");
        n = mfree(n);
        assert_int_equal(net_dns_name_normalize("*.example.com", &n, NULL), 0);
        assert_string_equal(n, "*.example.com");
        n = mfree(n);

        static const char *const bad[] = {
                "",           "com",  "*.com",   "a.*.example.com", "*example.com",  "1.2.3.4",
                "-a.example", "a..b", "a b.com", "ex/ample.com",    "exa\nmple.com", "*",
                "123.456"
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (net_dns_name_normalize(bad[i], &n, &err) == 0)
                        fail_msg("accepted bad name '%s'", bad[i]);
                assert_non_null(err);
                err = mfree(err);
        }

        char *list[] = { (char *) "example.com", (char *) "*.cdn.example.net", NULL };
        assert_true(net_dns_name_allowed(list, "example.com"));
        assert_true(net_dns_name_allowed(list, "EXAMPLE.com."));
        assert_false(net_dns_name_allowed(list, "www.example.com"));
        assert_false(net_dns_name_allowed(list, "notexample.com"));
        assert_true(net_dns_name_allowed(list, "a.cdn.example.net"));
        assert_true(net_dns_name_allowed(list, "x.y.cdn.example.net"));
        assert_false(net_dns_name_allowed(list, "cdn.example.net"));
        assert_false(net_dns_name_allowed(list, "evilcdn.example.net"));
        assert_false(net_dns_name_allowed(list, ""));
        assert_false(net_dns_name_allowed(list, "."));
}

static void test_policy_errors(void **state) {
        NetPolicy *p = NULL;
        char *err = NULL;
        char *allow[] = { (char *) "1.2.3.4", (char *) "10.0.0.1/8", NULL };
        char *dns[] = { (char *) "Example.com", (char *) "example.com", (char *) "*.example.org", NULL };

        assert_int_equal(net_policy_from_strv(allow, NULL, NULL, &p, &err), -EINVAL);
        assert_non_null(strstr(err, "network.allow[1]"));
        err = mfree(err);
        assert_int_equal(net_policy_from_strv(NULL, NULL, dns, &p, &err), 0);
        assert_int_equal(strv_length(p->dns_allow), 2); /* deduplicated after normalisation */
        p = net_policy_free(p);
}

static void plan_for(NetPlan *plan, const char *id) {
        uint32_t base;
        unsigned prefix;
        memset(plan, 0, sizeof(*plan));
        assert_int_equal(net_plan_names(plan, id), 0);
        assert_int_equal(net_pool_parse("10.201.0.0/16", &base, &prefix), 0);
        assert_int_equal(net_plan_addresses(plan, base, prefix, 3), 0);
        assert_int_equal(inet_pton(AF_INET, "203.0.113.53", &plan->dns_upstream), 1);
        plan->dns = true;
}

static void test_plan(void **state) {
        NetPlan plan, other;
        char a[INET_ADDRSTRLEN];
        uint32_t base;
        unsigned prefix;

        plan_for(&plan, "pod-1");
        plan_for(&other, "pod-2");
        assert_string_not_equal(plan.short_id, other.short_id);
        assert_true(strlen(plan.host_veth) <= 15 && strlen(plan.tap) <= 15 && strlen(plan.bridge) <= 15);
        assert_true(startswith(plan.netns, "nucleus-") != NULL);
        assert_string_equal(inet_ntop(AF_INET, &plan.host_addr, a, sizeof(a)), "10.201.0.25");
        assert_string_equal(inet_ntop(AF_INET, &plan.ns_addr, a, sizeof(a)), "10.201.0.26");
        assert_string_equal(inet_ntop(AF_INET, &plan.gw_addr, a, sizeof(a)), "10.201.0.29");
        assert_string_equal(inet_ntop(AF_INET, &plan.guest_addr, a, sizeof(a)), "10.201.0.30");
        assert_int_equal(plan.mac[0], '0');
        assert_int_equal(plan.mac[1], '6');

        assert_int_equal(net_pool_blocks(16), 8192);
        assert_int_equal(net_plan_addresses(&plan, 0x0ac90000, 16, 8192), -ERANGE);
        assert_int_equal(net_pool_parse("10.201.0.0/27", &base, &prefix), -EINVAL);
        assert_int_equal(net_pool_parse("10.201.0.1/16", &base, &prefix), -EINVAL);
        assert_int_equal(net_plan_names(&plan, "a/b"), -EINVAL);
        assert_int_equal(net_plan_names(&plan, ""), -EINVAL);
}

static const char *after(const char *hay, const char *needle) {
        const char *p = strstr(hay, needle);
        if (!p)
                fail_msg("missing in ruleset: %s\n%s", needle, hay);
        return p;
}

static void test_ruleset_pod(void **state) {
        NetPlan plan;
        NetPolicy *p = NULL;
        char *allow[] = {
                (char *) "203.0.113.0/24:443", (char *) "10.1.2.0/24:80/tcp", (char *) "0.0.0.0/0", NULL
        };
        char *deny[] = { (char *) "203.0.113.66", NULL };
        char *dns[] = { (char *) "example.com", NULL };

        plan_for(&plan, "pod-1");
        assert_int_equal(net_policy_from_strv(allow, deny, dns, &p, NULL), 0);
        _cleanup_free_ char *rs = net_ruleset_pod(&plan, p);
        assert_non_null(rs);

        /* policy drop on every hook */
        after(rs, "type filter hook input priority filter; policy drop;");
        after(rs, "type filter hook output priority filter; policy drop;");
        after(rs, "type filter hook forward priority filter; policy drop;");
        assert_null(strstr(rs, "policy accept"));
        /* order: deny < pool < explicit private allow < special drop < other allows < dns set */
        const char *d = after(rs, "ip daddr 203.0.113.66/32 drop");
        const char *pool = after(rs, "ip daddr 10.201.0.0/16 drop");
        const char *explicit = after(rs, "ip daddr 10.1.2.0/24 tcp dport 80 accept");
        const char *special4 = after(rs, "ip daddr { 0.0.0.0/8, 10.0.0.0/8");
        const char *special6 = after(rs, "ip6 daddr { ::/127");
        const char *a1 = after(rs, "ip daddr 203.0.113.0/24 meta l4proto { tcp, udp } th dport 443 accept");
        const char *any = after(rs, "ip daddr 0.0.0.0/0 accept");
        const char *set = after(rs, "ip daddr @dns4 accept");
        assert_true(
                d < pool && pool < explicit && explicit < special4 && special4 < a1 && a1 < any &&
                any < set && special6 < a1);
        after(rs, "169.254.0.0/16");
        after(rs, "::ffff:0:0/96");
        after(rs, "64:ff9b::/96");
        after(rs, "fc00::/7");
        /* DNS only from the guest to the gateway, upstream only from the namespace */
        after(rs, "ip saddr 10.201.0.30 ip daddr 10.201.0.29 meta l4proto { tcp, udp } th dport 53 accept");
        after(rs, "ip daddr 203.0.113.53 meta l4proto { tcp, udp } th dport 53 accept");
        after(rs, "meta nfproto ipv4 ip saddr != 10.201.0.30 drop");
        p = net_policy_free(p);
}

static void test_ruleset_host(void **state) {
        NetPlan plan;
        plan_for(&plan, "pod-1");
        _cleanup_free_ char *rs = net_ruleset_host(&plan);
        char want[128];
        (void) snprintf(want, sizeof(want), "iifname \"%s\" drop", plan.host_veth);
        after(rs, want);
        after(rs, "masquerade");
        after(rs, "ip daddr 10.201.0.0/16 drop");
        (void) snprintf(want, sizeof(want), "table inet %s {", plan.host_table);
        after(rs, want);
}

static void test_dnsmasq_argv(void **state) {
        NetPlan plan;
        NetPolicy *p = NULL;
        char *dns[] = { (char *) "example.com",
                        (char *) "*.example.org",
                        (char *) "both.test",
                        (char *) "*.both.test",
                        NULL };
        plan_for(&plan, "pod-1");
        assert_int_equal(net_policy_from_strv(NULL, NULL, dns, &p, NULL), 0);
        _cleanup_strv_free_ char **argv = net_dnsmasq_argv(&plan, p, "/usr/sbin/dnsmasq", "/x/pid", "/x/log");
        assert_true(strv_contains(argv, "--conf-file=/dev/null"));
        assert_true(strv_contains(argv, "--no-resolv"));
        /* Behind the DNS filter: only on the namespace's loopback, never where the guest asks. */
        assert_true(strv_contains(argv, "--listen-address=127.0.0.1"));
        assert_false(strv_contains(argv, "--listen-address=10.201.0.29"));
        assert_true(strv_contains(argv, "--server=/example.com/203.0.113.53#53"));
        assert_true(strv_contains(argv, "--server=/*.example.com/"));
        assert_true(strv_contains(argv, "--server=/*.example.org/203.0.113.53#53"));
        assert_false(strv_contains(argv, "--server=/example.org/203.0.113.53#53"));
        assert_true(strv_contains(argv, "--server=/both.test/203.0.113.53#53"));
        assert_false(strv_contains(argv, "--server=/*.both.test/"));
        assert_true(strv_contains(argv, "--nftset=/example.com/4#inet#nucleus#dns4,6#inet#nucleus#dns6"));
        /* no default upstream anywhere */
        STRV_FOREACH(a, argv)
                if (startswith(*a, "--server=") && !startswith(*a, "--server=/"))
                        fail_msg("default upstream: %s", *a);
        p = net_policy_free(p);
}

/* Setup hosts: validated, the ones dns_allow already opens dropped, a shared base name refused;
 * the ruleset and dnsmasq put their answers in sets of their own. */
static void test_setup_hosts(void **state) {
        NetPlan plan;
        NetPolicy *p = NULL;
        char *err = NULL;
        char *dns[] = { (char *) "exact.test", (char *) "*.wild.test", NULL };
        char *deny[] = { (char *) "198.51.100.0/24", NULL };
        char *bad[] = { (char *) "pypi.org", (char *) "not a host", NULL };
        char *clash1[] = { (char *) "wild.test", NULL };
        char *clash2[] = { (char *) "*.exact.test", NULL };
        char *hosts[] = { (char *) "PyPI.org",
                          (char *) "files.pythonhosted.org",
                          (char *) "exact.test",
                          (char *) "a.wild.test",
                          (char *) "*.b.wild.test",
                          (char *) "pypi.org",
                          NULL };

        assert_int_equal(net_policy_from_strv(NULL, deny, dns, &p, NULL), 0);
        assert_int_equal(net_policy_set_setup_hosts(p, bad, &err), -EINVAL);
        assert_non_null(strstr(err, "setup.hosts[1]"));
        err = mfree(err);
        assert_int_equal(net_policy_set_setup_hosts(p, clash1, &err), -EINVAL);
        assert_non_null(strstr(err, "*.wild.test"));
        err = mfree(err);
        assert_int_equal(net_policy_set_setup_hosts(p, clash2, &err), -EINVAL);
        err = mfree(err);
        assert_int_equal(net_policy_set_setup_hosts(p, hosts, &err), 0);
        assert_int_equal(strv_length(p->setup_hosts), 2); /* the rest is open anyway, or repeated */
        assert_true(strv_contains(p->setup_hosts, "pypi.org"));
        assert_true(strv_contains(p->setup_hosts, "files.pythonhosted.org"));

        plan_for(&plan, "pod-1");
        _cleanup_free_ char *plain = net_ruleset_pod(&plan, p);
        assert_null(strstr(plain, "setup4")); /* without plan.setup nothing changes */
        plan.setup = true;
        _cleanup_free_ char *rs = net_ruleset_pod(&plan, p);
        after(rs, "set setup4 {");
        after(rs, "set setup6 {");
        const char *special = after(rs, "ip daddr { 0.0.0.0/8, 10.0.0.0/8");
        const char *dns4 = after(rs, "ip daddr @dns4 accept");
        after(rs, "set setup_open {\n\t\ttype inet_proto");
        /* Behind the gate: an address dnsmasq adds after the close opens nothing. */
        const char *s4 = after(rs, "meta l4proto @setup_open ip daddr @setup4 accept");
        after(rs, "meta l4proto @setup_open ip6 daddr @setup6 accept");
        assert_null(strstr(rs, "\t\tip daddr @setup4 accept"));
        assert_true(special < dns4 && dns4 < s4); /* DNS answers never open a special range */
        /* network.deny holds during setup too: a setup host resolving into it stays closed. */
        assert_true(after(rs, "ip daddr 198.51.100.0/24 drop") < s4);

        _cleanup_strv_free_ char **argv = net_dnsmasq_argv(&plan, p, "/usr/sbin/dnsmasq", "/x/pid", "/x/log");
        assert_true(strv_contains(argv, "--server=/pypi.org/203.0.113.53#53"));
        assert_true(strv_contains(argv, "--nftset=/pypi.org/4#inet#nucleus#setup4,6#inet#nucleus#setup6"));
        assert_true(strv_contains(argv, "--nftset=/exact.test/4#inet#nucleus#dns4,6#inet#nucleus#dns6"));
        assert_false(strv_contains(argv, "--nftset=/exact.test/4#inet#nucleus#setup4,6#inet#nucleus#setup6"));
        p = net_policy_free(p);

        /* The setup sets' elements are not drift; their rules are. */
        const char *a = "{\"nftables\":[{\"set\":{\"family\":\"inet\",\"name\":\"setup4\",\"table\":"
                        "\"nucleus\",\"type\":\"ipv4_addr\",\"elem\":[\"203.0.113.9\"]}}]}";
        const char *b = "{\"nftables\":[{\"set\":{\"family\":\"inet\",\"name\":\"setup4\",\"table\":"
                        "\"nucleus\",\"type\":\"ipv4_addr\"}}]}";
        _cleanup_free_ char *na = net_ruleset_normalize(a, strlen(a));
        _cleanup_free_ char *nb = net_ruleset_normalize(b, strlen(b));
        assert_string_equal(na, nb);
        const char *g1 = "{\"nftables\":[{\"set\":{\"family\":\"inet\",\"name\":\"setup_open\",\"table\":"
                         "\"nucleus\",\"type\":\"inet_proto\",\"elem\":[\"tcp\",\"udp\"]}}]}";
        const char *g2 = "{\"nftables\":[{\"set\":{\"family\":\"inet\",\"name\":\"setup_open\",\"table\":"
                         "\"nucleus\",\"type\":\"inet_proto\"}}]}";
        _cleanup_free_ char *ng1 = net_ruleset_normalize(g1, strlen(g1));
        _cleanup_free_ char *ng2 = net_ruleset_normalize(g2, strlen(g2));
        assert_string_equal(ng1, ng2); /* an open window is not drift */
}

static void test_normalize(void **state) {
        const char *a = "{\"nftables\":[{\"metainfo\":{\"version\":\"1.0.6\"}},"
                        "{\"table\":{\"family\":\"inet\",\"name\":\"nucleus\",\"handle\":1}},"
                        "{\"set\":{\"family\":\"inet\",\"name\":\"dns4\",\"table\":\"nucleus\",\"type\":"
                        "\"ipv4_addr\","
                        "\"handle\":2,\"elem\":[\"203.0.113.5\"]}},"
                        "{\"rule\":{\"family\":\"inet\",\"table\":\"nucleus\",\"chain\":\"forward\","
                        "\"handle\":9,"
                        "\"expr\":[{\"drop\":null}]}}]}";
        const char *b = "{\"nftables\":[{\"metainfo\":{\"version\":\"1.0.7\"}},"
                        "{\"table\":{\"family\":\"inet\",\"name\":\"nucleus\",\"handle\":4}},"
                        "{\"set\":{\"family\":\"inet\",\"name\":\"dns4\",\"table\":\"nucleus\",\"type\":"
                        "\"ipv4_addr\","
                        "\"handle\":5}},"
                        "{\"rule\":{\"family\":\"inet\",\"table\":\"nucleus\",\"chain\":\"forward\","
                        "\"handle\":12,"
                        "\"expr\":[{\"drop\":null}]}}]}";
        const char *c = "{\"nftables\":[{\"table\":{\"family\":\"inet\",\"name\":\"nucleus\",\"handle\":4}},"
                        "{\"set\":{\"family\":\"inet\",\"name\":\"dns4\",\"table\":\"nucleus\",\"type\":"
                        "\"ipv4_addr\"}},"
                        "{\"rule\":{\"family\":\"inet\",\"table\":\"nucleus\",\"chain\":\"forward\","
                        "\"expr\":[{\"accept\":null}]}}]}";
        const char *d = "{\"nftables\":[{\"table\":{\"family\":\"inet\",\"name\":\"nucleus\"}},"
                        "{\"set\":{\"family\":\"inet\",\"name\":\"other\",\"table\":\"nucleus\",\"type\":"
                        "\"ipv4_addr\","
                        "\"elem\":[\"1.1.1.1\"]}}]}";
        const char *e = "{\"nftables\":[{\"table\":{\"family\":\"inet\",\"name\":\"nucleus\"}},"
                        "{\"set\":{\"family\":\"inet\",\"name\":\"other\",\"table\":\"nucleus\",\"type\":"
                        "\"ipv4_addr\"}}]}";
        _cleanup_free_ char *na = net_ruleset_normalize(a, strlen(a));
        _cleanup_free_ char *nb = net_ruleset_normalize(b, strlen(b));
        _cleanup_free_ char *nc = net_ruleset_normalize(c, strlen(c));
        _cleanup_free_ char *nd = net_ruleset_normalize(d, strlen(d));
        _cleanup_free_ char *ne = net_ruleset_normalize(e, strlen(e));
        assert_non_null(na);
        assert_string_equal(na, nb);     /* handles, metainfo, DNS set elements ignored */
        assert_string_not_equal(na, nc); /* a changed verdict is drift */
        assert_string_not_equal(nd, ne); /* elements of any other set are not ignored */
        assert_null(net_ruleset_normalize("{", 1));
        assert_null(net_ruleset_normalize("[]", 2));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_entry_parse),   cmocka_unit_test(test_dns_names),
                cmocka_unit_test(test_policy_errors), cmocka_unit_test(test_plan),
                cmocka_unit_test(test_ruleset_pod),   cmocka_unit_test(test_ruleset_host),
                cmocka_unit_test(test_dnsmasq_argv),  cmocka_unit_test(test_normalize),
                cmocka_unit_test(test_setup_hosts),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
