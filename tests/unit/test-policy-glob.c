/* SPDX-License-Identifier: Apache-2.0 */
/* Glob matcher (spec-permissions §5.2 vectors) and word splitter (§6.3 / §6.4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "alloc-util.h"
#include "glob.h"
#include "policy-internal.h"
#include "string-util.h"
#include "words.h"

static void test_glob_vectors(void **state) {
        static const struct {
                const char *pattern, *text;
                bool match;
        } v[] = {
                { "*.rs", "main.rs", true },
                { "*.rs", "src/main.rs", false },
                { "**/*.rs", "src/main.rs", true },
                { "**/*.rs", "main.rs", true },
                { "src/**", "src/foo/bar/baz.rs", true },
                { ".env*", ".env", true },
                { ".env*", ".env.local", true },
                { "**/.git/config", ".git/config", true },
                { "**/.git/config", "a/.git/config", true },
                { ".env*", "/abs/path/.env", false },
                { "src/**/x", "src/x", true },
                { "src/**/x", "src/a/b/x", true },
                { "src/**/x", "srcx", false },
                { "?", "a", true },
                { "?", "/", false },
                { "?", "\xc3\xa9", true }, /* one code point, two bytes */
                { "??", "\xc3\xa9", false },
                { "[abc]", "[abc]", true },
                { "[abc]", "a", false },
                { "a.b", "axb", false },
                { "***", "a/b", true },
                { "**", "anything/at\nall", true },
                { "**/*", "x", true },
                { "src/**", "src/a\nb", true }, /* fixed: "**" crosses newlines */
                { "*", "a/b", false },
                { "*", "", true },
                { "a*b*c*d*e*f*g*h*i*j*k*",
                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                  false },
                { "**/secrets/**", "secrets/api.key", true },
                { "**/secrets/**", "secretsauce.txt", false },
                { "**/token.*", "src/tokenizer.rs", false },
                { "**/token.*", "token.txt", true },
                { "{a,b}", "a", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(v); i++)
                if (glob_match(v[i].pattern, v[i].text) != v[i].match)
                        fail_msg("glob '%s' vs '%s': expected %d", v[i].pattern, v[i].text, v[i].match);
        assert_false(glob_match(NULL, "a"));
        assert_false(glob_match("a", NULL));
}

