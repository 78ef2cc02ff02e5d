/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for request signing (src/lib/auth/sign.c), including replays and
 * signatures moved to another request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc-util.h"
#include "sign.h"

static const uint8_t key[32] = { 1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };
#define NOW 1764000000LL

typedef struct Fixture {
        char ts[24];
        char nonce[40];
        char sig[65];
        AuthRequest req;
} Fixture;

static void make(
        Fixture *f, const char *method, const char *path, int64_t ts, const char *nonce, const char *body) {
        memset(f, 0, sizeof(*f));
        snprintf(f->ts, sizeof(f->ts), "%lld", (long long) ts);
        snprintf(f->nonce, sizeof(f->nonce), "%s", nonce);
        assert_int_equal(
                auth_sign_request(key, method, path, f->ts, f->nonce, "alice", body, strlen(body), f->sig), 0);
        f->req = (AuthRequest){ .method = method,
                                .path = path,
                                .timestamp = f->ts,
                                .nonce = f->nonce,
                                .actor = "alice",
                                .signature = f->sig,
                                .body = body,
                                .body_len = strlen(body) };
}

#define N1 "00112233445566778899aabbccddeeff"
#define N2 "ffeeddccbbaa99887766554433221100"

static void test_known_vector(void **state) {
        /* Independent computation of the documented string to sign. */
        char sig[65];
        const char *body = "{\"a\":1}";
        assert_int_equal(
                auth_sign_request(
                        key, "POST", "/v1/pods?x=1", "1764000000", N1, "alice", body, strlen(body), sig),
                0);
        uint8_t d[32], mac[32];
        char dh[65], want[65];
        crypto_hash_sha256(d, (const uint8_t *) body, strlen(body));
        sodium_bin2hex(dh, sizeof(dh), d, 32);
        _cleanup_free_ char *msg = xasprintf(
                "nucleus-v1\nPOST\n/v1/pods?x=1\n1764000000\n%s\nalice\n%s", N1, dh);
        crypto_auth_hmacsha256(mac, (const uint8_t *) msg, strlen(msg), key);
        sodium_bin2hex(want, sizeof(want), mac, 32);
        assert_string_equal(sig, want);
}

/* A scoped credential's id is the eighth signed line: the string, its check, and that a
 * signature cannot move between key ids or lose its id. */
static void test_key_id(void **state) {
        const char *kid = "pod-0b5c7e2a-1f3d-4c8e-9a6b-2d4f6e8a0c1e-0011223344556677";
        char sig[65], plain[65];
        assert_int_equal(
                auth_sign_request_key_id(
                        key, kid, "GET", "/v1/pods", "1764000000", N1, "alice", "", 0, NULL, sig),
                0);
        uint8_t d[32], mac[32];
        char dh[65], want[65];
        crypto_hash_sha256(d, (const uint8_t *) "", 0);
        sodium_bin2hex(dh, sizeof(dh), d, 32);
        _cleanup_free_ char *msg = xasprintf(
                "nucleus-v1\nGET\n/v1/pods\n1764000000\n%s\nalice\n%s\n%s", N1, dh, kid);
        crypto_auth_hmacsha256(mac, (const uint8_t *) msg, strlen(msg), key);
        sodium_bin2hex(want, sizeof(want), mac, 32);
        assert_string_equal(sig, want);
        /* Without a key id: the node-key form, identical to auth_sign_request. */
        assert_int_equal(
                auth_sign_request_key_id(
                        key, NULL, "GET", "/v1/pods", "1764000000", N1, "alice", "", 0, NULL, plain),
                0);
        assert_string_not_equal(sig, plain);

        AuthNonceCache *c = NULL;
        assert_int_equal(auth_nonce_cache_new(0, &c), 0);
        AuthRequest r = { .method = "GET",
                          .path = "/v1/pods",
                          .timestamp = "1764000000",
                          .nonce = N1,
                          .actor = "alice",
                          .signature = sig,
                          .body = "",
                          .body_len = 0,
                          .key_id = kid };
        /* Another key id, or none, with the same signature: refused. */
        r.key_id = "pod-0b5c7e2a-1f3d-4c8e-9a6b-2d4f6e8a0c1e-0011223344556678";
        assert_int_equal(auth_verify_request(key, &r, c, NOW, NULL), AUTH_VERIFY_BAD_SIGNATURE);
        r.key_id = NULL;
        assert_int_equal(auth_verify_request(key, &r, c, NOW, NULL), AUTH_VERIFY_BAD_SIGNATURE);
        r.key_id = "BAD KEY";
        assert_int_equal(auth_verify_request(key, &r, c, NOW, NULL), AUTH_VERIFY_BAD_REQUEST);
        r.key_id = kid;
        assert_int_equal(auth_verify_request(key, &r, c, NOW, NULL), AUTH_VERIFY_OK);
        auth_nonce_cache_free(c);

        assert_true(auth_key_id_is_valid(kid));
        assert_false(auth_key_id_is_valid("short"));
        assert_false(auth_key_id_is_valid("pod-UPPER-0011223344"));
        assert_false(auth_key_id_is_valid("pod-0b5c7e2a\n1f3d"));
        char long_id[AUTH_KEY_ID_MAX + 2];
        memset(long_id, 'a', sizeof long_id - 1);
        long_id[sizeof long_id - 1] = 0;
        assert_false(auth_key_id_is_valid(long_id));
        assert_int_equal(
                auth_sign_request_key_id(key, "x y z w v", "GET", "/", "1", N1, "a", "", 0, NULL, sig),
                -EINVAL);
}

