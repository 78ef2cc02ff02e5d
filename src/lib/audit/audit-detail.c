/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shown, redacted arguments of audit records (audit-detail.h). The rules are an allow
 * list of what to show per operation (never file contents, never environment values) plus a
 * redactor for what is shown: it errs on the side of hiding, since a record cannot be edited
 * once signed.
 */
#include <ctype.h>
#include <string.h>

#include "alloc-util.h"
#include "audit-detail.h"
#include "string-util.h"

static const char *const secret_name_parts[] = {
        "pass",       "pwd",    "secret",  "token",     "apikey", "api_key", "api-key", "key", "auth",
        "credential", "cookie", "session", "signature", "sig",    "bearer",  "private", NULL,
};

bool audit_detail_secret_name(const char *name) {
        char low[128];
        size_t n = 0;
        for (const char *p = name; *p && n < sizeof low - 1; p++)
                low[n++] = (char) tolower((unsigned char) *p);
        low[n] = 0;
        /* "key" alone would hide --keep-going and monkey=1: only as a word of the name. */
        for (size_t i = 0; secret_name_parts[i]; i++) {
                const char *hit = strstr(low, secret_name_parts[i]);
                if (!hit)
                        continue;
                if (!streq(secret_name_parts[i], "key") && !streq(secret_name_parts[i], "sig"))
                        return true;
                size_t k = strlen(secret_name_parts[i]);
                bool start = hit == low || !isalnum((unsigned char) hit[-1]);
                bool end = !isalnum((unsigned char) hit[k]) || hit[k] == 's';
                if (start && end)
                        return true;
        }
        return false;
}

static bool has_prefix_ci(const char *s, const char *p) {
        return strncasecmp(s, p, strlen(p)) == 0;
}

bool audit_detail_looks_secret(const char *s) {
        static const char *const token_prefixes[] = {
                "sk-",   "sk_live_", "sk_test_",    "rk_live_", "ghp_",  "gho_",  "ghu_",
                "ghs_",  "ghr_",     "github_pat_", "glpat-",   "xoxb-", "xoxp-", "xoxa-",
                "xoxs-", "AKIA",     "ASIA",        "AIza",     "ya29.", "eyJ",   /* a JWT */ "npm_",
                "pypi-", "hf_",      NULL,
        };
        size_t n = strlen(s);
        for (size_t i = 0; token_prefixes[i]; i++)
                if (startswith(s, token_prefixes[i]) && n >= strlen(token_prefixes[i]) + 8)
                        return true;
        if (has_prefix_ci(s, "bearer ") || has_prefix_ci(s, "basic ") || has_prefix_ci(s, "token "))
                return true;
        /* A long run of token characters with letters and digits mixed (a key, a hash-like
         * credential): shown as redacted rather than risk it. Paths and words do not qualify:
         * '/' and '.' are not token characters. */
        if (n >= 32) {
                bool lower = false, upper = false, digit = false;
                size_t tok = 0;
                for (const char *p = s; *p; p++) {
                        unsigned char ch = (unsigned char) *p;
                        if (isalnum(ch) || ch == '_' || ch == '-' || ch == '+' || ch == '=') {
                                tok++;
                                lower = lower || islower(ch);
                                upper = upper || isupper(ch);
                                digit = digit || isdigit(ch);
                        }
                }
                if (tok == n && digit && (lower + upper) >= 1 && (lower && upper))
                        return true;
        }
        return false;
}

/* A value capped at AUDIT_DETAIL_STRING_MAX bytes (cut at a character boundary). */
static json_t *capped(const char *s) {
        size_t n = strlen(s);
        if (n <= AUDIT_DETAIL_STRING_MAX)
                return json_string(s) ?: json_string("<not UTF-8>");
        size_t k = AUDIT_DETAIL_STRING_MAX;
        while (k > 0 && ((unsigned char) s[k] & 0xc0) == 0x80)
                k--;
        _cleanup_free_ char *cut = xasprintf("%.*s...", (int) k, s);
        return json_string(cut) ?: json_string("<not UTF-8>");
}

/* One shown value: the whole of it redacted when it looks secret. */
static json_t *shown(const char *s) {
        return audit_detail_looks_secret(s) ? json_string(AUDIT_DETAIL_REDACTED) : capped(s);
}

/* NAME=VALUE or --name=VALUE with a secret-looking name: the value redacted. NULL when s is
 * not such an assignment. */
static char *redact_assignment(const char *s) {
        const char *eq = strchr(s, '=');
        if (!eq || eq == s)
                return NULL;
        _cleanup_free_ char *name = xstrndup(s, (size_t) (eq - s));
        if (!audit_detail_secret_name(name))
                return NULL;
        return xasprintf("%s=%s", name, AUDIT_DETAIL_REDACTED);
}

