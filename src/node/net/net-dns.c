/* SPDX-License-Identifier: Apache-2.0 */
/* The pod's DNS filter, pure part (see net-dns.h). Every byte of a query is untrusted: lengths
 * are checked before each read, names are bounded (255 wire bytes, labels 1..63, no
 * compression), and anything not exactly a standard query of one question is refused. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "alloc-util.h"
#include "net-dns.h"
#include "net.h"
#include "string-util.h"

#define HDR 12U
#define FLAG_QR 0x8000U
#define FLAG_TC 0x0200U
#define FLAG_RD 0x0100U
#define FLAG_RA 0x0080U
#define OPCODE(f) (((f) >> 11) & 0xFU)

static const char *const reason_names[_NET_DNS_REASON_MAX] = {
        [NET_DNS_OK] = "ok",
        [NET_DNS_MALFORMED] = "malformed",
        [NET_DNS_BAD_TYPE] = "type",
        [NET_DNS_NOT_ALLOWED] = "not_allowed",
        [NET_DNS_BUDGET] = "wildcard_budget",
};

const char *net_dns_reason_to_string(NetDnsReason r) {
        return (unsigned) r < _NET_DNS_REASON_MAX ? reason_names[r] : NULL;
}

typedef struct Entry {
        char *name;       /* "example.com" or "*.example.com" */
        const char *base; /* for a wildcard: the part after "*." */
        char **admitted;  /* wildcard: distinct names admitted so far */
        size_t n_admitted;
        bool setup; /* a setup host: counts only while the setup window is open */
} Entry;

struct NetDnsFilter {
        Entry *entries;
        size_t n_entries;
        unsigned limit;
        atomic_bool setup_open; /* written by the node's API thread, read by the filter thread */
};

static void add_entries(NetDnsFilter *f, char *const *names, bool setup) {
        size_t n = strv_length((char **) names);
        f->entries = xrealloc(f->entries, (f->n_entries + n + 1) * sizeof(Entry));
        for (size_t i = 0; i < n; i++) {
                Entry *e = &f->entries[f->n_entries++];
                *e = (Entry){ .name = xstrdup(names[i]), .setup = setup };
                e->base = startswith(e->name, "*.");
        }
}

NetDnsFilter *net_dns_filter_new(char *const *dns_allow, unsigned wildcard_names) {
        NetDnsFilter *f = xnew0(NetDnsFilter, 1);
        add_entries(f, dns_allow, false);
        f->limit = wildcard_names ? NUCLEUS_MIN(wildcard_names, NET_DNS_WILDCARD_MAX)
                                  : NET_DNS_WILDCARD_DEFAULT;
        atomic_init(&f->setup_open, false);
        return f;
}

void net_dns_filter_add_setup(NetDnsFilter *f, char *const *setup_hosts) {
        add_entries(f, setup_hosts, true);
}

void net_dns_filter_set_setup_open(NetDnsFilter *f, bool open) {
        atomic_store(&f->setup_open, open);
}

/* Does entry e count now, and does name match it (exact, or strictly below a wildcard)? */
static bool entry_active(NetDnsFilter *f, const Entry *e) {
        return !e->setup || atomic_load(&f->setup_open);
}

static bool entry_matches(const Entry *e, const char *name) {
        char *one[] = { e->name, NULL };
        return net_dns_name_allowed(one, name);
}

NetDnsFilter *net_dns_filter_free(NetDnsFilter *f) {
        if (!f)
                return NULL;
        for (size_t i = 0; i < f->n_entries; i++) {
                for (size_t k = 0; k < f->entries[i].n_admitted; k++)
                        free(f->entries[i].admitted[k]);
                free(f->entries[i].admitted);
                free(f->entries[i].name);
        }
        free(f->entries);
        free(f);
        return NULL;
}

unsigned net_dns_filter_wildcard_names(const NetDnsFilter *f) {
        return f ? f->limit : 0;
}

static uint16_t get16(const uint8_t *p) {
        return (uint16_t) ((p[0] << 8) | p[1]);
}

static void put16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t) (v >> 8);
        p[1] = (uint8_t) v;
}

static bool label_char_ok(uint8_t c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                c == '_';
}

/* An error answer: the guest's id and RD, QR, the rcode; the guest's question when it parsed. */
static size_t error_answer(
        const uint8_t *pkt, const NetDnsQuery *q, bool with_question, unsigned rcode, uint8_t *out) {
        uint16_t flags =
                (uint16_t) (FLAG_QR | FLAG_RA | (get16(pkt + 2) & FLAG_RD) | (OPCODE(get16(pkt + 2)) << 11) | rcode);
        memcpy(out, pkt, 2);
        put16(out + 2, flags);
        put16(out + 4, with_question ? 1 : 0);
        put16(out + 6, 0);
        put16(out + 8, 0);
        put16(out + 10, 0);
        if (!with_question)
                return HDR;
        memcpy(out + HDR, q->guest_q, q->qlen);
        return HDR + q->qlen;
}

