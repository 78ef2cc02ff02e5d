/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command decisions. An argv (or a command string, split without expansion) is untrusted:
 * it is unwrapped (env, nice, timeout, ..., path-qualified and busybox programs) down to what
 * really runs, classified (git push/commit, gh pr create, else run_bash), scanned for
 * argument-borne execution (shells and interpreters with inline code, git -c, find -exec,
 * tar --to-command, ...), and judged against capabilities, the command component and
 * obligations. docs/policy.md documents the order. Fail closed on anything unparsed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "alloc-util.h"
#include "policy-internal.h"
#include "string-util.h"
#include "words.h"

#define ANALYSIS_MAX_DEPTH 8U
#define ANALYSIS_MAX_EXECS 16U
#define ANALYSIS_MAX_LAYERS 16U

/* One program that will run: every wrapper layer (argv[0] reduced to its basename) for the
 * blocklist, and the innermost argv (what really runs) for the allowlist. */
typedef struct Exec {
        char **layers[ANALYSIS_MAX_LAYERS];
        size_t n_layers;
        char **effective;  /* borrowed from layers */
        char *raw_program; /* argv[0] of the innermost layer as given (owned) */
        Operation op;
} Exec;

typedef struct Analysis {
        Exec execs[ANALYSIS_MAX_EXECS];
        size_t n_execs;
        char *inline_reason; /* set: code not visible as argv runs (needs a shell grant) */
        char *fail_reason;   /* set: cannot be analysed at all (always denied) */
} Analysis;

static void analysis_done(Analysis *a) {
        for (size_t i = 0; i < a->n_execs; i++) {
                for (size_t k = 0; k < a->execs[i].n_layers; k++)
                        strv_free(a->execs[i].layers[k]);
                free(a->execs[i].raw_program);
        }
        free(a->inline_reason);
        free(a->fail_reason);
}

_printf_(2, 3) static void set_inline(Analysis *a, const char *fmt, ...) {
        va_list ap;
        if (a->inline_reason)
                return;
        va_start(ap, fmt);
        if (vasprintf(&a->inline_reason, fmt, ap) < 0)
                abort();
        va_end(ap);
}

_printf_(2, 3) static void set_fail(Analysis *a, const char *fmt, ...) {
        va_list ap;
        if (a->fail_reason)
                return;
        va_start(ap, fmt);
        if (vasprintf(&a->fail_reason, fmt, ap) < 0)
                abort();
        va_end(ap);
}

static const char *base_name(const char *p) {
        const char *s = strrchr(p, '/');
        return s ? s + 1 : p;
}

static bool in_list(const char *s, const char *const *l) {
        for (; *l; l++)
                if (streq(s, *l))
                        return true;
        return false;
}

/* "-abc" style cluster (single dash, not "--", not "-"). */
static bool is_short_cluster(const char *w) {
        return w[0] == '-' && w[1] != 0 && w[1] != '-';
}

/* A short-option cluster containing letter c before any character that would start an
 * attached argument (we cannot know which options take arguments: over-approximate). */
static bool cluster_has(const char *w, char c) {
        return is_short_cluster(w) && strchr(w + 1, c) != NULL;
}

/* Long option "--name[=value]" whose name is a prefix (>= 3 chars, getopt abbreviation) of
 * one of the names in l, or equal to one. */
static bool long_opt_abbrev(const char *w, const char *const *l) {
        if (!startswith(w, "--"))
                return false;
        const char *n = w + 2;
        size_t len = strcspn(n, "=");
        if (len < 2)
                return false;
        for (; *l; l++)
                if (strlen(*l) >= len && strncmp(*l, n, len) == 0)
                        return true;
        return false;
}

static const char *const shells[] = {
        "sh",    "bash",  "dash", "zsh",        "ksh",        "mksh", "pdksh", "oksh",
        "ash",   "rbash", "yash", "posh",       "csh",        "tcsh", "fish",  "elvish",
        "xonsh", "nu",    "pwsh", "powershell", "busybox-sh", NULL,
};

/* Programs that run another program in ways we do not parse, or change identity/namespace:
 * always treated as inline execution. */
static const char *const opaque_executors[] = {
        "sudo",        "doas",
        "su",          "runuser",
        "pkexec",      "xargs",
        "parallel",    "watch",
        "script",      "chroot",
        "unshare",     "nsenter",
        "strace",      "ltrace",
        "gdb",         "lldb",
        "valgrind",    "firejail",
        "bwrap",       "systemd-run",
        "ssh-agent",   "dbus-run-session",
        "fakeroot",    "catchsegv",
        "prlimit",     "cgexec",
        "numactl",     "expect",
        "sg",          "newgrp",
        "screen",      "tmux",
        "at",          "batch",
        "crontab",     "eatmydata",
        "unbuffer",    "torsocks",
        "proxychains", "proxychains4",
        "chrt",        "taskset",
        "flock",       "setpriv",
        "capsh",       "setarch",
        "linux32",     "linux64",
        "scl",         "direnv",
        "entr",        "inotifywait",
        "vi",          "vim",
        "nvim",        "view",
        "ex",          "rview",
        "rvim",        "emacs",
        "ed",          "mg",
        "nano",        "pico",
        "busybox-vi",  "dosbox",
        "qemu-user",   "socat",
        "nc",          "ncat",
        "netcat",      "telnet",
        NULL,
};

