/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command-analysis weaknesses fixed as classes (docs/policy.md): wrapper option grammars,
 * programs that run code from their arguments or input (sed, make, interpreters, git options
 * with attached values and file outputs, database clients), arguments
 * naming blocked paths, '.git' writes and the git hardening environment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "alloc-util.h"
#include "parse-util.h"
#include "policy-internal.h"
#include "string-util.h"

typedef struct Case {
        const char *profile; /* profile name, optionally "+allowed string" appended to the allowlist */
        const char *command;
        PolicyVerdict verdict;
        const char *kind;
} Case;

#define ALLOW(p, c) \
        { p, c, POLICY_ALLOW, NULL }
#define DENY(p, c, k) \
        { p, c, POLICY_DENY, k }
#define CMD "command_denied"
#define CAP "insufficient_capability"
#define PATH "path_denied"

/* Every wrapper parsed by its own getopt grammar (abbreviations, "=value", attached
 * values, clusters); env -S judged as the command it runs; unknown options fail closed. */
static const Case wrapper_cases[] = {
        DENY("fix_issue+env", "env '--sp=sh -c id'", CMD),
        DENY("fix_issue+env", "env --split-string='sh -c id'", CMD),
        DENY("fix_issue+env", "env -S'sh -c id'", CMD),
        DENY("fix_issue+env", "env -iS 'sh -c id'", CMD),
        DENY("fix_issue+env", "env -S 'env -S \"sh -c id\"'", CMD),
        DENY("fix_issue+env", "env '--sp=git push origin main'", CAP),
        DENY("fix_issue+env", "env -S 'nice git push'", CAP),
        ALLOW("fix_issue+env", "env -S 'cargo test'"),
        ALLOW("fix_issue+env", "env --sp='cargo test' --lib"),
        DENY("fix_issue+env", "env -S 'cargo test $HOME'", CMD),
        DENY("fix_issue+env", "env --ch . sh -c id", CMD),
        DENY("fix_issue+env", "env --bogus cargo test", CMD),
        DENY("fix_issue+env", "env -x cargo test", CMD),
        ALLOW("fix_issue+env", "env --u X --ch=. cargo test"),
        ALLOW("fix_issue+env", "env - cargo test"),
        DENY("local_dev", "nice --adj 5 sh -c id", CMD),
        DENY("local_dev", "nice --adj=5 sh -c id", CMD),
        DENY("local_dev", "nice -n5 sh -c id", CMD),
        DENY("local_dev", "nice -5 sh -c id", CMD),
        DENY("local_dev", "nice --5 sh -c id", CMD),
        DENY("local_dev", "nice --adj 5 git push origin main", CAP),
        DENY("local_dev", "nice --bogus ls", CMD),
        DENY("local_dev", "nice --a", CMD),
        DENY("local_dev", "timeout --k 1 5 sh -c id", CMD),
        DENY("local_dev", "timeout -k1 5 sh -c id", CMD),
        DENY("local_dev", "timeout -fk 1 5 sh -c id", CMD),
        DENY("local_dev", "timeout --sig=KILL 5 sh -c id", CMD),
        DENY("local_dev", "timeout --pre 5 sh -c id", CMD),
        DENY("local_dev", "stdbuf --out=0 sh -c id", CMD),
        DENY("local_dev", "stdbuf -oL sh -c id", CMD),
        DENY("local_dev", "ionice -c2 -n7 sh -c id", CMD),
        DENY("local_dev", "ionice --class 2 sh -c id", CMD),
        DENY("local_dev", "chrt -f 10 sh -c id", CMD),
        DENY("local_dev", "chrt --fi 10 sh -c id", CMD),
        DENY("local_dev", "taskset -c 0 sh -c id", CMD),
        DENY("local_dev", "taskset 1 sh -c id", CMD),
        DENY("local_dev", "flock /tmp/l sh -c id", CMD),
        DENY("local_dev", "flock -w 5 /tmp/l sh -c id", CMD),
        DENY("local_dev", "flock -c id /tmp/l", CMD),
        DENY("local_dev", "flock --comm=id /tmp/l", CMD),
        DENY("local_dev", "setsid -w sh -c id", CMD),
        DENY("local_dev", "time -f %e sh -c id", CMD),
        DENY("local_dev", "time -o out ls", CMD),
        DENY("local_dev", "time --out=x ls", CMD),
        DENY("local_dev", "xargs -n1 sh -c id", CMD),
        DENY("local_dev", "xargs -I{} ls {}", CMD),
        DENY("local_dev", "xargs git push", CAP),
        DENY("local_dev", "command -p sh -c id", CMD),
        DENY("local_dev", "exec -a x sh -c id", CMD),
        DENY("local_dev", "sudo ls", CMD),
        DENY("local_dev", "doas ls", CMD),
        DENY("local_dev", "busybox --install /tmp/x", CMD),
        DENY("local_dev", "busybox nice --adj 1 sh -c id", CMD),
        ALLOW("local_dev", "nice -n 5 cargo test"),
        ALLOW("local_dev", "nice --adj 5 cargo test"),
        ALLOW("local_dev", "timeout --k 1 5 cargo test"),
        ALLOW("local_dev", "timeout 5 ls"),
        ALLOW("local_dev", "env --ch=. cargo test"),
        ALLOW("local_dev", "ionice -p 1 2"),
        ALLOW("local_dev", "flock -n lockfile cargo test"),
        ALLOW("local_dev", "stdbuf -oL -eL cargo test"),
};

