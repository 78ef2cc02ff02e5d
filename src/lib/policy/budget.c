/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Budget meter (micro-USD + tokens) with reserve/settle/release under one mutex, so
 * concurrent callers can never commit more than the maximum; plus the monotonic deadline.
 * Amounts are caller-supplied: all arithmetic is checked, nothing wraps.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "budget.h"

typedef struct BudgetDim {
        uint64_t max, consumed, reserved; /* invariant: consumed + reserved <= max, except
                                           * consumed == max after an over-settle */
} BudgetDim;

struct BudgetMeter {
        pthread_mutex_t lock;
        BudgetDim dim[3]; /* 0 = micro-USD, 1 = input tokens, 2 = output tokens */
};

int budget_meter_new(
        uint64_t max_usd_micros, uint64_t max_input_tokens, uint64_t max_output_tokens, BudgetMeter **ret) {
        BudgetMeter *m = xnew0(BudgetMeter, 1);
        int r = pthread_mutex_init(&m->lock, NULL);
        if (r != 0) {
                free(m);
                return -r;
        }
        m->dim[0].max = max_usd_micros;
        m->dim[1].max = max_input_tokens;
        m->dim[2].max = max_output_tokens;
        *ret = m;
        return 0;
}

BudgetMeter *budget_meter_free(BudgetMeter *m) {
        if (!m)
                return NULL;
        (void) pthread_mutex_destroy(&m->lock);
        free(m);
        return NULL;
}

static uint64_t dim_free(const BudgetDim *d) {
        uint64_t used = d->consumed + d->reserved; /* cannot overflow: both <= max */
        return used >= d->max ? 0 : d->max - used;
}

int budget_meter_reserve(
        BudgetMeter *m,
        uint64_t usd_micros,
        uint64_t input_tokens,
        uint64_t output_tokens,
        BudgetReservation *ret) {
        uint64_t want[3] = { usd_micros, input_tokens, output_tokens };
        if (!m || !ret)
                return -EINVAL;
        pthread_mutex_lock(&m->lock);
        if (m->dim[0].consumed >= m->dim[0].max) {
                pthread_mutex_unlock(&m->lock);
                return -EDQUOT;
        }
        for (size_t i = 0; i < 3; i++)
                if (want[i] > dim_free(&m->dim[i])) {
                        pthread_mutex_unlock(&m->lock);
                        return -EDQUOT;
                }
        for (size_t i = 0; i < 3; i++)
                m->dim[i].reserved += want[i];
        pthread_mutex_unlock(&m->lock);
        *ret = (BudgetReservation){
                .usd_micros = usd_micros,
                .input_tokens = input_tokens,
                .output_tokens = output_tokens,
                .active = true,
        };
        return 0;
}

int budget_meter_settle(
        BudgetMeter *m,
        BudgetReservation *res,
        uint64_t usd_micros,
        uint64_t input_tokens,
        uint64_t output_tokens) {
        uint64_t held[3], actual[3] = { usd_micros, input_tokens, output_tokens };
        int r = 0;
        if (!m || !res || !res->active)
                return -EINVAL;
        held[0] = res->usd_micros;
        held[1] = res->input_tokens;
        held[2] = res->output_tokens;
        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < 3; i++) {
                BudgetDim *d = &m->dim[i];
                d->reserved -= NUCLEUS_MIN(held[i], d->reserved);
                uint64_t room = dim_free(d);
                if (actual[i] > room) {
                        d->consumed = d->max - d->reserved;
                        r = -EDQUOT;
                } else
                        d->consumed += actual[i];
        }
        pthread_mutex_unlock(&m->lock);
        res->active = false;
        return r;
}

