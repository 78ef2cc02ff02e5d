/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the node's approvals queue: hold, cap, digest binding, racing deciders,
 * expiry, withdrawal, waiters woken by a decision, the pod's end refusing what is pending,
 * and which operations may be approved for the rest of a pod. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "approval-queue.h"
#include "json-util.h"

#define POD "0b8f3b7e-1a2b-4c3d-8e9f-0123456789ab"
#define SHA "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static json_t *hold(ApprovalQueue *q, const char *argv0, int64_t now, int64_t ttl, int *ret_r) {
        _cleanup_json_ json_t *args = json_pack("{s:[ss]}", "argv", argv0, "push");
        json_t *j = NULL;
        *ret_r = approval_queue_hold(q, "run", args, "git_push", SHA, "git push needs approval", now, ttl, &j);
        return j;
}

static void test_hold_and_list(void **state) {
        _cleanup_(approval_queue_freep) ApprovalQueue *q = approval_queue_new(POD, 0);
        int r;
        _cleanup_json_ json_t *a = hold(q, "git", 1000, 0, &r);
        assert_int_equal(r, 0);
        assert_string_equal(json_string_value(json_object_get(a, "state")), "pending");
        assert_string_equal(json_string_value(json_object_get(a, "pod")), POD);
        assert_string_equal(json_string_value(json_object_get(a, "operation")), "git_push");
        assert_int_equal(strlen(json_string_value(json_object_get(a, "id"))), 32);
        assert_int_equal(strlen(json_string_value(json_object_get(a, "digest"))), 64);
        /* push is never offered for the rest of the pod */
        assert_int_equal(json_array_size(json_object_get(a, "scopes")), 1);
        _cleanup_json_ json_t *l = approval_queue_list(q, true, 1001);
        assert_int_equal(json_array_size(l), 1);
        assert_int_equal(approval_queue_count_pending(q, 1001), 1);
}

static void test_digest_binds_shown_bytes(void **state) {
        _cleanup_json_ json_t *a1 = json_pack("{s:[ss]}", "argv", "git", "push");
        _cleanup_json_ json_t *a2 = json_pack("{s:[ss]}", "argv", "git", "push\u202e");
        char d1[65], d2[65], d3[65], d4[65];
        approval_pending_digest(POD, "id", "run", a1, "git_push", SHA, "why", d1);
        approval_pending_digest(POD, "id", "run", a2, "git_push", SHA, "why", d2);
        approval_pending_digest(POD, "id", "run", a1, "git_push", SHA, "why not", d3);
        approval_pending_digest(POD, "id", "run", a1, "git_push", SHA, "why", d4);
        assert_string_not_equal(d1, d2);
        assert_string_not_equal(d1, d3);
        assert_string_equal(d1, d4);
}

static void test_cap(void **state) {
        _cleanup_(approval_queue_freep) ApprovalQueue *q = approval_queue_new(POD, 3);
        int r;
        for (int i = 0; i < 3; i++) {
                json_t *a = hold(q, "git", 1000, 0, &r);
                assert_int_equal(r, 0);
                json_decref(a);
        }
        json_t *a = hold(q, "git", 1000, 0, &r);
        assert_int_equal(r, -EBUSY);
        assert_null(a);
        /* expiry frees the slots */
        a = hold(q, "git", 1000 + APPROVAL_QUEUE_TTL_DEFAULT, 0, &r);
        assert_int_equal(r, 0);
        json_decref(a);
}

static void test_bad_input(void **state) {
        _cleanup_(approval_queue_freep) ApprovalQueue *q = approval_queue_new(POD, 0);
        _cleanup_json_ json_t *args = json_object();
        json_t *j = NULL;
        assert_int_equal(approval_queue_hold(q, "run", args, "not_an_op", NULL, "x", 1, 0, &j), -EINVAL);
        assert_int_equal(approval_queue_hold(q, "Run!", args, "git_push", NULL, "x", 1, 0, &j), -EINVAL);
        assert_int_equal(approval_queue_hold(q, "run", args, "git_push", "abc", "x", 1, 0, &j), -EINVAL);
        assert_int_equal(approval_queue_hold(q, "run", json_null(), "git_push", NULL, "x", 1, 0, &j), -EINVAL);
        assert_null(j);
}