/* Programs that run code or commands from their arguments or input. */
static const Case runner_cases[] = {
        /* sed: e/r/R/w/W commands and s///e, s///w flags; -f scripts; --sandbox is safe. */
        DENY("fix_issue+sed", "sed -n '1e id' f", CMD),
        DENY("fix_issue+sed", "sed 's/a/b/e' f", CMD),
        DENY("fix_issue+sed", "sed 's/a/b/ge' f", CMD),
        DENY("fix_issue+sed", "sed 's/a/b/w out' f", CMD),
        DENY("fix_issue+sed", "sed -e p -e 'w x' f", CMD),
        DENY("fix_issue+sed", "sed -ne '1e id' f", CMD),
        DENY("fix_issue+sed", "sed --exp '1e id' f", CMD),
        DENY("fix_issue+sed", "sed --expression='$e id' f", CMD),
        DENY("fix_issue+sed", "sed 'r /etc/shadow' f", CMD),
        DENY("fix_issue+sed", "sed '/x/{s|a|b|;W out\n}' f", CMD),
        DENY("fix_issue+sed", "sed -f s.sed f", CMD),
        DENY("fix_issue+sed", "sed 's/unterminated' f", CMD),
        DENY("fix_issue+sed", "sed --bogus p f", CMD),
        ALLOW("fix_issue+sed", "sed --sandbox '1e id' f"),
        ALLOW("fix_issue+sed", "sed -n '1,10p' f"),
        ALLOW("fix_issue+sed", "sed 's/hello/world/g' f"),
        ALLOW("fix_issue+sed", "sed -i 's/e/w/' f"),
        ALLOW("fix_issue+sed", "sed -E 's|x|y|2;/foo/d' f"),
        ALLOW("fix_issue+sed", "sed '/x/{s/a/b/;p}' f"),
        ALLOW("fix_issue+sed", "sed '$!N;P;D' f"),
        ALLOW("fix_issue+sed", "sed '1~2d;3,+2d' f"),
        ALLOW("fix_issue+sed", "sed 'a hello; e id' f"),
        ALLOW("fix_issue+sed", "sed 'y/abc/xyz/' f"),
        /* make: -E/--eval (abbreviated), variables that expand, makefile from stdin; any
         * makefile runs commands, so make needs an explicit allowlist entry. */
        DENY("fix_issue+make", "make -E '$(shell id)'", CMD),
        DENY("fix_issue+make", "make --ev='$(shell id)'", CMD),
        DENY("fix_issue+make", "make -sE x", CMD),
        DENY("fix_issue+make", "make 'CC=$(shell id)'", CMD),
        DENY("fix_issue+make", "make SHELL=/tmp/x", CMD),
        DENY("fix_issue+make", "make -f -", CMD),
        DENY("fix_issue+make", "make --file=/dev/stdin", CMD),
        ALLOW("fix_issue+make", "make"),
        ALLOW("fix_issue+make", "make -j4 test"),
        DENY("fix_issue+cargo", "make install", CMD),
        ALLOW("fix_issue", "make test"),
        ALLOW("fix_issue", "make check"),
        ALLOW("local_dev", "make test"),
        /* issue 14: the test entry points fix-issue grants, and nothing around them */
        ALLOW("fix_issue", "python3 -m unittest"),
        ALLOW("fix_issue", "python3 -m unittest discover -s tests"),
        ALLOW("fix_issue", "python3 -m pytest -q -k parse"),
        ALLOW("fix_issue", "pytest -q tests/test_x.py"),
        ALLOW("fix_issue", "npm test"),
        ALLOW("fix_issue", "npm run test -- --watch=false"),
        ALLOW("fix_issue", "node --test"),
        ALLOW("fix_issue", "node --test test/"),
        ALLOW("fix_issue", "go test ./..."),
        ALLOW("fix_issue", "ctest --output-on-failure"),
        ALLOW("fix_issue", "meson test -C build"),
        ALLOW("fix_issue", "mvn test"),
        ALLOW("fix_issue", "gradle test"),
        ALLOW("fix_issue", "python3 -m unittest -c x"), /* -c is unittest's own flag */
        DENY("fix_issue", "python3 -Ic x -m unittest", CMD),
        DENY("fix_issue", "python3 -c 'import os'", CMD),
        DENY("fix_issue", "python3 x.py", CMD),
        DENY("fix_issue", "python3 -m http.server", CMD),
        DENY("fix_issue", "node -e 1", CMD),
        DENY("fix_issue", "node --test -e 1", CMD),
        DENY("fix_issue", "npm run build", CMD),
        DENY("fix_issue", "npm -c id test", CMD),
        DENY("fix_issue", "make -E 'x:=$(shell id)' test", CMD),
        DENY("fix_issue", "make install", CMD),
        DENY("fix_issue", "go run .", CMD),
        DENY("fix_issue", "./gradlew test", CMD),
        DENY("fix_issue", "env PYTHONPATH=x pytest", CMD),
        DENY("local_dev", "make --eval=x", CMD),
        /* interpreters: code execution whatever the arguments, unless the allowlist names the
         * interpreter with fixed arguments; inline forms always need a shell. */
        ALLOW("fix_issue+python3", "python3 script.py"),
        DENY("fix_issue+env", "env python3 script.py", CMD),
        DENY("fix_issue+python3 -m pytest", "python3 script.py", CMD),
        DENY("fix_issue+python3", "python3 -m timeit -n1 1", CMD),
        DENY("fix_issue+python3", "python3 /dev/stdin", CMD),
        DENY("fix_issue+python3", "/usr/bin/python3 /proc/self/fd/0", CMD),
        ALLOW("fix_issue+python3 -m pytest", "python3 -m pytest -q tests"),
        DENY("fix_issue+python3 -m pytest", "python3 -m timeit 1", CMD),
        DENY("fix_issue+python3 -m pytest", "python3 -c 1", CMD),
        DENY("fix_issue+perl", "perl '-Mstrict;`id`' s.pl", CMD),
        DENY("fix_issue+node", "node --import data:text/javascript,x s.js", CMD),
        ALLOW("fix_issue+awk", "awk -f p.awk f"),
        DENY("fix_issue+awk", "awk -f p.awk -e x f", CMD),
        DENY("fix_issue+awk", "awk '{print}' f", CMD),
        ALLOW("local_dev", "python3 test_calc.py"),
        DENY("local_dev", "python3 -m timeit 1", CMD),
        DENY("local_dev", "python3 -m pdb -c c x.py", CMD),
        DENY("local_dev", "python3 /dev/stdin", CMD),
        DENY("local_dev", "python3 -", CMD),
        ALLOW("local_dev", "python3 -m pytest"),
        ALLOW("local_dev", "perl -MPOSIX s.pl"),
        ALLOW("local_dev", "perl -MList::Util=sum s.pl"),
        DENY("local_dev", "perl '-MPOSIX;system(1)' s.pl", CMD),
        DENY("local_dev", "perl -M'POSIX qw(x)' s.pl", CMD),
        DENY("local_dev", "node --import=data:x s.js", CMD),
        DENY("local_dev", "node --imp data:x s.js", CMD),
        DENY("local_dev", "node -rhttp://x s.js", CMD),
        ALLOW("local_dev", "node -r ./x.js s.js"),
        ALLOW("local_dev", "awk -f p.awk f"),
        DENY("local_dev", "awk 'BEGIN{system(\"id\")}'", CMD),
        /* git: attached short values, clusters, abbreviations, file outputs. */
        DENY("fix_issue+git clone", "git clone -u 'touch x; git-upload-pack' . d", CMD),
        DENY("fix_issue+git clone", "git clone '-utouch x; git-upload-pack' . d", CMD),
        DENY("fix_issue+git clone", "git clone -qux . d", CMD),
        DENY("fix_issue+git clone", "git clone --up=x . d", CMD),
        DENY("fix_issue+git clone", "git clone '-ccore.fsmonitor=x' . d", CMD),
        DENY("fix_issue+git clone", "git clone --template=t . d", CMD),
        ALLOW("fix_issue+git clone", "git clone -q . d"),
        DENY("fix_issue", "git log -1 --output=.git/config", CMD),
        DENY("fix_issue", "git log --out=x", CMD),
        DENY("fix_issue", "git diff --output x", CMD),
        DENY("fix_issue", "git diff --ext-diff", CMD),
        DENY("fix_issue", "git log --textconv -p", CMD),
        ALLOW("fix_issue", "git log --oneline"),
        ALLOW("fix_issue", "git diff --text --output-indicator-new=+"),
        DENY("fix_issue+git format-patch", "git format-patch -o out HEAD~1", CMD),
        DENY("fix_issue+git format-patch", "git format-patch -oout HEAD~1", CMD),
        DENY("fix_issue+git format-patch", "git format-patch --output-dir=x -1", CMD),
        ALLOW("fix_issue+git format-patch", "git format-patch -1 --stdout"),
        /* database clients */
        DENY("database_client", "sqlite3 :memory: '.shell id'", CMD),
        DENY("database_client", "sqlite3 -cmd '.system id' x.db", CMD),
        DENY("database_client", "sqlite3 x.db", CMD),
        DENY("database_client", "sqlite3 -safe -unsafe-testing x.db", CMD),
        ALLOW("database_client", "sqlite3 -safe :memory: 'select 1'"),
        ALLOW("database_client", "sqlite3 -safe x.db '.tables'"),
        DENY("database_client", "psql -c '\\! id'", CMD),
        DENY("database_client", "psql -f x.sql", CMD),
        DENY("database_client", "psql -o '|id'", CMD),
        DENY("database_client", "psql --log=x", CMD),
        ALLOW("database_client", "psql -c 'select 1'"),
        ALLOW("database_client", "psql -h db -U app -d app"),
        DENY("database_client", "mysql -e 'system id'", CMD),
        DENY("database_client", "mysql --exec='select 1'", CMD),
        DENY("database_client", "mysql --pager=id", CMD),
        DENY("database_client", "mysql --defaults-extra-file=x", CMD),
        ALLOW("database_client", "mysql -h db"),
        DENY("database_client", "mongosh --eval 1", CMD),
        DENY("database_client", "mongosh mongodb://db", CMD),
        ALLOW("database_client", "redis-cli ping"),
};

