/* SPDX-License-Identifier: Apache-2.0 */
/* Strict policy JSON: accepted shapes, canonical output and hash, and the error path of every
 * kind of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "alloc-util.h"
#include "policy.h"
#include "string-util.h"

#define CAPS                                                                                              \
        "\"capabilities\":{\"read_files\":\"always\",\"write_files\":\"low_risk\",\"edit_files\":\"low_"  \
        "risk\","                                                                                         \
        "\"run_bash\":\"low_risk\",\"glob_search\":\"always\",\"grep_search\":\"always\",\"web_search\":" \
        "\"never\",\"web_fetch\":\"low_risk\",\"git_commit\":\"never\",\"git_push\":\"never\",\"create_"  \
        "pr\":"                                                                                           \
        "\"never\"}"
#define REST                                                                                                \
        "\"paths\":{\"allowed\":[\"src/**\"],\"blocked\":[\"**/"                                            \
        ".env\"]},\"commands\":{\"allowed\":[\"cargo "                                                      \
        "test\"],\"blocked\":[\"sudo\"],\"allowed_rules\":[{\"program\":\"git\",\"args\":[{\"exact\":"      \
        "\"status\"},\"any_remaining\"]}],\"blocked_rules\":[{\"program\":\"bash\",\"args\":[{\"exact\":"   \
        "\"-c\"},"                                                                                          \
        "\"any\"]}]},\"budget\":{\"max_cost_usd\":\"2.5\",\"max_input_tokens\":10,\"max_output_tokens\":5}" \
        ","                                                                                                 \
        "\"time\":{\"max_duration_seconds\":600}"

static void test_good(void **state) {
        static const char text[] = "{\"name\":\"custom\",\"description\":\"d\"," CAPS "," REST ",\"obligatio"
                                   "ns\":{"
                                   "\"approvals"
                                   "\":[\"web_"
                                   "fetch\"]},"
                                   "\"trifecta_"
                                   "constraint\""
                                   ":false}";
        _cleanup_(policy_freep) Policy *p = NULL, *q = NULL;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(policy_from_json_text(text, strlen(text), &p, &err), 0);
        assert_string_equal(p->name, "custom");
        assert_true(p->trifecta); /* forced on (reference adversarial test 1) */
        /* trifecta: read + web_fetch + run_bash -> run_bash needs approval */
        assert_int_equal(p->obligations, OBLIGATION(OPERATION_WEB_FETCH) | OBLIGATION(OPERATION_RUN_BASH));
        assert_int_equal(p->max_usd_micros, 2500000);
        assert_int_equal(p->max_duration_usec, 600 * USEC_PER_SEC);
        assert_false(p->paths.unrestricted);
        assert_int_equal(p->commands.allowed_rules.n_rules, 1);

        _cleanup_free_ char *canon = policy_canonical_json(p);
        assert_non_null(strstr(canon, "\"max_usd_micros\":2500000"));
        assert_null(
                strstr(canon,
                       " "
                       "\"")); /* compact */
        assert_int_equal(policy_from_json_text(canon, strlen(canon), &q, &err), 0);
        assert_true(policy_equal(p, q));
        char h1[65], h2[65];
        assert_int_equal(policy_sha256(p, h1), 0);
        assert_int_equal(policy_sha256(q, h2), 0);
        assert_string_equal(h1, h2);
        assert_int_equal(strlen(h1), 64);
        /* any change changes the hash */
        q->max_usd_micros++;
        assert_int_equal(policy_sha256(q, h2), 0);
        assert_string_not_equal(h1, h2);

        /* every profile round-trips */
        for (const char *const *n = policy_profile_names(); *n; n++) {
                _cleanup_(policy_freep) Policy *a = NULL, *b = NULL;
                assert_int_equal(policy_profile_new(*n, &a), 0);
                _cleanup_free_ char *t = policy_canonical_json(a), *e = NULL;
                assert_int_equal(policy_from_json_text(t, strlen(t), &b, &e), 0);
                assert_true(policy_equal(a, b));
                assert_string_equal(b->name, *n);
        }
}

static void expect_error(const char *text, const char *want) {
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_free_ char *err = NULL;
        int r = policy_from_json_text(text, strlen(text), &p, &err);
        if (r >= 0)
                fail_msg("accepted: %s", text);
        assert_null(p);
        assert_non_null(err);
        if (!strstr(err, want))
                fail_msg("error '%s' does not contain '%s' (input %s)", err, want, text);
}

