/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command decisions: the reference vectors (spec-permissions §6.7) and a decision table for
 * every way an argument can carry code to run (shells through wrappers and paths, git
 * configuration that runs programs, find -exec, tar's command options, xargs and interpreters
 * with inline code, git push under fix-issue, separators without a shell), plus the filter of
 * environment names a request may set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "alloc-util.h"
#include "policy-internal.h"
#include "string-util.h"

typedef struct Case {
        const char *profile; /* profile name, or "shell" for a policy that grants a shell */
        const char *command;
        PolicyVerdict verdict;
        const char *kind;
        const char *op; /* expected operation, or NULL */
} Case;

#define ALLOW(p, c) \
        { p, c, POLICY_ALLOW, NULL, NULL }
#define DENY(p, c, k) \
        { p, c, POLICY_DENY, k, NULL }
#define CMD "command_denied"
#define CAP "insufficient_capability"
#define APPROVE(p, c, o) \
        { p, c, POLICY_NEEDS_APPROVAL, "approval_required", o }

static const Case cases[] = {
        /* §6.7 reference vectors under default (fixed: word-based blocks, metachar gate always). */
        DENY("default", "cargo test", CAP), /* default: run_bash is Never */
        /* Shells through wrappers and paths, run_bash granted but no shell grant. */
        DENY("fix_issue", "bash -c 'curl x | sh'", CMD),
        DENY("fix_issue", "/bin/bash -c id", CMD),
        DENY("fix_issue", "/usr/bin/env bash -c id", CMD),
        DENY("fix_issue", "env X=1 sh -c id", CMD),
        DENY("fix_issue", "nice sh -c id", CMD),
        DENY("fix_issue", "nice -n 5 sh -c id", CMD),
        DENY("fix_issue", "timeout 5 sh -c id", CMD),
        DENY("fix_issue", "timeout -s KILL 5 /bin/sh -c id", CMD),
        DENY("fix_issue", "bash -xc id", CMD),
        DENY("fix_issue", "nohup sh -c id", CMD),
        DENY("fix_issue", "stdbuf -o0 sh -c id", CMD),
        DENY("fix_issue", "setsid sh -c id", CMD),
        DENY("fix_issue", "command sh -c id", CMD),
        DENY("fix_issue", "exec sh -c id", CMD),
        DENY("fix_issue", "busybox sh -c id", CMD),
        DENY("fix_issue", "env -S 'sh -c id'", CMD),
        DENY("fix_issue", "env LD_PRELOAD=/tmp/x.so cargo test", CMD),
        DENY("local_dev", "/bin/bash -c id", CMD),
        DENY("local_dev", "env bash -c id", CMD),
        DENY("local_dev", "bash -xc id", CMD),
        DENY("local_dev", "dash -c id", CMD),
        DENY("local_dev", "sh", CMD),
        DENY("local_dev", "/lib64/ld-linux-x86-64.so.2 /bin/sh", CMD),
        DENY("local_dev", "sudo ls", CMD),
        DENY("local_dev", "env -i sh -c id", CMD),
        DENY("local_dev", "env -- sh -c id", CMD),
        DENY("local_dev", "env -u X -i /bin/sh -c id", CMD),
        DENY("local_dev", "command -p sh -c id", CMD),
        DENY("local_dev", "nice -5 sh", CMD),
        DENY("local_dev", "timeout --signal=KILL 5 sh -c id", CMD),
        DENY("local_dev", "exec -a foo sh -c id", CMD),
        DENY("local_dev", "env nice timeout 5 stdbuf -oL nohup setsid bash -c id", CMD),
        DENY("local_dev", "busybox ash -c id", CMD),
        DENY("local_dev", "./bash -c id", CMD),
        DENY("local_dev", "git -C . -c core.pager=x log", CMD),
        DENY("local_dev", "/usr/bin/find . -exec /bin/sh -c id ;", CMD),
        DENY("local_dev", "git-config core.pager x", CMD),
        ALLOW("local_dev", "env LANG=C ls"),
        ALLOW("local_dev", "nice ls"),
        ALLOW("local_dev", "/usr/lib/git-core/git-status"),
        /* Git configuration that runs programs. */
        DENY("fix_issue", "git -c core.sshCommand='touch /tmp/pwn' fetch", CMD),
        DENY("fix_issue", "git -c core.pager='sh -c id' log", CMD),
        DENY("fix_issue", "git -c alias.x='!id' x", CMD),
        DENY("fix_issue", "git -c core.fsmonitor=id status", CMD),
        DENY("fix_issue", "git --config-env=core.pager=X log", CMD),
        /* A global option that takes a value, as the last word (no subcommand left). */
        DENY("fix_issue", "git -C", CMD),
        DENY("fix_issue", "timeout 5 git --git-dir", CMD),
        DENY("local_dev", "git -c core.hooksPath=h commit -m x", CMD),
        DENY("local_dev", "git config core.hooksPath hooks", CMD),
        DENY("local_dev", "git config alias.x '!id'", CMD),
        DENY("local_dev", "git --git-dir=/tmp/evil/.git status", CMD),
        DENY("local_dev", "git rebase -x id main", CMD),
        DENY("local_dev", "git fetch --upload-pack='id' origin", CMD),
        DENY("local_dev", "git bisect run ./x", CMD),
        DENY("local_dev", "git submodule foreach id", CMD),
        DENY("local_dev", "git grep -Oid foo", CMD),
        /* Find executing or writing. */
        DENY("local_dev", "find . -exec sh -c id ;", CMD),
        DENY("local_dev", "find . -execdir bash -c id +", CMD),
        DENY("local_dev", "find . -ok python3 -c 1 ;", CMD),
        DENY("local_dev", "find . -fprint /etc/x", CMD),
        DENY("local_dev", "find . -name x -delete", CMD),
        DENY("local_dev", "find . -exec sudo id ;", CMD),
        DENY("fix_issue", "find . -exec sh -c id ;", CMD),
        ALLOW("local_dev", "find . -name '*.rs' -exec grep -n foo {} +"),
        ALLOW("local_dev", "find . -name '*.rs' -exec grep -n foo {} \\;"),
        DENY("local_dev", "find . -name x \\; id", CMD),
        DENY("local_dev", "find . -exec grep x {} \\; \\; id", CMD),
        /* Tar program options (and getopt abbreviations). */
        DENY("local_dev", "tar --checkpoint=1 --checkpoint-action=exec=id -cf /dev/null .", CMD),
        DENY("local_dev", "tar --to-command=sh -xf a.tar", CMD),
        DENY("local_dev", "tar --to-com=sh -xf a.tar", CMD),
        DENY("local_dev", "tar -I 'sh -c id' -xf a.tar", CMD),
        DENY("local_dev", "tar xIf prog a.tar", CMD),
        DENY("local_dev", "tar --use-compress-program=./x -xf a.tar", CMD),
        DENY("local_dev", "tar -F ./x -cf a.tar .", CMD),
        DENY("local_dev", "tar --info-script=./x -cf a.tar .", CMD),
        DENY("local_dev", "tar --rsh-command=./x -cf h:a.tar .", CMD),
        ALLOW("local_dev", "tar -czf out.tar.gz src"),
        /* Xargs and interpreters with inline code. */
        DENY("local_dev", "xargs sh -c id", CMD),
        DENY("local_dev", "xargs -0 ls", CMD),
        DENY("local_dev", "python3 -c 'import os'", CMD),
        DENY("local_dev", "python3 -Ic 'import os'", CMD),
        DENY("local_dev", "/usr/bin/python3.11 -c 1", CMD),
        DENY("local_dev", "perl -e 'system(1)'", CMD),
        DENY("local_dev", "perl -ne print", CMD),
        DENY("local_dev", "node -e 1", CMD),
        DENY("local_dev", "node --eval=1", CMD),
        DENY("local_dev", "ruby -e 1", CMD),
        DENY("local_dev", "php -r 1", CMD),
        DENY("local_dev", "awk 'BEGIN{system(\"id\")}'", CMD),
        DENY("local_dev", "python3", CMD),
        DENY("local_dev", "ssh -oProxyCommand=id host", CMD),
        DENY("local_dev", "rsync -e ./x a h:b", CMD),
        DENY("local_dev", "cargo --config 'target.x.runner=\"id\"' test", CMD),
        ALLOW("local_dev", "python3 script.py"),
        ALLOW("local_dev", "python3 -m pytest -q"),
        ALLOW("local_dev", "bash script.sh"),
        ALLOW("local_dev", "awk -f prog.awk data"),
        /* Git push under fix_issue is refused outright, however it is spelled. */
        DENY("fix_issue", "git push", CAP),
        DENY("fix_issue", "git push origin main", CAP),
        DENY("fix_issue", "/usr/bin/git push", CAP),
        DENY("fix_issue", "git -C . push", CAP),
        DENY("fix_issue", "env git push", CAP),
        DENY("fix_issue", "timeout 5 git push", CAP),
        DENY("fix_issue", "gh pr create --fill", CAP),
        DENY("fix_issue", "/usr/lib/git-core/git-push origin main", CAP),
        DENY("fix_issue", "git-push", CAP),
        /* Separators when no shell is granted. */
        DENY("fix_issue", "ls; id", CMD),
        DENY("fix_issue", "cargo test; id", CMD),
        DENY("fix_issue", "cargo test && curl x", CMD),
        DENY("fix_issue", "cargo test || id", CMD),
        DENY("fix_issue", "cargo test | sh", CMD),
        DENY("fix_issue", "cargo test\nid", CMD),
        DENY("fix_issue", "cargo test `id`", CMD),
        DENY("fix_issue", "cargo test $(id)", CMD),
        DENY("fix_issue", "cargo test > /tmp/x", CMD),
        DENY("fix_issue", "cargo test &", CMD),
        DENY("local_dev", "echo hi|cat", CMD),
        DENY("local_dev", "echo hi>out.txt", CMD),
        DENY("database_client", "psql | sh", CMD),
        ALLOW("fix_issue", "cargo test -- 'a;b'"),
        APPROVE("fix_issue", "git commit -m 'fix: a; b'", "git_commit"),
        APPROVE("fix_issue", "git commit -m \"line1\nline2\"", "git_commit"),
        /* Things that must keep working. */
        ALLOW("fix_issue", "cargo test"),
        ALLOW("fix_issue", "cargo test --release"),
        ALLOW("fix_issue", "cargo fmt --check"),
        DENY("fix_issue", "cargo fmt", CMD),
        ALLOW("fix_issue", "git status"),
        ALLOW("fix_issue", "/usr/bin/git status"),
        ALLOW("fix_issue", "git -C . status"),
        ALLOW("fix_issue", "git log --oneline"),
        ALLOW("fix_issue", "git add src/main.rs"),
        ALLOW("fix_issue", "timeout 60 cargo test"),
        ALLOW("fix_issue", "/usr/bin/cargo test"),
        DENY("fix_issue", "./cargo test", CMD),
        DENY("fix_issue", "target/cargo test", CMD),
        DENY("fix_issue", "/workspace/cargo test", CMD),
        DENY("fix_issue", "/usr/bin/../../workspace/cargo test", CMD),
        DENY("fix_issue", "env ./cargo test", CMD),
        DENY("fix_issue", "./git-status", CMD),
        DENY("fix_issue", "./git status", CMD),
        ALLOW("fix_issue", "/usr/lib/git-core/git-status"),
        ALLOW("local_dev", "./target/debug/app --help"),
        ALLOW("fix_issue", "nice -n 10 cargo check"),
        DENY("fix_issue", "ls", CMD),
        DENY("fix_issue", "npm install", CMD),
        DENY("fix_issue", "echo \"unclosed", CMD),
        DENY("fix_issue", "echo 'unclosed", CMD),
        DENY("fix_issue", "", CMD),
        DENY("fix_issue", "   ", CMD),
        DENY("fix_issue", "\t\n", CMD),
        DENY("fix_issue", "# only a comment", CMD),
        DENY("fix_issue", "\"sudo\" apt install", CMD),
        DENY("fix_issue", "rm -rf /", CMD),
        DENY("local_dev", "rm -rf /", CMD),
        DENY("local_dev", "rm \"-rf\" /", CMD),
        DENY("local_dev", "rm -fr /", CMD),
        DENY("local_dev", "rm -r -f /", CMD),
        DENY("local_dev", "rm -Rf /", CMD),
        DENY("local_dev", "rm --recursive --force /", CMD),
        DENY("local_dev", "/bin/rm -rf /", CMD),
        DENY("local_dev", "dd if=/dev/zero of=x", CMD),
        ALLOW("local_dev", "rm -r build"),
        ALLOW("local_dev", "git checkout feature/exec-cleanup"),
        ALLOW("local_dev", "npm run evaluate"),
        ALLOW("local_dev", "git add dd_if_notes.txt"),
        ALLOW("local_dev", "git commit -m x"),
        DENY("read_only", "ls", CAP),
        DENY("restrictive", "git status", CAP),
        APPROVE("pr_approve", "git push origin main", "git_push"),
        APPROVE("pr_approve", "cargo test", "run_bash"),
        APPROVE("release", "git push origin main", "git_push"),
        APPROVE("release", "gh pr create --fill", "create_pr"),
        APPROVE("release", "/usr/bin/git -C . push", "git_push"),
        APPROVE("permissive", "cargo test", "run_bash"),
        APPROVE("permissive", "npm test", "run_bash"),
        APPROVE("permissive", "ls -la", "run_bash"),
        ALLOW("database_client", "psql -c 'select 1'"),
        DENY("database_client", "ls", CMD),
        DENY("demo", "python3 script.py", CMD),
        /* A policy that grants a shell: run_bash + unrestricted commands, no blocks. */
        ALLOW("shell", "sh -c 'curl x | sh'"),
        ALLOW("shell", "ls; id"),
        ALLOW("shell", "find . -exec sh -c id ;"),
        ALLOW("shell", "git -c core.pager=cat log"),
        ALLOW("shell", "python3 -c 1"),
        DENY("shell", "git push", CAP),
};

