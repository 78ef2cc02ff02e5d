/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The git configuration allow list (git-config.h) as a class: every way of setting a key (git
 * config in 2.39 and 2.46 spellings, git -c, --config-env, clone -c/--config, the environment)
 * refuses every key that runs a program, section operations, --file, --blob, includes and
 * --edit; the config file parser follows git's syntax and reports keys outside the list.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "alloc-util.h"
#include "git-config.h"
#include "policy-internal.h"
#include "string-util.h"

/* Keys that make git run a program or read other files (a sample from every family git 2.39-2.46
 * documents, including those the old deny list missed: imap, guitool, sendemail, ...). */
static const char *const bad_keys[] = {
        "core.fsmonitor",
        "core.hooksPath",
        "core.pager",
        "core.editor",
        "core.sshCommand",
        "core.gitProxy",
        "core.askPass",
        "core.worktree",
        "core.attributesFile",
        "core.excludesFile",
        "alias.x",
        "filter.lfs.clean",
        "filter.x.smudge",
        "filter.x.process",
        "diff.x.textconv",
        "diff.x.command",
        "diff.external",
        "merge.x.driver",
        "credential.helper",
        "credential.https://h.helper",
        "gpg.program",
        "gpg.ssh.program",
        "imap.tunnel",
        "guitool.x.cmd",
        "sendemail.smtpServer",
        "sendemail.aliasFileType",
        "sequence.editor",
        "pager.log",
        "include.path",
        "includeIf.gitdir:/w/.path",
        "uploadpack.packObjectsHook",
        "remote.origin.uploadpack",
        "remote.origin.receivepack",
        "remote.origin.proxy",
        "url.x.insteadOf",
        "http.extraHeader",
        "http.https://h.extraHeader",
        "submodule.x.update",
        "mergetool.x.cmd",
        "difftool.x.cmd",
        "web.browser",
        "browser.x.cmd",
        "man.x.cmd",
        "instaweb.httpd",
        "protocol.allow",
        "safe.directory",
        "init.templateDir",
        "trailer.x.command",
        "trailer.x.cmd",
        "hook.x.command",
        "fetch.fsckObjects",
        "transfer.fsckObjects",
        "receive.procReceiveRefs",
        "notes.rewriteRef",
        "rebase.instructionFormat",
        "sparse.expectFilesOutsideOfPatterns",
        "ssh.variant",
        "user.signingKey",
        "commit.template",
        "tag.gpgSign",
        NULL,
};

static const char *const good_keys[] = {
        "user.name",           "user.email",         "USER.Name", "author.email",
        "committer.name",      "init.defaultBranch", "color.ui",  "core.quotePath",
        "merge.conflictStyle", "pull.rebase",        NULL,
};

static void test_keys(void **state) {
        for (const char *const *k = bad_keys; *k; k++) {
                if (git_config_key_allowed(*k, GIT_CONFIG_SCOPE_SET) ||
                    git_config_key_allowed(*k, GIT_CONFIG_SCOPE_FILE))
                        fail_msg("%s allowed", *k);
        }
        for (const char *const *k = good_keys; *k; k++)
                assert_true(git_config_key_allowed(*k, GIT_CONFIG_SCOPE_SET));
        /* What git writes itself: in files, not settable. */
        assert_true(git_config_key_allowed("core.repositoryformatversion", GIT_CONFIG_SCOPE_FILE));
        assert_true(git_config_key_allowed("remote.origin.url", GIT_CONFIG_SCOPE_FILE));
        assert_true(git_config_key_allowed("branch.a.b.merge", GIT_CONFIG_SCOPE_FILE));
        assert_false(git_config_key_allowed("remote.origin.url", GIT_CONFIG_SCOPE_SET));
        assert_false(git_config_key_allowed("core.bare", GIT_CONFIG_SCOPE_SET));
        /* Malformed, and the subsection rules. */
        assert_false(git_config_key_allowed("user", GIT_CONFIG_SCOPE_SET));
        assert_false(git_config_key_allowed("user.", GIT_CONFIG_SCOPE_SET));
        assert_false(git_config_key_allowed(".name", GIT_CONFIG_SCOPE_SET));
        assert_false(git_config_key_allowed("user.x.name", GIT_CONFIG_SCOPE_SET));
        assert_false(git_config_key_allowed("remote.url", GIT_CONFIG_SCOPE_FILE));
}

