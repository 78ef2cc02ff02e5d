/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Audit log writer and verifier (see audit.h, docs/audit.md). The writer trusts its caller
 * (the node) but validates field syntax; the verifier and the line parser treat the file as
 * hostile: sizes are capped, every record must be canonical JSON with known fields only.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "audit.h"
#include "hash-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "string-util.h"
#include "time-util.h"

#define AUDIT_FILE_MAX (1024ULL * 1024 * 1024) /* verifier reads at most 1 GiB */

struct AuditLog {
        pthread_mutex_t lock;
        int fd;
        char *pod;
        uint8_t sk[crypto_sign_SECRETKEYBYTES];
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        uint64_t seq;    /* seq of the last record written (0: none) */
        char prev[65];   /* hex SHA-256 of the last line, or the genesis value */
        off_t good_size; /* file size up to and including the last good record's "\n" */
        bool sealed;
        bool torn;   /* a write failed: bytes past good_size are to be cut before the next record */
        bool broken; /* the file no longer holds our last record: refuse further appends */
};

void audit_genesis(const char *pod, char ret[65]) {
        uint8_t d[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_state st;
        crypto_hash_sha256_init(&st);
        crypto_hash_sha256_update(&st, (const uint8_t *) AUDIT_GENESIS_DOMAIN, strlen(AUDIT_GENESIS_DOMAIN));
        crypto_hash_sha256_update(&st, (const uint8_t *) pod, strlen(pod));
        crypto_hash_sha256_final(&st, d);
        sodium_bin2hex(ret, 65, d, sizeof(d));
}

static bool printable(const char *s, size_t max, bool allow_empty) {
        size_t n = 0;
        for (; s[n]; n++)
                if (n >= max || (unsigned char) s[n] < 0x20 || (unsigned char) s[n] == 0x7f)
                        return false;
        return allow_empty || n > 0;
}

static bool token_ok(const char *s, size_t max) {
        size_t n = 0;
        for (; s[n]; n++) {
                char c = s[n];
                if (n >= max ||
                    !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
                        return false;
        }
        return n > 0;
}

static bool hex64(const char *s) {
        if (strlen(s) != 64)
                return false;
        for (size_t i = 0; i < 64; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static bool pod_ok(const char *s) {
        size_t n = 0;
        for (; s[n]; n++) {
                char c = s[n];
                if (n >= AUDIT_POD_MAX ||
                    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-' || c == '.'))
                        return false;
        }
        return n > 0;
}

static bool decision_ok(const char *s) {
        return streq(s, "allow") || streq(s, "deny") || streq(s, "error") || streq(s, "info") ||
                streq(s, "request");
}

/* Sign `rec` (without "sig"), add "sig", return the canonical line (no newline). */
static char *sign_record(json_t *rec, const uint8_t sk[64]) {
        uint8_t sig[crypto_sign_BYTES];
        char sighex[crypto_sign_BYTES * 2 + 1];
        _cleanup_free_ char *unsigned_text = json_dump_canonical(rec);
        crypto_sign_detached(sig, NULL, (const uint8_t *) unsigned_text, strlen(unsigned_text), sk);
        sodium_bin2hex(sighex, sizeof(sighex), sig, sizeof(sig));
        json_object_set_new(rec, "sig", json_string(sighex));
        return json_dump_canonical(rec);
}

int audit_record_parse_line(const char *line, size_t len, AuditRecord *ret, char **reterr) {
        _cleanup_json_ json_t *j = NULL;
        _cleanup_free_ char *perr = NULL;
        const char *key;
        json_t *v;

#define BAD(...)                                          \
        do {                                              \
                if (reterr)                               \
                        *reterr = xasprintf(__VA_ARGS__); \
                return -EBADMSG;                          \
        } while (0)

        if (len == 0)
                BAD("empty line");
        if (len > AUDIT_LINE_MAX)
                BAD("record longer than %u bytes", AUDIT_LINE_MAX);
        if (memchr(line, 0, len) || memchr(line, '\n', len))
                BAD("record contains a NUL or newline byte");
        if (json_parse_strict(line, len, AUDIT_LINE_MAX, &j, &perr) < 0)
                BAD("not JSON: %s", perr ? perr : "?");
        if (!json_is_object(j))
                BAD("record is not a JSON object");

        json_object_foreach(j, key, v) {
                bool str = json_is_string(v);
                if (streq(key, "seq") || streq(key, "count") || streq(key, "cut_bytes") ||
                    streq(key, "request_seq")) {
                        if (!json_is_integer(v) || json_integer_value(v) < 0)
                                BAD("field \"%s\" must be a non-negative integer", key);
                } else if (streq(key, "actor")) {
                        if (!str || !printable(json_string_value(v), AUDIT_ACTOR_MAX, true))
                                BAD("field \"actor\" must be printable text of at most %u bytes",
                                    AUDIT_ACTOR_MAX);
                } else if (streq(key, "op")) {
                        if (!str || !token_ok(json_string_value(v), AUDIT_OP_MAX))
                                BAD("field \"op\" is not a valid operation name");
                } else if (streq(key, "kind")) {
                        if (!str || !token_ok(json_string_value(v), AUDIT_KIND_MAX))
                                BAD("field \"kind\" is not a valid error kind");
                } else if (streq(key, "decision")) {
                        if (!str || !decision_ok(json_string_value(v)))
                                BAD("field \"decision\" must be allow, deny, error or info");
                } else if (streq(key, "detail")) {
                        if (!json_is_object(v))
                                BAD("field \"detail\" must be a JSON object");
                } else if (
                        streq(key, "args_sha256") || streq(key, "result_sha256") || streq(key, "prev") ||
                        streq(key, "cut_sha256")) {
                        if (!str || !hex64(json_string_value(v)))
                                BAD("field \"%s\" must be 64 lowercase hex characters", key);
                } else if (streq(key, "pod")) {
                        if (!str || !pod_ok(json_string_value(v)))
                                BAD("field \"pod\" is not a valid pod id");
                } else if (streq(key, "time")) {
                        if (!str || !printable(json_string_value(v), 40, false))
                                BAD("field \"time\" must be an RFC 3339 timestamp");
                } else if (streq(key, "sig")) {
                        if (!str || strlen(json_string_value(v)) != crypto_sign_BYTES * 2)
                                BAD("field \"sig\" must be %u hex characters", crypto_sign_BYTES * 2);
                } else
                        BAD("unknown field \"%s\"", key);
        }
        const char *required[] = { "seq", "time", "actor", "op", "decision", "pod", "prev", "sig" };
        for (size_t i = 0; i < ELEMENTSOF(required); i++)
                if (!json_object_get(j, required[i]))
                        BAD("missing field \"%s\"", required[i]);

        AuditRecord r = {
                .seq = (uint64_t) json_integer_value(json_object_get(j, "seq")),
                .pod = json_string_value(json_object_get(j, "pod")),
                .prev = json_string_value(json_object_get(j, "prev")),
                .op = json_string_value(json_object_get(j, "op")),
                .sig = json_string_value(json_object_get(j, "sig")),
        };
        r.is_seal = streq(r.op, AUDIT_SEAL_OP);
        json_t *count = json_object_get(j, "count");
        if (r.is_seal != !!count)
                BAD(r.is_seal ? "seal record without \"count\"" : "field \"count\" outside a seal record");
        if (count)
                r.count = (uint64_t) json_integer_value(count);
        r.is_repair = streq(r.op, AUDIT_REPAIR_OP);
        json_t *cut = json_object_get(j, "cut_bytes");
        if (r.is_repair != !!cut || r.is_repair != !!json_object_get(j, "cut_sha256"))
                BAD(r.is_repair ? "repair record without \"cut_bytes\" and \"cut_sha256\""
                                : "fields \"cut_bytes\"/\"cut_sha256\" outside a repair record");
        if (cut)
                r.cut_bytes = (uint64_t) json_integer_value(cut);

        _cleanup_free_ char *canon = json_dump_canonical(j);
        if (strlen(canon) != len || memcmp(canon, line, len) != 0)
                BAD("record is not in canonical JSON form");
#undef BAD
        r.json = TAKE_PTR(j);
        *ret = r;
        return 0;
}

static bool record_signature_ok(const AuditRecord *r, const uint8_t pk[32]) {
        uint8_t sig[crypto_sign_BYTES];
        size_t got = 0;
        const char *end = NULL;
        if (sodium_hex2bin(sig, sizeof(sig), r->sig, strlen(r->sig), NULL, &got, &end) != 0 ||
            got != sizeof(sig) || *end != 0)
                return false;
        _cleanup_json_ json_t *copy = json_copy(r->json);
        json_object_del(copy, "sig");
        _cleanup_free_ char *text = json_dump_canonical(copy);
        return crypto_sign_verify_detached(sig, (const uint8_t *) text, strlen(text), pk) == 0;
}

/* Resume the chain from the file's tail. An unterminated fragment after the last "\n" is left
 * in place for repair_locked() (it is cut, never parsed); good_size marks where it starts.
 * Returns 0, -EBADMSG (last complete line is not ours, or the fragment is longer than one
 * record), -ESTALE (sealed, with or without bytes after the seal), other -errno. */
static int resume_tail(AuditLog *log) {
        struct stat st;
        if (fstat(log->fd, &st) < 0)
                return -errno;
        log->good_size = 0;
        if (st.st_size == 0)
                return 0;
        size_t win = (size_t) NUCLEUS_MIN((uint64_t) st.st_size, 2 * ((uint64_t) AUDIT_LINE_MAX + 1));
        off_t off = st.st_size - (off_t) win;
        _cleanup_free_ char *buf = xmalloc(win + 1);
        ssize_t n = pread(log->fd, buf, win, off);
        if (n < 0)
                return -errno;
        if ((size_t) n != win)
                return -EBADMSG;
        /* end: one past the last "\n" in the window (0: none). */
        size_t end = win;
        while (end > 0 && buf[end - 1] != '\n')
                end--;
        if (win - end > AUDIT_LINE_MAX + 1 || (end == 0 && off != 0))
                return -EBADMSG; /* not a torn record of ours: do not guess */
        log->good_size = off + (off_t) end;
        if (end == 0) {
                /* Only a fragment: the very first record was torn; the chain starts at genesis. */
                log->torn = true;
                return 0;
        }
        size_t lend = end - 1, start = lend;
        while (start > 0 && buf[start - 1] != '\n')
                start--;
        if (start == 0 && off != 0)
                return -EBADMSG; /* last line longer than the limit */
        AuditRecord rec = {};
        int r = audit_record_parse_line(buf + start, lend - start, &rec, NULL);
        if (r < 0)
                return -EBADMSG;
        _cleanup_json_ _unused_ json_t *j = rec.json;
        if (!streq(rec.pod, log->pod) || !record_signature_ok(&rec, log->pk) || rec.seq == 0)
                return -EBADMSG;
        if (rec.is_seal)
                return -ESTALE; /* a sealed log is final: bytes after a seal are never "repaired" */
        log->seq = rec.seq;
        sha256_hex(buf + start, lend - start, log->prev);
        log->torn = (off_t) win != (off_t) end;
        return 0;
}

static int append_locked(AuditLog *log, json_t *rec, uint64_t *ret_seq);

/* Called with the lock held when log->torn: cut the bytes past good_size (the unterminated
 * remains of a line we failed to write, or that a crash cut) and record the cut in a signed
 * repair record. Only bytes after our own last good record are touched. */
static int repair_locked(AuditLog *log, const char *why) {
        struct stat st;
        char h[65];
        if (fstat(log->fd, &st) < 0)
                return -errno;
        if (st.st_size < log->good_size) {
                /* Someone removed records we wrote: that is not a torn line; never paper over it. */
                log->broken = true;
                return -EIO;
        }
        uint64_t cut = (uint64_t) (st.st_size - log->good_size);
        if (cut > AUDIT_LINE_MAX + 1) {
                log->broken = true;
                return -EIO;
        }
        _cleanup_free_ char *frag = xmalloc(cut + 1);
        if (cut > 0) {
                ssize_t n = pread(log->fd, frag, cut, log->good_size);
                if (n < 0)
                        return -errno;
                if ((uint64_t) n != cut)
                        return -EIO;
        }
        sha256_hex(frag, cut, h);
        if (cut > 0 && ftruncate(log->fd, log->good_size) < 0)
                return -errno;
        log->torn = false;
        _cleanup_json_ json_t *rep = json_object();
        json_object_set_new(rep, "actor", json_string("nucleus-node"));
        json_object_set_new(rep, "op", json_string(AUDIT_REPAIR_OP));
        json_object_set_new(rep, "decision", json_string("info"));
        json_object_set_new(rep, "kind", json_string(why));
        json_object_set_new(rep, "cut_bytes", json_integer((json_int_t) cut));
        json_object_set_new(rep, "cut_sha256", json_string(h));
        return append_locked(log, rep, NULL);
}

int audit_log_open_full(
        const char *path, const char *pod, const uint8_t secret_key[64], AuditLog **ret, bool *ret_repaired) {
        int r;
        if (sodium_init() < 0)
                return -EIO;
        if (!pod || !pod_ok(pod))
                return -EINVAL;
        _cleanup_close_ int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        AuditLog *log = xnew0(AuditLog, 1);
        log->fd = TAKE_FD(fd);
        log->pod = xstrdup(pod);
        memcpy(log->sk, secret_key, sizeof(log->sk));
        crypto_sign_ed25519_sk_to_pk(log->pk, log->sk);
        audit_genesis(pod, log->prev);
        pthread_mutex_init(&log->lock, NULL);
        r = resume_tail(log);
        bool repaired = false;
        if (r >= 0 && log->torn) {
                r = repair_locked(log, "torn_tail");
                repaired = r >= 0;
        }
        if (r < 0) {
                audit_log_free(log);
                return r;
        }
        if (ret_repaired)
                *ret_repaired = repaired;
        *ret = log;
        return 0;
}

int audit_log_open(const char *path, const char *pod, const uint8_t secret_key[64], AuditLog **ret) {
        return audit_log_open_full(path, pod, secret_key, ret, NULL);
}

AuditLog *audit_log_free(AuditLog *log) {
        if (!log)
                return NULL;
        safe_close(log->fd);
        free(log->pod);
        sodium_memzero(log->sk, sizeof(log->sk));
        pthread_mutex_destroy(&log->lock);
        free(log);
        return NULL;
}

uint64_t audit_log_count(AuditLog *log) {
        pthread_mutex_lock(&log->lock);
        uint64_t n = log->seq;
        pthread_mutex_unlock(&log->lock);
        return n;
}

/* Called with the lock held: add seq/prev/pod/time, sign, write, sync, advance the chain. */
static int append_locked(AuditLog *log, json_t *rec, uint64_t *ret_seq) {
        char ts[32];
        int r;
        if (log->sealed)
                return -ESTALE;
        if (log->broken)
                return -EIO;
        if (log->torn) {
                r = repair_locked(log, "write_failed");
                if (r < 0)
                        return r;
        }
        uint64_t seq = log->seq + 1;
        json_object_set_new(rec, "seq", json_integer((json_int_t) seq));
        json_object_set_new(rec, "prev", json_string(log->prev));
        json_object_set_new(rec, "pod", json_string(log->pod));
        json_object_set_new(rec, "time", json_string(format_timestamp_rfc3339(ts, now_usec(CLOCK_REALTIME))));
        _cleanup_free_ char *line = sign_record(rec, log->sk);
        size_t len = strlen(line);
        if (len > AUDIT_LINE_MAX)
                return -E2BIG;
        char next_prev[65];
        sha256_hex(line, len, next_prev);
        _cleanup_free_ char *out = xasprintf("%s\n", line);
        /* One write of the whole line on an O_APPEND fd, then fdatasync: a record is durable
         * before the caller acts on it being logged. */
        r = loop_write(log->fd, out, len + 1);
        if (r >= 0 && fdatasync(log->fd) < 0)
                r = -errno;
        if (r < 0) {
                /* Whatever part of the line reached the file is cut (and the cut recorded)
                 * before the next record; until then the chain still ends at good_size. */
                log->torn = true;
                return r;
        }
        log->good_size += (off_t) (len + 1);
        log->seq = seq;
        memcpy(log->prev, next_prev, sizeof(next_prev));
        if (ret_seq)
                *ret_seq = seq;
        return 0;
}

int audit_log_append(AuditLog *log, const AuditEvent *ev, uint64_t *ret_seq) {
        char h[65];
        if (!ev || !ev->actor || !ev->op || !ev->decision)
                return -EINVAL;
        if (!printable(ev->actor, AUDIT_ACTOR_MAX, true) || !token_ok(ev->op, AUDIT_OP_MAX) ||
            streq(ev->op, AUDIT_SEAL_OP) || streq(ev->op, AUDIT_REPAIR_OP) || !decision_ok(ev->decision) ||
            (ev->detail && !json_is_object(ev->detail)) || (ev->kind && !token_ok(ev->kind, AUDIT_KIND_MAX)) ||
            (ev->args && ev->args_sha256) || (ev->args_sha256 && !hex64(ev->args_sha256)) ||
            (ev->result && ev->result_sha256) || (ev->result_sha256 && !hex64(ev->result_sha256)))
                return -EINVAL;
        _cleanup_json_ json_t *rec = json_object();
        json_object_set_new(rec, "actor", json_string(ev->actor));
        json_object_set_new(rec, "op", json_string(ev->op));
        json_object_set_new(rec, "decision", json_string(ev->decision));
        if (ev->kind)
                json_object_set_new(rec, "kind", json_string(ev->kind));
        if (ev->args) {
                _cleanup_free_ char *t = json_dump_canonical(ev->args);
                sha256_hex(t, strlen(t), h);
                json_object_set_new(rec, "args_sha256", json_string(h));
        } else if (ev->args_sha256)
                json_object_set_new(rec, "args_sha256", json_string(ev->args_sha256));
        if (ev->result) {
                sha256_hex(ev->result, ev->result_len, h);
                json_object_set_new(rec, "result_sha256", json_string(h));
        } else if (ev->result_sha256)
                json_object_set_new(rec, "result_sha256", json_string(ev->result_sha256));
        if (ev->request_seq)
                json_object_set_new(rec, "request_seq", json_integer((json_int_t) ev->request_seq));
        if (ev->detail)
                json_object_set_new(rec, "detail", json_deep_copy(ev->detail));
        if (!json_object_get(rec, "actor")) /* json_string() refuses invalid UTF-8 */
                return -EINVAL;

        pthread_mutex_lock(&log->lock);
        int r = append_locked(log, rec, ret_seq);
        pthread_mutex_unlock(&log->lock);
        return r;
}

int audit_log_seal(AuditLog *log) {
        _cleanup_json_ json_t *rec = json_object();
        pthread_mutex_lock(&log->lock);
        json_object_set_new(rec, "actor", json_string("nucleus-node"));
        json_object_set_new(rec, "op", json_string(AUDIT_SEAL_OP));
        json_object_set_new(rec, "decision", json_string("info"));
        json_object_set_new(rec, "count", json_integer((json_int_t) log->seq));
        int r = append_locked(log, rec, NULL);
        if (r >= 0)
                log->sealed = true;
        pthread_mutex_unlock(&log->lock);
        return r;
}

int audit_log_answer_interrupted(AuditLog *log, const char *path, const char *why) {
        _cleanup_free_ char *data = NULL;
        size_t n = 0;
        int r = read_full_file_at(AT_FDCWD, path, AUDIT_FILE_MAX, &data, &n);
        if (r < 0)
                return r;
        /* Pass 1: requests in order; pass 2 (same loop): answers remove them. */
        _cleanup_json_ json_t *open_reqs = json_object(); /* seq (text) -> op */
        const char *p = data, *end = data + n;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                if (!nl)
                        break;
                AuditRecord rec = {};
                if (audit_record_parse_line(p, (size_t) (nl - p), &rec, NULL) >= 0) {
                        _cleanup_json_ _unused_ json_t *j = rec.json;
                        const char *dec = json_string_value(json_object_get(rec.json, "decision"));
                        json_t *answers = json_object_get(rec.json, "request_seq");
                        char key[24];
                        if (dec && streq(dec, "request")) {
                                snprintf(key, sizeof key, "%" PRIu64, rec.seq);
                                json_object_set_new(open_reqs, key, json_string(rec.op));
                        } else if (json_is_integer(answers)) {
                                snprintf(key, sizeof key, "%" PRIu64, (uint64_t) json_integer_value(answers));
                                json_object_del(open_reqs, key);
                        }
                }
                p = nl + 1;
        }
        int appended = 0;
        const char *key;
        json_t *op;
        json_object_foreach(open_reqs, key, op) {
                uint64_t seq = strtoull(key, NULL, 10);
                AuditEvent ev = {
                        .actor = "nucleus-node",
                        .op = json_string_value(op),
                        .decision = "error",
                        .kind = "interrupted",
                        .request_seq = seq,
                        .result = why,
                        .result_len = strlen(why),
                };
                r = audit_log_append(log, &ev, NULL);
                if (r < 0)
                        return r;
                appended++;
        }
        return appended;
}

void audit_verify_report_done(AuditVerifyReport *r) {
        if (!r)
                return;
        r->pod = mfree(r->pod);
        r->reason = mfree(r->reason);
}

_printf_(4, 5) static void report_bad(AuditVerifyReport *rep, uint64_t seq, unsigned line, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        rep->valid = false;
        rep->bad_seq = seq;
        rep->bad_line = line;
        free(rep->reason);
        rep->reason = xvasprintf(fmt, ap);
        va_end(ap);
}

int audit_verify_buffer(
        const char *data, size_t size, const uint8_t public_key[32], unsigned flags, AuditVerifyReport *rep) {
        char prev[65] = {};
        uint64_t expect_seq = 1, last_seq = 0;
        unsigned lineno = 0;
        const char *p = data, *end = data + size;

        if (sodium_init() < 0)
                return -EIO;
        *rep = (AuditVerifyReport){ .valid = true };

        while (p < end) {
                lineno++;
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                if (!nl) {
                        report_bad(
                                rep,
                                expect_seq,
                                lineno,
                                "line %u: truncated record (no final newline) after seq %" PRIu64,
                                lineno,
                                last_seq);
                        return 0;
                }
                size_t len = (size_t) (nl - p);
                AuditRecord rec = {};
                _cleanup_free_ char *err = NULL;
                if (audit_record_parse_line(p, len, &rec, &err) < 0) {
                        report_bad(
                                rep,
                                expect_seq,
                                lineno,
                                "line %u (expected seq %" PRIu64 "): %s",
                                lineno,
                                expect_seq,
                                err);
                        return 0;
                }
                _cleanup_json_ _unused_ json_t *j = rec.json;
                if (rep->sealed) {
                        report_bad(
                                rep,
                                rec.seq,
                                lineno,
                                "line %u: record seq %" PRIu64 " after the seal",
                                lineno,
                                rec.seq);
                        return 0;
                }
                if (rec.seq != expect_seq) {
                        report_bad(
                                rep,
                                rec.seq,
                                lineno,
                                "line %u: seq %" PRIu64 " where seq %" PRIu64 " was expected (records "
                                "missing, duplicated or "
                                "reordered)",
                                lineno,
                                rec.seq,
                                expect_seq);
                        return 0;
                }
                if (!rep->pod) {
                        rep->pod = xstrdup(rec.pod);
                        audit_genesis(rec.pod, prev);
                } else if (!streq(rep->pod, rec.pod)) {
                        report_bad(
                                rep,
                                rec.seq,
                                lineno,
                                "line %u: seq %" PRIu64 " belongs to pod %s, not %s",
                                lineno,
                                rec.seq,
                                rec.pod,
                                rep->pod);
                        return 0;
                }
                if (!streq(rec.prev, prev)) {
                        report_bad(
                                rep,
                                rec.seq,
                                lineno,
                                "line %u: seq %" PRIu64 " does not chain to the previous record (prev %s, "
                                "expected %s)",
                                lineno,
                                rec.seq,
                                rec.prev,
                                prev);
                        return 0;
                }
                if (!record_signature_ok(&rec, public_key)) {
                        report_bad(
                                rep,
                                rec.seq,
                                lineno,
                                "line %u: seq %" PRIu64 " has a bad signature",
                                lineno,
                                rec.seq);
                        return 0;
                }
                if (rec.is_seal) {
                        if (rec.count != rec.seq - 1) {
                                report_bad(
                                        rep,
                                        rec.seq,
                                        lineno,
                                        "line %u: seal seq %" PRIu64 " claims %" PRIu64 " records, log has "
                                        "%" PRIu64,
                                        lineno,
                                        rec.seq,
                                        rec.count,
                                        rec.seq - 1);
                                return 0;
                        }
                        rep->sealed = true;
                } else {
                        rep->records++;
                        if (rec.is_repair) {
                                rep->repairs++;
                                rep->cut_bytes += rec.cut_bytes;
                        }
                }
                sha256_hex(p, len, prev);
                last_seq = rec.seq;
                expect_seq++;
                p = nl + 1;
        }
        if (!rep->sealed && !(flags & AUDIT_VERIFY_ALLOW_UNSEALED)) {
                if (last_seq == 0)
                        report_bad(rep, 0, 0, "log is empty (no records, no seal)");
                else
                        report_bad(
                                rep,
                                last_seq,
                                lineno,
                                "log is not sealed: records after seq %" PRIu64 " may have been cut off "
                                "(line %u is the last)",
                                last_seq,
                                lineno);
                return 0;
        }
        return 0;
}

int audit_verify_file(const char *path, const uint8_t public_key[32], unsigned flags, AuditVerifyReport *report) {
        _cleanup_free_ char *data = NULL;
        size_t n = 0;
        int r = read_full_file_at(AT_FDCWD, path, AUDIT_FILE_MAX, &data, &n);
        if (r < 0)
                return r;
        return audit_verify_buffer(data, n, public_key, flags, report);
}
