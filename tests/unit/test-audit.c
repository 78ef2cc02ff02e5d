/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the audit log (src/lib/audit): chain, seal, resume, concurrency, tampering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "audit.h"
#include "fd-util.h"
#include "json-util.h"
#include "string-util.h"

static uint8_t pk[32], sk[64], pk2[32], sk2[64];

static char *tmpfile_path(void) {
        char t[] = "/tmp/nucleus-test-audit-XXXXXX";
        assert_non_null(mkdtemp(t));
        return xasprintf("%s/audit.jsonl", t);
}

static void write_log(const char *path, unsigned n, bool seal) {
        AuditLog *log = NULL;
        assert_int_equal(audit_log_open(path, "pod-abc", sk, &log), 0);
        for (unsigned i = 0; i < n; i++) {
                _cleanup_json_ json_t *args = json_pack("{s:s,s:i}", "path", "a.txt", "i", (int) i);
                AuditEvent ev = { .actor = "alice",
                                  .op = "read_files",
                                  .decision = i == 2 ? "deny" : "allow",
                                  .kind = i == 2 ? "path_denied" : NULL,
                                  .args = args,
                                  .result = "x",
                                  .result_len = 1 };
                uint64_t seq = 0;
                assert_int_equal(audit_log_append(log, &ev, &seq), 0);
                assert_int_equal(seq, audit_log_count(log));
        }
        if (seal)
                assert_int_equal(audit_log_seal(log), 0);
        audit_log_free(log);
}

static char *slurp(const char *path, size_t *n) {
        char *d = NULL;
        assert_int_equal(read_full_file_at(AT_FDCWD, path, 1 << 24, &d, n), 0);
        return d;
}

/* Split into lines (each without "\n"). */
static char **lines_of(const char *d) {
        char **l = NULL;
        const char *p = d;
        while (*p) {
                const char *nl = strchr(p, '\n');
                assert_non_null(nl);
                strv_consume(&l, xstrndup(p, (size_t) (nl - p)));
                p = nl + 1;
        }
        return l;
}

static void verify_text(const char *text, const uint8_t *key, unsigned flags, AuditVerifyReport *rep) {
        assert_int_equal(audit_verify_buffer(text, strlen(text), key, flags, rep), 0);
}

static char *join_lines(char **l) {
        _cleanup_free_ char *j = strv_join(l, "\n");
        return xasprintf("%s\n", j);
}

static void test_valid_and_seal(void **state) {
        _cleanup_free_ char *p = tmpfile_path();
        write_log(p, 5, true);
        AuditVerifyReport rep;
        assert_int_equal(audit_verify_file(p, pk, 0, &rep), 0);
        assert_true(rep.valid);
        assert_true(rep.sealed);
        assert_int_equal(rep.records, 5);
        assert_string_equal(rep.pod, "pod-abc");
        audit_verify_report_done(&rep);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        /* the 3rd record carries its kind; lines are canonical JSON with prev = sha256(prev line) */
        size_t n;
        _cleanup_free_ char *d = slurp(p, &n);
        _cleanup_strv_free_ char **l = lines_of(d);
        assert_int_equal(strv_length(l), 6);
        assert_non_null(strstr(l[2], "\"kind\":\"path_denied\""));
        assert_non_null(strstr(l[5], "\"op\":\"seal\""));
        assert_non_null(strstr(l[5], "\"count\":5"));
        char g[65];
        audit_genesis("pod-abc", g);
        assert_non_null(strstr(l[0], g));
        uint8_t h[32];
        char hx[65];
        crypto_hash_sha256(h, (const uint8_t *) l[0], strlen(l[0]));
        sodium_bin2hex(hx, sizeof(hx), h, 32);
        assert_non_null(strstr(l[1], hx));
        /* sealed: no more appends, and reopening refuses */
        AuditLog *log = NULL;
        assert_int_equal(audit_log_open(p, "pod-abc", sk, &log), -ESTALE);
}

