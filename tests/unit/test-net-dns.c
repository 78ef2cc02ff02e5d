/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the pod's DNS filter, pure part (src/node/net/net-dns.c): the strict query
 * parser, A/AAAA only, dns_allow, case normalised before forwarding, the per-wildcard budget of
 * distinct names, and the answer check that restores the guest's id and spelling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "net-dns.h"

typedef struct Pkt {
        uint8_t b[600];
        size_t n;
} Pkt;

/* A standard query: id 0x1234, RD, one question; edns_size 0 = no OPT. */
static Pkt query(const char *name, uint16_t qtype, uint16_t qclass, uint16_t edns_size) {
        Pkt p = { .b = { 0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, edns_size ? 1 : 0 }, .n = 12 };
        for (const char *s = name; *s;) {
                const char *dot = strchr(s, '.');
                size_t l = dot ? (size_t) (dot - s) : strlen(s);
                p.b[p.n++] = (uint8_t) l;
                memcpy(p.b + p.n, s, l);
                p.n += l;
                s += l + (dot ? 1 : 0);
        }
        p.b[p.n++] = 0;
        p.b[p.n++] = (uint8_t) (qtype >> 8);
        p.b[p.n++] = (uint8_t) qtype;
        p.b[p.n++] = (uint8_t) (qclass >> 8);
        p.b[p.n++] = (uint8_t) qclass;
        if (edns_size) {
                const uint8_t opt[11] = { 0, 0, 41, (uint8_t) (edns_size >> 8), (uint8_t) edns_size, 0, 0, 0,
                                          0, 0, 0 };
                memcpy(p.b + p.n, opt, 11);
                p.n += 11;
        }
        return p;
}

static char *allow[] = { (char *) "exact.test", (char *) "*.wild.test", (char *) "*.deep.wild.test", NULL };

static NetDnsVerdict judge(NetDnsFilter *f, const Pkt *p, uint8_t *out, size_t *out_len, NetDnsQuery *q) {
        return net_dns_filter_query(f, p->b, p->n, 0xBEEF, out, out_len, q);
}

static unsigned rcode(const uint8_t *out) {
        return out[3] & 0xF;
}

static void test_forward_lowercases(void **state) {
        _cleanup_(net_dns_filter_freep) NetDnsFilter *f = net_dns_filter_new(allow, 4);
        uint8_t out[NET_DNS_QUERY_MAX];
        size_t n;
        NetDnsQuery q;
        Pkt p = query("ExAcT.TeSt", NET_DNS_TYPE_A, 1, 0);
        assert_int_equal(judge(f, &p, out, &n, &q), NET_DNS_FORWARD);
        assert_string_equal(q.name, "exact.test");
        assert_string_equal(q.entry, "exact.test");
        /* Rebuilt: our id, RD only, one question in lower case, nothing else. */
        Pkt want = query("exact.test", NET_DNS_TYPE_A, 1, 0);
        want.b[0] = 0xBE, want.b[1] = 0xEF;
        assert_int_equal(n, want.n);
        assert_memory_equal(out, want.b, n);
        /* Every case variant forwards the same bytes. */
        const char *variants[] = { "EXACT.TEST", "exact.TEST", "eXaCt.tEsT" };
        for (size_t i = 0; i < 3; i++) {
                Pkt v = query(variants[i], NET_DNS_TYPE_A, 1, 0);
                uint8_t o2[NET_DNS_QUERY_MAX];
                size_t n2;
                assert_int_equal(judge(f, &v, o2, &n2, &q), NET_DNS_FORWARD);
                assert_memory_equal(o2, out, n);
        }
        /* Over TCP: an OPT of ours is added (or replaces the guest's) with the size given. */
        Pkt t = query("exact.test", NET_DNS_TYPE_A, 1, 0);
        assert_int_equal(judge(f, &t, out, &n, &q), NET_DNS_FORWARD);
        n = net_dns_query_set_edns(out, n, &q, NET_DNS_ANSWER_MAX);
        assert_int_equal(n, t.n + 11);
        assert_int_equal(out[11], 1);
        assert_int_equal(q.guest_max, NET_DNS_ANSWER_MAX);
        assert_int_equal((out[n - 8] << 8) | out[n - 7], NET_DNS_ANSWER_MAX);
        /* EDNS: our own OPT, no options, the size clamped. */
        Pkt e = query("exact.test", NET_DNS_TYPE_AAAA, 1, 4096);
        assert_int_equal(judge(f, &e, out, &n, &q), NET_DNS_FORWARD);
        assert_int_equal(out[11], 1);
        assert_int_equal(n, e.n);
        assert_int_equal((out[n - 8] << 8) | out[n - 7], NET_DNS_ANSWER_MAX);
}

