/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Named profiles and their aliases (spec-permissions §12-§13), built from constant tables.
 * Values follow the reference except where it is flagged wrong; each change carries a
 * comment here and is listed in docs/policy.md. Input: a profile name (untrusted, matched
 * against a fixed table).
 */
#include <ctype.h>
#include <string.h>

#include "alloc-util.h"
#include "policy-internal.h"
#include "string-util.h"

/*
 * Sensitive paths. The reference list (`.env*`, `*.pem`, `*.key`, `**` "/token*", ... plus a
 * "component starts with" heuristic) both over-blocks (`src/tokenizer.rs`, `docs/passwords.md`,
 * `secretsauce.txt`, `x/.keystore`) and under-blocks (`keys/server.pem`, `sub/server.key`,
 * `config/.env.local`). Fixed: every pattern is anchored on whole path components at any
 * depth, with no prefix heuristic. Also added: .git/hooks (code that git runs later), .netrc,
 * .gnupg, id_ecdsa/id_dsa keys, .docker/config.json, .kube/config, and git's user configuration
 * (.gitconfig, .config/git/) which can define aliases, pagers and hooks for later git commands.
 */
const char *const policy_block_sensitive[] = {
        "**/.env",
        "**/.env.*",
        "**/.envrc",
        "**/*.pem",
        "**/*.key",
        "**/*.p12",
        "**/*.pfx",
        "**/secrets/**",
        "**/.ssh/**",
        "**/.aws/**",
        "**/.gnupg/**",
        "**/credentials",
        "**/credentials.*",
        "**/.git/config",
        "**/.git/hooks/**",
        "**/id_rsa*",
        "**/id_dsa*",
        "**/id_ecdsa*",
        "**/id_ed25519*",
        "**/.npmrc",
        "**/.pypirc",
        "**/.netrc",
        "**/token",
        "**/token.*",
        "**/password",
        "**/password.*",

        "**/.docker/config.json",
        "**/.kube/config",
        "**/.gitconfig",
        "**/.config/git/**",
        NULL,
};

static const char *const default_blocked_strings[] = {
        "rm -rf", "sudo", "chmod",     "chown",  "curl | sh", "wget | sh",
        "eval",   "exec", "> /dev/sd", "dd if=", "mkfs",      NULL,
};

static const char *const default_allowed[] = {
        "cargo test", "cargo check", "cargo clippy", "cargo fmt --check",
        "git status", "git diff",    "git log",      NULL,
};

/* The test and build entry points of the major ecosystems (issue 14): running the project's
 * tests is the job of fix-issue. They run project code inside the VM; the VM, Landlock, seccomp
 * and the absent network contain it, and the export flags keep what it writes off the host
 * (docs/policy.md, "Running the project's tests"). */
static const char *const test_runners[] = {
        "pytest",
        "python3 -m pytest",
        "python3 -m unittest",
        "python -m pytest",
        "python -m unittest",
        "make test",
        "make check",
        "npm test",
        "npm run test",
        "node --test",
        "cargo test",
        "go test",
        "ctest",
        "meson test",
        "mvn test",
        "gradle test",
        NULL,
};

static const char *const restrictive_allowed[] = {
        "git status", "git diff", "git log", "ls", "cat", "head", "tail", NULL,
};

void command_policy_default_blocks(CommandPolicy *c) {
        static const struct {
                const char *program, *flag;
        } rules[] = {
                { "bash", "-c" },   { "sh", "-c" },         { "zsh", "-c" },
                { "fish", "-c" },   { "pwsh", "-Command" }, { "powershell", "-Command" },
                { "python", "-c" }, { "python3", "-c" },    { "node", "-e" },
                { "ruby", "-e" },   { "perl", "-e" },       { "php", "-r" },
        };
        for (const char *const *s = default_blocked_strings; *s; s++)
                string_set_add(&c->blocked, *s);
        for (size_t i = 0; i < ELEMENTSOF(rules); i++) {
                _cleanup_free_ char *exact = NULL;
                if (asprintf(&exact, "=%s", rules[i].flag) < 0)
                        abort();
                const char *args[] = { exact, "any_remaining", NULL };
                CommandRule r;
                command_rule_init(&r, rules[i].program, args);
                command_rules_add(&c->blocked_rules, &r);
                command_rule_done(&r);
        }
}

typedef enum CommandPreset {
        COMMANDS_DEFAULT,     /* allowlist of cargo/git read commands + default blocks */
        COMMANDS_PERMISSIVE,  /* unrestricted + default blocks */
        COMMANDS_RESTRICTIVE, /* small read-only allowlist + default blocks */
} CommandPreset;

typedef struct ProfileDef {
        const char *name;
        const char *description;
        const char *caps; /* N/L/A letters in Operation order */
        Obligations obligations;
        bool block_sensitive;
        CommandPreset commands;
        uint64_t usd_micros;
        uint64_t input_tokens, output_tokens;
        uint64_t minutes;
} ProfileDef;

