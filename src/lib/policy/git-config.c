/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The git configuration allow list and a parser of git's config syntax (see git-config.h and
 * docs/policy.md "Git configuration allow list"). Input: untrusted words and file text.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "alloc-util.h"
#include "git-config.h"
#include "string-util.h"

/* A key pattern: section and name lower-case; sub NULL = no subsection, "*" = any subsection. */
typedef struct KeyPattern {
        const char *section, *sub, *name;
        GitConfigScope scope; /* the narrowest scope it belongs to */
        const char *why;      /* documentation only */
} KeyPattern;

static const KeyPattern allowed_keys[] = {
        /* What an agent may set: identity and presentation; none names a program, a path git
         * reads or writes, a URL git connects to, or a hook. */
        { "user", NULL, "name", GIT_CONFIG_SCOPE_SET, "commit identity" },
        { "user", NULL, "email", GIT_CONFIG_SCOPE_SET, "commit identity" },
        { "user", NULL, "useconfigonly", GIT_CONFIG_SCOPE_SET, "refuse to guess an identity" },
        { "author", NULL, "name", GIT_CONFIG_SCOPE_SET, "commit identity" },
        { "author", NULL, "email", GIT_CONFIG_SCOPE_SET, "commit identity" },
        { "committer", NULL, "name", GIT_CONFIG_SCOPE_SET, "commit identity" },
        { "committer", NULL, "email", GIT_CONFIG_SCOPE_SET, "commit identity" },
        { "init", NULL, "defaultbranch", GIT_CONFIG_SCOPE_SET, "a branch name" },
        { "color", NULL, "ui", GIT_CONFIG_SCOPE_SET, "output colouring" },
        { "core", NULL, "quotepath", GIT_CONFIG_SCOPE_SET, "how paths are printed" },
        { "core", NULL, "autocrlf", GIT_CONFIG_SCOPE_SET, "line-ending conversion, built in" },
        { "merge", NULL, "conflictstyle", GIT_CONFIG_SCOPE_SET, "conflict marker layout" },
        { "diff", NULL, "algorithm", GIT_CONFIG_SCOPE_SET, "a built-in diff algorithm" },
        { "pull", NULL, "rebase", GIT_CONFIG_SCOPE_SET, "merge or rebase (editor pinned to false)" },
        { "pull", NULL, "ff", GIT_CONFIG_SCOPE_SET, "fast-forward choice" },
        { "advice", NULL, "detachedhead", GIT_CONFIG_SCOPE_SET, "a hint message" },

        /* What git itself writes into a repository's config (init, clone, remote add, branch
         * --track, submodule init): allowed in files, not settable by `git config`. */
        { "core", NULL, "repositoryformatversion", GIT_CONFIG_SCOPE_FILE, "git init" },
        { "core", NULL, "filemode", GIT_CONFIG_SCOPE_FILE, "git init" },
        { "core", NULL, "bare", GIT_CONFIG_SCOPE_FILE, "git init" },
        { "core", NULL, "logallrefupdates", GIT_CONFIG_SCOPE_FILE, "git init" },
        { "core", NULL, "ignorecase", GIT_CONFIG_SCOPE_FILE, "git init on case-insensitive file systems" },
        { "core", NULL, "precomposeunicode", GIT_CONFIG_SCOPE_FILE, "git init on macOS" },
        { "core", NULL, "symlinks", GIT_CONFIG_SCOPE_FILE, "git init without symlink support" },
        { "core", NULL, "sparsecheckout", GIT_CONFIG_SCOPE_FILE, "git sparse-checkout" },
        { "core", NULL, "sparsecheckoutcone", GIT_CONFIG_SCOPE_FILE, "git sparse-checkout" },
        { "extensions", NULL, "objectformat", GIT_CONFIG_SCOPE_FILE, "git init --object-format" },
        { "extensions", NULL, "worktreeconfig", GIT_CONFIG_SCOPE_FILE, "config.worktree (checked too)" },
        { "index", NULL, "version", GIT_CONFIG_SCOPE_FILE, "index format" },
        { "remote", "*", "url", GIT_CONFIG_SCOPE_FILE, "git remote add / clone (ext:: is pinned off)" },
        { "remote", "*", "pushurl", GIT_CONFIG_SCOPE_FILE, "git remote set-url --push" },
        { "remote", "*", "fetch", GIT_CONFIG_SCOPE_FILE, "refspecs" },
        { "remote", "*", "push", GIT_CONFIG_SCOPE_FILE, "refspecs" },
        { "remote", "*", "tagopt", GIT_CONFIG_SCOPE_FILE, "git remote add --no-tags" },
        { "remote", "*", "prune", GIT_CONFIG_SCOPE_FILE, "fetch pruning" },
        { "remote", "*", "promisor", GIT_CONFIG_SCOPE_FILE, "partial clone" },
        { "remote", "*", "partialclonefilter", GIT_CONFIG_SCOPE_FILE, "partial clone" },
        { "branch", "*", "remote", GIT_CONFIG_SCOPE_FILE, "branch --track" },
        { "branch", "*", "merge", GIT_CONFIG_SCOPE_FILE, "branch --track" },
        { "branch", "*", "rebase", GIT_CONFIG_SCOPE_FILE, "branch --track with pull.rebase" },
        { "submodule", "*", "url", GIT_CONFIG_SCOPE_FILE, "git submodule init" },
        { "submodule", "*", "active", GIT_CONFIG_SCOPE_FILE, "git submodule init" },
};

