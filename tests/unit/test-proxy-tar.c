/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the proxy's strict tar reader (src/guest/proxy/tar.c): ustar, pax and GNU
 * names, checksums, truncation, caps, entry types, and byte-by-byte feeding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "tar.h"

typedef struct Rec {
        char log[4096];
        size_t n;
} Rec;

static int on_entry(void *ud, const TarEntry *e) {
        Rec *r = ud;
        r->n += (size_t) snprintf(
                r->log + r->n,
                sizeof r->log - r->n,
                "[%d %s %s %o %llu]",
                e->type,
                e->path,
                e->link ?: "-",
                (unsigned) e->mode,
                (unsigned long long) e->size);
        return 0;
}
static int on_data(void *ud, const void *b, size_t n) {
        Rec *r = ud;
        r->n += (size_t) snprintf(r->log + r->n, sizeof r->log - r->n, "%.*s", (int) n, (const char *) b);
        return 0;
}
static int on_end(void *ud) {
        Rec *r = ud;
        r->n += (size_t) snprintf(r->log + r->n, sizeof r->log - r->n, "|");
        return 0;
}
static const TarCallbacks cbs = { on_entry, on_data, on_end };

/* Append a ustar header (+ content, padded) to buf. */
static size_t
        add(uint8_t *buf,
            size_t off,
            const char *name,
            char type,
            const char *link,
            const char *data,
            size_t n,
            const char *size_override) {
        uint8_t *h = buf + off;
        memset(h, 0, 512);
        memcpy(h, name, strlen(name) < 100 ? strlen(name) : 100);
        memcpy(h + 100, "0000644", 7);
        memcpy(h + 108, "0000000", 7);
        memcpy(h + 116, "0000000", 7);
        if (size_override)
                memcpy(h + 124, size_override, strlen(size_override));
        else
                snprintf((char *) h + 124, 12, "%011zo", n);
        memcpy(h + 136, "00000000000", 11);
        h[156] = (uint8_t) type;
        if (link)
                memcpy(h + 157, link, strlen(link));
        memcpy(h + 257,
               "ustar\0"
               "00",
               8);
        memset(h + 148, ' ', 8);
        unsigned sum = 0;
        for (int i = 0; i < 512; i++)
                sum += h[i];
        snprintf((char *) h + 148, 8, "%06o", sum);
        off += 512;
        if (n) {
                memcpy(buf + off, data, n);
                off += (n + 511) / 512 * 512;
        }
        return off;
}

static int feed_all(const uint8_t *b, size_t n, size_t chunk, Rec *r, TarReader *t) {
        tar_reader_init(t);
        for (size_t i = 0; i < n; i += chunk) {
                int k = tar_reader_feed(t, b + i, n - i < chunk ? n - i : chunk, &cbs, r);
                if (k < 0)
                        return k;
        }
        return tar_reader_finish(t);
}

static void test_basic_entries(void **state) {
        uint8_t *b = xcalloc(1, 64 * 1024);
        size_t o = 0;
        o = add(b, o, "dir/", '5', NULL, NULL, 0, NULL);
        o = add(b, o, "dir/f.txt", '0', NULL, "hello", 5, NULL);
        o = add(b, o, "ln", '2', "dir/f.txt", NULL, 0, NULL);
        o = add(b, o, "hl", '1', "dir/f.txt", NULL, 0, NULL);
        o = add(b, o, "dev", '3', NULL, NULL, 0, NULL);
        o += 1024;
        for (size_t chunk = 1; chunk <= 1024; chunk *= 4) {
                Rec r = {};
                TarReader t;
                assert_int_equal(feed_all(b, o, chunk, &r, &t), 0);
                assert_string_equal(
                        r.log,
                        "[1 dir/ - 644 0]|[0 dir/f.txt - 644 5]hello|[2 ln dir/f.txt 644 0]|"
                        "[3 hl dir/f.txt 644 0]|[4 dev - 644 0]|");
                tar_reader_done(&t);
        }
        free(b);
}

