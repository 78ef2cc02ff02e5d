/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pure generators for one pod's network: names and addresses (the plan), the nftables rulesets
 * for the pod's namespace and the host, dnsmasq's argv, and the normaliser that makes two
 * `nft -j list` outputs comparable for drift. Inputs were validated by net-entry.c; nothing
 * here does I/O or trusts the text it formats beyond that validation.
 */
#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "json-util.h"
#include "net-internal.h"
#include "parse-util.h"
#include "string-util.h"

/* Denied unless an allow entry lies inside one of them (docs/network.md "Special ranges").
 * IPv4: RFC 6890 special-purpose blocks that are not global unicast, plus CGNAT (Alibaba's
 * metadata 100.100.100.200 lives there) and link-local (169.254.169.254, the cloud metadata
 * address). IPv6: loopback, unspecified, IPv4-mapped (::ffff:0:0/96: would reach IPv4 targets
 * through a dual-stack path), IPv4-compatible, NAT64 (64:ff9b::/96 and the local-use
 * 64:ff9b:1::/48 embed IPv4 addresses), ULA (fd00:ec2::254 is AWS's IPv6 metadata address),
 * link-local, site-local, multicast, discard, Teredo and 6to4 (both embed IPv4). */
const NetSpecialRange net_special_ranges[] = {
        { AF_INET, "0.0.0.0/8" },       { AF_INET, "10.0.0.0/8" },     { AF_INET, "100.64.0.0/10" },
        { AF_INET, "127.0.0.0/8" },     { AF_INET, "169.254.0.0/16" }, { AF_INET, "172.16.0.0/12" },
        { AF_INET, "192.0.0.0/24" },    { AF_INET, "192.168.0.0/16" }, { AF_INET, "198.18.0.0/15" },
        { AF_INET, "224.0.0.0/4" },     { AF_INET, "240.0.0.0/4" },    { AF_INET6, "::/127" },
        { AF_INET6, "::/96" },          { AF_INET6, "::ffff:0:0/96" }, { AF_INET6, "64:ff9b::/96" },
        { AF_INET6, "64:ff9b:1::/48" }, { AF_INET6, "100::/64" },      { AF_INET6, "2001::/32" },
        { AF_INET6, "2002::/16" },      { AF_INET6, "fc00::/7" },      { AF_INET6, "fe80::/10" },
        { AF_INET6, "fec0::/10" },      { AF_INET6, "ff00::/8" },
};
const size_t net_n_special_ranges = ELEMENTSOF(net_special_ranges);

int net_plan_names(NetPlan *plan, const char *pod_id) {
        uint8_t h[crypto_hash_sha256_BYTES];
        size_t len;

        if (!pod_id)
                return -EINVAL;
        len = strnlen(pod_id, 129);
        if (len == 0 || len > 128)
                return -EINVAL;
        for (size_t i = 0; i < len; i++)
                if (pod_id[i] <= 0x20 || pod_id[i] >= 0x7f || pod_id[i] == '/')
                        return -EINVAL;
        if (sodium_init() < 0)
                return -EIO;
        crypto_hash_sha256(h, (const unsigned char *) pod_id, len);
        for (size_t i = 0; i < NET_SHORT_LEN / 2; i++)
                (void) snprintf(plan->short_id + 2 * i, 3, "%02x", h[i]);
        (void) snprintf(plan->netns, sizeof(plan->netns), "nucleus-%s", plan->short_id);
        (void) snprintf(plan->host_veth, sizeof(plan->host_veth), "nuh-%s", plan->short_id);
        (void) snprintf(plan->ns_veth, sizeof(plan->ns_veth), "nun-%s", plan->short_id);
        (void) snprintf(plan->bridge, sizeof(plan->bridge), "nub-%s", plan->short_id);
        (void) snprintf(plan->tap, sizeof(plan->tap), "nut-%s", plan->short_id);
        (void) snprintf(plan->host_table, sizeof(plan->host_table), "nucleus_%s", plan->short_id);
        /* 06: locally administered, unicast. */
        (void) snprintf(
                plan->mac, sizeof(plan->mac), "06:%02x:%02x:%02x:%02x:%02x", h[10], h[11], h[12], h[13], h[14]);
        return 0;
}

