/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Policy product: capabilities x obligations x paths x commands x budget x time, with
 * true lattice operations (meet/join/leq), trifecta normalization (nu), named profiles,
 * strict JSON in / canonical JSON out / SHA-256, and the decision API the tool proxy calls.
 * Everything a Policy is built from (JSON, argv, command strings, paths) is untrusted.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "budget.h"
#include "capability.h"
#include "macro.h"
#include "time-util.h"

/* ---- String sets ------------------------------------------------------------------------ */

/* A sorted, duplicate-free set of strings (strv; NULL = empty). */
typedef char **StringSet;

/* ---- Paths ------------------------------------------------------------------------------ */

typedef struct PathPolicy {
        bool unrestricted; /* true: every path is allowed (subject to blocked); allowed is empty */
        char **allowed;    /* sorted set of globs; used only when !unrestricted; empty = nothing */
        char **blocked;    /* sorted set of globs; any match denies; checked first */
} PathPolicy;

/* ---- Commands --------------------------------------------------------------------------- */

typedef enum ArgPatternType {
        ARG_PATTERN_EXACT,         /* the next argument equals .exact */
        ARG_PATTERN_ANY,           /* some next argument exists */
        ARG_PATTERN_ANY_REMAINING, /* matches immediately, whatever follows */
        _ARG_PATTERN_TYPE_MAX,
        _ARG_PATTERN_TYPE_INVALID = -EINVAL,
} ArgPatternType;

typedef struct ArgPattern {
        ArgPatternType type;
        char *exact; /* only for ARG_PATTERN_EXACT */
} ArgPattern;

typedef struct CommandRule {
        char *program; /* compared with the basename of argv[0] */
        ArgPattern *args;
        size_t n_args;
} CommandRule;

typedef struct CommandRules {
        CommandRule *rules; /* sorted by canonical text, duplicate-free */
        size_t n_rules;
} CommandRules;

typedef struct CommandPolicy {
        bool unrestricted;          /* true: any command passes the allowlist stage */
        char **allowed;             /* word-prefix allowlist strings (sorted set) */
        CommandRules allowed_rules; /* structured allowlist */
        char **blocked;             /* blocklist strings (sorted set) */
        CommandRules blocked_rules; /* structured blocklist */
} CommandPolicy;

/* ---- The product ------------------------------------------------------------------------ */

typedef struct Policy {
        char *name;        /* profile name, or NULL */
        char *description; /* free text, never NULL after construction */
        Capabilities capabilities;
        Obligations obligations; /* operations needing approval */
        PathPolicy paths;
        CommandPolicy commands;
        uint64_t max_usd_micros;         /* budget limit, micro-USD */
        uint64_t max_input_tokens;       /* LLM input tokens */
        uint64_t max_output_tokens;      /* LLM output tokens */
        usec_t max_duration_usec;        /* time window length from pod start; USEC_INFINITY = none */
        bool trifecta;                   /* enforce the trifecta rule in nu (true except by API) */
        struct PolicyCompiled *compiled; /* globs and command words prepared once (policy_compile) */
} Policy;

Policy *policy_free(Policy *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Policy *, policy_free);
/* Deep copy. Never fails (aborts on OOM). */
Policy *policy_copy(const Policy *p);

/* nu: when p->trifecta, add the trifecta obligations. Idempotent, monotone, only adds. Also
 * compiles the policy (policy_compile). */
void policy_normalize(Policy *p);

/* Prepare the path globs and command strings once, so that a decision allocates nothing for
 * them (issue 17). Every constructor does it (through policy_normalize). A caller that changes
 * a path or command list afterwards must call it again; a change the decision functions can
 * see (a list reallocated, grown, shrunk or its last entry replaced) makes them ignore the
 * stale compilation and interpret the lists directly (same verdicts, slower). */
void policy_compile(Policy *p);

/* Lattice: meet = greatest lower bound, join = least upper bound, leq = partial order.
 * Capabilities min/max; obligations union/intersection (+ nu); allowlists intersect/union
 * with "unrestricted" as top; blocklists union/intersection; budget and duration min/max;
 * trifecta = OR / AND. The result's name is NULL and its description "meet(a, b)" /
 * "join(a, b)". Results are normalized. leq ignores name, description and trifecta. */
Policy *policy_meet(const Policy *a, const Policy *b);
Policy *policy_join(const Policy *a, const Policy *b);
bool policy_leq(const Policy *a, const Policy *b);
/* Structural equality of everything but name and description. */
bool policy_equal(const Policy *a, const Policy *b);
/* May a running pod under `current` switch to `next` (a forked pod's handshake)? Only when
 * next grants nothing current does not: policy_leq(next, current), and the trifecta rule
 * kept when current had it (leq ignores that flag). A refusal names the first looser
 * dimension in *ret_why (static text) when ret_why is non-NULL. */
