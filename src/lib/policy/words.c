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
        static const char special[] = "\n'|&;<>()$`\\\" \t*?[#=%";
        if (strpbrk(w, special))
                return true;
        return strstr(w, "\xcb\x9c") != NULL; /* U+02DC, the upstream quirk (§6.4) */
}

char *words_quote(const char *w) {
        if (!w || !*w)
                return xstrdup("''");
        if (!needs_quoting(w))
                return xstrdup(w);
        size_t n = 2;
        for (const char *p = w; *p; p++)
                n += *p == '\'' ? 4 : 1;
        char *r = xmalloc(n + 1), *o = r;
        *o++ = '\'';
        for (const char *p = w; *p; p++) {
                if (*p == '\'') {
                        memcpy(o, "'\\''", 4);
                        o += 4;
                } else
                        *o++ = *p;
        }
        *o++ = '\'';
        *o = 0;
        return r;
}

char *words_join(char *const *words) {
        _cleanup_strv_free_ char **q = NULL;
        STRV_FOREACH(w, words)
                strv_consume(&q, words_quote(*w));
        if (!q)
                return xstrdup("");
        return strv_join(q, " ");
}
