/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Option grammars as a class (issue 13 class 2): for every program of the grammar table, every
 * dangerous or value-taking short option gets the same verdict in every cluster spelling
 * (after a harmless flag, value attached or in the next word) as in its plain spelling; every
 * dangerous option is refused; an unknown option is refused; and a program installed as
 * another implementation (busybox) is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "alloc-util.h"
#include "policy-internal.h"
#include "policy-options.h"
#include "string-util.h"
#include "words.h"

typedef struct Verdict {
        PolicyVerdict verdict;
        const char *kind;
        char *message;
} Verdict;

/* The program name the grammar entry stands for ("python*" -> "python"). */
static const char *grammar_program(const OptGrammar *g, char buf[static 64]) {
        size_t l = strlen(g->program);
        if (g->program[l - 1] != '*')
                return g->program;
        (void) snprintf(buf, 64, "%.*s", (int) (l - 1), g->program);
        return buf;
}

static Verdict judge(const Policy *p, char **argv) {
        PolicyDecision d = {};
        assert_int_equal(policy_check_command(p, argv, &d), 0);
        Verdict v = { d.verdict, d.kind, TAKE_PTR(d.message) };
        policy_decision_done(&d);
        return v;
}

static char **build(const OptGrammar *g, const char *prog, char *const *opts) {
        char **argv = NULL;
        strv_extend(&argv, prog);
        if (g->subcommand)
                strv_extend(&argv, g->subcommand);
        STRV_FOREACH(o, opts)
                strv_extend(&argv, *o);
        strv_extend(&argv, "t.x"); /* an operand: the script, file or path */
        return argv;
}

static char *word(const char *a, const char *b, const char *c) {
        return xasprintf("%s%s%s", a, b ?: "", c ?: "");
}

static unsigned failures;

static void expect_same(
        const Policy *p, const OptGrammar *g, const char *prog, char *const *plain, char *const *variant) {
        _cleanup_strv_free_ char **pa = build(g, prog, plain);
        _cleanup_strv_free_ char **va = build(g, prog, variant);
        Verdict vp = judge(p, pa), vv = judge(p, va);
        if (vp.verdict != vv.verdict || !streq_ptr(vp.kind, vv.kind)) {
                _cleanup_free_ char *jp = words_join(pa), *jv = words_join(va);
                print_error(
                        "'%s' -> %s (%s)\n  but '%s' -> %s (%s)\n",
                        jp,
                        policy_verdict_to_string(vp.verdict),
                        vp.message,
                        jv,
                        policy_verdict_to_string(vv.verdict),
                        vv.message);
                failures++;
        }
        free(vp.message);
        free(vv.message);
}

static void expect_denied(const Policy *p, const OptGrammar *g, const char *prog, char *const *opts) {
        _cleanup_strv_free_ char **a = build(g, prog, opts);
        Verdict v = judge(p, a);
        if (v.verdict != POLICY_DENY) {
                _cleanup_free_ char *j = words_join(a);
                print_error("'%s' allowed: %s\n", j, v.message);
                failures++;
        }
        free(v.message);
}

/* A harmless flag of the grammar, or 0. */
static char harmless_flag(const OptGrammar *g) {
        for (const char *c = g->optstring; *c; c++)
                if (*c != ':' && *c != '#' && *c != ';' && !strchr(g->danger, *c) &&
                    opt_letter_kind(g->optstring, *c) == OPT_LETTER_FLAG && !(*c >= '0' && *c <= '9') &&
                    *c != 'i' && *c != '?' && *c != 'h')
                        return *c;
        return 0;
}

