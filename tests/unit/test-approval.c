/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for approval tokens and the registry (src/lib/auth/approval.c): a
 * token signed by another key, replayed or expired, or used for another operation, argv or pod. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "alloc-util.h"
#include "approval.h"
#include "json-util.h"

#define NOW 1764000000LL

static uint8_t pk[32], sk[64], pk2[32], sk2[64];

static ApprovalToken base(void) {
        ApprovalToken t = { .uses = 1, .expires_at = NOW + 300 };
        strcpy(t.pod, "pod-1");
        strcpy(t.operation, "git_push");
        return t;
}

static char *mint(const uint8_t *key, const ApprovalToken *t) {
        char *s = NULL;
        assert_int_equal(approval_token_mint(key, t, &s, NULL), 0);
        return s;
}

static void test_roundtrip(void **state) {
        ApprovalToken t = base(), got;
        _cleanup_json_ json_t *argv = json_pack("[ssss]", "git", "push", "origin", "main");
        t.has_args = true;
        assert_int_equal(approval_args_sha256(argv, t.args_sha256), 0);
        _cleanup_free_ char *s = mint(sk, &t);
        assert_non_null(strstr(s, "nat1."));
        assert_true(strlen(s) < APPROVAL_TOKEN_MAX);
        assert_int_equal(approval_token_verify(s, pk, &got, NULL), APPROVAL_OK);
        assert_string_equal(got.pod, "pod-1");
        assert_string_equal(got.operation, "git_push");
        assert_true(got.has_args);
        assert_string_equal(got.args_sha256, t.args_sha256);
        assert_int_equal(got.uses, 1);
        assert_int_equal(got.expires_at, NOW + 300);
        assert_int_equal(strlen(got.nonce), 32);
        /* argv digest is of the compact canonical JSON */
        uint8_t d[32];
        char h[65];
        const char *txt = "[\"git\",\"push\",\"origin\",\"main\"]";
        crypto_hash_sha256(d, (const uint8_t *) txt, strlen(txt));
        sodium_bin2hex(h, sizeof(h), d, 32);
        assert_string_equal(h, t.args_sha256);
}

static void test_wrong_key(void **state) {
        /* A token signed by a key other than the configured approver key. */
        ApprovalToken t = base();
        _cleanup_free_ char *s = mint(sk2, &t), *err = NULL;
        assert_int_equal(approval_token_verify(s, pk, NULL, &err), APPROVAL_BAD_SIGNATURE);
        assert_non_null(err);
}

