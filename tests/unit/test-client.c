/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of src/lib/client: request signing, URL validation, file locations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sodium.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "client-paths.h"
#include "client-settings.h"
#include "client-sign.h"
#include "client-sse.h"
#include "client.h"

static const uint8_t key[32] = { 1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };

static void test_sign(void **state) {
        ClientSignedHeaders a, b;
        (void) state;

        assert_int_equal(client_sign(key, NULL, "POST", "/v1/pods?x=1", "me", "{}", 2, 1700000000, &a), 0);
        assert_string_equal(a.timestamp, "1700000000");
        assert_int_equal(strlen(a.nonce), 32);
        assert_int_equal(strlen(a.signature), 64);
        assert_int_equal(strspn(a.signature, "0123456789abcdef"), 64);

        /* Recompute the documented string independently and compare. */
        uint8_t h[32], mac[32];
        char hex[65], sig[65];
        crypto_hash_sha256(h, (const unsigned char *) "{}", 2);
        sodium_bin2hex(hex, sizeof(hex), h, 32);
        _cleanup_free_ char *msg = xasprintf(
                "nucleus-v1\nPOST\n/v1/pods?x=1\n1700000000\n%s\nme\n%s", a.nonce, hex);
        crypto_auth_hmacsha256(mac, (const unsigned char *) msg, strlen(msg), key);
        sodium_bin2hex(sig, sizeof(sig), mac, 32);
        assert_string_equal(sig, a.signature);

        /* Fresh nonce each time. */
        assert_int_equal(client_sign(key, NULL, "POST", "/v1/pods?x=1", "me", "{}", 2, 1700000000, &b), 0);
        assert_string_not_equal(a.nonce, b.nonce);

        /* Newlines cannot smuggle fields. */
        assert_int_equal(client_sign(key, NULL, "GET", "/v1/x\n", "me", NULL, 0, 1, &a), -EINVAL);
        assert_int_equal(client_sign(key, NULL, "GET", "/v1/x", "m\ne", NULL, 0, 1, &a), -EINVAL);
        assert_int_equal(client_sign(key, NULL, "GET", "v1/x", "me", NULL, 0, 1, &a), -EINVAL);
}

static void test_url(void **state) {
        NucleusClient *c = NULL;
        (void) state;

        assert_int_equal(client_new("http://127.0.0.1:8080", key, NULL, &c), 0);
        assert_string_equal(client_url(c), "http://127.0.0.1:8080");
        c = client_free(c);
        assert_int_equal(client_new("http://127.0.0.1:8080/", key, "x", &c), 0);
        c = client_free(c);
        assert_int_equal(client_new("ftp://127.0.0.1", key, NULL, &c), -EINVAL);
        assert_int_equal(client_new("http://", key, NULL, &c), -EINVAL);
        assert_int_equal(client_new("http://a b", key, NULL, &c), -EINVAL);
        assert_int_equal(client_new("http://h?x=1", key, NULL, &c), -EINVAL);
        assert_int_equal(client_new("http://h", key, "bad\nactor", &c), -EINVAL);
}

static void test_error_decode(void **state) {
        ClientError e = {};
        (void) state;

        ClientResponse r = { .status = 403,
                             .body = (char *) "{\"error\":\"no\\u001b[31m\",\"kind\":\"path_denied\"}" };
        r.size = strlen(r.body);
        client_error_from_response(&r, &e);
        assert_string_equal(e.kind, "path_denied");
        assert_null(strchr(e.message, 0x1b));

        ClientResponse r2 = { .status = 401, .body = (char *) "nope", .size = 4 };
        client_error_from_response(&r2, &e);
        assert_string_equal(e.kind, "unauthorized");
        assert_non_null(strstr(e.message, "401"));

        ClientResponse r3 = { .status = 500, .body = (char *) "{\"error\":\"x\",\"kind\":\"Bad Kind\"}" };
        r3.size = strlen(r3.body);
        client_error_from_response(&r3, &e);
        assert_string_equal(e.kind, "internal");
        client_error_done(&e);
}

static void test_paths(void **state) {
        _cleanup_free_ char *d = NULL, *s = NULL, *k = NULL, *st = NULL, *img = NULL;
        (void) state;

        setenv("NUCLEUS_CONFIG_DIR", "/tmp/nc", 1);
        setenv("NUCLEUS_STATE_DIR", "/tmp/ns", 1);
        unsetenv("NUCLEUS_IMAGES_DIR");
        assert_int_equal(client_config_dir(&d), 0);
        assert_string_equal(d, "/tmp/nc");
        assert_int_equal(client_secrets_dir(&s), 0);
        assert_string_equal(s, "/tmp/nc/secrets");
        assert_int_equal(client_secret_file("node.key", &k), 0);
        assert_string_equal(k, "/tmp/nc/secrets/node.key");
        assert_int_equal(client_images_dir(&img), 0);
        assert_string_equal(img, "/tmp/ns/images");
        assert_int_equal(client_secret_file("../x", &st), -EINVAL);

        unsetenv("NUCLEUS_CONFIG_DIR");
        setenv("XDG_CONFIG_HOME", "relative", 1);
        char *x = NULL;
        assert_int_equal(client_config_dir(&x), -EINVAL);
        setenv("XDG_CONFIG_HOME", "/xdg", 1);
        assert_int_equal(client_config_dir(&x), 0);
        assert_string_equal(x, "/xdg/nucleus");
        free(x);
}

