/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Budget reserve and settle for model calls (docs/api.md "Budget reserve and settle"): node
 * routes that only a run credential of the pod may call (scope RUN), used by the model
 * gateway of `nucleus run`. The pod's budget lives in its proxy's meter (it also pays for
 * tool calls); the node holds the model calls' reservations on top of it:
 *
 *   reserve  under the pod's budget_lock: what the proxy reports as left, minus what is
 *            already reserved here, must cover the request, or 402 budget_exhausted. So
 *            concurrent reserves never promise more than is left.
 *   settle   the reservation is dropped and the actual cost charged to the proxy's meter
 *            (which clamps at the maximum and is then exhausted).
 *
 * A reservation that is never settled expires (its ttl, at most the pod's deadline) and is
 * then charged at its full amount, as a cut answer would be: the provider may have billed it.
 * Expired reservations are charged by the node's periodic pod checks (pod_budget_sweep, every
 * few seconds) and at the pod's next reserve or settle, whichever comes first. When the pod ends its
 * reservations go with it (nothing more can be spent, and the run credential is refused).
 */
#include <sodium.h>
#include <string.h>

#include "alloc-util.h"
#include "api-internal.h"
#include "audit.h"
#include "json-util.h"
#include "log.h"
#include "message.h"
#include "string-util.h"

#define RESV_MAX 64 /* held reservations per pod */
#define RESV_TTL_DEFAULT_SEC 600
#define RESV_TTL_MAX_SEC 3600
#define RESV_USD_MICROS_MAX (UINT64_C(1) << 50)

typedef struct PodReservation {
        char id[33]; /* 32 hex */
        uint64_t usd_micros;
        usec_t expires; /* CLOCK_MONOTONIC */
} PodReservation;

/* Ask the proxy: status (op "status") or charge (op "charge"). */
static int proxy_op(Pod *p, const char *op, json_t *args, json_t **ret, int *ret_channel_error) {
        ChannelReply rep = {};
        int r = channel_call(p->channel, op, args, 0, NULL, 0, api_pod_call_timeout(p), 0, &rep);
        if (r < 0) {
                *ret_channel_error = r;
                return r;
        }
        *ret = json_incref(rep.response);
        channel_reply_done(&rep);
        return 0;
}

static void audit_budget(
        Pod *p, const char *actor, const char *op, const char *decision, const char *kind, json_t *detail) {
        AuditEvent ev = { .actor = actor, .op = op, .decision = decision, .kind = kind, .detail = detail };
        (void) pod_audit(p, &ev);
}

static int charge_locked(Pod *p, uint64_t usd, uint64_t in, uint64_t out, json_t **ret_answer, int *ret_cherr) {
        /* Counted by the node whatever the proxy answers: the model call was made. */
        ForkBudget add = { usd, in, out };
        fork_budget_add(&p->charged, &add);
        _cleanup_json_ json_t *args = json_pack(
                "{s:I,s:I,s:I}",
                "usd_micros",
                (json_int_t) usd,
                "input_tokens",
                (json_int_t) in,
                "output_tokens",
                (json_int_t) out);
        return proxy_op(p, "charge", args, ret_answer, ret_cherr);
}

/* Charge every expired reservation at its amount. Under budget_lock. */
static void sweep_expired_locked(Pod *p, const char *actor) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        for (size_t i = 0; i < p->n_resv;) {
                PodReservation *r = &p->resv[i];
                if (r->expires > now) {
                        i++;
                        continue;
                }
                _cleanup_json_ json_t *ans = NULL;
                int cherr = 0;
                (void) charge_locked(p, r->usd_micros, 0, 0, &ans, &cherr);
                _cleanup_json_ json_t *detail = json_pack(
                        "{s:s,s:I,s:b}",
                        "reservation",
                        r->id,
                        "charged_usd_micros",
                        (json_int_t) r->usd_micros,
                        "expired",
                        1);
                audit_budget(p, actor, "budget_settle", "info", "expired", detail);
                p->resv_micros -= r->usd_micros;
                p->resv[i] = p->resv[--p->n_resv];
        }
}

void pod_budget_sweep(Pod *p) {
        pthread_mutex_lock(&p->budget_lock);
        if (p->n_resv > 0)
                sweep_expired_locked(p, "node");
        pthread_mutex_unlock(&p->budget_lock);
}

static int body_object(ApiCall *a, json_t **ret) {
        _cleanup_free_ char *err = NULL;
        if (a->n_body == 0 || json_parse_strict(a->body, a->n_body, 4096, ret, &err) < 0 ||
            !json_is_object(*ret))
                return -EINVAL;
        return 0;
}