/* Argument words naming blocked paths (best effort). */
static const Case argpath_cases[] = {
        DENY("fix_issue", "git diff --no-index -- /dev/null .env", PATH),
        DENY("fix_issue", "git diff HEAD:.env", PATH),
        DENY("fix_issue", "git diff /workspace/.env", PATH),
        DENY("fix_issue", "git log -- config/.env.local", PATH),
        DENY("fix_issue", "git log -- ./keys/server.pem", PATH),
        DENY("fix_issue", "git diff ../x/.ssh/id_rsa", PATH),
        DENY("fix_issue", "git diff --no-index a .git/config", PATH),
        DENY("fix_issue+cat", "cat .env", PATH),
        DENY("fix_issue+cat", "cat sub/../.env", PATH),
        DENY("fix_issue", "git diff --src-prefix=x -- secrets/a", PATH),
        DENY("fix_issue", "git diff --output-indicator-new=x -- a/.aws/credentials", PATH),
        ALLOW("fix_issue", "git diff src/tokenizer.rs"),
        ALLOW("fix_issue", "git log -- docs/env.md src/tokenizer.rs"),
        ALLOW("fix_issue+cat", "cat README.md"),
};

static Policy *get_policy(const char *spec) {
        Policy *p = NULL;
        _cleanup_free_ char *name = xstrdup(spec);
        char *plus = strchr(name, '+');
        if (plus)
                *plus++ = 0;
        assert_int_equal(policy_profile_new(name, &p), 0);
        if (plus)
                string_set_add(&p->commands.allowed, plus);
        return p;
}

