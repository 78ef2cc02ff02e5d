/* SPDX-License-Identifier: Apache-2.0 */
/* The shown arguments of audit records: what each operation shows, and the redaction of
 * everything that looks like a secret (each rule of docs/audit.md "Arguments in records"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "alloc-util.h"
#include "audit-detail.h"
#include "json-util.h"
#include "string-util.h"

#define R AUDIT_DETAIL_REDACTED

/* detail for (op, args JSON) as compact sorted JSON, or "null". */
static char *detail(const char *op, const char *args_json) {
        _cleanup_json_ json_t *a = json_loads(args_json, 0, NULL);
        assert_non_null(a);
        _cleanup_json_ json_t *d = audit_detail_for_call(op, a);
        return d ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : xstrdup("null");
}

static void check(const char *op, const char *args, const char *want) {
        _cleanup_free_ char *got = detail(op, args);
        if (!streq(got, want))
                fail_msg("%s %s:\n  got  %s\n  want %s", op, args, got, want);
}

static void test_shown_per_operation(void **state) {
        check("run",
              "{\"argv\":[\"git\",\"status\",\"--short\"],\"cwd\":\"src\"}",
              "{\"argv\":[\"git\",\"status\",\"--short\"],\"cwd\":\"src\"}");
        check("read", "{\"path\":\"README.md\",\"offset\":10}", "{\"path\":\"README.md\"}");
        /* Written contents are never shown, only their size. */
        check("write", "{\"path\":\"a.txt\",\"content\":\"hunter2\\n\"}", "{\"bytes\":8,\"path\":\"a.txt\"}");
        check("edit", "{\"path\":\"a.c\",\"old\":\"x\",\"new\":\"y\"}", "{\"path\":\"a.c\"}");
        check("grep", "{\"path\":\".\",\"pattern\":\"TODO\"}", "{\"path\":\".\",\"pattern\":\"TODO\"}");
        check("web_fetch", "{\"url\":\"https://example.com/a?q=1\"}", "{\"url\":\"https://example.com/a?q=1\"}");
        check("status", "{}", "null");
        check("charge", "{\"usd_micros\":5}", "null");
        check("no_such_op", "{\"path\":\"x\"}", "null");
}

static void test_environment_values_never_shown(void **state) {
        check("run",
              "{\"argv\":[\"make\"],\"env\":{\"CC\":\"gcc\",\"GITHUB_TOKEN\":\"ghp_abcdefghijklmnop\"}}",
              "{\"argv\":[\"make\"],\"env\":[\"CC\",\"GITHUB_TOKEN\"]}");
}

static void test_secret_arguments(void **state) {
        /* A flag that names a secret hides the next argument; an assignment hides its value. */
        check("run",
              "{\"argv\":[\"mysql\",\"--password\",\"hunter2\",\"-u\",\"root\"]}",
              "{\"argv\":[\"mysql\",\"--password\",\"" R "\",\"-u\",\"root\"]}");
        check("run",
              "{\"argv\":[\"tool\",\"--api-key=abc\",\"API_TOKEN=xyz\",\"--keep-going\",\"monkey=1\"]}",
              "{\"argv\":[\"tool\",\"--api-key=" R "\",\"API_TOKEN=" R "\",\"--keep-going\",\"monkey=1\"]}");
        /* Headers given as one argument, credentials in URLs. */
        check("run",
              "{\"argv\":[\"curl\",\"-H\",\"Authorization: Bearer "
              "abc\",\"https://u:pw@example.com/x?token=t&page=2\"]}",
              "{\"argv\":[\"curl\",\"-H\",\"Authorization: " R "\",\"https://" R "@example.com/x?token=" R
              "&page=2\"]}");
        /* Well-known token formats and long random-looking strings, wherever they appear. */
        check("run",
              "{\"argv\":[\"echo\",\"sk-proj-0123456789abcdef\",\"AKIAIOSFODNN7EXAMPLE\"]}",
              "{\"argv\":[\"echo\",\"" R "\",\"" R "\"]}");
        check("run",
              "{\"argv\":[\"echo\",\"aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3f\"]}",
              "{\"argv\":[\"echo\",\"" R "\"]}");
        /* ... but not paths, hex digests or words. */
        check("run",
              "{\"argv\":[\"git\",\"show\",\"0123456789abcdef0123456789abcdef01234567\",\"src/lib/util/"
              "string-util.c\"]}",
              "{\"argv\":[\"git\",\"show\",\"0123456789abcdef0123456789abcdef01234567\",\"src/lib/util/"
              "string-util.c\"]}");
        check("web_fetch",
              "{\"url\":\"https://api.example.com/v1?api_key=123&q=x#frag\"}",
              "{\"url\":\"https://api.example.com/v1?api_key=" R "&q=x#frag\"}");
}

static void test_caps(void **state) {
        _cleanup_json_ json_t *argv = json_array();
        for (int i = 0; i < 100; i++)
                json_array_append_new(argv, json_string("x"));
        _cleanup_free_ char *big = malloc(1000);
        memset(big, 'a', 999);
        big[999] = 0;
        json_array_set_new(argv, 1, json_string(big));
        _cleanup_json_ json_t *args = json_pack("{s:O}", "argv", argv);
        _cleanup_json_ json_t *d = audit_detail_for_call("run", args);
        assert_int_equal(json_array_size(json_object_get(d, "argv")), AUDIT_DETAIL_ARGV_MAX);
        assert_int_equal(json_integer_value(json_object_get(d, "argv_more")), 100 - AUDIT_DETAIL_ARGV_MAX);
        const char *cut = json_string_value(json_array_get(json_object_get(d, "argv"), 1));
        assert_int_equal(strlen(cut), AUDIT_DETAIL_STRING_MAX + 3);
        assert_true(endswith(cut, "..."));
        /* Not an object, or no op: nothing. */
        _cleanup_json_ json_t *arr = json_array();
        assert_null(audit_detail_for_call("run", arr));
        assert_null(audit_detail_for_call(NULL, args));
}

static void test_secret_names(void **state) {
        const char *yes[] = {
                "password", "PGPASSWORD",    "api_key", "ssh-key", "keys", "AWS_SECRET_ACCESS_KEY",
                "token",    "Authorization", "cookie",  "sig",     NULL
        };
        const char *no[] = { "keep-going", "monkey", "signal", "path", "verbose", "design", NULL };
        for (size_t i = 0; yes[i]; i++)
                if (!audit_detail_secret_name(yes[i]))
                        fail_msg("'%s' should be a secret name", yes[i]);
        for (size_t i = 0; no[i]; i++)
                if (audit_detail_secret_name(no[i]))
                        fail_msg("'%s' should not be a secret name", no[i]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_shown_per_operation),
                cmocka_unit_test(test_environment_values_never_shown),
                cmocka_unit_test(test_secret_arguments),
                cmocka_unit_test(test_caps),
                cmocka_unit_test(test_secret_names),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