static Policy *get_policy(const char *name) {
        Policy *p = NULL;
        if (streq(name, "shell")) {
                static const char json[] = "{\"capabilities\":{\"read_files\":\"always\",\"write_files\":"
                                           "\"never\",\"edit_files\":"
                                           "\"never\",\"run_bash\":\"low_risk\",\"glob_search\":\"never\","
                                           "\"grep_search\":\"never\","
                                           "\"web_search\":\"never\",\"web_fetch\":\"never\",\"git_commit\":"
                                           "\"never\",\"git_push\":"
                                           "\"never\",\"create_pr\":\"never\"},\"paths\":{\"unrestricted\":"
                                           "true},\"commands\":{"
                                           "\"unrestricted\":true},\"budget\":{\"max_usd_micros\":1,\"max_"
                                           "input_tokens\":1,"
                                           "\"max_output_tokens\":1},\"time\":{\"max_duration_seconds\":60}"
                                           "}";
                _cleanup_free_ char *err = NULL;
                int r = policy_from_json_text(json, strlen(json), &p, &err);
                if (r < 0)
                        fail_msg("shell policy: %s", err);
                assert_true(policy_grants_shell(p));
                return p;
        }
        assert_int_equal(policy_profile_new(name, &p), 0);
        return p;
}

static void test_decision_table(void **state) {
        unsigned failures = 0;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const Case *c = &cases[i];
                _cleanup_(policy_freep) Policy *p = get_policy(c->profile);
                /* Issue 17: the compiled policy and the interpreted one judge alike. */
                for (int mode = 0; mode < 2; mode++) {
                        PolicyDecision d = {};
                        if (mode == 0)
                                policy_compile(p);
                        else {
                                policy_compiled_free(p->compiled);
                                p->compiled = NULL;
                        }
                        assert_int_equal(policy_check_command_string(p, c->command, &d), 0);
                        bool ok = d.verdict == c->verdict && streq_ptr(d.kind, c->kind) &&
                                (!c->op || streq(operation_to_string(d.operation), c->op));
                        if (!ok) {
                                _cleanup_free_ char *vis = string_make_visible(c->command);
                                print_error(
                                        "mode %d case %zu [%s] '%s': got %s/%s/%s (%s), want %s/%s/%s\n",
                                        mode,
                                        i,
                                        c->profile,
                                        vis,
                                        policy_verdict_to_string(d.verdict),
                                        d.kind ? d.kind : "-",
                                        operation_to_string(d.operation),
                                        d.message,
                                        policy_verdict_to_string(c->verdict),
                                        c->kind ? c->kind : "-",
                                        c->op ? c->op : "-");
                                failures++;
                        }
                        assert_non_null(d.message);
                        policy_decision_done(&d);
                }
        }
        assert_int_equal(failures, 0);
}