bool policy_narrows(const Policy *current, const Policy *next, const char **ret_why);

/* ---- Profiles --------------------------------------------------------------------------- */

/* Build a named profile. Accepts every name and alias of spec-permissions §12 (nucleus-spec and
 * CLI spellings, case-insensitive, '-' and '_' interchangeable). Returns 0, or -ENOENT for an
 * unknown name. The result is normalized; its name is the canonical profile name. */
int policy_profile_new(const char *name, Policy **ret);
/* The canonical profile names (NULL-terminated, static). */
const char *const *policy_profile_names(void);
/* Canonical name for an alias, or NULL. */
const char *policy_profile_canonical_name(const char *name);

/* ---- JSON ------------------------------------------------------------------------------- */

/* Strict parse (docs/policy.md has the schema). Unknown keys, wrong types, bad enum
 * spellings, over-long lists/strings are errors; *reterr (if non-NULL) gets a malloc'd
 * message naming the JSON path, e.g. "$.paths.blocked[2]: expected a string".
 * The trifecta flag is forced on and the result normalized. Returns 0, or -EINVAL. */
int policy_from_json(const json_t *j, Policy **ret, char **reterr);
/* Convenience: parse text (json_parse_strict, 1 MiB cap) then policy_from_json(). */
int policy_from_json_text(const char *text, size_t n, Policy **ret, char **reterr);
/* JSON object of the policy (sets sorted). New reference. */
json_t *policy_to_json(const Policy *p);
/* Canonical text: policy_to_json() dumped with sorted keys and compact separators. Caller frees. */
char *policy_canonical_json(const Policy *p);
/* Lower-case hex SHA-256 (libsodium) of policy_canonical_json(); 65-byte buffer. Returns 0. */
int policy_sha256(const Policy *p, char ret_hex[static 65]);

/* ---- Decisions -------------------------------------------------------------------------- */

typedef enum PolicyVerdict {
        POLICY_ALLOW,
        POLICY_DENY,
        POLICY_NEEDS_APPROVAL,
        _POLICY_VERDICT_MAX,
        _POLICY_VERDICT_INVALID = -EINVAL,
} PolicyVerdict;

typedef struct PolicyDecision {
        PolicyVerdict verdict;
        const char *kind;    /* NULL on allow; else "insufficient_capability", "path_denied",
                              * "command_denied", "approval_required", "sandbox_escape" (static) */
        Operation operation; /* the operation judged (approval tokens name it) */
        char *message;       /* human text naming the rule; always set; owned */
} PolicyDecision;

void policy_decision_done(PolicyDecision *d);
const char *policy_verdict_to_string(PolicyVerdict v); /* "allow", "deny", "needs_approval" */
PolicyVerdict policy_verdict_from_string(const char *s);

typedef enum PathAccess {
        PATH_ACCESS_READ,  /* read_files */
        PATH_ACCESS_WRITE, /* write_files: create a new file or directory */
        PATH_ACCESS_EDIT,  /* edit_files: modify, truncate or remove an existing one */
        PATH_ACCESS_GLOB,  /* glob_search: list/match names */
        PATH_ACCESS_GREP,  /* grep_search: read contents for search */
        _PATH_ACCESS_MAX,
        _PATH_ACCESS_INVALID = -EINVAL,
} PathAccess;

Operation path_access_to_operation(PathAccess a);

/* Capability + obligation check for op alone: never -> deny (insufficient_capability);
 * op in obligations -> needs_approval (approval_required); else allow. Returns 0, or
 * -EINVAL on bad arguments. *ret must be freed with policy_decision_done(). */
int policy_check_operation(const Policy *p, Operation op, PolicyDecision *ret);

/* Judge access to relpath, a path ALREADY resolved relative to the workspace root (the proxy
 * resolves with openat2). relpath is normalized lexically ('.' and empty components dropped);
 * an absolute path or a '..' climbing above the root is denied as sandbox_escape. Order:
 * path syntax, capability, path rules (blocked, then allowed), obligation. */
int policy_check_path(const Policy *p, const char *relpath, PathAccess access, PolicyDecision *ret);
/* Path rules only (blocked/allowed), no capability: for filtering search results. */
bool policy_path_allowed(const Policy *p, const char *relpath);

