/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command decisions. An argv (or a command string, split without expansion) is untrusted:
 * it is unwrapped (env, nice, timeout, ..., path-qualified and busybox programs) down to what
 * really runs (each wrapper by its own getopt grammar), classified (git push/commit, gh pr
 * create, else run_bash), scanned for argument-borne execution (shells, interpreters, sed,
 * make, database clients, git -c/--output, find -exec, tar --to-command, ...), checked for
 * arguments naming blocked paths, and judged against capabilities, the command component and
 * obligations. docs/policy.md documents the order. Fail closed on anything unparsed.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "alloc-util.h"
#include "git-config.h"
#include "policy-internal.h"
#include "policy-options.h"
#include "string-util.h"
#include "words.h"

#define ANALYSIS_MAX_DEPTH 8U
#define ANALYSIS_MAX_EXECS 16U
#define ANALYSIS_MAX_LAYERS 16U
#define ANALYSIS_ARENA_WORDS 256U

/* One program that will run: every wrapper layer (argv[0] reduced to its basename) for the
 * blocklist, and the innermost argv (what really runs) for the allowlist. Layers are vectors
 * of pointers into the judged argv (or into words the Analysis owns): nothing is copied. */
typedef struct Exec {
        char **layers[ANALYSIS_MAX_LAYERS];
        size_t n_layers;
        char **effective;        /* one of layers */
        const char *raw_program; /* argv[0] of the innermost layer as given (borrowed) */
        Operation op;
} Exec;

typedef struct Analysis {
        const PolicyCompiled *pc; /* policy_compiled() of the judged policy, looked up once */
        Exec execs[ANALYSIS_MAX_EXECS];
        size_t n_execs;
        char *inline_reason; /* set: code not visible as argv runs (needs a shell grant) */
        char *fail_reason;   /* set: cannot be analysed at all (always denied) */
        PolicyImpl applet;   /* NATIVE, or the multi-call binary an applet was run through */
        /* Storage for the layer vectors: a fixed arena, then the heap for long argvs. */
        char *arena[ANALYSIS_ARENA_WORDS];
        size_t arena_used;
        void **owned; /* heap vectors and split words (strv) to free, NULL-terminated */
        size_t n_owned;
} Analysis;

/* Not "= {}": the arena is left uninitialised (analysis_vector() zeroes what it hands out). */
static void analysis_init(Analysis *a, const Policy *p) {
        a->pc = policy_compiled(p);
        a->n_execs = 0;
        a->inline_reason = a->fail_reason = NULL;
        a->applet = POLICY_IMPL_NATIVE;
        a->arena_used = 0;
        a->owned = NULL;
        a->n_owned = 0;
}

static void analysis_done(Analysis *a) {
        for (size_t i = 0; i < a->n_owned; i++)
                free(a->owned[i]);
        free(a->owned);
        free(a->inline_reason);
        free(a->fail_reason);
}

/* Keep ptr (malloc'd) until analysis_done. */
static void analysis_own(Analysis *a, void *ptr) {
        a->owned = xrealloc(a->owned, (a->n_owned + 2) * sizeof(void *));
        a->owned[a->n_owned++] = ptr;
        a->owned[a->n_owned] = NULL;
}

/* A zeroed vector of n + 1 pointers living as long as the analysis. */
static char **analysis_vector(Analysis *a, size_t n) {
        if (n + 1 <= ANALYSIS_ARENA_WORDS - a->arena_used) {
                char **v = a->arena + a->arena_used;
                a->arena_used += n + 1;
                memset(v, 0, (n + 1) * sizeof(char *));
                return v;
        }
        char **v = xnew0(char *, n + 1);
        analysis_own(a, v);
        return v;
}

_printf_(2, 3) static void set_inline(Analysis *a, const char *fmt, ...) {
        va_list ap;
        if (a->inline_reason)
                return;
        va_start(ap, fmt);
        a->inline_reason = policy_vformat(fmt, ap);
        va_end(ap);
}

_printf_(2, 3) static void set_fail(Analysis *a, const char *fmt, ...) {
        va_list ap;
        if (a->fail_reason)
                return;
        va_start(ap, fmt);
        a->fail_reason = policy_vformat(fmt, ap);
        va_end(ap);
}

static const char *base_name(const char *p) {
        const char *s = strrchr(p, '/');
        return s ? s + 1 : p;
}

static bool in_list(const char *s, const char *const *l) {
        for (; *l; l++)
                if (s[0] == (*l)[0] && streq(s, *l)) /* the first byte rejects most entries */
                        return true;
        return false;
}

/* "-abc" style cluster (single dash, not "--", not "-"). */
static bool is_short_cluster(const char *w) {
        return w[0] == '-' && w[1] != 0 && w[1] != '-';
}

/* Long option "--name[=value]" whose name is a prefix (>= 3 chars, getopt abbreviation) of
 * one of the names in l, or equal to one. */
static bool long_opt_abbrev(const char *w, const char *const *l) {
        if (!startswith(w, "--"))
                return false;
        const char *n = w + 2;
        size_t len = (size_t) (strchrnul(n, '=') - n);
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
        "runuser",  "pkexec",    "parallel",    "watch",       "script",      "chroot",
        "unshare",  "nsenter",   "strace",      "ltrace",      "gdb",         "lldb",
        "valgrind", "firejail",  "bwrap",       "systemd-run", "ssh-agent",   "dbus-run-session",
        "fakeroot", "catchsegv", "prlimit",     "cgexec",      "numactl",     "expect",
        "sg",       "newgrp",    "screen",      "tmux",        "at",          "batch",
        "crontab",  "eatmydata", "unbuffer",    "torsocks",    "proxychains", "proxychains4",
        "setpriv",  "capsh",     "setarch",     "linux32",     "linux64",     "scl",
        "direnv",   "entr",      "inotifywait", "vi",          "vim",         "nvim",
        "view",     "ex",        "rview",       "rvim",        "emacs",       "ed",
        "mg",       "nano",      "pico",        "busybox-vi",  "dosbox",      "qemu-user",
        "socat",    "nc",        "ncat",        "netcat",      "telnet",      NULL,
};

/* Programs that change identity: denied outright, whatever they run. */
static const char *const identity_changers[] = { "sudo", "doas", "su", "sudoedit", NULL };

/* Interpreters known by their exact name (is_interpreter() adds the versioned families). */
static const char *const interpreters[] = {
        "perl",   "ruby",   "irb",    "jruby",      "node",        "nodejs",    "bun",     "deno",
        "lua",    "luajit", "julia",  "Rscript",    "R",           "osascript", "tclsh",   "wish",
        "awk",    "gawk",   "mawk",   "nawk",       "busybox-awk", "mongosh",   "mongo",   "guile",
        "racket", "csi",    "sbcl",   "clisp",      "swipl",       "escript",   "elixir",  "iex",
        "groovy", "jshell", "runghc", "runhaskell", "ghci",        "scala",     "kotlinc", "qjs",
        "rhino",  "jjs",    "expect", "gjs",        "tsx",         "ts-node",   NULL,
};

static const char *const make_programs[] = { "make", "gmake", "bmake", "pmake", NULL };

/* Programs judged by their option grammar alone (analyze_misc). */
static const char *const misc_grammar_programs[] = { "rsync", "ssh", "scp", "sftp", "slogin", "zip",
                                                     "man",   "npx", "npm", "pnpm", "yarn",   NULL };

/* Pagers whose "+cmd" argument runs a command. */
static const char *const pagers[] = { "less", "more", "most", NULL };

/* Database clients (analyze_db_client). */
static const char *const db_clients[] = { "sqlite3", "sqlite", "mongosh", "mongo",
                                          "psql",    "mysql",  "mariadb", NULL };

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

/* argv with argv[0] reduced to its basename (a suffix of the same string). */
static char **layer_of(Analysis *a, char *const *argv, size_t n) {
        char **l = analysis_vector(a, n);
        memcpy(l, argv, n * sizeof(char *));
        if (n > 0)
                l[0] = (char *) base_name(argv[0]);
        return l;
}

/* ---- wrapper option grammars ---- */

/* One wrapper's getopt_long grammar: short letters without / with an argument, long names
 * without / with a required argument / with an optional ("=value" only) argument, and how
 * many positional words come between the options and the command (timeout's DURATION). */
typedef struct WrapperGrammar {
        const char *name;
        const char *short_flags;         /* letters taking no argument */
        const char *short_args;          /* letters taking an argument (attached or next word) */
        const char *const *long_flags;   /* no argument */
        const char *const *long_args;    /* required argument ("=v" or next word) */
        const char *const *long_optargs; /* optional argument, only as "=v" */
        unsigned positionals;            /* words between the options and the command */
        const char *no_command_opts;     /* short letters after which no command runs (pids) */
} WrapperGrammar;

#define WG_LIST(...) ((const char *const[]){ __VA_ARGS__, NULL })

