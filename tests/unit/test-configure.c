/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the configure contract (src/lib/proto/configure.c): every field to JSON and
 * back, the policy digest kept across the wire, and each refusal naming its JSON path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "alloc-util.h"
#include "configure.h"
#include "json-util.h"
#include "string-util.h"

static bool strv_same(char **a, char **b) {
        size_t n = strv_length(a);
        if (n != strv_length(b))
                return false;
        for (size_t i = 0; i < n; i++)
                if (strcmp(a[i], b[i]) != 0)
                        return false;
        return true;
}

static Configure *parse_ok(const char *text) {
        _cleanup_json_ json_t *j = NULL;
        _cleanup_free_ char *err = NULL;
        Configure *c = NULL;
        assert_int_equal(json_parse_strict(text, strlen(text), strlen(text), &j, &err), 0);
        int r = configure_from_json(j, &c, &err);
        if (r < 0)
                fail_msg("refused: %s", err);
        return c;
}

/* Refused, with the message starting with path. */
static void parse_bad(const char *text, const char *path) {
        _cleanup_json_ json_t *j = NULL;
        _cleanup_free_ char *err = NULL;
        Configure *c = NULL;
        assert_int_equal(json_parse_strict(text, strlen(text), strlen(text), &j, &err), 0);
        assert_int_equal(configure_from_json(j, &c, &err), -EINVAL);
        assert_null(c);
        assert_non_null(err);
        if (strncmp(err, path, strlen(path)) != 0)
                fail_msg("'%s' does not start with '%s'", err, path);
}

static void test_round_trip(void **state) {
        Configure *c = xnew0(Configure, 1);
        c->pod_id = xstrdup("0b5c7e2a-1f3d-4c8e-9a6b-2d4f6e8a0c1e");
        assert_int_equal(policy_profile_new("pr-review", &c->policy), 0);
        c->time_remaining = 1800 * USEC_PER_SEC;
        c->wall_clock = UINT64_C(1765000000123) * USEC_PER_MSEC;
        c->have_seed = true;
        for (size_t i = 0; i < sizeof c->entropy_seed; i++)
                c->entropy_seed[i] = (uint8_t) i;
        c->limits[CONFIGURE_LIMIT_MAX_READ_BYTES] = 4096;
        c->limits[CONFIGURE_LIMIT_COMMAND_TIMEOUT_SECONDS] = 60;
        c->have_base_cost = c->have_run_cost = true;
        c->base_cost_usd_micros = 0;
        c->run_cost_usd_micros_per_second = 100;
        c->have_approver = true;
        memset(c->approver_key, 0xab, sizeof c->approver_key);
        strv_extend(&c->env, "CI=1");
        strv_extend(&c->env, "RUST_LOG=info");
        strv_extend(&c->dns_allow, "example.com");
        c->have_net = true;
        c->net.address = xstrdup("10.201.0.6/30");
        c->net.gateway = xstrdup("10.201.0.5");
        c->net.dns = xstrdup("10.201.0.5");

        json_t *j = configure_to_json(c);
        assert_true(json_is_object(json_object_get(j, "policy"))); /* always the policy itself */
        assert_null(json_object_get(j, "profile"));
        assert_int_equal(json_integer_value(json_object_get(j, "time_remaining_ms")), 1800000);
        assert_int_equal(json_integer_value(json_object_get(j, "wall_clock_unix_ms")), 1765000000123);
        Configure *d = NULL;
        char *err = NULL;
        assert_int_equal(configure_from_json(j, &d, &err), 0);
        assert_string_equal(d->pod_id, c->pod_id);
        char h1[65], h2[65];
        assert_int_equal(policy_sha256(c->policy, h1), 0);
        assert_int_equal(policy_sha256(d->policy, h2), 0);
        assert_string_equal(h1, h2); /* what the node compares the proxy's answer with */
        assert_int_equal(d->time_remaining, c->time_remaining);
        assert_int_equal(d->wall_clock, c->wall_clock);
        assert_true(d->have_seed);
        assert_memory_equal(d->entropy_seed, c->entropy_seed, sizeof c->entropy_seed);
        assert_memory_equal(d->limits, c->limits, sizeof c->limits);
        assert_true(d->have_base_cost && d->have_run_cost);
        assert_int_equal(d->base_cost_usd_micros, 0);
        assert_int_equal(d->run_cost_usd_micros_per_second, 100);
        assert_true(d->have_approver);
        assert_memory_equal(d->approver_key, c->approver_key, sizeof c->approver_key);
        assert_true(strv_same(d->env, c->env));
        assert_true(strv_same(d->dns_allow, c->dns_allow));
        assert_true(d->have_net);
        assert_string_equal(d->net.address, "10.201.0.6/30");
        assert_string_equal(d->net.gateway, "10.201.0.5");
        assert_string_equal(d->net.dns, "10.201.0.5");
        json_t *j2 = configure_to_json(d);
        assert_true(json_equal(j, j2));
        json_decref(j);
        json_decref(j2);
        configure_free(c);
        configure_free(d);
}

