/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Profiles (spec-permissions §13, with the documented fixes), aliases, and path decisions:
 * the block_sensitive list (secret files by name, reference tests 3-5 and 8) without over-blocking.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "alloc-util.h"
#include "policy.h"
#include "string-util.h"

#define O(x) OBLIGATION(OPERATION_##x)

static const struct {
        const char *name, *description, *caps;
        Obligations obligations;
        bool block_sensitive;
        int commands; /* 0 default allowlist, 1 unrestricted, 2 restrictive allowlist, 3 rules only */
        uint64_t usd, in, out, minutes;
        bool vulnerable;
} expect[] = {
        { "default",
          "Default permission set",
          "ALLNAALLLNL",
          O(WRITE_FILES) | O(EDIT_FILES) | O(WEB_SEARCH) | O(WEB_FETCH) | O(GIT_COMMIT) | O(CREATE_PR),
          false,
          0,
          5000000,
          100000,
          10000,
          60,
          true },
        { "permissive",
          "Permissive permissions",
          "AAAAAAAAAAA",
          O(RUN_BASH) | O(GIT_PUSH) | O(CREATE_PR),
          false,
          1,
          10000000,
          500000,
          50000,
          240,
          true },
        { "restrictive", "Restrictive permissions", "ANNNAANNNNN", 0, false, 0, 500000, 10000, 1000, 10, false },
        { "read_only", "Read-only permissions", "ANNNAANNNNN", 0, false, 2, 5000000, 100000, 10000, 60, false },
        { "filesystem_readonly",
          "Filesystem read-only permissions",
          "ANNNAANNNNN",
          0,
          true,
          2,
          5000000,
          100000,
          10000,
          60,
          false },
        { "network_only", "Network-only permissions", "NNNNNNLLNNN", 0, false, 2, 1000000, 100000, 10000, 30, false },
        { "web_research", "Web research permissions", "LNNNAALLNNN", 0, false, 0, 1500000, 100000, 10000, 45, false },
        { "code_review",
          "Code review permissions",
          "ANNNAALNNNN",
          O(WEB_SEARCH),
          false,
          0,
          1000000,
          100000,
          10000,
          30,
          false },
        { "edit_only", "Edit-only permissions", "ALLNAANNNNN", 0, true, 0, 1500000, 100000, 10000, 45, false },
        { "local_dev", "Local dev permissions", "ALLLAANNLNN", 0, true, 1, 3000000, 100000, 10000, 120, false },
        /* changed from the reference: no web, no push, no PR (see docs/policy.md) */
        { "fix_issue", "Fix issue permissions", "ALLLAANNLNN", O(GIT_COMMIT), true, 0, 2000000, 100000, 10000, 60, false },
        { "release",
          "Release permissions",
          "ALLLAALLLLL",
          O(RUN_BASH) | O(GIT_PUSH) | O(CREATE_PR),
          true,
          1,
          5000000,
          100000,
          10000,
          120,
          true },
        { "database_client", "Database client permissions", "NNNLNNNNNNN", 0, false, 3, 2000000, 100000, 10000, 60, false },
        { "demo",
          "Demo permissions",
          "ALLLAALLLLL",
          O(WRITE_FILES) | O(EDIT_FILES) | O(RUN_BASH) | O(GIT_PUSH) | O(CREATE_PR),
          true,
          1,
          2000000,
          100000,
          10000,
          45,
          true },
        { "pr_review", "PR review permissions", "ANNNAALLNNN", 0, true, 0, 1500000, 100000, 10000, 30, false },
        { "codegen",
          "Code generation permissions (network-isolated)",
          "ALLLAANNLNN",
          0,
          true,
          1,
          5000000,
          100000,
          10000,
          60,
          false },
        { "pr_approve",
          "PR approval permissions (CI-gated)",
          "ANNLAALLNLN",
          O(RUN_BASH) | O(GIT_PUSH),
          true,
          0,
          1000000,
          100000,
          10000,
          15,
          true },
};