typedef struct Seen {
        char log[4096];
        int n;
} Seen;

static int collect(const char *event, const char *data, void *userdata) {
        Seen *s = userdata;
        size_t l = strlen(s->log);
        snprintf(s->log + l, sizeof(s->log) - l, "[%s|%s]", event ?: "-", data);
        s->n++;
        return 0;
}

static void test_sse(void **state) {
        ClientSse p;
        Seen seen = {};
        (void) state;

        /* Split at every possible point: the result must not depend on chunking. */
        const char *text = "event: log\ndata: a\ndata:b\r\n\n: comment\ndata\ndata: c\n\nid: 7\n\ndata: "
                           "tail";
        for (size_t cut = 0; cut <= strlen(text); cut++) {
                memset(&seen, 0, sizeof(seen));
                client_sse_init(&p, collect, &seen);
                assert_int_equal(client_sse_feed(&p, text, cut), 0);
                assert_int_equal(client_sse_feed(&p, text + cut, strlen(text) - cut), 0);
                assert_int_equal(client_sse_finish(&p), 0);
                client_sse_done(&p);
                assert_string_equal(seen.log, "[log|a\nb][-|\nc][-|tail]");
                assert_int_equal(seen.n, 3);
        }

        /* Over-long lines are refused, not buffered without end. */
        client_sse_init(&p, collect, &seen);
        char *big = malloc(CLIENT_SSE_LINE_MAX + 2);
        memset(big, 'x', CLIENT_SSE_LINE_MAX + 1);
        big[CLIENT_SSE_LINE_MAX + 1] = 0;
        assert_int_equal(client_sse_feed(&p, big, CLIENT_SSE_LINE_MAX + 1), -EFBIG);
        free(big);
        client_sse_done(&p);
}

static void write_file(const char *path, const char *text, mode_t mode) {
        (void) unlink(path);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        assert_int_equal(chmod(path, mode), 0);
}

/* A scoped credential file: the minted JSON, 0600 and ours; anything else refused with the
 * member or the fix named. */
static void test_credential_file(void **state) {
        char dir[] = "/tmp/test-client-cred-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *path = xasprintf("%s/pod.cred", dir);
        const char *kid = "pod-0b5c7e2a-1f3d-4c8e-9a6b-2d4f6e8a0c1e-0011223344556677";
        _cleanup_free_ char *good = xasprintf(
                "{\"key_id\":\"%s\",\"secret\":\"%s\",\"scope\":\"pod\","
                "\"pod\":\"0b5c7e2a-1f3d-4c8e-9a6b-2d4f6e8a0c1e\"}",
                kid,
                "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20");
        ClientCredential c;
        char *err = NULL;

        write_file(path, good, 0600);
        assert_int_equal(client_load_credential_file(path, &c, &err), 0);
        assert_string_equal(c.key_id, kid);
        assert_string_equal(c.scope, "pod");
        assert_memory_equal(c.secret, key, 32);

        /* Readable by others: refused, naming the fix. */
        write_file(path, good, 0640);
        assert_int_equal(client_load_credential_file(path, &c, &err), -EPERM);
        assert_non_null(strstr(err, "chmod 600"));
        err = mfree(err);

        static const char *const bad[] = {
                "not json",
                "{\"secret\":\"00\",\"key_id\":\"pod-x\",\"scope\":\"pod\",\"pod\":\"p\"}",
                "{\"key_id\":\"POD "
                "BAD\",\"secret\":\"0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\","
                "\"scope\":\"pod\",\"pod\":\"p\"}",
                "{\"key_id\":\"pod-abcdefgh\",\"secret\":"
                "\"0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\","
                "\"scope\":\"node\",\"pod\":\"p\"}",
                "{\"key_id\":\"pod-abcdefgh\",\"secret\":"
                "\"0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\","
                "\"scope\":\"pod\",\"pod\":\"../x\"}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                write_file(path, bad[i], 0600);
                assert_int_equal(client_load_credential_file(path, &c, &err), -EINVAL);
                assert_non_null(err);
                err = mfree(err);
        }
        assert_int_equal(unlink(path), 0);
        assert_true(client_load_credential_file(path, &c, &err) == -ENOENT);
        err = mfree(err);
        assert_int_equal(rmdir(dir), 0);

        /* A scoped client needs a well-formed key id. */
        NucleusClient *cl = NULL;
        assert_int_equal(client_new_scoped("http://127.0.0.1:1", key, "BAD KEY", NULL, &cl), -EINVAL);
        assert_int_equal(client_new_scoped("http://127.0.0.1:1", key, kid, NULL, &cl), 0);
        assert_true(client_is_scoped(cl));
        NucleusClient *cl2 = client_clone(cl);
        assert_true(client_is_scoped(cl2));
        client_free(cl2);
        client_free(cl);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sign),         cmocka_unit_test(test_url),
                cmocka_unit_test(test_error_decode), cmocka_unit_test(test_paths),
                cmocka_unit_test(test_sse),          cmocka_unit_test(test_credential_file),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