static void test_pax_and_gnu_names(void **state) {
        uint8_t *b = xcalloc(1, 64 * 1024);
        size_t o = 0;
        char longname[300];
        memset(longname, 'a', 299);
        longname[299] = 0;
        char pax[512];
        int pn = snprintf(pax, sizeof pax, "%d path=%s\n", (int) (strlen(longname) + 10), longname);
        assert_int_equal(pn, (int) strlen(longname) + 10);
        o = add(b, o, "PaxHeader", 'x', NULL, pax, (size_t) pn, NULL);
        o = add(b, o, "short", '0', NULL, "x", 1, NULL);
        o = add(b, o, "././@LongLink", 'L', NULL, "gnu/long/name", 14, NULL);
        o = add(b, o, "trunc", '0', NULL, "", 0, NULL);
        o += 1024;
        Rec r = {};
        TarReader t;
        assert_int_equal(feed_all(b, o, 100, &r, &t), 0);
        char want[1024];
        snprintf(want, sizeof want, "[0 %s - 644 1]x|[0 gnu/long/name - 644 0]|", longname);
        assert_string_equal(r.log, want);
        tar_reader_done(&t);
        free(b);
}

static void test_rejects(void **state) {
        uint8_t *b = xcalloc(1, 64 * 1024);
        Rec r = {};
        TarReader t;
        size_t o = add(b, 0, "f", '0', NULL, "abc", 3, NULL);
        b[0] ^= 1; /* checksum mismatch */
        assert_int_equal(feed_all(b, o, 512, &r, &t), -EBADMSG);
        assert_non_null(strstr(t.error, "checksum"));
        tar_reader_done(&t);

        memset(b, 0, 64 * 1024);
        o = add(b, 0, "f", '0', NULL, "abc", 3, NULL);
        assert_int_equal(feed_all(b, o - 100, 512, &r, &t), -EBADMSG); /* truncated inside data */
        tar_reader_done(&t);

        memset(b, 0, 64 * 1024);
        o = add(b, 0, "f", 'S', NULL, NULL, 0, NULL); /* sparse: unsupported */
        assert_int_equal(feed_all(b, o, 512, &r, &t), -EBADMSG);
        tar_reader_done(&t);

        memset(b, 0, 64 * 1024);
        o = add(b, 0, "f", '0', NULL, NULL, 0, "12345678x00"); /* bad octal */
        assert_int_equal(feed_all(b, o, 512, &r, &t), -EBADMSG);
        tar_reader_done(&t);

        memset(b, 0, 64 * 1024);
        o = add(b, 0, "PaxHeader", 'x', NULL, NULL, 0, "00000400000"); /* 128 KiB extended header */
        assert_int_equal(feed_all(b, o, 512, &r, &t), -EBADMSG);
        assert_non_null(strstr(t.error, "exceeds"));
        tar_reader_done(&t);

        memset(b, 0, 64 * 1024);
        o = add(b, 0, "PaxHeader", 'x', NULL, "9 path=\n", 8, NULL); /* length lies */
        o = add(b, o, "f", '0', NULL, NULL, 0, NULL);
        assert_int_equal(feed_all(b, o, 512, &r, &t), -EBADMSG);
        tar_reader_done(&t);

        memset(b, 0, 64 * 1024);
        memcpy(b, "not a tar at all", 16);
        assert_int_equal(feed_all(b, 512, 512, &r, &t), -EBADMSG);
        assert_non_null(strstr(t.error, "magic"));
        tar_reader_done(&t);
        free(b);
}

static void test_base256_size_and_trailing(void **state) {
        uint8_t *b = xcalloc(1, 64 * 1024);
        size_t o = add(b, 0, "f", '0', NULL, "abcd", 4, NULL);
        /* Re-encode the size as GNU base-256 and fix the checksum. */
        memset(b + 124, 0, 12);
        b[124] = 0x80;
        b[135] = 4;
        memset(b + 148, ' ', 8);
        unsigned sum = 0;
        for (int i = 0; i < 512; i++)
                sum += b[i];
        snprintf((char *) b + 148, 8, "%06o", sum);
        o += 1024;
        memcpy(b + o, "trailing junk is ignored after the end", 38);
        o += 512;
        Rec r = {};
        TarReader t;
        assert_int_equal(feed_all(b, o, 7, &r, &t), 0);
        assert_string_equal(r.log, "[0 f - 644 4]abcd|");
        tar_reader_done(&t);
        free(b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_basic_entries),
                cmocka_unit_test(test_pax_and_gnu_names),
                cmocka_unit_test(test_rejects),
                cmocka_unit_test(test_base256_size_and_trailing),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