static bool u64_member(json_t *o, const char *k, uint64_t max, bool required, uint64_t *ret) {
        json_t *v = json_object_get(o, k);
        if (!v)
                return !required;
        if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t) json_integer_value(v) > max)
                return false;
        *ret = (uint64_t) json_integer_value(v);
        return true;
}

static bool only_keys(json_t *o, const char *const *keys) {
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) {
                bool ok = false;
                for (size_t i = 0; keys[i]; i++)
                        ok = ok || streq(k, keys[i]);
                if (!ok)
                        return false;
        }
        return true;
}

enum MHD_Result api_h_budget_reserve(ApiCall *a) {
        static const char *const keys[] = { "usd_micros", "ttl_seconds", NULL };
        _cleanup_json_ json_t *body = NULL, *st = NULL;
        uint64_t usd = 0, ttl = RESV_TTL_DEFAULT_SEC;
        enum MHD_Result ret;
        Pod *p = a->pod;

        if (body_object(a, &body) < 0 || !only_keys(body, keys) ||
            !u64_member(body, "usd_micros", RESV_USD_MICROS_MAX, true, &usd) ||
            !u64_member(body, "ttl_seconds", RESV_TTL_MAX_SEC, false, &ttl) || ttl == 0)
                return api_reply_error(
                        a->c,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request",
                        "body: {\"usd_micros\": N (0..2^50), \"ttl_seconds\": 1..3600 (optional, default "
                        "600)}");
        if (!api_pod_check_callable(a->c, p, &ret))
                return ret;

        pthread_mutex_lock(&p->budget_lock);
        /* Again under budget_lock: a pod that began ending has read its remainder for the
         * escrow under this lock (pod_terminate), its channel still open for a moment after;
         * a reservation taken now would be spent upstream but in neither. */
        if (!api_pod_check_callable(a->c, p, &ret)) {
                pthread_mutex_unlock(&p->budget_lock);
                return ret;
        }
        sweep_expired_locked(p, a->actor);
        int cherr = 0;
        _cleanup_json_ json_t *noargs = json_object();
        if (proxy_op(p, "status", noargs, &st, &cherr) < 0) {
                pthread_mutex_unlock(&p->budget_lock);
                return api_reply_channel_error(a->c, p, cherr);
        }
        json_t *b = json_object_get(st, "budget");
        json_t *leftj = json_object_get(b, "left_usd_micros");
        if (!json_is_integer(leftj)) {
                pthread_mutex_unlock(&p->budget_lock);
                return api_reply_error(
                        a->c, MHD_HTTP_BAD_GATEWAY, "internal", "the pod's proxy did not report its budget");
        }
        uint64_t left = (uint64_t) NUCLEUS_MAX(json_integer_value(leftj), (json_int_t) 0);
        /* The proxy's left is the guest's word: never more than the node knows is left. */
        uint64_t free_micros = fork_budget_remainder(
                                       left,
                                       p->resv_micros,
                                       p->spec->policy ? p->spec->policy->max_usd_micros : 0,
                                       &p->charged,
                                       0,
                                       0,
                                       0,
                                       0)
                                       .usd_micros;
        if (json_is_true(json_object_get(st, "expired"))) {
                pthread_mutex_unlock(&p->budget_lock);
                return api_reply_error(
                        a->c,
                        (unsigned) error_kind_http_status(ERROR_KIND_TIME_VIOLATION),
                        "time_violation",
                        "the pod's deadline has passed");
        }
        if (json_is_true(json_object_get(b, "exhausted")) || usd > free_micros || p->n_resv >= RESV_MAX) {
                bool full = p->n_resv >= RESV_MAX && usd <= free_micros;
                pthread_mutex_unlock(&p->budget_lock);
                _cleanup_json_ json_t *detail = json_pack(
                        "{s:I,s:I}", "usd_micros", (json_int_t) usd, "free_usd_micros", (json_int_t) free_micros);
                audit_budget(
                        p, a->actor, "budget_reserve", "deny", full ? "capacity" : "budget_exhausted", detail);
                if (full)
                        return api_reply_error(
                                a->c,
                                MHD_HTTP_TOO_MANY_REQUESTS,
                                "capacity",
                                "the pod already holds %d unsettled reservations; settle one first",
                                RESV_MAX);
                _cleanup_json_ json_t *e = json_pack(
                        "{s:s,s:s,s:I,s:I,s:I}",
                        "error",
                        "budget exhausted: the reservation does not fit in what is left of the pod's budget",
                        "kind",
                        "budget_exhausted",
                        "usd_micros",
                        (json_int_t) usd,
                        "free_usd_micros",
                        (json_int_t) free_micros,
                        "reserved_usd_micros",
                        (json_int_t) (left - free_micros));
                return api_reply_json(a->c, (unsigned) error_kind_http_status(ERROR_KIND_BUDGET_EXHAUSTED), e);
        }