static void test_ok_and_replay(void **state) {
        AuthNonceCache *c = NULL;
        Fixture f;
        assert_int_equal(auth_nonce_cache_new(0, &c), 0);
        make(&f, "POST", "/v1/pods", NOW, N1, "{}");
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_OK);
        /* The same request again (same nonce) is a replay. */
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW + 5, NULL), AUTH_VERIFY_REPLAY);
        /* Uppercase spelling of the same nonce is the same nonce. */
        Fixture g;
        make(&g, "POST", "/v1/pods", NOW, "00112233445566778899AABBCCDDEEFF", "{}");
        assert_int_equal(auth_verify_request(key, &g.req, c, NOW, NULL), AUTH_VERIFY_REPLAY);
        auth_nonce_cache_free(c);
}

static void test_old_timestamp(void **state) {
        AuthNonceCache *c = NULL;
        Fixture f;
        assert_int_equal(auth_nonce_cache_new(0, &c), 0);
        /* 5 minutes old, validly signed. */
        make(&f, "GET", "/v1/pods", NOW - 300, N1, "");
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_SKEW);
        make(&f, "GET", "/v1/pods", NOW + 61, N1, "");
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_SKEW);
        make(&f, "GET", "/v1/pods", NOW - 60, N1, "");
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_OK);
        auth_nonce_cache_free(c);
}

static void test_other_path_or_method(void **state) {
        AuthNonceCache *c = NULL;
        Fixture f;
        assert_int_equal(auth_nonce_cache_new(0, &c), 0);
        make(&f, "GET", "/v1/pods", NOW, N1, "");
        /* The same signature sent to another path, another method, another query, another body. */
        f.req.path = "/v1/pods/abc/cancel";
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_BAD_SIGNATURE);
        f.req.path = "/v1/pods";
        f.req.method = "POST";
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_BAD_SIGNATURE);
        f.req.method = "GET";
        f.req.path = "/v1/pods?all=1";
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_BAD_SIGNATURE);
        f.req.path = "/v1/pods";
        f.req.body = "x";
        f.req.body_len = 1;
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_BAD_SIGNATURE);
        f.req.body = "";
        f.req.body_len = 0;
        f.req.actor = "mallory";
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_BAD_SIGNATURE);
        f.req.actor = "alice";
        /* Failed attempts did not burn the nonce: the genuine request still passes once. */
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_OK);
        /* Wrong key. */
        uint8_t other[32] = {};
        Fixture g;
        make(&g, "GET", "/v1/pods", NOW, N2, "");
        assert_int_equal(auth_verify_request(other, &g.req, c, NOW, NULL), AUTH_VERIFY_BAD_SIGNATURE);
        auth_nonce_cache_free(c);
}