static const WrapperGrammar wrapper_grammars[] = {
        { "env",
          "i0v",
          "uCS",
          WG_LIST("ignore-environment", "null", "debug", "list-signal-handling", "help", "version"),
          WG_LIST("unset", "chdir", "split-string"),
          WG_LIST("block-signal", "default-signal", "ignore-signal"),
          0,
          NULL },
        { "nice", "", "n", WG_LIST("help", "version"), WG_LIST("adjustment"), WG_LIST(NULL), 0, NULL },
        { "timeout",
          "fpv",
          "ks",
          WG_LIST("foreground", "preserve-status", "verbose", "help", "version"),
          WG_LIST("kill-after", "signal"),
          WG_LIST(NULL),
          1,
          NULL },
        { "nohup", "", "", WG_LIST("help", "version"), WG_LIST(NULL), WG_LIST(NULL), 0, NULL },
        { "stdbuf", "", "ioe", WG_LIST("help", "version"), WG_LIST("input", "output", "error"), WG_LIST(NULL), 0, NULL },
        { "setsid",
          "cfwhV",
          "",
          WG_LIST("ctty", "fork", "wait", "help", "version"),
          WG_LIST(NULL),
          WG_LIST(NULL),
          0,
          NULL },
        { "xargs",
          "0oprtxE",
          "adEILnPs",
          WG_LIST("null", "open-tty", "interactive", "no-run-if-empty", "verbose", "exit", "show-limits", "help", "version"),
          WG_LIST("arg-file", "delimiter", "max-args", "max-procs", "max-chars", "process-slot-var"),
          WG_LIST("eof", "replace", "max-lines"),
          0,
          NULL },
        { "command", "pvV", "", WG_LIST(NULL), WG_LIST(NULL), WG_LIST(NULL), 0, NULL },
        { "exec", "cl", "a", WG_LIST(NULL), WG_LIST(NULL), WG_LIST(NULL), 0, NULL },
        { "ionice",
          "thV",
          "cnpPu",
          WG_LIST("ignore", "help", "version"),
          WG_LIST("class", "classdata", "pid", "pgid", "uid"),
          WG_LIST(NULL),
          0,
          "pPu" },
        { "chrt",
          "abdfimoprRvhV",
          "TPD",
          WG_LIST("all-tasks",
                  "batch",
                  "deadline",
                  "fifo",
                  "idle",
                  "max",
                  "other",
                  "pid",
                  "rr",
                  "reset-on-fork",
                  "verbose",
                  "help",
                  "version"),
          WG_LIST("sched-runtime", "sched-period", "sched-deadline"),
          WG_LIST(NULL),
          1,
          "pm" },
        { "taskset",
          "acphV",
          "",
          WG_LIST("all-tasks", "cpu-list", "pid", "help", "version"),
          WG_LIST(NULL),
          WG_LIST(NULL),
          1,
          "p" },
        { "flock",
          "sxeunoFhV",
          "wEc",
          WG_LIST("shared", "exclusive", "unlock", "nonblock", "nb", "close", "no-fork", "verbose", "help", "version"),
          WG_LIST("timeout", "wait", "conflict-exit-code", "command"),
          WG_LIST(NULL),
          1,
          NULL },
        { "time",
          "apqvV",
          "fo",
          WG_LIST("append", "portability", "quiet", "verbose", "help", "version"),
          WG_LIST("format", "output"),
          WG_LIST(NULL),
          0,
          NULL },
};

/* ---- known programs by name ---- */

/* What the lists above say about one name. A name may be on several lists; analyze() keeps
 * their order of precedence. */
enum {
        PROG_IDENTITY = 1U << 0,
        PROG_WRAPPER = 1U << 1, /* .wrapper = index in wrapper_grammars */
        PROG_OPAQUE = 1U << 2,
        PROG_SHELL = 1U << 3,
        PROG_INTERPRETER = 1U << 4,
        PROG_MAKE = 1U << 5,
        PROG_MISC_GRAMMAR = 1U << 6,
        PROG_PAGER = 1U << 7,
        PROG_DB = 1U << 8,
};

typedef struct ProgramClass {
        const char *name; /* NULL: free slot */
        unsigned flags;
        unsigned wrapper;
} ProgramClass;

/* Every list's names in one open-addressing hash table, built once: a layer looks its program
 * up once instead of searching each list by name. */
#define PROGRAM_SLOTS 512U
static ProgramClass program_classes[PROGRAM_SLOTS];
static pthread_once_t program_classes_once = PTHREAD_ONCE_INIT;

static ProgramClass *program_slot(const char *name) {
        uint32_t h = 2166136261U; /* FNV-1a */
        for (const char *c = name; *c; c++)
                h = (h ^ (unsigned char) *c) * 16777619U;
        for (size_t i = h & (PROGRAM_SLOTS - 1);; i = (i + 1) & (PROGRAM_SLOTS - 1))
                if (!program_classes[i].name || streq(program_classes[i].name, name))
                        return &program_classes[i];
}

static void program_classes_add(const char *name, unsigned flag, unsigned wrapper) {
        static size_t used = 0;
        ProgramClass *c = program_slot(name);
        if (!c->name) {
                /* The table stays at most half full, so a miss ends at a free slot soon. */
                if (++used > PROGRAM_SLOTS / 2)
                        abort();
                c->name = name;
        }
        c->flags |= flag;
        if (flag == PROG_WRAPPER)
                c->wrapper = wrapper;
}

static void program_classes_build(void) {
        static const struct {
                const char *const *list;
                unsigned flag;
        } lists[] = {
                { identity_changers, PROG_IDENTITY },
                { opaque_executors, PROG_OPAQUE },
                { shells, PROG_SHELL },
                { interpreters, PROG_INTERPRETER },
                { make_programs, PROG_MAKE },
                { misc_grammar_programs, PROG_MISC_GRAMMAR },
                { pagers, PROG_PAGER },
                { db_clients, PROG_DB },
        };
        for (size_t k = 0; k < ELEMENTSOF(lists); k++)
                for (const char *const *x = lists[k].list; *x; x++)
                        program_classes_add(*x, lists[k].flag, 0);
        for (size_t i = 0; i < ELEMENTSOF(wrapper_grammars); i++)
                program_classes_add(wrapper_grammars[i].name, PROG_WRAPPER, (unsigned) i);
}

/* The class of a program's basename (flags 0 when no list names it). */
static const ProgramClass *program_class(const char *prog) {
        if (pthread_once(&program_classes_once, program_classes_build) != 0)
                abort();
        return program_slot(prog);
}

/* getopt_long's abbreviation rule: an exact name wins; else the prefix must match exactly one
 * name of all lists. Returns the full name (static) and its argument kind (0 none, 1 required,
 * 2 optional), NULL for unknown or ambiguous. */
static const char *long_opt_lookup(const char *name, size_t len, const WrapperGrammar *g, int *ret_kind) {
        const char *const *lists[] = { g->long_flags, g->long_args, g->long_optargs };
        const char *found = NULL;
        int kind = 0;
        unsigned hits = 0;
        if (len == 0)
                return NULL;
        for (int k = 0; k < 3; k++)
                for (const char *const *l = lists[k]; l && *l; l++) {
                        if (strlen(*l) == len && strncmp(*l, name, len) == 0) {
                                *ret_kind = k;
                                return *l;
                        }
                        if (strlen(*l) > len && strncmp(*l, name, len) == 0) {
                                found = *l;
                                kind = k;
                                hits++;
                        }
                }
        if (hits != 1)
                return NULL;
        *ret_kind = kind;
        return found;
}

/* One parsed wrapper option. */
typedef struct WrapperOpt {
        const char *long_name; /* full long name, or NULL for a short option */
        char short_name;       /* or 0 */
        const char *value;     /* argument, or NULL */
} WrapperOpt;

/* Returns < 0: stop, analysis failed; 0: go on; > 0: stop after this option (env -S). */
typedef int (*WrapperOptFn)(const WrapperOpt *o, void *userdata, Analysis *a);

/* Parse the options of wrapper g in argv[1..] (POSIX order: the first operand ends them, as the
 * "+" in these programs' optstrings). Calls fn per option. Returns the index of the first
 * operand (or of the word after an option fn stopped at), or SIZE_MAX (analysis failed:
 * unknown or ambiguous option, missing argument). */
