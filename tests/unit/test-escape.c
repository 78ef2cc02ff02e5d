/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for src/lib/util/escape.c. The reference is built at test time from Debian's
 * unicode-data package (UnicodeData.txt, DerivedCoreProperties.txt, DerivedAge.txt), not from
 * libunistring, the library under test: every code point is escaped and compared.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "string-util.h"

#define UNICODE_DIR "/usr/share/unicode"
#define NCP 0x110000

/* Per code point: general category (two letters, "Cn" when absent), Default_Ignorable, age. */
typedef struct Table {
        char cat[NCP][3];
        bool ignorable[NCP];
        char age[NCP][8];
        char newest[8];
} Table;

static Table *table;

static FILE *open_data(const char *name) {
        _cleanup_free_ char *p = xasprintf("%s/%s", UNICODE_DIR, name);
        FILE *f = fopen(p, "re");
        if (!f)
                fail_msg("%s is missing: install Debian's unicode-data (scripts/install-deps)", p);
        return f;
}

/* "XXXX" or "XXXX..YYYY" at the start of a line of a derived-property file. */
static bool parse_range(const char *line, unsigned *lo, unsigned *hi) {
        char *end;
        unsigned long a = strtoul(line, &end, 16);
        if (end == line)
                return false;
        unsigned long b = a;
        if (strncmp(end, "..", 2) == 0)
                b = strtoul(end + 2, NULL, 16);
        if (a >= NCP || b >= NCP || b < a)
                return false;
        *lo = (unsigned) a, *hi = (unsigned) b;
        return true;
}

static int load(void **state) {
        table = xnew0(Table, 1);
        for (unsigned c = 0; c < NCP; c++)
                strcpy(table->cat[c], "Cn");

        FILE *f = open_data("UnicodeData.txt");
        char line[1024];
        unsigned first = 0;
        while (fgets(line, sizeof line, f)) {
                char *name = strchr(line, ';'), *cat = name ? strchr(name + 1, ';') : NULL;
                assert_non_null(cat);
                unsigned c = (unsigned) strtoul(line, NULL, 16);
                assert_true(c < NCP);
                if (strstr(name, ", First>")) {
                        first = c;
                        continue;
                }
                unsigned lo = strstr(name, ", Last>") ? first : c;
                for (unsigned x = lo; x <= c; x++)
                        memcpy(table->cat[x], cat + 1, 2);
        }
        fclose(f);

        f = open_data("DerivedCoreProperties.txt");
        unsigned n_ignorable = 0;
        while (fgets(line, sizeof line, f)) {
                unsigned lo, hi;
                char *semi = strchr(line, ';');
                if (line[0] == '#' || !semi || !parse_range(line, &lo, &hi))
                        continue;
                if (strncmp(semi, "; Default_Ignorable_Code_Point ", 31) != 0)
                        continue;
                for (unsigned x = lo; x <= hi; x++, n_ignorable++)
                        table->ignorable[x] = true;
        }
        fclose(f);
        assert_true(n_ignorable > 4000); /* the tag and variation-selector blocks alone */

        f = open_data("DerivedAge.txt");
        while (fgets(line, sizeof line, f)) {
                unsigned lo, hi;
                char *semi = strchr(line, ';');
                if (line[0] == '#' || !semi || !parse_range(line, &lo, &hi))
                        continue;
                char v[8] = {};
                sscanf(semi + 1, " %7[0-9.]", v);
                for (unsigned x = lo; x <= hi; x++)
                        strcpy(table->age[x], v);
                if (strverscmp(v, table->newest) > 0)
                        strcpy(table->newest, v);
        }
        fclose(f);
        assert_true(table->newest[0]);
        return 0;
}

static int unload(void **state) {
        table = mfree(table);
        return 0;
}

static size_t utf8_encode(unsigned c, char *buf) {
        if (c < 0x80) {
                buf[0] = (char) c;
                return 1;
        }
        if (c < 0x800) {
                buf[0] = (char) (0xc0 | (c >> 6)), buf[1] = (char) (0x80 | (c & 0x3f));
                return 2;
        }
        if (c < 0x10000) {
                buf[0] = (char) (0xe0 | (c >> 12)), buf[1] = (char) (0x80 | ((c >> 6) & 0x3f));
                buf[2] = (char) (0x80 | (c & 0x3f));
                return 3;
        }
        buf[0] = (char) (0xf0 | (c >> 18)), buf[1] = (char) (0x80 | ((c >> 12) & 0x3f));
        buf[2] = (char) (0x80 | ((c >> 6) & 0x3f)), buf[3] = (char) (0x80 | (c & 0x3f));
        return 4;
}

static bool must_hide(unsigned c) {
        const char *k = table->cat[c];
        return streq(k, "Cc") || streq(k, "Cf") || streq(k, "Zl") || streq(k, "Zp") || table->ignorable[c];
}

/* Every code point of the four categories and every default-ignorable one is escaped; every
 * other assigned one is shown as itself, except one the library does not know yet (assigned
 * only in the data's newest Unicode version: the function hides unassigned code points). */