static unsigned run_table(const Case *cases, size_t n) {
        unsigned failures = 0;
        for (size_t i = 0; i < n; i++) {
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
                        if (d.verdict != c->verdict || !streq_ptr(d.kind, c->kind)) {
                                _cleanup_free_ char *vis = string_make_visible(c->command);
                                print_error(
                                        "mode %d case %zu [%s] '%s': got %s/%s (%s), want %s/%s\n",
                                        mode,
                                        i,
                                        c->profile,
                                        vis,
                                        policy_verdict_to_string(d.verdict),
                                        d.kind ? d.kind : "-",
                                        d.message,
                                        policy_verdict_to_string(c->verdict),
                                        c->kind ? c->kind : "-");
                                failures++;
                        }
                        policy_decision_done(&d);
                }
        }
        return failures;
}

static void test_wrappers(void **state) {
        assert_int_equal(run_table(wrapper_cases, ELEMENTSOF(wrapper_cases)), 0);
}

static void test_code_runners(void **state) {
        assert_int_equal(run_table(runner_cases, ELEMENTSOF(runner_cases)), 0);
}

static void test_argument_paths(void **state) {
        assert_int_equal(run_table(argpath_cases, ELEMENTSOF(argpath_cases)), 0);
        /* With a working directory: "cat x" in "secrets" is secrets/x. */
        _cleanup_(policy_freep) Policy *p = get_policy("fix_issue+cat");
        PolicyDecision d = {};
        char *argv[] = { (char *) "cat", (char *) "x", NULL };
        assert_int_equal(policy_check_command_at(p, argv, "secrets", &d), 0);
        assert_string_equal(d.kind, "path_denied");
        policy_decision_done(&d);
        assert_int_equal(policy_check_command_at(p, argv, "src", &d), 0);
        assert_int_equal(d.verdict, POLICY_ALLOW);
        policy_decision_done(&d);
}

