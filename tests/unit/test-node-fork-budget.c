/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the budget arithmetic of fork (src/node/fork-budget.c): what a holder (a
 * running parent, or the escrow an ended parent left) can hand out, the equal shares of a
 * fork, conservation across any sequence of forks from one escrow, and which snapshots a cap
 * removes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fork-budget.h"

static void test_remainder(void **state) {
        /* Held reservations count as spent; nothing underflows. */
        ForkBudget r = fork_budget_remainder(1000, 300, 5000, NULL, 50, 20, 10, 15);
        assert_int_equal(r.usd_micros, 700);
        assert_int_equal(r.input_tokens, 30);
        assert_int_equal(r.output_tokens, 0);
        r = fork_budget_remainder(100, 300, 5000, NULL, 0, 0, 0, 0);
        assert_int_equal(r.usd_micros, 0);
}

/* The proxy's report is the guest's word: a guest that claims more than its policy held, or
 * an untouched meter after its children were charged, hands out no more than the node knows
 * is left. */
static void test_remainder_bounded_by_node(void **state) {
        ForkBudget r = fork_budget_remainder(UINT64_MAX / 2, 0, 1000, NULL, 50, 0, 10, 0);
        assert_int_equal(r.usd_micros, 1000);
        ForkBudget given = { .usd_micros = 600, .input_tokens = 30, .output_tokens = 10 };
        r = fork_budget_remainder(1000, 100, 1000, &given, 50, 0, 10, 0);
        assert_int_equal(r.usd_micros, 300);
        assert_int_equal(r.input_tokens, 20);
        assert_int_equal(r.output_tokens, 0);
        /* An honest report below the bound is kept. */
        r = fork_budget_remainder(200, 50, 1000, &given, 50, 40, 10, 10);
        assert_int_equal(r.usd_micros, 150);
        assert_int_equal(r.input_tokens, 10);
        /* Everything handed out: nothing left, whatever the guest says. */
        given.usd_micros = 5000;
        r = fork_budget_remainder(1000, 0, 1000, &given, 0, 0, 0, 0);
        assert_int_equal(r.usd_micros, 0);
}

static void test_add_saturates(void **state) {
        ForkBudget to = { .usd_micros = 5, .input_tokens = UINT64_MAX - 1, .output_tokens = 0 };
        ForkBudget add = { .usd_micros = 7, .input_tokens = 5, .output_tokens = 3 };
        fork_budget_add(&to, &add);
        assert_int_equal(to.usd_micros, 12);
        assert_true(to.input_tokens == UINT64_MAX);
        assert_int_equal(to.output_tokens, 3);
}

static void test_split(void **state) {
        ForkBudget have = { .usd_micros = 1000, .input_tokens = 10, .output_tokens = 7 }, share, keeps;
        assert_int_equal(fork_budget_split(&have, 2, &share, &keeps), 0);
        assert_int_equal(share.usd_micros, 333);
        assert_int_equal(keeps.usd_micros, 334);
        assert_int_equal(share.input_tokens, 3);
        assert_int_equal(keeps.input_tokens, 4);
        assert_int_equal(share.output_tokens, 2);
        assert_int_equal(keeps.output_tokens, 3);
        assert_true(keeps.usd_micros >= share.usd_micros);

        /* Nothing to hand out, or no child: refused, nothing written. */
        ForkBudget poor = { .usd_micros = 2 }, untouched = { .usd_micros = 99 };
        assert_int_equal(fork_budget_split(&poor, 2, &untouched, &keeps), -EDQUOT);
        assert_int_equal(untouched.usd_micros, 99);
        assert_int_equal(fork_budget_split(&have, 0, &share, &keeps), -EINVAL);

        /* The largest amounts do not overflow. */
        ForkBudget big = { .usd_micros = UINT64_MAX, .input_tokens = UINT64_MAX, .output_tokens = UINT64_MAX };
        assert_int_equal(fork_budget_split(&big, 16, &share, &keeps), 0);
        assert_true(share.usd_micros * 16 + keeps.usd_micros == UINT64_MAX);
}

/* An ended parent's escrow: forks of random sizes take shares until it cannot give one. The
 * children together plus what stays never exceed what the parent left, and every child gets at
 * most what the escrow held when it forked. */
static void test_escrow_conserved(void **state) {
        srand(17);
        for (int round = 0; round < 2000; round++) {
                uint64_t left = (uint64_t) rand() % 5000000, resv = (uint64_t) rand() % 1000000;
                ForkBudget escrow = fork_budget_remainder(
                        left, resv, 5000000, NULL, 100000, (uint64_t) rand() % 200000, 5000, 0);
                ForkBudget start = escrow;
                uint64_t given_usd = 0, given_in = 0, given_out = 0;
                for (int fork = 0; fork < 50; fork++) {
                        unsigned count = 1 + (unsigned) rand() % 16;
                        ForkBudget share, keeps;
                        int r = fork_budget_split(&escrow, count, &share, &keeps);
                        if (r < 0) {
                                assert_int_equal(r, -EDQUOT);
                                assert_true(escrow.usd_micros < count + 1);
                                continue;
                        }
                        assert_true(share.usd_micros <= escrow.usd_micros);
                        given_usd += share.usd_micros * count;
                        given_in += share.input_tokens * count;
                        given_out += share.output_tokens * count;
                        escrow = keeps;
                        assert_true(escrow.usd_micros >= share.usd_micros);
                }
                assert_true(given_usd + escrow.usd_micros == start.usd_micros);
                assert_true(given_in + escrow.input_tokens == start.input_tokens);
                assert_true(given_out + escrow.output_tokens == start.output_tokens);
                assert_true(start.usd_micros <= left);
        }
}

static void test_cap(void **state) {
        SnapshotCapEntry e[] = {
                { .created_usec = 10, .bytes = 100, .parent_ended = false }, /* oldest, parent runs */
                { .created_usec = 20, .bytes = 100, .parent_ended = true },
                { .created_usec = 30, .bytes = 100, .parent_ended = true, .pinned = true }, /* a child restores */
                { .created_usec = 40, .bytes = 100, .parent_ended = true },
                { .created_usec = 50, .bytes = 100, .parent_ended = false, .pinned = true }, /* just taken */
        };
        bool rm[5];
        /* Within the caps (or none): nothing goes. */
        assert_int_equal(snapshot_cap_choose(e, 5, 5, 500, rm), 0);
        for (size_t i = 0; i < 5; i++)
                assert_false(rm[i]);
        assert_int_equal(snapshot_cap_choose(e, 5, 0, 0, rm), 0);
        /* One too many: the oldest of an ended parent, not the older one of a running parent. */
        assert_int_equal(snapshot_cap_choose(e, 5, 4, 0, rm), 0);
        assert_true(rm[1] && !rm[0] && !rm[2] && !rm[3] && !rm[4]);
        /* Bytes: three must go; the ended-parent ones (not pinned) first, then the oldest running. */
        assert_int_equal(snapshot_cap_choose(e, 5, 0, 200, rm), 0);
        assert_true(rm[1] && rm[3] && rm[0] && !rm[2] && !rm[4]);
        /* Cannot be met without a pinned one. */
        assert_int_equal(snapshot_cap_choose(e, 5, 1, 0, rm), -ENOSPC);
        assert_true(rm[0] && rm[1] && rm[3] && !rm[2] && !rm[4]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_remainder),        cmocka_unit_test(test_remainder_bounded_by_node),
                cmocka_unit_test(test_add_saturates),    cmocka_unit_test(test_split),
                cmocka_unit_test(test_escrow_conserved), cmocka_unit_test(test_cap),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