static void test_values(void **state) {
        size_t n = 0;
        for (const char *const *nm = policy_profile_names(); *nm; nm++)
                n++;
        assert_int_equal(n, ELEMENTSOF(expect));
        for (size_t i = 0; i < ELEMENTSOF(expect); i++) {
                _cleanup_(policy_freep) Policy *p = NULL;
                Capabilities caps;
                assert_int_equal(policy_profile_new(expect[i].name, &p), 0);
                assert_string_equal(p->name, expect[i].name);
                assert_string_equal(p->description, expect[i].description);
                assert_int_equal(capabilities_from_letters(expect[i].caps, &caps), 0);
                if (!capabilities_equal(&caps, &p->capabilities))
                        fail_msg("%s: capabilities differ", expect[i].name);
                if (p->obligations != expect[i].obligations)
                        fail_msg(
                                "%s: obligations %#x, want %#x",
                                expect[i].name,
                                p->obligations,
                                expect[i].obligations);
                assert_true(p->paths.unrestricted);
                assert_int_equal(strv_length(p->paths.blocked) > 0, expect[i].block_sensitive);
                switch (expect[i].commands) {
                case 0:
                        assert_false(p->commands.unrestricted);
                        assert_true(strv_contains(p->commands.allowed, "cargo test"));
                        break;
                case 1:
                        assert_true(p->commands.unrestricted);
                        break;
                case 2:
                        assert_true(strv_contains(p->commands.allowed, "ls"));
                        break;
                case 3:
                        assert_false(p->commands.unrestricted);
                        assert_null(p->commands.allowed[0]);
                        assert_int_equal(p->commands.allowed_rules.n_rules, 5);
                        break;
                default:
                        fail();
                }
                assert_true(strv_contains(p->commands.blocked, "sudo"));
                assert_true(p->commands.blocked_rules.n_rules >= 12);
                assert_int_equal(p->max_usd_micros, expect[i].usd);
                assert_int_equal(p->max_input_tokens, expect[i].in);
                assert_int_equal(p->max_output_tokens, expect[i].out);
                assert_int_equal(p->max_duration_usec, expect[i].minutes * 60 * USEC_PER_SEC);
                if (capabilities_trifecta_complete(&p->capabilities) != expect[i].vulnerable)
                        fail_msg("%s: trifecta", expect[i].name);
                assert_true(p->trifecta);
        }
}

static void test_aliases(void **state) {
        static const struct {
                const char *alias, *name;
        } a[] = {
                { "fix-issue", "fix_issue" },
                { "fix_issue", "fix_issue" },
                { "FIX-ISSUE", "fix_issue" },
                { "fixissue", "fix_issue" },
                { "fix", "fix_issue" },
                { "pr-review", "pr_review" },
                { "pr-approve", "pr_approve" },
                { "read-only", "read_only" },
                { "readonly", "read_only" },
                { "filesystem-readonly", "filesystem_readonly" },
                { "fs-readonly", "filesystem_readonly" },
                { "filesystem", "filesystem_readonly" },
                { "network-only", "network_only" },
                { "network", "network_only" },
                { "web-research", "web_research" },
                { "research", "web_research" },
                { "code-review", "code_review" },
                { "codereview", "code_review" },
                { "review", "code_review" },
                { "edit-only", "edit_only" },
                { "edit", "edit_only" },
                { "local-dev", "local_dev" },
                { "local", "local_dev" },
                { "release", "release" },
                { "publish", "release" },
                { "database-client", "database_client" },
                { "db-client", "database_client" },
                { "database", "database_client" },
                { "demo", "demo" },
                { "full", "permissive" },
                { "permissive", "permissive" },
                { "restrictive", "restrictive" },
                { "minimal", "restrictive" },
                { "codegen", "codegen" },
                { "default", "default" },
        };
        for (size_t i = 0; i < ELEMENTSOF(a); i++) {
                _cleanup_(policy_freep) Policy *p = NULL;
                if (policy_profile_new(a[i].alias, &p) < 0)
                        fail_msg("alias %s unknown", a[i].alias);
                assert_string_equal(p->name, a[i].name);
        }
        Policy *p = NULL;
        assert_int_equal(policy_profile_new("nope", &p), -ENOENT);
        assert_int_equal(policy_profile_new("", &p), -ENOENT);
        assert_int_equal(policy_profile_new(NULL, &p), -ENOENT);
        assert_null(p);
}