int budget_meter_release(BudgetMeter *m, BudgetReservation *res) {
        if (!m || !res || !res->active)
                return -EINVAL;
        pthread_mutex_lock(&m->lock);
        m->dim[0].reserved -= NUCLEUS_MIN(res->usd_micros, m->dim[0].reserved);
        m->dim[1].reserved -= NUCLEUS_MIN(res->input_tokens, m->dim[1].reserved);
        m->dim[2].reserved -= NUCLEUS_MIN(res->output_tokens, m->dim[2].reserved);
        pthread_mutex_unlock(&m->lock);
        res->active = false;
        return 0;
}

int budget_meter_charge(BudgetMeter *m, uint64_t usd_micros, uint64_t input_tokens, uint64_t output_tokens) {
        BudgetReservation res;
        int r = budget_meter_reserve(m, usd_micros, input_tokens, output_tokens, &res);
        if (r < 0)
                return r;
        return budget_meter_settle(m, &res, usd_micros, input_tokens, output_tokens);
}

void budget_meter_snapshot(BudgetMeter *m, BudgetSnapshot *ret) {
        pthread_mutex_lock(&m->lock);
        *ret = (BudgetSnapshot){
                .max_usd_micros = m->dim[0].max,
                .consumed_usd_micros = m->dim[0].consumed,
                .reserved_usd_micros = m->dim[0].reserved,
                .max_input_tokens = m->dim[1].max,
                .consumed_input_tokens = m->dim[1].consumed,
                .reserved_input_tokens = m->dim[1].reserved,
                .max_output_tokens = m->dim[2].max,
                .consumed_output_tokens = m->dim[2].consumed,
                .reserved_output_tokens = m->dim[2].reserved,
        };
        pthread_mutex_unlock(&m->lock);
}

bool budget_meter_exhausted(BudgetMeter *m) {
        pthread_mutex_lock(&m->lock);
        bool r = m->dim[0].consumed >= m->dim[0].max;
        pthread_mutex_unlock(&m->lock);
        return r;
}

int budget_parse_usd(const char *s, uint64_t *ret_micros) {
        uint64_t whole = 0, frac = 0;
        size_t nd = 0, nf = 0;
        const char *p = s;
        if (!s || !ret_micros)
                return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++, nd++) {
                if (whole > (UINT64_MAX / 1000000U - 9) / 10)
                        return -ERANGE;
                whole = whole * 10 + (uint64_t) (*p - '0');
        }
        if (nd == 0)
                return -EINVAL;
        if (*p == '.') {
                p++;
                for (; *p >= '0' && *p <= '9'; p++, nf++) {
                        if (nf >= 6)
                                return -EINVAL; /* finer than 1 micro-USD: refuse, never round */
                        frac = frac * 10 + (uint64_t) (*p - '0');
                }
                if (nf == 0)
                        return -EINVAL;
        }
        if (*p != 0)
                return -EINVAL;
        for (size_t i = nf; i < 6; i++)
                frac *= 10;
        *ret_micros = whole * 1000000U + frac;
        return 0;
}

char *budget_format_usd(char buf[static 32], uint64_t micros) {
        (void) snprintf(
                buf,
                32,
                "%llu.%06llu",
                (unsigned long long) (micros / 1000000U),
                (unsigned long long) (micros % 1000000U));
        return buf;
}

void time_window_start(TimeWindow *w, usec_t duration) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        w->start = now;
        w->expired = false;
        if (duration == USEC_INFINITY || duration > USEC_INFINITY - 1 - now)
                w->deadline = USEC_INFINITY;
        else
                w->deadline = now + duration;
}

int time_window_check(const TimeWindow *w) {
        if (w->expired)
                return -ETIME;
        if (w->deadline == USEC_INFINITY)
                return 0;
        return now_usec(CLOCK_MONOTONIC) < w->deadline ? 0 : -ETIME;
}

usec_t time_window_remaining(const TimeWindow *w) {
        if (w->expired)
                return 0;
        if (w->deadline == USEC_INFINITY)
                return USEC_INFINITY;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        return now >= w->deadline ? 0 : w->deadline - now;
}

void time_window_expire(TimeWindow *w) {
        w->expired = true;
}