        PodReservation r = { .usd_micros = usd };
        uint8_t rnd[16];
        randombytes_buf(rnd, sizeof rnd);
        sodium_bin2hex(r.id, sizeof r.id, rnd, sizeof rnd);
        pthread_mutex_lock(&p->node->lock);
        usec_t deadline = p->deadline_mono;
        pthread_mutex_unlock(&p->node->lock);
        r.expires = NUCLEUS_MIN(now_usec(CLOCK_MONOTONIC) + ttl * USEC_PER_SEC, deadline);
        p->resv = xrealloc(p->resv, (p->n_resv + 1) * sizeof(PodReservation));
        p->resv[p->n_resv++] = r;
        p->resv_micros += usd;
        pthread_mutex_unlock(&p->budget_lock);

        _cleanup_json_ json_t *detail = json_pack(
                "{s:s,s:I}", "reservation", r.id, "usd_micros", (json_int_t) usd);
        audit_budget(p, a->actor, "budget_reserve", "allow", NULL, detail);
        _cleanup_json_ json_t *out = json_pack(
                "{s:s,s:I,s:I,s:I}",
                "reservation",
                r.id,
                "usd_micros",
                (json_int_t) usd,
                "ttl_seconds",
                (json_int_t) ((r.expires - NUCLEUS_MIN(r.expires, now_usec(CLOCK_MONOTONIC))) / USEC_PER_SEC),
                "free_usd_micros",
                (json_int_t) (free_micros - usd));
        return api_reply_json(a->c, MHD_HTTP_OK, out);
}

enum MHD_Result api_h_budget_settle(ApiCall *a) {
        static const char *const keys[] = { "reservation", "usd_micros", "input_tokens", "output_tokens", NULL };
        _cleanup_json_ json_t *body = NULL, *ans = NULL;
        uint64_t usd = 0, in = 0, out_tok = 0;
        Pod *p = a->pod;

        const char *id = NULL;
        if (body_object(a, &body) < 0 || !only_keys(body, keys) ||
            !(id = json_string_value(json_object_get(body, "reservation"))) ||
            !u64_member(body, "usd_micros", RESV_USD_MICROS_MAX, true, &usd) ||
            !u64_member(body, "input_tokens", UINT64_MAX >> 12, false, &in) ||
            !u64_member(body, "output_tokens", UINT64_MAX >> 12, false, &out_tok))
                return api_reply_error(
                        a->c,
                        MHD_HTTP_BAD_REQUEST,
                        "invalid_request",
                        "body: {\"reservation\": ID, \"usd_micros\": N (the actual cost; 0 releases it), "
                        "\"input_tokens\": N, \"output_tokens\": N}");

        pthread_mutex_lock(&p->budget_lock);
        sweep_expired_locked(p, a->actor);
        size_t i = 0;
        for (; i < p->n_resv; i++)
                if (strlen(id) == 32 && memeq_consttime(p->resv[i].id, id, 32))
                        break;
        if (i >= p->n_resv) {
                pthread_mutex_unlock(&p->budget_lock);
                return api_reply_error(
                        a->c,
                        MHD_HTTP_NOT_FOUND,
                        "not_found",
                        "no such reservation: settled already, or expired and charged at its amount");
        }
        PodReservation r = p->resv[i];
        p->resv[i] = p->resv[--p->n_resv];
        p->resv_micros -= r.usd_micros;
        bool exhausted = false;
        int cherr = 0, k = 0;
        if (usd > 0 || in > 0 || out_tok > 0) {
                k = charge_locked(p, usd, in, out_tok, &ans, &cherr);
                exhausted = k >= 0 &&
                        streq_ptr(json_string_value(json_object_get(ans, "kind")), "budget_exhausted");
        }
        pthread_mutex_unlock(&p->budget_lock);
        _cleanup_json_ json_t *detail = json_pack(
                "{s:s,s:I,s:I,s:I,s:I}",
                "reservation",
                r.id,
                "reserved_usd_micros",
                (json_int_t) r.usd_micros,
                "charged_usd_micros",
                (json_int_t) usd,
                "input_tokens",
                (json_int_t) in,
                "output_tokens",
                (json_int_t) out_tok);
        audit_budget(
                p,
                a->actor,
                "budget_settle",
                k < 0 ? "error" : "allow",
                exhausted ? "budget_exhausted" : NULL,
                detail);
        if (k < 0)
                return api_reply_channel_error(a->c, p, cherr);
        _cleanup_json_ json_t *out = json_pack(
                "{s:s,s:I,s:b}", "reservation", r.id, "charged_usd_micros", (json_int_t) usd, "exhausted", exhausted);
        json_t *b = json_object_get(ans, "budget");
        if (b)
                json_object_set(out, "budget", b);
        return api_reply_json(a->c, MHD_HTTP_OK, out);
}