static void test_decide_race_and_digest(void **state) {
        _cleanup_(approval_queue_freep) ApprovalQueue *q = approval_queue_new(POD, 0);
        int r;
        _cleanup_json_ json_t *a = hold(q, "git", 1000, 0, &r);
        const char *id = json_string_value(json_object_get(a, "id"));
        const char *digest = json_string_value(json_object_get(a, "digest"));
        char wrong[65];
        memcpy(wrong, digest, 65);
        wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
        ApprovalPendingInfo info, info2;

        assert_int_equal(approval_queue_begin_decision(q, id, wrong, 1001, &info), -EBADMSG);
        assert_int_equal(approval_queue_begin_decision(q, "nope", digest, 1001, &info), -ENOENT);
        assert_int_equal(approval_queue_begin_decision(q, id, digest, 1001, &info), 0);
        assert_string_equal(info.operation, "git_push");
        assert_string_equal(info.args_sha256, SHA);
        assert_false(info.scope_pod_offered);
        /* a second decider racing the first loses */
        assert_int_equal(approval_queue_begin_decision(q, id, digest, 1001, &info2), -EALREADY);
        /* an aborted claim can be taken again */
        approval_queue_abort_decision(q, id);
        assert_int_equal(approval_queue_begin_decision(q, id, digest, 1001, &info2), 0);
        _cleanup_json_ json_t *d = NULL;
        assert_int_equal(approval_queue_finish_decision(q, id, true, "once", "console", NULL, 1002, &d), 0);
        assert_string_equal(json_string_value(json_object_get(d, "state")), "approved");
        assert_string_equal(json_string_value(json_object_get(d, "scope")), "once");
        assert_int_equal(approval_queue_begin_decision(q, id, digest, 1003, &info), -EALREADY);
        assert_int_equal(approval_queue_withdraw(q, id, 1003), -EALREADY);
        assert_int_equal(approval_queue_count_pending(q, 1003), 0);
}

static void test_expiry(void **state) {
        _cleanup_(approval_queue_freep) ApprovalQueue *q = approval_queue_new(POD, 0);
        int r;
        _cleanup_json_ json_t *a = hold(q, "git", 1000, 10, &r);
        const char *id = json_string_value(json_object_get(a, "id"));
        const char *digest = json_string_value(json_object_get(a, "digest"));
        ApprovalPendingInfo info;
        assert_int_equal(approval_queue_begin_decision(q, id, digest, 1010, &info), -ETIME);
        _cleanup_json_ json_t *g = NULL;
        assert_int_equal(approval_queue_get(q, id, 1010, &g), 0);
        assert_string_equal(json_string_value(json_object_get(g, "state")), "expired");
}

static void test_withdraw(void **state) {
        _cleanup_(approval_queue_freep) ApprovalQueue *q = approval_queue_new(POD, 0);
        int r;
        _cleanup_json_ json_t *a = hold(q, "git", 1000, 0, &r);
        const char *id = json_string_value(json_object_get(a, "id"));
        const char *digest = json_string_value(json_object_get(a, "digest"));
        ApprovalPendingInfo info;
        assert_int_equal(approval_queue_withdraw(q, id, 1001), 0);
        assert_int_equal(approval_queue_begin_decision(q, id, digest, 1002, &info), -EALREADY);
}

typedef struct Waiter {
        ApprovalQueue *q;
        char id[33];
        int r;
        json_t *res;
} Waiter;

static void *waiter_thread(void *arg) {
        Waiter *w = arg;
        w->r = approval_queue_wait(w->q, w->id, 60 * USEC_PER_SEC, &w->res);
        return NULL;
}

