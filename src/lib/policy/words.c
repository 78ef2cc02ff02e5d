/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Word splitting without expansion, the state machine of spec-permissions §6.3 (shell-words
 * `split`), plus detection of shell syntax outside quotes so callers can refuse command
 * strings that a shell would read as several commands. Untrusted input, capped.
 */
#include <string.h>

#include "alloc-util.h"
#include "string-util.h"
#include "words.h"

typedef enum SplitState {
        ST_DELIMITER,
        ST_BACKSLASH,
        ST_UNQUOTED,
        ST_UNQUOTED_BACKSLASH,
        ST_SINGLE,
        ST_DOUBLE,
        ST_DOUBLE_BACKSLASH,
        ST_COMMENT,
} SplitState;

typedef struct WordBuf {
        char *buf;
        size_t len, cap;
} WordBuf;

static void wordbuf_put(WordBuf *w, char c) {
        if (w->len + 2 > w->cap) {
                w->cap = NUCLEUS_MAX(w->cap * 2, (size_t) 32);
                w->buf = xrealloc(w->buf, w->cap);
        }
        w->buf[w->len++] = c;
        w->buf[w->len] = 0;
}

static unsigned meta_of_unquoted(const char *s, size_t i, bool word_start) {
        switch (s[i]) {
        case ';':
        case '&':
        case '|':
                return WORDS_META_SEPARATOR;
        case '<':
        case '>':
                return WORDS_META_REDIRECT;
        case '`':
                return WORDS_META_SUBST;
        case '$':
                return s[i + 1] == '(' ? WORDS_META_SUBST : WORDS_META_EXPANSION;
        case '(':
        case ')':
                return WORDS_META_SUBSHELL;
        case '*':
        case '?':
        case '[':
                return WORDS_META_EXPANSION;
        case '~':
                return word_start ? WORDS_META_EXPANSION : 0;
        default:
                return 0;
        }
}

static bool is_delim(char c) {
        return c == ' ' || c == '\t' || c == '\n';
}

int words_split(const char *s, char ***ret, unsigned *ret_meta) {
        _cleanup_strv_free_ char **words = NULL;
        WordBuf w = {};
        SplitState st = ST_DELIMITER;
        size_t n_words = 0;
        unsigned meta = 0;
        bool pending_newline = false; /* an unquoted LF ended a word; a following word makes it a separator */

        if (!s || !ret)
                return -EINVAL;
        size_t n = strnlen(s, WORDS_MAX_INPUT + 1);
        if (n > WORDS_MAX_INPUT)
                return -E2BIG;

#define EMIT()                                                     \
        do {                                                       \
                if (n_words >= WORDS_MAX_WORDS) {                  \
                        free(w.buf);                               \
                        return -E2BIG;                             \
                }                                                  \
                strv_consume(&words, w.buf ? w.buf : xstrdup("")); \
                n_words++;                                         \
                w = (WordBuf){};                                   \
        } while (0)

        for (size_t i = 0; i <= n; i++) {
                char c = s[i]; /* c == 0 at i == n: end of input */
                bool end = i == n;
                switch (st) {
                case ST_DELIMITER:
                        if (end)
                                break;
                        if (c != ' ' && c != '\t' && c != '\n' && c != '#' && pending_newline) {
                                meta |= WORDS_META_NEWLINE;
                                pending_newline = false;
                        }
                        if (c == '\'') {
                                wordbuf_put(&w, 0), w.len = 0; /* start an (empty) word */
                                st = ST_SINGLE;
                        } else if (c == '"') {
                                wordbuf_put(&w, 0), w.len = 0;
                                st = ST_DOUBLE;
                        } else if (c == '\\')
                                st = ST_BACKSLASH;
                        else if (c == '\n') {
                                if (n_words > 0)
                                        pending_newline = true;
                        } else if (c == ' ' || c == '\t')
                                ;
                        else if (c == '#')
                                st = ST_COMMENT;
                        else {
                                meta |= meta_of_unquoted(s, i, true);
                                wordbuf_put(&w, c);
                                st = ST_UNQUOTED;
                        }
                        break;
                case ST_BACKSLASH:
                        if (end) {
                                wordbuf_put(&w, '\\');
                                EMIT();
                        } else if (c == '\n')
                                st = ST_DELIMITER;
                        else {
                                wordbuf_put(&w, c);
                                st = ST_UNQUOTED;
                        }
                        break;
                case ST_UNQUOTED:
                        if (end)
                                EMIT();
                        else if (c == '\'')
                                st = ST_SINGLE;
                        else if (c == '"')
                                st = ST_DOUBLE;
                        else if (c == '\\')
                                st = ST_UNQUOTED_BACKSLASH;
                        else if (is_delim(c)) {
                                EMIT();
                                if (c == '\n')
                                        pending_newline = true;
                                st = ST_DELIMITER;
                        } else {
                                meta |= meta_of_unquoted(s, i, false);
                                wordbuf_put(&w, c);
                        }
                        break;
                case ST_UNQUOTED_BACKSLASH:
                        if (end) {
                                wordbuf_put(&w, '\\');
                                EMIT();
                        } else if (c == '\n')
                                st = ST_UNQUOTED;
                        else {
                                wordbuf_put(&w, c);
                                st = ST_UNQUOTED;
                        }
                        break;
                case ST_SINGLE:
                        if (end) {
                                free(w.buf);
                                return -EINVAL;
                        }
                        if (c == '\'')
                                st = ST_UNQUOTED;
                        else
                                wordbuf_put(&w, c);
                        break;
                case ST_DOUBLE:
                        if (end) {
                                free(w.buf);
                                return -EINVAL;
                        }
                        if (c == '"')
                                st = ST_UNQUOTED;
                        else if (c == '\\')
                                st = ST_DOUBLE_BACKSLASH;
                        else {
                                if (c == '`' || (c == '$' && s[i + 1] == '('))
                                        meta |= WORDS_META_SUBST;
                                else if (c == '$')
                                        meta |= WORDS_META_EXPANSION;
                                wordbuf_put(&w, c);
                        }
                        break;
                case ST_DOUBLE_BACKSLASH:
                        if (end) {
                                free(w.buf);
                                return -EINVAL;
                        }
                        if (c == '\n')
                                st = ST_DOUBLE;
                        else if (c == '$' || c == '`' || c == '"' || c == '\\') {
                                wordbuf_put(&w, c);
                                st = ST_DOUBLE;
                        } else {
                                wordbuf_put(&w, '\\');
                                wordbuf_put(&w, c);
                                st = ST_DOUBLE;
                        }
                        break;
                case ST_COMMENT:
                        if (!end && c == '\n') {
                                if (n_words > 0)
                                        pending_newline = true; /* "a # x<LF>b" is two commands */
                                st = ST_DELIMITER;
                        }
                        break;
                default:
                        assert(false);
                }
        }
#undef EMIT
        if (!words)
                words = xnew0(char *, 1);
        if (ret_meta)
                *ret_meta = meta;
        *ret = TAKE_PTR(words);
        return 0;
}

