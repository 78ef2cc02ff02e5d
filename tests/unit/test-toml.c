/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the TOML subset parser (src/lib/spec/toml.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "alloc-util.h"
#include "json-util.h"
#include "toml.h"

static json_t *ok(const char *text) {
        json_t *j = NULL;
        char *err = NULL;
        int r = toml_parse(text, strlen(text), "t.toml", &j, NULL, &err);
        if (r < 0)
                fail_msg("unexpected error: %s", err);
        return j;
}

static void expect_err(const char *text, const char *part) {
        json_t *j = NULL;
        char *err = NULL;
        int r = toml_parse(text, strlen(text), "t.toml", &j, NULL, &err);
        if (r >= 0)
                fail_msg("accepted: %s", text);
        assert_non_null(err);
        if (!strstr(err, part))
                fail_msg("error '%s' lacks '%s'", err, part);
        free(err);
}

static void test_basic(void **state) {
        _cleanup_json_ json_t *j = ok("# comment\n"
                                      "top = \"x\" # trailing\n"
                                      "[vm]\n"
                                      "name = 'lit\\eral'\n"
                                      "cpus = 4\n"
                                      "big = 1_000_000\n"
                                      "neg = -5\n"
                                      "ratio = 0.5\n"
                                      "exp = 1e3\n"
                                      "on = true\n"
                                      "off = false\n"
                                      "list = [1, 2,\n  3, # c\n]\n"
                                      "strs = [\"a\\tb\", \"\\u00e9\\U0001F600\"]\n"
                                      "empty = []\n"
                                      "dotted.key = \"d\"\n"
                                      "\"quoted key\" = 1\n"
                                      "inl = { a = 1, b = \"two\" }\n"
                                      "[a.b.c]\n"
                                      "x = 1\n");
        _cleanup_free_ char *s = json_dump_canonical(j);
        assert_string_equal(
                s,
                "{\"a\":{\"b\":{\"c\":{\"x\":1}}},\"top\":\"x\",\"vm\":{\"big\":1000000,\"cpus\":4,"
                "\"dotted\":{\"key\":\"d\"},\"empty\":[],\"exp\":1000.0,\"inl\":{\"a\":1,\"b\":\"two\"},"
                "\"list\":[1,2,3],\"name\":\"lit\\\\eral\",\"neg\":-5,\"off\":false,\"on\":true,"
                "\"quoted key\":1,\"ratio\":0.5,\"strs\":[\"a\\tb\",\"é😀\"]}}");
}

static void test_positions(void **state) {
        json_t *j = NULL;
        SpecPosTable pos = {};
        const char *t = "[vm]\n  cpus = 4\nlist = [\n 1,\n 2]\n";
        assert_int_equal(toml_parse(t, strlen(t), NULL, &j, &pos, NULL), 0);
        unsigned l, c;
        assert_true(spec_pos_find(&pos, "vm.cpus", &l, &c));
        assert_int_equal(l, 2);
        assert_int_equal(c, 3);
        assert_true(spec_pos_find(&pos, "vm.list[1]", &l, &c));
        assert_int_equal(l, 5);
        spec_pos_done(&pos);
        json_decref(j);
}

static void test_errors(void **state) {
        expect_err("a = 1\na = 2\n", "t.toml:2:1: duplicate key 'a'");
        expect_err("[x]\n[x]\n", "t.toml:2:1: table [x] is defined twice");
        expect_err("a = \"\"\"multi\"\"\"\n", "unsupported TOML feature: multi-line strings");
        expect_err("[[t]]\n", "unsupported TOML feature: arrays of tables");
        expect_err("d = 1979-05-27\n", "unsupported TOML feature: dates and times");
        expect_err("t = 07:32:00\n", "unsupported TOML feature: dates and times");
        expect_err("h = 0xff\n", "unsupported TOML feature: hexadecimal");
        expect_err("f = inf\n", "unsupported TOML feature: inf and nan");
        expect_err("s = \"abc\n", "1:9: unterminated string");
        expect_err("s = \"\\q\"\n", "invalid escape");
        expect_err("s = \"\\u0000\"\n", "not a valid scalar value");
        expect_err("n = 01\n", "leading zeros");
        expect_err("n = 1__0\n", "'_' must sit between digits");
        expect_err("n = 99999999999999999999\n", "out of range");
        expect_err("n = .5\n", "invalid");
        expect_err("n = 5.\n", "digits needed on both sides");
        expect_err("x = bare\n", "strings need quotes");
        expect_err("x = 1 y = 2\n", "expected the end of the line");
        expect_err("x =\n", "expected a value");
        expect_err("= 1\n", "expected a key");
        expect_err("a = 1\na.b = 2\n", "already defined as a value");
        expect_err("a.b = 1\n[a]\n", "defined twice");
        expect_err("a = {x = 1}\n[a]\n", "already defined as a value");
        expect_err("a = [1,\n", "unterminated array");
        expect_err("x = 1\x01\n", "control character");
        expect_err("x = \"a\xff\"\n", "not valid UTF-8");
        /* nesting cap */
        char deep[200];
        memset(deep, '[', 100);
        strcpy(deep + 100, "\n");
        char *d = xasprintf("a = %s", deep);
        expect_err(d, "nested deeper");
        free(d);
}

static void test_crlf_and_bom(void **state) {
        _cleanup_json_ json_t *j = ok("\xEF\xBB\xBF"
                                      "a = 1\r\nb = \"x\"\r\n");
        assert_int_equal(json_integer_value(json_object_get(j, "a")), 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_basic),
                cmocka_unit_test(test_positions),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_crlf_and_bom),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
