/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the proxy's path normalization (src/guest/proxy/proxy-path.c):
 * workspace-relative results, absolute paths only under the root, prefix confusion, repeated
 * slashes, '..' resolved by the kernel (through symlinks), never lexically. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "proxy-path.h"

static Proxy proxy = { .workspace_path = (char *) "/workspace", .workspace_fd = -1 };
static char tmpdir[] = "/tmp/test-proxy-path-XXXXXX";
static char realdir[PATH_MAX];

/* A workspace: a/b/c, d, and ln -> a/b (so "ln/.." is a, not the root). */
static int setup(void **state) {
        assert_non_null(mkdtemp(tmpdir));
        assert_non_null(realpath(tmpdir, realdir));
        int fd = open(realdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(mkdirat(fd, "a", 0700), 0);
        assert_int_equal(mkdirat(fd, "a/b", 0700), 0);
        assert_int_equal(mkdirat(fd, "a/b/c", 0700), 0);
        assert_int_equal(mkdirat(fd, "d", 0700), 0);
        assert_int_equal(symlinkat("a/b", fd, "ln"), 0);
        proxy.workspace_fd = fd;
        proxy.workspace_real = realdir;
        proxy.have_proc_fd = true;
        return 0;
}

static int teardown(void **state) {
        static const char *const rm[] = { "ln", "d", "a/b/c", "a/b", "a" };
        for (size_t i = 0; i < sizeof rm / sizeof rm[0]; i++)
                (void) unlinkat(proxy.workspace_fd, rm[i], strcmp(rm[i], "ln") == 0 ? 0 : AT_REMOVEDIR);
        close(proxy.workspace_fd);
        (void) rmdir(realdir);
        return 0;
}

static void ok(const char *in, const char *want) {
        char *rel = NULL, *msg = NULL;
        ErrorKind k;
        assert_int_equal(proxy_path_normalize(&proxy, in, &rel, &k, &msg), 0);
        assert_string_equal(rel, want);
        free(rel);
}

static void bad(const char *in, ErrorKind want) {
        char *rel = NULL, *msg = NULL;
        ErrorKind k = _ERROR_KIND_INVALID;
        assert_true(proxy_path_normalize(&proxy, in, &rel, &k, &msg) < 0);
        assert_int_equal(k, want);
        assert_non_null(msg);
        assert_null(rel);
        free(msg);
}

static void test_normalize(void **state) {
        ok("a", "a");
        ok("a/b/c", "a/b/c");
        ok("./a//b/./c/", "a/b/c");
        ok(".", ".");
        ok("/workspace", ".");
        ok("/workspace/", ".");
        ok("/workspace//x/./y", "x/y");
        ok("...", "...");
        ok("..a/b..", "..a/b..");
        /* Every spelling of one path classifies as that path: repeated slashes anywhere (a
         * leading "//" too), trailing slashes, "./" components. */
        static const char *const env[] = {
                ".env",
                "./.env",
                ".//.env",
                "/workspace/.env",
                "//workspace//.env",
                "///workspace/.env",
                "/workspace/./.env",
                "//workspace/./.env",
                "/workspace//.env/",
                "././/.env",
                "/./workspace/.env",
        };
        for (size_t i = 0; i < sizeof env / sizeof env[0]; i++) {
                if (strcmp(env[i], "/./workspace/.env") == 0)
                        continue; /* not under the root as written; see test_escapes */
                ok(env[i], ".env");
        }
        ok("//workspace", ".");
        ok("//workspace//", ".");
        ok("a//b///c/", "a/b/c");
}

/* ".." is resolved by the kernel beneath the root: through a symlink it is the parent of the
 * link's target, not the lexical parent. */
static void test_dotdot(void **state) {
        ok("a/..", ".");
        ok("a/../d", "d");
        ok("a/b/..", "a");
        ok("a/b/../b/c", "a/b/c");
        ok("/workspace/a/../d", "d");
        ok("//workspace//a//..//d", "d");
        ok("ln/..", "a");             /* lexically this would be "." */
        ok("ln/../x.txt", "a/x.txt"); /* the rest need not exist */
        ok("ln/c/../..", "a");
        bad("missing/../d", ERROR_KIND_NOT_FOUND);
        bad("ln/../../..", ERROR_KIND_SANDBOX_ESCAPE);
}

static void test_escapes(void **state) {
        bad("..", ERROR_KIND_SANDBOX_ESCAPE);
        bad("../x", ERROR_KIND_SANDBOX_ESCAPE);
        bad("a/../../x", ERROR_KIND_SANDBOX_ESCAPE);
        bad("/etc/passwd", ERROR_KIND_SANDBOX_ESCAPE);
        bad("/workspace2/x", ERROR_KIND_SANDBOX_ESCAPE);
        bad("/workspace_evil", ERROR_KIND_SANDBOX_ESCAPE);
        bad("/workspace/../etc/hostname", ERROR_KIND_SANDBOX_ESCAPE);
        bad("/./workspace/.env", ERROR_KIND_SANDBOX_ESCAPE);
        bad("//etc//passwd", ERROR_KIND_SANDBOX_ESCAPE);
        bad("//workspace2//x", ERROR_KIND_SANDBOX_ESCAPE);
        bad("//workspace/../../x", ERROR_KIND_SANDBOX_ESCAPE);
        bad("/proc/self/root/etc/passwd", ERROR_KIND_SANDBOX_ESCAPE);
        bad("", ERROR_KIND_INVALID_REQUEST);
        char *longp = xmalloc(PROXY_PATH_MAX + 2);
        memset(longp, 'a', PROXY_PATH_MAX + 1);
        longp[PROXY_PATH_MAX + 1] = 0;
        bad(longp, ERROR_KIND_INVALID_REQUEST);
        free(longp);
}

static void test_split(void **state) {
        char *parent, *leaf;
        assert_int_equal(proxy_path_split("a/b/c", &parent, &leaf), 0);
        assert_string_equal(parent, "a/b");
        assert_string_equal(leaf, "c");
        free(parent), free(leaf);
        assert_int_equal(proxy_path_split("c", &parent, &leaf), 0);
        assert_string_equal(parent, ".");
        assert_string_equal(leaf, "c");
        free(parent), free(leaf);
        assert_int_equal(proxy_path_split(".", &parent, &leaf), -EINVAL);
        assert_int_equal(proxy_path_split("a/..", &parent, &leaf), -EINVAL);
        assert_int_equal(proxy_path_split("a/.", &parent, &leaf), -EINVAL);
}

static void test_errno_kinds(void **state) {
        assert_int_equal(proxy_errno_kind(-EXDEV), ERROR_KIND_SANDBOX_ESCAPE);
        assert_int_equal(proxy_errno_kind(-ELOOP), ERROR_KIND_SANDBOX_ESCAPE);
        assert_int_equal(proxy_errno_kind(-ENOENT), ERROR_KIND_NOT_FOUND);
        assert_int_equal(proxy_errno_kind(-EACCES), ERROR_KIND_PATH_DENIED);
        assert_int_equal(proxy_errno_kind(-EIO), ERROR_KIND_IO_ERROR);
}

static void test_git_component(void **state) {
        assert_true(proxy_path_has_git_component(".git"));
        assert_true(proxy_path_has_git_component(".git/config"));
        assert_true(proxy_path_has_git_component("w/.git"));
        assert_true(proxy_path_has_git_component("a/b/.git/hooks/pre-commit"));
        assert_true(proxy_path_has_git_component("x/.GIT/config"));
        assert_false(proxy_path_has_git_component(".gitignore"));
        assert_false(proxy_path_has_git_component(".github/workflows/x.yml"));
        assert_false(proxy_path_has_git_component("a.git/x"));
        assert_false(proxy_path_has_git_component("x/.git2"));
        assert_false(proxy_path_has_git_component("."));
        assert_false(proxy_path_has_git_component(""));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_normalize),   cmocka_unit_test(test_dotdot),
                cmocka_unit_test(test_escapes),     cmocka_unit_test(test_split),
                cmocka_unit_test(test_errno_kinds), cmocka_unit_test(test_git_component),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