static void analyze(const Policy *p, char *const *argv, unsigned depth, Analysis *a);

/* Push a new Exec with its first layer. Returns NULL when over the limits. */
static Exec *exec_new(Analysis *a) {
        if (a->n_execs >= ANALYSIS_MAX_EXECS) {
                set_fail(a, "too many nested commands");
                return NULL;
        }
        Exec *e = &a->execs[a->n_execs++];
        *e = (Exec){ .op = OPERATION_RUN_BASH };
        return e;
}

static char **layer_of(char *const *argv) {
        char **l = strv_copy(argv);
        if (l && l[0]) {
                char *b = xstrdup(base_name(l[0]));
                free(l[0]);
                l[0] = b;
        }
        return l;
}

/* Skip options of a wrapper. opts_with_arg: options taking a separate argument (short "-n"
 * or long "--adjustment"); "--x=y" and "-nX" forms are skipped as one word. Returns the index
 * of the first non-option word. Unknown options starting with '-' are skipped too. */
static size_t skip_options(char *const *argv, size_t i, const char *const *opts_with_arg) {
        size_t n = strv_length(argv);
        while (i < n) {
                const char *w = argv[i];
                if (streq(w, "--"))
                        return i + 1;
                if (w[0] != '-' || w[1] == 0)
                        return i;
                if (in_list(w, opts_with_arg))
                        i += 2;
                else
                        i += 1;
        }
        return NUCLEUS_MIN(i, n);
}

static bool git_dangerous_config_key(const char *kv) {
        static const char *const prefixes[] = {
                "alias.",     "core.",      "filter.",   "diff.",        "merge.",   "credential", "gpg.",
                "pager.",     "sequence.",  "include",   "uploadpack.",  "remote.",  "protocol.",  "url.",
                "sendemail.", "mergetool.", "difftool.", "interactive.", "web.",     "browser.",   "man.",
                "ssh.",       "instaweb.",  "trailer.",  "submodule.",   "receive.", "hook.",      "init.",
                "safe.",      "http.",      "transfer.", "fetch.",       "push.",    "commit.",    "tag.",
                "log.",       "format.",    "notes.",    "rebase.",      NULL,
        };
        for (const char *const *pp = prefixes; *pp; pp++)
                if (strncasecmp(kv, *pp, strlen(*pp)) == 0)
                        return true;
        return false;
}

static void analyze_git(const Policy *p, char *const *argv, Exec *e, Analysis *a) {
        static const char *const flags[] = {
                "-p",
                "--paginate",
                "-P",
                "--no-pager",
                "--bare",
                "--no-replace-objects",
                "--literal-pathspecs",
                "--glob-pathspecs",
                "--noglob-pathspecs",
                "--icase-pathspecs",
                "--no-optional-locks",
                "--no-advice",
                "--html-path",
                "--man-path",
                "--info-path",
                "--version",
                "-v",
                "--help",
                "-h",
                "--exec-path",
                NULL,
        };
        size_t n = strv_length(argv), i = 1;
        while (i < n && argv[i][0] == '-') {
                const char *w = argv[i];
                if (streq(w, "-C")) {
                        i += 2;
                        continue;
                }
                if (streq(w, "-c") || streq(w, "--config-env") || startswith(w, "--config-env=") ||
                    startswith(w, "-c")) {
                        set_inline(a, "'git %s' sets configuration that can make git run programs", w);
                        i += streq(w, "-c") || streq(w, "--config-env") ? 2 : 1;
                        continue;
                }
                if (startswith(w, "--exec-path=") || streq(w, "--git-dir") || startswith(w, "--git-dir=") ||
                    streq(w, "--work-tree") || startswith(w, "--work-tree=")) {
                        set_inline(a, "'git %s' points git at other programs or configuration", w);
                        i += strchr(w, '=') || streq(w, "--exec-path") ? 1 : 2;
                        continue;
                }
                if (streq(w, "--namespace") || streq(w, "--super-prefix") || streq(w, "--attr-source")) {
                        i += 2;
                        continue;
                }
                if (startswith(w, "--namespace=") || startswith(w, "--super-prefix=") ||
                    startswith(w, "--attr-source=") || startswith(w, "--list-cmds=") || in_list(w, flags)) {
                        i++;
                        continue;
                }
                set_fail(a, "unknown git option '%s'", w);
                return;
        }
        /* Effective argv: "git" + subcommand and its arguments, global options removed. */
        char **eff = xnew0(char *, 1);
        strv_extend(&eff, "git");
        for (size_t k = i; k < n; k++)
                strv_extend(&eff, argv[k]);
        if (e->n_layers < ANALYSIS_MAX_LAYERS)
                e->layers[e->n_layers++] = eff;
        else {
                strv_free(eff);
                set_fail(a, "too many wrapper layers");
                return;
        }
        e->effective = eff; /* e->raw_program keeps the program as given (set by analyze()) */
        if (i >= n)
                return;
        const char *sub = argv[i];
        if (streq(sub, "push"))
                e->op = OPERATION_GIT_PUSH;
        else if (streq(sub, "commit"))
                e->op = OPERATION_GIT_COMMIT;

        static const char *const exec_opts[] = {
                "upload-pack", "receive-pack",        "exec", "template", "config",
                "extcmd",      "open-files-in-pager", "tool", NULL
        };
        for (size_t k = i + 1; k < n; k++) {
                const char *w = argv[k];
                if (streq(w, "--"))
                        break;
                if (long_opt_abbrev(w, exec_opts) && !(streq(sub, "commit") && startswith(w, "--template"))) {
                        set_inline(a, "'git %s %s' makes git run a program", sub, w);
                        return;
                }
                if ((streq(sub, "rebase") && (streq(w, "-x") || cluster_has(w, 'x'))) ||
                    (in_list(sub,
                             (const char *const[]){ "clone", "fetch", "pull", "ls-remote", "archive", NULL }) &&
                     (streq(w, "-u") || streq(w, "-c"))) ||
                    (streq(sub, "grep") && (streq(w, "-O") || startswith(w, "-O"))) ||
                    (streq(sub, "config") &&
                     (git_dangerous_config_key(w) || streq(w, "-e") || streq(w, "--edit")))) {
                        set_inline(a, "'git %s %s' can make git run a program", sub, w);
                        return;
                }
        }
        if (in_list(sub,
                    (const char *const[]){
                            "difftool", "mergetool", "filter-branch", "instaweb", "daemon", "web--browse", NULL }) ||
            (streq(sub, "bisect") && i + 1 < n && streq(argv[i + 1], "run")) ||
            (streq(sub, "submodule") && i + 1 < n &&
             in_list(argv[i + 1], (const char *const[]){ "foreach", NULL })))
                set_inline(a, "'git %s' runs commands given in its arguments or configuration", sub);
}