/* Judge an argv the proxy will exec directly (no shell). Order is documented in
 * docs/policy.md: syntax, unwrap (wrappers, path-qualified programs), inline-code classes,
 * operation (git push/commit, gh pr create, else run_bash), capability, command component
 * (blocked rules/strings on every layer, allowlist on what really runs), obligation. */
int policy_check_command(const Policy *p, char *const *argv, PolicyDecision *ret);
/* Same for a command string: words_split() first (no expansion). Unterminated quotes and an
 * empty command are denied; shell syntax outside quotes (separators, redirections,
 * substitution, newlines) is denied unless the policy grants a shell. */
int policy_check_command_string(const Policy *p, const char *command, PolicyDecision *ret);

/* True if the policy grants a shell: run_bash >= low_risk and the command component allows
 * `sh -c <code>`. Inline-code commands (sh -c, python3 -c, find -exec sh, git -c ...) need it. */
bool policy_grants_shell(const Policy *p);

/* False for environment variable names that make a child run other code or leak data
 * (LD_*, GIT_*, BASH_ENV, ENV, PAGER, EDITOR, NODE_OPTIONS, PYTHON*, PERL5*, ...). The proxy
 * builds the child env from nothing and may pass only names for which this is true. */
bool policy_env_name_allowed(const char *name);

/* True if a program of this command reads commands that can run shell commands from
 * its standard input (psql `\!`, mysql `system`), also under wrappers; true for anything the
 * analysis cannot parse. The library never sees the request's stdin: the proxy must refuse a
 * request that carries stdin for such a command unless policy_grants_shell(p). */
bool policy_command_stdin_is_code(const Policy *p, char *const *argv);

/* True if git runs in this command (directly, as a git-* program, under wrappers, by find
 * -exec, ...) or the analysis cannot tell. The proxy checks every repository's configuration
 * against the git configuration allow list (git-config.h) before such a command. */
bool policy_command_runs_git(const Policy *p, char *const *argv);

/* The fixed "NAME=VALUE" list (NULL-terminated, static) the proxy must add to the
 * environment of every command whose program is git (also git-* programs and git under a
 * wrapper), after building the env from nothing. It ignores system/global config and pins, via
 * GIT_CONFIG_COUNT/KEY_n/VALUE_n (which override every config file), each setting that makes
 * git run a program: core.fsmonitor, core.hooksPath, pagers, editors, core.sshCommand,
 * askpass, diff.external, credential helpers, uploadpack.packObjectsHook, protocol.ext, gpg,
 * and safe.bareRepository=explicit (no discovery of agent-built bare repositories).
 * Notes: it does not pin per-driver keys (filter.<x>.*, diff.<x>.command, merge.<x>.driver)
 * that only repository config can name; repository config stays write-protected by the path
 * policy ('.git' components) and the command analysis (git config, --output). The proxy
 * should also set GIT_CEILING_DIRECTORIES to the workspace's parent. */
const char *const *policy_git_hardening_env(void);

/* Like policy_check_command(), with the command's working directory (relative to the
 * workspace root; NULL or "" = the root) so that argument words naming blocked paths
 * (`cat .env`, `git show HEAD:.env`) are judged relative to it (best effort; docs/policy.md). */
int policy_check_command_at(const Policy *p, char *const *argv, const char *cwd, PolicyDecision *ret);

/* ---- Installed implementations ---------------------------------------------------------- */

/* The implementation a grammar describes. Other implementations (busybox, toybox) have other
 * option grammars: a program installed as one of those is refused (fail closed). */
typedef enum PolicyImpl {
        POLICY_IMPL_NATIVE,  /* the upstream program (GNU, OpenSSH, CPython, ...) */
        POLICY_IMPL_BUSYBOX, /* a busybox applet */
        POLICY_IMPL_TOYBOX,  /* a toybox applet */
        POLICY_IMPL_UNKNOWN, /* not recognised */
        _POLICY_IMPL_MAX,
        _POLICY_IMPL_INVALID = -EINVAL,
} PolicyImpl;

/* Tell the command analysis which implementation of program (a basename) is installed; the
 * proxy resolves every program policy_impl_wants() names at configure time. Once anything has
 * been set, a program with an option grammar that was not set counts as POLICY_IMPL_UNKNOWN and
 * is refused. Process-wide (one proxy judges for one image). */
void policy_impl_set(const char *program, PolicyImpl impl);
/* Forget every setting (tests). */
void policy_impl_reset(void);
/* What the analysis assumes for program: NATIVE while nothing was ever set (host-side checks). */
PolicyImpl policy_impl_get(const char *program);
/* True for a basename whose options the analysis parses by a grammar (python3.11 included). */
bool policy_impl_wants(const char *program);
const char *policy_impl_to_string(PolicyImpl i);