static void test_header_errors(void **state) {
        AuthNonceCache *c = NULL;
        Fixture f;
        const char *h = NULL;
        assert_int_equal(auth_nonce_cache_new(0, &c), 0);
        make(&f, "GET", "/v1/pods", NOW, N1, "");
        AuthRequest r = f.req;
        r.timestamp = NULL;
        assert_int_equal(auth_verify_request(key, &r, c, NOW, &h), AUTH_VERIFY_MISSING_HEADER);
        assert_string_equal(h, AUTH_HEADER_TIMESTAMP);
        r = f.req;
        r.nonce = NULL;
        assert_int_equal(auth_verify_request(key, &r, c, NOW, &h), AUTH_VERIFY_MISSING_HEADER);
        assert_string_equal(h, AUTH_HEADER_NONCE);
        r = f.req;
        r.signature = NULL;
        assert_int_equal(auth_verify_request(key, &r, c, NOW, &h), AUTH_VERIFY_MISSING_HEADER);
        assert_string_equal(h, AUTH_HEADER_SIGNATURE);
        r = f.req;
        r.actor = NULL;
        assert_int_equal(auth_verify_request(key, &r, c, NOW, &h), AUTH_VERIFY_MISSING_HEADER);

        const char *bad_ts[] = { "",     "+1764000000",         "-1", "1764000000.5", " 1764000000",
                                 "0x10", "99999999999999999999" };
        for (size_t i = 0; i < ELEMENTSOF(bad_ts); i++) {
                r = f.req;
                r.timestamp = bad_ts[i];
                assert_int_equal(auth_verify_request(key, &r, c, NOW, NULL), AUTH_VERIFY_BAD_TIMESTAMP);
        }
        const char *bad_nonce[] = { "",
                                    "0011",
                                    "00112233445566778899aabbccddeef",
                                    "zz112233445566778899aabbccddeeff",
                                    "00112233445566778899aabbccddeeff0" };
        for (size_t i = 0; i < ELEMENTSOF(bad_nonce); i++) {
                r = f.req;
                r.nonce = bad_nonce[i];
                assert_int_equal(auth_verify_request(key, &r, c, NOW, NULL), AUTH_VERIFY_BAD_NONCE);
        }
        r = f.req;
        r.actor = "a\nb";
        assert_int_equal(auth_verify_request(key, &r, c, NOW, NULL), AUTH_VERIFY_BAD_ACTOR);
        const char *bad_sig[] = {
                "", "00", "zz", "0000000000000000000000000000000000000000000000000000000000000000"
        };
        for (size_t i = 0; i < ELEMENTSOF(bad_sig); i++) {
                r = f.req;
                r.signature = bad_sig[i];
                assert_int_equal(auth_verify_request(key, &r, c, NOW, NULL), AUTH_VERIFY_BAD_SIGNATURE);
        }
        /* Newlines in signed fields are refused on the signing side too. */
        char sig[65];
        assert_int_equal(auth_sign_request(key, "GET", "/a\n/b", "1", N1, "x", NULL, 0, sig), -EINVAL);
        assert_string_equal(auth_verify_result_to_string(AUTH_VERIFY_REPLAY), "replay");
        auth_nonce_cache_free(c);
}

static void test_make_headers(void **state) {
        AuthNonceCache *c = NULL;
        AuthHeaders h;
        assert_int_equal(auth_nonce_cache_new(0, &c), 0);
        assert_int_equal(auth_make_headers(key, "POST", "/v1/pods", "cli", "{}", 2, &h), 0);
        assert_int_equal(strlen(h.nonce), 32);
        AuthRequest r = { "POST", "/v1/pods", h.timestamp, h.nonce, "cli", h.signature, "{}", 2 };
        assert_int_equal(auth_verify_request(key, &r, c, (int64_t) time(NULL), NULL), AUTH_VERIFY_OK);
        assert_int_equal(auth_verify_request(key, &r, c, (int64_t) time(NULL), NULL), AUTH_VERIFY_REPLAY);
        auth_nonce_cache_free(c);
}