static void test_errors(void **state) {
        expect_error("[]", "$: expected an object");
        expect_error("{" CAPS "," REST ",\"bogus\":1}", "$: unknown key \"bogus\"");
        expect_error("{" REST "}", "$: missing key \"capabilities\"");
        expect_error("{" CAPS "}", "$: missing key \"paths\"");
        expect_error(
                "{\"capabilities\":{\"read_files\":\"always\"}," REST "}",
                "$.capabilities: missing key \"write_files\"");
        expect_error(
                "{\"capabilities\":{\"read_files\":\"sometimes\"}," REST "}",
                "$.capabilities.read_files: expected \"never\", \"low_risk\" or \"always\"");
        expect_error("{\"capabilities\":{\"ReadFiles\":\"always\"}," REST "}", "$.capabilities: unknown key");
        expect_error(
                "{" CAPS ",\"paths\":{\"blocked\":[\"a\",\"b\",3]},\"commands\":{},\"budget\":{},\"time\":{}"
                "}",
                "$.paths.blocked[2]: expected a string");
        expect_error(
                "{" CAPS ",\"paths\":{\"unrestricted\":true,\"allowed\":[\"x\"]},\"commands\":{},\"budget\":"
                "{}"
                ",\"time\":{}}",
                "$.paths.allowed: must be empty when \"unrestricted\" is true");
        expect_error(
                "{" CAPS ",\"paths\":{\"unrestricted\":1},\"commands\":{},\"budget\":{},\"time\":{}}",
                "$.paths.unrestricted: expected true or false");
        expect_error(
                "{" CAPS ",\"paths\":{},\"commands\":{\"allowed\":[\"echo 'x\"]},\"budget\":{},\"time\":{}}",
                "$.commands.allowed[0]: not a valid command");
        expect_error(
                "{" CAPS ",\"paths\":{},\"commands\":{\"allowed_rules\":[{\"program\":\"/bin/sh\"}]},"
                "\"budget\":{},\"time\":{}}",
                "$.commands.allowed_rules[0].program: expected a program name without '/'");
        expect_error(
                "{" CAPS ",\"paths\":{},\"commands\":{\"blocked_rules\":[{\"program\":\"sh\",\"args\":["
                "\"any\",\"sometimes\"]}]},\"budget\":{},\"time\":{}}",
                "$.commands.blocked_rules[0].args[1]: expected \"any\"");
        expect_error(
                "{" CAPS ",\"paths\":{},\"commands\":{\"blocked_rules\":[{\"program\":\"sh\",\"args\":["
                "{\"exact\":1}]}]},\"budget\":{},\"time\":{}}",
                "$.commands.blocked_rules[0].args[0].exact: expected a string");
        expect_error(
                "{" CAPS ",\"paths\":{},\"commands\":{},\"budget\":{\"max_usd_micros\":-1},\"time\":{}}",
                "$.budget.max_usd_micros: integer out of range");
        expect_error(
                "{" CAPS ",\"paths\":{},\"commands\":{},\"budget\":{\"max_cost_usd\":\"1e9\"},\"time\":{}}",
                "$.budget.max_cost_usd: expected a decimal string");
        expect_error(
                "{" CAPS ",\"paths\":{},\"commands\":{},\"budget\":{\"max_usd_micros\":1,\"max_cost_usd\":"
                "\"1\"},\"time\":{}}",
                "$.budget: give either");
        expect_error(
                "{" CAPS ",\"paths\":{},\"commands\":{},\"budget\":{\"max_usd_micros\":1,\"max_input_"
                "tokens\":1,"
                "\"max_output_tokens\":1.5},\"time\":{}}",
                "$.budget.max_output_tokens: expected a non-negative integer");
        expect_error(
                "{" CAPS ",\"paths\":{},\"commands\":{},\"budget\":{\"max_usd_micros\":1,\"max_input_"
                "tokens\":1,"
                "\"max_output_tokens\":1},\"time\":{\"max_duration_seconds\":\"1h\"}}",
                "$.time.max_duration_seconds: expected a non-negative integer");
        expect_error(
                "{" CAPS "," REST ",\"obligations\":{\"approvals\":[\"push\"]}}",
                "$.obligations.approvals[0]: unknown operation");
        expect_error("{" CAPS "," REST ",\"obligations\":[]}", "$.obligations: expected an object");
        expect_error(
                "{" CAPS "," REST ",\"trifecta_constraint\":\"no\"}", "$.trifecta_constraint: expected true");
        expect_error("{" CAPS "," REST ",\"name\":\"a\",\"name\":\"b\"}", "duplicate");
        expect_error("{\"description\":\"a\\u0000b\"," CAPS "," REST "}", "");
        expect_error("not json", "");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_good),
                cmocka_unit_test(test_errors),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