static size_t wrapper_parse(
        const WrapperGrammar *g, char *const *argv, size_t start, WrapperOptFn fn, void *userdata, Analysis *a) {
        size_t n = strv_length(argv), i = start;
        int r;
        while (i < n) {
                const char *w = argv[i];
                if (streq(w, "--"))
                        return i + 1;
                if (w[0] != '-' || w[1] == 0)
                        return i;
                if (w[1] == '-') {
                        const char *name = w + 2, *eq = strchr(name, '=');
                        size_t len = eq ? (size_t) (eq - name) : strlen(name);
                        int kind = 0;
                        const char *full = long_opt_lookup(name, len, g, &kind);
                        WrapperOpt o = { .long_name = full };
                        if (!full) {
                                _cleanup_free_ char *vis = policy_visible(w);
                                set_fail(a, "'%s': unknown or ambiguous option '%s'", g->name, vis);
                                return SIZE_MAX;
                        }
                        if (kind == 0 && eq) {
                                set_fail(a, "'%s': option '--%s' takes no argument", g->name, full);
                                return SIZE_MAX;
                        }
                        if (eq)
                                o.value = eq + 1;
                        else if (kind == 1) {
                                if (i + 1 >= n) {
                                        set_fail(a, "'%s': option '--%s' needs an argument", g->name, full);
                                        return SIZE_MAX;
                                }
                                o.value = argv[++i];
                        }
                        r = fn(&o, userdata, a);
                        if (r < 0)
                                return SIZE_MAX;
                        i++;
                        if (r > 0)
                                return i;
                        continue;
                }
                /* Short cluster: flags, then possibly one option taking the rest or the next word. */
                for (const char *c = w + 1; *c; c++) {
                        WrapperOpt o = { .short_name = *c };
                        if (strchr(g->short_args, *c)) {
                                if (c[1])
                                        o.value = c + 1;
                                else if (i + 1 < n)
                                        o.value = argv[++i];
                                else {
                                        set_fail(a, "'%s': option '-%c' needs an argument", g->name, *c);
                                        return SIZE_MAX;
                                }
                                r = fn(&o, userdata, a);
                                if (r < 0)
                                        return SIZE_MAX;
                                if (r > 0)
                                        return i + 1;
                                break;
                        }
                        if (!strchr(g->short_flags, *c)) {
                                _cleanup_free_ char *vis = policy_visible(w);
                                set_fail(a, "'%s': unknown option '%s'", g->name, vis);
                                return SIZE_MAX;
                        }
                        if (fn(&o, userdata, a) < 0)
                                return SIZE_MAX;
                }
                i++;
        }
        return i;
}

/* "nice -NUM", "nice --NUM", "nice -+NUM" (obsolete adjustment syntax, first word only). */
static bool nice_obsolete_number(const char *w) {
        if (w[0] != '-')
                return false;
        w++;
        if (*w == '+' || *w == '-')
                w++;
        return *w && w[strspn(w, "0123456789")] == 0;
}

static bool opt_is(const WrapperOpt *o, char s, const char *l) {
        return (s && o->short_name == s) || (l && o->long_name && streq(o->long_name, l));
}

typedef struct WrapperState {
        const char *prog;
        const WrapperGrammar *g;
        const char *split_string; /* env -S value (borrowed from argv) */
        bool no_command;          /* ionice -p, chrt -p/-m, taskset -p: operands are not a command */
} WrapperState;

static int wrapper_opt(const WrapperOpt *o, void *userdata, Analysis *a) {
        WrapperState *s = userdata;
        const WrapperGrammar *g = s->g;
        if (o->short_name && g->no_command_opts && strchr(g->no_command_opts, o->short_name))
                s->no_command = true;
        if (o->long_name &&
            (streq(o->long_name, "pid") || streq(o->long_name, "pgid") || streq(o->long_name, "uid") ||
             streq(o->long_name, "max")))
                s->no_command = true;
        if (streq(s->prog, "env") && opt_is(o, 'S', "split-string")) {
                /* GNU env replaces the option by the split words and parses again from there. */
                s->split_string = o->value;
                return 1;
        }
        if (streq(s->prog, "time") && opt_is(o, 'o', "output"))
                set_inline(a, "'time -o/--output' writes a file named in its arguments");
        if (streq(s->prog, "flock") && opt_is(o, 'c', "command"))
                set_inline(a, "'flock -c/--command' runs its argument through a shell");
        return 0;
}

/* ---- programs with option grammars (policy-options.c) ---- */

typedef struct OptCheck {
        const OptGrammar *g;
        const char *prog; /* as shown in messages, with sub after it when set ("git <sub>") */
        const char *sub;
        Analysis *a;
        OptVisitFn extra; /* program-specific value checks, or NULL */
        void *extra_userdata;
} OptCheck;

static int opt_check_visit(const OptItem *it, void *userdata) {
        OptCheck *c = userdata;
        const OptGrammar *g = c->g;
        if (it->kind == OPT_ITEM_UNKNOWN) {
                _cleanup_free_ char *vis = policy_visible(it->word);
                _cleanup_free_ char *gsub = c->sub ? xasprintf("git %s", c->sub) : NULL;
                set_inline(
                        c->a,
                        "'%s %s': unknown option '-%c' (options of %s are judged by its real grammar)",
                        gsub ?: c->prog,
                        vis,
                        it->letter,
                        gsub ?: c->prog);
                return -1;
        }
        if ((it->kind == OPT_ITEM_SHORT && strchr(g->danger, it->letter)) ||
            (it->kind == OPT_ITEM_LONG && opt_long_matches(it->name, it->name_len, g->long_danger))) {
                _cleanup_free_ char *vis = policy_visible(it->word);
                _cleanup_free_ char *gsub = c->sub ? xasprintf("git %s", c->sub) : NULL;
                if (it->kind == OPT_ITEM_SHORT && !streq(it->word + 1, (char[]){ it->letter, 0 }))
                        set_inline(c->a, "'%s %s' (option -%c) %s", gsub ?: c->prog, vis, it->letter, g->why);
                else
                        set_inline(c->a, "'%s %s' %s", gsub ?: c->prog, vis, g->why);
                return -1;
        }
        return c->extra ? c->extra(it, c->extra_userdata) : 0;
}

/* Scan argv[start..] of program prog (git subcommand sub) by its grammar: a dangerous option in
 * any spelling, an unknown option, or an implementation other than the grammar's (busybox,
 * toybox, unrecognised) marks the command as inline code. Returns the scan end (opt_scan), or
 * SIZE_MAX when something was flagged. Programs without a grammar return 0. */
static size_t analyze_options(
        const char *prog,
        const char *sub,
        char *const *argv,
        size_t start,
        Analysis *a,
        OptVisitFn extra,
        void *userdata) {
        const OptGrammar *g = opt_grammar_find(prog, sub);
        if (!g)
                return 0;
        PolicyImpl impl = a->applet != POLICY_IMPL_NATIVE ? a->applet : policy_impl_get(prog);
        if (impl != POLICY_IMPL_NATIVE) {
                set_inline(
                        a,
                        "'%s' in this image is %s, whose option grammar Nucleus does not know",
                        prog,
                        impl == POLICY_IMPL_UNKNOWN ? "an unrecognised implementation"
                                                    : policy_impl_to_string(impl));
                return SIZE_MAX;
        }
        OptCheck c = {
                .g = g, .prog = sub ? "git" : prog, .sub = sub, .a = a, .extra = extra, .extra_userdata = userdata
        };
        return opt_scan(g, argv, start, opt_check_visit, &c);
}