static void test_minimal(void **state) {
        Configure *c = parse_ok("{\"pod_id\": \"pod-1\", \"profile\": \"restrictive\"}");
        assert_int_equal(c->time_remaining, USEC_INFINITY); /* the policy's window only */
        assert_int_equal(c->wall_clock, 0);
        assert_false(c->have_seed || c->have_approver || c->have_net || c->have_base_cost);
        assert_null(c->env);
        for (ConfigureLimit l = 0; l < _CONFIGURE_LIMIT_MAX; l++)
                assert_int_equal(c->limits[l], 0);
        json_t *j = configure_to_json(c);
        assert_null(json_object_get(j, "time_remaining_ms"));
        assert_null(json_object_get(j, "limits"));
        json_decref(j);
        configure_free(c);
}

static void test_refusals(void **state) {
        parse_bad("[]", "$:");
        parse_bad("{\"profile\": \"restrictive\"}", "$.pod_id:");
        parse_bad("{\"pod_id\": \"a/b\", \"profile\": \"restrictive\"}", "$.pod_id:");
        parse_bad("{\"pod_id\": \"p\"}", "$: exactly one");
        parse_bad("{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"policy\": {}}", "$: exactly one");
        parse_bad("{\"pod_id\": \"p\", \"profile\": \"no-such\"}", "$.profile:");
        parse_bad("{\"pod_id\": \"p\", \"policy\": {\"bogus\": 1}}", "$.policy:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"timeout_seconds\": 5}",
                "$.timeout_seconds: unknown key");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"time_remaining_ms\": 0}",
                "$.time_remaining_ms:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"time_remaining_ms\": 2592000001}",
                "$.time_remaining_ms:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"wall_clock_unix_ms\": 5}",
                "$.wall_clock_unix_ms:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"entropy_seed\": \"00\"}",
                "$.entropy_seed:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"limits\": {\"max_read_bytes\": 0}}",
                "$.limits.max_read_bytes:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"limits\": {\"max_read_bytes\": "
                "524289}}",
                "$.limits.max_read_bytes:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"limits\": {\"nope\": 1}}",
                "$.limits.nope:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"costs\": {\"base_usd_micros\": -1}}",
                "$.costs.base_usd_micros:");
        parse_bad("{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"costs\": {\"x\": 1}}", "$.costs.x:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"approver_public_key\": \"zz\"}",
                "$.approver_public_key:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"env\": {\"LD_PRELOAD\": \"x\"}}",
                "$.env.LD_PRELOAD:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"env\": {\"PATH\": \"/x\"}}",
                "$.env.PATH:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"env\": {\"GIT_DIR\": \"/x\"}}",
                "$.env.GIT_DIR:");
        parse_bad("{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"env\": {\"A\": 1}}", "$.env.A:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"dns_allow\": [\"a/b\"]}",
                "$.dns_allow[0]:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"network\": {\"address\": "
                "\"10.0.0.1/33\", "
                "\"gateway\": \"10.0.0.2\", \"dns\": \"10.0.0.2\"}}",
                "$.network.address:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"network\": {\"address\": "
                "\"10.0.0.1/30\", "
                "\"gateway\": \"nope\", \"dns\": \"10.0.0.2\"}}",
                "$.network.gateway:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"network\": {\"address\": "
                "\"10.0.0.1/30\", "
                "\"gateway\": \"10.0.0.2\"}}",
                "$.network.dns:");
        parse_bad(
                "{\"pod_id\": \"p\", \"profile\": \"restrictive\", \"network\": {\"address\": "
                "\"10.0.0.1/30\", "
                "\"gateway\": \"10.0.0.2\", \"dns\": \"10.0.0.2\", \"mtu\": 1}}",
                "$.network.mtu:");
}