static bool needs_quoting(const char *w) {
        /* One pass over the bytes: a special character, or U+02DC (0xcb 0x9c, the upstream
         * quirk, §6.4). */
        static const bool special[256] = {
                ['\n'] = true, ['\''] = true, ['|'] = true,  ['&'] = true, [';'] = true, ['<'] = true,
                ['>'] = true,  ['('] = true,  [')'] = true,  ['$'] = true, ['`'] = true, ['\\'] = true,
                ['"'] = true,  [' '] = true,  ['\t'] = true, ['*'] = true, ['?'] = true, ['['] = true,
                ['#'] = true,  ['='] = true,  ['%'] = true,
        };
        for (const unsigned char *c = (const unsigned char *) w; *c; c++)
                if (special[*c] || (c[0] == 0xcb && c[1] == 0x9c))
                        return true;
        return false;
}

/* w as words_quote() gives it, written to o unless o is NULL; returns its length. */
static size_t quote_into(const char *w, char *o) {
        if (!*w) {
                if (o)
                        memcpy(o, "''", 2);
                return 2;
        }
        if (!needs_quoting(w)) {
                size_t l = strlen(w);
                if (o)
                        memcpy(o, w, l);
                return l;
        }
        size_t n = 0;
        if (o)
                o[n] = '\'';
        n++;
        for (const char *p = w; *p; p++)
                if (*p == '\'') {
                        if (o)
                                memcpy(o + n, "'\\''", 4);
                        n += 4;
                } else {
                        if (o)
                                o[n] = *p;
                        n++;
                }
        if (o)
                o[n] = '\'';
        return n + 1;
}

char *words_quote(const char *w) {
        if (!w)
                w = "";
        char *r = xmalloc(quote_into(w, NULL) + 1);
        r[quote_into(w, r)] = 0;
        return r;
}

/* Measured once, written once: no per-word copies (this is on every denial's path). */
char *words_join(char *const *words) {
        size_t n = 0;
        STRV_FOREACH(w, words)
                n += quote_into(*w, NULL) + (w != words);
        char *r = xmalloc(n + 1), *o = r;
        STRV_FOREACH(w, words) {
                if (w != words)
                        *o++ = ' ';
                o += quote_into(*w, o);
        }
        *o = 0;
        return r;
}
