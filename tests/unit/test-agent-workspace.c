/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for packing a run's workspace (src/agent/agent-workspace.c): file names are bytes.
 * Names that are not valid in the current locale (the C locale here) or not UTF-8 at all are
 * packed as they are, and read back byte for byte (pax hdrcharset=BINARY). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent-workspace.h"

static const char *const names[] = {
        "plain.txt",
        "caf\xc3\xa9.txt",       /* UTF-8, not valid in the C locale */
        "latin1-caf\xe9.txt",    /* ISO-8859-1: not UTF-8 at all */
        "bad-\xff\xfe-bytes",    /* never valid anywhere */
        "dir-\xe9/inner-\x80.c", /* in a directory whose name is not UTF-8 either */
};

static void test_names_are_bytes(void **state) {
        char dir[] = "/tmp/test-agent-ws-XXXXXX";
        assert_non_null(mkdtemp(dir));
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        assert_int_equal(mkdirat(dfd, "dir-\xe9", 0755), 0);
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
                int fd = openat(dfd, names[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, names[i], strlen(names[i])), (ssize_t) strlen(names[i]));
                close(fd);
        }
        assert_int_equal(symlinkat("latin1-caf\xe9.txt", dfd, "link-\xe9"), 0);

        AgentTar t = { .fd = -1 };
        char *err = NULL;
        int r = agent_workspace_tar(dir, NULL, NULL, &t, &err);
        if (r < 0)
                fail_msg("packing failed: %s", err ? err : "?");
        assert_false(t.from_git);
        assert_int_equal(t.n_files, sizeof names / sizeof names[0] + 1);

        /* Read it back without any locale conversion: every name and its content, as bytes. */
        struct archive *a = archive_read_new();
        archive_read_support_format_tar(a);
        assert_int_equal(lseek(t.fd, 0, SEEK_END), (off_t) t.size);
        assert_int_equal(lseek(t.fd, 0, SEEK_SET), 0);
        assert_int_equal(strlen(t.sha256), 64);
        assert_int_equal(archive_read_open_fd(a, t.fd, 65536), ARCHIVE_OK);
        struct archive_entry *e;
        size_t found = 0;
        bool link_found = false;
        while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
                const char *p = archive_entry_pathname(e);
                assert_non_null(p);
                if (strcmp(p, "link-\xe9") == 0) {
                        assert_string_equal(archive_entry_symlink(e), "latin1-caf\xe9.txt");
                        link_found = true;
                        continue;
                }
                for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
                        if (strcmp(p, names[i]) == 0) {
                                char buf[256] = "";
                                la_ssize_t n = archive_read_data(a, buf, sizeof buf - 1);
                                assert_int_equal(n, (la_ssize_t) strlen(names[i]));
                                assert_memory_equal(buf, names[i], (size_t) n);
                                found++;
                        }
        }
        archive_read_free(a);
        assert_int_equal(found, sizeof names / sizeof names[0]);
        assert_true(link_found);
        agent_tar_done(&t);
        free(err);

        (void) unlinkat(dfd, "link-\xe9", 0);
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
                (void) unlinkat(dfd, names[i], 0);
        (void) unlinkat(dfd, "dir-\xe9", AT_REMOVEDIR);
        close(dfd);
        (void) rmdir(dir);
}

static void sh(const char *dir, const char *cmd) {
        char buf[1024];
        (void) snprintf(
                buf,
                sizeof buf,
                "cd '%s' && GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 sh -c '%s' >/dev/null 2>&1",
                dir,
                cmd);
        assert_int_equal(system(buf), 0);
}

/* The history is built, not copied: the tar's .git holds the last N commits of the branch in
 * one pack, shallow beyond them, and a config with user.name/email only; nothing of the
 * user's .git (remote with a token, hooks, fsmonitor) is in it. */
static void test_history_by_construction(void **state) {
        if (access("/usr/bin/git", X_OK) != 0)
                skip();
        char dir[] = "/tmp/test-agent-hist-XXXXXX";
        assert_non_null(mkdtemp(dir));
        sh(dir,
           "git init -q -b trunk && git config user.name Ada && git config user.email ada@x.org && "
           "git config remote.origin.url https://u:SECRETTOKEN@example.org/r.git && "
           "git config core.fsmonitor /bin/false && mkdir -p .git/hooks && "
           "echo evil > .git/hooks/pre-commit && "
           "echo one > f && git add f && git commit -qm c1 && echo two > f && git commit -qam c2 && "
           "echo three > f && git commit -qam c3 && echo dirty > f");
        AgentTar t = { .fd = -1 };
        AgentTarOptions o = { .history = 2 };
        char *err = NULL;
        int r = agent_workspace_tar(dir, NULL, &o, &t, &err);
        if (r < 0)
                fail_msg("packing failed: %s", err ? err : "?");
        assert_true(t.from_git);
        assert_int_equal(t.n_commits, 2);
        assert_true(t.history_shallow);
        assert_string_equal(t.branch, "trunk");

        struct archive *a = archive_read_new();
        archive_read_support_format_tar(a);
        assert_int_equal(lseek(t.fd, 0, SEEK_SET), 0);
        assert_int_equal(archive_read_open_fd(a, t.fd, 65536), ARCHIVE_OK);
        struct archive_entry *e;
        bool head = false, shallow = false, pack = false, index = false, ref = false, config = false;
        while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
                const char *p = archive_entry_pathname(e);
                char buf[4096] = "";
                la_ssize_t n = archive_read_data(a, buf, sizeof buf - 1);
                if (n > 0)
                        assert_null(memmem(buf, (size_t) n, "SECRETTOKEN", 11));
                assert_null(strstr(p, "hooks"));
                if (strcmp(p, ".git/HEAD") == 0)
                        head = strcmp(buf, "ref: refs/heads/trunk\n") == 0;
                else if (strcmp(p, ".git/shallow") == 0)
                        shallow = true;
                else if (strcmp(p, ".git/index") == 0)
                        index = true;
                else if (strcmp(p, ".git/refs/heads/trunk") == 0)
                        ref = strlen(buf) == 41;
                else if (strcmp(p, ".git/config") == 0)
                        config = strcmp(buf, "[user]\n\tname = Ada\n\temail = ada@x.org\n") == 0;
                else if (strncmp(p, ".git/objects/pack/pack-", 23) == 0 && strstr(p, ".pack"))
                        pack = true;
                else if (strncmp(p, ".git/objects/pack/pack-", 23) == 0 && strstr(p, ".idx"))
                        continue;
                else if (strcmp(p, "f") == 0)
                        assert_string_equal(buf, "dirty\n");
                else if (strncmp(p, ".git", 4) == 0 && archive_entry_filetype(e) != AE_IFDIR)
                        fail_msg("unexpected entry %s", p);
        }
        archive_read_free(a);
        assert_true(head && shallow && pack && index && ref && config);
        agent_tar_done(&t);
        free(err);
        char rm[128];
        (void) snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
        assert_int_equal(system(rm), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names_are_bytes),
                cmocka_unit_test(test_history_by_construction),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