static void test_limit_names(void **state) {
        for (ConfigureLimit l = 0; l < _CONFIGURE_LIMIT_MAX; l++) {
                assert_non_null(configure_limit_to_string(l));
                assert_int_equal(configure_limit_from_string(configure_limit_to_string(l)), l);
                assert_true(configure_limit_cap(l) >= 1);
        }
        assert_int_equal(configure_limit_from_string("nope"), _CONFIGURE_LIMIT_INVALID);
}

/* The forked pod's handshake: only the fresh fields, clock and seed required. */
static void test_reconfigure(void **state) {
        Configure *c = xnew0(Configure, 1);
        c->pod_id = xstrdup("child-1");
        assert_int_equal(policy_profile_new("fix-issue", &c->policy), 0);
        c->time_remaining = 600 * USEC_PER_SEC;
        c->wall_clock = UINT64_C(1765000000123) * USEC_PER_MSEC;
        c->have_seed = true;
        memset(c->entropy_seed, 0xab, sizeof c->entropy_seed);
        c->limits[CONFIGURE_LIMIT_MAX_READ_BYTES] = 4096; /* never sent by reconfigure */
        _cleanup_json_ json_t *j = reconfigure_to_json(c);
        assert_null(json_object_get(j, "limits"));
        _cleanup_free_ char *err = NULL;
        _cleanup_(configure_freep) Configure *back = NULL;
        assert_int_equal(reconfigure_from_json(j, &back, &err), 0);
        assert_string_equal(back->pod_id, "child-1");
        assert_true(back->time_remaining == c->time_remaining);
        assert_true(back->wall_clock == c->wall_clock);
        assert_true(back->have_seed);
        assert_memory_equal(back->entropy_seed, c->entropy_seed, sizeof c->entropy_seed);
        char h1[65], h2[65];
        assert_int_equal(policy_sha256(c->policy, h1), 0);
        assert_int_equal(policy_sha256(back->policy, h2), 0);
        assert_string_equal(h1, h2);
        assert_false(back->have_net);

        /* A networked parent's child: its own address comes with the handshake. */
        c->have_net = true;
        c->net.address = xstrdup("10.201.0.14/30");
        c->net.gateway = xstrdup("10.201.0.13");
        c->net.dns = xstrdup("10.201.0.13");
        _cleanup_json_ json_t *jn = reconfigure_to_json(c);
        _cleanup_(configure_freep) Configure *backn = NULL;
        assert_int_equal(reconfigure_from_json(jn, &backn, &err), 0);
        assert_true(backn->have_net);
        assert_string_equal(backn->net.address, "10.201.0.14/30");
        assert_string_equal(backn->net.gateway, "10.201.0.13");
        assert_string_equal(backn->net.dns, "10.201.0.13");

        static const struct {
                const char *drop, *add, *path;
        } bad[] = {
                { "wall_clock_unix_ms", NULL, "$.wall_clock_unix_ms" },
                { "entropy_seed", NULL, "$.entropy_seed" },
                { "policy", NULL, "$.policy" },
                { "pod_id", NULL, "$.pod_id" },
                { NULL, "limits", "$.limits" },
                { NULL, "env", "$.env" },
                { NULL, "network", "$.network" },
                { NULL, "approver_public_key", "$.approver_public_key" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_json_ json_t *m = json_deep_copy(j);
                if (bad[i].drop)
                        json_object_del(m, bad[i].drop);
                if (bad[i].add)
                        json_object_set_new(m, bad[i].add, json_object());
                _cleanup_free_ char *e = NULL;
                Configure *x = NULL;
                assert_int_equal(reconfigure_from_json(m, &x, &e), -EINVAL);
                assert_null(x);
                if (strncmp(e, bad[i].path, strlen(bad[i].path)) != 0)
                        fail_msg("'%s' does not start with '%s'", e, bad[i].path);
        }
        configure_free(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),  cmocka_unit_test(test_minimal),
                cmocka_unit_test(test_refusals),    cmocka_unit_test(test_limit_names),
                cmocka_unit_test(test_reconfigure),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
