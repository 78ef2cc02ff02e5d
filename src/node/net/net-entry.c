/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsing of the spec's network section: allow/deny entries ("CIDR[:port][/tcp|udp]") and
 * dns_allow names. All input is untrusted (it comes from a client's PodSpec); lengths are
 * capped before anything is copied and every error names the entry and the problem.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "net-internal.h"
#include "parse-util.h"
#include "string-util.h"

static int fail(char **reterr, const char *fmt, ...) _printf_(2, 3);
static int fail(char **reterr, const char *fmt, ...) {
        if (reterr) {
                va_list ap;
                char *m = NULL;
                va_start(ap, fmt);
                if (vasprintf(&m, fmt, ap) < 0)
                        m = NULL;
                va_end(ap);
                free(*reterr);
                *reterr = m;
        }
        return -EINVAL;
}

static bool prefix_host_bits_clear(const uint8_t *a, unsigned bits, unsigned prefix) {
        for (unsigned i = prefix; i < bits; i++)
                if (a[i / 8] & (0x80U >> (i % 8)))
                        return false;
        return true;
}

/* Parse "ADDR[/PREFIX]" into e (family, addr, prefix). */
static int parse_cidr(const char *s, NetEntry *e, const char *whole, char **reterr) {
        char buf[NET_ENTRY_MAX_LEN + 1];
        const char *slash;
        uint32_t prefix;
        unsigned bits;

        if (strlen(s) >= sizeof(buf))
                return fail(reterr, "entry '%s' is too long", whole);
        slash = strchr(s, '/');
        if (slash) {
                memcpy(buf, s, (size_t) (slash - s));
                buf[slash - s] = 0;
        } else
                strcpy(buf, s);

        memset(e->addr, 0, sizeof(e->addr));
        if (inet_pton(AF_INET, buf, e->addr) == 1) {
                e->family = AF_INET;
                bits = 32;
        } else if (inet_pton(AF_INET6, buf, e->addr) == 1) {
                e->family = AF_INET6;
                bits = 128;
        } else
                return fail(
                        reterr,
                        "entry '%s': '%s' is not an IPv4 or IPv6 address (names belong in dns_allow)",
                        whole,
                        buf);

        if (slash) {
                if (safe_atou32(slash + 1, &prefix) < 0 || prefix > bits)
                        return fail(
                                reterr, "entry '%s': bad prefix length '%s' (0..%u)", whole, slash + 1, bits);
        } else
                prefix = bits;
        if (!prefix_host_bits_clear(e->addr, bits, prefix))
                return fail(reterr, "entry '%s': address has bits set beyond /%u", whole, (unsigned) prefix);
        e->prefix = (uint8_t) prefix;
        return 0;
}

int net_entry_parse(const char *text, NetEntry *ret, char **reterr) {
        char buf[NET_ENTRY_MAX_LEN + 1];
        const char *addr_part, *port_part = NULL;
        NetEntry e = { .proto = NET_ENTRY_PROTO_ANY };
        size_t len;

        if (!text)
                return fail(reterr, "missing entry");
        len = strnlen(text, NET_ENTRY_MAX_LEN + 1);
        if (len == 0)
                return fail(reterr, "empty entry");
        if (len > NET_ENTRY_MAX_LEN)
                return fail(reterr, "entry is longer than %u characters", NET_ENTRY_MAX_LEN);
        for (size_t i = 0; i < len; i++)
                if (!isascii((unsigned char) text[i]) || !isgraph((unsigned char) text[i]))
                        return fail(reterr, "entry contains a space or control character at offset %zu", i);
        memcpy(buf, text, len + 1);

        /* Trailing protocol. */
        char *p;
        if ((p = endswith(buf, "/tcp"))) {
                e.proto = NET_ENTRY_PROTO_TCP;
                *p = 0;
        } else if ((p = endswith(buf, "/udp"))) {
                e.proto = NET_ENTRY_PROTO_UDP;
                *p = 0;
        }
        if (buf[0] == 0)
                return fail(reterr, "entry '%s' has no address", text);

        if (buf[0] == '[') {
                char *close = strchr(buf, ']');
                if (!close)
                        return fail(reterr, "entry '%s': missing ']'", text);
                *close = 0;
                addr_part = buf + 1;
                if (close[1] == ':')
                        port_part = close + 2;
                else if (close[1] != 0)
                        return fail(reterr, "entry '%s': expected ':PORT' after ']'", text);
        } else {
                char *colon = strchr(buf, ':');
                if (colon && !strchr(colon + 1, ':')) {
                        /* Exactly one ':': IPv4 with a port. */
                        *colon = 0;
                        port_part = colon + 1;
                }
                addr_part = buf;
        }

        int r = parse_cidr(addr_part, &e, text, reterr);
        if (r < 0)
                return r;

        if (port_part) {
                uint32_t port;
                if (safe_atou32(port_part, &port) < 0 || port == 0 || port > 65535)
                        return fail(reterr, "entry '%s': port '%s' is not in 1..65535", text, port_part);
                e.port = (uint16_t) port;
        }

        *ret = e;
        return 0;
}

void net_entry_format_addr(const NetEntry *e, char *buf, size_t size) {
        char a[INET6_ADDRSTRLEN];
        if (!inet_ntop(e->family, e->addr, a, sizeof(a)))
                strcpy(a, "?");
        (void) snprintf(buf, size, "%s/%u", a, (unsigned) e->prefix);
}

bool net_entry_inside(const NetEntry *e, const NetEntry *r) {
        if (e->family != r->family || e->prefix < r->prefix)
                return false;
        for (unsigned i = 0; i < r->prefix; i++) {
                uint8_t m = (uint8_t) (0x80U >> (i % 8));
                if ((e->addr[i / 8] & m) != (r->addr[i / 8] & m))
                        return false;
        }
        return true;
}

/* A DNS label: 1..63 of [a-z0-9-_], not starting or ending with '-'. */
static bool label_ok(const char *s, size_t n) {
        if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
                        return false;
        }
        return true;
}