static void test_resume(void **state) {
        _cleanup_free_ char *p = tmpfile_path();
        write_log(p, 3, false);
        write_log(p, 2, true); /* reopen continues the chain */
        AuditVerifyReport rep;
        assert_int_equal(audit_verify_file(p, pk, 0, &rep), 0);
        assert_true(rep.valid);
        assert_int_equal(rep.records, 5);
        audit_verify_report_done(&rep);
        /* resume with another key or pod is refused */
        _cleanup_free_ char *q = tmpfile_path();
        write_log(q, 2, false);
        AuditLog *log = NULL;
        assert_int_equal(audit_log_open(q, "pod-abc", sk2, &log), -EBADMSG);
        assert_int_equal(audit_log_open(q, "pod-other", sk, &log), -EBADMSG);
        /* unsealed is invalid by default, valid with ALLOW_UNSEALED */
        assert_int_equal(audit_verify_file(q, pk, 0, &rep), 0);
        assert_false(rep.valid);
        assert_non_null(strstr(rep.reason, "not sealed"));
        assert_int_equal(rep.bad_seq, 2);
        audit_verify_report_done(&rep);
        assert_int_equal(audit_verify_file(q, pk, AUDIT_VERIFY_ALLOW_UNSEALED, &rep), 0);
        assert_true(rep.valid);
        audit_verify_report_done(&rep);
        /* a complete foreign last line blocks resuming (it is never "repaired") */
        _cleanup_close_ int fd = open(q, O_WRONLY | O_APPEND | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "{\"seq\":3}\n", 10), 10);
        assert_int_equal(audit_log_open(q, "pod-abc", sk, &log), -EBADMSG);
}

static void append_one(AuditLog *log, int expect) {
        AuditEvent ev = { .actor = "alice", .op = "run", .decision = "allow", .result = "ok", .result_len = 2 };
        assert_int_equal(audit_log_append(log, &ev, NULL), expect);
}

/* A torn final line (crash mid-write) is cut at the next open and the cut is recorded in a
 * signed repair record; the verifier reports "repaired" with the number of bytes cut. */
static void test_repair_torn_tail(void **state) {
        _cleanup_free_ char *p = tmpfile_path();
        write_log(p, 3, false);
        size_t n0;
        _cleanup_free_ char *before = slurp(p, &n0);
        _cleanup_close_ int fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "{\"seq\":4,\"acto", 15), 15);
        /* the verifier alone does not guess: a torn line is invalid until the writer repairs it */
        AuditVerifyReport rep;
        assert_int_equal(audit_verify_file(p, pk, AUDIT_VERIFY_ALLOW_UNSEALED, &rep), 0);
        assert_false(rep.valid);
        assert_non_null(strstr(rep.reason, "truncated record"));
        audit_verify_report_done(&rep);
        /* another key cannot repair (the last complete line must be ours) */
        AuditLog *log = NULL;
        assert_int_equal(audit_log_open(p, "pod-abc", sk2, &log), -EBADMSG);
        bool repaired = false;
        assert_int_equal(audit_log_open_full(p, "pod-abc", sk, &log, &repaired), 0);
        assert_true(repaired);
        append_one(log, 0);
        assert_int_equal(audit_log_seal(log), 0);
        audit_log_free(log);
        size_t n1;
        _cleanup_free_ char *after = slurp(p, &n1);
        assert_memory_equal(before, after, n0); /* complete lines untouched */
        _cleanup_strv_free_ char **l = lines_of(after);
        assert_int_equal(strv_length(l), 6);
        assert_non_null(strstr(l[3], "\"op\":\"audit_repair\""));
        assert_non_null(strstr(l[3], "\"cut_bytes\":15"));
        assert_non_null(strstr(l[3], "\"kind\":\"torn_tail\""));
        assert_int_equal(audit_verify_file(p, pk, 0, &rep), 0);
        assert_true(rep.valid);
        assert_true(rep.sealed);
        assert_int_equal(rep.repairs, 1);
        assert_int_equal(rep.cut_bytes, 15);
        audit_verify_report_done(&rep);

        /* only the fragment: the first record itself was torn */
        _cleanup_free_ char *q = tmpfile_path();
        _cleanup_close_ int qfd = open(q, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_int_equal(write(qfd, "{\"se", 4), 4);
        assert_int_equal(audit_log_open_full(q, "pod-abc", sk, &log, &repaired), 0);
        assert_true(repaired);
        assert_int_equal(audit_log_seal(log), 0);
        audit_log_free(log);
        assert_int_equal(audit_verify_file(q, pk, 0, &rep), 0);
        assert_true(rep.valid);
        assert_int_equal(rep.repairs, 1);
        audit_verify_report_done(&rep);
}