static void test_tampered(void **state) {
        ApprovalToken t = base();
        _cleanup_free_ char *s = mint(sk, &t);
        /* Flip one character of the payload part. */
        char *p = xstrdup(s);
        p[10] = p[10] == 'A' ? 'B' : 'A';
        assert_int_not_equal(approval_token_verify(p, pk, NULL, NULL), APPROVAL_OK);
        free(p);
        const char *bad[] = {
                "", "nat1.", "nat1..", "nat2.AAAA.BBBB", "nat1.AAAA", "nat1.AAAA.BBBB.CCCC", "nat1.!!!!.AAAA", "nat1.e30.AAAA"
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(approval_token_verify(bad[i], pk, NULL, NULL), APPROVAL_MALFORMED);
        char *huge = xmalloc(APPROVAL_TOKEN_MAX + 10);
        memset(huge, 'A', APPROVAL_TOKEN_MAX + 9);
        memcpy(huge, "nat1.", 5);
        huge[APPROVAL_TOKEN_MAX + 9] = 0;
        assert_int_equal(approval_token_verify(huge, pk, NULL, NULL), APPROVAL_MALFORMED);
        free(huge);
}

/* A token whose payload is validly signed but not canonical, or has extra fields. */
static char *sign_raw(const char *payload) {
        size_t b = sodium_base64_ENCODED_LEN(strlen(payload), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        char *enc = xmalloc(b);
        sodium_bin2base64(
                enc, b, (const uint8_t *) payload, strlen(payload), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        _cleanup_free_ char *head = xasprintf("nat1.%s", enc);
        free(enc);
        uint8_t sig[64];
        crypto_sign_detached(sig, NULL, (const uint8_t *) head, strlen(head), sk);
        char s64[100];
        sodium_bin2base64(s64, sizeof(s64), sig, 64, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        return xasprintf("%s.%s", head, s64);
}

static void test_strict_payload(void **state) {
        const char *payloads[] = {
                "{\"v\":1,\"pod\":\"p\",\"op\":\"x\",\"uses\":1,\"exp\":1,\"nonce\":"
                "\"00112233445566778899aabbccddeeff\"}",
                "{\"evil\":1,\"exp\":1,\"nonce\":\"00112233445566778899aabbccddeeff\",\"op\":\"x\",\"pod\":"
                "\"p\",\"uses\":1,\"v\":1}",
                "{\"exp\":1,\"nonce\":\"00112233445566778899aabbccddeeff\",\"op\":\"x\",\"pod\":\"p\","
                "\"uses\":0,\"v\":1}",
                "{\"exp\":1,\"nonce\":\"00112233445566778899aabbccddeeff\",\"op\":\"x\",\"pod\":\"p\","
                "\"uses\":1,\"v\":2}",
                "{\"exp\":1,\"nonce\":\"0011\",\"op\":\"x\",\"pod\":\"p\",\"uses\":1,\"v\":1}",
                "{\"exp\":1,\"nonce\":\"00112233445566778899aabbccddeeff\",\"op\":\"X "
                "Y\",\"pod\":\"p\",\"uses\":1,\"v\":1}",
                "{\"exp\":1,\"nonce\":\"00112233445566778899aabbccddeeff\",\"op\":\"x\",\"pod\":\"p\","
                "\"pod\":\"q\",\"uses\":1,\"v\":1}",
                "[]",
        };
        for (size_t i = 0; i < ELEMENTSOF(payloads); i++) {
                _cleanup_free_ char *s = sign_raw(payloads[i]);
                assert_int_equal(approval_token_verify(s, pk, NULL, NULL), APPROVAL_MALFORMED);
        }
        _cleanup_free_ char *ok = sign_raw("{\"exp\":1,\"nonce\":\"00112233445566778899aabbccddeeff\","
                                           "\"op\":\"x\",\"pod\":\"p\",\"uses\":1,\"v\":1}");
        assert_int_equal(approval_token_verify(ok, pk, NULL, NULL), APPROVAL_OK);
}

static void test_registry(void **state) {
        ApprovalRegistry *r = NULL;
        ApprovalToken t = base();
        char h[65], h2[65];
        _cleanup_json_ json_t *a1 = json_pack("[ssss]", "git", "push", "origin", "main");
        _cleanup_json_ json_t *a2 = json_pack("[sssss]", "git", "push", "--force", "origin", "main");
        approval_args_sha256(a1, h);
        approval_args_sha256(a2, h2);
        t.has_args = true;
        strcpy(t.args_sha256, h);
        assert_int_equal(approval_registry_new(0, &r), 0);
        _cleanup_free_ char *s = mint(sk, &t);

        /* A token for git_push used for run_bash; bound to one argv used for another;
         * another pod. None of these consume it. */
        assert_int_equal(
                approval_registry_use(r, s, pk, "pod-1", "run_bash", h, NOW, NULL), APPROVAL_WRONG_OPERATION);
        assert_int_equal(
                approval_registry_use(r, s, pk, "pod-1", "git_push", h2, NOW, NULL), APPROVAL_WRONG_ARGS);
        assert_int_equal(
                approval_registry_use(r, s, pk, "pod-1", "git_push", NULL, NOW, NULL), APPROVAL_WRONG_ARGS);
        assert_int_equal(
                approval_registry_use(r, s, pk, "pod-2", "git_push", h, NOW, NULL), APPROVAL_WRONG_POD);
        /* Signed by another key, through the registry. */
        assert_int_equal(
                approval_registry_use(r, s, pk2, "pod-1", "git_push", h, NOW, NULL), APPROVAL_BAD_SIGNATURE);
        /* Valid once. */
        assert_int_equal(approval_registry_use(r, s, pk, "pod-1", "git_push", h, NOW, NULL), APPROVAL_OK);
        /* Replayed after use. */
        char *err = NULL;
        assert_int_equal(
                approval_registry_use(r, s, pk, "pod-1", "git_push", h, NOW + 1, &err), APPROVAL_EXHAUSTED);
        assert_non_null(strstr(err, "already used"));
        free(err);

        /* An expired token. */
        ApprovalToken e = base();
        e.expires_at = NOW;
        _cleanup_free_ char *se = mint(sk, &e);
        assert_int_equal(
                approval_registry_use(r, se, pk, "pod-1", "git_push", NULL, NOW, NULL), APPROVAL_EXPIRED);

        /* uses = 3: three times then exhausted. */
        ApprovalToken m = base();
        m.uses = 3;
        char nonce[33];
        _cleanup_free_ char *sm = NULL;
        assert_int_equal(approval_token_mint(sk, &m, &sm, nonce), 0);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(
                        approval_registry_use(r, sm, pk, "pod-1", "git_push", NULL, NOW, NULL), APPROVAL_OK);
                assert_int_equal(approval_registry_remaining(r, nonce, NOW), 2 - i);
        }
        assert_int_equal(
                approval_registry_use(r, sm, pk, "pod-1", "git_push", NULL, NOW, NULL), APPROVAL_EXHAUSTED);

        /* Too long a lifetime. */
        ApprovalToken l = base();
        l.expires_at = NOW + APPROVAL_MAX_TTL_SEC + 10;
        _cleanup_free_ char *sl = mint(sk, &l);
        assert_int_equal(
                approval_registry_use(r, sl, pk, "pod-1", "git_push", NULL, NOW, NULL), APPROVAL_TTL_TOO_LONG);

        /* Mint refuses bad fields. */
        ApprovalToken b = base();
        b.uses = 0;
        char *x = NULL;
        assert_int_equal(approval_token_mint(sk, &b, &x, NULL), -EINVAL);
        b = base();
        strcpy(b.pod, "a/b");
        assert_int_equal(approval_token_mint(sk, &b, &x, NULL), -EINVAL);
        approval_registry_free(r);
}

static void test_registry_full(void **state) {
        ApprovalRegistry *r = NULL;
        assert_int_equal(approval_registry_new(2, &r), 0);
        for (int i = 0; i < 2; i++) {
                ApprovalToken t = base();
                _cleanup_free_ char *s = mint(sk, &t);
                assert_int_equal(
                        approval_registry_use(r, s, pk, "pod-1", "git_push", NULL, NOW, NULL), APPROVAL_OK);
        }
        ApprovalToken t = base();
        _cleanup_free_ char *s = mint(sk, &t);
        assert_int_equal(
                approval_registry_use(r, s, pk, "pod-1", "git_push", NULL, NOW, NULL), APPROVAL_REGISTRY_FULL);
        /* Once the earlier ones expire, space is reclaimed; t itself is then expired too. */
        ApprovalToken t2 = base();
        t2.expires_at = NOW + 1000;
        _cleanup_free_ char *s2 = mint(sk, &t2);
        assert_int_equal(
                approval_registry_use(r, s2, pk, "pod-1", "git_push", NULL, NOW + 400, NULL), APPROVAL_OK);
        approval_registry_free(r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_wrong_key),
                cmocka_unit_test(test_tampered),  cmocka_unit_test(test_strict_payload),
                cmocka_unit_test(test_registry),  cmocka_unit_test(test_registry_full),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        if (sodium_init() < 0)
                return 77;
        crypto_sign_keypair(pk, sk);
        crypto_sign_keypair(pk2, sk2);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