static void test_cluster_spellings(void **state) {
        size_t n;
        const OptGrammar *gs = opt_grammars(&n);
        Policy *p = NULL;
        assert_int_equal(policy_profile_new("local_dev", &p), 0); /* any command, no shell */
        policy_impl_reset();
        failures = 0;
        unsigned checked = 0;
        for (size_t k = 0; k < n; k++) {
                const OptGrammar *g = &gs[k];
                char buf[64];
                const char *prog = grammar_program(g, buf);
                char f = harmless_flag(g);
                char fs[3] = { '-', f, 0 };
                /* A value made of letters the grammar knows, dangerous ones included: a value
                 * must never be read as options. */
                _cleanup_free_ char *value = xasprintf("q%sZ", g->danger);
                for (const char *c = g->optstring; *c; c++) {
                        if (*c == ':' || *c == '#' || *c == ';')
                                continue;
                        OptLetterKind kind = opt_letter_kind(g->optstring, *c);
                        bool danger = strchr(g->danger, *c) != NULL;
                        char l[2] = { *c, 0 };
                        _cleanup_free_ char *plain = word("-", l, NULL);
                        if (kind == OPT_LETTER_VALUE || kind == OPT_LETTER_NEXT) {
                                char *pv[] = { plain, value, NULL };
                                if (danger)
                                        expect_denied(p, g, prog, pv);
                                if (kind == OPT_LETTER_VALUE) {
                                        _cleanup_free_ char *att = word("-", l, value);
                                        expect_same(p, g, prog, pv, (char *[]){ att, NULL });
                                }
                                if (f) {
                                        _cleanup_free_ char *cl = word(fs, l, NULL);
                                        expect_same(p, g, prog, pv, (char *[]){ cl, value, NULL });
                                        if (kind == OPT_LETTER_VALUE) {
                                                _cleanup_free_ char *cla = word(fs, l, value);
                                                expect_same(p, g, prog, pv, (char *[]){ cla, NULL });
                                        } else {
                                                /* The cluster goes on after a next-word value. */
                                                _cleanup_free_ char *cl2 = xasprintf("-%c%c", *c, f);
                                                expect_same(p, g, prog, pv, (char *[]){ cl2, value, NULL });
                                        }
                                }
                                checked++;
                        } else if (kind == OPT_LETTER_OPTIONAL) {
                                _cleanup_free_ char *att = word("-", l, value);
                                char *pv[] = { att, NULL };
                                if (danger)
                                        expect_denied(p, g, prog, pv);
                                if (f) {
                                        _cleanup_free_ char *cla = word(fs, l, value);
                                        expect_same(p, g, prog, pv, (char *[]){ cla, NULL });
                                }
                                checked++;
                        } else if (danger) {
                                char *pv[] = { plain, NULL };
                                expect_denied(p, g, prog, pv);
                                if (f) {
                                        _cleanup_free_ char *c1 = word(fs, l, NULL);
                                        _cleanup_free_ char *c2 = xasprintf("-%c%c", *c, f);
                                        expect_same(p, g, prog, pv, (char *[]){ c1, NULL });
                                        expect_same(p, g, prog, pv, (char *[]){ c2, NULL });
                                }
                                checked++;
                        }
                }
                /* Dangerous long options, exact and abbreviated. */
                for (const char *const *ld = g->long_danger; ld && *ld; ld++) {
                        _cleanup_free_ char *lw = xasprintf("--%s=x", *ld);
                        expect_denied(p, g, prog, (char *[]){ lw, NULL });
                        checked++;
                }
                /* An option the grammar does not know fails closed, alone or in a cluster. */
                expect_denied(p, g, prog, (char *[]){ (char *) "-!", NULL });
                if (f) {
                        _cleanup_free_ char *u = xasprintf("-%c!", f);
                        expect_denied(p, g, prog, (char *[]){ u, NULL });
                }
        }
        policy_free(p);
        assert_true(checked > 200);
        assert_int_equal(failures, 0);
}

