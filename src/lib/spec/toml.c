/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Strict TOML-subset parser (see toml.h). Hand-written recursive descent over an untrusted
 * buffer; every error carries the line and column where it was found.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "json-util.h"
#include "string-util.h"
#include "toml.h"

typedef struct Parser {
        const char *p, *end;
        unsigned line, col;
        const char *file;
        char *err;
        SpecPosTable *pos;
        char **explicit_tables; /* header paths already defined */
        char **frozen;          /* inline tables and arrays: cannot be extended */
} Parser;

_printf_(2, 3) static int fail(Parser *P, const char *fmt, ...) {
        va_list ap;
        if (P->err)
                return -EBADMSG;
        va_start(ap, fmt);
        _cleanup_free_ char *m = xvasprintf(fmt, ap);
        va_end(ap);
        P->err = xasprintf("%s%s%u:%u: %s", P->file ? P->file : "", P->file ? ":" : "", P->line, P->col, m);
        return -EBADMSG;
}

static bool eof(Parser *P) {
        return P->p >= P->end;
}

static char peek(Parser *P) {
        return eof(P) ? 0 : *P->p;
}

static char peek_at(Parser *P, size_t k) {
        return P->p + k < P->end ? P->p[k] : 0;
}

static void advance(Parser *P) {
        if (eof(P))
                return;
        if (*P->p == '\n') {
                P->line++;
                P->col = 1;
        } else
                P->col++;
        P->p++;
}

static void skip_ws(Parser *P) {
        while (peek(P) == ' ' || peek(P) == '\t')
                advance(P);
}

static void skip_comment(Parser *P) {
        if (peek(P) != '#')
                return;
        while (!eof(P) && peek(P) != '\n')
                advance(P);
}

