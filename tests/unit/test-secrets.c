/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the secret store (src/lib/auth/secrets.c): modes, refusal, rotation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "secrets.h"

#define NOW 1764000000LL

static char *tmpdir(void) {
        char t[] = "/tmp/nucleus-test-secrets-XXXXXX";
        assert_non_null(mkdtemp(t));
        return xasprintf("%s/nested/secrets", t);
}

static void test_generate_and_load(void **state) {
        _cleanup_free_ char *d = tmpdir();
        struct stat st;
        char *err = NULL;
        mode_t old = umask(0);
        assert_int_equal(secret_generate(d, SECRET_NODE, false, NOW, &err), 0);
        assert_int_equal(secret_generate(d, SECRET_APPROVER, false, NOW, &err), 0);
        assert_int_equal(secret_generate(d, SECRET_AUDIT, false, NOW, &err), 0);
        umask(old);
        assert_int_equal(stat(d, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        const char *files[] = { "node.key",  "approver.key", "approver.pub",
                                "audit.key", "audit.pub",    "secrets-metadata.json" };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *p = xasprintf("%s/%s", d, files[i]);
                assert_int_equal(stat(p, &st), 0);
                assert_int_equal(st.st_mode & 07777, 0600);
        }
        uint8_t node[32], sk[64], pk[32], pk2[32];
        assert_int_equal(secret_load(d, SECRET_NODE, node, 32, &err), 0);
        assert_int_equal(secret_load(d, SECRET_APPROVER, sk, 64, &err), 0);
        assert_int_equal(secret_load_public(d, SECRET_APPROVER, pk, &err), 0);
        crypto_sign_ed25519_sk_to_pk(pk2, sk);
        assert_memory_equal(pk, pk2, 32);
        /* File text: 64 hex + newline */
        _cleanup_free_ char *p = xasprintf("%s/node.key", d);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, 65);
        /* No overwrite without asking. */
        assert_int_equal(secret_generate(d, SECRET_NODE, false, NOW, &err), -EEXIST);
        free(err);
        err = NULL;
        SecretMetadata m;
        assert_int_equal(secret_metadata_get(d, SECRET_NODE, &m), 0);
        assert_int_equal(m.version, 1);
        assert_int_equal(m.created, NOW);
        assert_int_equal(m.due, NOW + 90 * 86400);
        assert_int_equal(secret_metadata_days_left(&m, NOW), 90);
}

static void test_refuse_bad_perms(void **state) {
        _cleanup_free_ char *d = tmpdir();
        char *err = NULL;
        uint8_t node[32];
        assert_int_equal(secret_generate(d, SECRET_NODE, false, NOW, NULL), 0);
        _cleanup_free_ char *p = xasprintf("%s/node.key", d);
        assert_int_equal(chmod(p, 0640), 0);
        assert_int_equal(secret_load(d, SECRET_NODE, node, 32, &err), -EPERM);
        assert_non_null(strstr(err, "chmod 600"));
        free(err);
        err = NULL;
        assert_int_equal(chmod(p, 0600), 0);
        assert_int_equal(secret_load(d, SECRET_NODE, node, 32, NULL), 0);
        /* symlink refused */
        _cleanup_free_ char *l = xasprintf("%s/link.key", d);
        assert_int_equal(symlink(p, l), 0);
        assert_int_equal(secret_load_file(l, node, 32, true, &err), -ELOOP);
        free(err);
        err = NULL;
        /* garbage refused */
        _cleanup_free_ char *g = xasprintf("%s/garbage.key", d);
        assert_int_equal(secret_write_new(g, "xyz\n", 4), 0);
        assert_int_equal(secret_load_file(g, node, 32, true, &err), -EINVAL);
        free(err);
        /* existing file not clobbered by write_new */
        assert_int_equal(secret_write_new(g, "abc\n", 4), -EEXIST);
        /* public key: world-readable ok, world-writable not */
        assert_int_equal(secret_generate(d, SECRET_AUDIT, false, NOW, NULL), 0);
        _cleanup_free_ char *pub = xasprintf("%s/audit.pub", d);
        uint8_t pk[32];
        assert_int_equal(chmod(pub, 0644), 0);
        assert_int_equal(secret_load_public(d, SECRET_AUDIT, pk, NULL), 0);
        assert_int_equal(chmod(pub, 0666), 0);
        assert_int_equal(secret_load_public(d, SECRET_AUDIT, pk, NULL), -EPERM);
        /* dir with group access refused */
        assert_int_equal(chmod(d, 0750), 0);
        err = NULL;
        assert_int_equal(secret_dir_ensure(d, &err), -EPERM);
        assert_non_null(strstr(err, "chmod 700"));
        free(err);
}

static void test_rotate(void **state) {
        _cleanup_free_ char *d = tmpdir();
        uint8_t a[32], b[32];
        SecretMetadata m;
        assert_int_equal(secret_generate(d, SECRET_NODE, false, NOW, NULL), 0);
        assert_int_equal(secret_load(d, SECRET_NODE, a, 32, NULL), 0);
        assert_int_equal(secret_rotate(d, SECRET_NODE, NOW + 100 * 86400, NULL), 0);
        assert_int_equal(secret_load(d, SECRET_NODE, b, 32, NULL), 0);
        assert_memory_not_equal(a, b, 32);
        assert_int_equal(secret_metadata_get(d, SECRET_NODE, &m), 0);
        assert_int_equal(m.version, 2);
        assert_int_equal(m.created, NOW + 100 * 86400);
        _cleanup_free_ char *p = xasprintf("%s/node.key", d);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        /* other kinds' metadata untouched / absent */
        assert_int_equal(secret_metadata_get(d, SECRET_AUDIT, &m), -ENOENT);
        /* overdue */
        assert_int_equal(secret_metadata_get(d, SECRET_NODE, &m), 0);
        assert_true(secret_metadata_days_left(&m, NOW + 200 * 86400) < 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_generate_and_load),
                cmocka_unit_test(test_refuse_bad_perms),
                cmocka_unit_test(test_rotate),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        if (sodium_init() < 0)
                return 77;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
