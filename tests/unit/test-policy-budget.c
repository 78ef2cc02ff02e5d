/* SPDX-License-Identifier: Apache-2.0 */
/* Budget meter: reserve/settle/release, exhaustion, decimal parsing, concurrency; time window. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "budget.h"

static void test_basic(void **state) {
        _cleanup_(budget_meter_freep) BudgetMeter *m = NULL;
        BudgetReservation r;
        BudgetSnapshot s;
        assert_int_equal(budget_meter_new(10000000, 100, 10, &m), 0);
        assert_int_equal(budget_meter_charge(m, 3000000, 0, 0), 0);
        assert_int_equal(budget_meter_charge(m, 7000000, 0, 0), 0); /* lands exactly on max */
        assert_true(budget_meter_exhausted(m));
        assert_int_equal(budget_meter_charge(m, 1, 0, 0), -EDQUOT);
        assert_int_equal(budget_meter_reserve(m, 0, 0, 0, &r), -EDQUOT); /* exhausted: nothing at all */

        budget_meter_free(TAKE_PTR(m));
        assert_int_equal(budget_meter_new(5000000, 100, 10, &m), 0);
        assert_int_equal(budget_meter_charge(m, 5000000 + 1, 0, 0), -EDQUOT);
        budget_meter_snapshot(m, &s);
        assert_int_equal(s.consumed_usd_micros, 0); /* refused charge changes nothing */
        assert_int_equal(budget_meter_charge(m, 0, 101, 0), -EDQUOT);
        assert_int_equal(budget_meter_charge(m, 0, 0, 11), -EDQUOT);

        /* reserve -> release gives everything back */
        assert_int_equal(budget_meter_reserve(m, 4000000, 50, 5, &r), 0);
        assert_int_equal(budget_meter_charge(m, 2000000, 0, 0), -EDQUOT); /* reserved counts */
        assert_int_equal(budget_meter_release(m, &r), 0);
        assert_int_equal(budget_meter_release(m, &r), -EINVAL); /* only once */
        assert_int_equal(budget_meter_charge(m, 2000000, 0, 0), 0);

        /* reserve -> settle with less */
        assert_int_equal(budget_meter_reserve(m, 2000000, 10, 1, &r), 0);
        assert_int_equal(budget_meter_settle(m, &r, 500000, 7, 1), 0);
        budget_meter_snapshot(m, &s);
        assert_int_equal(s.consumed_usd_micros, 2500000);
        assert_int_equal(s.reserved_usd_micros, 0);
        assert_int_equal(s.consumed_input_tokens, 7);
        assert_int_equal(budget_meter_settle(m, &r, 1, 0, 0), -EINVAL);

        /* settle above the reservation and above the limit: clamped, reported */
        assert_int_equal(budget_meter_reserve(m, 1000000, 0, 0, &r), 0);
        assert_int_equal(budget_meter_settle(m, &r, 9000000, 0, 0), -EDQUOT);
        budget_meter_snapshot(m, &s);
        assert_int_equal(s.consumed_usd_micros, s.max_usd_micros);
        assert_true(budget_meter_exhausted(m));
}

static void test_parse(void **state) {
        uint64_t v;
        assert_int_equal(budget_parse_usd("2", &v), 0);
        assert_int_equal(v, 2000000);
        assert_int_equal(budget_parse_usd("1.5", &v), 0);
        assert_int_equal(v, 1500000);
        assert_int_equal(budget_parse_usd("0.000001", &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(budget_parse_usd("4.35", &v), 0);
        assert_int_equal(v, 4350000); /* no float truncation (reference lost 1 micro-USD) */
        assert_int_equal(budget_parse_usd("0.0000001", &v), -EINVAL);
        assert_int_equal(budget_parse_usd("-1", &v), -EINVAL);
        assert_int_equal(budget_parse_usd("1e3", &v), -EINVAL);
        assert_int_equal(budget_parse_usd("NaN", &v), -EINVAL);
        assert_int_equal(budget_parse_usd("", &v), -EINVAL);
        assert_int_equal(budget_parse_usd("1.", &v), -EINVAL);
        assert_int_equal(budget_parse_usd(".5", &v), -EINVAL);
        assert_int_equal(budget_parse_usd("99999999999999999999", &v), -ERANGE);
        char buf[32];
        assert_string_equal(budget_format_usd(buf, 1500000), "1.500000");
}

#define N_THREADS 8
#define N_TRIES 2000

static void *worker(void *arg) {
        BudgetMeter *m = arg;
        uintptr_t ok = 0;
        for (int i = 0; i < N_TRIES; i++) {
                BudgetReservation r;
                if (budget_meter_reserve(m, 7, 1, 0, &r) < 0)
                        continue;
                if (i % 3 == 0)
                        (void) budget_meter_release(m, &r);
                else {
                        assert_int_equal(budget_meter_settle(m, &r, 7, 1, 0), 0);
                        ok++;
                }
        }
        return (void *) ok;
}

static void test_threads(void **state) {
        _cleanup_(budget_meter_freep) BudgetMeter *m = NULL;
        pthread_t t[N_THREADS];
        uintptr_t total = 0;
        BudgetSnapshot s;
        /* 7 micro-USD per success, 10000 limit: at most 1428 successes of 8*2000*2/3 tries. */
        assert_int_equal(budget_meter_new(10000, 1000000, 1000000, &m), 0);
        for (int i = 0; i < N_THREADS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, worker, m), 0);
        for (int i = 0; i < N_THREADS; i++) {
                void *ret;
                assert_int_equal(pthread_join(t[i], &ret), 0);
                total += (uintptr_t) ret;
        }
        budget_meter_snapshot(m, &s);
        assert_true(s.consumed_usd_micros <= s.max_usd_micros);
        assert_int_equal(s.consumed_usd_micros, total * 7);
        assert_int_equal(s.consumed_input_tokens, total);
        assert_int_equal(s.reserved_usd_micros, 0);
        assert_int_equal(total, 10000 / 7); /* the budget was fully usable, never exceeded */
}

static void test_time_window(void **state) {
        TimeWindow w;
        /* Open and closed on separate windows: a loaded machine may pause this thread for
         * longer than a short window between its start and the first check. */
        time_window_start(&w, 600 * USEC_PER_SEC);
        assert_int_equal(time_window_check(&w), 0);
        assert_true(time_window_remaining(&w) <= 600 * USEC_PER_SEC);
        time_window_start(&w, USEC_PER_MSEC);
        usleep(100 * 1000);
        assert_int_equal(time_window_check(&w), -ETIME);
        assert_int_equal(time_window_remaining(&w), 0);

        time_window_start(&w, USEC_INFINITY);
        assert_int_equal(time_window_check(&w), 0);
        assert_int_equal(time_window_remaining(&w), USEC_INFINITY);
        time_window_expire(&w);
        assert_int_equal(time_window_check(&w), -ETIME);

        time_window_start(&w, USEC_INFINITY - 1); /* saturates, no wrap */
        assert_int_equal(time_window_check(&w), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_basic),
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_threads),
                cmocka_unit_test(test_time_window),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
