/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for PodSpec parsing (src/lib/spec/podspec.c, yaml-json.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "alloc-util.h"
#include "json-util.h"
#include "podspec.h"
#include "string-util.h"

#define HEAD "apiVersion: nucleus/v1\nkind: Pod\n"

static PodSpec *ok(const char *text) {
        PodSpec *s = NULL;
        char *err = NULL;
        if (podspec_parse(text, strlen(text), "pod.yaml", &s, &err) < 0)
                fail_msg("unexpected error: %s", err);
        return s;
}

static void expect_err(const char *text, const char *part) {
        PodSpec *s = NULL;
        char *err = NULL;
        if (podspec_parse(text, strlen(text), "pod.yaml", &s, &err) >= 0)
                fail_msg("accepted: %s", text);
        assert_non_null(err);
        if (!strstr(err, part))
                fail_msg("error '%s' lacks '%s'", err, part);
        free(err);
}

static void test_full(void **state) {
        _cleanup_(podspec_freep) PodSpec *s = ok(HEAD "metadata:\n"
                                                      "  name: fix-bug-42\n"
                                                      "  labels: {team: infra, a: b}\n"
                                                      "spec:\n"
                                                      "  policy:\n"
                                                      "    profile: fix_issue\n"
                                                      "    max_cost_usd: 0.5\n"
                                                      "  timeout_seconds: 600\n"
                                                      "  resources: {vcpus: 2, memory_mib: 1024, "
                                                      "scratch_mib: 4096}\n"
                                                      "  network:\n"
                                                      "    allow: [\"140.82.112.0/20:443/tcp\", "
                                                      "\"[2001:db8::/32]:443\", "
                                                      "\"10.0.0.1\", \"::1\"]\n"
                                                      "    deny: [\"169.254.169.254\"]\n"
                                                      "    dns_allow: [\"GitHub.com\", "
                                                      "\"*.githubusercontent.com\"]\n"
                                                      "  image: debian-12\n"
                                                      "  driver: local\n"
                                                      "  budget_model: {base_cost_usd: 0.00001, "
                                                      "cost_per_second_usd: 0.001}\n"
                                                      "  env: {RUST_LOG: info, LANG: C.UTF-8}\n");
        assert_string_equal(s->name, "fix-bug-42");
        assert_string_equal(s->label_keys[0], "a");
        assert_string_equal(s->policy_profile, policy_profile_canonical_name("fix-issue"));
        assert_non_null(s->policy);
        assert_int_equal(s->policy->max_usd_micros, 500000);
        assert_true(s->policy->max_duration_usec <= 600 * USEC_PER_SEC);
        assert_int_equal(s->timeout_seconds, 600);
        assert_int_equal(s->vcpus, 2);
        assert_int_equal(s->memory_mib, 1024);
        assert_int_equal(s->scratch_mib, 4096);
        assert_true(s->has_network);
        assert_int_equal(s->n_allow, 4);
        assert_int_equal(s->allow[0].family, AF_INET);
        assert_int_equal(s->allow[0].prefix, 20);
        assert_int_equal(s->allow[0].port, 443);
        assert_int_equal(s->allow[0].proto, NET_PROTO_TCP);
        assert_int_equal(s->allow[1].family, AF_INET6);
        assert_int_equal(s->allow[1].prefix, 32);
        assert_int_equal(s->allow[1].port, 443);
        assert_int_equal(s->allow[2].prefix, 32);
        assert_int_equal(s->allow[3].prefix, 128);
        assert_string_equal(s->dns_allow[0], "github.com");
        assert_string_equal(s->image, "debian-12");
        assert_int_equal(s->driver, POD_DRIVER_LOCAL);
        assert_int_equal(s->base_cost_usd_micros, 10);
        assert_int_equal(s->cost_per_second_usd_micros, 1000);
        assert_string_equal(s->env[0], "LANG=C.UTF-8");
        assert_string_equal(s->env[1], "RUST_LOG=info");

        /* canonical JSON round trip */
        _cleanup_free_ char *j = podspec_to_canonical_json(s);
        _cleanup_(podspec_freep) PodSpec *s2 = ok(j);
        _cleanup_free_ char *j2 = podspec_to_canonical_json(s2);
        assert_string_equal(j, j2);
        char a[65], b[65];
        policy_sha256(s->policy, a);
        policy_sha256(s2->policy, b);
        assert_string_equal(a, b);
}

/* The deadline is one number: a timeout above the policy's window is refused with the limit
 * named; one within it becomes the window. */
static void test_timeout_window(void **state) {
        _cleanup_free_ char *err = NULL;
        PodSpec *s = NULL;
        static const char over[] = HEAD "spec:\n  policy: pr-review\n  timeout_seconds: 86400\n";
        assert_int_equal(podspec_parse(over, strlen(over), "t.yaml", &s, &err), -EINVAL);
        assert_non_null(strstr(err, "spec.timeout_seconds"));
        assert_non_null(strstr(err, "time window of 1800 seconds"));
        assert_non_null(strstr(err, "pr_review"));

        _cleanup_(podspec_freep) PodSpec *w = ok(HEAD "spec:\n  policy: pr-review\n  timeout_seconds: "
                                                      "600\n");
        assert_true(w->has_timeout);
        assert_int_equal(w->policy->max_duration_usec, 600 * USEC_PER_SEC);
        _cleanup_(podspec_freep) PodSpec *d = ok(HEAD "spec:\n  policy: pr-review\n");
        assert_int_equal(d->policy->max_duration_usec, 1800 * USEC_PER_SEC); /* the window as is */
        _cleanup_(podspec_freep) PodSpec *e = ok(HEAD "spec:\n  policy: pr-review\n  timeout_seconds: "
                                                      "1800\n");
        assert_int_equal(e->policy->max_duration_usec, 1800 * USEC_PER_SEC);
}

static void test_defaults(void **state) {
        _cleanup_(podspec_freep) PodSpec *s = ok(HEAD "spec:\n  policy: read-only\n");
        assert_null(s->name);
        /* No timeout: the node decides (min of its default and the policy's window). */
        assert_false(s->has_timeout);
        assert_int_equal(s->timeout_seconds, 0);
        assert_int_equal(s->vcpus, 1);
        assert_int_equal(s->memory_mib, 512);
        assert_false(s->has_network);
        assert_string_equal(s->image, "default");
        assert_int_equal(s->driver, POD_DRIVER_DEFAULT);
        assert_null(s->env);
        _cleanup_(podspec_freep) PodSpec *j = ok("{\"apiVersion\":\"nucleus/"
                                                 "v1\",\"kind\":\"Pod\",\"spec\":{\"policy\":\"read-only\"}"
                                                 "}");
        assert_string_equal(j->policy_profile, s->policy_profile);
        /* network section present but empty: a NIC with nothing allowed */
        _cleanup_(podspec_freep) PodSpec *n = ok(HEAD "spec:\n  policy: read-only\n  network: {}\n");
        assert_true(n->has_network);
        assert_int_equal(n->n_allow, 0);
        /* lease: absent by default; present with or without its own grace period */
        assert_false(s->has_lease);
        _cleanup_(podspec_freep) PodSpec *l = ok(HEAD "spec:\n  policy: read-only\n  lease: {}\n");
        assert_true(l->has_lease);
        assert_int_equal(l->lease_grace_seconds, 0);
        _cleanup_(podspec_freep) PodSpec *l2 = ok(HEAD "spec:\n  policy: read-only\n  lease:\n    "
                                                       "grace_seconds: 5\n");
        assert_true(l2->has_lease);
        assert_int_equal(l2->lease_grace_seconds, 5);
        _cleanup_free_ char *canon = podspec_to_canonical_json(l2);
        assert_non_null(strstr(canon, "\"lease\":{\"grace_seconds\":5}"));
}

static void test_inline_policy(void **state) {
        /* Take a profile's own JSON as an inline policy: same enforced policy. */
        _cleanup_(policy_freep) Policy *p = NULL;
        assert_int_equal(policy_profile_new("read-only", &p), 0);
        _cleanup_json_ json_t *pj = policy_to_json(p);
        _cleanup_json_ json_t *doc = json_pack(
                "{s:s,s:s,s:{s:{s:O,s:f}}}",
                "apiVersion",
                "nucleus/v1",
                "kind",
                "Pod",
                "spec",
                "policy",
                "inline",
                pj,
                "max_cost_usd",
                0.25);
        PodSpec *s = NULL;
        char *err = NULL;
        if (podspec_from_json(doc, "api", &s, &err) < 0)
                fail_msg("%s", err);
        assert_null(s->policy_profile);
        assert_int_equal(s->policy->max_usd_micros, NUCLEUS_MIN(p->max_usd_micros, 250000));
        _cleanup_free_ char *j = podspec_to_canonical_json(s);
        _cleanup_(podspec_freep) PodSpec *s2 = ok(j);
        assert_true(policy_equal(s->policy, s2->policy));
        podspec_free(s);
}

static void test_errors(void **state) {
        expect_err(
                HEAD "spec:\n  policy: read-only\n  lease:\n    grace_seconds: 0\n",
                "spec.lease.grace_seconds: must be 1..3600");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  lease:\n    grace: 5\n", "spec.lease.grace: unknown key");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  resources:\n    vcpus: 64\n",
                "pod.yaml:6:5: spec.resources.vcpus: must be 1..32");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  netwrok: {}\n", "pod.yaml:5:3: spec.netwrok: unknown key");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  policy: default\n",
                "pod.yaml:5:3: spec.policy: duplicate key");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  timeout_seconds: \"10\"\n",
                "spec.timeout_seconds: must be an integer, not a string");
        expect_err(HEAD "spec:\n  policy: nope\n", "unknown policy profile 'nope'");
        expect_err(HEAD "spec:\n  policy: {profile: read-only, inline: {}}\n", "exactly one");
        expect_err(
                HEAD "spec:\n  policy: {profile: read-only, max_cost_usd: 100000}\n",
                "spec.policy.max_cost_usd: ");
        expect_err(HEAD "spec:\n  policy: {profile: read-only, max_cost_usd: -1}\n", "must be 0..");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  image: ../../etc\n",
                "spec.image: '../../etc' is not an image name");
        expect_err(HEAD "spec:\n  policy: read-only\n  image: /var/lib/x.img\n", "never a path");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  driver: docker\n",
                "spec.driver: must be qemu, firecracker or local");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  network: {allow: [example.com]}\n",
                "spec.network.allow[0]: 'example.com': 'example.com' is not an IPv4 or IPv6 address");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  network: {allow: [\"10.0.0.1/8\"]}\n", "bits set beyond");
        expect_err(HEAD "spec:\n  policy: read-only\n  network: {allow: [\"10.0.0.0/33\"]}\n", "prefix length");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  network: {allow: [\"10.0.0.1:0\"]}\n",
                "port must be 1..65535");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  network: {allow: [\"10.0.0.1:70000\"]}\n", "port must be");
        expect_err(HEAD "spec:\n  policy: read-only\n  network: {allow: [\"10.0.0.1/sctp\"]}\n", "bad prefix");
        expect_err(HEAD "spec:\n  policy: read-only\n  network: {dns_allow: [\"*\"]}\n", "dns_allow[0]");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  network: {dns_wildcard_names: 0}\n", "dns_wildcard_names");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  network: {dns_wildcard_names: 4097}\n",
                "dns_wildcard_names");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  network: {dns_wildcard_names: \"8\"}\n",
                "dns_wildcard_names");
        {
                PodSpec *w = ok(HEAD "spec:\n  policy: read-only\n  network: {dns_allow: [\"*.a.com\"], "
                                     "dns_wildcard_names: 4}\n");
                assert_int_equal(w->dns_wildcard_names, 4);
                podspec_free(w);
                w = ok(HEAD "spec:\n  policy: read-only\n  network: {dns_allow: [\"*.a.com\"]}\n");
                assert_int_equal(w->dns_wildcard_names, 0);
                podspec_free(w);
        }
        expect_err(HEAD "spec:\n  policy: read-only\n  network: {dns_allow: [\"a.*.com\"]}\n", "wildcard only");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  setup: {hosts: [\"pypi.org\", \"no host\"]}\n",
                "setup.hosts[1]");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  setup: {hosts: [\"a.org\", \"A.org\"]}\n", "listed twice");
        expect_err(HEAD "spec:\n  policy: read-only\n  setup: {commands: []}\n", "spec.setup");
        expect_err(HEAD "spec:\n  policy: read-only\n  setup: {hosts: \"pypi.org\"}\n", "must be a list");
        {
                PodSpec *w = ok(HEAD "spec:\n  policy: read-only\n  setup: {hosts: [\"PyPI.org\", "
                                     "\"files.pythonhosted.org\"]}\n");
                assert_int_equal(strv_length(w->setup_hosts), 2);
                assert_string_equal(w->setup_hosts[0], "pypi.org");
                _cleanup_free_ char *j = podspec_to_canonical_json(w);
                assert_non_null(strstr(j, "\"setup\":{\"hosts\":[\"pypi.org\",\"files.pythonhosted.org\"]}"));
                PodSpec *w2 = NULL;
                assert_int_equal(podspec_parse(j, strlen(j), NULL, &w2, NULL), 0);
                assert_int_equal(strv_length(w2->setup_hosts), 2);
                podspec_free(w2);
                podspec_free(w);
        }
        expect_err(
                HEAD "spec:\n  policy: read-only\n  network: {dns_allow: [\"1.2.3.4\"]}\n",
                "looks like an IP");
        expect_err(HEAD "spec:\n  policy: read-only\n  network: {dns_allow: [\"-a.com\"]}\n", "starts or ends");
        expect_err(
                HEAD "spec:\n  policy: read-only\n  env: {OPENAI_API_KEY: x}\n",
                "spec.env.OPENAI_API_KEY: refused");
        expect_err(HEAD "spec:\n  policy: read-only\n  env: {LD_PRELOAD: /x.so}\n", "refused");
        expect_err(HEAD "spec:\n  policy: read-only\n  env: {\"1X\": a}\n", "variable names");
        expect_err(HEAD "spec:\n  policy: read-only\n  env: {N: 1}\n", "must be a string");
        expect_err(HEAD "spec:\n  policy: read-only\n  env: {N: \"a\\nb\"}\n", "control characters");
        expect_err(HEAD "spec:\n  policy: read-only\n  budget_model: {base_cost_usd: 1}\n", "needs both");
        expect_err("apiVersion: nucleus/v2\nkind: Pod\nspec: {policy: read-only}\n", "apiVersion: must be");
        expect_err("apiVersion: nucleus/v1\nkind: Job\nspec: {policy: read-only}\n", "kind: must be \"Pod\"");
        expect_err(HEAD "metadata: {name: Bad_Name}\nspec: {policy: read-only}\n", "metadata.name");
        expect_err(HEAD "spec: {policy: read-only}\n---\na: 1\n", "only one YAML document");
        expect_err(HEAD "spec:\n  policy: &x read-only\n", "anchors are not supported");
        expect_err(HEAD "spec:\n  policy: !!str read-only\n", "tags are not supported");
        expect_err(HEAD "spec: [\n", "YAML syntax error");
        expect_err("", "empty document");
        expect_err("{\"apiVersion\":\"nucleus/v1\",\"apiVersion\":\"x\"}", "duplicate");
        expect_err(HEAD, "missing key 'spec'");
        expect_err(HEAD "spec: {}\n", "missing key 'policy'");
}

static void test_env_patterns(void **state) {
        const char *refused[] = { "GITHUB_TOKEN",
                                  "aws_access_key_id",
                                  "AWS_REGION",
                                  "MY_SECRET_THING",
                                  "DB_PASSWORD",
                                  "LD_LIBRARY_PATH",
                                  "BASH_ENV",
                                  "ENV",
                                  "GIT_SSH_COMMAND",
                                  "PAGER",
                                  "NODE_OPTIONS",
                                  "PYTHONPATH",
                                  "PERL5OPT",
                                  "SSH_KEY",
                                  "PATH",
                                  "IFS" };
        for (size_t i = 0; i < ELEMENTSOF(refused); i++)
                if (!podspec_env_name_refused(refused[i]))
                        fail_msg("%s not refused", refused[i]);
        const char *allowed[] = { "RUST_LOG", "LANG", "TZ", "CI", "NO_COLOR", "TERM" };
        for (size_t i = 0; i < ELEMENTSOF(allowed); i++)
                if (podspec_env_name_refused(allowed[i]))
                        fail_msg("%s refused", allowed[i]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_full),           cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_timeout_window), cmocka_unit_test(test_inline_policy),
                cmocka_unit_test(test_errors),         cmocka_unit_test(test_env_patterns),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