static void test_stdin_readers(void **state) {
        _cleanup_(policy_freep) Policy *p = get_policy("database_client");
        assert_true(policy_command_stdin_is_code(
                p, (char *[]){ (char *) "psql", (char *) "-h", (char *) "db", NULL }));
        assert_true(policy_command_stdin_is_code(p, (char *[]){ (char *) "nice", (char *) "mysql", NULL }));
        assert_true(policy_command_stdin_is_code(p, (char *[]){ (char *) "/usr/bin/mariadb", NULL }));
        assert_true(policy_command_stdin_is_code(p, (char *[]){ (char *) "env", (char *) "--bogus", NULL }));
        assert_false(policy_command_stdin_is_code(p, (char *[]){ (char *) "redis-cli", NULL }));
        assert_false(policy_command_stdin_is_code(p, (char *[]){ (char *) "sqlite3", (char *) "-safe", NULL }));
        assert_false(policy_command_stdin_is_code(p, (char *[]){ (char *) "cat", NULL }));
}

static void test_git_writes(void **state) {
        static const char *const denied[] = { ".git",         "w/.git",
                                              ".git/config",  "a/b/.git/hooks/x",
                                              ".GIT/config",  ".git/HEAD",
                                              "sub/.Git",     "x/.git/modules/m/config",
                                              "./.git/index", NULL };
        static const char *const allowed[] = {
                ".github/workflows/ci.yml", "x.git", ".gitignore", "a/.gitmodules", "git/config", NULL
        };
        for (const char *const *n = policy_profile_names(); *n; n++) {
                _cleanup_(policy_freep) Policy *p = get_policy(*n);
                for (PathAccess acc = PATH_ACCESS_WRITE; acc <= PATH_ACCESS_EDIT; acc++) {
                        if (p->capabilities.level[path_access_to_operation(acc)] == CAP_NEVER)
                                continue;
                        for (const char *const *x = denied; *x; x++) {
                                PolicyDecision d = {};
                                assert_int_equal(policy_check_path(p, *x, acc, &d), 0);
                                if (d.verdict != POLICY_DENY || !streq_ptr(d.kind, "path_denied"))
                                        fail_msg("%s: %s write allowed (%s)", *n, *x, d.message);
                                policy_decision_done(&d);
                        }
                        for (const char *const *x = allowed; *x; x++) {
                                PolicyDecision d = {};
                                assert_int_equal(policy_check_path(p, *x, acc, &d), 0);
                                if (d.verdict == POLICY_DENY)
                                        fail_msg("%s: %s refused (%s)", *n, *x, d.message);
                                policy_decision_done(&d);
                        }
                }
                /* Reading git's data stays possible where reads are allowed and it is not blocked. */
                if (p->capabilities.level[OPERATION_READ_FILES] != CAP_NEVER) {
                        PolicyDecision d = {};
                        assert_int_equal(policy_check_path(p, ".git/HEAD", PATH_ACCESS_READ, &d), 0);
                        assert_int_not_equal(d.verdict, POLICY_DENY);
                        policy_decision_done(&d);
                }
        }
}