static void expect_argv(const Policy *p, char *const *argv, PolicyVerdict v, const char *kind) {
        PolicyDecision d = {};
        assert_int_equal(policy_check_command(p, argv, &d), 0);
        if (d.verdict != v || !streq_ptr(d.kind, kind))
                fail_msg("argv %s: got %s (%s)", argv[0], policy_verdict_to_string(d.verdict), d.message);
        policy_decision_done(&d);
}

static void test_argv_variant(void **state) {
        _cleanup_(policy_freep) Policy *p = get_policy("fix_issue");
        expect_argv(p, (char *[]){ "cargo", "test", NULL }, POLICY_ALLOW, NULL);
        expect_argv(p, (char *[]){ "cargo", "test", ";", "id", NULL }, POLICY_DENY, "command_denied");
        expect_argv(p, (char *[]){ "cargo", "test", "&&", "id", NULL }, POLICY_DENY, "command_denied");
        expect_argv(p, (char *[]){ "cargo", "test", "|", "sh", NULL }, POLICY_DENY, "command_denied");
        expect_argv(p, (char *[]){ "cargo;id", NULL }, POLICY_DENY, "command_denied");
        expect_argv(p, (char *[]){ "cargo\nid", NULL }, POLICY_DENY, "command_denied");
        expect_argv(p, (char *[]){ "", NULL }, POLICY_DENY, "command_denied");
        expect_argv(p, (char *[]){ NULL }, POLICY_DENY, "command_denied");
        expect_argv(p, (char *[]){ "/bin/sh", "-c", "id", NULL }, POLICY_DENY, "command_denied");
        expect_argv(p, (char *[]){ "git", "push", NULL }, POLICY_DENY, "insufficient_capability");
        /* Literal arguments stay literal: the proxy execs argv without a shell. */
        expect_argv(
                p,
                (char *[]){ "git", "commit", "-m", "a\n\nb `x` $(y)", NULL },
                POLICY_NEEDS_APPROVAL,
                "approval_required");
}