static void test_every_code_point(void **state) {
        unsigned missed = 0, extra = 0, n_hidden = 0;
        for (unsigned c = 1; c < NCP; c++) {
                if (c >= 0xd800 && c <= 0xdfff)
                        continue; /* surrogates: not encodable, tested as invalid bytes */
                char in[5] = {};
                size_t n = utf8_encode(c, in);
                _cleanup_free_ char *out = string_make_visible(in);
                bool shown = strlen(out) == n && memcmp(out, in, n) == 0;
                if (c == '\\') {
                        assert_string_equal(out, "\\\\");
                        continue;
                }
                if (must_hide(c)) {
                        n_hidden++;
                        if (shown) {
                                if (missed++ < 20)
                                        print_error("U+%04X (%s) shown raw\n", c, table->cat[c]);
                                continue;
                        }
                        /* The escape is plain ASCII and names the code point. */
                        char want[16];
                        if (c == '\n' || c == '\t' || c == '\r')
                                continue;
                        if (c < 0x80)
                                snprintf(want, sizeof want, "\\x%02x", c);
                        else if (c > 0xffff)
                                snprintf(want, sizeof want, "\\U%08x", c);
                        else
                                snprintf(want, sizeof want, "\\u%04x", c);
                        assert_string_equal(out, want);
                } else if (!shown) {
                        bool unassigned = streq(table->cat[c], "Cn") || streq(table->cat[c], "Cs");
                        bool newest = streq(table->age[c], table->newest);
                        if (!unassigned && !newest && extra++ < 20)
                                print_error("U+%04X (%s, age %s) escaped\n", c, table->cat[c], table->age[c]);
                }
        }
        assert_int_equal(missed, 0);
        assert_int_equal(extra, 0);
        assert_true(n_hidden > 4000);
}

/* The characters the attack run used, by name. */
static void test_named_deceivers(void **state) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "a\xe2\x80\xa8z", "a\\u2028z" },         /* LINE SEPARATOR */
                { "a\xe2\x80\xa9z", "a\\u2029z" },         /* PARAGRAPH SEPARATOR */
                { "a\xc2\xadz", "a\\u00adz" },             /* SOFT HYPHEN */
                { "a\xd8\x9cz", "a\\u061cz" },             /* ARABIC LETTER MARK */
                { "a\xe1\xa0\x8ez", "a\\u180ez" },         /* MONGOLIAN VOWEL SEPARATOR */
                { "a\xcd\x8fz", "a\\u034fz" },             /* COMBINING GRAPHEME JOINER */
                { "a\xe3\x85\xa4z", "a\\u3164z" },         /* HANGUL FILLER */
                { "a\xef\xbe\xa0z", "a\\uffa0z" },         /* HALFWIDTH HANGUL FILLER */
                { "a\xe2\x81\xa0z", "a\\u2060z" },         /* WORD JOINER */
                { "a\xe2\x81\xa2z", "a\\u2062z" },         /* INVISIBLE TIMES */
                { "a\xf3\xa0\x81\x81z", "a\\U000e0041z" }, /* TAG LATIN CAPITAL LETTER A */
                { "a\xe2\x80\xaez", "a\\u202ez" },         /* RIGHT-TO-LEFT OVERRIDE */
                { "a\xe2\x81\xa6z", "a\\u2066z" },         /* LEFT-TO-RIGHT ISOLATE */
                { "a\xef\xbb\xbfz", "a\\ufeffz" },         /* ZERO WIDTH NO-BREAK SPACE */
                { "a\xc2\x9bz", "a\\u009bz" },             /* CSI (C1) */
                { "git push\n\x1b[2J", "git push\\n\\x1b[2J" },
                { "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80" },
                { "a\\u202e", "a\\\\u202e" },                   /* a literal escape cannot pass for one */
                { "\xed\xa0\x80", "\\xed\\xa0\\x80" },          /* surrogate */
                { "\xc0\xaf", "\\xc0\\xaf" },                   /* overlong */
                { "\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80" }, /* above U+10FFFF */
                { "ok\xe2\x80", "ok\\xe2\\x80" },               /* truncated */
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                _cleanup_free_ char *v = string_make_visible(cases[i].in);
                assert_string_equal(v, cases[i].out);
        }
}

static void test_html(void **state) {
        _cleanup_free_ char *h = string_escape_html("<a href=\"x\" title='y'>&\xe2\x80\xae</a>\n");
        assert_string_equal(h, "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;\\u202e&lt;/a&gt;\\n");
        _cleanup_free_ char *w = string_escape_html("\"\"\"\"");
        assert_string_equal(w, "&quot;&quot;&quot;&quot;");
}

static void test_flags(void **state) {
        /* Multi-line text (a patch on a terminal): lines stay lines, nothing else is raw. */
        static const char patch[] = "+x = 1\n+\xe2\x80\xae// ok\r\n+\tcc -o x\n";
        _cleanup_free_ char *p = escape_text(patch, strlen(patch), ESCAPE_KEEP_NEWLINE);
        assert_string_equal(p, "+x = 1\n+\\u202e// ok\\r\n+\tcc -o x\n");
        /* NUL bytes inside the length are escaped, not a terminator. */
        _cleanup_free_ char *z = escape_text("a\0b", 3, 0);
        assert_string_equal(z, "a\\x00b");
        /* Log lines: backslashes of already-escaped text stay single. */
        static const char line[] = "path 'a\\u202e' \xe2\x80\xa8\n";
        _cleanup_free_ char *l = escape_text(line, strlen(line), ESCAPE_KEEP_BACKSLASH);
        assert_string_equal(l, "path 'a\\u202e' \\u2028\\n");
        /* JSON for a human: the same document, hidden code points as JSON escapes. */
        static const char json[] = "{\n  \"a\": \"x\xe2\x80\xaey\xf3\xa0\x81\x81\\n\xc3\xa9\"\n}";
        _cleanup_free_ char *j = escape_text(json, strlen(json), ESCAPE_JSON);
        assert_string_equal(j, "{\n  \"a\": \"x\\u202ey\\udb40\\udc41\\n\xc3\xa9\"\n}");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_every_code_point, load, unload),
                cmocka_unit_test(test_named_deceivers),
                cmocka_unit_test(test_html),
                cmocka_unit_test(test_flags),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