static void test_refusals(void **state) {
        _cleanup_(net_dns_filter_freep) NetDnsFilter *f = net_dns_filter_new(allow, 4);
        uint8_t out[NET_DNS_QUERY_MAX];
        size_t n;
        NetDnsQuery q;
        struct {
                const char *name;
                uint16_t type, cls;
                NetDnsReason why;
        } cases[] = {
                { "exact.test", 16 /* TXT */, 1, NET_DNS_BAD_TYPE },
                { "exact.test", 255 /* ANY */, 1, NET_DNS_BAD_TYPE },
                { "exact.test", NET_DNS_TYPE_A, 3 /* CH */, NET_DNS_BAD_TYPE },
                { "x.exact.test", NET_DNS_TYPE_A, 1, NET_DNS_NOT_ALLOWED },
                { "wild.test", NET_DNS_TYPE_A, 1, NET_DNS_NOT_ALLOWED },
                { "other.test", NET_DNS_TYPE_A, 1, NET_DNS_NOT_ALLOWED },
                { "a b.wild.test", NET_DNS_TYPE_A, 1, NET_DNS_NOT_ALLOWED },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                Pkt p = query(cases[i].name, cases[i].type, cases[i].cls, 0);
                assert_int_equal(judge(f, &p, out, &n, &q), NET_DNS_ANSWER);
                assert_int_equal(q.reason, cases[i].why);
                assert_int_equal(rcode(out), NET_DNS_RCODE_REFUSED);
                /* The answer echoes the guest's id and question. */
                assert_int_equal(n, p.n);
                assert_memory_equal(out, p.b, 2);
                assert_memory_equal(out + 12, p.b + 12, p.n - 12);
                assert_true(out[2] & 0x80);
        }
        Pkt root = query("", NET_DNS_TYPE_A, 1, 0);
        assert_int_equal(judge(f, &root, out, &n, &q), NET_DNS_ANSWER);
        assert_int_equal(rcode(out), NET_DNS_RCODE_REFUSED);
}