int net_dns_name_normalize(const char *text, char **ret, char **reterr) {
        char buf[256];
        const char *name;
        size_t len;
        unsigned labels = 0;
        bool all_numeric = true;

        if (!text)
                return fail(reterr, "missing name");
        len = strnlen(text, sizeof(buf));
        if (len == 0)
                return fail(reterr, "empty name");
        if (len >= sizeof(buf) - 1)
                return fail(reterr, "name is longer than 253 characters");
        for (size_t i = 0; i < len; i++)
                buf[i] = (char) tolower((unsigned char) text[i]);
        buf[len] = 0;
        if (len > 1 && buf[len - 1] == '.')
                buf[--len] = 0;

        name = buf;
        if (startswith(buf, "*."))
                name = buf + 2;
        if (strlen(name) > 253)
                return fail(reterr, "name '%s' is longer than 253 characters", text);

        for (const char *s = name;;) {
                const char *dot = strchr(s, '.');
                size_t n = dot ? (size_t) (dot - s) : strlen(s);
                if (!label_ok(s, n))
                        return fail(
                                reterr,
                                "'%s' is not a DNS name (labels of a-z, 0-9, '-', '_'; '*.' only as a "
                                "prefix)",
                                text);
                for (size_t i = 0; i < n; i++)
                        if (!(s[i] >= '0' && s[i] <= '9'))
                                all_numeric = false;
                labels++;
                if (!dot)
                        break;
                s = dot + 1;
        }
        struct in_addr a4;
        if (inet_pton(AF_INET, name, &a4) == 1 || all_numeric)
                return fail(reterr, "'%s' is an address, not a name (use network.allow for addresses)", text);
        if (labels < 2)
                return fail(
                        reterr, "'%s' must have at least two labels (a bare TLD or host is too broad)", text);

        *ret = xstrdup(buf);
        return 0;
}

bool net_dns_name_allowed(char *const *dns_allow, const char *host) {
        char buf[256];
        size_t len;

        if (!host)
                return false;
        len = strnlen(host, sizeof(buf));
        if (len == 0 || len >= sizeof(buf))
                return false;
        for (size_t i = 0; i < len; i++)
                buf[i] = (char) tolower((unsigned char) host[i]);
        buf[len] = 0;
        if (buf[len - 1] == '.')
                buf[--len] = 0;
        if (len == 0)
                return false;

        STRV_FOREACH(pat, dns_allow) {
                const char *base = startswith(*pat, "*.");
                if (!base) {
                        if (streq(buf, *pat))
                                return true;
                        continue;
                }
                size_t bl = strlen(base);
                /* strictly below: "<something>.<base>" */
                if (len > bl + 1 && buf[len - bl - 1] == '.' && streq(buf + len - bl, base))
                        return true;
        }
        return false;
}

