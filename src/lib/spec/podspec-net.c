/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The network grammar of a PodSpec (see podspec.h, docs/podspec.md "network"): allow/deny
 * rules (address or CIDR, optional protocol and port) and the DNS names of dns_allow and
 * setup hosts. Context-free: the spec parser in podspec.c places the errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "alloc-util.h"
#include "podspec.h"
#include "string-util.h"

void net_rule_done(NetRule *r) {
        if (r)
                r->text = mfree(r->text);
}

int podspec_parse_net_rule(const char *s, NetRule *ret, char **reterr) {
        NetRule r = { .proto = NET_PROTO_ANY };
        size_t n = strlen(s);
        char *e;
#define NBAD(...)                                         \
        do {                                              \
                if (reterr)                               \
                        *reterr = xasprintf(__VA_ARGS__); \
                return -EINVAL;                           \
        } while (0)

        if (n == 0 || n > 128)
                NBAD("must be ADDR[/PREFIX][:PORT][/tcp|/udp], at most 128 characters");
        _cleanup_free_ char *buf = xstrdup(s);
        if (endswith(buf, "/tcp") || endswith(buf, "/udp")) {
                r.proto = endswith(buf, "/tcp") ? NET_PROTO_TCP : NET_PROTO_UDP;
                buf[n - 4] = 0;
        }
        char *addr = buf, *port = NULL;
        if (buf[0] == '[') {
                char *close = strchr(buf, ']');
                if (!close)
                        NBAD("'%s': missing ']'", s);
                *close = 0;
                addr = buf + 1;
                if (close[1] == ':')
                        port = close + 2;
                else if (close[1] != 0)
                        NBAD("'%s': expected ':PORT' after ']'", s);
        } else {
                size_t colons = 0;
                for (char *p = buf; *p; p++)
                        colons += *p == ':';
                if (colons == 1) {
                        port = strchr(buf, ':');
                        *port++ = 0;
                }
        }
        char *slash = strchr(addr, '/');
        if (slash)
                *slash = 0;
        if (inet_pton(AF_INET, addr, r.addr) == 1) {
                r.family = AF_INET;
                r.prefix = 32;
        } else if (inet_pton(AF_INET6, addr, r.addr) == 1) {
                r.family = AF_INET6;
                r.prefix = 128;
        } else
                NBAD("'%s': '%s' is not an IPv4 or IPv6 address (host names go in dns_allow)", s, addr);
        if (slash) {
                unsigned long p;
                if (!slash[1] || strspn(slash + 1, "0123456789") != strlen(slash + 1) || strlen(slash + 1) > 3)
                        NBAD("'%s': bad prefix length", s);
                p = strtoul(slash + 1, &e, 10);
                if (p > r.prefix)
                        NBAD("'%s': prefix length must be 0..%u", s, r.prefix);
                r.prefix = (unsigned) p;
        }
        size_t bytes = r.family == AF_INET ? 4 : 16;
        for (size_t bit = r.prefix; bit < bytes * 8; bit++)
                if (r.addr[bit / 8] & (0x80 >> (bit % 8)))
                        NBAD("'%s': address has bits set beyond the /%u prefix", s, r.prefix);
        if (port) {
                unsigned long p;
                if (!*port || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5)
                        NBAD("'%s': port must be 1..65535", s);
                p = strtoul(port, &e, 10);
                if (p < 1 || p > 65535)
                        NBAD("'%s': port must be 1..65535", s);
                r.port = (uint16_t) p;
        }
        if (r.family == AF_INET6 && port && buf[0] != '[')
                NBAD("'%s': write IPv6 with a port as [ADDR]:PORT", s);
#undef NBAD
        r.text = xstrdup(s);
        *ret = r;
        return 0;
}

int podspec_check_dns_name(const char *s, char **ret_normalized, char **reterr) {
        size_t n = strlen(s);
        const char *name = s;
        if (startswith(s, "*."))
                name = s + 2;
        if (n == 0 || n > 253 || !*name) {
                if (reterr)
                        *reterr = xasprintf("'%s': must be a host name of at most 253 characters", s);
                return -EINVAL;
        }
        _cleanup_free_ char *low = xstrdup(s);
        size_t label = 0;
        bool all_digits_last = true;
        for (char *p = low + (name - s);; p++) {
                char ch = *p;
                if (ch >= 'A' && ch <= 'Z')
                        *p = ch = (char) (ch + 32);
                if (ch == '.' || ch == 0) {
                        if (label == 0 || p[-1] == '-' || p[-(ptrdiff_t) label] == '-') {
                                if (reterr)
                                        *reterr = xasprintf(
                                                "'%s': empty label, or a label that starts or ends "
                                                "with '-'",
                                                s);
                                return -EINVAL;
                        }
                        if (ch == 0)
                                break;
                        label = 0;
                        all_digits_last = true;
                        continue;
                }
                if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_')) {
                        if (reterr)
                                *reterr = xasprintf(
                                        "'%s': only letters, digits, '-', '_' and '.' are allowed%s",
                                        s,
                                        ch == '*' ? " (a wildcard only as a leading \"*.\")" : "");
                        return -EINVAL;
                }
                if (!(ch >= '0' && ch <= '9'))
                        all_digits_last = false;
                if (++label > 63) {
                        if (reterr)
                                *reterr = xasprintf("'%s': a label is longer than 63 characters", s);
                        return -EINVAL;
                }
        }
        if (all_digits_last) {
                if (reterr)
                        *reterr = xasprintf("'%s': looks like an IP address; put addresses in allow", s);
                return -EINVAL;
        }
        if (ret_normalized)
                *ret_normalized = TAKE_PTR(low);
        return 0;
}