/* A URL with its userinfo and the values of secret-named query parameters redacted. */
static char *redact_url(const char *url) {
        _cleanup_free_ char *u = xstrdup(url);
        char *scheme = strstr(u, "://");
        char *host = scheme ? scheme + 3 : u;
        char *end = host + strcspn(host, "/?#");
        char *at = memchr(host, '@', (size_t) (end - host));
        _cleanup_free_ char *out = NULL;
        if (at)
                out = xasprintf("%.*s%s%s", (int) (host - u), u, AUDIT_DETAIL_REDACTED, at);
        else
                out = xstrdup(u);
        char *q = strchr(out, '?');
        if (!q)
                return TAKE_PTR(out);
        _cleanup_free_ char *rebuilt = xstrndup(out, (size_t) (q - out) + 1);
        char *save = NULL, *frag = strchr(q, '#');
        _cleanup_free_ char *fragment = frag ? xstrdup(frag) : NULL;
        if (frag)
                *frag = 0;
        bool first = true;
        for (char *p = strtok_r(q + 1, "&", &save); p; p = strtok_r(NULL, "&", &save)) {
                _cleanup_free_ char *r = redact_assignment(p);
                const char *eq = strchr(p, '=');
                char *next = xasprintf(
                        "%s%s%s",
                        rebuilt,
                        first ? "" : "&",
                        r ? r : (eq && audit_detail_looks_secret(eq + 1) ? AUDIT_DETAIL_REDACTED : p));
                free(rebuilt);
                rebuilt = next;
                first = false;
        }
        if (fragment) {
                char *next = xasprintf("%s%s", rebuilt, fragment);
                free(rebuilt);
                rebuilt = next;
        }
        return TAKE_PTR(rebuilt);
}

/* Flags whose next argument is a secret (--password X, -H 'Authorization: ...'). */
static bool flag_takes_secret(const char *flag) {
        if (!startswith(flag, "-") || strchr(flag, '='))
                return false;
        return audit_detail_secret_name(flag + strspn(flag, "-"));
}

static json_t *argv_detail(const json_t *argv) {
        json_t *out = json_array();
        size_t i, n = json_array_size(argv);
        bool next_secret = false;
        for (i = 0; i < n && i < AUDIT_DETAIL_ARGV_MAX; i++) {
                const char *a = json_string_value(json_array_get(argv, i));
                if (!a) {
                        json_array_append_new(out, json_string("<not a string>"));
                        continue;
                }
                _cleanup_free_ char *assign = redact_assignment(a);
                const char *colon = strchr(a, ':');
                _cleanup_free_ char *hname = colon ? xstrndup(a, (size_t) (colon - a)) : NULL;
                bool url = strstr(a, "://") && !strchr(a, ' ');
                if (next_secret)
                        json_array_append_new(out, json_string(AUDIT_DETAIL_REDACTED));
                else if (url) {
                        _cleanup_free_ char *u = redact_url(a);
                        json_array_append_new(out, capped(u));
                } else if (assign)
                        json_array_append_new(out, capped(assign));
                else if (hname && !strchr(hname, '/') && audit_detail_secret_name(hname)) {
                        /* A header given as one argument: "Authorization: Bearer x". */
                        _cleanup_free_ char *h = xasprintf("%s: %s", hname, AUDIT_DETAIL_REDACTED);
                        json_array_append_new(out, capped(h));
                } else
                        json_array_append_new(out, shown(a));
                next_secret = !next_secret && flag_takes_secret(a);
        }
        return out;
}

static bool op_in(const char *op, const char *const *list) {
        for (; *list; list++)
                if (streq(op, *list))
                        return true;
        return false;
}

static void add_string(json_t *d, const json_t *args, const char *key) {
        const char *v = json_string_value(json_object_get(args, key));
        if (v)
                json_object_set_new(d, key, shown(v));
}

json_t *audit_detail_for_call(const char *op, const json_t *args) {
        if (!op || !json_is_object(args))
                return NULL;
        json_t *d = json_object();

        if (streq(op, "run")) {
                const json_t *argv = json_object_get(args, "argv");
                if (json_is_array(argv)) {
                        json_object_set_new(d, "argv", argv_detail(argv));
                        if (json_array_size(argv) > AUDIT_DETAIL_ARGV_MAX)
                                json_object_set_new(
                                        d,
                                        "argv_more",
                                        json_integer(
                                                (json_int_t) (json_array_size(argv) - AUDIT_DETAIL_ARGV_MAX)));
                }
                add_string(d, args, "cwd");
                /* Environment: the names only, never a value. */
                const json_t *env = json_object_get(args, "env");
                if (json_is_object(env) && json_object_size(env) > 0) {
                        json_t *names = json_array();
                        const char *k;
                        json_t *v;
                        json_object_foreach((json_t *) env, k, v)
                                json_array_append_new(names, capped(k));
                        json_object_set_new(d, "env", names);
                }
        } else if (streq(op, "web_fetch")) {
                const char *url = json_string_value(json_object_get(args, "url"));
                if (url) {
                        _cleanup_free_ char *u = redact_url(url);
                        json_object_set_new(d, "url", capped(u));
                }
                add_string(d, args, "method");
        } else if (op_in(op, (const char *const[]){ "read", "list", "write", "edit", "glob", "grep", NULL })) {
                add_string(d, args, "path");
                if (streq(op, "glob") || streq(op, "grep"))
                        add_string(d, args, "pattern");
                /* Written contents are never shown: only how much. */
                const char *content = json_string_value(json_object_get(args, "content"));
                if (content)
                        json_object_set_new(d, "bytes", json_integer((json_int_t) strlen(content)));
        }
        if (json_object_size(d) == 0) {
                json_decref(d);
                return NULL;
        }
        return d;
}
