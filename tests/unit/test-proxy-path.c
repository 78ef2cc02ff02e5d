/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the proxy's path normalization (src/guest/proxy/proxy-path.c):
 * workspace-relative results, absolute paths only under the root, prefix confusion, repeated
 * slashes, '..' resolved by the kernel (through symlinks), never lexically; mkdir -p beneath a
 * root with a symlink component pointing outside or inside it, followed or not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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

/* mkdir -p beneath a root, in a tree of its own: ws/ (the root) holds a directory "in" and the
 * links in_link -> in, in/up -> ../in2 (beneath the root, but not beneath "in"), abs_out ->
 * <outside> and rel_out -> ../outside; outside/ is a sibling of the root. */
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static bool exists_at(int dfd, const char *rel) {
        struct stat st;
        return fstatat(dfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void test_mkdir_beneath(void **state) {
        char top[] = "/tmp/test-proxy-mkdir-XXXXXX", buf[PATH_MAX];
        assert_non_null(mkdtemp(top));
        int tfd = open(top, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(tfd >= 0);
        assert_int_equal(mkdirat(tfd, "ws", 0755), 0);
        assert_int_equal(mkdirat(tfd, "outside", 0755), 0);
        int ws = openat(tfd, "ws", O_PATH | O_DIRECTORY | O_CLOEXEC);
        int out = openat(tfd, "outside", O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(ws >= 0 && out >= 0);
        assert_int_equal(mkdirat(ws, "in", 0755), 0);
        assert_int_equal(mkdirat(ws, "in2", 0755), 0);
        assert_int_equal(symlinkat("in", ws, "in_link"), 0);
        assert_int_equal(symlinkat("../in2", ws, "in/up"), 0);
        snprintf(buf, sizeof buf, "%s/outside", top);
        assert_int_equal(symlinkat(buf, ws, "abs_out"), 0);
        assert_int_equal(symlinkat("../outside", ws, "rel_out"), 0);
        assert_int_equal(close(openat(ws, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600)), 0);

        char real[PATH_MAX];
        snprintf(buf, sizeof buf, "%s/ws", top);
        assert_non_null(realpath(buf, real));
        Proxy p = {
                .workspace_path = (char *) "/workspace",
                .workspace_fd = ws,
                .workspace_real = real,
                .have_proc_fd = true,
                .agent_uid = getuid(),
                .agent_gid = getgid(),
        };
        const ProxyMkdirFlags follow = PROXY_MKDIR_FOLLOW_BENEATH | PROXY_MKDIR_AGENT_OWNED;
        mode_t um = umask(022);
        (void) umask(um);
        int fd;

        /* Plain creation, nested, and again (exists: the same directory). */
        fd = proxy_mkdir_beneath(&p, -1, "n1/n2/n3", 0750, follow);
        assert_true(fd >= 0);
        close(fd);
        struct stat st;
        assert_int_equal(fstatat(ws, "n1/n2/n3", &st, 0), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0750 & ~um);
        assert_int_equal(st.st_uid, getuid());
        fd = proxy_mkdir_beneath(&p, -1, "n1/n2/n3", 0750, 0);
        assert_true(fd >= 0);
        close(fd);
        fd = proxy_mkdir_beneath(&p, -1, ".", 0750, 0);
        assert_true(fd >= 0);
        close(fd);

        /* A link pointing outside the root is refused whether links are followed or not, and
         * nothing is created outside. */
        for (int i = 0; i < 2; i++) {
                ProxyMkdirFlags f = i ? follow : PROXY_MKDIR_AGENT_OWNED;
                fd = proxy_mkdir_beneath(&p, -1, "abs_out/x", 0755, f);
                assert_true(fd == -EXDEV || fd == -ELOOP);
                fd = proxy_mkdir_beneath(&p, -1, "rel_out/x/y", 0755, f);
                assert_true(fd == -EXDEV || fd == -ELOOP);
                assert_false(exists_at(out, "x"));
        }
        /* Without PROXY_MKDIR_FOLLOW_BENEATH a link inside the root is refused too, and
         * nothing is created through it. */
        assert_int_equal(proxy_mkdir_beneath(&p, -1, "in_link/x", 0755, PROXY_MKDIR_AGENT_OWNED), -ELOOP);
        assert_int_equal(proxy_mkdir_beneath(&p, -1, "in_link", 0755, 0), -ELOOP);
        assert_int_equal(proxy_mkdir_beneath(&p, -1, "in/up/x", 0755, 0), -ELOOP);
        assert_false(exists_at(ws, "in/x"));
        assert_false(exists_at(ws, "in2/x"));
        /* With it, a link inside the root is followed: the directory is made at the target,
         * and "beneath" means beneath the root, not beneath the link's own directory. */
        fd = proxy_mkdir_beneath(&p, -1, "in_link/x/y", 0755, follow);
        assert_true(fd >= 0);
        close(fd);
        assert_true(exists_at(ws, "in/x/y"));
        fd = proxy_mkdir_beneath(&p, -1, "in/up/z", 0755, follow);
        assert_true(fd >= 0);
        close(fd);
        assert_true(exists_at(ws, "in2/z"));
        /* A component that is a file. */
        assert_int_equal(proxy_mkdir_beneath(&p, -1, "file/x", 0755, follow), -ENOTDIR);

        /* Another root than the workspace (the export's scratch tree): beneath that root. */
        fd = proxy_mkdir_beneath(&p, out, "s1/s2", 0700, 0);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(fstatat(out, "s1/s2", &st, 0), 0);
        assert_int_equal(st.st_mode & 0777, 0700 & ~um);
        assert_false(exists_at(ws, "s1"));

        close(ws);
        close(out);
        close(tfd);
        assert_int_equal(nftw(top, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_normalize),     cmocka_unit_test(test_dotdot),
                cmocka_unit_test(test_escapes),       cmocka_unit_test(test_split),
                cmocka_unit_test(test_errno_kinds),   cmocka_unit_test(test_git_component),
                cmocka_unit_test(test_mkdir_beneath),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