/* Comment bytes: TOML forbids control characters other than tab. */
static int check_controls(Parser *P) {
        const char *save = P->p;
        unsigned l = P->line, c = P->col;
        for (const char *q = P->p; q < P->end; q++) {
                unsigned char ch = (unsigned char) *q;
                if ((ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') || ch == 0x7f) {
                        while (P->p < q)
                                advance(P);
                        return fail(P, "control character 0x%02x is not allowed", ch);
                }
                if (ch == '\r' && (q + 1 >= P->end || q[1] != '\n')) {
                        while (P->p < q)
                                advance(P);
                        return fail(P, "bare carriage return is not allowed");
                }
        }
        P->p = save;
        P->line = l;
        P->col = c;
        return 0;
}

/* End of a line: optional spaces, comment, then newline or EOF. */
static int expect_eol(Parser *P) {
        skip_ws(P);
        skip_comment(P);
        if (peek(P) == '\r')
                advance(P);
        if (eof(P))
                return 0;
        if (peek(P) != '\n')
                return fail(P, "expected the end of the line, found '%c'", peek(P));
        advance(P);
        return 0;
}

static void utf8_put(char **buf, size_t *n, uint32_t cp) {
        char tmp[4];
        size_t k;
        if (cp < 0x80) {
                tmp[0] = (char) cp;
                k = 1;
        } else if (cp < 0x800) {
                tmp[0] = (char) (0xC0 | (cp >> 6));
                tmp[1] = (char) (0x80 | (cp & 0x3F));
                k = 2;
        } else if (cp < 0x10000) {
                tmp[0] = (char) (0xE0 | (cp >> 12));
                tmp[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
                tmp[2] = (char) (0x80 | (cp & 0x3F));
                k = 3;
        } else {
                tmp[0] = (char) (0xF0 | (cp >> 18));
                tmp[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
                tmp[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
                tmp[3] = (char) (0x80 | (cp & 0x3F));
                k = 4;
        }
        memcpy(*buf + *n, tmp, k);
        *n += k;
}

/* Parse a basic ("...") or literal ('...') string; P->p at the opening quote. */
static int parse_string(Parser *P, char **ret) {
        char q = peek(P);
        if (peek_at(P, 1) == q && peek_at(P, 2) == q)
                return fail(P, "unsupported TOML feature: multi-line strings");
        advance(P);
        /* Worst case: every input byte yields at most 4 output bytes (\U escapes yield <= 4 from 10). */
        _cleanup_free_ char *buf = xmalloc(TOML_MAX_STRING + 8);
        size_t n = 0;
        for (;;) {
                if (n > TOML_MAX_STRING)
                        return fail(P, "string longer than %u bytes", TOML_MAX_STRING);
                if (eof(P) || peek(P) == '\n' || peek(P) == '\r')
                        return fail(P, "unterminated string");
                char c = peek(P);
                if (c == q) {
                        advance(P);
                        break;
                }
                if (q == '"' && c == '\\') {
                        advance(P);
                        char e = peek(P);
                        uint32_t cp = 0;
                        int digits = 0;
                        switch (e) {
                        case 'b':
                                buf[n++] = '\b';
                                break;
                        case 't':
                                buf[n++] = '\t';
                                break;
                        case 'n':
                                buf[n++] = '\n';
                                break;
                        case 'f':
                                buf[n++] = '\f';
                                break;
                        case 'r':
                                buf[n++] = '\r';
                                break;
                        case '"':
                                buf[n++] = '"';
                                break;
                        case '\\':
                                buf[n++] = '\\';
                                break;
                        case 'u':
                                digits = 4;
                                break;
                        case 'U':
                                digits = 8;
                                break;
                        default:
                                return fail(P, "invalid escape sequence '\\%c'", e ? e : '?');
                        }
                        advance(P);
                        for (int i = 0; i < digits; i++) {
                                char h = peek(P);
                                int v = (h >= '0' && h <= '9')   ? h - '0'
                                        : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                                        : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                                                 : -1;
                                if (v < 0)
                                        return fail(
                                                P, "invalid unicode escape: expected %d hex digits", digits);
                                cp = cp * 16 + (uint32_t) v;
                                advance(P);
                        }
                        if (digits > 0) {
                                if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                                        return fail(
                                                P,
                                                "unicode escape U+%04X is not a valid scalar value (or is "
                                                "NUL)",
                                                (unsigned) cp);
                                utf8_put(&buf, &n, cp);
                        }
                        continue;
                }
                buf[n++] = c;
                advance(P);
        }
        buf[n] = 0;
        /* jansson validates UTF-8 when we make the json_string; check here for a clear message. */
        json_t *probe = json_stringn(buf, n);
        if (!probe)
                return fail(P, "string is not valid UTF-8");
        json_decref(probe);
        *ret = xstrndup(buf, n);
        return 0;
}

static bool bare_key_char(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                c == '-';
}

/* key ( '.' key )* into a strv; positions of the first key char in ret_line/col. */
static int parse_key(Parser *P, char ***ret) {
        _cleanup_strv_free_ char **parts = NULL;
        for (;;) {
                skip_ws(P);
                char c = peek(P);
                char *k = NULL;
                if (c == '"' || c == '\'') {
                        int r = parse_string(P, &k);
                        if (r < 0)
                                return r;
                } else if (bare_key_char(c)) {
                        const char *s = P->p;
                        while (bare_key_char(peek(P)))
                                advance(P);
                        k = xstrndup(s, (size_t) (P->p - s));
                } else if (c)
                        return fail(P, "expected a key, found '%c'", c);
                else
                        return fail(P, "expected a key");
                if (strlen(k) > 256 || strpbrk(k, ".[]")) {
                        /* Our paths use '.' and '[': keep them unambiguous. */
                        free(k);
                        return fail(P, "key must be at most 256 bytes and contain no '.', '[' or ']'");
                }
                strv_consume(&parts, k);
                if (strv_length(parts) > TOML_MAX_DEPTH)
                        return fail(P, "keys nested deeper than %u levels", TOML_MAX_DEPTH);
                skip_ws(P);
                if (peek(P) != '.')
                        break;
                advance(P);
        }
        *ret = TAKE_PTR(parts);
        return 0;
}

static int parse_value(Parser *P, const char *path, unsigned depth, json_t **ret);

static int parse_number_or_bool(Parser *P, json_t **ret) {
        const char *s = P->p;
        while (!eof(P) && (bare_key_char(peek(P)) || peek(P) == '.' || peek(P) == '+' || peek(P) == ':'))
                advance(P);
        size_t n = (size_t) (P->p - s);
        _cleanup_free_ char *tok = xstrndup(s, n);
        if (streq(tok, "true") || streq(tok, "false")) {
                *ret = json_boolean(streq(tok, "true"));
                return 0;
        }
        if (n == 0)
                return fail(P, "expected a value");
        if (strstr(tok, "inf") || strstr(tok, "nan"))
                return fail(P, "unsupported TOML feature: inf and nan");
        if (n >= 10 && tok[4] == '-' && tok[7] == '-')
                return fail(P, "unsupported TOML feature: dates and times");
        if (strchr(tok, ':'))
                return fail(P, "unsupported TOML feature: dates and times");
        const char *d = tok;
        if (*d == '+' || *d == '-')
                d++;
        if (d[0] == '0' && (d[1] == 'x' || d[1] == 'o' || d[1] == 'b'))
                return fail(P, "unsupported TOML feature: hexadecimal, octal and binary integers");
        /* Strip underscores, each between two digits. */
        char clean[64];
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                if (tok[i] == '_') {
                        if (i == 0 || i + 1 >= n || !(tok[i - 1] >= '0' && tok[i - 1] <= '9') ||
                            !(tok[i + 1] >= '0' && tok[i + 1] <= '9'))
                                return fail(P, "invalid number '%s': '_' must sit between digits", tok);
                        continue;
                }
                if (k + 1 >= sizeof(clean))
                        return fail(P, "number too long");
                clean[k++] = tok[i];
        }
        clean[k] = 0;
        const char *c = clean;
        if (*c == '+' || *c == '-')
                c++;
        if (!(*c >= '0' && *c <= '9'))
                return fail(P, "invalid value '%s' (strings need quotes)", tok);
        if (c[0] == '0' && c[1] >= '0' && c[1] <= '9')
                return fail(P, "invalid number '%s': leading zeros are not allowed", tok);
        bool is_float = strpbrk(c, ".eE") != NULL;
        for (const char *q = c; *q; q++)
                if (!((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' ||
                      ((*q == '+' || *q == '-') && (q[-1] == 'e' || q[-1] == 'E'))))
                        return fail(P, "invalid number '%s'", tok);
        errno = 0;
        char *e = NULL;
        if (is_float) {
                /* TOML: a '.' must have digits on both sides. */
                const char *dot = strchr(c, '.');
                if (dot && (dot == c || !(dot[1] >= '0' && dot[1] <= '9')))
                        return fail(P, "invalid float '%s': digits needed on both sides of '.'", tok);
                double v = strtod(clean, &e);
                if (errno != 0 || *e != 0 || !isfinite(v))
                        return fail(P, "invalid float '%s'", tok);
                *ret = json_real(v);
                return 0;
        }
        long long v = strtoll(clean, &e, 10);
        if (errno != 0 || *e != 0)
                return fail(P, "integer '%s' is out of range", tok);
        *ret = json_integer((json_int_t) v);
        return 0;
}

static int skip_ws_nl_comments(Parser *P) {
        for (;;) {
                skip_ws(P);
                skip_comment(P);
                if (peek(P) == '\r' && peek_at(P, 1) == '\n')
                        advance(P);
                if (peek(P) == '\n')
                        advance(P);
                else
                        return 0;
        }
}

static int insert_key(
        Parser *P,
        json_t *table,
        char **key,
        const char *base,
        unsigned line,
        unsigned col,
        json_t *value,
        bool dotted_tables);

static int parse_inline_table(Parser *P, const char *path, unsigned depth, json_t **ret) {
        _cleanup_json_ json_t *t = json_object();
        advance(P); /* { */
        skip_ws(P);
        if (peek(P) == '}') {
                advance(P);
                *ret = TAKE_PTR(t);
                return 0;
        }
        for (;;) {
                skip_ws(P);
                unsigned l = P->line, c = P->col;
                _cleanup_strv_free_ char **key = NULL;
                int r = parse_key(P, &key);
                if (r < 0)
                        return r;
                skip_ws(P);
                if (peek(P) != '=')
                        return fail(P, "expected '=' after a key");
                advance(P);
                skip_ws(P);
                _cleanup_free_ char *vpath = NULL;
                vpath = xstrdup(path);
                STRV_FOREACH(k, key) {
                        char *np = spec_path_key(vpath, *k);
                        free(vpath);
                        vpath = np;
                }
                json_t *v = NULL;
                r = parse_value(P, vpath, depth + 1, &v);
                if (r < 0)
                        return r;
                r = insert_key(P, t, key, path, l, c, v, true);
                if (r < 0)
                        return r;
                skip_ws(P);
                if (peek(P) == ',') {
                        advance(P);
                        continue;
                }
                if (peek(P) == '}') {
                        advance(P);
                        break;
                }
                return fail(P, "expected ',' or '}' in an inline table (inline tables are one line)");
        }
        strv_extend(&P->frozen, path);
        *ret = TAKE_PTR(t);
        return 0;
}

static int parse_value(Parser *P, const char *path, unsigned depth, json_t **ret) {
        char c = peek(P);
        int r;
        if (depth > TOML_MAX_DEPTH)
                return fail(P, "values nested deeper than %u levels", TOML_MAX_DEPTH);
        if (c == '"' || c == '\'') {
                _cleanup_free_ char *s = NULL;
                r = parse_string(P, &s);
                if (r < 0)
                        return r;
                *ret = json_string(s);
                return 0;
        }
        if (c == '{')
                return parse_inline_table(P, path, depth, ret);
        if (c == '[') {
                _cleanup_json_ json_t *a = json_array();
                advance(P);
                for (size_t i = 0;; i++) {
                        r = skip_ws_nl_comments(P);
                        if (peek(P) == ']') {
                                advance(P);
                                break;
                        }
                        if (eof(P))
                                return fail(P, "unterminated array");
                        if (i >= 65536)
                                return fail(P, "array too long");
                        _cleanup_free_ char *ipath = spec_path_index(path, i);
                        if (P->pos)
                                spec_pos_add(P->pos, ipath, P->line, P->col);
                        json_t *v = NULL;
                        r = parse_value(P, ipath, depth + 1, &v);
                        if (r < 0)
                                return r;
                        json_array_append_new(a, v);
                        skip_ws_nl_comments(P);
                        if (peek(P) == ',') {
                                advance(P);
                                continue;
                        }
                        if (peek(P) == ']') {
                                advance(P);
                                break;
                        }
                        return fail(P, eof(P) ? "unterminated array" : "expected ',' or ']' in an array");
                }
                strv_extend(&P->frozen, path);
                *ret = TAKE_PTR(a);
                return 0;
        }
        if (eof(P) || c == '\n' || c == '#')
                return fail(P, "expected a value after '='");
        return parse_number_or_bool(P, ret);
}

/* Walk/create the tables named by key[0..n-2] under table, then set the last key to value. */
static int insert_key(
        Parser *P,
        json_t *table,
        char **key,
        const char *base,
        unsigned line,
        unsigned col,
        json_t *value,
        bool dotted_tables) {
        _cleanup_json_ json_t *v = value;
        _cleanup_free_ char *path = xstrdup(base ? base : "");
        size_t n = strv_length(key);
        json_t *t = table;
        for (size_t i = 0; i < n; i++) {
                char *np = spec_path_key(path, key[i]);
                free(path);
                path = np;
                json_t *cur = json_object_get(t, key[i]);
                if (i + 1 == n) {
                        if (cur) {
                                P->line = line;
                                P->col = col;
                                return fail(P, "duplicate key '%s'", path);
                        }
                        if (P->pos)
                                spec_pos_add(P->pos, path, line, col);
                        json_object_set_new(t, key[i], TAKE_PTR(v));
                        return 0;
                }
                if (!cur) {
                        cur = json_object();
                        json_object_set_new(t, key[i], cur);
                        if (P->pos)
                                spec_pos_add(P->pos, path, line, col);
                        if (dotted_tables)
                                strv_extend(&P->explicit_tables, path); /* no [header] may reopen it */
                } else if (!json_is_object(cur) || strv_contains(P->frozen, path)) {
                        P->line = line;
                        P->col = col;
                        return fail(P, "key '%s' is already defined as a value", path);
                }
                t = cur;
        }
        return 0;
}

int toml_parse(const char *text, size_t n, const char *filename, json_t **ret, SpecPosTable *pos, char **reterr) {
        Parser P = { .p = text, .end = text + n, .line = 1, .col = 1, .file = filename, .pos = pos };
        _cleanup_json_ json_t *root = json_object();
        json_t *cur = root;
        _cleanup_free_ char *cur_path = xstrdup("");
        int r = 0;

        if (n > TOML_MAX_SIZE) {
                if (reterr)
                        *reterr = xasprintf(
                                "%s%sfile is %zu bytes, over the limit of %u",
                                filename ? filename : "",
                                filename ? ": " : "",
                                n,
                                TOML_MAX_SIZE);
                return -EFBIG;
        }
        if (memchr(text, 0, n)) {
                const char *z = memchr(text, 0, n);
                while (P.p < z)
                        advance(&P);
                r = fail(&P, "NUL byte in file");
                goto finish;
        }
        if (n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
                P.p += 3;
        r = check_controls(&P);
        if (r < 0)
                goto finish;

        while (!eof(&P)) {
                skip_ws(&P);
                char c = peek(&P);
                if (c == '#' || c == '\n' || c == '\r' || c == 0) {
                        r = expect_eol(&P);
                        if (r < 0)
                                goto finish;
                        continue;
                }
                unsigned l = P.line, col = P.col;
                if (c == '[') {
                        advance(&P);
                        if (peek(&P) == '[') {
                                r = fail(&P, "unsupported TOML feature: arrays of tables ([[...]])");
                                goto finish;
                        }
                        _cleanup_strv_free_ char **key = NULL;
                        r = parse_key(&P, &key);
                        if (r < 0)
                                goto finish;
                        skip_ws(&P);
                        if (peek(&P) != ']') {
                                r = fail(&P, "expected ']' to close the table header");
                                goto finish;
                        }
                        advance(&P);
                        r = expect_eol(&P);
                        if (r < 0)
                                goto finish;
                        /* Walk/create the table path from the root. */
                        json_t *t = root;
                        _cleanup_free_ char *path = xstrdup("");
                        STRV_FOREACH(k, key) {
                                char *np = spec_path_key(path, *k);
                                free(path);
                                path = np;
                                json_t *x = json_object_get(t, *k);
                                if (!x) {
                                        x = json_object();
                                        json_object_set_new(t, *k, x);
                                        if (pos)
                                                spec_pos_add(pos, path, l, col);
                                } else if (!json_is_object(x) || strv_contains(P.frozen, path)) {
                                        P.line = l;
                                        P.col = col;
                                        r = fail(&P, "'%s' is already defined as a value", path);
                                        goto finish;
                                }
                                t = x;
                        }
                        if (strv_contains(P.explicit_tables, path)) {
                                P.line = l;
                                P.col = col;
                                r = fail(&P, "table [%s] is defined twice", path);
                                goto finish;
                        }
                        strv_extend(&P.explicit_tables, path);
                        cur = t;
                        free(cur_path);
                        cur_path = TAKE_PTR(path);
                        continue;
                }
                _cleanup_strv_free_ char **key = NULL;
                r = parse_key(&P, &key);
                if (r < 0)
                        goto finish;
                skip_ws(&P);
                if (peek(&P) != '=') {
                        r = fail(&P, "expected '=' after the key");
                        goto finish;
                }
                advance(&P);
                skip_ws(&P);
                _cleanup_free_ char *vpath = xstrdup(cur_path);
                STRV_FOREACH(k, key) {
                        char *np = spec_path_key(vpath, *k);
                        free(vpath);
                        vpath = np;
                }
                json_t *v = NULL;
                r = parse_value(&P, vpath, 0, &v);
                if (r < 0)
                        goto finish;
                r = insert_key(&P, cur, key, cur_path, l, col, v, true);
                if (r < 0)
                        goto finish;
                r = expect_eol(&P);
                if (r < 0)
                        goto finish;
        }
finish:
        strv_free(P.explicit_tables);
        strv_free(P.frozen);
        if (r < 0 || P.err) {
                if (reterr)
                        *reterr = TAKE_PTR(P.err);
                free(P.err);
                return r < 0 ? r : -EBADMSG;
        }
        *ret = TAKE_PTR(root);
        return 0;
}