static void test_git_hardening_env(void **state) {
        const char *const *env = policy_git_hardening_env();
        uint32_t count = 0;
        unsigned keys = 0, values = 0;
        bool fsmonitor = false, hooks = false, bare = false, nosystem = false, global = false;
        assert_non_null(env);
        for (const char *const *e = env; *e; e++) {
                const char *eq = strchr(*e, '=');
                assert_non_null(eq);
                if (startswith(*e, "GIT_CONFIG_COUNT="))
                        assert_int_equal(safe_atou32(eq + 1, &count), 0);
                else if (startswith(*e, "GIT_CONFIG_KEY_")) {
                        char want[64];
                        (void) snprintf(want, sizeof want, "GIT_CONFIG_KEY_%u=", keys);
                        assert_true(startswith(*e, want)); /* dense, in order */
                        keys++;
                } else if (startswith(*e, "GIT_CONFIG_VALUE_")) {
                        char want[64];
                        (void) snprintf(want, sizeof want, "GIT_CONFIG_VALUE_%u=", values);
                        assert_true(startswith(*e, want));
                        values++;
                }
                /* Every name passes no other filter: the proxy adds these itself. */
                fsmonitor = fsmonitor ||
                        (streq(*e, "GIT_CONFIG_KEY_0=core.fsmonitor") &&
                         streq(e[1], "GIT_CONFIG_VALUE_0=false"));
                hooks = hooks || streq(*e, "GIT_CONFIG_VALUE_1=/dev/null");
                bare = bare || streq(*e, "GIT_CONFIG_VALUE_8=explicit");
                nosystem = nosystem || streq(*e, "GIT_CONFIG_NOSYSTEM=1");
                global = global || streq(*e, "GIT_CONFIG_GLOBAL=/dev/null");
        }
        assert_int_equal(count, keys);
        assert_int_equal(keys, values);
        assert_true(fsmonitor && hooks && bare && nosystem && global);
        /* The pinned keys, by name. */
        static const char *const must[] = {
                "core.fsmonitor",     "core.hooksPath",  "core.pager",
                "core.editor",        "core.sshCommand", "safe.bareRepository",
                "protocol.ext.allow", "diff.external",   "uploadpack.packObjectsHook",
                "credential.helper",  "sequence.editor", NULL
        };
        for (const char *const *m = must; *m; m++) {
                bool found = false;
                for (const char *const *e = env; *e; e++)
                        if (startswith(*e, "GIT_CONFIG_KEY_") && streq(strchr(*e, '=') + 1, *m))
                                found = true;
                if (!found)
                        fail_msg("%s not pinned", *m);
        }
}