/* git clone -c/--config KEY=VALUE: the key must be on the git configuration allow list. */
static int git_clone_opt(const OptItem *it, void *userdata) {
        Analysis *a = userdata;
        if (((it->kind == OPT_ITEM_SHORT && it->letter == 'c') ||
             (it->kind == OPT_ITEM_LONG &&
              opt_long_matches(it->name, it->name_len, (const char *const[]){ "config", NULL }))) &&
            !git_config_assignment_allowed(it->value)) {
                _cleanup_free_ char *vis = policy_visible(it->value ?: "");
                set_inline(a, "'git clone' sets '%s', a key outside the git configuration allow list", vis);
                return -1;
        }
        return 0;
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
                if (streq(w, "-c") || streq(w, "--config-env") || startswith(w, "--config-env=")) {
                        /* Command-line configuration: only keys on the allow list (git-config.h). */
                        const char *kv = startswith(w, "--config-env=") ?: i + 1 < n ? argv[i + 1] : NULL;
                        if (!git_config_assignment_allowed(kv)) {
                                _cleanup_free_ char *vis = policy_visible(kv ?: "");
                                set_inline(
                                        a,
                                        "'git %s %s' sets a key outside the git configuration allow list",
                                        w,
                                        vis);
                                return;
                        }
                        i += strchr(w, '=') ? 1 : 2;
                        continue;
                }
                if (startswith(w, "-c")) {
                        set_fail(a, "unknown git option '%s'", w);
                        return;
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
        if (i > n)
                i = n; /* "-C" or "-c" as the last word skipped past the end */
        char **eff = analysis_vector(a, 1 + (n - i));
        eff[0] = (char *) "git";
        memcpy(eff + 1, argv + i, (n - i) * sizeof(char *));
        if (e->n_layers < ANALYSIS_MAX_LAYERS)
                e->layers[e->n_layers++] = eff;
        else {
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

        static const char *const exec_opts[] = { "upload-pack", "receive-pack", "exec",
                                                 "template",    "extcmd",       "open-files-in-pager",
                                                 "tool",        "ext-diff",     NULL };
        for (size_t k = i + 1; k < n; k++) {
                const char *w = argv[k];
                if (streq(w, "--"))
                        break;
                if ((long_opt_abbrev(w, exec_opts) && !(streq(sub, "commit") && startswith(w, "--template"))) ||
                    streq(w, "--textconv")) {
                        set_inline(a, "'git %s %s' makes git run a program", sub, w);
                        return;
                }
                /* File writes that bypass the path policy: --output (log/diff/show
                 * family, archive); format-patch -o and archive -o by their grammars below. */
                if (long_opt_abbrev(w, (const char *const[]){ "output", "output-directory", NULL })) {
                        set_inline(a, "'git %s %s' writes a file outside the path policy", sub, w);
                        return;
                }
        }
        if (streq(sub, "config")) {
                _cleanup_free_ char *why = NULL;
                if (git_config_check_command(argv + i, &why) < 0) {
                        _cleanup_free_ char *vis = policy_visible(why);
                        set_inline(a, "%s", vis);
                        return;
                }
        }
        /* Short options by the subcommand's grammar (clusters, attached values). */
        if (analyze_options("git", sub, argv, i + 1, a, streq(sub, "clone") ? git_clone_opt : NULL, a) ==
            SIZE_MAX)
                return;
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

static bool node_like(const char *prog) {
        return in_list(prog, (const char *const[]){ "node", "nodejs", "bun", "deno", NULL });
}

static const char *const py_modules_ok[] = {
        "pytest", "unittest", "py_compile", "compileall", "json.tool", "mypy", "black",
        "ruff",   "flake8",   "pylint",     "isort",      "doctest",   "venv", NULL,
};

typedef struct InterpState {
        const char *prog;
        Analysis *a;
        bool module;   /* python -m, node --test: a file-based run */
        bool has_file; /* awk -f/-E FILE: the program is a file, not text */
} InterpState;

/* Values of interpreter options that carry code, whatever the spelling. */
static int interp_opt(const OptItem *it, void *userdata) {
        InterpState *s = userdata;
        const char *v = it->value;
        bool is_short = it->kind == OPT_ITEM_SHORT;
        if (python_like(s->prog) && is_short && it->letter == 'm') {
                if (!v || !in_list(v, py_modules_ok))
                        set_inline(
                                s->a,
                                "'%s -m %s' runs a module that takes code from its arguments",
                                s->prog,
                                v ?: "");
                s->module = true;
                return 1;
        }
        if (startswith(s->prog, "perl") && is_short && (it->letter == 'M' || it->letter == 'm') && v) {
                size_t l = strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_:-");
                if (v[l] &&
                    !(v[l] == '=' &&
                      v[l + 1 +
                        strspn(v + l + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_:,")] ==
                              0)) {
                        _cleanup_free_ char *vis = policy_visible(it->word);
                        set_inline(s->a, "'perl %s' inserts code into a 'use' statement", vis);
                        return -1;
                }
        }
        if (node_like(s->prog) && v && strchr(v, ':') &&
            ((is_short && it->letter == 'r') ||
             (it->kind == OPT_ITEM_LONG &&
              opt_long_matches(
                      it->name,
                      it->name_len,
                      (const char *const[]){
                              "import", "require", "loader", "experimental-loader", "preload", NULL })))) {
                _cleanup_free_ char *vis = policy_visible(it->word);
                set_inline(s->a, "'%s %s' loads code from a URL given in its arguments", s->prog, vis);
                return -1;
        }
        if (node_like(s->prog) && it->kind == OPT_ITEM_LONG && it->name_len == 4 &&
            strncmp(it->name, "test", 4) == 0)
                s->module = true; /* node --test runs the test files it finds, not its input */
        if ((is_short && (it->letter == 'f' || it->letter == 'E')) ||
            (it->kind == OPT_ITEM_LONG &&
             opt_long_matches(it->name, it->name_len, (const char *const[]){ "file", "exec", NULL })))
                s->has_file = true;
        return 0;
}

static bool awk_like(const char *prog) {
        return in_list(prog, (const char *const[]){ "awk", "gawk", "mawk", "nawk", "busybox-awk", NULL });
}

/* Interpreters: options by each one's grammar (inline code flags in any spelling, values that
 * carry code), then a script operand must follow (else code comes from the input). */
static bool is_interpreter(const char *prog);

/* Only for programs is_interpreter() names. */
static void analyze_interpreter(const char *prog, char *const *argv, Analysis *a) {
        size_t n = strv_length(argv);
        InterpState st = { .prog = prog, .a = a };
        if (streq(prog, "deno")) {
                if (n >= 2 && (streq(argv[1], "eval") || streq(argv[1], "repl")))
                        set_inline(a, "'deno %s' runs code given in its arguments", argv[1]);
                return;
        }
        if (streq(prog, "tclsh") || streq(prog, "wish") || startswith(prog, "tclsh")) {
                if (n < 2 || streq(argv[1], "-"))
                        set_inline(a, "'%s' without a script file reads code from its input", prog);
                return;
        }
        if (!opt_grammar_find(prog, NULL)) {
                if (awk_like(prog))
                        set_inline(a, "'%s': option grammar unknown; its program text runs", prog);
                return;
        }
        size_t i = analyze_options(prog, NULL, argv, 1, a, interp_opt, &st);
        if (i == SIZE_MAX || st.module)
                return;
        if (node_like(prog)) /* node --test after other options, or among operands */
                for (size_t k = 1; k < n && !streq(argv[k], "--"); k++)
                        if (streq(argv[k], "--test"))
                                return;
        if (awk_like(prog)) {
                /* The first operand is program text unless -f/-E named a program file. */
                if (!st.has_file)
                        set_inline(a, "'%s' runs the program text given in its arguments", prog);
                return;
        }
        if (i >= n || streq(argv[i], "-"))
                set_inline(a, "'%s' without a script file reads code from its input", prog);
}

static void analyze_shell(const char *prog, char *const *argv, Analysis *a) {
        size_t n = strv_length(argv);
        if (streq(prog, "pwsh") || streq(prog, "powershell")) {
                /* PowerShell: single-dash long parameters, case-insensitive, no clusters. */
                static const char *const pw[] = {
                        "-c",   "-command", "-e",    "-ec", "-encodedcommand", "-commandwithargs",
                        "-cwa", "-f",       "-file", NULL
                };
                for (size_t i = 1; i < n; i++) {
                        if (argv[i][0] != '-')
                                return;
                        for (const char *const *x = pw; *x; x++)
                                if (strcasecmp(argv[i], *x) == 0) {
                                        set_inline(
                                                a, "'%s %s' runs code given in its arguments", prog, argv[i]);
                                        return;
                                }
                }
                return;
        }
        size_t i = analyze_options(prog, NULL, argv, 1, a, NULL, NULL);
        if (i == SIZE_MAX)
                return;
        if (!opt_grammar_find(prog, NULL)) {
                set_inline(a, "'%s': shell whose options Nucleus does not know", prog);
                return;
        }
        if (i >= n || streq(argv[i], "-"))
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
                char **inner = analysis_vector(a, j - (i + 1));
                memcpy(inner, argv + i + 1, (j - (i + 1)) * sizeof(char *));
                analyze(p, inner, depth + 1, a);
                i = j;
        }
}

static void analyze_tar(char *const *argv, Analysis *a) {
        /* gtar and bsdtar are judged by GNU tar's grammar: fail closed where they differ. */
        (void) analyze_options("tar", NULL, argv, 1, a, NULL, NULL);
}

typedef struct ValueCheck {
        const char *prog;
        Analysis *a;
} ValueCheck;

/* psql and mysql: a backslash anywhere (\! runs a shell, \o |cmd, \copy ... program). */
static int db_value_visit(const OptItem *it, void *userdata) {
        ValueCheck *c = userdata;
        if (strchr(it->word, '\\') || (it->value && strchr(it->value, '\\'))) {
                _cleanup_free_ char *vis = policy_visible(it->word);
                set_inline(c->a, "'%s %s' can run shell commands or write files", c->prog, vis);
                return -1;
        }
        return 0;
}

static void analyze_misc(const char *prog, unsigned cls, char *const *argv, Analysis *a) {
        if (cls & PROG_MISC_GRAMMAR) {
                (void) analyze_options(prog, NULL, argv, 1, a, NULL, NULL);
                return;
        }
        bool pager = cls & PROG_PAGER, cargo = streq(prog, "cargo"), gh = streq(prog, "gh");
        if (!pager && !cargo && !gh)
                return;
        for (size_t i = 1; argv[i]; i++) {
                const char *w = argv[i];
                bool bad = false;
                if (pager)
                        bad = w[0] == '+';
                else if (cargo)
                        bad = streq(w, "--config") || startswith(w, "--config=");
                else if (gh)
                        bad = (streq(w, "alias") || streq(w, "extension") || streq(w, "ext")) && i == 1;
                if (bad) {
                        set_inline(a, "'%s %s' makes %s run a program", prog, w, prog);
                        return;
                }
        }
}
/* ---- programs that run code or commands from their arguments or input ---- */

/* Interpreters: any invocation runs code (a script the agent may have written, a module, code
 * from stdin or an argument). */
static bool is_interpreter(const char *prog) {
        /* The first byte of every name below: anything else is no interpreter. */
        if (!strchr("abcdegijklmnopqrstwxRT", prog[0]) || !prog[0])
                return false;
        switch (prog[0]) {
        case 'p':
                if (python_like(prog) || startswith(prog, "perl5") || startswith(prog, "php"))
                        return true;
                break;
        case 'l':
                if (startswith(prog, "lua5"))
                        return true;
                break;
        case 't':
                if (startswith(prog, "tclsh"))
                        return true;
                break;
        case 'r':
                if (startswith(prog, "ruby"))
                        return true;
                break;
        default:
                break;
        }
        return program_class(prog)->flags & PROG_INTERPRETER;
}

static bool allowed_string_matches(const char *s, char *const *aw, char *const *words);

/* The pre-split words of commands.allowed/blocked entry i, when the policy is compiled. */
static char *const *compiled_words(const CompiledList *cl, size_t i) {
        return cl && cl->words[i] ? cl->words[i] : NULL;
}

/* The entries of a compiled command list or rule array that can match some word of a set: a
 * bitset, or every entry (all) when nothing is compiled or the list is too long to index here. */
#define CANDIDATE_WORDS 4U
typedef struct Candidates {
        bool all;
        uint64_t bits[CANDIDATE_WORDS];
} Candidates;

/* The entries whose first byte (by_first, 256 * nw) is the first byte of words[0], or of any
 * word when any_word. */
static void candidates_for(Candidates *c, const uint64_t *by_first, size_t nw, char *const *words, bool any_word) {
        c->all = !by_first || nw > CANDIDATE_WORDS;
        if (c->all)
                return;
        memset(c->bits, 0, sizeof c->bits);
        if (nw == 1) { /* the usual case: up to 64 entries */
                for (char *const *w = words; *w; w++) {
                        c->bits[0] |= by_first[(unsigned char) (*w)[0]];
                        if (!any_word)
                                break;
                }
                return;
        }
        for (char *const *w = words; *w; w++) {
                const uint64_t *set = by_first + (unsigned char) (*w)[0] * nw;
                for (size_t k = 0; k < nw; k++)
                        c->bits[k] |= set[k];
                if (!any_word)
                        break;
        }
}

/* The first candidate at index i or after it (SIZE_MAX: none). */
static inline size_t candidate_next(const Candidates *c, size_t i) {
        if (c->all)
                return i;
        size_t w = i / 64;
        if (w >= CANDIDATE_WORDS)
                return SIZE_MAX;
        uint64_t bits = c->bits[w] & (~UINT64_C(0) << (i % 64));
        while (!bits) {
                if (++w >= CANDIDATE_WORDS)
                        return SIZE_MAX;
                bits = c->bits[w];
        }
        return w * 64 + (size_t) __builtin_ctzll(bits);
}

/* The compiled rules for an array when they were made from it, else NULL. */
static const CompiledRules *rules_compiled(const CompiledRules *cr, const CommandRules *rules) {
        return cr->ptr == rules->rules && cr->n == rules->n_rules ? cr : NULL;
}

/* The command allowlist names this program itself (an allowed string whose first word is it,
 * or an allowed rule for it) and argv matches that entry: the policy author chose to let it
 * run whatever scripts or makefiles it reads. */
static bool allowlist_names_program(const Policy *p, const PolicyCompiled *pc, char *const *argv) {
        const CommandPolicy *c = &p->commands;
        const CompiledRules *ra = pc ? rules_compiled(&pc->rules_allowed, &c->allowed_rules) : NULL;
        const CompiledList *la = pc ? &pc->commands_allowed : NULL;
        Candidates cand; /* entries whose program or first word shares argv[0]'s first byte */
        candidates_for(&cand, ra ? ra->by_first : NULL, ra ? ra->nw : 0, argv, false);
        for (size_t r = candidate_next(&cand, 0); r < c->allowed_rules.n_rules;
             r = candidate_next(&cand, r + 1)) {
                const CommandRule *rule = &c->allowed_rules.rules[r];
                if (streq(rule->program, argv[0]) && command_rule_matches(rule, argv))
                        return true;
        }
        candidates_for(&cand, la ? la->by_first : NULL, la ? la->nw : 0, argv, false);
        for (size_t i = candidate_next(&cand, 0); i != SIZE_MAX && c->allowed && c->allowed[i];
             i = candidate_next(&cand, i + 1)) {
                _cleanup_strv_free_ char **split = NULL;
                char *const *aw = compiled_words(la, i);
                if (!aw) {
                        if (words_split(c->allowed[i], &split, NULL) < 0)
                                continue;
                        aw = split;
                }
                if (!aw[0] || !streq(aw[0], argv[0]))
                        continue;
                if (allowed_string_matches(c->allowed[i], aw, argv))
                        return true;
        }
        return false;
}

/* A script operand that names standard input: the request's stdin is code then. */
static bool path_is_stdin(const char *w) {
        if (w[0] != '-' && w[0] != '/') /* every name below starts with one of them */
                return false;
        return streq(w, "-") || streq(w, "/dev/stdin") || startswith(w, "/dev/fd/") ||
                (startswith(w, "/proc/") && strstr(w, "/fd/")) || streq(w, "/dev/tty") ||
                streq(w, "/proc/self/fd/0");
}

/* A script operand naming standard input anywhere: the request's stdin is code then. */
static void analyze_interpreter_args(const char *prog, char *const *argv, Analysis *a) {
        STRV_FOREACH(w, argv + 1)
                if (path_is_stdin(*w)) {
                        set_inline(a, "'%s %s' runs code read from the request's input", prog, *w);
                        return;
                }
}

/* GNU sed script: true if it has none of the commands that run a shell or touch other files
 * (e, r, R, w, W, and the s///e and s///w flags). Anything not understood counts as unsafe. */
static bool sed_skip_delimited(const char **c, char delim) {
        const char *p = *c;
        while (*p && *p != delim) {
                if (*p == '\n' && delim != '\n')
                        return false;
                p += p[0] == '\\' && p[1] ? 2 : 1;
        }
        if (!*p)
                return false;
        *c = p + 1;
        return true;
}

static bool sed_script_safe(const char *s) {
        const char *c = s;
        for (;;) {
                c += strspn(c, " \t\n;");
                if (!*c)
                        return true;
                if (*c == '#') {
                        c += strcspn(c, "\n");
                        continue;
                }
                for (int k = 0; k < 2; k++) {
                        if (*c >= '0' && *c <= '9') {
                                c += strspn(c, "0123456789");
                                if (*c == '~')
                                        c += 1 + strspn(c + 1, "0123456789");
                        } else if (*c == '$')
                                c++;
                        else if (*c == '/' || *c == '\\') {
                                char delim = *c == '\\' ? c[1] : '/';
                                if (!delim || delim == '\n' || delim == '\\')
                                        return false;
                                c += *c == '\\' ? 2 : 1;
                                if (!sed_skip_delimited(&c, delim))
                                        return false;
                                c += strspn(c, "IM");
                        } else if (k == 1 && (*c == '+' || *c == '~'))
                                c += 1 + strspn(c + 1, "0123456789");
                        else if (k == 1)
                                return false;
                        c += strspn(c, " \t");
                        if (k == 0 && *c == ',') {
                                c++;
                                c += strspn(c, " \t");
                                continue;
                        }
                        break;
                }
                c += strspn(c, " \t!");
                char cmd = *c;
                if (!cmd)
                        return false;
                c++;
                switch (cmd) {
                case '{':
                case '}':
                case '=':
                case 'd':
                case 'D':
                case 'g':
                case 'G':
                case 'h':
                case 'H':
                case 'n':
                case 'N':
                case 'p':
                case 'P':
                case 'x':
                case 'z':
                case 'F':
                        break;
                case 'l':
                case 'L':
                case 'q':
                case 'Q':
                        c += strspn(c, " \t");
                        c += strspn(c, "0123456789");
                        break;
                case 'a':
                case 'i':
                case 'c':
                        /* Text up to an unescaped newline. */
                        while (*c && *c != '\n')
                                c += c[0] == '\\' && c[1] ? 2 : 1;
                        break;
                case ':':
                case 'b':
                case 't':
                case 'T':
                case 'v':
                        c += strcspn(c, ";\n");
                        break;
                case 's':
                case 'y': {
                        char delim = *c;
                        if (!delim || delim == '\n' || delim == '\\')
                                return false;
                        c++;
                        if (!sed_skip_delimited(&c, delim) || !sed_skip_delimited(&c, delim))
                                return false;
                        if (cmd == 's')
                                c += strspn(c, "gpiImM0123456789");
                        if (*c == 'e' || *c == 'w' || *c == 'W')
                                return false;
                        break;
                }
                default: /* e r R w W, and anything unknown */
                        return false;
                }
        }
}

static const WrapperGrammar sed_long = {
        "sed",
        "",
        "",
        WG_LIST("quiet",
                "silent",
                "debug",
                "posix",
                "regexp-extended",
                "separate",
                "sandbox",
                "unbuffered",
                "null-data",
                "zero-terminated",
                "binary",
                "follow-symlinks",
                "help",
                "version"),
        WG_LIST("expression", "file", "line-length"),
        WG_LIST("in-place"),
        0,
        NULL,
};

typedef struct SedState {
        const char *prog;
        Analysis *a;
        char *script;       /* every -e joined by newlines, or NULL */
        const char *first;  /* first operand (the script when no -e/-f) */
        bool file, sandbox; /* -f seen, --sandbox seen */
} SedState;

static int sed_opt(const OptItem *it, void *userdata) {
        SedState *s = userdata;
        bool expr = false;
        if (it->kind == OPT_ITEM_OPERAND) {
                if (!s->first)
                        s->first = it->word;
                return 0;
        }
        if (it->kind == OPT_ITEM_LONG) {
                int kind = 0;
                const char *full = long_opt_lookup(it->name, it->name_len, &sed_long, &kind);
                if (!full) {
                        _cleanup_free_ char *vis = policy_visible(it->word);
                        set_inline(s->a, "'%s %s': unknown option", s->prog, vis);
                        return -1;
                }
                s->sandbox = s->sandbox || streq(full, "sandbox");
                s->file = s->file || streq(full, "file");
                expr = streq(full, "expression");
        } else {
                s->file = s->file || it->letter == 'f';
                expr = it->letter == 'e';
        }
        if (expr) {
                char *j = NULL;
                if (asprintf(&j, "%s\n%s", s->script ?: "", it->value ?: "") < 0)
                        abort();
                free(s->script);
                s->script = j;
        }
        return 0;
}

static void analyze_sed(const char *prog, char *const *argv, Analysis *a) {
        SedState st = { .prog = prog, .a = a };
        if (analyze_options(prog, NULL, argv, 1, a, sed_opt, &st) != SIZE_MAX) {
                if (st.file)
                        set_inline(a, "'%s -f' runs a script file whose commands are not visible", prog);
                else if (!st.sandbox) { /* GNU sed --sandbox refuses e/r/w */
                        const char *script = st.script ?: st.first;
                        if (script && !sed_script_safe(script))
                                set_inline(
                                        a,
                                        "'%s' script uses e/r/w commands (runs a shell or touches files); "
                                        "use "
                                        "--sandbox",
                                        prog);
                }
        }
        free(st.script);
}

typedef struct MakeState {
        const char *prog;
        Analysis *a;
} MakeState;

static int make_opt(const OptItem *it, void *userdata) {
        MakeState *s = userdata;
        if (((it->kind == OPT_ITEM_SHORT && it->letter == 'f') ||
             (it->kind == OPT_ITEM_LONG &&
              opt_long_matches(it->name, it->name_len, (const char *const[]){ "file", "makefile", NULL }))) &&
            it->value && path_is_stdin(it->value)) {
                set_inline(s->a, "'%s' reads a makefile from the request's input", s->prog);
                return -1;
        }
        return 0;
}

static void analyze_make(const Policy *p, const char *prog, char *const *argv, Analysis *a) {
        MakeState st = { .prog = prog, .a = a };
        if (analyze_options(prog, NULL, argv, 1, a, make_opt, &st) == SIZE_MAX)
                return;
        /* Variables are assignments wherever they stand (also after "--"). */
        STRV_FOREACH(w, argv + 1)
                if (strchr(*w, '$') || strchr(*w, '`') || startswith(*w, "SHELL=") ||
                    startswith(*w, "MAKESHELL=") || startswith(*w, ".SHELLFLAGS=")) {
                        set_inline(a, "'%s %s' sets variables that make expands into commands", prog, *w);
                        return;
                }
        /* Any makefile runs commands: make counts as a shell unless the policy names it. */
        if (!p->commands.unrestricted && !allowlist_names_program(p, a->pc, argv))
                set_inline(a, "'%s' runs the commands of a makefile; allowlist make explicitly", prog);
}
/* Database clients: their arguments and input can run shell commands on this machine
 * (sqlite3 .shell/.system, psql \!, mysql system). sqlite3 only in -safe mode; psql and mysql
 * with no command-bearing argument; mongosh is an interpreter (JavaScript). */
/* Only for programs on db_clients. */
static void analyze_db_client(const char *prog, char *const *argv, Analysis *a) {
        size_t n = strv_length(argv);
        if (streq(prog, "sqlite3") || streq(prog, "sqlite")) {
                bool safe = false;
                for (size_t i = 1; i < n; i++) {
                        if (streq(argv[i], "-safe") || streq(argv[i], "--safe"))
                                safe = true;
                        if (startswith(argv[i], "-unsafe") || startswith(argv[i], "--unsafe")) {
                                set_inline(a, "'%s %s' turns off its safe mode", prog, argv[i]);
                                return;
                        }
                }
                if (!safe)
                        set_inline(
                                a,
                                "'%s' without -safe runs shell commands (.shell, .system) from its "
                                "arguments or input",
                                prog);
                return;
        }
        if (streq(prog, "mongosh") || streq(prog, "mongo")) {
                set_inline(a, "'%s' runs JavaScript from its arguments, files or input", prog);
                return;
        }
        if (in_list(prog, (const char *const[]){ "psql", "mysql", "mariadb", NULL })) {
                /* psql -c text is SQL unless it holds a backslash meta-command; mysql -e text is
                 * never parsed (`system`): the grammar marks it. */
                ValueCheck c = { .prog = prog, .a = a };
                (void) analyze_options(prog, NULL, argv, 1, a, db_value_visit, &c);
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
                n = strv_length(argv);
                char **layer = layer_of(a, argv, n);
                e->layers[e->n_layers++] = layer;
                e->effective = layer;
                e->raw_program = argv[0];
                const char *prog = layer[0];
                size_t next = 0; /* index of the wrapped command in argv; 0 = not a wrapper */

                if (isempty(prog)) {
                        set_fail(a, "empty program name");
                        return;
                }
                const ProgramClass *pcls = program_class(prog);
                unsigned cls = pcls->flags;
                if (prog[0] == 'l' && prog[1] == 'd' &&
                    (startswith(prog, "ld-linux") || startswith(prog, "ld.so") || startswith(prog, "ld-musl"))) {
                        set_inline(a, "'%s' (the dynamic loader) runs arbitrary programs", prog);
                        return;
                }
                if (streq(prog, "busybox") || streq(prog, "toybox")) {
                        if (n < 2)
                                return;
                        if (argv[1][0] == '-') {
                                if (!in_list(
                                            argv[1],
                                            (const char *const[]){ "--list", "--list-full", "--help", NULL }))
                                        set_fail(a, "'%s %s': unknown option", prog, argv[1]);
                                return;
                        }
                        /* The applet's options follow the multi-call binary's grammar, not GNU's. */
                        a->applet = streq(prog, "busybox") ? POLICY_IMPL_BUSYBOX : POLICY_IMPL_TOYBOX;
                        next = 1;
                } else if (cls & PROG_IDENTITY) {
                        set_fail(a, "'%s' changes identity; never allowed", prog);
                        return;
                } else if (cls & PROG_WRAPPER) {
                        const WrapperGrammar *g = &wrapper_grammars[pcls->wrapper];
                        WrapperState st = { .prog = g->name, .g = g };
                        size_t i = 1;
                        if (streq(prog, "nice") && n > 1 && nice_obsolete_number(argv[1]))
                                i = 2; /* obsolete "nice -NUM" / "nice --NUM" */
                        i = wrapper_parse(g, argv, i, wrapper_opt, &st, a);
                        if (i == SIZE_MAX)
                                return;
                        if (streq(prog, "env") && st.split_string) {
                                /* env -S: the string is split into words that replace it, then env
                                 * parses again: judge "env <words> <rest>" as a command of its own. */
                                char **words = NULL;
                                if (strpbrk(st.split_string, "$\\") ||
                                    words_split(st.split_string, &words, NULL) < 0) {
                                        set_fail(a, "'env -S' string with escapes or variables is not analysed");
                                        return;
                                }
                                /* The layers borrow the split words: the analysis keeps them. */
                                size_t nw = strv_length(words);
                                STRV_FOREACH(x, words)
                                        analysis_own(a, *x);
                                analysis_own(a, words);
                                char **inner = analysis_vector(a, 1 + nw + (n - i));
                                inner[0] = (char *) "env";
                                memcpy(inner + 1, words, nw * sizeof(char *));
                                memcpy(inner + 1 + nw, argv + i, (n - i) * sizeof(char *));
                                analyze(p, inner, depth + 1, a);
                                return;
                        }
                        if (streq(prog, "env")) {
                                if (i < n && streq(argv[i], "-"))
                                        i++; /* "env -" = env -i */
                                for (; i < n && strchr(argv[i], '='); i++) {
                                        const char *w = argv[i];
                                        _cleanup_free_ char *name = xstrndup(w, (size_t) (strchr(w, '=') - w));
                                        if (!policy_env_name_allowed(name)) {
                                                _cleanup_free_ char *vis = policy_visible(name);
                                                set_inline(
                                                        a,
                                                        "'env %s=...' sets a variable that can make "
                                                        "programs "
                                                        "run other code",
                                                        vis);
                                        }
                                }
                        } else if (streq(prog, "xargs"))
                                set_inline(a, "'xargs' appends arguments read from its input to the command");
                        if (st.no_command)
                                return;
                        i += g->positionals;
                        if (streq(prog, "xargs") && i >= n) {
                                static char *const echo[] = { (char *) "echo", NULL };
                                analyze(p, echo, depth + 1, a);
                                return;
                        }
                        next = i < n ? i : 0;
                } else if (cls & PROG_OPAQUE) {
                        set_inline(a, "'%s' runs other commands in a way Nucleus does not analyse", prog);
                        return;
                } else if (cls & PROG_SHELL) {
                        analyze_shell(prog, argv, a);
                        return;
                } else if (prog[0] == 'g' && startswith(prog, "git-") && prog[4]) {
                        /* git's dashed programs (/usr/lib/git-core/git-push) are the subcommand:
                         * judge `git-push x` as `git push x`. */
                        char **g = analysis_vector(a, n + 1);
                        g[0] = (char *) "git";
                        g[1] = (char *) (prog + 4);
                        memcpy(g + 2, argv + 1, (n - 1) * sizeof(char *));
                        analyze_git(p, g, e, a);
                        return;
                } else if (streq(prog, "git")) {
                        /* analyze_git adds the effective layer itself. */
                        analyze_git(p, argv, e, a);
                        return;
                } else if (streq(prog, "gh")) {
                        if (n >= 3 && streq(argv[1], "pr") && streq(argv[2], "create"))
                                e->op = OPERATION_CREATE_PR;
                        analyze_misc(prog, cls, argv, a);
                        return;
                } else if (streq(prog, "find") || streq(prog, "bfs")) {
                        analyze_find(p, argv, depth, a);
                        return;
                } else if (streq(prog, "tar") || streq(prog, "bsdtar") || streq(prog, "gtar")) {
                        analyze_tar(argv, a);
                        return;
                } else {
                        if (is_interpreter(prog)) {
                                analyze_interpreter(prog, argv, a);
                                analyze_interpreter_args(prog, argv, a);
                                /* Any interpreter run is code execution (a script the agent wrote,
                                 * a module, its input). With an unrestricted command list a script is
                                 * no more than `./script` the agent may already run; otherwise the
                                 * allowlist must name the interpreter itself ("python3", or a rule for
                                 * it), not merely allow it through a wrapper or an unrelated entry. */
                                if (!p->commands.unrestricted && !allowlist_names_program(p, a->pc, layer))
                                        set_inline(
                                                a,
                                                "'%s' is an interpreter and runs code (scripts, modules, "
                                                "input); the command allowlist does not name it",
                                                prog);
                        } else if (streq(prog, "sed") || streq(prog, "gsed"))
                                analyze_sed(prog, argv, a);
                        else if (cls & PROG_MAKE)
                                analyze_make(p, prog, layer, a);
                        if (cls & PROG_DB)
                                analyze_db_client(prog, argv, a);
                        analyze_misc(prog, cls, argv, a);
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
        if (w[0] == bw[0] && streq(w, bw))
                return true;
        if (w[0] == bw[0] && (last || bw[strlen(bw) - 1] == '=') && startswith(w, bw))
                return true;
        if (is_short_cluster(bw) && (is_short_cluster(w) || startswith(w, "--")) &&
            bw[strspn(bw + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") + 1] == 0)
                return short_letters_cover(words, j, bw + 1);
        return false;
}

/* Blocked string s against one layer: single word = any word equal; several words = an
 * in-order subsequence (last word and "x=" words match as prefixes; "-rf" matches any
 * spelling of those short flags: -fr, -r -f, --recursive --force). */
static bool blocked_string_matches(const char *s, char *const *pre, char *const *words) {
        _cleanup_strv_free_ char **split = NULL;
        char *const *bw = pre;
        if (!bw) {
                if (words_split(s, &split, NULL) < 0)
                        return false;
                bw = split;
        }
        if (!bw[0])
                return false;
        size_t k = strv_length(bw), pos = 0;
        if (k == 1) {
                for (char *const *w = words; *w; w++)
                        if ((*w)[0] == bw[0][0] && streq(*w, bw[0]))
                                return true;
                return false;
        }
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

static bool allowed_string_matches(const char *s, char *const *pre, char *const *words) {
        _cleanup_strv_free_ char **split = NULL;
        char *const *aw = pre;
        if (!aw) {
                if (words_split(s, &split, NULL) < 0)
                        return false;
                aw = split;
        }
        if (!aw[0])
                return false;
        for (size_t i = 0; aw[i]; i++)
                if (!words[i] || words[i][0] != aw[i][0] || !streq(words[i], aw[i]))
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
 * reason in *ret_reason. Only the entries whose first byte some word shares are tried (a
 * rule's program and an allowed string's first word must equal the layer's first word; a
 * blocked string's first word must equal, or prefix, some word unless it is a short-option
 * cluster, whose entry candidates_for() always keeps). */
static bool command_component_allows(
        const CommandPolicy *c, const PolicyCompiled *pc, const Exec *e, char **ret_reason) {
        const CompiledRules *rb = pc ? rules_compiled(&pc->rules_blocked, &c->blocked_rules) : NULL,
                            *ra = pc ? rules_compiled(&pc->rules_allowed, &c->allowed_rules) : NULL;
        const CompiledList *lb = pc ? &pc->commands_blocked : NULL, *la = pc ? &pc->commands_allowed : NULL;
        Candidates cand;
        for (size_t l = 0; l < e->n_layers; l++) {
                char *const *words = e->layers[l];
                candidates_for(&cand, rb ? rb->by_first : NULL, rb ? rb->nw : 0, words, false);
                for (size_t r = candidate_next(&cand, 0); r < c->blocked_rules.n_rules;
                     r = candidate_next(&cand, r + 1))
                        if (command_rule_matches(&c->blocked_rules.rules[r], words)) {
                                *ret_reason = policy_format(
                                        "matches commands.blocked_rules entry for '%s'",
                                        c->blocked_rules.rules[r].program);
                                return false;
                        }
                candidates_for(&cand, lb ? lb->by_first : NULL, lb ? lb->nw : 0, words, true);
                for (size_t i = candidate_next(&cand, 0); i != SIZE_MAX && c->blocked && c->blocked[i];
                     i = candidate_next(&cand, i + 1))
                        if (blocked_string_matches(c->blocked[i], compiled_words(lb, i), words)) {
                                *ret_reason = policy_format(
                                        "matches commands.blocked entry '%s'", c->blocked[i]);
                                return false;
                        }
        }
        if (c->unrestricted)
                return true;
        if (!program_path_trusted(e->raw_program)) {
                /* Blocks match the basename (no bypass by path), but an allowlist entry "cargo test"
                 * means the system's cargo, not ./cargo written into the workspace. */
                *ret_reason = policy_format(
                        "runs '%s', which is not a system program; allowlists name programs found on PATH",
                        e->raw_program);
                return false;
        }
        candidates_for(&cand, ra ? ra->by_first : NULL, ra ? ra->nw : 0, e->effective, false);
        for (size_t r = candidate_next(&cand, 0); r < c->allowed_rules.n_rules;
             r = candidate_next(&cand, r + 1))
                if (command_rule_matches(&c->allowed_rules.rules[r], e->effective))
                        return true;
        candidates_for(&cand, la ? la->by_first : NULL, la ? la->nw : 0, e->effective, false);
        for (size_t i = candidate_next(&cand, 0); i != SIZE_MAX && c->allowed && c->allowed[i];
             i = candidate_next(&cand, i + 1))
                if (allowed_string_matches(c->allowed[i], compiled_words(la, i), e->effective))
                        return true;
        *ret_reason = xstrdup("is not in commands.allowed or commands.allowed_rules");
        return false;
}

static bool grants_shell_compute(const Policy *p, const PolicyCompiled *pc) {
        char *argv[] = { (char *) "sh", (char *) "-c", (char *) "true", NULL };
        _cleanup_free_ char *reason = NULL;
        Exec e = { .n_layers = 1, .layers = { argv }, .effective = argv, .op = OPERATION_RUN_BASH };
        if (!p || p->capabilities.level[OPERATION_RUN_BASH] < CAP_LOW_RISK)
                return false;
        return command_component_allows(&p->commands, pc, &e, &reason);
}

void policy_compiled_cache_shell(const Policy *p, PolicyCompiled *c) {
        c->grants_shell = grants_shell_compute(p, c);
        c->shell_level = p->capabilities.level[OPERATION_RUN_BASH];
        c->shell_unrestricted = p->commands.unrestricted;
        c->shell_rules_allowed = p->commands.allowed_rules.rules;
        c->shell_n_allowed = p->commands.allowed_rules.n_rules;
        c->shell_rules_blocked = p->commands.blocked_rules.rules;
        c->shell_n_blocked = p->commands.blocked_rules.n_rules;
}

/* policy_grants_shell() with the compiled form already looked up (c may be NULL). */
static bool grants_shell_compiled(const Policy *p, const PolicyCompiled *c) {
        if (c && c->shell_level == p->capabilities.level[OPERATION_RUN_BASH] &&
            c->shell_unrestricted == p->commands.unrestricted &&
            c->shell_rules_allowed == p->commands.allowed_rules.rules &&
            c->shell_n_allowed == p->commands.allowed_rules.n_rules &&
            c->shell_rules_blocked == p->commands.blocked_rules.rules &&
            c->shell_n_blocked == p->commands.blocked_rules.n_rules)
                return c->grants_shell;
        return grants_shell_compute(p, c);
}

bool policy_grants_shell(const Policy *p) {
        return grants_shell_compiled(p, policy_compiled(p));
}

/* Best effort: the lexically cleaned path an argument word names, relative to the
 * workspace root (cwd joined to relative words; "." dropped, ".." pops what it can). Absolute
 * words keep their components. NULL when the word is empty or over-long. */
#define ARG_PATH_MAX 4096U

/* Append the cleaned components of s to out (length *o). */
static void arg_path_append(char *out, size_t *o, const char *s) {
        for (const char *c = s; *c;) {
                size_t l = (size_t) (strchrnul(c, '/') - c);
                if (l == 0 || (l == 1 && c[0] == '.')) {
                } else if (l == 2 && c[0] == '.' && c[1] == '.') {
                        while (*o > 0 && out[*o - 1] != '/')
                                (*o)--;
                        if (*o > 0)
                                (*o)--;
                } else {
                        if (*o > 0)
                                out[(*o)++] = '/';
                        memcpy(out + *o, c, l);
                        *o += l;
                }
                c += l;
                if (*c == '/')
                        c++;
        }
        out[*o] = 0;
}

/* Into out (2 * ARG_PATH_MAX + 2 bytes). False when the word is empty or over-long. */
static bool arg_path_clean(const char *cwd, const char *w, char *out) {
        size_t o = 0;
        if (isempty(w) || strlen(w) > ARG_PATH_MAX || (cwd && strlen(cwd) > ARG_PATH_MAX))
                return false;
        out[0] = 0;
        if (w[0] != '/' && !isempty(cwd))
                arg_path_append(out, &o, cwd);
        arg_path_append(out, &o, w);
        return true;
}

/* The paths.blocked rule an argument names, or NULL. Judges the word, the value of
 * "--opt=value", and the path of "rev:path"; each at every component-boundary suffix, so
 * "/workspace/.env" and "../x/.env" are caught whatever the workspace's absolute name is. */
static const char *arg_blocked_rule(
        const Policy *p, const PolicyCompiled *pc, const char *cwd, const char *w, const char **ret_cand) {
        const char *cands[3] = { w, NULL, NULL };
        bool any_depth = pc && pc->blocked_all_any_depth;
        if (pc && pc->paths_blocked.n == 0)
                return NULL;
        if (w[0] == '-' && strchr(w, '='))
                cands[1] = strchr(w, '=') + 1;
        if (strchr(w, ':'))
                cands[2] = strrchr(w, ':') + 1;
        for (size_t k = 0; k < ELEMENTSOF(cands); k++) {
                if (!cands[k])
                        continue;
                char buf[2 * ARG_PATH_MAX + 2];
                const char *c = cands[k], *norm;
                /* Without a cwd, one component other than "." and ".." is its own cleaned path. */
                if (isempty(cwd) && *c && !strchr(c, '/') && !streq(c, ".") && !streq(c, "..") &&
                    strlen(c) <= ARG_PATH_MAX)
                        norm = c;
                else
                        norm = arg_path_clean(cwd, c, buf) ? buf : NULL;
                if (norm && any_depth) {
                        /* Every blocked glob is "**"-anchored: one that matches a suffix at a
                         * component boundary matches the whole path, and the other way round. */
                        const char *rule = policy_blocked_rule_compiled(p, pc, norm);
                        if (rule) {
                                *ret_cand = cands[k];
                                return rule;
                        }
                        continue;
                }
                for (const char *sfx = norm; sfx && *sfx;) {
                        const char *rule = policy_blocked_rule_compiled(p, pc, sfx);
                        if (rule) {
                                *ret_cand = cands[k];
                                return rule;
                        }
                        sfx = strchr(sfx, '/');
                        if (sfx)
                                sfx++;
                }
        }
        return NULL;
}

static const char *const separator_words[] = { ";",  "&&", "||", "|", "&",  "|&", ";;",
                                               "&>", ">",  ">>", "<", "2>", NULL };

/* The command as shown in messages, made only when a message needs it. */
typedef struct Display {
        char *const *argv; /* joined with quoting, or */
        const char *given; /* the command string as given */
        char *text;
} Display;

static void display_done(Display *d) {
        d->text = mfree(d->text);
}

static const char *display_text(Display *d) {
        if (!d->text) {
                _cleanup_free_ char *joined = d->given ? NULL : d->argv ? words_join(d->argv) : xstrdup("");
                d->text = policy_visible(d->given ?: joined);
        }
        return d->text;
}

static int check_command_words(
        const Policy *p, char *const *argv, const char *cwd, Display *dsp, PolicyDecision *ret) {
        _cleanup_(analysis_done) Analysis a;
        analysis_init(&a, p);
        _cleanup_free_ char *reason = NULL;
        bool shell = grants_shell_compiled(p, a.pc);

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
                        display_text(dsp));
                return 0;
        }
        /* 2. separators given as words: only a shell would read them as such. */
        bool in_find_exec = false; /* a ';' ending find's -exec is find syntax, not a separator */
        if (!shell)
                STRV_FOREACH(w, argv) {
                        /* Every word below starts with '-' or one of ";&|<>2". */
                        char c0 = (*w)[0];
                        if (c0 != '-' && c0 != ';' && c0 != '&' && c0 != '|' && c0 != '<' && c0 != '>' &&
                            c0 != '2')
                                continue;
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
                                        display_text(dsp),
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
                        display_text(dsp),
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
                                display_text(dsp));
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
                        display_text(dsp),
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
                if (!command_component_allows(&p->commands, a.pc, &a.execs[i], &reason)) {
                        _cleanup_free_ char *eff = words_join(a.execs[i].effective);
                        _cleanup_free_ char *vis = policy_visible(eff);
                        policy_decision_set(
                                ret,
                                POLICY_DENY,
                                "command_denied",
                                a.execs[i].op,
                                "command denied: '%s' blocked by policy ('%s' %s)",
                                display_text(dsp),
                                vis,
                                reason);
                        return 0;
                }
        /* 7. arguments naming blocked paths (best effort: commands read as the agent) */
        /* Every later layer of an Exec is made of words of its first (wrappers unwrapped, git
         * global options removed), so the first layer's words are all the words there are. */
        for (size_t i = 0; i < a.n_execs; i++)
                for (size_t l = 0; l < a.execs[i].n_layers && l < 1; l++)
                        for (size_t k = 1; a.execs[i].layers[l][0] && a.execs[i].layers[l][k]; k++) {
                                const char *cand = NULL;
                                const char *rule = arg_blocked_rule(
                                        p, a.pc, cwd, a.execs[i].layers[l][k], &cand);
                                if (!rule)
                                        continue;
                                _cleanup_free_ char *vis = policy_visible(cand);
                                policy_decision_set(
                                        ret,
                                        POLICY_DENY,
                                        "path_denied",
                                        OPERATION_READ_FILES,
                                        "command denied: '%s': argument '%s' names a blocked path "
                                        "(paths.blocked '%s')",
                                        display_text(dsp),
                                        vis,
                                        rule);
                                return 0;
                        }
        /* 8. obligations: the most consequential operation first */
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
                                display_text(dsp));
                        return 0;
                }
        }
        policy_decision_allow(ret, a.execs[0].op);
        return 0;
}

int policy_check_command_at(const Policy *p, char *const *argv, const char *cwd, PolicyDecision *ret) {
        if (!p || !ret)
                return -EINVAL;
        *ret = (PolicyDecision){};
        Display dsp = { .argv = argv };
        int r = check_command_words(p, argv, cwd, &dsp, ret);
        free(dsp.text);
        return r;
}

int policy_check_command(const Policy *p, char *const *argv, PolicyDecision *ret) {
        return policy_check_command_at(p, argv, NULL, ret);
}

int policy_check_command_string(const Policy *p, const char *command, PolicyDecision *ret) {
        _cleanup_strv_free_ char **words = NULL;
        unsigned meta = 0;
        int r;
        if (!p || !command || !ret)
                return -EINVAL;
        *ret = (PolicyDecision){};
        _cleanup_(display_done) Display dsp = { .given = command };
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
                        display_text(&dsp));
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
                        display_text(&dsp),
                        what);
                return 0;
        }
        if (meta &
            (WORDS_META_SEPARATOR | WORDS_META_REDIRECT | WORDS_META_SUBST | WORDS_META_NEWLINE |
             WORDS_META_SUBSHELL)) {
                /* A shell is granted and the string is shell syntax: judge it as what the proxy
                 * would run, `sh -c <string>`. */
                char *sh[] = { (char *) "sh", (char *) "-c", (char *) command, NULL };
                return check_command_words(p, sh, NULL, &dsp, ret);
        }
        return check_command_words(p, words, NULL, &dsp, ret);
}

bool policy_command_stdin_is_code(const Policy *p, char *const *argv) {
        static const char *const readers[] = { "psql", "mysql", "mariadb", NULL };
        _cleanup_(analysis_done) Analysis a;
        analysis_init(&a, p);
        if (!p || !argv || !argv[0])
                return true;
        analyze(p, argv, 0, &a);
        if (a.fail_reason)
                return true;
        for (size_t i = 0; i < a.n_execs; i++)
                if (a.execs[i].effective && a.execs[i].effective[0] &&
                    in_list(a.execs[i].effective[0], readers))
                        return true;
        return false;
}

bool policy_command_runs_git(const Policy *p, char *const *argv) {
        _cleanup_(analysis_done) Analysis a;
        analysis_init(&a, p);
        if (!p || !argv || !argv[0])
                return true;
        analyze(p, argv, 0, &a);
        if (a.fail_reason)
                return true;
        for (size_t i = 0; i < a.n_execs; i++)
                if (a.execs[i].effective && a.execs[i].effective[0] && streq(a.execs[i].effective[0], "git"))
                        return true;
        return false;
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
