/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pod's DNS filter (docs/network.md, "DNS"): the guest's DNS packets are untrusted. This
 * file is the pure part, no I/O: a strict, bounded parser of one query, the decision (only
 * A/AAAA of class IN for a dns_allow name; at most `wildcard_names` distinct names under each
 * wildcard entry), and the query rebuilt from nothing for dnsmasq with the name in lower case
 * (letter case cannot carry data upstream; the query id, flags and EDNS options of the guest do
 * not travel either). net-dnsfilter.c runs it on a thread in the pod's namespace.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define NET_DNS_QUERY_MAX 512U       /* longest query accepted from the guest (bytes) */
#define NET_DNS_ANSWER_MAX 1232U     /* longest answer relayed (the EDNS size we announce) */
#define NET_DNS_NAME_WIRE_MAX 255U   /* RFC 1035 */
#define NET_DNS_WILDCARD_DEFAULT 16U /* distinct names per wildcard entry and pod */
#define NET_DNS_WILDCARD_MAX 4096U

#define NET_DNS_TYPE_A 1U
#define NET_DNS_TYPE_AAAA 28U
#define NET_DNS_TYPE_OPT 41U
#define NET_DNS_CLASS_IN 1U

#define NET_DNS_RCODE_FORMERR 1U
#define NET_DNS_RCODE_NOTIMP 4U
#define NET_DNS_RCODE_REFUSED 5U

typedef enum NetDnsVerdict {
        NET_DNS_DROP,    /* no answer at all (not a query, shorter than a header) */
        NET_DNS_ANSWER,  /* out holds an error answer for the guest (FORMERR/NOTIMP/REFUSED) */
        NET_DNS_FORWARD, /* out holds the rebuilt query for dnsmasq */
} NetDnsVerdict;

typedef enum NetDnsReason {
        NET_DNS_OK,
        NET_DNS_MALFORMED,   /* not a well-formed standard query */
        NET_DNS_BAD_TYPE,    /* not A/AAAA of class IN */
        NET_DNS_NOT_ALLOWED, /* name not on dns_allow */
        NET_DNS_BUDGET,      /* a new name under a wildcard whose budget is spent */
        _NET_DNS_REASON_MAX,
} NetDnsReason;

const char *net_dns_reason_to_string(NetDnsReason r);

/* What the filter keeps of one forwarded query to check and restore dnsmasq's answer. */
typedef struct NetDnsQuery {
        uint16_t guest_id;
        bool guest_rd;
        bool guest_edns;
        uint16_t guest_max;                         /* largest answer the guest takes: 512 without EDNS */
        size_t qlen;                                /* wire bytes of the question (name + type + class) */
        uint8_t guest_q[NET_DNS_NAME_WIRE_MAX + 4]; /* the question as the guest spelled it */
        uint8_t fwd_q[NET_DNS_NAME_WIRE_MAX + 4];   /* the question as forwarded (lower case) */
        uint16_t qtype;
        char name[NET_DNS_NAME_WIRE_MAX + 1]; /* lower-case dotted text, no trailing dot */
        const char *entry;                    /* the dns_allow entry the name matched (borrowed) */
        NetDnsReason reason;
        bool budget_new; /* the name took a new place in a wildcard's budget */
} NetDnsQuery;

typedef struct NetDnsFilter NetDnsFilter;

/* dns_allow: normalised names (net_dns_name_normalize); copied. wildcard_names: distinct
 * names allowed under each "*." entry (0 = NET_DNS_WILDCARD_DEFAULT). */
NetDnsFilter *net_dns_filter_new(char *const *dns_allow, unsigned wildcard_names);
NetDnsFilter *net_dns_filter_free(NetDnsFilter *f);
/* Add the policy's setup hosts (normalised names; copied): judged like dns_allow entries, but
 * only while the setup window is open. Call before the filter thread starts. */
void net_dns_filter_add_setup(NetDnsFilter *f, char *const *setup_hosts);
/* Open or close the setup window; safe from any thread while the filter runs (atomic). */
void net_dns_filter_set_setup_open(NetDnsFilter *f, bool open);
DEFINE_TRIVIAL_CLEANUP_FUNC(NetDnsFilter *, net_dns_filter_free);
unsigned net_dns_filter_wildcard_names(const NetDnsFilter *f);

/* Judge one packet from the guest.
 * Arguments: pkt/n: the datagram (untrusted); fwd_id: the id to put on a forwarded query;
 *            out: at least NET_DNS_QUERY_MAX bytes; q: filled with what was parsed (q->reason
 *            says why a packet is refused).
 * Returns: the verdict; *out_len is the length of out (0 with NET_DNS_DROP).
 * Notes: a name under a wildcard is admitted into that entry's budget only here (on FORWARD);
 *        a name already admitted passes again without counting. Exact entries cost nothing. */
NetDnsVerdict net_dns_filter_query(
        NetDnsFilter *f,
        const uint8_t *pkt,
        size_t n,
        uint16_t fwd_id,
        uint8_t *out,
        size_t *out_len,
        NetDnsQuery *q);

/* For a query that came over TCP: make the forwarded query out (n bytes, from
 * net_dns_filter_query, buffer of NET_DNS_QUERY_MAX) carry an OPT announcing size, and let q
 * take answers that large. Returns the new length. */
size_t net_dns_query_set_edns(uint8_t *out, size_t n, NetDnsQuery *q, uint16_t size);

/* Check an answer from dnsmasq for query q sent with fwd_id and turn it into the guest's answer,
 * in place: the guest's id and RD flag, the question in the guest's spelling (same length;
 * resolvers with 0x20 randomisation, c-ares for one, compare it byte for byte), and cut to the
 * header and question with TC set when it is larger than the guest takes.
 * Returns: the new length, or -EBADMSG when it does not answer q (wrong id, not a response,
 *          another question). */
int net_dns_filter_answer(const NetDnsQuery *q, uint16_t fwd_id, uint8_t *pkt, size_t n);