/* Issue 17: compiled and interpreted path rules agree on a corpus built from the sensitive
 * list's own pieces (near misses included), with a custom allowlist too. */
static void test_compiled_paths(void **state) {
        static const char *const pieces[] = { "a",           ".env",         ".env.x",     "x.pem",
                                              "secrets",     ".ssh",         ".git",       "config",
                                              "hooks",       "id_rsa",       "id_rsa.pub", "token",
                                              "tokens",      "src",          "c",          ".docker",
                                              "config.json", "password.txt", "",           NULL };
        for (int custom = 0; custom < 2; custom++) {
                _cleanup_(policy_freep) Policy *p = get_policy("fix_issue");
                if (custom) {
                        p->paths.unrestricted = false;
                        string_set_add(&p->paths.allowed, "src/**");
                        string_set_add(&p->paths.allowed, "**/*.md");
                        string_set_add(&p->paths.allowed, "docs/?");
                        string_set_add(&p->paths.blocked, "a/*/config");
                        /* DIR globs whose literal spans components, and a basename known by its last byte. */
                        string_set_add(&p->paths.blocked, "**/src/c/**");
                        string_set_add(&p->paths.blocked, "**/.docker/a/**");
                        string_set_add(&p->paths.blocked, "**/*c");
                        policy_compile(p);
                }
                _cleanup_(policy_freep) Policy *q = policy_copy(p);
                policy_compiled_free(q->compiled);
                q->compiled = NULL;
                for (const char *const *x = pieces; *x; x++)
                        for (const char *const *y = pieces; *y; y++)
                                for (const char *const *z = pieces; *z; z++) {
                                        char t[256];
                                        (void) snprintf(t, sizeof t, "%s/%s/%s", *x, *y, *z);
                                        const char *texts[] = { t, strchr(t, '/') + 1, strrchr(t, '/') + 1 };
                                        for (size_t k = 0; k < 3; k++) {
                                                if (policy_path_allowed(p, texts[k]) !=
                                                    policy_path_allowed(q, texts[k]))
                                                        fail_msg(
                                                                "'%s': compiled and interpreted differ",
                                                                texts[k]);
                                                if (!streq_ptr(
                                                            policy_blocked_rule_for(p, texts[k]),
                                                            policy_blocked_rule_for(q, texts[k])))
                                                        fail_msg("'%s': blocking rules differ", texts[k]);
                                        }
                                }
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_wrappers),          cmocka_unit_test(test_code_runners),
                cmocka_unit_test(test_argument_paths),    cmocka_unit_test(test_git_writes),
                cmocka_unit_test(test_git_hardening_env), cmocka_unit_test(test_stdin_readers),
                cmocka_unit_test(test_compiled_paths),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