/* Truncation cannot be laundered: a log cut at a record boundary is not "repaired" (no repair
 * record, still reported unsealed), and bytes after a seal are never cut. */
static void test_repair_refusals(void **state) {
        _cleanup_free_ char *p = tmpfile_path();
        write_log(p, 4, false);
        size_t n;
        _cleanup_free_ char *d = slurp(p, &n);
        _cleanup_strv_free_ char **l = lines_of(d);
        l[3] = mfree(l[3]); /* drop the last record at its line boundary */
        _cleanup_free_ char *cut = join_lines(l);
        AuditVerifyReport rep;
        verify_text(cut, pk, 0, &rep);
        assert_false(rep.valid);
        assert_non_null(strstr(rep.reason, "not sealed"));
        assert_int_equal(rep.repairs, 0);
        audit_verify_report_done(&rep);
        {
                _cleanup_close_ int fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
                assert_int_equal(write(fd, cut, strlen(cut)), (ssize_t) strlen(cut));
        }
        AuditLog *log = NULL;
        bool repaired = true;
        assert_int_equal(audit_log_open_full(p, "pod-abc", sk, &log, &repaired), 0);
        assert_false(repaired);
        audit_log_free(log);
        assert_int_equal(audit_verify_file(p, pk, 0, &rep), 0);
        assert_false(rep.valid);
        assert_int_equal(rep.repairs, 0);
        audit_verify_report_done(&rep);

        /* data after a seal: never repaired, the verifier keeps failing */
        _cleanup_free_ char *q = tmpfile_path();
        write_log(q, 2, true);
        _cleanup_close_ int fd = open(q, O_WRONLY | O_APPEND | O_CLOEXEC);
        assert_int_equal(write(fd, "{\"seq\":4", 8), 8);
        size_t n0, n1;
        _cleanup_free_ char *before = slurp(q, &n0);
        assert_int_equal(audit_log_open_full(q, "pod-abc", sk, &log, &repaired), -ESTALE);
        _cleanup_free_ char *after = slurp(q, &n1);
        assert_int_equal(n0, n1);
        assert_memory_equal(before, after, n0);
        assert_int_equal(audit_verify_file(q, pk, 0, &rep), 0);
        assert_false(rep.valid);
        audit_verify_report_done(&rep);
        /* a forged repair record (not signed by the key) fails like any edit */
        _cleanup_free_ char *r = tmpfile_path();
        write_log(r, 1, false);
        _cleanup_close_ int rfd = open(r, O_WRONLY | O_APPEND | O_CLOEXEC);
        assert_int_equal(write(rfd, "{\"x", 3), 3);
        assert_int_equal(audit_log_open_full(r, "pod-abc", sk2, &log, &repaired), -EBADMSG);
        /* the writer refuses the reserved op from callers */
        assert_int_equal(audit_log_open(p, "pod-abc", sk, &log), 0);
        AuditEvent ev = { .actor = "a", .op = AUDIT_REPAIR_OP, .decision = "info" };
        assert_int_equal(audit_log_append(log, &ev, NULL), -EINVAL);
        audit_log_free(log);
}