static void test_wait_woken_by_decision(void **state) {
        _cleanup_(approval_queue_freep) ApprovalQueue *q = approval_queue_new(POD, 0);
        int r;
        int64_t now = (int64_t) time(NULL);
        _cleanup_json_ json_t *a = hold(q, "git", now, 0, &r);
        Waiter w = { .q = q };
        pthread_t t;
        memcpy(w.id, json_string_value(json_object_get(a, "id")), 33);
        assert_int_equal(pthread_create(&t, NULL, waiter_thread, &w), 0);
        ApprovalPendingInfo info;
        assert_int_equal(
                approval_queue_begin_decision(
                        q, w.id, json_string_value(json_object_get(a, "digest")), now, &info),
                0);
        assert_int_equal(
                approval_queue_finish_decision(q, w.id, false, NULL, "console", "not now", now, NULL), 0);
        pthread_join(t, NULL);
        assert_int_equal(w.r, 1);
        assert_string_equal(json_string_value(json_object_get(w.res, "state")), "refused");
        assert_string_equal(json_string_value(json_object_get(w.res, "decision_reason")), "not now");
        json_decref(w.res);

        /* a short wait on a pending record times out and says it is still pending */
        _cleanup_json_ json_t *b = hold(q, "git", now, 0, &r), *res = NULL;
        assert_int_equal(approval_queue_wait(q, json_string_value(json_object_get(b, "id")), 1000, &res), 0);
        assert_string_equal(json_string_value(json_object_get(res, "state")), "pending");
}

static void test_close_refuses_pending(void **state) {
        _cleanup_(approval_queue_freep) ApprovalQueue *q = approval_queue_new(POD, 0);
        int r;
        int64_t now = (int64_t) time(NULL);
        _cleanup_json_ json_t *a = hold(q, "git", now, 0, &r);
        Waiter w = { .q = q };
        pthread_t t;
        memcpy(w.id, json_string_value(json_object_get(a, "id")), 33);
        assert_int_equal(pthread_create(&t, NULL, waiter_thread, &w), 0);
        approval_queue_close(q, "pod ended", now);
        pthread_join(t, NULL);
        assert_int_equal(w.r, 1);
        assert_string_equal(json_string_value(json_object_get(w.res, "state")), "refused");
        json_decref(w.res);
        json_t *b = hold(q, "git", now, 0, &r);
        assert_int_equal(r, -ESHUTDOWN);
        assert_null(b);
}

static void test_scope_pod(void **state) {
        assert_true(approval_scope_pod_offered("web_fetch"));
        assert_true(approval_scope_pod_offered("read_files"));
        assert_false(approval_scope_pod_offered("git_push"));
        assert_false(approval_scope_pod_offered("create_pr"));
        assert_false(approval_scope_pod_offered("git_commit"));
        assert_false(approval_scope_pod_offered("run_bash"));
        assert_false(approval_scope_pod_offered("write_files"));
        assert_false(approval_scope_pod_offered("bogus"));
}

static void test_keeps_bounded_history(void **state) {
        _cleanup_(approval_queue_freep) ApprovalQueue *q = approval_queue_new(POD, 0);
        int r;
        for (unsigned i = 0; i < APPROVAL_QUEUE_KEEP_DECIDED + 20; i++) {
                _cleanup_json_ json_t *a = hold(q, "git", 1000, 0, &r);
                assert_int_equal(r, 0);
                assert_int_equal(
                        approval_queue_withdraw(q, json_string_value(json_object_get(a, "id")), 1000), 0);
        }
        _cleanup_json_ json_t *l = approval_queue_list(q, false, 1000);
        assert_int_equal(json_array_size(l), APPROVAL_QUEUE_KEEP_DECIDED);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hold_and_list),
                cmocka_unit_test(test_digest_binds_shown_bytes),
                cmocka_unit_test(test_cap),
                cmocka_unit_test(test_bad_input),
                cmocka_unit_test(test_decide_race_and_digest),
                cmocka_unit_test(test_expiry),
                cmocka_unit_test(test_withdraw),
                cmocka_unit_test(test_wait_woken_by_decision),
                cmocka_unit_test(test_close_refuses_pending),
                cmocka_unit_test(test_scope_pod),
                cmocka_unit_test(test_keeps_bounded_history),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