static bool python_like(const char *prog) {
        return startswith(prog, "python") || startswith(prog, "pypy");
}

/* Interpreters: inline code flags (exact words, or letters inside short clusters). */
static void analyze_interpreter(const char *prog, char *const *argv, Analysis *a) {
        size_t n = strv_length(argv);
        const char *letters = NULL;
        const char *const *longs = NULL;
        const char *const *with_arg = NULL;
        bool script_needed = true;

        static const char *const py_arg[] = { "-W", "-X", "-Q", NULL };
        static const char *const node_long[] = { "eval", "print", "input-type", NULL };
        static const char *const node_arg[] = {
                "-r", "--require", "--import", "--loader", "--experimental-loader", NULL
        };
        static const char *const php_long[] = { "run",         "process-begin", "process-code",
                                                "process-end", "interactive",   NULL };
        static const char *const julia_long[] = { "eval", "print", NULL };
        static const char *const r_long[] = { "expr", NULL };
        static const char *const awk_long[] = { "source", NULL };
        static const char *const ruby_arg[] = { "-r", "-I", "-C", NULL };
        static const char *const perl_arg[] = { "-I", "-M", "-m", NULL };

        if (python_like(prog)) {
                letters = "c";
                with_arg = py_arg;
        } else if (streq(prog, "perl") || startswith(prog, "perl5")) {
                letters = "eE";
                with_arg = perl_arg;
        } else if (streq(prog, "ruby") || streq(prog, "irb") || streq(prog, "jruby")) {
                letters = "e";
                with_arg = ruby_arg;
        } else if (streq(prog, "node") || streq(prog, "nodejs") || streq(prog, "bun")) {
                letters = "ep";
                longs = node_long;
                with_arg = node_arg;
        } else if (streq(prog, "deno")) {
                if (n >= 2 && (streq(argv[1], "eval") || streq(argv[1], "repl")))
                        set_inline(a, "'deno %s' runs code given in its arguments", argv[1]);
                return;
        } else if (startswith(prog, "php")) {
                letters = "rBREa";
                longs = php_long;
        } else if (startswith(prog, "lua") || streq(prog, "luajit")) {
                letters = "e";
        } else if (streq(prog, "julia")) {
                letters = "eE";
                longs = julia_long;
        } else if (streq(prog, "Rscript") || streq(prog, "R")) {
                letters = "e";
                longs = r_long;
        } else if (streq(prog, "osascript")) {
                letters = "e";
        } else if (streq(prog, "tclsh") || streq(prog, "wish") || startswith(prog, "tclsh")) {
                letters = "";
        } else if (in_list(prog, (const char *const[]){ "awk", "gawk", "mawk", "nawk", "busybox-awk", NULL })) {
                /* The program text is code unless it comes from -f FILE. */
                for (size_t i = 1; i < n; i++)
                        if (streq(argv[i], "-f") || startswith(argv[i], "--file"))
                                script_needed = false;
                if (script_needed)
                        set_inline(a, "'%s' runs the program text given in its arguments", prog);
                else
                        for (size_t i = 1; i < n; i++)
                                if (streq(argv[i], "-e") || long_opt_abbrev(argv[i], awk_long))
                                        set_inline(
                                                a,
                                                "'%s %s' runs program text from its arguments",
                                                prog,
                                                argv[i]);
                return;
        } else
                return;

        size_t i = 1;
        for (; i < n; i++) {
                const char *w = argv[i];
                if (streq(w, "--")) {
                        i++;
                        break;
                }
                if (streq(w, "-"))
                        break; /* script from stdin */
                if (w[0] != '-')
                        break;
                if (python_like(prog) && (streq(w, "-m") || (startswith(w, "-m") && w[2]))) {
                        return; /* module run: a file-based program */
                }
                if (longs && long_opt_abbrev(w, longs)) {
                        set_inline(a, "'%s %s' runs code given in its arguments", prog, w);
                        return;
                }
                if (is_short_cluster(w))
                        for (const char *l = letters; *l; l++)
                                if (strchr(w + 1, *l)) {
                                        set_inline(a, "'%s %s' runs code given in its arguments", prog, w);
                                        return;
                                }
                if (with_arg && in_list(w, with_arg))
                        i++;
        }
        if (i >= n || streq(argv[i], "-"))
                set_inline(a, "'%s' without a script file reads code from its input", prog);
}

