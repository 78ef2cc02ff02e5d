/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Option grammars (getopt optstrings taken from each program's source or --help) and the one
 * scanner that reads short-option clusters by them. Input: untrusted argv words. The scanner
 * never allocates and never looks further than the words it is given.
 */
#include <pthread.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "policy-options.h"
#include "string-util.h"

#define L(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* Shells: the first operand is the script; -c/-s/-i read commands from an argument or input. */
#define SHELL_POSIX "abcCDefhHiklmnprstuvxBEPTo;O;"
#define SHELL_WHY "runs commands given in its arguments or input"
#define SHELL_ENTRY(name)                                                                               \
        {                                                                                               \
                name, NULL, SHELL_POSIX, "cis", L("command", "init-command"), L("rcfile", "init-file"), \
                        OPT_GRAMMAR_POSIX | OPT_GRAMMAR_PLUS, SHELL_WHY                                 \
        }

static const OptGrammar grammars[] = {
        SHELL_ENTRY("sh"),
        SHELL_ENTRY("bash"),
        SHELL_ENTRY("rbash"),
        SHELL_ENTRY("dash"),
        SHELL_ENTRY("ash"),
        SHELL_ENTRY("ksh"),
        SHELL_ENTRY("mksh"),
        SHELL_ENTRY("pdksh"),
        SHELL_ENTRY("oksh"),
        SHELL_ENTRY("yash"),
        SHELL_ENTRY("posh"),
        SHELL_ENTRY("busybox-sh"),
        { "zsh",
          NULL,
          "0123456789abcdefghijklmnpqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZo;",
          "cis",
          L("command"),
          NULL,
          OPT_GRAMMAR_POSIX | OPT_GRAMMAR_PLUS,
          SHELL_WHY },
        { "csh", NULL, "bcdefFilmnqstvVxX", "cist", NULL, NULL, OPT_GRAMMAR_POSIX, SHELL_WHY },
        { "tcsh", NULL, "bcdefFilmnqstvVxX", "cist", NULL, NULL, OPT_GRAMMAR_POSIX, SHELL_WHY },
        { "fish",
          NULL,
          "c:C:d:D:f:hilno:p:Pv",
          "cCi",
          L("command", "init-command"),
          L("debug", "debug-output", "features", "profile", "profile-startup", "debug-stack-frames"),
          OPT_GRAMMAR_POSIX,
          SHELL_WHY },
        { "elvish", NULL, "ci", "ci", NULL, NULL, OPT_GRAMMAR_POSIX, SHELL_WHY },
        { "xonsh", NULL, "ci", "ci", L("command"), NULL, OPT_GRAMMAR_POSIX, SHELL_WHY },
        { "nu", NULL, "c:i", "ci", L("commands", "execute"), NULL, OPT_GRAMMAR_POSIX, SHELL_WHY },

        /* Interpreters: the first operand is the script. */
        { "python*",
          NULL,
          "bBc:dEhiIm:OPqRsSuvVxW:X:Q:?",
          "ci",
          NULL,
          NULL,
          OPT_GRAMMAR_POSIX,
          "runs code given in its arguments or input" },
        { "pypy*",
          NULL,
          "bBc:dEhiIm:OPqRsSuvVxW:X:Q:?",
          "ci",
          NULL,
          NULL,
          OPT_GRAMMAR_POSIX,
          "runs code given in its arguments or input" },
        { "perl*",
          NULL,
          "0#acC#d::D::e:E:F::hi::I:l#m::M::npsStTuUvVwWx::X",
          "eE",
          NULL,
          NULL,
          OPT_GRAMMAR_POSIX,
          "runs code given in its arguments" },
        { "ruby*",
          NULL,
          "0#acC:dE:e:F::hi::I:K::lnpr:sSUvwW::x::y",
          "e",
          L("eval"),
          L("encoding"),
          OPT_GRAMMAR_POSIX,
          "runs code given in its arguments" },
        { "irb", NULL, "dfhr:I:vwW", "", NULL, NULL, OPT_GRAMMAR_POSIX, "" },
        { "jruby",
          NULL,
          "0#acC:dE:e:F::hi::I:lnpr:sSvwW::x::",
          "e",
          NULL,
          NULL,
          OPT_GRAMMAR_POSIX,
          "runs code given in its arguments" },
        { "node",
          NULL,
          "cC:e:hip:r:v",
          "eip",
          L("eval", "print", "input-type", "interactive"),
          L("require", "import", "loader", "experimental-loader", "eval", "print"),
          OPT_GRAMMAR_POSIX,
          "runs code given in its arguments or input" },
        { "nodejs",
          NULL,
          "cC:e:hip:r:v",
          "eip",
          L("eval", "print", "input-type", "interactive"),
          L("require", "import", "loader", "experimental-loader", "eval", "print"),
          OPT_GRAMMAR_POSIX,
          "runs code given in its arguments or input" },
        { "bun",
          NULL,
          "e:hip:r:v",
          "eip",
          L("eval", "print"),
          L("require", "import", "preload", "eval", "print"),
          OPT_GRAMMAR_POSIX,
          "runs code given in its arguments or input" },
        { "php*",
          NULL,
          "aB:c:Cd:eE:f:F:hHilmnqr:R:sS:t:vwz:",
          "aBErR",
          L("run", "process-begin", "process-code", "process-end", "interactive"),
          NULL,
          OPT_GRAMMAR_POSIX,
          "runs code given in its arguments or input" },
        { "lua*", NULL, "e:iEl:vW", "ei", NULL, NULL, OPT_GRAMMAR_POSIX, "runs code given in its arguments or input" },
        { "luajit",
          NULL,
          "b::e:Eij:l:O::v",
          "bei",
          NULL,
          NULL,
          OPT_GRAMMAR_POSIX,
          "runs code given in its arguments or input, or writes files" },
        { "julia",
          NULL,
          "C:e:E:g:hHiJ:L:m:O:p:qt:v",
          "eEi",
          L("eval", "print"),
          NULL,
          OPT_GRAMMAR_POSIX,
          "runs code given in its arguments or input" },
        { "Rscript", NULL, "e:", "e", L("expr"), NULL, OPT_GRAMMAR_POSIX, "runs code given in its arguments" },
        { "R",
          NULL,
          "d:e:f:g:hqsv",
          "de",
          L("expr", "debugger"),
          NULL,
          OPT_GRAMMAR_POSIX,
          "runs code or a debugger given in its arguments" },
        { "osascript", NULL, "e:il:s:", "ei", NULL, NULL, OPT_GRAMMAR_POSIX, "runs code given in its arguments or input" },
        /* awk: program text unless -f/-E FILE; -e/--source is program text; -o, -p, -d write
         * files; -l loads a shared library; -D reads debugger commands from input. */
        { "gawk",
          NULL,
          "bcCd::D::e:E:f:F:ghi:l:L::MnNo::Op::PrsStv:VYZ:W:",
          "edDlop",
          L("source", "load", "dump-variables", "pretty-print", "profile", "debug"),
          L("file", "exec", "field-separator", "assign", "include", "source", "load"),
          OPT_GRAMMAR_POSIX,
          "runs program text from its arguments, loads libraries or writes files" },
        { "awk",
          NULL,
          "bcCd::D::e:E:f:F:ghi:l:L::MnNo::Op::PrsStv:VYZ:W:",
          "edDlop",
          L("source", "load", "dump-variables", "pretty-print", "profile", "debug"),
          L("file", "exec", "field-separator", "assign", "include", "source", "load"),
          OPT_GRAMMAR_POSIX,
          "runs program text from its arguments, loads libraries or writes files" },
        { "mawk", NULL, "f:F:v:W:", "", NULL, NULL, OPT_GRAMMAR_POSIX, "" },
        { "nawk", NULL, "df:F:v:V", "", NULL, NULL, OPT_GRAMMAR_POSIX, "" },

        /* Programs whose own options run programs or write files. GNU programs permute. */
        { "sed", NULL, "bEe:f:i::l:nrsuz", "", NULL, L("expression", "file", "line-length"), 0, "" },
        { "gsed", NULL, "bEe:f:i::l:nrsuz", "", NULL, L("expression", "file", "line-length"), 0, "" },
        { "make",
          NULL,
          "bBC:d::eE:f:hiI:j::kl::L::no:O::pqrRsStvwW:",
          "E",
          L("eval"),
          L("file",
            "makefile",
            "directory",
            "include-dir",
            "old-file",
            "assume-old",
            "new-file",
            "what-if",
            "assume-new",
            "eval",
            "jobs",
            "load-average"),
          0,
          "evaluates make code given in its arguments" },
        { "gmake",
          NULL,
          "bBC:d::eE:f:hiI:j::kl::L::no:O::pqrRsStvwW:",
          "E",
          L("eval"),
          L("file",
            "makefile",
            "directory",
            "include-dir",
            "old-file",
            "assume-old",
            "new-file",
            "what-if",
            "assume-new",
            "eval",
            "jobs",
            "load-average"),
          0,
          "evaluates make code given in its arguments" },
        { "tar",
          NULL,
          "0123456789AaBcdGhiJjkMmnOoPpRrSstUuvWwxZzb:C:f:F:g:H:I:K:L:N:T:V:X:",
          "IF",
          L("checkpoint-action",
            "to-command",
            "use-compress-program",
            "info-script",
            "new-volume-script",
            "rsh-command",
            "rmt-command"),
          L("file",
            "directory",
            "files-from",
            "exclude-from",
            "listed-incremental",
            "use-compress-program",
            "info-script",
            "new-volume-script",
            "to-command",
            "rsh-command",
            "rmt-command"),
          OPT_GRAMMAR_OLD_TAR,
          "makes tar run a program" },
        { "rsync",
          NULL,
          "0468aAbcCdDEgHhiIkKlLmnNoOpPqrRsStUuvWxXyzB:e:f:M:T:@:",
          "eM",
          L("rsh", "rsync-path", "remote-option"),
          L("rsh", "rsync-path", "remote-option", "filter", "exclude", "include", "temp-dir", "block-size"),
          0,
          "makes rsync run a program" },
        { "ssh",
          NULL,
          "1246afgkMnNqstTvVxXyACGKb:c:D:e:E:F:i:I:J:l:L:m:o:O:p:P:Q:R:S:w:W:B:",
          "EFoS",
          NULL,
          NULL,
          OPT_GRAMMAR_POSIX,
          "makes ssh run a program or write a file" },
        { "slogin",
          NULL,
          "1246afgkMnNqstTvVxXyACGKb:c:D:e:E:F:i:I:J:l:L:m:o:O:p:P:Q:R:S:w:W:B:",
          "EFoS",
          NULL,
          NULL,
          OPT_GRAMMAR_POSIX,
          "makes ssh run a program or write a file" },
        { "scp", NULL, "12346ABCdfOpqRrstTvc:D:F:i:J:l:o:P:S:X:", "DFoS", NULL, NULL, 0, "makes scp run a program" },
        { "sftp",
          NULL,
          "1246aACfhNpqrvb:B:c:D:F:i:J:l:o:P:R:s:S:X:",
          "bDFoSs",
          NULL,
          NULL,
          0,
          "makes sftp run a program or commands" },
        { "zip",
          NULL,
          "0123456789AcdDeFfgHhjJklLmoqrRSTuUvwXyz$@^b:n:t:x:i:O:P:s:Z:",
          "T",
          L("unzip-command", "test"),
          NULL,
          0,
          "makes zip run a program (-T/-TT test with an unzip command)" },
        { "man",
          NULL,
          "7acdDfFhiIklnqtuVwWzZC:e:E:L:m:M:p:P:r:R:s:S:H::T::X::",
          "HP",
          L("pager", "html"),
          L("config-file",
            "extension",
            "encoding",
            "locale",
            "systems",
            "manpath",
            "preprocessor",
            "pager",
            "prompt",
            "recode",
            "sections"),
          0,
          "makes man run a program" },
        { "npm",
          NULL,
          "aBdDEfgghlOPqSsvWwyc:C:p:",
          "c",
          L("call"),
          L("call", "prefix", "workspace", "package"),
          0,
          "runs commands given in its arguments" },
        { "npx",
          NULL,
          "aBdDEfgghlOPqSsvWwyc:C:p:",
          "c",
          L("call"),
          L("call", "prefix", "workspace", "package"),
          0,
          "runs commands given in its arguments" },
        { "pnpm",
          NULL,
          "aBdDEfgghlOPqrSsvWwyc:C:F:p:",
          "c",
          L("call"),
          L("call", "dir", "filter", "package"),
          0,
          "runs commands given in its arguments" },
        { "yarn", NULL, "aBdDEfghlOPqSsvWwyc:C:p:", "c", L("call"), NULL, 0, "runs commands given in its arguments" },
        { "psql",
          NULL,
          "01aAbeEHlnqsStwWxXzc:d:f:F:h:L:o:p:P:R:T:U:v:V?",
          "foL",
          L("file", "output", "log-file"),
          L("command",
            "dbname",
            "file",
            "field-separator",
            "host",
            "log-file",
            "output",
            "port",
            "pset",
            "record-separator",
            "table-attr",
            "username",
            "set",
            "variable"),
          0,
          "can run shell commands or write files" },
        { "mysql",
          NULL,
          "?ABcCEfgGHiLnNoqrstTUvVwWxXzD:e:h:P:S:u:p::",
          "e",
          L("execute",
            "pager",
            "tee",
            "defaults-file",
            "defaults-extra-file",
            "init-command",
            "plugin-dir",
            "default-auth",
            "load-data-local-dir",
            "defaults-group-suffix"),
          NULL,
          0,
          "can run shell commands or write files" },
        { "mariadb",
          NULL,
          "?ABcCEfgGHiLnNoqrstTUvVwWxXzD:e:h:P:S:u:p::",
          "e",
          L("execute",
            "pager",
            "tee",
            "defaults-file",
            "defaults-extra-file",
            "init-command",
            "plugin-dir",
            "default-auth",
            "load-data-local-dir",
            "defaults-group-suffix"),
          NULL,
          0,
          "can run shell commands or write files" },

        /* git subcommands (parse-options: clusters, attached values, options after operands). */
        { "git",
          "rebase",
          "fikmnqrvC:s:S::x:X:",
          "x",
          L("exec"),
          L("exec", "onto", "strategy", "strategy-option"),
          0,
          "makes git run a program" },
        { "git",
          "clone",
          "46lnqsvb:c:j:o:u:",
          "u",
          L("upload-pack", "template"),
          L("upload-pack", "template", "config", "branch", "origin", "jobs", "depth", "reference"),
          0,
          "makes git run a program" },
        { "git", "fetch", "46afkmnpPqtuvj:o:", "", L("upload-pack"), L("upload-pack", "depth", "jobs"), 0, "" },
        { "git", "pull", "46aefknpqtvj:o:r::s:S::X:", "", L("upload-pack"), L("upload-pack", "strategy"), 0, "" },
        { "git", "ls-remote", "bhqto:", "", L("upload-pack", "exec"), L("upload-pack", "exec"), 0, "" },
        { "git",
          "archive",
          "0123456789lvo:",
          "o",
          L("exec", "output", "remote"),
          L("exec", "output", "remote", "prefix", "format"),
          0,
          "makes git run a program or write a file outside the path policy" },
        { "git",
          "grep",
          "0123456789acEFGhHiIlLnopPqrvwWzA:B:C:e:f:m:O::",
          "O",
          L("open-files-in-pager", "ext-grep"),
          NULL,
          0,
          "makes git run a program" },
        { "git",
          "format-patch",
          "0123456789DkNnpqRsWo:v:B::C::l::M::S::U::",
          "o",
          L("output-directory", "output"),
          L("output-directory", "output"),
          0,
          "writes files outside the path policy" },
        { "git",
          "config",
          "elzf:",
          "ef",
          L("edit", "file", "blob", "rename-section", "remove-section"),
          L("file", "blob"),
          0,
          "edits, renames or points git at configuration" },
};

const OptGrammar *opt_grammars(size_t *ret_n) {
        *ret_n = ELEMENTSOF(grammars);
        return grammars;
}

static bool program_matches(const char *pattern, const char *program) {
        if (pattern[0] != program[0])
                return false;
        size_t l = strlen(pattern);
        if (l > 0 && pattern[l - 1] == '*')
                return strncmp(pattern, program, l - 1) == 0;
        return streq(pattern, program);
}

/* The grammars whose program starts with each byte, and those whose subcommand starts with each
 * byte (0: no subcommand), as bitsets in table order, built once: a lookup tries only the
 * grammars in both (program_matches() and the subcommand comparison reject every other one by
 * a first byte). */
#define GRAMMAR_WORDS ((ELEMENTSOF(grammars) + 63) / 64)
static uint64_t grammars_by_first[256][GRAMMAR_WORDS], grammars_by_sub[256][GRAMMAR_WORDS];
static pthread_once_t grammars_once = PTHREAD_ONCE_INIT;

static void grammars_index(void) {
        for (size_t i = 0; i < ELEMENTSOF(grammars); i++) {
                const char *sub = grammars[i].subcommand;
                grammars_by_first[(unsigned char) grammars[i].program[0]][i / 64] |= UINT64_C(1) << (i % 64);
                grammars_by_sub[sub ? (unsigned char) sub[0] : 0][i / 64] |= UINT64_C(1) << (i % 64);
        }
}

const OptGrammar *opt_grammar_find(const char *program, const char *sub) {
        if (!program)
                return NULL;
        if (pthread_once(&grammars_once, grammars_index) != 0)
                abort();
        const uint64_t *set = grammars_by_first[(unsigned char) program[0]],
                       *subs = grammars_by_sub[sub ? (unsigned char) sub[0] : 0];
        for (size_t w = 0; w < GRAMMAR_WORDS; w++)
                for (uint64_t bits = set[w] & subs[w]; bits; bits &= bits - 1) {
                        const OptGrammar *g = &grammars[w * 64 + (size_t) __builtin_ctzll(bits)];
                        if (!program_matches(g->program, program))
                                continue;
                        if (!g->subcommand != !sub || (sub && !streq(g->subcommand, sub)))
                                continue;
                        /* "perl*" must not claim "perldoc"; versioned names only. */
                        size_t l = strlen(g->program);
                        if (g->program[l - 1] == '*') {
                                const char *rest = program + l - 1;
                                if (rest[strspn(rest, "0123456789.")] != 0)
                                        continue;
                        }
                        return g;
                }
        return NULL;
}

OptLetterKind opt_letter_kind(const char *optstring, char c) {
        if (c == ':' || c == '#' || c == ';' || c == 0)
                return OPT_LETTER_UNKNOWN;
        for (const char *s = optstring; *s; s++) {
                if (*s == ':' || *s == '#' || *s == ';')
                        continue;
                if (*s != c)
                        continue;
                if (s[1] == '#')
                        return OPT_LETTER_NUMBER;
                if (s[1] == ';')
                        return OPT_LETTER_NEXT;
                if (s[1] == ':')
                        return s[2] == ':' ? OPT_LETTER_OPTIONAL : OPT_LETTER_VALUE;
                return OPT_LETTER_FLAG;
        }
        return OPT_LETTER_UNKNOWN;
}

bool opt_long_matches(const char *name, size_t len, const char *const *names) {
        if (len < 2 || !names)
                return false;
        for (; *names; names++)
                if (strlen(*names) >= len && strncmp(*names, name, len) == 0)
                        return true;
        return false;
}

/* A long name that takes the next word: exact, or the unique abbreviation among long_values. */
static bool long_takes_next(const OptGrammar *g, const char *name, size_t len) {
        unsigned hits = 0;
        if (len == 0 || !g->long_values)
                return false;
        for (const char *const *l = g->long_values; *l; l++) {
                if (strlen(*l) == len && strncmp(*l, name, len) == 0)
                        return true;
                if (strlen(*l) > len && strncmp(*l, name, len) == 0)
                        hits++;
        }
        return hits == 1;
}

/* One cluster (letters of w from c on). Values may come from argv[*next...] (next word, or
 * for old-style tar each value letter takes the following word in turn). */
static int scan_cluster(
        const OptGrammar *g,
        char *const *argv,
        size_t n,
        size_t i,
        const char *c,
        bool old_tar,
        size_t *next,
        OptVisitFn fn,
        void *userdata) {
        const char *w = argv[i];
        int r;
        for (; *c; c++) {
                OptItem it = { .kind = OPT_ITEM_SHORT, .letter = *c, .word = w, .index = i };
                switch (opt_letter_kind(g->optstring, *c)) {
                case OPT_LETTER_FLAG:
                        break;
                case OPT_LETTER_NUMBER:
                        while (c[1] >= '0' && c[1] <= '9')
                                c++;
                        break;
                case OPT_LETTER_OPTIONAL:
                        it.value = c + 1;
                        r = fn(&it, userdata);
                        return r;
                case OPT_LETTER_NEXT:
                        if (*next < n)
                                it.value = argv[(*next)++];
                        r = fn(&it, userdata);
                        if (r != 0)
                                return r;
                        continue;
                case OPT_LETTER_VALUE:
                        if (c[1] && !old_tar)
                                it.value = c + 1;
                        else if (*next < n)
                                it.value = argv[(*next)++];
                        r = fn(&it, userdata);
                        if (r != 0 || !old_tar)
                                return r;
                        continue;
                default:
                        it.kind = OPT_ITEM_UNKNOWN;
                        return fn(&it, userdata);
                }
                r = fn(&it, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

size_t opt_scan(const OptGrammar *g, char *const *argv, size_t start, OptVisitFn fn, void *userdata) {
        size_t n = 0, i = start;
        int r;
        while (argv[n])
                n++;
        while (i < n) {
                const char *w = argv[i];
                size_t next = i + 1;
                if (streq(w, "--")) {
                        if (g->flags & OPT_GRAMMAR_POSIX)
                                return i + 1;
                        for (size_t k = i + 1; k < n; k++) {
                                OptItem it = { .kind = OPT_ITEM_OPERAND, .word = argv[k], .index = k };
                                r = fn(&it, userdata);
                                if (r < 0)
                                        return SIZE_MAX;
                                if (r > 0)
                                        return k + 1;
                        }
                        return n;
                }
                if (w[0] == '-' && w[1] == '-') {
                        const char *name = w + 2, *eq = strchr(name, '=');
                        OptItem it = { .kind = OPT_ITEM_LONG, .name = name, .word = w, .index = i };
                        it.name_len = eq ? (size_t) (eq - name) : strlen(name);
                        if (eq)
                                it.value = eq + 1;
                        else if (long_takes_next(g, name, it.name_len) && next < n)
                                it.value = argv[next++];
                        r = fn(&it, userdata);
                } else if ((w[0] == '-' || (w[0] == '+' && (g->flags & OPT_GRAMMAR_PLUS))) && w[1])
                        r = scan_cluster(g, argv, n, i, w + 1, false, &next, fn, userdata);
                else if (i == 1 && (g->flags & OPT_GRAMMAR_OLD_TAR) && w[0] && w[0] != '-')
                        r = scan_cluster(g, argv, n, i, w, true, &next, fn, userdata);
                else {
                        OptItem it = { .kind = OPT_ITEM_OPERAND, .word = w, .index = i };
                        r = fn(&it, userdata);
                        if (r == 0 && (g->flags & OPT_GRAMMAR_POSIX))
                                return i;
                }
                if (r < 0)
                        return SIZE_MAX;
                if (r > 0)
                        return next;
                i = next;
        }
        return n;
}

/* ---- installed implementations ---- */

#define IMPL_MAX 512U

static struct {
        char name[64];
        PolicyImpl impl;
} impl_table[IMPL_MAX];
static size_t impl_n;
static bool impl_configured;

void policy_impl_set(const char *program, PolicyImpl impl) {
        if (!program || strlen(program) >= sizeof impl_table[0].name)
                return;
        impl_configured = true;
        for (size_t i = 0; i < impl_n; i++)
                if (streq(impl_table[i].name, program)) {
                        impl_table[i].impl = impl;
                        return;
                }
        if (impl_n >= IMPL_MAX)
                return; /* unset programs count as unknown: refused */
        strcpy(impl_table[impl_n].name, program);
        impl_table[impl_n].impl = impl;
        impl_n++;
}

void policy_impl_reset(void) {
        impl_n = 0;
        impl_configured = false;
}

PolicyImpl policy_impl_get(const char *program) {
        if (!impl_configured)
                return POLICY_IMPL_NATIVE;
        for (size_t i = 0; program && i < impl_n; i++)
                if (streq(impl_table[i].name, program))
                        return impl_table[i].impl;
        return POLICY_IMPL_UNKNOWN;
}

bool policy_impl_wants(const char *program) {
        if (!program)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(grammars); i++)
                if (opt_grammar_find(program, grammars[i].subcommand) == &grammars[i])
                        return true;
        return false;
}

const char *policy_impl_to_string(PolicyImpl i) {
        static const char *const names[_POLICY_IMPL_MAX] = {
                [POLICY_IMPL_NATIVE] = "native",
                [POLICY_IMPL_BUSYBOX] = "busybox",
                [POLICY_IMPL_TOYBOX] = "toybox",
                [POLICY_IMPL_UNKNOWN] = "unknown",
        };
        return i >= 0 && i < _POLICY_IMPL_MAX ? names[i] : NULL;
}