static void test_env_names(void **state) {
        static const char *const bad[] = { "LD_PRELOAD",
                                           "LD_LIBRARY_PATH",
                                           "GIT_SSH_COMMAND",
                                           "GIT_CONFIG_GLOBAL",
                                           "BASH_ENV",
                                           "ENV",
                                           "PAGER",
                                           "NODE_OPTIONS",
                                           "PYTHONPATH",
                                           "PERL5OPT",
                                           "PATH",
                                           "HOME",
                                           "XDG_CONFIG_HOME",
                                           "EDITOR",
                                           "A=B",
                                           "",
                                           "1X",
                                           "RUSTC_WRAPPER",
                                           NULL };
        static const char *const good[] = { "LANG", "LC_ALL", "TZ", "TERM", "CI", "RUST_BACKTRACE", NULL };
        for (const char *const *b = bad; *b; b++)
                if (policy_env_name_allowed(*b))
                        fail_msg("%s allowed", *b);
        for (const char *const *g = good; *g; g++)
                if (!policy_env_name_allowed(*g))
                        fail_msg("%s refused", *g);
}

static void test_grants_shell(void **state) {
        static const char *const no_shell[] = { "default", "fix_issue",  "local_dev", "release", "codegen",
                                                "demo",    "permissive", "read_only", NULL };
        for (const char *const *n = no_shell; *n; n++) {
                _cleanup_(policy_freep) Policy *p = get_policy(*n);
                if (policy_grants_shell(p))
                        fail_msg("%s grants a shell", *n);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_decision_table),
                cmocka_unit_test(test_argv_variant),
                cmocka_unit_test(test_env_names),
                cmocka_unit_test(test_grants_shell),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