static int parse_list(char *const *list, const char *what, NetEntry **ret, size_t *ret_n, char **reterr) {
        size_t n = strv_length(list);
        _cleanup_free_ NetEntry *v = NULL;

        if (n > NET_POLICY_MAX_ENTRIES) {
                (void) fail(reterr, "network.%s has %zu entries (at most %u)", what, n, NET_POLICY_MAX_ENTRIES);
                return -E2BIG;
        }
        if (n > 0)
                v = xcalloc(n, sizeof(NetEntry));
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *err = NULL;
                if (net_entry_parse(list[i], &v[i], &err) < 0)
                        return fail(reterr, "network.%s[%zu]: %s", what, i, err ? err : "invalid");
        }
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return 0;
}

NetPolicy *net_policy_free(NetPolicy *p) {
        if (!p)
                return NULL;
        free(p->allow);
        free(p->deny);
        strv_free(p->dns_allow);
        strv_free(p->setup_hosts);
        free(p);
        return NULL;
}

int net_policy_from_strv(
        char *const *allow, char *const *deny, char *const *dns_allow, NetPolicy **ret, char **reterr) {
        _cleanup_(net_policy_freep) NetPolicy *p = xcalloc(1, sizeof(NetPolicy));
        int r;

        r = parse_list(allow, "allow", &p->allow, &p->n_allow, reterr);
        if (r < 0)
                return r;
        r = parse_list(deny, "deny", &p->deny, &p->n_deny, reterr);
        if (r < 0)
                return r;

        size_t n = strv_length(dns_allow);
        if (n > NET_POLICY_MAX_ENTRIES) {
                (void) fail(
                        reterr, "network.dns_allow has %zu entries (at most %u)", n, NET_POLICY_MAX_ENTRIES);
                return -E2BIG;
        }
        p->dns_allow = xcalloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *err = NULL;
                r = net_dns_name_normalize(dns_allow[i], &p->dns_allow[i], &err);
                if (r < 0)
                        return fail(reterr, "network.dns_allow[%zu]: %s", i, err ? err : "invalid");
        }
        strv_sort_uniq(p->dns_allow);

        *ret = TAKE_PTR(p);
        return 0;
}

/* The name dnsmasq's --nftset line is keyed on: the entry without its leading "*.". */
static const char *nftset_domain(const char *entry) {
        return startswith(entry, "*.") ?: entry;
}

int net_policy_set_setup_hosts(NetPolicy *p, char *const *hosts, char **reterr) {
        _cleanup_strv_free_ char **out = NULL;
        size_t n = strv_length(hosts);
        int r;

        if (n > NET_POLICY_MAX_ENTRIES) {
                (void) fail(reterr, "setup.hosts has %zu entries (at most %u)", n, NET_POLICY_MAX_ENTRIES);
                return -E2BIG;
        }
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *err = NULL, *norm = NULL;
                r = net_dns_name_normalize(hosts[i], &norm, &err);
                if (r < 0)
                        return fail(reterr, "setup.hosts[%zu]: %s", i, err ? err : "invalid");
                /* Already open to the agent: nothing to open or close. An exact name is covered
                 * when dns_allow matches it; a wildcard only by the same wildcard or one above. */
                const char *base = startswith(norm, "*.");
                bool covered = !base && net_dns_name_allowed(p->dns_allow, norm);
                STRV_FOREACH(a, p->dns_allow) {
                        const char *ab = startswith(*a, "*.");
                        char *one[] = { *a, NULL };
                        if (base && ab && (streq(ab, base) || net_dns_name_allowed(one, base)))
                                covered = true;
                }
                if (covered)
                        continue;
                STRV_FOREACH(a, p->dns_allow)
                        if (streq(nftset_domain(*a), nftset_domain(norm)))
                                return fail(
                                        reterr,
                                        "setup.hosts[%zu]: '%s' and network.dns_allow entry '%s' share the "
                                        "base "
                                        "name '%s'; list the setup host in network.dns_allow instead (it "
                                        "then "
                                        "stays open for the agent too) or drop one of them",
                                        i,
                                        norm,
                                        *a,
                                        nftset_domain(norm));
                if (!strv_contains(out, norm))
                        strv_consume(&out, TAKE_PTR(norm));
        }
        strv_sort_uniq(out);
        strv_free(p->setup_hosts);
        p->setup_hosts = TAKE_PTR(out);
        return 0;
}