static void analyze_shell(const char *prog, char *const *argv, Analysis *a) {
        size_t n = strv_length(argv), i = 1;
        bool pwsh = streq(prog, "pwsh") || streq(prog, "powershell");
        for (; i < n; i++) {
                const char *w = argv[i];
                if (streq(w, "--") || streq(w, "-")) {
                        i++;
                        break;
                }
                if (w[0] != '-' && w[0] != '+')
                        break;
                if (pwsh) {
                        static const char *const pw[] = {
                                "-c",   "-command", "-e",    "-ec", "-encodedcommand", "-commandwithargs",
                                "-cwa", "-f",       "-file", NULL
                        };
                        for (const char *const *x = pw; *x; x++)
                                if (strcasecmp(w, *x) == 0) {
                                        set_inline(a, "'%s %s' runs code given in its arguments", prog, w);
                                        return;
                                }
                        continue;
                }
                if (startswith(w, "--command") || startswith(w, "--init-command") ||
                    (w[1] != '-' &&
                     (strchr(w + 1, 'c') || strchr(w + 1, 's') || strchr(w + 1, 'i') ||
                      (streq(prog, "fish") && strchr(w + 1, 'C'))))) {
                        set_inline(a, "'%s %s' runs code given in its arguments or input", prog, w);
                        return;
                }
                if (streq(w, "-o") || streq(w, "+o") || streq(w, "-O") || streq(w, "+O") ||
                    streq(w, "--rcfile") || streq(w, "--init-file"))
                        i++;
        }
        if (i >= n && !pwsh)
                set_inline(a, "'%s' without a script file reads commands from its input", prog);
}

static void analyze_find(const Policy *p, char *const *argv, unsigned depth, Analysis *a) {
        static const char *const execs[] = { "-exec", "-execdir", "-ok", "-okdir", NULL };
        static const char *const writes[] = { "-fprint", "-fprint0", "-fprintf", "-fls", "-delete", NULL };
        size_t n = strv_length(argv);
        for (size_t i = 1; i < n; i++) {
                if (in_list(argv[i], writes)) {
                        set_inline(a, "'find %s' writes or deletes files outside the path policy", argv[i]);
                        continue;
                }
                if (!in_list(argv[i], execs))
                        continue;
                size_t j = i + 1;
                while (j < n && !streq(argv[j], ";") && !streq(argv[j], "+"))
                        j++;
                if (j == i + 1) {
                        set_fail(a, "'find %s' without a command", argv[i]);
                        return;
                }
                _cleanup_strv_free_ char **inner = xnew0(char *, 1);
                for (size_t k = i + 1; k < j; k++)
                        strv_extend(&inner, argv[k]);
                analyze(p, inner, depth + 1, a);
                i = j;
        }
}

static void analyze_tar(char *const *argv, Analysis *a) {
        static const char *const bad_long[] = { "checkpoint-action",    "to-command",
                                                "use-compress-program", "info-script",
                                                "new-volume-script",    "rsh-command",
                                                "rmt-command",          NULL };
        size_t n = strv_length(argv);
        for (size_t i = 1; i < n; i++) {
                const char *w = argv[i];
                if (streq(w, "--"))
                        break;
                if (long_opt_abbrev(w, bad_long) || (i == 1 && w[0] != '-' && strpbrk(w, "IF")) ||
                    cluster_has(w, 'I') || cluster_has(w, 'F')) {
                        set_inline(a, "'tar %s' makes tar run a program", w);
                        return;
                }
        }
}

static void analyze_misc(const char *prog, char *const *argv, Analysis *a) {
        size_t n = strv_length(argv);
        for (size_t i = 1; i < n; i++) {
                const char *w = argv[i];
                bool bad = false;
                if (streq(prog, "rsync"))
                        bad = streq(w, "-e") || cluster_has(w, 'e') || startswith(w, "--rsh") ||
                                startswith(w, "--rsync-path");
                else if (in_list(prog, (const char *const[]){ "ssh", "scp", "sftp", "slogin", NULL }))
                        bad = startswith(w, "-o") || startswith(w, "-F") || startswith(w, "-S") ||
                                cluster_has(w, 'o') || cluster_has(w, 'F') || cluster_has(w, 'S');
                else if (streq(prog, "zip"))
                        bad = streq(w, "-TT") || startswith(w, "--unzip-command");
                else if (streq(prog, "man"))
                        bad = startswith(w, "-P") || startswith(w, "--pager") || startswith(w, "-H") ||
                                startswith(w, "--html");
                else if (in_list(prog, (const char *const[]){ "less", "more", "most", NULL }))
                        bad = w[0] == '+';
                else if (streq(prog, "make") || streq(prog, "gmake"))
                        bad = startswith(w, "--eval");
                else if (in_list(prog, (const char *const[]){ "npx", "npm", "pnpm", "yarn", NULL }))
                        bad = streq(w, "-c") || startswith(w, "--call");
                else if (streq(prog, "cargo"))
                        bad = streq(w, "--config") || startswith(w, "--config=");
                else if (streq(prog, "gh"))
                        bad = (streq(w, "alias") || streq(w, "extension") || streq(w, "ext")) && i == 1;
                else if (streq(prog, "sed"))
                        bad = false;
                if (bad) {
                        set_inline(a, "'%s %s' makes %s run a program", prog, w, prog);
                        return;
                }
        }
}