#define O(x) OBLIGATION(OPERATION_##x)

static const ProfileDef profiles[] = {
        { "default",
          "Default permission set",
          "ALLNAALLLNL",
          O(WRITE_FILES) | O(EDIT_FILES) | O(WEB_SEARCH) | O(WEB_FETCH) | O(GIT_COMMIT) | O(CREATE_PR),
          false,
          COMMANDS_DEFAULT,
          5000000,
          100000,
          10000,
          60 },
        /* permissive: the reference kept the default command allowlist, so even `ls -la` was
         * refused (issue 14); its commands are unrestricted, with the default blocks, run_bash
         * behind approval (the trifecta) like every other operation that can exfiltrate. */
        { "permissive",
          "Permissive permissions",
          "AAAAAAAAAAA",
          0,
          false,
          COMMANDS_PERMISSIVE,
          10000000,
          500000,
          50000,
          240 },
        { "restrictive", "Restrictive permissions", "ANNNAANNNNN", 0, false, COMMANDS_DEFAULT, 500000, 10000, 1000, 10 },
        { "read_only",
          "Read-only permissions",
          "ANNNAANNNNN",
          0,
          false,
          COMMANDS_RESTRICTIVE,
          5000000,
          100000,
          10000,
          60 },
        { "filesystem_readonly",
          "Filesystem read-only permissions",
          "ANNNAANNNNN",
          0,
          true,
          COMMANDS_RESTRICTIVE,
          5000000,
          100000,
          10000,
          60 },
        { "network_only",
          "Network-only permissions",
          "NNNNNNLLNNN",
          0,
          false,
          COMMANDS_RESTRICTIVE,
          1000000,
          100000,
          10000,
          30 },
        { "web_research",
          "Web research permissions",
          "LNNNAALLNNN",
          0,
          false,
          COMMANDS_DEFAULT,
          1500000,
          100000,
          10000,
          45 },
        { "code_review",
          "Code review permissions",
          "ANNNAALNNNN",
          O(WEB_SEARCH),
          false,
          COMMANDS_DEFAULT,
          1000000,
          100000,
          10000,
          30 },
        { "edit_only", "Edit-only permissions", "ALLNAANNNNN", 0, true, COMMANDS_DEFAULT, 1500000, 100000, 10000, 45 },
        { "local_dev", "Local dev permissions", "ALLLAANNLNN", 0, true, COMMANDS_PERMISSIVE, 3000000, 100000, 10000, 120 },
        /* fix_issue: the reference has web L, push L, pr L (all approval-gated) but its command
         * allowlist makes push/PR/commit impossible anyway. Nucleus's threat model (tests/
         * adversarial README) defines fix-issue as "read, write, edit, run allowlisted commands,
         * git commit; no push, no web": web_search, web_fetch, git_push and create_pr are Never,
         * so the trifecta is incomplete and run_bash needs no approval; git_commit keeps its
         * explicit approval; `git add` and `git commit` join the allowlist (see profile_build). */
        { "fix_issue",
          "Fix issue permissions",
          "ALLLAANNLNN",
          O(GIT_COMMIT),
          true,
          COMMANDS_DEFAULT,
          2000000,
          100000,
          10000,
          60 },
        { "release",
          "Release permissions",
          "ALLLAALLLLL",
          O(GIT_PUSH) | O(CREATE_PR),
          true,
          COMMANDS_PERMISSIVE,
          5000000,
          100000,
          10000,
          120 },
        { "database_client",
          "Database client permissions",
          "NNNLNNNNNNN",
          0,
          false,
          COMMANDS_PERMISSIVE,
          2000000,
          100000,
          10000,
          60 },
        { "demo",
          "Demo permissions",
          "ALLLAALLLLL",
          O(WRITE_FILES) | O(EDIT_FILES),
          true,
          COMMANDS_PERMISSIVE,
          2000000,
          100000,
          10000,
          45 },
        { "pr_review", "PR review permissions", "ANNNAALLNNN", 0, true, COMMANDS_DEFAULT, 1500000, 100000, 10000, 30 },
        { "codegen",
          "Code generation permissions (network-isolated)",
          "ALLLAANNLNN",
          0,
          true,
          COMMANDS_PERMISSIVE,
          5000000,
          100000,
          10000,
          60 },
        { "pr_approve",
          "PR approval permissions (CI-gated)",
          "ANNLAALLNLN",
          0,
          true,
          COMMANDS_DEFAULT,
          1000000,
          100000,
          10000,
          15 },
};

static const char *const profile_names[] = {
        "default",         "permissive",  "restrictive", "read_only", "filesystem_readonly", "network_only",
        "web_research",    "code_review", "edit_only",   "local_dev", "fix_issue",           "release",
        "database_client", "demo",        "pr_review",   "codegen",   "pr_approve",          NULL,
};