/* The wildcard entry charged for name: the most specific "*." entry it lies under. */
static Entry *wildcard_for(NetDnsFilter *f, const char *name) {
        Entry *best = NULL;
        size_t nl = strlen(name);
        for (size_t i = 0; i < f->n_entries; i++) {
                Entry *e = &f->entries[i];
                if (!e->base || !entry_active(f, e))
                        continue;
                size_t bl = strlen(e->base);
                if (nl > bl + 1 && name[nl - bl - 1] == '.' && streq(name + nl - bl, e->base) &&
                    (!best || bl > strlen(best->base)))
                        best = e;
        }
        return best;
}

static NetDnsReason judge_name(NetDnsFilter *f, NetDnsQuery *q) {
        bool allowed = false;
        for (size_t i = 0; i < f->n_entries && !allowed; i++)
                allowed = entry_active(f, &f->entries[i]) && entry_matches(&f->entries[i], q->name);
        if (!allowed)
                return NET_DNS_NOT_ALLOWED;
        for (size_t i = 0; i < f->n_entries; i++)
                if (!f->entries[i].base && entry_active(f, &f->entries[i]) &&
                    streq(f->entries[i].name, q->name)) {
                        q->entry = f->entries[i].name;
                        return NET_DNS_OK;
                }
        Entry *w = wildcard_for(f, q->name);
        if (!w) /* allowed but under no wildcard: cannot happen with the matcher's rules */
                return NET_DNS_NOT_ALLOWED;
        q->entry = w->name;
        for (size_t k = 0; k < w->n_admitted; k++)
                if (streq(w->admitted[k], q->name))
                        return NET_DNS_OK;
        if (w->n_admitted >= f->limit)
                return NET_DNS_BUDGET;
        w->admitted = xrealloc(w->admitted, (w->n_admitted + 1) * sizeof(char *));
        w->admitted[w->n_admitted++] = xstrdup(q->name);
        q->budget_new = true;
        return NET_DNS_OK;
}