static void test_cache_bounded(void **state) {
        AuthNonceCache *c = NULL;
        char n[40];
        assert_int_equal(auth_nonce_cache_new(100, &c), 0);
        for (int i = 0; i < 100; i++) {
                snprintf(n, sizeof(n), "%032x", i);
                assert_int_equal(auth_nonce_cache_insert(c, n, NOW + 61, NOW), 0);
        }
        snprintf(n, sizeof(n), "%032x", 5);
        assert_int_equal(auth_nonce_cache_insert(c, n, NOW + 61, NOW), -EEXIST);
        snprintf(n, sizeof(n), "%032x", 1000);
        /* Full of live entries: fail closed. */
        assert_int_equal(auth_nonce_cache_insert(c, n, NOW + 61, NOW), -ENOSPC);
        /* After they expire, room again, and expired nonces are forgotten. */
        assert_int_equal(auth_nonce_cache_insert(c, n, NOW + 200, NOW + 100), 0);
        assert_true(auth_nonce_cache_size(c) <= 100);
        snprintf(n, sizeof(n), "%032x", 5);
        assert_int_equal(auth_nonce_cache_insert(c, n, NOW + 200, NOW + 100), 0);
        auth_nonce_cache_free(c);
}

static void test_cache_full_verify(void **state) {
        AuthNonceCache *c = NULL;
        Fixture f;
        char n[40];
        assert_int_equal(auth_nonce_cache_new(16, &c), 0);
        for (int i = 0; i < 16; i++) {
                snprintf(n, sizeof(n), "%032x", i + 1000);
                assert_int_equal(auth_nonce_cache_insert(c, n, NOW + 61, NOW), 0);
        }
        make(&f, "GET", "/v1/pods", NOW, N1, "");
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_CACHE_FULL);
        auth_nonce_cache_free(c);
}

static AuthNonceCache *shared;
static int accepted;
static pthread_mutex_t acc_lock = PTHREAD_MUTEX_INITIALIZER;

static void *racer(void *arg) {
        Fixture *f = arg;
        if (auth_verify_request(key, &f->req, shared, NOW, NULL) == AUTH_VERIFY_OK) {
                pthread_mutex_lock(&acc_lock);
                accepted++;
                pthread_mutex_unlock(&acc_lock);
        }
        return NULL;
}

static void test_concurrent_replay(void **state) {
        Fixture f;
        pthread_t t[8];
        assert_int_equal(auth_nonce_cache_new(0, &shared), 0);
        make(&f, "POST", "/v1/pods", NOW, N1, "{}");
        for (int i = 0; i < 8; i++)
                assert_int_equal(pthread_create(&t[i], NULL, racer, &f), 0);
        for (int i = 0; i < 8; i++)
                pthread_join(t[i], NULL);
        assert_int_equal(accepted, 1);
        shared = auth_nonce_cache_free(shared);
}

static void test_declared_body_digest(void **state) {
        /* X-Nucleus-Content-SHA256: the MAC is checked over the declared digest, the body is
         * ignored (the server hashes it while reading and compares at the end). */
        AuthNonceCache *c = NULL;
        Fixture f;
        uint8_t d[32];
        char dh[65];
        const char *body = "{\"path\":\"a\"}";
        crypto_hash_sha256(d, (const uint8_t *) body, strlen(body));
        sodium_bin2hex(dh, sizeof(dh), d, 32);
        assert_int_equal(auth_nonce_cache_new(16, &c), 0);

        make(&f, "PUT", "/v1/pods/x/workspace", NOW, N1, body);
        f.req.body = NULL;
        f.req.body_len = 0;
        f.req.body_sha256 = dh;
        assert_int_equal(auth_precheck_request(&f.req, NOW, NULL), AUTH_VERIFY_OK);
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_OK);
        /* Replayed: refused even though the body is never looked at. */
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_REPLAY);

        /* Another declared digest: the MAC does not cover it. */
        make(&f, "PUT", "/v1/pods/x/workspace", NOW, N2, body);
        char other[65];
        memcpy(other, dh, sizeof(other));
        other[0] = other[0] == 'a' ? 'b' : 'a';
        f.req.body_sha256 = other;
        assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_BAD_SIGNATURE);
        /* Malformed digests are refused by the precheck (upper case is not what was signed). */
        const char *bad[] = { "",
                              "abc",
                              "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789",
                              "g000000000000000000000000000000000000000000000000000000000000000",
                              "00000000000000000000000000000000000000000000000000000000000000000" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                f.req.body_sha256 = bad[i];
                assert_int_equal(auth_precheck_request(&f.req, NOW, NULL), AUTH_VERIFY_BAD_REQUEST);
                assert_int_equal(auth_verify_request(key, &f.req, c, NOW, NULL), AUTH_VERIFY_BAD_REQUEST);
        }
        /* The precheck catches header-level failures without the key, and records nothing. */
        f.req.body_sha256 = dh;
        assert_int_equal(auth_precheck_request(&f.req, NOW + 3600, NULL), AUTH_VERIFY_SKEW);
        f.req.nonce = "xyz";
        assert_int_equal(auth_precheck_request(&f.req, NOW, NULL), AUTH_VERIFY_BAD_NONCE);
        f.req.nonce = f.nonce;
        f.req.signature = "00";
        assert_int_equal(auth_precheck_request(&f.req, NOW, NULL), AUTH_VERIFY_BAD_SIGNATURE);
        assert_int_equal(auth_nonce_cache_size(c), 1);
        c = auth_nonce_cache_free(c);
}