static void expect_path(const Policy *p, const char *path, PathAccess acc, PolicyVerdict v, const char *kind) {
        PolicyDecision d = {};
        assert_int_equal(policy_check_path(p, path, acc, &d), 0);
        if (d.verdict != v || !streq_ptr(d.kind, kind))
                fail_msg(
                        "path '%s': got %s/%s (%s), want %s/%s",
                        path,
                        policy_verdict_to_string(d.verdict),
                        d.kind ? d.kind : "-",
                        d.message,
                        policy_verdict_to_string(v),
                        kind ? kind : "-");
        policy_decision_done(&d);
}

static void test_block_sensitive(void **state) {
        static const char *const denied[] = {
                /* secret files by name */
                ".env",
                "config/.env.local",
                "keys/server.pem",
                ".ssh/id_ed25519",
                ".git/config",
                /* reference adversarial test 4 and 8 */
                ".hidden/.env",
                "deep/.hidden/.env",
                ".env.local",
                ".env.production",
                "config/.env",
                "deploy/.env.prod",
                "secrets/api.key",
                "credentials.json",
                ".ssh/id_rsa",
                ".aws/credentials",
                "token.txt",
                "password.txt",
                "src//.env",
                "./.env",
                "a/./b/.env",
                /* previously under-blocked (§5.5) */
                "keys/server.key",
                "sub/server.pem",
                ".git/hooks/pre-commit",
                "a/.git/config",
                "sub/.npmrc",
                "src/id_rsa.pub",
                ".envrc",
                NULL,
        };
        static const char *const allowed[] = {
                "src/tokenizer.rs",
                "docs/passwords.md",
                "secretsauce.txt",
                "tokens/x",
                "x/.keystore",
                "src/main.rs",
                "README.md",
                "environment.ts",
                "src/keyboard.rs",
                "credentials_test.go",
                "",
                ".",
                "src/",
                NULL,
        };
        static const char *const escapes[] = {
                "../../../.env", "../x", "src/../../x", "/etc/passwd", "/workspace/x", "a/../..", NULL,
        };
        _cleanup_(policy_freep) Policy *p = NULL;
        assert_int_equal(policy_profile_new("fix_issue", &p), 0);
        for (const char *const *x = denied; *x; x++) {
                expect_path(p, *x, PATH_ACCESS_READ, POLICY_DENY, "path_denied");
                assert_false(policy_path_allowed(p, *x));
        }
        for (const char *const *x = allowed; *x; x++) {
                expect_path(p, *x, PATH_ACCESS_READ, POLICY_ALLOW, NULL);
                assert_true(policy_path_allowed(p, *x));
        }
        for (const char *const *x = escapes; *x; x++)
                expect_path(p, *x, PATH_ACCESS_READ, POLICY_DENY, "sandbox_escape");
        /* ".." that stays inside is fine, and is judged on the normalized path */
        expect_path(p, "src/../.env", PATH_ACCESS_READ, POLICY_DENY, "path_denied");
        expect_path(p, "src/../README.md", PATH_ACCESS_READ, POLICY_ALLOW, NULL);
        /* over-long paths are refused, not waved through the matcher */
        _cleanup_free_ char *big = xmalloc(5000);
        memset(big, 'a', 4999);
        big[4999] = 0;
        expect_path(p, big, PATH_ACCESS_READ, POLICY_DENY, "path_denied");
}