/* A write that fails part-way (full disk; here RLIMIT_FSIZE) leaves a torn line; the writer
 * refuses while it cannot write and heals itself with a repair record once it can. */
static void test_repair_after_write_failure(void **state) {
        _cleanup_free_ char *p = tmpfile_path();
        AuditLog *log = NULL;
        assert_int_equal(audit_log_open(p, "pod-abc", sk, &log), 0);
        append_one(log, 0);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        struct rlimit old, lim;
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
        lim = old;
        lim.rlim_cur = (rlim_t) st.st_size + 40;
        void (*prev_handler)(int) = signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        append_one(log, -EFBIG);
        assert_int_equal(stat(p, &st), 0);
        off_t torn_size = st.st_size;
        append_one(log, -EFBIG); /* the repair record itself does not fit either */
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        signal(SIGXFSZ, prev_handler);
        append_one(log, 0);
        assert_int_equal(audit_log_seal(log), 0);
        audit_log_free(log);
        AuditVerifyReport rep;
        assert_int_equal(audit_verify_file(p, pk, 0, &rep), 0);
        assert_true(rep.valid);
        assert_int_equal(rep.records, 3); /* 2 calls + 1 repair (the failed ones never landed) */
        assert_int_equal(rep.repairs, 1);
        assert_true(rep.cut_bytes > 0 && rep.cut_bytes <= 40);
        assert_true(torn_size > 0);
        audit_verify_report_done(&rep);
        size_t n;
        _cleanup_free_ char *d = slurp(p, &n);
        assert_non_null(strstr(d, "\"kind\":\"write_failed\""));

        /* records we wrote disappearing under us is not a torn line: refuse for good */
        _cleanup_free_ char *q = tmpfile_path();
        assert_int_equal(audit_log_open(q, "pod-abc", sk, &log), 0);
        append_one(log, 0);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        signal(SIGXFSZ, SIG_IGN);
        lim.rlim_cur = 10;
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        append_one(log, -EFBIG);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        signal(SIGXFSZ, prev_handler);
        assert_int_equal(truncate(q, 5), 0);
        append_one(log, -EIO);
        append_one(log, -EIO);
        audit_log_free(log);
}

typedef struct Tamper {
        const char *name;
        uint64_t bad_seq;
        unsigned bad_line;
        const char *reason_part;
} Tamper;

