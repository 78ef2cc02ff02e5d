/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the pod's DNS filter (src/node/net/net-dns.c) with untrusted guest datagrams: the query
 * parser and judge, then the answer check with the same bytes posing as dnsmasq's answer.
 * Invariants: nothing is read or written out of bounds; a forwarded query is a query of one
 * question in lower case, A or AAAA of class IN, for a name on the list; the budget holds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net-dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static char *allow[] = { (char *) "exact.test", (char *) "*.wild.test", NULL };
        NetDnsFilter *f = net_dns_filter_new(allow, 2);
        uint8_t out[NET_DNS_QUERY_MAX];
        size_t n = 0, forwarded_new = 0;
        NetDnsQuery q;

        /* The input may hold several datagrams separated by "\xff\xfe" to exercise the budget. */
        const uint8_t *p = data, *end = data + size;
        while (p <= end) {
                const uint8_t *sep = NULL;
                for (const uint8_t *s = p; s + 1 < end; s++)
                        if (s[0] == 0xff && s[1] == 0xfe) {
                                sep = s;
                                break;
                        }
                size_t len = (size_t) ((sep ? sep : end) - p);
                uint8_t *pkt = malloc(len ? len : 1); /* exact size: ASan sees any overread */
                memcpy(pkt, p, len);
                NetDnsVerdict v = net_dns_filter_query(f, pkt, len, 0x4242, out, &n, &q);
                if (v == NET_DNS_DROP && n != 0)
                        abort();
                if (v != NET_DNS_DROP && (n < 12 || n > NET_DNS_QUERY_MAX))
                        abort();
                if (v == NET_DNS_FORWARD) {
                        if (q.qtype != NET_DNS_TYPE_A && q.qtype != NET_DNS_TYPE_AAAA)
                                abort();
                        for (size_t i = 12; i < 12 + q.qlen - 4; i++)
                                if (out[i] >= 'A' && out[i] <= 'Z')
                                        abort();
                        if (out[0] != 0x42 || out[1] != 0x42 || out[4] != 0 || out[5] != 1)
                                abort();
                        if (q.budget_new)
                                forwarded_new++;
                        /* The same bytes as an answer to it must never crash either. */
                        uint8_t *ans = malloc(len ? len : 1);
                        memcpy(ans, pkt, len);
                        (void) net_dns_filter_answer(&q, 0x4242, ans, len);
                        free(ans);
                        /* And the echo of our own query, as dnsmasq would answer it. */
                        uint8_t echo[NET_DNS_QUERY_MAX];
                        memcpy(echo, out, n);
                        echo[2] |= 0x80;
                        int m = net_dns_filter_answer(&q, 0x4242, echo, n);
                        if (m < 0 || memcmp(echo + 12, pkt + 12, q.qlen) != 0)
                                abort();
                        /* The TCP form of the same query: an OPT of ours, one additional record. */
                        NetDnsQuery qt = q;
                        uint8_t tq[NET_DNS_QUERY_MAX];
                        memcpy(tq, out, n);
                        size_t tn = net_dns_query_set_edns(tq, n, &qt, NET_DNS_ANSWER_MAX);
                        if (tn != 12 + q.qlen + 11 || tq[11] != 1 || qt.guest_max != NET_DNS_ANSWER_MAX)
                                abort();
                }
                free(pkt);
                if (forwarded_new > 2)
                        abort();
                if (!sep)
                        break;
                p = sep + 2;
        }
        net_dns_filter_free(f);
        return 0;
}