static void test_path_capabilities(void **state) {
        _cleanup_(policy_freep) Policy *ro = NULL, *def = NULL, *fix = NULL;
        assert_int_equal(policy_profile_new("read_only", &ro), 0);
        expect_path(ro, "src/main.rs", PATH_ACCESS_READ, POLICY_ALLOW, NULL);
        expect_path(ro, "src/main.rs", PATH_ACCESS_WRITE, POLICY_DENY, "insufficient_capability");
        expect_path(ro, "src/main.rs", PATH_ACCESS_EDIT, POLICY_DENY, "insufficient_capability");
        expect_path(ro, "src/main.rs", PATH_ACCESS_GLOB, POLICY_ALLOW, NULL);
        assert_int_equal(policy_profile_new("default", &def), 0);
        expect_path(def, "new.txt", PATH_ACCESS_WRITE, POLICY_NEEDS_APPROVAL, "approval_required");
        expect_path(def, "old.txt", PATH_ACCESS_EDIT, POLICY_NEEDS_APPROVAL, "approval_required");
        assert_int_equal(policy_profile_new("fix_issue", &fix), 0);
        expect_path(fix, "src/lib.rs", PATH_ACCESS_WRITE, POLICY_ALLOW, NULL);
        expect_path(fix, ".env", PATH_ACCESS_WRITE, POLICY_DENY, "path_denied");
        expect_path(fix, ".git/hooks/pre-commit", PATH_ACCESS_WRITE, POLICY_DENY, "path_denied");

        /* an allowlist: only matching paths, blocked wins */
        fix->paths.unrestricted = false;
        strv_extend(&fix->paths.allowed, "src/**");
        expect_path(fix, "src/lib.rs", PATH_ACCESS_READ, POLICY_ALLOW, NULL);
        expect_path(fix, "docs/x.md", PATH_ACCESS_READ, POLICY_DENY, "path_denied");
        expect_path(fix, "src/.env", PATH_ACCESS_READ, POLICY_DENY, "path_denied");
}

static void test_operations(void **state) {
        _cleanup_(policy_freep) Policy *p = NULL;
        PolicyDecision d = {};
        assert_int_equal(policy_profile_new("pr_approve", &p), 0);
        assert_int_equal(policy_check_operation(p, OPERATION_WEB_FETCH, &d), 0);
        assert_int_equal(d.verdict, POLICY_ALLOW);
        policy_decision_done(&d);
        assert_int_equal(policy_check_operation(p, OPERATION_GIT_PUSH, &d), 0);
        assert_int_equal(d.verdict, POLICY_NEEDS_APPROVAL);
        assert_string_equal(d.kind, "approval_required");
        assert_int_equal(d.operation, OPERATION_GIT_PUSH);
        policy_decision_done(&d);
        assert_int_equal(policy_check_operation(p, OPERATION_CREATE_PR, &d), 0);
        assert_int_equal(d.verdict, POLICY_DENY);
        assert_string_equal(d.kind, "insufficient_capability");
        assert_non_null(strstr(d.message, "create_pr"));
        policy_decision_done(&d);
        /* obligations dropped by hand after normalizing are restored at decision time */
        p->obligations = 0;
        assert_int_equal(policy_check_operation(p, OPERATION_RUN_BASH, &d), 0);
        assert_int_equal(d.verdict, POLICY_NEEDS_APPROVAL);
        policy_decision_done(&d);
        assert_int_equal(policy_check_operation(p, (Operation) 99, &d), -EINVAL);
}

static void test_string_tables(void **state) {
        assert_string_equal(operation_to_string(OPERATION_CREATE_PR), "create_pr");
        assert_int_equal(operation_from_string("git_push"), OPERATION_GIT_PUSH);
        assert_int_equal(operation_from_string("GitPush"), -EINVAL);
        assert_string_equal(cap_level_to_string(CAP_LOW_RISK), "low_risk");
        assert_int_equal(cap_level_from_string("always"), CAP_ALWAYS);
        assert_int_equal(cap_level_from_string("Always"), -EINVAL);
        assert_string_equal(policy_verdict_to_string(POLICY_NEEDS_APPROVAL), "needs_approval");
        assert_null(operation_to_string(_OPERATION_MAX));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_values),          cmocka_unit_test(test_aliases),
                cmocka_unit_test(test_block_sensitive), cmocka_unit_test(test_path_capabilities),
                cmocka_unit_test(test_operations),      cmocka_unit_test(test_string_tables),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