static void test_tamper(void **state) {
        _cleanup_free_ char *p = tmpfile_path();
        write_log(p, 6, true);
        size_t n;
        _cleanup_free_ char *d = slurp(p, &n);
        AuditVerifyReport rep;

        /* 1. edit a middle record (seq 3): signature fails at seq 3 */
        {
                _cleanup_strv_free_ char **l = lines_of(d);
                char *s = strstr(l[2], "\"deny\"");
                assert_non_null(s);
                memcpy(s, "\"allo\"", 6); /* still canonical; decision value changes */
                _cleanup_free_ char *t = join_lines(l);
                verify_text(t, pk, 0, &rep);
                assert_false(rep.valid);
                /* "allo" is not a valid decision: caught by the parser at seq 3 */
                assert_int_equal(rep.bad_seq, 3);
                assert_int_equal(rep.bad_line, 3);
                audit_verify_report_done(&rep);
                /* edit keeping syntax valid: actor change */
                _cleanup_strv_free_ char **m = lines_of(d);
                char *a = strstr(m[2], "\"alice\"");
                assert_non_null(a);
                memcpy(a, "\"alicf\"", 7);
                _cleanup_free_ char *t2 = join_lines(m);
                verify_text(t2, pk, 0, &rep);
                assert_false(rep.valid);
                assert_int_equal(rep.bad_seq, 3);
                assert_non_null(strstr(rep.reason, "bad signature"));
                audit_verify_report_done(&rep);
        }
        /* 2. drop the tail (seal and last record) */
        {
                _cleanup_strv_free_ char **l = lines_of(d);
                free(l[6]);
                l[6] = NULL;
                free(l[5]);
                l[5] = NULL;
                _cleanup_free_ char *t = join_lines(l);
                verify_text(t, pk, 0, &rep);
                assert_false(rep.valid);
                assert_int_equal(rep.bad_seq, 5);
                assert_non_null(strstr(rep.reason, "not sealed"));
                audit_verify_report_done(&rep);
        }
        /* 3. reorder records 2 and 3 */
        {
                _cleanup_strv_free_ char **l = lines_of(d);
                char *x = l[1];
                l[1] = l[2];
                l[2] = x;
                _cleanup_free_ char *t = join_lines(l);
                verify_text(t, pk, 0, &rep);
                assert_false(rep.valid);
                assert_int_equal(rep.bad_seq, 3);
                assert_int_equal(rep.bad_line, 2);
                audit_verify_report_done(&rep);
        }
        /* 4. swap the key */
        verify_text(d, pk2, 0, &rep);
        assert_false(rep.valid);
        assert_int_equal(rep.bad_seq, 1);
        assert_int_equal(rep.bad_line, 1);
        assert_non_null(strstr(rep.reason, "bad signature"));
        audit_verify_report_done(&rep);
        /* 5. truncate mid-line */
        {
                _cleanup_free_ char *t = xstrndup(d, n - 10);
                verify_text(t, pk, 0, &rep);
                assert_false(rep.valid);
                assert_int_equal(rep.bad_line, 7);
                assert_non_null(strstr(rep.reason, "truncated"));
                audit_verify_report_done(&rep);
        }
        /* 6. drop a middle record (seq 4): seq gap named at line 4 */
        {
                _cleanup_strv_free_ char **l = lines_of(d);
                free(l[3]);
                memmove(&l[3], &l[4], sizeof(char *) * 4);
                _cleanup_free_ char *t = join_lines(l);
                verify_text(t, pk, 0, &rep);
                assert_false(rep.valid);
                assert_int_equal(rep.bad_seq, 5);
                assert_int_equal(rep.bad_line, 4);
                audit_verify_report_done(&rep);
        }
        /* 7. drop the first record */
        {
                _cleanup_strv_free_ char **l = lines_of(d);
                _cleanup_free_ char *t = join_lines(l + 1);
                verify_text(t, pk, 0, &rep);
                assert_false(rep.valid);
                assert_int_equal(rep.bad_line, 1);
                audit_verify_report_done(&rep);
        }
        /* 8. a record appended after the seal */
        {
                _cleanup_strv_free_ char **l = lines_of(d);
                strv_extend(&l, l[5]);
                _cleanup_free_ char *t = join_lines(l);
                verify_text(t, pk, 0, &rep);
                assert_false(rep.valid);
                assert_int_equal(rep.bad_line, 8);
                audit_verify_report_done(&rep);
        }
}

static AuditLog *shared;

static void *appender(void *arg) {
        for (int i = 0; i < 50; i++) {
                AuditEvent ev = { .actor = "t", .op = "run_bash", .decision = "allow" };
                assert_int_equal(audit_log_append(shared, &ev, NULL), 0);
        }
        return NULL;
}

static void test_concurrent(void **state) {
        _cleanup_free_ char *p = tmpfile_path();
        pthread_t t[4];
        assert_int_equal(audit_log_open(p, "pod-c", sk, &shared), 0);
        for (int i = 0; i < 4; i++)
                pthread_create(&t[i], NULL, appender, NULL);
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        assert_int_equal(audit_log_seal(shared), 0);
        AuditEvent ev = { .actor = "t", .op = "x", .decision = "allow" };
        assert_int_equal(audit_log_append(shared, &ev, NULL), -ESTALE);
        shared = audit_log_free(shared);
        AuditVerifyReport rep;
        assert_int_equal(audit_verify_file(p, pk, 0, &rep), 0);
        assert_true(rep.valid);
        assert_int_equal(rep.records, 200);
        audit_verify_report_done(&rep);
}