static void analyze(const Policy *p, char *const *argv, unsigned depth, Analysis *a) {
        size_t n = strv_length(argv);
        if (depth > ANALYSIS_MAX_DEPTH) {
                set_fail(a, "too many nested wrappers");
                return;
        }
        if (n == 0 || isempty(argv[0])) {
                set_fail(a, "empty program name");
                return;
        }
        Exec *e = exec_new(a);
        if (!e)
                return;
        for (;;) {
                if (e->n_layers >= ANALYSIS_MAX_LAYERS - 1) {
                        set_fail(a, "too many wrapper layers");
                        return;
                }
                char **layer = layer_of(argv);
                e->layers[e->n_layers++] = layer;
                e->effective = layer;
                free(e->raw_program);
                e->raw_program = xstrdup(argv[0]);
                n = strv_length(argv);
                const char *prog = layer[0];
                size_t next = 0; /* index of the wrapped command in argv; 0 = not a wrapper */

                if (isempty(prog)) {
                        set_fail(a, "empty program name");
                        return;
                }
                if (startswith(prog, "ld-linux") || startswith(prog, "ld.so") || startswith(prog, "ld-musl")) {
                        set_inline(a, "'%s' (the dynamic loader) runs arbitrary programs", prog);
                        return;
                }
                if (streq(prog, "busybox") || streq(prog, "toybox")) {
                        if (n < 2)
                                return;
                        next = 1;
                } else if (streq(prog, "env")) {
                        size_t i = 1;
                        while (i < n) {
                                const char *w = argv[i];
                                if (streq(w, "--")) {
                                        i++;
                                        break;
                                }
                                if (streq(w, "-S") || startswith(w, "-S") || startswith(w, "--split-string") ||
                                    (is_short_cluster(w) && strchr(w, 'S'))) {
                                        set_inline(a, "'env %s' splits a string into a command", w);
                                        return;
                                }
                                if (streq(w, "-u") || streq(w, "--unset") || streq(w, "-C") ||
                                    streq(w, "--chdir")) {
                                        i += 2;
                                        continue;
                                }
                                if (w[0] == '-') {
                                        i++;
                                        continue;
                                }
                                const char *eq = strchr(w, '=');
                                if (!eq)
                                        break;
                                _cleanup_free_ char *name = xstrndup(w, (size_t) (eq - w));
                                if (!policy_env_name_allowed(name)) {
                                        _cleanup_free_ char *vis = string_make_visible(name);
                                        set_inline(
                                                a,
                                                "'env %s=...' sets a variable that can make programs run "
                                                "other code",
                                                vis);
                                }
                                i++;
                        }
                        next = i < n ? i : 0;
                } else if (streq(prog, "nice")) {
                        next = skip_options(argv, 1, (const char *const[]){ "-n", "--adjustment", NULL });
                } else if (streq(prog, "timeout")) {
                        size_t i = skip_options(
                                argv, 1, (const char *const[]){ "-s", "--signal", "-k", "--kill-after", NULL });
                        next = i < n ? i + 1 : n; /* skip DURATION */
                } else if (streq(prog, "nohup")) {
                        next = skip_options(argv, 1, (const char *const[]){ NULL });
                } else if (streq(prog, "stdbuf")) {
                        next = skip_options(argv, 1, (const char *const[]){ "-i", "-o", "-e", NULL });
                } else if (streq(prog, "setsid")) {
                        next = skip_options(argv, 1, (const char *const[]){ NULL });
                } else if (streq(prog, "command")) {
                        next = skip_options(argv, 1, (const char *const[]){ NULL });
                } else if (streq(prog, "exec")) {
                        next = skip_options(argv, 1, (const char *const[]){ "-a", NULL });
                } else if (streq(prog, "ionice")) {
                        next = skip_options(
                                argv, 1, (const char *const[]){ "-c", "-n", "--class", "--classdata", NULL });
                } else if (streq(prog, "time")) {
                        for (size_t i = 1; i < n && argv[i][0] == '-'; i++)
                                if (startswith(argv[i], "-o") || startswith(argv[i], "--output") ||
                                    startswith(argv[i], "-a") || startswith(argv[i], "--append")) {
                                        set_inline(
                                                a, "'time %s' writes a file named in its arguments", argv[i]);
                                        return;
                                }
                        next = skip_options(argv, 1, (const char *const[]){ "-f", "--format", NULL });
                } else if (in_list(prog, opaque_executors)) {
                        set_inline(a, "'%s' runs other commands in a way Nucleus does not analyse", prog);
                        return;
                } else if (in_list(prog, shells)) {
                        analyze_shell(prog, argv, a);
                        return;
                } else if (startswith(prog, "git-") && prog[4]) {
                        /* git's dashed programs (/usr/lib/git-core/git-push) are the subcommand:
                         * judge `git-push x` as `git push x`. */
                        _cleanup_strv_free_ char **g = xnew0(char *, 1);
                        strv_extend(&g, "git");
                        strv_extend(&g, prog + 4);
                        for (size_t k = 1; k < n; k++)
                                strv_extend(&g, argv[k]);
                        analyze_git(p, g, e, a);
                        return;
                } else if (streq(prog, "git")) {
                        /* analyze_git adds the effective layer itself. */
                        analyze_git(p, argv, e, a);
                        return;
                } else if (streq(prog, "gh")) {
                        if (n >= 3 && streq(argv[1], "pr") && streq(argv[2], "create"))
                                e->op = OPERATION_CREATE_PR;
                        analyze_misc(prog, argv, a);
                        return;
                } else if (streq(prog, "find") || streq(prog, "bfs")) {
                        analyze_find(p, argv, depth, a);
                        return;
                } else if (streq(prog, "tar") || streq(prog, "bsdtar") || streq(prog, "gtar")) {
                        analyze_tar(argv, a);
                        return;
                } else {
                        analyze_interpreter(prog, argv, a);
                        analyze_misc(prog, argv, a);
                        return;
                }

                if (next == 0 || next >= n)
                        return; /* wrapper without a command: judged as itself */
                argv = argv + next;
                if (++depth > ANALYSIS_MAX_DEPTH) {
                        set_fail(a, "too many nested wrappers");
                        return;
                }
        }
}