/* Split key into section, subsection, name: section before the first '.', name after the last. */
static bool key_split(
        const char *key,
        const char **ret_sec,
        size_t *ret_sec_len,
        const char **ret_sub,
        size_t *ret_sub_len,
        const char **ret_name) {
        const char *first = strchr(key, '.'), *last = strrchr(key, '.');
        if (!first || first == key || !last[1])
                return false;
        *ret_sec = key;
        *ret_sec_len = (size_t) (first - key);
        *ret_sub = first == last ? NULL : first + 1;
        *ret_sub_len = first == last ? 0 : (size_t) (last - first - 1);
        *ret_name = last + 1;
        return true;
}

bool git_config_key_allowed(const char *key, GitConfigScope scope) {
        const char *sec, *sub, *name;
        size_t sec_len, sub_len;
        if (!key || !key_split(key, &sec, &sec_len, &sub, &sub_len, &name))
                return false;
        for (size_t i = 0; i < ELEMENTSOF(allowed_keys); i++) {
                const KeyPattern *k = &allowed_keys[i];
                if (k->scope > scope)
                        continue;
                if (strlen(k->section) != sec_len || strncasecmp(k->section, sec, sec_len) != 0 ||
                    strcasecmp(k->name, name) != 0)
                        continue;
                if (!k->sub ? sub != NULL : sub == NULL)
                        continue;
                return true;
        }
        return false;
}

bool git_config_assignment_allowed(const char *kv) {
        if (!kv)
                return false;
        _cleanup_free_ char *key = xstrndup(kv, strcspn(kv, "="));
        return git_config_key_allowed(key, GIT_CONFIG_SCOPE_SET);
}

/* ---- the parser (git's config.c, read-only subset) ---- */

typedef struct Parser {
        const char *s, *end;
        unsigned line;
        char *err;
} Parser;

static int parser_error(Parser *p, const char *what) {
        if (!p->err)
                p->err = xasprintf("line %u: %s", p->line, what);
        return -EINVAL;
}

static int next_char(Parser *p) {
        if (p->s >= p->end)
                return EOF;
        int c = (unsigned char) *p->s++;
        if (c == '\r' && p->s < p->end && *p->s == '\n')
                c = (unsigned char) *p->s++;
        if (c == '\n')
                p->line++;
        return c;
}