uint32_t net_pool_blocks(unsigned pool_prefix) {
        return pool_prefix > 29 ? 0 : (uint32_t) 1U << (29 - pool_prefix);
}

int net_pool_parse(const char *text, uint32_t *ret_base, unsigned *ret_prefix) {
        NetEntry e;
        if (net_entry_parse(text, &e, NULL) < 0 || e.family != AF_INET || e.port != 0 ||
            e.proto != NET_ENTRY_PROTO_ANY || e.prefix < 8 || e.prefix > 26)
                return -EINVAL;
        uint32_t be;
        memcpy(&be, e.addr, 4);
        *ret_base = ntohl(be);
        *ret_prefix = e.prefix;
        return 0;
}

static struct in_addr in4(uint32_t host_order) {
        return (struct in_addr){ .s_addr = htonl(host_order) };
}

int net_plan_addresses(NetPlan *plan, uint32_t pool_base, unsigned pool_prefix, uint32_t index) {
        if (index >= net_pool_blocks(pool_prefix))
                return -ERANGE;
        uint32_t b = pool_base + 8U * index;
        plan->pool_base = pool_base;
        plan->pool_prefix = pool_prefix;
        plan->index = index;
        plan->transit_net = in4(b);
        plan->host_addr = in4(b + 1);
        plan->ns_addr = in4(b + 2);
        plan->guest_net = in4(b + 4);
        plan->gw_addr = in4(b + 5);
        plan->guest_addr = in4(b + 6);
        return 0;
}

