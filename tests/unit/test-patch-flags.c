/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for src/lib/patch: the catalogue matcher (every ecosystem, case and Unicode
 * variants), flags computed from real git patches, and host symlink aliases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "patch-flags.h"
#include "string-util.h"

static void expect_group(const char *path, const char *group) {
        const PatchFlagRule *r = patch_flag_match(path);
        if (!group) {
                if (r)
                        fail_msg("'%s' matched '%s' (%s), expected no match", path, r->glob, r->group);
                return;
        }
        if (!r)
                fail_msg("'%s' matched nothing, expected group '%s'", path, group);
        if (!streq(r->group, group))
                fail_msg("'%s' matched group '%s' ('%s'), expected '%s'", path, r->group, r->glob, group);
}

/* At least one real path of every ecosystem the catalogue covers, at the root and nested. */
static void test_ecosystems(void **state) {
        static const char *const cases[][2] = {
                { ".git/hooks/pre-commit", "git" },
                { "vendor/lib/.git", "git" },
                { ".gitattributes", "git" },
                { ".husky/pre-push", "git hook managers" },
                { "lefthook.yml", "git hook managers" },
                { ".pre-commit-config.yaml", "git hook managers" },
                { ".github/workflows/release.yml", "ci" },
                { ".gitlab-ci.yml", "ci" },
                { "Jenkinsfile", "ci" },
                { "CODEOWNERS", "review" },
                { ".github/CODEOWNERS", "review" },
                { "Makefile", "make and autotools" },
                { "src/rules.mk", "make and autotools" },
                { "CMakeLists.txt", "cmake" },
                { "cmake/toolchain.cmake", "cmake" },
                { "meson.build", "meson" },
                { "subprojects/zlib.wrap", "meson" },
                { "BUILD.bazel", "bazel" },
                { "tools/defs.bzl", "bazel" },
                { "MODULE.bazel", "bazel" },
                { ".bazelrc", "bazel" },
                { "app/build.gradle.kts", "gradle" },
                { "settings.gradle", "gradle" },
                { "gradle/wrapper/gradle-wrapper.properties", "gradle" },
                { "pom.xml", "maven and jvm" },
                { ".mvn/extensions.xml", "maven and jvm" },
                { "build.sbt", "maven and jvm" },
                { "Rakefile", "ruby" },
                { "lib/tasks/db.rake", "ruby" },
                { ".irbrc", "ruby" },
                { "tox.ini", "python" },
                { "noxfile.py", "python" },
                { "tests/conftest.py", "python" },
                { "sitecustomize.py", "python" },
                { "lib/python3/site-packages/evil.pth", "python" },
                { "package.json", "javascript" },
                { "deno.json", "javascript" },
                { "bunfig.toml", "javascript" },
                { "vite.config.ts", "javascript" },
                { ".eslintrc.cjs", "javascript linters and test runners" },
                { "eslint.config.mjs", "javascript linters and test runners" },
                { "jest.config.js", "javascript linters and test runners" },
                { "vitest.config.ts", "javascript linters and test runners" },
                { "build.rs", "rust and go" },
                { "crates/x/.cargo/config.toml", "rust and go" },
                { "go.mod", "rust and go" },
                { "Directory.Build.targets", "dotnet" },
                { "src/App/App.csproj", "dotnet" },
                { "NuGet.Config", "dotnet" },
                { "composer.json", "php" },
                { "phpunit.xml.dist", "php" },
                { "mix.exs", "other languages" },
                { "Package.swift", "other languages" },
                { "build.zig", "other languages" },
                { "Makefile.PL", "other languages" },
                { "infra/main.tf", "infrastructure" },
                { "Vagrantfile", "infrastructure" },
                { "flake.nix", "nix and environment managers" },
                { "justfile", "nix and environment managers" },
                { "Taskfile.yml", "nix and environment managers" },
                { "mise.toml", "nix and environment managers" },
                { ".envrc", "nix and environment managers" },
                { "Dockerfile", "containers" },
                { "docker/Dockerfile.dev", "containers" },
                { "api.Dockerfile", "containers" },
                { ".devcontainer/devcontainer.json", "containers" },
                { ".idea/workspace.xml", "editors and ides" },
                { ".zed/tasks.json", "editors and ides" },
                { ".vscode/tasks.json", "editors and ides" },
                { ".dir-locals.el", "editors and ides" },
                { ".exrc", "editors and ides" },
                { ".nvim.lua", "editors and ides" },
                { ".gdbinit", "debuggers and interactive tools" },
                { ".bashrc", "shells" },
                { "CLAUDE.md", "coding agents" },
                { "AGENTS.md", "coding agents" },
                { "pkg/AGENTS.md", "coding agents" },
                { "GEMINI.md", "coding agents" },
                { ".cursor/rules/x.mdc", "coding agents" },
                { ".clinerules", "coding agents" },
                { ".roo/rules/a.md", "coding agents" },
                { ".kiro/steering/a.md", "coding agents" },
                { ".continue/config.yaml", "coding agents" },
                { ".github/instructions/go.instructions.md", "coding agents" },
                { ".github/prompts/release.prompt.md", "coding agents" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                expect_group(cases[i][0], cases[i][1]);
        expect_group("src/main.c", NULL);
        expect_group("README.md", NULL);
        expect_group("docs/build-notes.txt", NULL);
        expect_group("build/output.o", NULL);
        expect_group("makefile.txt", NULL);
}

/* Variants that are the same file on a case-insensitive or normalizing file system. */
static void test_variants(void **state) {
        expect_group(".GITHUB/workflows/x.yml", "ci");
        expect_group("MAKEFILE", "make and autotools");
        expect_group("claude.MD", "coding agents");
        expect_group(".Git\xe2\x80\x8c/config", "git");              /* ZWNJ, HFS+ ignores it */
        expect_group(".g\xef\xbb\xbfit/hooks/post-checkout", "git"); /* BOM */
        expect_group(
                "Make\xc2\xad"
                "file",
                "make and autotools"); /* soft hyphen */
        expect_group(
                "\xef\xbc\xad"
                "akefile",
                "make and autotools");                          /* fullwidth M */
        expect_group("Makefile.", "make and autotools");        /* NTFS trailing dot */
        expect_group("Makefile ", "make and autotools");        /* NTFS trailing space */
        expect_group(".git::$INDEX_ALLOCATION/hooks/x", "git"); /* NTFS stream */
        expect_group("DOCKERFILE", "containers");
        /* NFC and NFD spellings fold to the same string. */
        _cleanup_free_ char *a = patch_path_fold("caf\xc3\xa9/X"), *b = patch_path_fold("cafe\xcc\x81/x");
        assert_string_equal(a, b);
        _cleanup_free_ char *dots = patch_path_fold("a/../b/.");
        assert_string_equal(dots, "a/../b/.");
}

/* A patch made by `git diff --cached --binary --full-index` (rename into CI, a binary, a new
 * script, a mode-only change, a symlink retarget, an ELF, a case variant). */
static const char patch_text[] = "diff --git a/ci.yml b/.github/WORKFLOWS/ci.yml\n"
                                 "similarity index 100%\n"
                                 "rename from ci.yml\n"
                                 "rename to .github/WORKFLOWS/ci.yml\n"
                                 "diff --git a/blob.bin b/blob.bin\n"
                                 "new file mode 100644\n"
                                 "index "
                                 "0000000000000000000000000000000000000000.."
                                 "d5d0b8b4c4c9e936890870f6799cfbb5ba984470\n"
                                 "GIT binary patch\n"
                                 "literal 3\n"
                                 "Kcmb<ms0083<N)#j\n"
                                 "\n"
                                 "literal 0\n"
                                 "HcmV?d00001\n"
                                 "\n"
                                 "diff --git a/new.sh b/new.sh\n"
                                 "new file mode 100644\n"
                                 "index "
                                 "0000000000000000000000000000000000000000.."
                                 "5aabb41a7c0a2c83df45c6656ddaa8b2ba774786\n"
                                 "--- /dev/null\n"
                                 "+++ b/new.sh\n"
                                 "@@ -0,0 +1,2 @@\n"
                                 "+#!/bin/sh\n"
                                 "+ls\n"
                                 "diff --git a/run.sh b/run.sh\n"
                                 "old mode 100644\n"
                                 "new mode 100755\n"
                                 "diff --git a/tgt b/tgt\n"
                                 "index "
                                 "2e65efe2a145dda7ee51d1741299f848e5bf752e.."
                                 "63d8dbd40c23542e740659a7168a0ce3138ea748 120000\n"
                                 "--- a/tgt\n"
                                 "+++ b/tgt\n"
                                 "@@ -1 +1 @@\n"
                                 "-a\n"
                                 "\\ No newline at end of file\n"
                                 "+b\n"
                                 "\\ No newline at end of file\n"
                                 "diff --git a/notes.txt b/notes.txt\n"
                                 "index "
                                 "7898192261aa4ffc6d7b7d9d15e3e4e4ac3f4b8a.."
                                 "6178079822f8d7e1a0bd8cc8e00e1e0b5d6ee4f5 100644\n"
                                 "--- a/notes.txt\n"
                                 "+++ b/notes.txt\n"
                                 "@@ -1 +1,2 @@\n"
                                 " a\n"
                                 "+b\n";

static bool has_flag(json_t *flags, const char *path, const char *reason) {
        size_t i;
        json_t *v;
        json_array_foreach(flags, i, v) {
                if (streq_ptr(json_string_value(json_object_get(v, "path")), path) &&
                    streq_ptr(json_string_value(json_object_get(v, "reason")), reason))
                        return true;
        }
        return false;
}

static void test_compute(void **state) {
        PatchSummary s = {};
        _cleanup_free_ char *err = NULL;
        int r = patch_flags_compute(patch_text, strlen(patch_text), &s, &err);
        if (r < 0)
                fail_msg("compute: %s", err ?: strerror(-r));
        assert_true(has_flag(s.flags, ".github/WORKFLOWS/ci.yml", "ci"));
        assert_true(has_flag(s.flags, "blob.bin", "binary"));
        assert_true(has_flag(s.flags, "new.sh", "script"));
        assert_true(has_flag(s.flags, "run.sh", "executable"));
        assert_true(has_flag(s.flags, "tgt", "symlink"));
        assert_false(has_flag(s.flags, "notes.txt", "script"));
        assert_int_equal(json_array_size(s.flags), 5);
        assert_true(strv_contains(s.paths, "ci.yml"));
        assert_true(strv_contains(s.paths, "notes.txt"));
        assert_int_equal(strv_length(s.paths), 7);
        patch_summary_done(&s);

        /* Renaming a flagged file away, and deleting one, are flagged under the old name. */
        static const char away[] = "diff --git a/Makefile b/old.txt\n"
                                   "similarity index 100%\n"
                                   "rename from Makefile\n"
                                   "rename to old.txt\n"
                                   "diff --git a/.github/workflows/check.yml b/.github/workflows/check.yml\n"
                                   "deleted file mode 100644\n"
                                   "index "
                                   "587be6b4c3f93f93c489c0111bba5596147a26cb.."
                                   "0000000000000000000000000000000000000000\n"
                                   "--- a/.github/workflows/check.yml\n"
                                   "+++ /dev/null\n"
                                   "@@ -1 +0,0 @@\n"
                                   "-x\n";
        r = patch_flags_compute(away, strlen(away), &s, &err);
        assert_int_equal(r, 0);
        assert_true(has_flag(s.flags, "Makefile", "make and autotools"));
        assert_true(has_flag(s.flags, ".github/workflows/check.yml", "ci"));
        patch_summary_done(&s);

        /* Empty: nothing flagged. Garbage git cannot read: an error, never "no flags". */
        assert_int_equal(patch_flags_compute("", 0, &s, &err), 0);
        assert_int_equal(json_array_size(s.flags), 0);
        patch_summary_done(&s);
        static const char bad[] = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,9 +1,9 @@\n+oops\n";
        err = mfree(err);
        assert_int_equal(patch_flags_compute(bad, strlen(bad), &s, &err), -EBADMSG);
        assert_non_null(err);
        /* A "diff --git" header git ignores (no change follows it): the two readings disagree. */
        static const char hidden[] = "diff --git a/a b/a\n"
                                     "new file mode 100644\n"
                                     "index 0000000..7898192\n"
                                     "--- /dev/null\n"
                                     "+++ b/a\n"
                                     "@@ -0,0 +1 @@\n"
                                     "+a\n"
                                     "diff --git a/Makefile b/Makefile\n";
        err = mfree(err);
        assert_int_equal(patch_flags_compute(hidden, strlen(hidden), &s, &err), -EBADMSG);
}

static void test_drop_new_binaries(void **state) {
        _cleanup_free_ char *kept = NULL, *err = NULL;
        _cleanup_strv_free_ char **dropped = NULL;
        size_t kn = 0;
        patch_drop_new_binaries(patch_text, strlen(patch_text), &kept, &kn, &dropped);
        assert_int_equal(strv_length(dropped), 1);
        assert_string_equal(dropped[0], "blob.bin");
        assert_null(strstr(kept, "blob.bin"));
        assert_int_equal(
                kn,
                strlen(patch_text) -
                        (strstr(patch_text, "diff --git a/new.sh") -
                         strstr(patch_text, "diff --git a/blob.bin")));
        PatchSummary s = {};
        assert_int_equal(patch_flags_compute(kept, kn, &s, &err), 0);
        assert_int_equal(strv_length(s.paths), 6);
        assert_true(has_flag(s.flags, "tgt", "symlink"));
        patch_summary_done(&s);
        /* A changed binary that was already tracked stays: it is the project's own. */
        static const char changed[] = "diff --git a/logo.png b/logo.png\n"
                                      "index 1111111..2222222 100644\n"
                                      "GIT binary patch\n"
                                      "literal 3\n"
                                      "Kcmb<ms0083<N)#j\n"
                                      "\n";
        _cleanup_free_ char *k2 = NULL;
        _cleanup_strv_free_ char **d2 = NULL;
        patch_drop_new_binaries(changed, strlen(changed), &k2, &kn, &d2);
        assert_null(d2);
        assert_string_equal(k2, changed);
}

/* ".idea -> cfg" exists on the host; a patch to cfg/x is a change to .idea/x. */
static void test_host_aliases(void **state) {
        char dir[] = "/tmp/test-patch-flags-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *cfg = xasprintf("%s/cfg", dir), *idea = xasprintf("%s/.idea", dir),
                            *sub = xasprintf("%s/sub", dir), *lnk = xasprintf("%s/sub/.VSCode", dir),
                            *out = xasprintf("%s/out", dir);
        assert_int_equal(mkdir(cfg, 0755), 0);
        assert_int_equal(mkdir(sub, 0755), 0);
        assert_int_equal(symlink("cfg", idea), 0);
        assert_int_equal(symlink("../cfg", lnk), 0);
        assert_int_equal(symlink("/etc", out), 0); /* leaves the tree: ignored */
        char *paths[] = { (char *) "cfg/settings.json", (char *) "src/a.c", (char *) ".idea/x", NULL };
        json_t *flags = json_array();
        assert_int_equal(patch_flags_host_aliases(dir, paths, flags), 0);
        assert_true(has_flag(flags, "cfg/settings.json", "symlinked"));
        assert_false(has_flag(flags, "src/a.c", "symlinked"));
        assert_true(has_flag(flags, ".idea/x", "symlinked")); /* passes through a host link */
        size_t i;
        json_t *v;
        int seen_vscode = 0;
        json_array_foreach(flags, i, v) {
                const char *why = json_string_value(json_object_get(v, "why"));
                if (strstr(why, "'.idea/settings.json'"))
                        seen_vscode++;
        }
        assert_int_equal(seen_vscode, 1);
        json_decref(flags);
        (void) unlink(idea), (void) unlink(lnk), (void) unlink(out);
        (void) rmdir(sub), (void) rmdir(cfg), (void) rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ecosystems),   cmocka_unit_test(test_variants),
                cmocka_unit_test(test_compute),      cmocka_unit_test(test_drop_new_binaries),
                cmocka_unit_test(test_host_aliases),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
