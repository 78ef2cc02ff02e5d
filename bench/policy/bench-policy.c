/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Driver for bench/policy/run (issue 17): judges a fixed mix of paths or commands against the
 * fix-issue profile N times inside one function, so callgrind --toggle-collect counts only the
 * decisions. Usage: bench-policy path|command N [allowed]; "allowed" judges only the cases the
 * profile allows (no denial message to format). Prints the number of decisions made.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

static const struct {
        const char *path;
        PathAccess access;
        bool allowed;
} paths[] = {
        { "src/main.rs", PATH_ACCESS_READ, true },
        { "src/lib/parser/tokenizer.rs", PATH_ACCESS_EDIT, true },
        { "README.md", PATH_ACCESS_READ, true },
        { "tests/test_calc.py", PATH_ACCESS_WRITE, true },
        { "config/.env.local", PATH_ACCESS_READ, false },
        { "keys/server.pem", PATH_ACCESS_READ, false },
        { "node_modules/left-pad/lib/index.js", PATH_ACCESS_READ, true },
        { "docs/guide/install.md", PATH_ACCESS_GREP, true },
};

static char *const commands[][8] = {
        { "cargo", "test", NULL },
        { "git", "status", "--short", NULL },
        { "python3", "-m", "pytest", "-q", "tests", NULL },
        { "make", "test", NULL },
        { "git", "diff", "HEAD~1", "--", "src/main.rs", NULL },
        { "ls", "-la", NULL },
        { "sh", "-c", "id", NULL },
        { "timeout", "60", "npm", "test", NULL },
};

static const bool command_allowed[] = { true, true, true, true, true, false, false, true };
static bool only_allowed;

#define N_PATHS (sizeof paths / sizeof paths[0])
#define N_COMMANDS (sizeof commands / sizeof commands[0])

__attribute__((noinline)) static unsigned bench_paths(const Policy *p, unsigned n) {
        unsigned allowed = 0;
        for (unsigned k = 0; k < n; k++)
                for (size_t i = 0; i < N_PATHS; i++) {
                        PolicyDecision d;
                        if (only_allowed && !paths[i].allowed)
                                continue;
                        if (policy_check_path(p, paths[i].path, paths[i].access, &d) < 0)
                                abort();
                        allowed += d.verdict == POLICY_ALLOW;
                        policy_decision_done(&d);
                }
        return allowed;
}

__attribute__((noinline)) static unsigned bench_commands(const Policy *p, unsigned n) {
        unsigned allowed = 0;
        for (unsigned k = 0; k < n; k++)
                for (size_t i = 0; i < N_COMMANDS; i++) {
                        PolicyDecision d;
                        if (only_allowed && !command_allowed[i])
                                continue;
                        if (policy_check_command(p, commands[i], &d) < 0)
                                abort();
                        allowed += d.verdict == POLICY_ALLOW;
                        policy_decision_done(&d);
                }
        return allowed;
}

int main(int argc, char **argv) {
        Policy *p = NULL;
        if (argc < 3 || argc > 4 || (strcmp(argv[1], "path") != 0 && strcmp(argv[1], "command") != 0) ||
            (argc == 4 && strcmp(argv[3], "allowed") != 0)) {
                fprintf(stderr, "usage: bench-policy path|command N [allowed]\n");
                return 2;
        }
        only_allowed = argc == 4;
        unsigned n = (unsigned) strtoul(argv[2], NULL, 10);
        if (policy_profile_new("fix_issue", &p) < 0)
                return 1;
        unsigned allowed;
        size_t per;
        if (strcmp(argv[1], "path") == 0) {
                allowed = bench_paths(p, n);
                per = 0;
                for (size_t i = 0; i < N_PATHS; i++)
                        per += !only_allowed || paths[i].allowed;
        } else {
                allowed = bench_commands(p, n);
                per = 0;
                for (size_t i = 0; i < N_COMMANDS; i++)
                        per += !only_allowed || command_allowed[i];
        }
        printf("decisions %zu allowed %u\n", (size_t) n * per, allowed);
        policy_free(p);
        return 0;
}