NetDnsVerdict net_dns_filter_query(
        NetDnsFilter *f,
        const uint8_t *pkt,
        size_t n,
        uint16_t fwd_id,
        uint8_t *out,
        size_t *out_len,
        NetDnsQuery *q) {
        *q = (NetDnsQuery){ .reason = NET_DNS_MALFORMED };
        *out_len = 0;
        if (!f || !pkt || n < HDR)
                return NET_DNS_DROP;
        uint16_t flags = get16(pkt + 2);
        if (flags & FLAG_QR) /* an answer sent to the resolver: never answer it (no loops) */
                return NET_DNS_DROP;
        q->guest_id = get16(pkt);
        q->guest_rd = flags & FLAG_RD;
        if (OPCODE(flags) != 0) {
                *out_len = error_answer(pkt, q, false, NET_DNS_RCODE_NOTIMP, out);
                return NET_DNS_ANSWER;
        }
        if (n > NET_DNS_QUERY_MAX || (flags & FLAG_TC) || get16(pkt + 4) != 1 || get16(pkt + 6) != 0 ||
            get16(pkt + 8) != 0 || get16(pkt + 10) > 1) {
                *out_len = error_answer(pkt, q, false, NET_DNS_RCODE_FORMERR, out);
                return NET_DNS_ANSWER;
        }

        /* The name: uncompressed labels only, 255 wire bytes at most. */
        size_t off = HDR, t = 0;
        bool chars_ok = true;
        for (;;) {
                if (off >= n || off - HDR >= NET_DNS_NAME_WIRE_MAX) {
                        *out_len = error_answer(pkt, q, false, NET_DNS_RCODE_FORMERR, out);
                        return NET_DNS_ANSWER;
                }
                uint8_t l = pkt[off];
                if (l == 0)
                        break;
                if (l > 63 || off + 1 + l >= n || off + 1 + l - HDR >= NET_DNS_NAME_WIRE_MAX) {
                        /* compression pointer, reserved label type, past the end or too long */
                        *out_len = error_answer(pkt, q, false, NET_DNS_RCODE_FORMERR, out);
                        return NET_DNS_ANSWER;
                }
                if (t > 0)
                        q->name[t++] = '.';
                for (size_t i = 0; i < l; i++) {
                        uint8_t c = pkt[off + 1 + i];
                        chars_ok = chars_ok && label_char_ok(c);
                        q->name[t++] = (char) ((c >= 'A' && c <= 'Z') ? c + 32 : (chars_ok ? c : '?'));
                }
                off += 1U + l;
        }
        q->name[t] = 0;
        off++; /* the root label */
        if (off + 4 > n) {
                *out_len = error_answer(pkt, q, false, NET_DNS_RCODE_FORMERR, out);
                return NET_DNS_ANSWER;
        }
        q->qtype = get16(pkt + off);
        uint16_t qclass = get16(pkt + off + 2);
        off += 4;
        q->qlen = off - HDR;
        memcpy(q->guest_q, pkt + HDR, q->qlen);

        /* At most one additional record, and only an OPT of version 0 that ends the packet. */
        q->guest_max = 512;
        if (get16(pkt + 10) == 1) {
                if (off + 11 > n || pkt[off] != 0 || get16(pkt + off + 1) != NET_DNS_TYPE_OPT ||
                    pkt[off + 6] != 0 /* version */ || off + 11 + get16(pkt + off + 9) != n) {
                        *out_len = error_answer(pkt, q, false, NET_DNS_RCODE_FORMERR, out);
                        return NET_DNS_ANSWER;
                }
                q->guest_edns = true;
                q->guest_max = NUCLEUS_MAX(
                        (uint16_t) 512, NUCLEUS_MIN(get16(pkt + off + 3), (uint16_t) NET_DNS_ANSWER_MAX));
        } else if (off != n) {
                *out_len = error_answer(pkt, q, false, NET_DNS_RCODE_FORMERR, out);
                return NET_DNS_ANSWER;
        }

        /* The question parsed: refusals from here on echo it. */
        if (qclass != NET_DNS_CLASS_IN || (q->qtype != NET_DNS_TYPE_A && q->qtype != NET_DNS_TYPE_AAAA))
                q->reason = NET_DNS_BAD_TYPE;
        else if (!chars_ok || t == 0)
                q->reason = NET_DNS_NOT_ALLOWED;
        else
                q->reason = judge_name(f, q);
        if (q->reason != NET_DNS_OK) {
                *out_len = error_answer(pkt, q, true, NET_DNS_RCODE_REFUSED, out);
                return NET_DNS_ANSWER;
        }

        /* Rebuild the query from nothing: our id, RD, the lower-case name, A/AAAA IN, and an OPT
         * of our own (no options) when the guest used EDNS. */
        size_t o = 0;
        put16(out, fwd_id);
        put16(out + 2, FLAG_RD);
        put16(out + 4, 1);
        put16(out + 6, 0);
        put16(out + 8, 0);
        put16(out + 10, q->guest_edns ? 1 : 0);
        o = HDR;
        for (size_t i = 0; i < q->qlen - 4; i++) {
                uint8_t c = q->guest_q[i];
                /* Length bytes are < 64, so only letters change. */
                q->fwd_q[i] = (c >= 'A' && c <= 'Z') ? (uint8_t) (c + 32) : c;
        }
        put16(q->fwd_q + q->qlen - 4, q->qtype);
        put16(q->fwd_q + q->qlen - 2, NET_DNS_CLASS_IN);
        memcpy(out + o, q->fwd_q, q->qlen);
        o += q->qlen;
        if (q->guest_edns) {
                static const uint8_t opt[11] = { 0,
                                                 0,
                                                 NET_DNS_TYPE_OPT,
                                                 NET_DNS_ANSWER_MAX >> 8,
                                                 NET_DNS_ANSWER_MAX & 0xFF,
                                                 0,
                                                 0,
                                                 0,
                                                 0,
                                                 0,
                                                 0 };
                memcpy(out + o, opt, sizeof opt);
                put16(out + o + 3, q->guest_max);
                o += sizeof opt;
        }
        *out_len = o;
        return NET_DNS_FORWARD;
}

int net_dns_filter_answer(const NetDnsQuery *q, uint16_t fwd_id, uint8_t *pkt, size_t n) {
        if (!q || !pkt || n < HDR + q->qlen || n > NET_DNS_ANSWER_MAX)
                return -EBADMSG;
        uint16_t flags = get16(pkt + 2);
        if (get16(pkt) != fwd_id || !(flags & FLAG_QR) || OPCODE(flags) != 0 || get16(pkt + 4) != 1 ||
            memcmp(pkt + HDR, q->fwd_q, q->qlen) != 0)
                return -EBADMSG;
        put16(pkt, q->guest_id);
        flags = (uint16_t) ((flags & ~FLAG_RD) | (q->guest_rd ? FLAG_RD : 0));
        memcpy(pkt + HDR, q->guest_q, q->qlen);
        if (n > q->guest_max) {
                /* Larger than the guest takes: header and question only, truncated. */
                flags |= FLAG_TC;
                put16(pkt + 6, 0);
                put16(pkt + 8, 0);
                put16(pkt + 10, 0);
                n = HDR + q->qlen;
        }
        put16(pkt + 2, flags);
        return (int) n;
}

size_t net_dns_query_set_edns(uint8_t *out, size_t n, NetDnsQuery *q, uint16_t size) {
        size_t base = HDR + q->qlen; /* header and question: the OPT, if any, follows */
        if (n < base || base + 11 > NET_DNS_QUERY_MAX)
                return n;
        static const uint8_t opt[11] = { 0, 0, NET_DNS_TYPE_OPT, 0, 0, 0, 0, 0, 0, 0, 0 };
        memcpy(out + base, opt, sizeof opt);
        put16(out + base + 3, size);
        put16(out + 10, 1);
        q->guest_max = size;
        return base + sizeof opt;
}
