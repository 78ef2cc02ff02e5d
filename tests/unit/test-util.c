/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for src/lib/util: parsing, strings, hex, visibility escaping, fd helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "id-util.h"
#include "parse-util.h"
#include "string-util.h"

static void test_safe_atou64(void **state) {
        uint64_t v;
        assert_int_equal(safe_atou64("0", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(safe_atou64("18446744073709551615", &v), 0);
        assert_true(v == UINT64_MAX);
        assert_int_equal(safe_atou64("18446744073709551616", &v), -ERANGE);
        assert_int_equal(safe_atou64("", &v), -EINVAL);
        assert_int_equal(safe_atou64(" 1", &v), -EINVAL);
        assert_int_equal(safe_atou64("+1", &v), -EINVAL);
        assert_int_equal(safe_atou64("-1", &v), -EINVAL);
        assert_int_equal(safe_atou64("1x", &v), -EINVAL);
}

static void test_safe_atoi(void **state) {
        int64_t v;
        int32_t w;
        assert_int_equal(safe_atoi64("-9223372036854775808", &v), 0);
        assert_true(v == INT64_MIN);
        assert_int_equal(safe_atoi64("9223372036854775808", &v), -ERANGE);
        assert_int_equal(safe_atoi32("-2147483649", &w), -ERANGE);
        assert_int_equal(safe_atoi32("-5", &w), 0);
        assert_int_equal(w, -5);
}

static void test_parse_micros(void **state) {
        uint64_t v;
        assert_int_equal(parse_micros("1.5", &v), 0);
        assert_int_equal(v, 1500000);
        assert_int_equal(parse_micros("0.000001", &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(parse_micros("0.0000001", &v), -ERANGE);
        assert_int_equal(parse_micros("5", &v), 0);
        assert_int_equal(v, 5000000);
        assert_int_equal(parse_micros(".", &v), -EINVAL);
        assert_int_equal(parse_micros("1.", &v), -EINVAL);
        assert_int_equal(parse_micros("-1", &v), -EINVAL);
}

static void test_hex(void **state) {
        _cleanup_free_ char *h = hexmem("\x00\xff\x10", 3);
        assert_string_equal(h, "00ff10");
        _cleanup_free_ void *b = NULL;
        size_t n;
        assert_int_equal(unhexmem(h, strlen(h), &b, &n), 0);
        assert_int_equal(n, 3);
        assert_memory_equal(b, "\x00\xff\x10", 3);
        void *c = NULL;
        assert_int_equal(unhexmem("0g", 2, &c, &n), -EINVAL);
        assert_int_equal(unhexmem("abc", 3, &c, &n), -EINVAL);
        assert_null(c);
}

static void test_visible(void **state) {
        _cleanup_free_ char *a = string_make_visible("git push\n\x1b[2Jrm -rf");
        assert_string_equal(a, "git push\\n\\x1b[2Jrm -rf");
        _cleanup_free_ char *b = string_make_visible("a\xe2\x80\xae"
                                                     "b\xef\xbb\xbf");
        assert_string_equal(b, "a\\u202eb\\ufeff");
        _cleanup_free_ char *c = string_make_visible("caf\xc3\xa9");
        assert_string_equal(c, "caf\xc3\xa9");
}

static void test_strv(void **state) {
        _cleanup_strv_free_ char **l = NULL;
        strv_extend(&l, "b");
        strv_extend(&l, "a");
        strv_extend(&l, "b");
        strv_sort_uniq(l);
        assert_int_equal(strv_length(l), 2);
        _cleanup_free_ char *j = strv_join(l, ",");
        assert_string_equal(j, "a,b");
        assert_true(strv_contains(l, "a"));
        assert_false(strv_contains(l, "c"));
}

static void test_utf8(void **state) {
        assert_true(utf8_is_valid("caf\xc3\xa9 \xe2\x80\xae \xf0\x9f\x98\x80"));
        assert_false(utf8_is_valid("\xc0\xaf"));         /* overlong '/' */
        assert_false(utf8_is_valid("\xed\xa0\x80"));     /* surrogate */
        assert_false(utf8_is_valid("\xf4\x90\x80\x80")); /* above U+10FFFF */
        assert_false(utf8_is_valid("tok\\\xde\x91\x9e"));
        char a[] = "tok\xde\x91\x9e.sig\xc3";
        assert_string_equal(utf8_make_valid(a), "tok\xde\x91?.sig?");
        assert_true(utf8_is_valid(a));
        char b[] = "ok \xc3\xa9";
        assert_string_equal(utf8_make_valid(b), "ok \xc3\xa9");
}

static void test_memeq(void **state) {
        assert_true(memeq_consttime("abc", "abc", 3));
        assert_false(memeq_consttime("abc", "abd", 3));
}

static void test_read_full_and_atomic(void **state) {
        char dir[] = "/tmp/nucleus-test-util-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        assert_int_equal(write_file_atomic_at(dfd, "f", "hello", 5, 0600), 0);
        struct stat st;
        assert_int_equal(fstatat(dfd, "f", &st, 0), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        _cleanup_free_ char *data = NULL;
        size_t n;
        assert_int_equal(read_full_file_at(dfd, "f", 100, &data, &n), 0);
        assert_int_equal(n, 5);
        assert_string_equal(data, "hello");
        char *d2 = NULL;
        assert_int_equal(read_full_file_at(dfd, "f", 4, &d2, &n), -EFBIG);
        assert_null(d2);
        assert_int_equal(unlinkat(dfd, "f", 0), 0);
        assert_int_equal(rmdir(dir), 0);
}

static void test_mkdir_p_at(void **state) {
        char tmpl[] = "/tmp/test-util-mkdir-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        _cleanup_close_ int dfd = open(tmpl, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        assert_true(dfd >= 0);
        struct stat st;
        assert_int_equal(mkdir_p_at(dfd, "a/b//c", 0700), 0);
        assert_int_equal(fstatat(dfd, "a/b/c", &st, 0), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(mkdir_p_at(dfd, "a/b/c", 0700), 0); /* existing: fine */
        assert_int_equal(mkdir_parents_at(dfd, "x/y/file", 0700), 0);
        assert_int_equal(fstatat(dfd, "x/y", &st, 0), 0);
        assert_int_equal(fstatat(dfd, "x/y/file", &st, 0), -1);
        _cleanup_close_ int f = openat(dfd, "a/plain", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(f >= 0);
        assert_int_equal(mkdir_p_at(dfd, "a/plain/d", 0700), -ENOTDIR);
        assert_int_equal(mkdir_p_at(dfd, "", 0700), -EINVAL);
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", tmpl);
        assert_int_equal(system(cmd), 0);
}

/* fd_opendir_at(): lists the directory an O_PATH fd names, from the start each time (a new
 * open, never a shared offset), above stdio, leaves the caller's fd open, and sets errno on
 * failure. */
static void test_opendir_at(void **state) {
        char tmpl[] = "/tmp/test-util-opendir-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        _cleanup_close_ int dfd = open(tmpl, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        assert_int_equal(mkdirat(dfd, "sub", 0700), 0);
        _cleanup_close_ int f = openat(dfd, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(f >= 0);

        for (int round = 0; round < 2; round++) {
                DIR *d = fd_opendir_at(dfd);
                assert_non_null(d);
                assert_true(dirfd(d) > 2);
                assert_int_not_equal(dirfd(d), dfd);
                int seen = 0;
                for (struct dirent *de; (de = readdir(d));)
                        seen += strcmp(de->d_name, "sub") == 0 || strcmp(de->d_name, "file") == 0;
                assert_int_equal(seen, 2);
                closedir(d);
        }
        struct stat st;
        assert_int_equal(fstat(dfd, &st), 0); /* still the caller's */

        errno = 0;
        assert_null(fd_opendir_at(f)); /* a file */
        assert_int_equal(errno, ENOTDIR);
        errno = 0;
        assert_null(fd_opendir_at(-1));
        assert_int_equal(errno, EBADF);
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", tmpl);
        assert_int_equal(system(cmd), 0);
}

/* The one id grammar (id-util.h) every program checks pod ids and operation names with. */
static void test_copy_file_sparse(void **state) {
        char dir[] = "/tmp/nucleus-test-copy-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *a = xasprintf("%s/a", dir), *b = xasprintf("%s/b", dir);
        _cleanup_close_ int src = open(a, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(src >= 0);
        /* 64 MiB file: data at 0, at 32 MiB and in the last block; holes elsewhere. */
        off_t size = 64 << 20;
        assert_int_equal(ftruncate(src, size), 0);
        assert_int_equal(pwrite(src, "head", 4, 0), 4);
        assert_int_equal(pwrite(src, "middle", 6, 32 << 20), 6);
        assert_int_equal(pwrite(src, "tail", 4, size - 4), 4);
        _cleanup_close_ int dst = open(b, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(dst >= 0);
        assert_int_equal(copy_file_sparse(src, dst), 0);
        struct stat st;
        assert_int_equal(fstat(dst, &st), 0);
        assert_int_equal(st.st_size, size);
        assert_true(st.st_blocks * 512 < (1 << 20)); /* the holes stayed holes */
        _cleanup_free_ char *data = NULL;
        size_t n = 0;
        assert_int_equal(read_full_file_at(AT_FDCWD, b, (size_t) size, &data, &n), 0);
        assert_int_equal(n, (size_t) size);
        assert_memory_equal(data, "head", 4);
        assert_memory_equal(data + (32 << 20), "middle", 6);
        assert_memory_equal(data + size - 4, "tail", 4);
        assert_int_equal(data[1 << 20], 0);
        /* Not a regular file: refused. */
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_int_equal(copy_file_sparse(dfd, dst), -EBADFD);
        (void) unlink(a);
        (void) unlink(b);
        (void) rmdir(dir);
}

static void test_id_grammar(void **state) {
        assert_true(pod_id_is_uuid("0b5c7e2a-1f3d-4c8e-9a6b-2d4f6e8a0c1e"));
        assert_false(pod_id_is_uuid("0B5C7E2A-1F3D-4C8E-9A6B-2D4F6E8A0C1E"));
        assert_false(pod_id_is_uuid("0b5c7e2a-1f3d-4c8e-9a6b-2d4f6e8a0c1"));
        assert_false(pod_id_is_uuid("0b5c7e2a01f3d-4c8e-9a6b-2d4f6e8a0c1e"));
        assert_false(pod_id_is_uuid(NULL));
        assert_true(pod_id_valid("0b5c7e2a-1f3d-4c8e-9a6b-2d4f6e8a0c1e")); /* a minted id is one */
        assert_true(pod_id_valid("pod-test_1.a"));
        assert_false(pod_id_valid(""));
        assert_false(pod_id_valid("."));
        assert_false(pod_id_valid(".."));
        assert_false(pod_id_valid("a/b"));
        assert_false(pod_id_valid("a b"));
        assert_false(pod_id_valid("a%2f"));
        assert_false(pod_id_valid(NULL));
        char long_id[POD_ID_MAX + 2];
        memset(long_id, 'a', sizeof long_id);
        long_id[POD_ID_MAX] = 0;
        assert_true(pod_id_valid(long_id));
        long_id[POD_ID_MAX] = 'a';
        long_id[POD_ID_MAX + 1] = 0;
        assert_false(pod_id_valid(long_id));
        assert_true(operation_name_valid("read"));
        assert_true(operation_name_valid("web_fetch"));
        assert_false(operation_name_valid(""));
        assert_false(operation_name_valid("Read"));
        assert_false(operation_name_valid("read-file"));
        assert_false(operation_name_valid("abcdefghijklmnopqrstuvwxyzabcdefg")); /* 33 */
        assert_true(operation_name_valid("abcdefghijklmnopqrstuvwxyzabcdef"));   /* 32 */
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_id_grammar),
                cmocka_unit_test(test_mkdir_p_at),
                cmocka_unit_test(test_opendir_at),
                cmocka_unit_test(test_copy_file_sparse),
                cmocka_unit_test(test_safe_atou64),
                cmocka_unit_test(test_safe_atoi),
                cmocka_unit_test(test_parse_micros),
                cmocka_unit_test(test_hex),
                cmocka_unit_test(test_visible),
                cmocka_unit_test(test_strv),
                cmocka_unit_test(test_memeq),
                cmocka_unit_test(test_utf8),
                cmocka_unit_test(test_read_full_and_atomic),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