static const char *ip4(struct in_addr a, char buf[static INET_ADDRSTRLEN]) {
        return inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

/* "ip daddr 10.0.0.0/8 meta l4proto { tcp, udp } th dport 443" */
static void emit_match(FILE *f, const NetEntry *e) {
        char a[64];
        net_entry_format_addr(e, a, sizeof(a));
        fprintf(f, "%s daddr %s", e->family == AF_INET ? "ip" : "ip6", a);
        if (e->port != 0) {
                if (e->proto == NET_ENTRY_PROTO_ANY)
                        fprintf(f, " meta l4proto { tcp, udp } th dport %u", (unsigned) e->port);
                else
                        fprintf(f,
                                " %s dport %u",
                                e->proto == NET_ENTRY_PROTO_TCP ? "tcp" : "udp",
                                (unsigned) e->port);
        } else if (e->proto != NET_ENTRY_PROTO_ANY)
                fprintf(f, " meta l4proto %s", e->proto == NET_ENTRY_PROTO_TCP ? "tcp" : "udp");
}

static bool entry_is_explicit_special(const NetEntry *e) {
        for (size_t i = 0; i < net_n_special_ranges; i++) {
                NetEntry r;
                if (net_entry_parse(net_special_ranges[i].cidr, &r, NULL) < 0)
                        continue;
                if (net_entry_inside(e, &r))
                        return true;
        }
        return false;
}

static void emit_special_drop(FILE *f, int family) {
        bool first = true;
        fprintf(f, "\t\t%s daddr { ", family == AF_INET ? "ip" : "ip6");
        for (size_t i = 0; i < net_n_special_ranges; i++) {
                if (net_special_ranges[i].family != family)
                        continue;
                fprintf(f, "%s%s", first ? "" : ", ", net_special_ranges[i].cidr);
                first = false;
        }
        fprintf(f, " } drop\n");
}

static char *memstream_finish(FILE *f, char **buf) {
        if (fclose(f) != 0) {
                free(*buf);
                return NULL;
        }
        return *buf;
}

char *net_ruleset_parked(void) {
        /* The same table name as the pod's ruleset, whose "add + delete" then replaces this one
         * in the claim's first transaction: no moment without one of the two. */
        return xasprintf(
                "add table inet %1$s\ndelete table inet %1$s\n"
                "table inet %1$s {\n"
                "\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n"
                "\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n"
                "\tchain output {\n\t\ttype filter hook output priority filter; policy drop;\n\t}\n"
                "}\n",
                NET_POD_TABLE);
}

char *net_ruleset_pod(const NetPlan *p, const NetPolicy *policy) {
        char gw[INET_ADDRSTRLEN], guest[INET_ADDRSTRLEN], up[INET_ADDRSTRLEN], pool[INET_ADDRSTRLEN];
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        if (!f)
                return NULL;

        ip4(p->gw_addr, gw);
        ip4(p->guest_addr, guest);
        ip4(p->dns_upstream, up);
        ip4(in4(p->pool_base), pool);

        /* "add table" + "delete table" makes the transaction replace any earlier table. */
        fprintf(f, "add table inet %s\ndelete table inet %s\n", NET_POD_TABLE, NET_POD_TABLE);
        fprintf(f, "table inet %s {\n", NET_POD_TABLE);
        fprintf(f, "\tset %s {\n\t\ttype ipv4_addr\n\t}\n", NET_SET_DNS4);
        fprintf(f, "\tset %s {\n\t\ttype ipv6_addr\n\t}\n", NET_SET_DNS6);
        if (p->setup) {
                fprintf(f, "\tset %s {\n\t\ttype ipv4_addr\n\t}\n", NET_SET_SETUP4);
                fprintf(f, "\tset %s {\n\t\ttype ipv6_addr\n\t}\n", NET_SET_SETUP6);
                fprintf(f, "\tset %s {\n\t\ttype inet_proto\n\t}\n", NET_SET_SETUP_OPEN);
        }

        /* Traffic to the namespace itself: only the guest's DNS queries to dnsmasq. */
        fprintf(f, "\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n");
        fprintf(f, "\t\tiifname \"lo\" accept\n");
        fprintf(f, "\t\tct state invalid drop\n");
        fprintf(f, "\t\tct state established,related accept\n");
        if (p->dns)
                fprintf(f,
                        "\t\tiifname \"%s\" ip saddr %s ip daddr %s meta l4proto { tcp, udp } th dport 53 "
                        "accept\n",
                        p->bridge,
                        guest,
                        gw);
        fprintf(f, "\t}\n");

        /* Traffic from the namespace's own processes (dnsmasq, the VMM): only dnsmasq's queries to
         * the upstream resolver. */
        fprintf(f, "\tchain output {\n\t\ttype filter hook output priority filter; policy drop;\n");
        fprintf(f, "\t\toifname \"lo\" accept\n");
        fprintf(f, "\t\tct state invalid drop\n");
        fprintf(f, "\t\tct state established,related accept\n");
        if (p->dns)
                fprintf(f,
                        "\t\toifname \"%s\" ip daddr %s meta l4proto { tcp, udp } th dport %u accept\n",
                        p->ns_veth,
                        up,
                        (unsigned) (p->dns_upstream_port ? p->dns_upstream_port : 53));
        fprintf(f, "\t}\n");

        /* The guest's egress. */
        fprintf(f, "\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n");
        fprintf(f, "\t\tct state invalid drop\n");
        fprintf(f, "\t\tct state established,related accept\n");
        fprintf(f, "\t\tiifname != \"%s\" drop\n", p->bridge);
        fprintf(f, "\t\toifname != \"%s\" drop\n", p->ns_veth);
        fprintf(f, "\t\tmeta nfproto ipv4 ip saddr != %s drop\n", guest);
        for (size_t i = 0; i < policy->n_deny; i++) {
                fprintf(f, "\t\t");
                emit_match(f, &policy->deny[i]);
                fprintf(f, " drop\n");
        }
        /* Node pool (other pods, the host's veth addresses): never reachable. */
        fprintf(f, "\t\tip daddr %s/%u drop\n", pool, p->pool_prefix);
        for (size_t i = 0; i < policy->n_allow; i++) {
                if (!entry_is_explicit_special(&policy->allow[i]))
                        continue;
                fprintf(f, "\t\t");
                emit_match(f, &policy->allow[i]);
                fprintf(f, " accept\n");
        }
        emit_special_drop(f, AF_INET);
        emit_special_drop(f, AF_INET6);
        for (size_t i = 0; i < policy->n_allow; i++) {
                if (entry_is_explicit_special(&policy->allow[i]))
                        continue;
                fprintf(f, "\t\t");
                emit_match(f, &policy->allow[i]);
                fprintf(f, " accept\n");
        }
        fprintf(f, "\t\tip daddr @%s accept\n", NET_SET_DNS4);
        fprintf(f, "\t\tip6 daddr @%s accept\n", NET_SET_DNS6);
        /* The setup window (net_pod_setup_window): the rules stay, the gate set is filled on
         * open and emptied on close (with the address sets), so opening and closing change no
         * rule and the drift check keeps comparing the same ruleset. An address dnsmasq adds
         * after the close (an answer to a query forwarded before it) opens nothing. */
        if (p->setup) {
                fprintf(f, "\t\tmeta l4proto @%s ip daddr @%s accept\n", NET_SET_SETUP_OPEN, NET_SET_SETUP4);
                fprintf(f, "\t\tmeta l4proto @%s ip6 daddr @%s accept\n", NET_SET_SETUP_OPEN, NET_SET_SETUP6);
        }
        fprintf(f, "\t}\n}\n");

        return memstream_finish(f, &buf);
}

char *net_ruleset_host(const NetPlan *p) {
        char ns[INET_ADDRSTRLEN], guest[INET_ADDRSTRLEN], up[INET_ADDRSTRLEN], pool[INET_ADDRSTRLEN];
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        if (!f)
                return NULL;

        ip4(p->ns_addr, ns);
        ip4(p->guest_addr, guest);
        ip4(p->dns_upstream, up);
        ip4(in4(p->pool_base), pool);

        fprintf(f, "add table inet %s\ndelete table inet %s\n", p->host_table, p->host_table);
        fprintf(f, "table inet %s {\n", p->host_table);
        /* Nothing from the pod reaches the host itself (none of the host's addresses), except dnsmasq's
         * queries when the upstream resolver is on this host. A drop here is final whatever other
         * tables say. */
        fprintf(f, "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n");
        if (p->dns)
                fprintf(f,
                        "\t\tiifname \"%s\" ip saddr %s ip daddr %s meta l4proto { tcp, udp } th dport %u "
                        "accept\n",
                        p->host_veth,
                        ns,
                        up,
                        (unsigned) (p->dns_upstream_port ? p->dns_upstream_port : 53));
        fprintf(f, "\t\tiifname \"%s\" drop\n\t}\n", p->host_veth);
        fprintf(f, "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n");
        fprintf(f, "\t\tiifname \"%s\" meta nfproto != ipv4 drop\n", p->host_veth);
        fprintf(f, "\t\tiifname \"%s\" ip saddr != { %s, %s } drop\n", p->host_veth, ns, guest);
        fprintf(f, "\t\tiifname \"%s\" ip daddr %s/%u drop\n", p->host_veth, pool, p->pool_prefix);
        fprintf(f, "\t\toifname \"%s\" ct state established,related accept\n", p->host_veth);
        fprintf(f, "\t\toifname \"%s\" drop\n\t}\n", p->host_veth);
        fprintf(f, "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
        fprintf(f, "\t\toifname != \"%s\" ip saddr { %s, %s } masquerade\n\t}\n}\n", p->host_veth, ns, guest);

        return memstream_finish(f, &buf);
}

/* dnsmasq's lines for one list of names whose answers go to sets set4/set6. */
static void dnsmasq_names(
        char ***argv, char *const *names, const char *up, unsigned port, const char *set4, const char *set6) {
        STRV_FOREACH(name, (char **) names) {
                const char *base = startswith(*name, "*.");
                if (base) {
                        /* If the bare name is listed too, its /name/ line covers everything. */
                        if (strv_contains((char **) names, base))
                                continue;
                        strv_consume(argv, xasprintf("--server=/*.%s/%s#%u", base, up, port));
                        strv_consume(
                                argv,
                                xasprintf(
                                        "--nftset=/%s/4#inet#%s#%s,6#inet#%s#%s",
                                        base,
                                        NET_POD_TABLE,
                                        set4,
                                        NET_POD_TABLE,
                                        set6));
                } else {
                        _cleanup_free_ char *wild = xasprintf("*.%s", *name);
                        strv_consume(argv, xasprintf("--server=/%s/%s#%u", *name, up, port));
                        /* Exact entry: names below it are answered locally (NXDOMAIN), never forwarded. */
                        if (!strv_contains((char **) names, wild))
                                strv_consume(argv, xasprintf("--server=/*.%s/", *name));
                        strv_consume(
                                argv,
                                xasprintf(
                                        "--nftset=/%s/4#inet#%s#%s,6#inet#%s#%s",
                                        *name,
                                        NET_POD_TABLE,
                                        set4,
                                        NET_POD_TABLE,
                                        set6));
                }
        }
}

char **net_dnsmasq_argv(
        const NetPlan *p, const NetPolicy *policy, const char *binary, const char *pid_file, const char *log_file) {
        char up[INET_ADDRSTRLEN];
        char **argv = NULL;
        unsigned port = p->dns_upstream_port ? p->dns_upstream_port : 53;

        ip4(p->dns_upstream, up);

        strv_extend(&argv, binary);
        strv_extend(&argv, "--keep-in-foreground");
        strv_extend(&argv, "--conf-file=/dev/null"); /* no host configuration */
        strv_extend(&argv, "--no-resolv");           /* no default upstream: nothing else is forwarded */
        strv_extend(&argv, "--no-hosts");
        strv_extend(&argv, "--no-poll");
        strv_extend(&argv, "--bind-interfaces");
        /* Behind the node's DNS filter (net-dnsfilter.c), which alone listens where the guest
         * asks: dnsmasq takes queries only on the namespace's loopback. */
        strv_extend(&argv, "--listen-address=127.0.0.1");
        strv_consume(&argv, xasprintf("--port=%u", NET_DNSMASQ_PORT));
        strv_extend(&argv, "--domain-needed");
        strv_extend(&argv, "--bogus-priv");
        /* No --stop-dns-rebind: it also refuses the documentation ranges; rebinding is stopped by
         * the ruleset instead (special ranges are dropped before the DNS sets are consulted). */
        strv_extend(&argv, "--no-negcache");
        strv_consume(&argv, xasprintf("--pid-file=%s", pid_file));
        strv_consume(&argv, xasprintf("--log-facility=%s", log_file));

        dnsmasq_names(&argv, policy->dns_allow, up, port, NET_SET_DNS4, NET_SET_DNS6);
        /* Setup hosts never share a base name with a dns_allow entry (net_policy_set_setup_hosts),
         * so each answer lands in exactly one pair of sets. */
        dnsmasq_names(&argv, policy->setup_hosts, up, port, NET_SET_SETUP4, NET_SET_SETUP6);
        return argv;
}

/* Remove "handle" keys recursively. */
static void strip_handles(json_t *j) {
        if (json_is_object(j)) {
                (void) json_object_del(j, "handle");
                const char *k;
                json_t *v;
                json_object_foreach(j, k, v)
                        strip_handles(v);
        } else if (json_is_array(j)) {
                size_t i;
                json_t *v;
                json_array_foreach(j, i, v)
                        strip_handles(v);
        }
}

char *net_ruleset_normalize(const char *text, size_t n) {
        _cleanup_json_ json_t *root = NULL;
        json_t *items, *out;
        size_t i;
        json_t *it;

        if (json_parse_strict(text, n, 16U * 1024 * 1024, &root, NULL) < 0)
                return NULL;
        items = json_object_get(root, "nftables");
        if (!json_is_array(items))
                return NULL;

        _cleanup_json_ json_t *keep = json_array();
        json_array_foreach(items, i, it) {
                if (!json_is_object(it) || json_object_get(it, "metainfo"))
                        continue;
                json_t *set = json_object_get(it, "set");
                if (json_is_object(set)) {
                        const char *name = json_string_value(json_object_get(set, "name"));
                        const char *table = json_string_value(json_object_get(set, "table"));
                        if (name && table && streq(table, NET_POD_TABLE) &&
                            (streq(name, NET_SET_DNS4) || streq(name, NET_SET_DNS6) ||
                             streq(name, NET_SET_SETUP4) || streq(name, NET_SET_SETUP6) ||
                             streq(name, NET_SET_SETUP_OPEN)))
                                (void) json_object_del(set, "elem");
                }
                (void) json_array_append(keep, it);
        }
        strip_handles(keep);
        out = keep;
        return json_dump_canonical(out);
}