static void test_glob_long(void **state) {
        _cleanup_free_ char *t = xmalloc(GLOB_MAX_LEN + 2);
        memset(t, 'a', GLOB_MAX_LEN + 1);
        t[GLOB_MAX_LEN + 1] = 0;
        assert_false(glob_match("**", t)); /* over the cap: never matches (callers refuse such paths) */
        assert_false(glob_match("a*", t));
        t[GLOB_MAX_LEN] = 0;
        assert_true(glob_match("a*", t));
        assert_true(glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*", t));
}

static void expect_split(const char *s, const char *const *want) {
        _cleanup_strv_free_ char **w = NULL;
        int r = words_split(s, &w, NULL);
        if (r < 0)
                fail_msg("split '%s' failed: %d", s, r);
        size_t n = 0;
        for (; want[n]; n++)
                if (!w[n] || !streq(w[n], want[n]))
                        fail_msg("split '%s': word %zu is '%s', want '%s'", s, n, w[n] ? w[n] : "(none)", want[n]);
        if (w[n])
                fail_msg("split '%s': extra word '%s'", s, w[n]);
}

static void test_words_split(void **state) {
        expect_split("echo a#b", (const char *const[]){ "echo", "a#b", NULL });
        expect_split("ls # x", (const char *const[]){ "ls", NULL });
        expect_split("''", (const char *const[]){ "", NULL });
        expect_split("a\"b c\"d", (const char *const[]){ "ab cd", NULL });
        expect_split("rm \"-rf\" /", (const char *const[]){ "rm", "-rf", "/", NULL });
        expect_split("a\\ b", (const char *const[]){ "a b", NULL });
        expect_split("\"a\\$b\\\\c\\x\"", (const char *const[]){ "a$b\\c\\x", NULL });
        expect_split("a\\\nb", (const char *const[]){ "ab", NULL });
        expect_split("a\rb\vc", (const char *const[]){ "a\rb\vc", NULL });
        expect_split("  \t\n ", (const char *const[]){ NULL });
        expect_split("x \\", (const char *const[]){ "x", "\\", NULL });
        expect_split("'it''s'", (const char *const[]){ "its", NULL });

        char **w = NULL;
        assert_int_equal(words_split("echo \"unclosed", &w, NULL), -EINVAL);
        assert_int_equal(words_split("echo 'unclosed", &w, NULL), -EINVAL);
        assert_int_equal(words_split("echo \"mis'matched", &w, NULL), -EINVAL);
        assert_int_equal(words_split("echo \"a\\", &w, NULL), -EINVAL);
        assert_null(w);
}

static void test_words_meta(void **state) {
        static const struct {
                const char *s;
                unsigned meta;
        } v[] = {
                { "ls; id", WORDS_META_SEPARATOR },
                { "a && b", WORDS_META_SEPARATOR },
                { "a\nb", WORDS_META_NEWLINE },
                { "a\n", 0 },
                { "'a;b'", 0 },
                { "\"a;b\"", 0 },
                { "\"`id`\"", WORDS_META_SUBST },
                { "'`id`'", 0 },
                { "a $(id)", WORDS_META_SUBST | WORDS_META_SUBSHELL },
                { "a>b", WORDS_META_REDIRECT },
                { "(a)", WORDS_META_SUBSHELL },
                { "a\\;b", 0 },
                { "echo \"x\ny\"", 0 },
                { "a # c\nb", WORDS_META_NEWLINE },
                { "# c\nb", 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                _cleanup_strv_free_ char **w = NULL;
                unsigned meta = 0;
                assert_int_equal(words_split(v[i].s, &w, &meta), 0);
                unsigned relevant = meta & ~(unsigned) WORDS_META_EXPANSION;
                if (relevant != v[i].meta)
                        fail_msg("meta of '%s' = %#x, want %#x", v[i].s, relevant, v[i].meta);
        }
}

static void test_words_roundtrip(void **state) {
        static const char *const words[] = { "",   "a", "a b", "it's", "$x", "a\nb",
                                             "\\", "*", "~",   "=",    "%",  NULL };
        for (const char *const *x = words; *x; x++) {
                _cleanup_free_ char *q = words_quote(*x);
                _cleanup_strv_free_ char **w = NULL;
                assert_int_equal(words_split(q, &w, NULL), 0);
                assert_non_null(w[0]);
                assert_string_equal(w[0], *x);
                assert_null(w[1]);
        }
        _cleanup_free_ char *j = words_join((char *const[]){ "rm", "-rf", "/", "a b", NULL });
        assert_string_equal(j, "rm -rf / 'a b'");
}

static void test_words_caps(void **state) {
        _cleanup_free_ char *big = xmalloc(WORDS_MAX_INPUT + 2);
        memset(big, 'a', WORDS_MAX_INPUT + 1);
        big[WORDS_MAX_INPUT + 1] = 0;
        char **w = NULL;
        assert_int_equal(words_split(big, &w, NULL), -E2BIG);
        /* many words */
        for (size_t i = 0; i < WORDS_MAX_INPUT; i += 2) {
                big[i] = 'a';
                big[i + 1] = ' ';
        }
        big[WORDS_MAX_INPUT] = 0;
        assert_int_equal(words_split(big, &w, NULL), -E2BIG);
        assert_null(w);
}

/* Issue 17: a compiled glob (every kind) answers exactly as the DP matcher, for every pattern
 * of the sensitive list plus shapes of each kind, over texts built from the patterns' own
 * pieces (so near misses are common). */
static void test_glob_compiled_equivalence(void **state) {
        static const char *const extra[] = {
                "**",        "**/*",     "a/b.txt", "**/x",    "**/a/b",   "**/dir/**", "**/a/b/**",
                "**/*.rs",   "**/a*b*c", "**/*",    "src/**",  "src/*.rs", "**/?x",     "*/x",
                "**/.env.*", "**/",      "x**",     "**/**/y", "**/a*",    NULL,
        };
        static const char *const pieces[] = { "a",          "b",    ".env",   "x", "dir",   "secrets",
                                              "id_rsa",     ".git", "config", "c", "b.txt", "key.pem",
                                              ".env.local", "abc",  "y",      "",  NULL };
        const char *pats[128];
        size_t np = 0;
        for (const char *const *b = policy_block_sensitive; *b; b++)
                pats[np++] = *b;
        for (const char *const *e = extra; *e; e++)
                pats[np++] = *e;
        unsigned checked = 0;
        for (size_t i = 0; i < np; i++) {
                CompiledGlob g;
                glob_compile(pats[i], &g);
                /* Texts: 1 to 3 pieces joined by '/', and with a trailing '/'. */
                for (const char *const *x = pieces; *x; x++)
                        for (const char *const *y = pieces; *y; y++)
                                for (const char *const *z = pieces; *z; z++)
                                        for (int trail = 0; trail < 2; trail++) {
                                                char t[256];
                                                int n = **z
                                                        ? snprintf(
                                                                  t,
                                                                  sizeof t,
                                                                  "%s/%s/%s%s",
                                                                  *x,
                                                                  *y,
                                                                  *z,
                                                                  trail ? "/" : "")
                                                        : snprintf(t, sizeof t, "%s/%s%s", *x, *y, trail ? "/" : "");
                                                const char *texts[] = { t, strchr(t, '/') + 1, *x };
                                                for (size_t k = 0; k < 3; k++) {
                                                        size_t tl = strlen(texts[k]);
                                                        bool want = glob_match(pats[i], texts[k]);
                                                        GlobText gt;
                                                        glob_text_init(&gt, texts[k], tl);
                                                        if (glob_compiled_match(&g, texts[k], tl) != want ||
                                                            glob_compiled_match_text(&g, &gt) != want)
                                                                fail_msg(
                                                                        "'%s' vs '%s': want %d",
                                                                        pats[i],
                                                                        texts[k],
                                                                        want);
                                                        checked++;
                                                }
                                                (void) n;
                                        }
        }
        assert_true(checked > 100000);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_glob_vectors),
                cmocka_unit_test(test_glob_long),
                cmocka_unit_test(test_glob_compiled_equivalence),
                cmocka_unit_test(test_words_split),
                cmocka_unit_test(test_words_meta),
                cmocka_unit_test(test_words_roundtrip),
                cmocka_unit_test(test_words_caps),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
