/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the node's use of PodSpecs: values taken from a parsed spec (YAML and JSON),
 * refusals surfacing the parser's message, and the proxy's configure arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "alloc-util.h"
#include "json-util.h"
#include "nodespec.h"
#include "vmm.h"

static void test_yaml(void **state) {
        static const char y[] = "apiVersion: nucleus/v1\nkind: Pod\nmetadata:\n  name: t1\nspec:\n"
                                "  policy: fix-issue\n  timeout_seconds: 60\n  driver: local\n"
                                "  resources: {vcpus: 2, memory_mib: 256}\n  env: {FOO: bar}\n";
        NodeSpec *s = NULL;
        char *err = NULL;
        assert_int_equal(nodespec_parse(y, strlen(y), &s, &err), 0);
        assert_int_equal(s->driver, VMM_DRIVER_LOCAL);
        assert_int_equal(s->timeout_seconds, 60);
        assert_int_equal(s->vcpus, 2);
        assert_int_equal(s->memory_mib, 256);
        assert_false(s->has_network);
        assert_string_equal(s->name, "t1");
        char *dir = nodespec_image_dir(s, "/images");
        assert_string_equal(dir, "/images");
        free(dir);
        assert_int_equal(nodespec_resolve_timeout(s, 3600, 86400, &err), 0);
        assert_int_equal(s->timeout_seconds, 60);
        assert_int_equal(s->policy->max_duration_usec, 60 * USEC_PER_SEC);
        uint8_t pub[32] = { 1 };
        Configure *c = nodespec_configure(s, "pod-1", pub);
        json_t *a = configure_to_json(c);
        assert_string_equal(json_string_value(json_object_get(a, "pod_id")), "pod-1");
        assert_true(json_is_object(json_object_get(a, "policy")));
        assert_null(json_object_get(a, "timeout_seconds")); /* the boot adds the time left */
        assert_string_equal(json_string_value(json_object_get(json_object_get(a, "env"), "FOO")), "bar");
        assert_int_equal(strlen(json_string_value(json_object_get(a, "approver_public_key"))), 64);
        /* The message carries the node's own policy: same digest. */
        char h1[65], h2[65];
        assert_int_equal(policy_sha256(s->policy, h1), 0);
        assert_int_equal(policy_sha256(c->policy, h2), 0);
        assert_string_equal(h1, h2);
        json_decref(a);
        configure_free(c);
        nodespec_free(s);
}

/* A fork's spec is a deep copy: both free cleanly (the sanitizer build catches a shared
 * pointer) and the copy's policy can change without touching the original. */
static void test_copy(void **state) {
        static const char j[] = "{\"apiVersion\":\"nucleus/"
                                "v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"c\"},"
                                "\"spec\":{\"policy\":\"read-only\",\"env\":{\"A\":\"b\"},\"network\":"
                                "{\"allow\":[\"10.0.0.0/8:443\"],\"dns_allow\":[\"example.com\"]}}}";
        NodeSpec *s = NULL;
        char *err = NULL;
        assert_int_equal(nodespec_parse(j, strlen(j), &s, &err), 0);
        NodeSpec *c = nodespec_copy(s);
        assert_ptr_not_equal(c->policy, s->policy);
        assert_ptr_not_equal(c->json, s->json);
        assert_string_equal(c->name, "c");
        assert_string_equal(c->allow[0], "10.0.0.0/8:443");
        assert_string_equal(c->dns_allow[0], "example.com");
        assert_string_equal(c->env[0], "A=b");
        c->policy->max_usd_micros = 1;
        assert_true(s->policy->max_usd_micros != 1);
        nodespec_free(s);
        nodespec_free(c);
}

static void test_json_network(void **state) {
        static const char j[] = "{\"apiVersion\":\"nucleus/"
                                "v1\",\"kind\":\"Pod\",\"spec\":{\"policy\":\"read-only\",\"network\":"
                                "{\"allow\":[\"10.0.0.0/8:443\"],\"dns_allow\":[\"example.com\"]}}}";
        NodeSpec *s = NULL;
        char *err = NULL;
        int r = nodespec_parse(j, strlen(j), &s, &err);
        if (r < 0)
                print_message("# %s\n", err);
        assert_int_equal(r, 0);
        assert_true(s->has_network);
        assert_string_equal(s->allow[0], "10.0.0.0/8:443");
        assert_null(s->deny[0]);
        assert_string_equal(s->dns_allow[0], "example.com");
        assert_int_equal(s->driver, -1);
        nodespec_free(s);
}

/* The one deadline: no timeout is min(node default, the policy's window); an explicit one
 * above the node's limit is refused with the limit named. */
static void test_timeout(void **state) {
        static const char none[] = "apiVersion: nucleus/v1\nkind: Pod\nspec:\n  policy: pr-review\n";
        static const char big[] = "apiVersion: nucleus/v1\nkind: Pod\nspec:\n  policy: permissive\n"
                                  "  timeout_seconds: 7200\n";
        NodeSpec *s = NULL;
        char *err = NULL;
        assert_int_equal(nodespec_parse(none, strlen(none), &s, &err), 0);
        assert_false(s->has_timeout);
        assert_int_equal(nodespec_resolve_timeout(s, 3600, 86400, &err), 0);
        assert_int_equal(s->timeout_seconds, 1800); /* pr_review's 30-minute window */
        nodespec_free(s);
        assert_int_equal(nodespec_parse(none, strlen(none), &s, &err), 0);
        assert_int_equal(nodespec_resolve_timeout(s, 600, 86400, &err), 0);
        assert_int_equal(s->timeout_seconds, 600); /* the node's default, below the window */
        assert_int_equal(s->policy->max_duration_usec, 600 * USEC_PER_SEC);
        nodespec_free(s);
        assert_int_equal(nodespec_parse(big, strlen(big), &s, &err), 0);
        assert_int_equal(nodespec_resolve_timeout(s, 3600, 3600, &err), -EINVAL);
        assert_non_null(strstr(err, "max_timeout_seconds"));
        assert_non_null(strstr(err, "3600"));
        free(err);
        nodespec_free(s);
}

static void test_bad(void **state) {
        static const char *const bad[] = {
                "",
                "[]",
                "{\"apiVersion\":\"nucleus/v1\",\"kind\":\"Pod\",\"spec\":{\"netwrok\":{}}}",
                "apiVersion: nucleus/v1\nkind: Pod\nspec:\n  driver: docker\n",
                "apiVersion: nucleus/v1\nkind: Pod\nspec:\n  image: ../../etc\n",
                "apiVersion: nucleus/v1\nkind: Pod\nspec:\n  timeout_seconds: 0\n",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                NodeSpec *s = NULL;
                char *err = NULL;
                assert_true(nodespec_parse(bad[i], strlen(bad[i]), &s, &err) < 0);
                assert_non_null(err);
                assert_null(s);
                free(err);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_yaml),    cmocka_unit_test(test_json_network),
                cmocka_unit_test(test_copy),    cmocka_unit_test(test_bad),
                cmocka_unit_test(test_timeout),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