/* ---- the command component ---- */

static bool short_letters_cover(char *const *words, size_t from, const char *letters) {
        for (const char *l = letters; *l; l++) {
                bool found = false;
                char want = *l == 'R' ? 'r' : *l;
                for (size_t j = from; words[j] && !found; j++) {
                        const char *w = words[j];
                        if (streq(w, "--"))
                                break;
                        if (is_short_cluster(w)) {
                                for (const char *c = w + 1; *c && !found; c++)
                                        found = (*c == 'R' ? 'r' : *c) == want;
                        } else if (want == 'r' && streq(w, "--recursive"))
                                found = true;
                        else if (want == 'f' && streq(w, "--force"))
                                found = true;
                }
                if (!found)
                        return false;
        }
        return true;
}

static bool blocked_word_matches(const char *bw, bool last, char *const *words, size_t j) {
        const char *w = words[j];
        if (streq(w, bw))
                return true;
        if ((last || endswith(bw, "=")) && startswith(w, bw))
                return true;
        if (is_short_cluster(bw) && (is_short_cluster(w) || startswith(w, "--")) &&
            bw[strspn(bw + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") + 1] == 0)
                return short_letters_cover(words, j, bw + 1);
        return false;
}

/* Blocked string s against one layer: single word = any word equal; several words = an
 * in-order subsequence (last word and "x=" words match as prefixes; "-rf" matches any
 * spelling of those short flags: -fr, -r -f, --recursive --force). */
static bool blocked_string_matches(const char *s, char *const *words) {
        _cleanup_strv_free_ char **bw = NULL;
        if (words_split(s, &bw, NULL) < 0 || !bw[0])
                return false;
        size_t k = strv_length(bw), pos = 0;
        if (k == 1)
                return strv_contains(words, bw[0]);
        for (size_t i = 0; i < k; i++) {
                bool found = false;
                for (; words[pos]; pos++)
                        if (blocked_word_matches(bw[i], i == k - 1, words, pos)) {
                                found = true;
                                pos++;
                                break;
                        }
                if (!found)
                        return false;
        }
        return true;
}

static bool allowed_string_matches(const char *s, char *const *words) {
        _cleanup_strv_free_ char **aw = NULL;
        if (words_split(s, &aw, NULL) < 0 || !aw[0])
                return false;
        for (size_t i = 0; aw[i]; i++)
                if (!words[i] || !streq(words[i], aw[i]))
                        return false;
        return true;
}

/* A program named without '/' (found on the proxy's PATH) or by an absolute path directly in a
 * system directory. Relative paths and other directories may be workspace files. */
static bool program_path_trusted(const char *prog) {
        static const char *const dirs[] = { "/bin/",
                                            "/sbin/",
                                            "/usr/bin/",
                                            "/usr/sbin/",
                                            "/usr/local/bin/",
                                            "/usr/local/sbin/",
                                            "/usr/lib/git-core/",
                                            "/usr/libexec/git-core/",
                                            NULL };
        if (!prog)
                return true; /* synthetic argv (policy_grants_shell) */
        if (!strchr(prog, '/'))
                return true;
        for (const char *const *d = dirs; *d; d++) {
                const char *rest = startswith(prog, *d);
                if (rest && *rest && !strchr(rest, '/') && !streq(rest, "..") && !streq(rest, "."))
                        return true;
        }
        return false;
}

/* Judge one Exec against the command component. On denial returns false and a malloc'd
 * reason in *ret_reason. */
static bool command_component_allows(const CommandPolicy *c, const Exec *e, char **ret_reason) {
        for (size_t l = 0; l < e->n_layers; l++) {
                for (size_t r = 0; r < c->blocked_rules.n_rules; r++)
                        if (command_rule_matches(&c->blocked_rules.rules[r], e->layers[l])) {
                                if (asprintf(
                                            ret_reason,
                                            "matches commands.blocked_rules entry for '%s'",
                                            c->blocked_rules.rules[r].program) < 0)
                                        abort();
                                return false;
                        }
                STRV_FOREACH(s, c->blocked)
                        if (blocked_string_matches(*s, e->layers[l])) {
                                if (asprintf(ret_reason, "matches commands.blocked entry '%s'", *s) < 0)
                                        abort();
                                return false;
                        }
        }
        if (c->unrestricted)
                return true;
        if (!program_path_trusted(e->raw_program)) {
                /* Blocks match the basename (no bypass by path), but an allowlist entry "cargo test"
                 * means the system's cargo, not ./cargo written into the workspace. */
                if (asprintf(
                            ret_reason,
                            "runs '%s', which is not a system program; allowlists name programs "
                            "found on PATH",
                            e->raw_program) < 0)
                        abort();
                return false;
        }
        for (size_t r = 0; r < c->allowed_rules.n_rules; r++)
                if (command_rule_matches(&c->allowed_rules.rules[r], e->effective))
                        return true;
        STRV_FOREACH(s, c->allowed)
                if (allowed_string_matches(*s, e->effective))
                        return true;
        *ret_reason = xstrdup("is not in commands.allowed or commands.allowed_rules");
        return false;
}

bool policy_grants_shell(const Policy *p) {
        char *argv[] = { (char *) "sh", (char *) "-c", (char *) "true", NULL };
        _cleanup_free_ char *reason = NULL;
        Exec e = { .n_layers = 1, .layers = { argv }, .effective = argv, .op = OPERATION_RUN_BASH };
        if (!p || p->capabilities.level[OPERATION_RUN_BASH] < CAP_LOW_RISK)
                return false;
        return command_component_allows(&p->commands, &e, &reason);
}

static const char *const separator_words[] = { ";",  "&&", "||", "|", "&",  "|&", ";;",
                                               "&>", ">",  ">>", "<", "2>", NULL };

static int check_command_words(const Policy *p, char *const *argv, const char *display, PolicyDecision *ret) {
        _cleanup_(analysis_done) Analysis a = {};
        _cleanup_free_ char *reason = NULL;
        bool shell = policy_grants_shell(p);

        /* 1. syntax */
        if (!argv || !argv[0]) {
                policy_decision_set(
                        ret, POLICY_DENY, "command_denied", OPERATION_RUN_BASH, "command denied: empty command");
                return 0;
        }
        if (strpbrk(argv[0], " \t\n;&|<>`$()") || isempty(argv[0])) {
                policy_decision_set(
                        ret,
                        POLICY_DENY,
                        "command_denied",
                        OPERATION_RUN_BASH,
                        "command denied: '%s': program name contains shell syntax",
                        display);
                return 0;
        }
        /* 2. separators given as words (C7): only a shell would read them as such. */
        bool in_find_exec = false; /* a ';' ending find's -exec is find syntax, not a separator */
        if (!shell)
                STRV_FOREACH(w, argv) {
                        if (in_list(*w, (const char *const[]){ "-exec", "-execdir", "-ok", "-okdir", NULL })) {
                                in_find_exec = true;
                                continue;
                        }
                        if (in_find_exec && streq(*w, ";")) {
                                in_find_exec = false;
                                continue;
                        }
                        if (in_list(*w, separator_words)) {
                                policy_decision_set(
                                        ret,
                                        POLICY_DENY,
                                        "command_denied",
                                        OPERATION_RUN_BASH,
                                        "command denied: '%s': '%s' is shell syntax and commands run "
                                        "without a shell (no shell is granted)",
                                        display,
                                        *w);
                                return 0;
                        }
                }
        /* 3. analysis */
        analyze(p, argv, 0, &a);
        if (a.fail_reason) {
                policy_decision_set(
                        ret,
                        POLICY_DENY,
                        "command_denied",
                        OPERATION_RUN_BASH,
                        "command denied: '%s': %s",
                        display,
                        a.fail_reason);
                return 0;
        }
        /* 4. capability of every program that runs */
        for (size_t i = 0; i < a.n_execs; i++) {
                Operation op = a.execs[i].op;
                if (p->capabilities.level[op] == CAP_NEVER) {
                        policy_decision_set(
                                ret,
                                POLICY_DENY,
                                "insufficient_capability",
                                op,
                                "insufficient capability: '%s' level is Never, need at least LowRisk "
                                "(command '%s')",
                                operation_to_string(op),
                                display);
                        return 0;
                }
        }
        /* 5. argument-borne execution needs a shell grant */
        if (a.inline_reason && !shell) {
                policy_decision_set(
                        ret,
                        POLICY_DENY,
                        "command_denied",
                        OPERATION_RUN_BASH,
                        "command denied: '%s': %s; that needs shell permission (run_bash with a "
                        "command policy that allows 'sh -c')",
                        display,
                        a.inline_reason);
                return 0;
        }
        if (a.inline_reason && p->capabilities.level[OPERATION_RUN_BASH] == CAP_NEVER) {
                policy_decision_set(
                        ret,
                        POLICY_DENY,
                        "insufficient_capability",
                        OPERATION_RUN_BASH,
                        "insufficient capability: 'run_bash' level is Never, need at least LowRisk");
                return 0;
        }
        /* 6. command component, every program */
        for (size_t i = 0; i < a.n_execs; i++)
                if (!command_component_allows(&p->commands, &a.execs[i], &reason)) {
                        _cleanup_free_ char *eff = words_join(a.execs[i].effective);
                        _cleanup_free_ char *vis = string_make_visible(eff);
                        policy_decision_set(
                                ret,
                                POLICY_DENY,
                                "command_denied",
                                a.execs[i].op,
                                "command denied: '%s' blocked by policy ('%s' %s)",
                                display,
                                vis,
                                reason);
                        return 0;
                }
        /* 7. obligations: the most consequential operation first */
        Obligations o = p->obligations;
        if (p->trifecta)
                o |= capabilities_trifecta_obligations(&p->capabilities);
        static const Operation order[] = {
                OPERATION_GIT_PUSH, OPERATION_CREATE_PR, OPERATION_GIT_COMMIT, OPERATION_RUN_BASH
        };
        for (size_t k = 0; k < ELEMENTSOF(order); k++) {
                bool present = order[k] == OPERATION_RUN_BASH && a.inline_reason;
                for (size_t i = 0; i < a.n_execs; i++)
                        present = present || a.execs[i].op == order[k];
                if (present && (o & OBLIGATION(order[k]))) {
                        policy_decision_set(
                                ret,
                                POLICY_NEEDS_APPROVAL,
                                "approval_required",
                                order[k],
                                "approval required: '%s' requires human approval (command '%s')",
                                operation_to_string(order[k]),
                                display);
                        return 0;
                }
        }
        policy_decision_set(ret, POLICY_ALLOW, NULL, a.execs[0].op, "allowed: %s", display);
        return 0;
}

int policy_check_command(const Policy *p, char *const *argv, PolicyDecision *ret) {
        if (!p || !ret)
                return -EINVAL;
        *ret = (PolicyDecision){};
        _cleanup_free_ char *joined = argv ? words_join(argv) : xstrdup("");
        _cleanup_free_ char *display = string_make_visible(joined);
        return check_command_words(p, argv, display, ret);
}

int policy_check_command_string(const Policy *p, const char *command, PolicyDecision *ret) {
        _cleanup_strv_free_ char **words = NULL;
        unsigned meta = 0;
        int r;
        if (!p || !command || !ret)
                return -EINVAL;
        *ret = (PolicyDecision){};
        _cleanup_free_ char *display = string_make_visible(command);
        r = words_split(command, &words, &meta);
        if (r == -E2BIG) {
                policy_decision_set(
                        ret,
                        POLICY_DENY,
                        "command_denied",
                        OPERATION_RUN_BASH,
                        "command denied: command string too long");
                return 0;
        }
        if (r < 0) {
                policy_decision_set(
                        ret,
                        POLICY_DENY,
                        "command_denied",
                        OPERATION_RUN_BASH,
                        "command denied: '%s': malformed command (unbalanced quotes)",
                        display);
                return 0;
        }
        if (!words[0]) {
                policy_decision_set(
                        ret, POLICY_DENY, "command_denied", OPERATION_RUN_BASH, "command denied: empty command");
                return 0;
        }
        if ((meta &
             (WORDS_META_SEPARATOR | WORDS_META_REDIRECT | WORDS_META_SUBST | WORDS_META_NEWLINE |
              WORDS_META_SUBSHELL)) &&
            !policy_grants_shell(p)) {
                const char *what = meta & WORDS_META_NEWLINE ? "a newline between words"
                        : meta & WORDS_META_SUBST            ? "command substitution ('`' or '$(')"
                        : meta & WORDS_META_SEPARATOR        ? "a command separator (';', '&', '|')"
                        : meta & WORDS_META_REDIRECT         ? "a redirection ('<', '>')"
                                                             : "a subshell ('(', ')')";
                policy_decision_set(
                        ret,
                        POLICY_DENY,
                        "command_denied",
                        OPERATION_RUN_BASH,
                        "command denied: '%s' contains %s outside quotes; commands run without a "
                        "shell and no shell is granted",
                        display,
                        what);
                return 0;
        }
        if (meta &
            (WORDS_META_SEPARATOR | WORDS_META_REDIRECT | WORDS_META_SUBST | WORDS_META_NEWLINE |
             WORDS_META_SUBSHELL)) {
                /* A shell is granted and the string is shell syntax: judge it as what the proxy
                 * would run, `sh -c <string>`. */
                char *sh[] = { (char *) "sh", (char *) "-c", (char *) command, NULL };
                return check_command_words(p, sh, display, ret);
        }
        return check_command_words(p, words, display, ret);
}

bool policy_env_name_allowed(const char *name) {
        static const char *const exact[] = {
                "LANG",
                "LANGUAGE",
                "TZ",
                "TERM",
                "COLUMNS",
                "LINES",
                "NO_COLOR",
                "FORCE_COLOR",
                "CLICOLOR",
                "CI",
                "RUST_BACKTRACE",
                "RUST_LOG",
                "CARGO_TERM_COLOR",
                "NODE_ENV",
                "PYTHONUNBUFFERED",
                "PYTHONDONTWRITEBYTECODE",
                "PYTHONIOENCODING",
                "SOURCE_DATE_EPOCH",
                "DEBIAN_FRONTEND",
                "GIT_AUTHOR_NAME",
                "GIT_AUTHOR_EMAIL",
                "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL",
                "GIT_AUTHOR_DATE",
                "GIT_COMMITTER_DATE",
                NULL,
        };
        if (isempty(name))
                return false;
        for (const char *c = name; *c; c++)
                if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || *c == '_' ||
                      (c != name && *c >= '0' && *c <= '9')))
                        return false;
        if (in_list(name, exact))
                return true;
        if (startswith(name, "LC_") && name[3])
                return true;
        return false;
}
