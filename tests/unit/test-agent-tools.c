/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the tool table (src/agent/tools.c) and pricing (src/agent/pricing.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "json-util.h"
#include "pricing.h"
#include "string-util.h"
#include "tools.h"

static void test_tools_for_ops(void **state) {
        char *ops[] = { "run", "read", "approve", "charge", "export", "bogus", "grep", NULL };
        _cleanup_json_ json_t *t = agent_tools_for_ops(ops);
        /* Table order; host-only and unknown operations never offered. */
        assert_int_equal(json_array_size(t), 3);
        assert_string_equal(json_string_value(json_object_get(json_array_get(t, 0), "name")), "read");
        assert_string_equal(json_string_value(json_object_get(json_array_get(t, 1), "name")), "grep");
        assert_string_equal(json_string_value(json_object_get(json_array_get(t, 2), "name")), "run");
        json_t *schema = json_object_get(json_array_get(t, 0), "input_schema");
        assert_string_equal(json_string_value(json_object_get(schema, "type")), "object");
        assert_true(json_is_false(json_object_get(schema, "additionalProperties")));

        _cleanup_json_ json_t *none = agent_tools_for_ops(NULL);
        assert_int_equal(json_array_size(none), 0);
        assert_null(agent_tool_find("approve"));
        assert_null(agent_tool_find("charge"));

        /* Every schema in the table is valid JSON with an object type and descriptions. */
        size_t n;
        const AgentToolDef *defs = agent_tool_table(&n);
        for (size_t i = 0; i < n; i++) {
                _cleanup_json_ json_t *s = json_loads(defs[i].schema, JSON_REJECT_DUPLICATES, NULL);
                assert_non_null(s);
                assert_string_equal(json_string_value(json_object_get(s, "type")), "object");
                assert_true(strlen(defs[i].description) > 10);
        }
}

static void check(const char *tool, const char *args, int expect, const char *needle) {
        _cleanup_json_ json_t *a = json_loads(args, 0, NULL);
        _cleanup_free_ char *err = NULL;
        assert_non_null(a);
        assert_int_equal(agent_tool_check_args(agent_tool_find(tool), a, &err), expect);
        if (needle)
                assert_non_null(strstr(err, needle));
}

static void test_check_args(void **state) {
        check("read", "{\"path\":\"a\"}", 0, NULL);
        check("read", "{\"path\":\"a\",\"offset\":3,\"length\":10}", 0, NULL);
        check("read", "{}", -EINVAL, "missing required argument \"path\"");
        check("read", "{\"path\":1}", -EINVAL, "must be of type string");
        check("read", "{\"path\":\"a\",\"offset\":-1}", -EINVAL, ">= 0");
        check("read", "{\"path\":\"a\",\"evil\":true}", -EINVAL, "unknown argument");
        check("run", "{\"argv\":[\"ls\",\"-l\"]}", 0, NULL);
        check("run", "{\"argv\":[\"ls\",1]}", -EINVAL, "\"argv\"[1]");
        check("edit", "{\"path\":\"a\",\"old\":\"x\"}", -EINVAL, "\"new\"");
        check("status", "{}", 0, NULL);
        check("read", "[1]", -EINVAL, "JSON object");
}

static void test_pricing(void **state) {
        uint64_t v;
        char buf[32];
        assert_int_equal(pricing_parse_usd("3", &v), 0);
        assert_int_equal(v, 3000000);
        assert_int_equal(pricing_parse_usd("0.15", &v), 0);
        assert_int_equal(v, 150000);
        assert_int_equal(pricing_parse_usd(".5", &v), 0);
        assert_int_equal(v, 500000);
        assert_int_equal(pricing_parse_usd("0.000001", &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(pricing_parse_usd("0.0000001", &v), -EINVAL);
        assert_int_equal(pricing_parse_usd("1.", &v), -EINVAL);
        assert_int_equal(pricing_parse_usd("-1", &v), -EINVAL);
        assert_int_equal(pricing_parse_usd("1e3", &v), -EINVAL);
        assert_int_equal(pricing_parse_usd("", &v), -EINVAL);
        assert_int_equal(pricing_parse_usd("99999999999999", &v), -ERANGE);

        /* 1000 input tokens at $3/M + 500 output at $15/M = 0.003 + 0.0075 = $0.0105 */
        assert_int_equal(pricing_cost_micros(1000, 500, 3000000, 15000000), 10500);
        /* Rounds up: 1 token at $0.15/M is 0.15 micro-dollars -> 1. */
        assert_int_equal(pricing_cost_micros(1, 0, 150000, 0), 1);
        assert_int_equal(pricing_cost_micros(0, 0, 150000, 99), 0);
        assert_true(pricing_cost_micros(UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX) == UINT64_MAX);

        assert_string_equal(pricing_format_usd(buf, 420000), "$0.42");
        assert_string_equal(pricing_format_usd(buf, 150), "$0.00015");
        assert_string_equal(pricing_format_usd(buf, 5000000), "$5.00");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_tools_for_ops),
                cmocka_unit_test(test_check_args),
                cmocka_unit_test(test_pricing),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