/* Answers: an independent HMAC (Python hmac/hashlib) of the documented string; a MAC for one
 * nonce, status or body never fits another; streams sign "stream"; missing or malformed fail. */
static void test_response_mac(void **state) {
        const char *nonce = "00112233445566778899aabbccddeeff";
        const char *body = "{\"pods\":[]}";
        char mac[AUTH_SIGNATURE_HEX_LEN + 1], smac[AUTH_SIGNATURE_HEX_LEN + 1];
        assert_int_equal(auth_sign_response(key, nonce, 200, body, strlen(body), mac), 0);
        assert_string_equal(mac, "43d204e3229a956ecc8c355ccfda5a12ae88221a9618803558758bfbbd3845bc");
        assert_int_equal(auth_sign_response(key, nonce, 200, NULL, SIZE_MAX, smac), 0);
        assert_string_equal(smac, "4d329894a0a73921fd26d6d53ef7e5fb9413dd3b1f4acda661da469365d9ce42");
        assert_true(auth_verify_response(key, nonce, 200, body, strlen(body), mac));
        assert_true(auth_verify_response(key, nonce, 200, NULL, SIZE_MAX, smac));
        assert_false(auth_verify_response(key, nonce, 200, NULL, SIZE_MAX, mac));
        assert_false(auth_verify_response(key, nonce, 201, body, strlen(body), mac));
        assert_false(auth_verify_response(key, nonce, 200, body, strlen(body) - 1, mac));
        assert_false(
                auth_verify_response(key, "00112233445566778899aabbccddeef0", 200, body, strlen(body), mac));
        assert_false(auth_verify_response(key, nonce, 200, body, strlen(body), NULL));
        assert_false(auth_verify_response(key, nonce, 200, body, strlen(body), ""));
        mac[63] = mac[63] == '0' ? '1' : '0';
        assert_false(auth_verify_response(key, nonce, 200, body, strlen(body), mac));
        uint8_t other[32] = { 9 };
        assert_int_equal(auth_sign_response(other, nonce, 200, body, strlen(body), mac), 0);
        assert_false(auth_verify_response(key, nonce, 200, body, strlen(body), mac));
        assert_int_equal(auth_sign_response(key, "short", 200, body, 1, mac), -EINVAL);
        assert_int_equal(auth_sign_response(key, nonce, 42, body, 1, mac), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_known_vector),      cmocka_unit_test(test_ok_and_replay),
                cmocka_unit_test(test_old_timestamp),     cmocka_unit_test(test_other_path_or_method),
                cmocka_unit_test(test_header_errors),     cmocka_unit_test(test_make_headers),
                cmocka_unit_test(test_cache_bounded),     cmocka_unit_test(test_cache_full_verify),
                cmocka_unit_test(test_concurrent_replay), cmocka_unit_test(test_declared_body_digest),
                cmocka_unit_test(test_response_mac),      cmocka_unit_test(test_key_id),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        if (sodium_init() < 0)
                return 77;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