static void test_bad_events(void **state) {
        _cleanup_free_ char *p = tmpfile_path();
        AuditLog *log = NULL;
        assert_int_equal(audit_log_open(p, "pod-x", sk, &log), 0);
        AuditEvent bad[] = {
                { .actor = "a", .op = "seal", .decision = "info" },
                { .actor = "a", .op = "Bad Op", .decision = "allow" },
                { .actor = "a\n", .op = "x", .decision = "allow" },
                { .actor = "a", .op = "x", .decision = "maybe" },
                { .actor = "a", .op = "x", .decision = "allow", .args_sha256 = "zz" },
                { .actor = NULL, .op = "x", .decision = "allow" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(audit_log_append(log, &bad[i], NULL), -EINVAL);
        assert_int_equal(audit_log_count(log), 0);
        audit_log_free(log);
        assert_int_equal(audit_log_open(p, "../etc", sk, &log), -EINVAL);
        /* parser strictness */
        AuditRecord r;
        char *err = NULL;
        const char *lines[] = { "", "[]", "{\"seq\":1}", "{\"a\":1}", "{ \"seq\":1 }", "nope" };
        for (size_t i = 0; i < ELEMENTSOF(lines); i++) {
                assert_int_equal(audit_record_parse_line(lines[i], strlen(lines[i]), &r, &err), -EBADMSG);
                free(err);
                err = NULL;
        }
}

/* A request without an answer (the node died mid-call) gets an "interrupted" answer at the
 * next start; answered requests get none. */
static void test_answer_interrupted(void **state) {
        _cleanup_free_ char *p = tmpfile_path();
        AuditLog *log = NULL;
        uint64_t s1 = 0, s2 = 0;
        assert_int_equal(audit_log_open(p, "pod-abc", sk, &log), 0);
        AuditEvent req = { .actor = "alice", .op = "run", .decision = "request" };
        assert_int_equal(audit_log_append(log, &req, &s1), 0);
        AuditEvent ans = { .actor = "alice", .op = "run", .decision = "allow", .request_seq = s1 };
        assert_int_equal(audit_log_append(log, &ans, NULL), 0);
        AuditEvent req2 = { .actor = "alice", .op = "write", .decision = "request" };
        assert_int_equal(audit_log_append(log, &req2, &s2), 0);
        audit_log_free(log); /* the node dies here */
        assert_int_equal(audit_log_open(p, "pod-abc", sk, &log), 0);
        assert_int_equal(audit_log_answer_interrupted(log, p, "interrupted by node restart"), 1);
        assert_int_equal(audit_log_answer_interrupted(log, p, "interrupted by node restart"), 0);
        assert_int_equal(audit_log_seal(log), 0);
        audit_log_free(log);
        size_t n;
        _cleanup_free_ char *d = slurp(p, &n);
        _cleanup_strv_free_ char **l = lines_of(d);
        assert_int_equal(strv_length(l), 5);
        assert_non_null(strstr(l[3], "\"kind\":\"interrupted\""));
        assert_non_null(strstr(l[3], "\"op\":\"write\""));
        _cleanup_free_ char *rs = xasprintf("\"request_seq\":%llu", (unsigned long long) s2);
        assert_non_null(strstr(l[3], rs));
        AuditVerifyReport rep;
        assert_int_equal(audit_verify_file(p, pk, 0, &rep), 0);
        assert_true(rep.valid);
        audit_verify_report_done(&rep);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid_and_seal),
                cmocka_unit_test(test_resume),
                cmocka_unit_test(test_tamper),
                cmocka_unit_test(test_concurrent),
                cmocka_unit_test(test_bad_events),
                cmocka_unit_test(test_repair_torn_tail),
                cmocka_unit_test(test_repair_refusals),
                cmocka_unit_test(test_repair_after_write_failure),
                cmocka_unit_test(test_answer_interrupted),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        if (sodium_init() < 0)
                return 77;
        crypto_sign_keypair(pk, sk);
        crypto_sign_keypair(pk2, sk2);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