/* Aliases after folding (lower case, '-' -> '_'): the CLI spellings of spec-permissions §12. */
static const struct {
        const char *alias, *name;
} profile_aliases[] = {
        { "fs_readonly", "filesystem_readonly" },
        { "filesystem", "filesystem_readonly" },
        { "readonly", "read_only" },
        { "network", "network_only" },
        { "research", "web_research" },
        { "codereview", "code_review" },
        { "review", "code_review" },
        { "edit", "edit_only" },
        { "local", "local_dev" },
        { "fixissue", "fix_issue" },
        { "fix", "fix_issue" },
        { "publish", "release" },
        { "db_client", "database_client" },
        { "database", "database_client" },
        { "full", "permissive" },
        { "minimal", "restrictive" },
};

const char *const *policy_profile_names(void) {
        return profile_names;
}

const char *policy_profile_canonical_name(const char *name) {
        char folded[64];
        size_t n;
        if (!name)
                return NULL;
        n = strlen(name);
        if (n == 0 || n >= sizeof(folded))
                return NULL;
        for (size_t i = 0; i <= n; i++) {
                char c = name[i];
                folded[i] = c == '-' ? '_' : (char) tolower((unsigned char) c);
        }
        for (size_t i = 0; i < ELEMENTSOF(profiles); i++)
                if (streq(folded, profiles[i].name))
                        return profiles[i].name;
        for (size_t i = 0; i < ELEMENTSOF(profile_aliases); i++)
                if (streq(folded, profile_aliases[i].alias))
                        return profile_aliases[i].name;
        return NULL;
}

static void add_strings(char ***set, const char *const *items) {
        for (const char *const *s = items; *s; s++)
                string_set_add(set, *s);
}

static Policy *profile_build(const ProfileDef *d) {
        Policy *p = policy_new_empty();
        p->name = xstrdup(d->name);
        free(p->description);
        p->description = xstrdup(d->description);
        int k = capabilities_from_letters(d->caps, &p->capabilities);
        assert(k == 0); /* constant table */
        (void) k;
        p->obligations = d->obligations;
        p->paths.unrestricted = true;
        if (d->block_sensitive)
                add_strings(&p->paths.blocked, policy_block_sensitive);
        switch (d->commands) {
        case COMMANDS_DEFAULT:
                add_strings(&p->commands.allowed, default_allowed);
                break;
        case COMMANDS_RESTRICTIVE:
                add_strings(&p->commands.allowed, restrictive_allowed);
                break;
        case COMMANDS_PERMISSIVE:
                p->commands.unrestricted = true;
                break;
        default:
                assert(false);
        }
        command_policy_default_blocks(&p->commands);
        p->max_usd_micros = d->usd_micros;
        p->max_input_tokens = d->input_tokens;
        p->max_output_tokens = d->output_tokens;
        p->max_duration_usec = d->minutes * 60 * USEC_PER_SEC;

        if (streq(d->name, "fix_issue")) {
                /* "git commit" is a granted capability; make it reachable (see table comment). */
                string_set_add(&p->commands.allowed, "git add");
                string_set_add(&p->commands.allowed, "git commit");
                add_strings(&p->commands.allowed, test_runners);
        } else if (streq(d->name, "pr_approve")) {
                /* The reference gates git_push behind approval but its allowlist then refuses
                 * `git push` even after approval (§13 "interactions"); make the approval mean
                 * something by allowlisting it. */
                string_set_add(&p->commands.allowed, "git push");
        } else if (streq(d->name, "database_client")) {
                static const char *const dbs[] = { "psql", "mysql", "sqlite3", "redis-cli", "mongosh" };
                /* Only these five programs: unrestricted is off, allowed strings are empty. */
                p->commands.unrestricted = false;
                for (size_t i = 0; i < ELEMENTSOF(dbs); i++) {
                        const char *args[] = { "any_remaining", NULL };
                        CommandRule r;
                        command_rule_init(&r, dbs[i], args);
                        command_rules_add(&p->commands.allowed_rules, &r);
                        command_rule_done(&r);
                }
        } else if (streq(d->name, "demo")) {
                static const char *const interp[] = { "bash", "sh",         "zsh",    "fish",
                                                      "pwsh", "powershell", "python", "python3",
                                                      "node", "ruby",       "perl" };
                for (size_t i = 0; i < ELEMENTSOF(interp); i++) {
                        const char *args[] = { "any_remaining", NULL };
                        CommandRule r;
                        command_rule_init(&r, interp[i], args);
                        command_rules_add(&p->commands.blocked_rules, &r);
                        command_rule_done(&r);
                }
        }
        policy_normalize(p);
        return p;
}

int policy_profile_new(const char *name, Policy **ret) {
        const char *canonical = policy_profile_canonical_name(name);
        if (!ret)
                return -EINVAL;
        if (!canonical)
                return -ENOENT;
        for (size_t i = 0; i < ELEMENTSOF(profiles); i++)
                if (streq(profiles[i].name, canonical)) {
                        *ret = profile_build(&profiles[i]);
                        return 0;
                }
        return -ENOENT;
}