static void test_parser(void **state) {
        static const struct {
                const char *text;
                int r; /* 0 clean, -EPERM bad key, -EINVAL syntax */
                const char *mention;
        } cases[] = {
                { "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
                  "\tlogallrefupdates = true\n[remote \"origin\"]\n\turl = /x\n\tfetch = "
                  "+refs/heads/*:refs/remotes/origin/*\n"
                  "[branch \"main\"]\n\tremote = origin\n\tmerge = refs/heads/main\n[user]\n\tname = A\n",
                  0,
                  NULL },
                { "\xef\xbb\xbf[user]\nname=a ; comment\n# c\n; c\n", 0, NULL },
                { "[core]\n\tfsmonitor = touch /tmp/x\n", -EPERM, "core.fsmonitor" },
                { "[Core]\n\tFSMonitor\n", -EPERM, "core.fsmonitor" },
                { "[core] fsmonitor = x\n", -EPERM, "core.fsmonitor" },
                { "[user]\n\tname = a\\\n[core]\n", 0, NULL }, /* continuation: one value */
                { "[user]\n\tname = a\n[core]\n\tpager = \"less\\\n\" \n", -EPERM, "core.pager" },
                { "[filter \"lfs\"]\n\tclean = git-lfs clean -- %f\n", -EPERM, "filter.lfs.clean" },
                { "[alias]\n\tst = !id\n", -EPERM, "alias.st" },
                { "[include]\n\tpath = ../cfg\n", -EPERM, "include.path" },
                { "[includeIf \"gitdir:/w/\"]\n\tpath = x\n", -EPERM, "includeif.gitdir:/w/.path" },
                { "[remote.origin]\n\tuploadpack = id\n", -EPERM, "remote.origin.uploadpack" },
                { "[remote \"a\\\"b\"]\n\turl = x\n", 0, NULL },
                { "[imap]\n\ttunnel = id\n", -EPERM, "imap.tunnel" },
                { "[guitool \"x\"]\n\tcmd = id\n", -EPERM, "guitool.x.cmd" },
                { "[submodule \"s\"]\n\tupdate = !id\n", -EPERM, "submodule.s.update" },
                { "name = x\n", -EINVAL, "line 1" },
                { "[user\n", -EINVAL, NULL },
                { "[user]\n\tname = \"open\n", -EINVAL, NULL },
                { "[user]\n\tname = a\\q\n", -EINVAL, NULL },
                { "[user]\n\t0name = a\n", -EINVAL, NULL },
                { "[user]\n\tname x\n", -EINVAL, NULL },
                { "[user \"x]\n", -EINVAL, NULL },
                { "", 0, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *err = NULL;
                int r = git_config_check_text(cases[i].text, strlen(cases[i].text), &err);
                if (r != cases[i].r)
                        fail_msg("case %zu: got %d (%s), want %d", i, r, err ?: "-", cases[i].r);
                if (cases[i].mention && (!err || !strstr(err, cases[i].mention)))
                        fail_msg("case %zu: message '%s' does not name '%s'", i, err ?: "-", cases[i].mention);
        }
        /* Size cap. */
        _cleanup_free_ char *big = xnew0(char, GIT_CONFIG_TEXT_MAX + 2);
        memset(big, '\n', GIT_CONFIG_TEXT_MAX + 1);
        _cleanup_free_ char *err = NULL;
        assert_int_equal(git_config_check_text(big, GIT_CONFIG_TEXT_MAX + 1, &err), -E2BIG);
}

/* form with its "%s" replaced by key. */
static char *fill(const char *form, const char *key) {
        const char *at = strstr(form, "%s");
        assert_non_null(at);
        return xasprintf("%.*s%s%s", (int) (at - form), form, key, at + 2);
}

/* Every spelling of setting a key, for every bad key: refused; for good keys: allowed. */
static void test_commands(void **state) {
        Policy *p = NULL;
        assert_int_equal(policy_profile_new("local_dev", &p), 0);
        static const char *const set_forms[] = {
                "git config %s v",
                "git config --add %s v",
                "git config --replace-all %s v",
                "git config --local %s v",
                "git config --repl %s v",
                "git config set %s v",
                "git config --unset %s",
                "git config unset %s",
                "git -c %s=v status",
                "git -c %s status",
                "git --config-env=%s=LANG status",
                "git --config-env %s=LANG status",
                "git clone -c %s=v /src d",
                "git clone -qc %s=v /src d",
                "git clone -qc%s=v /src d",
                "git clone --config %s=v /src d",
                "git clone --conf=%s=v /src d",
                "env git -c %s=v log",
                NULL,
        };
        unsigned bad = 0;
        for (const char *const *f = set_forms; *f; f++) {
                for (const char *const *k = bad_keys; *k; k++) {
                        _cleanup_free_ char *cmd = fill(*f, *k);
                        PolicyDecision d = {};
                        assert_int_equal(policy_check_command_string(p, cmd, &d), 0);
                        if (d.verdict == POLICY_ALLOW) {
                                print_error("'%s' allowed\n", cmd);
                                bad++;
                        }
                        policy_decision_done(&d);
                }
                for (const char *const *k = good_keys; *k; k++) {
                        _cleanup_free_ char *cmd = fill(*f, *k);
                        PolicyDecision d = {};
                        assert_int_equal(policy_check_command_string(p, cmd, &d), 0);
                        if (d.verdict != POLICY_ALLOW) {
                                print_error("'%s' refused: %s\n", cmd, d.message);
                                bad++;
                        }
                        policy_decision_done(&d);
                }
        }
        /* Operations refused whatever the key; reads allowed. */
        static const struct {
                const char *cmd;
                bool allow;
        } ops[] = {
                { "git config --rename-section user alias", false },
                { "git config --rename user alias", false },
                { "git config --remove-section core", false },
                { "git config rename-section user alias", false },
                { "git config remove-section user", false },
                { "git config --file x user.name a", false },
                { "git config -f x user.name a", false },
                { "git config -lf x", false },
                { "git config --fi=x user.name a", false },
                { "git config --blob HEAD:x --list", false },
                { "git config --edit", false },
                { "git config -e", false },
                { "git config edit", false },
                { "git config --global user.name a", false },
                { "git config --system user.name a", false },
                { "git config --bogus user.name a", false },
                { "git config -x", false },
                { "git config --get core.pager", true },
                { "git config core.pager", true },
                { "git config -l", true },
                { "git config --list --show-origin", true },
                { "git config --get-regexp 'alias\\..*'", true },
                { "git config get core.fsmonitor", true },
                { "git config list", true },
                { "git config --type=bool --get core.bare", true },
                { "env GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=core.pager GIT_CONFIG_VALUE_0=id git log", false },
                { "env GIT_CONFIG_PARAMETERS=\"'core.pager'='id'\" git log", false },
                { "env GIT_CONFIG=x git log", false },
                { "env GIT_CONFIG_GLOBAL=x git log", false },
                { "git -ccore.pager=id log", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(ops); i++) {
                PolicyDecision d = {};
                assert_int_equal(policy_check_command_string(p, ops[i].cmd, &d), 0);
                if ((d.verdict == POLICY_ALLOW) != ops[i].allow) {
                        print_error("'%s': %s\n", ops[i].cmd, d.message);
                        bad++;
                }
                policy_decision_done(&d);
        }
        policy_free(p);
        assert_int_equal(bad, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_keys),
                cmocka_unit_test(test_parser),
                cmocka_unit_test(test_commands),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