/* The inputs of the outside attack run's class, spelled out. */
static void test_cluster_examples(void **state) {
        static const struct {
                const char *profile, *command;
                bool allow;
        } cases[] = {
                { "local_dev", "ssh -vo ProxyCommand=id host", false },
                { "local_dev", "ssh -i key_o host", true },
                { "local_dev", "ssh -vikey_o host", true },
                { "local_dev", "bash -oc xtrace -c id", false },
                { "local_dev", "bash -o xtrace s.sh", true },
                { "local_dev", "python3 -Im code", false },
                { "local_dev", "python3 -Im pytest", true },
                { "local_dev", "python3 -Wdefault::DeprecationWarning t.py", true },
                { "local_dev", "python3 -bc 1", false },
                { "local_dev", "perl -lne 'print' f", false },
                { "local_dev", "perl -i.bak -pe 1 f", false },
                { "local_dev", "perl -Mstrict t.pl", true },
                { "local_dev", "git grep -iOvim x", false },
                { "local_dev", "git grep -ie pattern", true },
                { "local_dev", "git rebase -ix id HEAD~2", false },
                { "local_dev", "git fetch -u origin", true },
                { "local_dev", "git format-patch -ko out HEAD~1", false },
                { "local_dev", "git archive -vo x.tar HEAD", false },
                { "local_dev", "tar -xvIcat -f a.tar", false },
                { "local_dev", "tar xvIf cat a.tar", false },
                { "local_dev", "tar -xvC dIr -f a.tar", true },
                { "local_dev", "rsync -ave cmd a b", false },
                { "local_dev", "rsync -avB 1024e a b", true },
                { "local_dev", "man -aPcat ls", false },
                { "local_dev", "psql -qf x.sql", false },
                { "local_dev", "psql -qc 'select 1'", true },
                { "local_dev", "mysql -Be 'system id'", false },
                { "local_dev", "make -sE 'x:=$(shell id)'", false },
                { "local_dev", "make -sC dir test", true },
                { "local_dev", "awk -vx=1 -f p.awk f", true },
                { "local_dev", "awk -vx=1 '{print}' f", false },
                { "local_dev", "scp -qS ./evil a b:", false },
                { "local_dev", "zip -qTT cmd a.zip f", false },
                { "local_dev", "npm -qc id", false },
                { "local_dev", "node -ip 1", false },
                { "fix_issue+sed", "sed -ne 1e\\ id f", false },
                { "fix_issue+sed", "sed -nf x.sed f", false },
                { "fix_issue+sed", "sed -ns 1p f", true },
        };
        unsigned bad = 0;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *name = xstrdup(cases[i].profile);
                char *plus = strchr(name, '+');
                Policy *p = NULL;
                if (plus)
                        *plus++ = 0;
                assert_int_equal(policy_profile_new(name, &p), 0);
                if (plus)
                        string_set_add(&p->commands.allowed, plus);
                PolicyDecision d = {};
                assert_int_equal(policy_check_command_string(p, cases[i].command, &d), 0);
                if ((d.verdict == POLICY_ALLOW) != cases[i].allow) {
                        print_error("'%s': %s\n", cases[i].command, d.message);
                        bad++;
                }
                policy_decision_done(&d);
                policy_free(p);
        }
        assert_int_equal(bad, 0);
}

/* Only the implementation a grammar describes is judged; busybox applets are refused. */
static void test_implementations(void **state) {
        Policy *p = NULL;
        PolicyDecision d = {};
        assert_int_equal(policy_profile_new("local_dev", &p), 0);
        policy_impl_reset();
        assert_int_equal(policy_check_command_string(p, "sed -n 1p f", &d), 0);
        assert_int_equal(d.verdict, POLICY_ALLOW);
        policy_decision_done(&d);
        /* Through the multi-call binary: never GNU's grammar. */
        assert_int_equal(policy_check_command_string(p, "busybox sed -n 1p f", &d), 0);
        assert_int_equal(d.verdict, POLICY_DENY);
        assert_non_null(strstr(d.message, "busybox"));
        policy_decision_done(&d);
        /* Installed as busybox (the proxy found /usr/bin/sed -> busybox). */
        policy_impl_set("sed", POLICY_IMPL_BUSYBOX);
        policy_impl_set("tar", POLICY_IMPL_NATIVE);
        assert_int_equal(policy_check_command_string(p, "sed -n 1p f", &d), 0);
        assert_int_equal(d.verdict, POLICY_DENY);
        policy_decision_done(&d);
        assert_int_equal(policy_check_command_string(p, "tar -tf a.tar", &d), 0);
        assert_int_equal(d.verdict, POLICY_ALLOW);
        policy_decision_done(&d);
        /* Configured, but this program was never resolved: unknown, refused. */
        assert_int_equal(policy_check_command_string(p, "rsync -a x y", &d), 0);
        assert_int_equal(d.verdict, POLICY_DENY);
        policy_decision_done(&d);
        /* Programs without a grammar are not affected. */
        assert_int_equal(policy_check_command_string(p, "ls -la", &d), 0);
        assert_int_equal(d.verdict, POLICY_ALLOW);
        policy_decision_done(&d);
        assert_true(policy_impl_wants("sed"));
        assert_true(policy_impl_wants("python3.11"));
        assert_false(policy_impl_wants("perldoc"));
        assert_false(policy_impl_wants("ls"));
        policy_impl_reset();
        policy_free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cluster_spellings),
                cmocka_unit_test(test_cluster_examples),
                cmocka_unit_test(test_implementations),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
