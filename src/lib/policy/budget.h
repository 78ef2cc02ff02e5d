/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Runtime budget meter (integer micro-USD plus input/output token counts) with
 * reserve -> settle/release, safe for concurrent callers (one mutex), and the monotonic
 * time window (deadline). Amounts come from callers that may be buggy: no wrap-around, no
 * negative values (unsigned), over-limit requests refused without changing anything.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"
#include "time-util.h"

typedef struct BudgetMeter BudgetMeter;

/* A hold on part of the budget. Returned by budget_meter_reserve(); give it back exactly once
 * through budget_meter_settle() or budget_meter_release(). */
typedef struct BudgetReservation {
        uint64_t usd_micros;    /* reserved micro-USD */
        uint64_t input_tokens;  /* reserved input tokens */
        uint64_t output_tokens; /* reserved output tokens */
        bool active;            /* true until settled or released */
} BudgetReservation;

typedef struct BudgetSnapshot {
        uint64_t max_usd_micros, consumed_usd_micros, reserved_usd_micros;
        uint64_t max_input_tokens, consumed_input_tokens, reserved_input_tokens;
        uint64_t max_output_tokens, consumed_output_tokens, reserved_output_tokens;
} BudgetSnapshot;

/* New meter with the given maxima (consumed 0). Returns 0 or -ENOMEM. */
int budget_meter_new(
        uint64_t max_usd_micros, uint64_t max_input_tokens, uint64_t max_output_tokens, BudgetMeter **ret);
BudgetMeter *budget_meter_free(BudgetMeter *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(BudgetMeter *, budget_meter_free);

/* Reserve amounts against consumed + reserved. All-or-nothing: returns 0 and fills *ret, or
 * -EDQUOT (kind budget_exhausted) when any dimension would pass its maximum, changing
 * nothing. A request landing exactly on the maximum succeeds. A zero request succeeds
 * (nothing held) unless the meter is already exhausted (consumed >= max in micro-USD). */
int budget_meter_reserve(
        BudgetMeter *m,
        uint64_t usd_micros,
        uint64_t input_tokens,
        uint64_t output_tokens,
        BudgetReservation *ret);

/* Turn a reservation into consumption of the actual amounts. Actual amounts above the
 * reservation take the difference from what is free; if that is not enough, consumption is
 * clamped at the maximum and -EDQUOT is returned (the work already happened; the meter is
 * now exhausted). Returns 0 otherwise; -EINVAL if r is not active. r becomes inactive. */
int budget_meter_settle(
        BudgetMeter *m, BudgetReservation *r, uint64_t usd_micros, uint64_t input_tokens, uint64_t output_tokens);
/* Give a reservation back unused. -EINVAL if r is not active. */
int budget_meter_release(BudgetMeter *m, BudgetReservation *r);

/* reserve + settle in one step, refused (-EDQUOT, nothing changed) if it does not fit. */
int budget_meter_charge(BudgetMeter *m, uint64_t usd_micros, uint64_t input_tokens, uint64_t output_tokens);

void budget_meter_snapshot(BudgetMeter *m, BudgetSnapshot *ret);
/* True when consumed micro-USD >= max (nothing more can be spent). */
bool budget_meter_exhausted(BudgetMeter *m);

/* Exact decimal USD ("2", "1.5", "0.000001"; at most 6 fraction digits, no sign, no
 * exponent) to micro-USD. -EINVAL on bad syntax, -ERANGE on overflow. */
int budget_parse_usd(const char *s, uint64_t *ret_micros);
/* micro-USD as a decimal string with 6 fraction digits ("1.500000"). buf >= 32 bytes. */
char *budget_format_usd(char buf[static 32], uint64_t micros);

/* Deadline on CLOCK_MONOTONIC. Not thread-safe for expire(); check() is read-only. */
typedef struct TimeWindow {
        usec_t start;    /* CLOCK_MONOTONIC at start */
        usec_t deadline; /* start + duration, saturated; USEC_INFINITY = no limit */
        bool expired;    /* set by time_window_expire(), permanent */
} TimeWindow;

/* Start a window of duration usec from now (USEC_INFINITY = unlimited). */
void time_window_start(TimeWindow *w, usec_t duration);
/* 0 while now < deadline and not expired; -ETIME otherwise (kind time_violation). */
int time_window_check(const TimeWindow *w);
/* usec until the deadline, 0 when past; USEC_INFINITY when unlimited. */
usec_t time_window_remaining(const TimeWindow *w);
void time_window_expire(TimeWindow *w);