static bool is_keychar(int c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

static int lower(int c) {
        return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* The value after '=': quotes, escapes, comments, continuation. Appends to buf. */
static int parse_value(Parser *p, char *buf, size_t *len) {
        bool quote = false, space = false;
        size_t l = 0;
        for (;;) {
                int c = next_char(p);
                if (c == '\n' || c == EOF) {
                        if (quote)
                                return parser_error(p, "unterminated quoted value");
                        break;
                }
                if (!quote) {
                        if (c == ' ' || c == '\t') {
                                if (l > 0)
                                        space = true;
                                continue;
                        }
                        if (c == ';' || c == '#') {
                                while ((c = next_char(p)) != '\n' && c != EOF)
                                        ;
                                break;
                        }
                }
                if (space) {
                        buf[l++] = ' ';
                        space = false;
                }
                if (c == '\\') {
                        c = next_char(p);
                        switch (c) {
                        case '\n':
                                continue; /* continuation */
                        case 't':
                                c = '\t';
                                break;
                        case 'b':
                                c = '\b';
                                break;
                        case 'n':
                                c = '\n';
                                break;
                        case '\\':
                        case '"':
                                break;
                        default:
                                return parser_error(p, "bad escape in value");
                        }
                        buf[l++] = (char) c;
                        continue;
                }
                if (c == '"') {
                        quote = !quote;
                        continue;
                }
                buf[l++] = (char) c;
        }
        buf[l] = 0;
        *len = l;
        return 0;
}

/* After '[': "section]", "section \"sub\"]" or "section.sub]" (old form, lower-cased). Writes
 * "section" or "section.sub" into buf. */
static int parse_section(Parser *p, char *buf, size_t *len) {
        size_t l = 0;
        for (;;) {
                int c = next_char(p);
                if (c == EOF || c == '\n')
                        return parser_error(p, "unterminated section header");
                if (c == ']')
                        break;
                if (c == ' ' || c == '\t') {
                        if (l == 0)
                                return parser_error(p, "bad section header");
                        while ((c = next_char(p)) == ' ' || c == '\t')
                                ;
                        if (c != '"')
                                return parser_error(p, "bad section header");
                        buf[l++] = '.';
                        for (;;) {
                                c = next_char(p);
                                if (c == EOF || c == '\n')
                                        return parser_error(p, "unterminated subsection");
                                if (c == '"')
                                        break;
                                if (c == '\\') {
                                        c = next_char(p);
                                        if (c == EOF || c == '\n')
                                                return parser_error(p, "unterminated subsection");
                                }
                                buf[l++] = (char) c;
                        }
                        if (next_char(p) != ']')
                                return parser_error(p, "bad section header");
                        break;
                }
                if (!is_keychar(c) && c != '.')
                        return parser_error(p, "bad section name");
                buf[l++] = (char) lower(c);
        }
        if (l == 0)
                return parser_error(p, "empty section name");
        buf[l] = 0;
        *len = l;
        return 0;
}

int git_config_parse(const char *text, size_t n, GitConfigEntryFn fn, void *userdata, char **reterr) {
        if (!text && n > 0)
                return -EINVAL;
        if (n > GIT_CONFIG_TEXT_MAX) {
                if (reterr)
                        *reterr = xasprintf("config file larger than %u bytes", GIT_CONFIG_TEXT_MAX);
                return -E2BIG;
        }
        Parser p = { .s = text, .end = text + n, .line = 1 };
        /* Buffers the size of the text bound every section, key and value. */
        _cleanup_free_ char *section = xnew0(char, n + 1);
        _cleanup_free_ char *key = xnew0(char, 2 * n + 3);
        _cleanup_free_ char *value = xnew0(char, n + 1);
        size_t sec_len = 0;
        bool have_section = false;
        int r = 0;
        if (n >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
                p.s += 3;
        for (;;) {
                int c = next_char(&p);
                if (c == EOF)
                        break;
                if (c == '\n' || c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v')
                        continue;
                if (c == '#' || c == ';') {
                        while ((c = next_char(&p)) != '\n' && c != EOF)
                                ;
                        continue;
                }
                if (c == '[') {
                        r = parse_section(&p, section, &sec_len);
                        if (r < 0)
                                break;
                        have_section = true;
                        continue;
                }
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
                        r = parser_error(&p, "bad config line");
                        break;
                }
                if (!have_section) {
                        r = parser_error(&p, "key outside any section");
                        break;
                }
                unsigned line = p.line;
                memcpy(key, section, sec_len);
                size_t kl = sec_len;
                key[kl++] = '.';
                key[kl++] = (char) lower(c);
                while (p.s < p.end && is_keychar((unsigned char) *p.s))
                        key[kl++] = (char) lower(next_char(&p));
                key[kl] = 0;
                while (p.s < p.end && (*p.s == ' ' || *p.s == '\t'))
                        p.s++;
                bool has_value = false;
                if (p.s >= p.end || *p.s == '\n' || *p.s == '\r') {
                } else if (*p.s == '#' || *p.s == ';') {
                } else if (*p.s == '=') {
                        p.s++;
                        size_t vl;
                        r = parse_value(&p, value, &vl);
                        if (r < 0)
                                break;
                        has_value = true;
                } else {
                        r = parser_error(&p, "bad config line");
                        break;
                }
                if (fn) {
                        r = fn(key, has_value ? value : NULL, line, userdata);
                        if (r < 0)
                                break;
                }
        }
        if (r < 0 && p.err && reterr)
                *reterr = TAKE_PTR(p.err);
        free(p.err);
        return r < 0 ? r : 0;
}

static int check_entry(const char *key, const char *value, unsigned line, void *userdata) {
        char **reterr = userdata;
        if (git_config_key_allowed(key, GIT_CONFIG_SCOPE_FILE))
                return 0;
        _cleanup_free_ char *vis = string_make_visible(key);
        *reterr = xasprintf("line %u: '%s' is outside the git configuration allow list", line, vis);
        return -EPERM;
}

int git_config_check_text(const char *text, size_t n, char **reterr) {
        _cleanup_free_ char *err = NULL;
        int r = git_config_parse(text, n, check_entry, &err, &err);
        if (r < 0 && reterr)
                *reterr = err ? TAKE_PTR(err) : xstrdup("unreadable config");
        return r;
}

/* ---- git config commands ---- */

typedef enum ConfigMode {
        MODE_DEFAULT, /* by operand count: 1 = get, 2+ = set */
        MODE_READ,
        MODE_WRITE, /* the first operand is a key to set/unset */
        MODE_REFUSE,
} ConfigMode;

static const struct {
        const char *name;
        bool value;      /* takes a value (=v or the next word) */
        ConfigMode mode; /* MODE_DEFAULT: does not decide the mode */
} config_longs[] = {
        { "local", false, MODE_DEFAULT },
        { "worktree", false, MODE_DEFAULT },
        { "global", false, MODE_REFUSE },
        { "system", false, MODE_REFUSE },
        { "file", true, MODE_REFUSE },
        { "blob", true, MODE_REFUSE },
        { "edit", false, MODE_REFUSE },
        { "rename-section", false, MODE_REFUSE },
        { "remove-section", false, MODE_REFUSE },
        { "get", false, MODE_READ },
        { "get-all", false, MODE_READ },
        { "get-regexp", false, MODE_READ },
        { "get-urlmatch", false, MODE_READ },
        { "get-color", false, MODE_READ },
        { "get-colorbool", false, MODE_READ },
        { "list", false, MODE_READ },
        { "replace-all", false, MODE_WRITE },
        { "add", false, MODE_WRITE },
        { "unset", false, MODE_WRITE },
        { "unset-all", false, MODE_WRITE },
        { "type", true, MODE_DEFAULT },
        { "bool", false, MODE_DEFAULT },
        { "int", false, MODE_DEFAULT },
        { "bool-or-int", false, MODE_DEFAULT },
        { "bool-or-str", false, MODE_DEFAULT },
        { "path", false, MODE_DEFAULT },
        { "expiry-date", false, MODE_DEFAULT },
        { "null", false, MODE_DEFAULT },
        { "name-only", false, MODE_DEFAULT },
        { "includes", false, MODE_DEFAULT },
        { "no-includes", false, MODE_DEFAULT },
        { "show-origin", false, MODE_DEFAULT },
        { "show-scope", false, MODE_DEFAULT },
        { "default", true, MODE_DEFAULT },
        { "fixed-value", false, MODE_DEFAULT },
        { "comment", true, MODE_DEFAULT },
        { "all", false, MODE_DEFAULT },
        { "regexp", false, MODE_DEFAULT },
        { "value", true, MODE_DEFAULT },
        { "url", true, MODE_DEFAULT },
        { "append", false, MODE_DEFAULT },
};

/* parse-options' rule: an exact name wins, else a unique prefix. Returns the index or -1. */
static int config_long_lookup(const char *name, size_t len) {
        int found = -1;
        unsigned hits = 0;
        for (size_t i = 0; i < ELEMENTSOF(config_longs); i++) {
                size_t l = strlen(config_longs[i].name);
                if (l == len && strncmp(config_longs[i].name, name, len) == 0)
                        return (int) i;
                if (l > len && strncmp(config_longs[i].name, name, len) == 0) {
                        found = (int) i;
                        hits++;
                }
        }
        return hits == 1 && len > 0 ? found : -1;
}

_printf_(2, 3) static int refuse(char **ret_reason, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(ret_reason, fmt, ap) < 0)
                abort();
        va_end(ap);
        return -EPERM;
}

int git_config_check_command(char *const *args, char **ret_reason) {
        ConfigMode mode = MODE_DEFAULT;
        const char *operands[4] = {};
        size_t n_ops = 0;
        bool only_operands = false;
        if (!args || !args[0] || !ret_reason)
                return -EINVAL;
        for (size_t i = 1; args[i]; i++) {
                const char *w = args[i];
                if (!only_operands && streq(w, "--")) {
                        only_operands = true;
                        continue;
                }
                if (!only_operands && w[0] == '-' && w[1] == '-') {
                        const char *name = w + 2, *eq = strchr(name, '=');
                        size_t len = eq ? (size_t) (eq - name) : strlen(name);
                        int k = config_long_lookup(name, len);
                        if (k < 0)
                                return refuse(ret_reason, "'git config %s': unknown or ambiguous option", w);
                        if (config_longs[k].mode == MODE_REFUSE)
                                return refuse(
                                        ret_reason,
                                        "'git config --%s' edits, renames or points git at configuration "
                                        "outside the allow list",
                                        config_longs[k].name);
                        if (config_longs[k].value && !eq && args[i + 1])
                                i++;
                        if (config_longs[k].mode != MODE_DEFAULT)
                                mode = config_longs[k].mode;
                        continue;
                }
                if (!only_operands && w[0] == '-' && w[1]) {
                        for (const char *c = w + 1; *c; c++) {
                                if (*c == 'l')
                                        mode = MODE_READ;
                                else if (*c == 'z')
                                        continue;
                                else
                                        return refuse(
                                                ret_reason,
                                                "'git config %s': option '-%c' is refused (only -l and -z "
                                                "are "
                                                "allowed)",
                                                w,
                                                *c);
                        }
                        continue;
                }
                if (n_ops < ELEMENTSOF(operands))
                        operands[n_ops] = w;
                n_ops++;
        }
        /* git 2.46 subcommands come first among the operands. */
        if (n_ops > 0 && mode == MODE_DEFAULT) {
                const char *sub = operands[0];
                if (streq(sub, "list") || streq(sub, "get"))
                        return 0;
                if (streq(sub, "set") || streq(sub, "unset")) {
                        if (n_ops < 2 || !git_config_key_allowed(operands[1], GIT_CONFIG_SCOPE_SET))
                                return refuse(
                                        ret_reason,
                                        "'git config %s %s': the key is outside the git configuration allow "
                                        "list",
                                        sub,
                                        n_ops > 1 ? operands[1] : "");
                        return 0;
                }
                if (streq(sub, "rename-section") || streq(sub, "remove-section") || streq(sub, "edit"))
                        return refuse(
                                ret_reason, "'git config %s' edits configuration outside the allow list", sub);
        }
        if (mode == MODE_READ || (mode == MODE_DEFAULT && n_ops <= 1))
                return 0;
        if (n_ops == 0 || !git_config_key_allowed(operands[0], GIT_CONFIG_SCOPE_SET))
                return refuse(
                        ret_reason,
                        "'git config %s': the key is outside the git configuration allow list (an agent may "
                        "set "
                        "only identity and presentation keys)",
                        n_ops > 0 ? operands[0] : "");
        return 0;
}