static void test_malformed(void **state) {
        _cleanup_(net_dns_filter_freep) NetDnsFilter *f = net_dns_filter_new(allow, 4);
        uint8_t out[NET_DNS_QUERY_MAX];
        size_t n;
        NetDnsQuery q;
        Pkt good = query("exact.test", NET_DNS_TYPE_A, 1, 0);

        /* Shorter than a header, or an answer: dropped without a word. */
        assert_int_equal(net_dns_filter_query(f, good.b, 11, 1, out, &n, &q), NET_DNS_DROP);
        Pkt resp = good;
        resp.b[2] |= 0x80;
        assert_int_equal(judge(f, &resp, out, &n, &q), NET_DNS_DROP);

        Pkt p;
        /* Other opcodes: NOTIMP. */
        p = good, p.b[2] |= 0x10;
        assert_int_equal(judge(f, &p, out, &n, &q), NET_DNS_ANSWER);
        assert_int_equal(rcode(out), NET_DNS_RCODE_NOTIMP);
        /* Counts other than one question and at most one additional record. */
        for (int i = 0; i < 5; i++) {
                p = good;
                if (i == 0)
                        p.b[5] = 2;
                else if (i == 1)
                        p.b[5] = 0;
                else if (i == 2)
                        p.b[7] = 1;
                else if (i == 3)
                        p.b[9] = 1;
                else
                        p.b[11] = 2;
                assert_int_equal(judge(f, &p, out, &n, &q), NET_DNS_ANSWER);
                assert_int_equal(rcode(out), NET_DNS_RCODE_FORMERR);
                assert_int_equal(n, 12);
        }
        /* Truncated at every length: FORMERR, never a forward, never a read past the end. */
        for (size_t k = 12; k < good.n; k++) {
                assert_int_equal(net_dns_filter_query(f, good.b, k, 1, out, &n, &q), NET_DNS_ANSWER);
                assert_int_equal(rcode(out), NET_DNS_RCODE_FORMERR);
        }
        /* Trailing bytes, a compression pointer, a label over 63, a name over 255 bytes. */
        p = good, p.n++;
        assert_int_equal(judge(f, &p, out, &n, &q), NET_DNS_ANSWER);
        assert_int_equal(rcode(out), NET_DNS_RCODE_FORMERR);
        p = good, p.b[12] = 0xC0;
        assert_int_equal(judge(f, &p, out, &n, &q), NET_DNS_ANSWER);
        assert_int_equal(rcode(out), NET_DNS_RCODE_FORMERR);
        p = good, p.b[12] = 64;
        assert_int_equal(judge(f, &p, out, &n, &q), NET_DNS_ANSWER);
        assert_int_equal(rcode(out), NET_DNS_RCODE_FORMERR);
        char longname[400] = "";
        for (int i = 0; i < 5; i++)
                strcat(longname, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."); /* 63 */
        strcat(longname, "wild.test");
        p = query(longname, NET_DNS_TYPE_A, 1, 0);
        assert_int_equal(judge(f, &p, out, &n, &q), NET_DNS_ANSWER);
        assert_int_equal(rcode(out), NET_DNS_RCODE_FORMERR);
        /* OPT that is not an OPT, of another version, with a wrong length. */
        Pkt e = query("exact.test", NET_DNS_TYPE_A, 1, 1232);
        p = e, p.b[p.n - 9] = 1; /* type A, not OPT */
        assert_int_equal(judge(f, &p, out, &n, &q), NET_DNS_ANSWER);
        assert_int_equal(rcode(out), NET_DNS_RCODE_FORMERR);
        p = e, p.b[p.n - 5] = 1; /* version */
        assert_int_equal(judge(f, &p, out, &n, &q), NET_DNS_ANSWER);
        p = e, p.b[p.n - 1] = 4; /* rdlength past the end */
        assert_int_equal(judge(f, &p, out, &n, &q), NET_DNS_ANSWER);
        assert_int_equal(rcode(out), NET_DNS_RCODE_FORMERR);
        /* Larger than a query may be. */
        p = e, p.n = NET_DNS_QUERY_MAX + 1;
        assert_int_equal(judge(f, &p, out, &n, &q), NET_DNS_ANSWER);
        assert_int_equal(rcode(out), NET_DNS_RCODE_FORMERR);
}

static void test_wildcard_budget(void **state) {
        _cleanup_(net_dns_filter_freep) NetDnsFilter *f = net_dns_filter_new(allow, 4);
        uint8_t out[NET_DNS_QUERY_MAX];
        size_t n;
        NetDnsQuery q;
        char name[64];
        unsigned forwarded = 0;
        for (unsigned i = 0; i < 50; i++) {
                snprintf(name, sizeof name, "data%02u.wild.test", i);
                Pkt p = query(name, NET_DNS_TYPE_A, 1, 0);
                NetDnsVerdict v = judge(f, &p, out, &n, &q);
                if (v == NET_DNS_FORWARD) {
                        forwarded++;
                        assert_true(q.budget_new);
                } else {
                        assert_int_equal(v, NET_DNS_ANSWER);
                        assert_int_equal(q.reason, NET_DNS_BUDGET);
                        assert_string_equal(q.entry, "*.wild.test");
                        assert_int_equal(rcode(out), NET_DNS_RCODE_REFUSED);
                }
        }
        assert_int_equal(forwarded, 4);
        /* Names admitted earlier still resolve, in any case and either type, without counting. */
        Pkt again = query("DATA00.wild.TEST", NET_DNS_TYPE_AAAA, 1, 0);
        assert_int_equal(judge(f, &again, out, &n, &q), NET_DNS_FORWARD);
        assert_false(q.budget_new);
        /* Exact names are not charged; a more specific wildcard has a budget of its own. */
        Pkt ex = query("exact.test", NET_DNS_TYPE_A, 1, 0);
        assert_int_equal(judge(f, &ex, out, &n, &q), NET_DNS_FORWARD);
        Pkt deep = query("x.deep.wild.test", NET_DNS_TYPE_A, 1, 0);
        assert_int_equal(judge(f, &deep, out, &n, &q), NET_DNS_FORWARD);
        assert_string_equal(q.entry, "*.deep.wild.test");
        /* The default budget. */
        _cleanup_(net_dns_filter_freep) NetDnsFilter *d = net_dns_filter_new(allow, 0);
        assert_int_equal(net_dns_filter_wildcard_names(d), NET_DNS_WILDCARD_DEFAULT);
}

/* Setup hosts pass only while the window is open; the policy's own names always pass. */
static void test_setup_window(void **state) {
        _cleanup_(net_dns_filter_freep) NetDnsFilter *f = net_dns_filter_new(allow, 4);
        char *setup[] = { (char *) "pypi.lab.test", (char *) "*.files.lab.test", NULL };
        net_dns_filter_add_setup(f, setup);
        uint8_t out[NET_DNS_QUERY_MAX];
        size_t n;
        NetDnsQuery q;
        const char *setup_names[] = { "pypi.lab.test", "PyPI.lab.test", "a.files.lab.test" };

        for (int round = 0; round < 3; round++) {
                bool open = round == 1; /* closed, open, closed again */
                net_dns_filter_set_setup_open(f, open);
                for (size_t i = 0; i < 3; i++) {
                        Pkt p = query(setup_names[i], NET_DNS_TYPE_A, 1, 0);
                        assert_int_equal(judge(f, &p, out, &n, &q), open ? NET_DNS_FORWARD : NET_DNS_ANSWER);
                        if (!open) {
                                assert_int_equal(q.reason, NET_DNS_NOT_ALLOWED);
                                assert_int_equal(rcode(out), NET_DNS_RCODE_REFUSED);
                        }
                }
                /* Never more than the entries say, open or not. */
                Pkt below = query("x.pypi.lab.test", NET_DNS_TYPE_A, 1, 0);
                assert_int_equal(judge(f, &below, out, &n, &q), NET_DNS_ANSWER);
                Pkt base = query("files.lab.test", NET_DNS_TYPE_A, 1, 0);
                assert_int_equal(judge(f, &base, out, &n, &q), NET_DNS_ANSWER);
                Pkt own = query("exact.test", NET_DNS_TYPE_A, 1, 0);
                assert_int_equal(judge(f, &own, out, &n, &q), NET_DNS_FORWARD);
        }
}

static void test_answer(void **state) {
        _cleanup_(net_dns_filter_freep) NetDnsFilter *f = net_dns_filter_new(allow, 4);
        uint8_t out[NET_DNS_QUERY_MAX];
        size_t n;
        NetDnsQuery q;
        Pkt p = query("MiXeD.wild.test", NET_DNS_TYPE_A, 1, 0);
        assert_int_equal(judge(f, &p, out, &n, &q), NET_DNS_FORWARD);

        /* dnsmasq's answer: our query echoed with QR, one A record pointing at the question. */
        uint8_t a[600];
        memcpy(a, out, n);
        a[2] = 0x81, a[3] = 0x80, a[7] = 1;
        const uint8_t rr[] = { 0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1 };
        memcpy(a + n, rr, sizeof rr);
        size_t an = n + sizeof rr;
        uint8_t b[600];

        memcpy(b, a, an);
        assert_int_equal(net_dns_filter_answer(&q, 0xBEEF, b, an), (int) an);
        assert_memory_equal(b, p.b, 2);                  /* the guest's id */
        assert_memory_equal(b + 12, p.b + 12, p.n - 12); /* the guest's spelling */
        assert_memory_equal(b + p.n, rr, sizeof rr);

        /* Another id, not a response, another question: refused. */
        memcpy(b, a, an);
        assert_int_equal(net_dns_filter_answer(&q, 0xBEEE, b, an), -EBADMSG);
        memcpy(b, a, an);
        b[2] &= 0x7F;
        assert_int_equal(net_dns_filter_answer(&q, 0xBEEF, b, an), -EBADMSG);
        memcpy(b, a, an);
        b[14] = 'x';
        assert_int_equal(net_dns_filter_answer(&q, 0xBEEF, b, an), -EBADMSG);
        assert_int_equal(net_dns_filter_answer(&q, 0xBEEF, b, 12), -EBADMSG);

        /* Larger than the guest takes (no EDNS: 512): header and question, TC. */
        uint8_t big[1200];
        memcpy(big, a, n);
        memset(big + n, 0, 700);
        int m = net_dns_filter_answer(&q, 0xBEEF, big, n + 700);
        assert_int_equal(m, (int) p.n);
        assert_true(big[2] & 0x02);
        assert_int_equal(big[7], 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_forward_lowercases), cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_malformed),          cmocka_unit_test(test_wildcard_budget),
                cmocka_unit_test(test_setup_window),       cmocka_unit_test(test_answer),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
