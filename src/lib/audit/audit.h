/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Audit log (DESIGN.md §7; format in docs/audit.md). One canonical-JSON record per line:
 *   {"actor","args_sha256"?,"decision","kind"?,"op","pod","prev","result_sha256"?,"seq","sig","time"}
 * seq counts from 1; prev = hex SHA-256 of the previous line's bytes (without "\n"); the first
 * record's prev is hex SHA-256("nucleus-audit-genesis-v1\n" + pod), so a log cannot be
 * spliced onto another pod's; sig = hex Ed25519 signature (128 hex) over the
 * canonical JSON of the record without "sig". Closing appends a seal record
 *   {"count":N,"op":"seal","decision":"info",...} with seq N+1, so a cut tail is detected.
 * A write that fails (full disk, I/O error) or a crash mid-write can leave an unterminated
 * last line; the writer cuts exactly that fragment (never a complete line, never anything
 * after a seal) and appends a signed repair record
 *   {"op":"audit_repair","cut_bytes":N,"cut_sha256":H,"decision":"info","kind":...}
 * so the verifier reports the log as "repaired", never silently valid.
 * The writer is the node (trusted); the verifier treats the file as hostile.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUDIT_LINE_MAX 65536U /* bytes per record line, without "\n" */
#define AUDIT_ACTOR_MAX 256U
#define AUDIT_OP_MAX 64U
#define AUDIT_KIND_MAX 64U
#define AUDIT_POD_MAX 128U
#define AUDIT_SEAL_OP "seal"
#define AUDIT_REPAIR_OP "audit_repair"
#define AUDIT_GENESIS_DOMAIN "nucleus-audit-genesis-v1\n"

typedef struct AuditLog AuditLog;

/* One event to record. Strings are copied. Digest fields: give either the data (hashed as
 * canonical JSON / raw bytes) or a precomputed 64-hex digest, or neither (field omitted). */
typedef struct AuditEvent {
        const char *actor;    /* required: X-Nucleus-Actor, "node", "guest", ... (printable) */
        const char *op;       /* required: [a-z0-9_.-]{1,64}, e.g. "read_files", "pod_create" */
        const char *decision; /* required: "allow" | "deny" | "error" | "info" | "request" */
        const char *kind;     /* optional error kind (docs/channel.md "Error kinds"), e.g. "path_denied" */
        const json_t *args;   /* optional: recorded as args_sha256 of its canonical JSON */
        const char *args_sha256; /* optional alternative to args (64 lowercase hex) */
        const void *result;      /* optional: recorded as result_sha256 of these bytes */
        size_t result_len;
        const char *result_sha256; /* optional alternative to result */
        uint64_t request_seq;      /* optional: seq of the "request" record this one answers (0: none) */
        const json_t *detail;      /* optional: shown arguments (already redacted by the caller),
                                    * recorded verbatim as "detail"; a JSON object */
} AuditEvent;

/*
 * audit_log_open: open (create 0600, or resume) the log at path for pod.
 * Arguments: secret_key: Ed25519 64-byte secret key (the node's audit key; copied).
 * Returns: 0, or -EBADMSG if an existing file's last complete line is not a record of this
 *   pod signed by this key (the chain cannot be continued safely) or an unterminated tail is
 *   longer than one record, -ESTALE if it is sealed (also when bytes follow the seal), -ENOSPC
 *   and other -errno. Resuming reads only the tail (<= 2 * (AUDIT_LINE_MAX + 1) bytes).
 * Notes: an unterminated last line (crash or full disk mid-write) is cut and a signed
 *   "audit_repair" record saying how many bytes were cut (and their digest) is appended;
 *   *ret_repaired (optional) tells whether that happened. Complete lines are never altered.
 */
int audit_log_open(const char *path, const char *pod, const uint8_t secret_key[64], AuditLog **ret);
int audit_log_open_full(
        const char *path, const char *pod, const uint8_t secret_key[64], AuditLog **ret, bool *ret_repaired);

/*
 * audit_log_append: chain, sign and append one record; thread-safe (one lock around compute +
 * write + fdatasync, so the file order is the chain order).
 * Returns: 0 and the record's seq (ret_seq optional) once the record is on disk (fdatasync);
 *   -EINVAL for bad fields; -ESTALE after seal; -errno from write/fdatasync. After a failed
 *   write the next append first cuts whatever part of the failed line reached the file and
 *   appends an "audit_repair" record (so a full disk heals when space returns); if that is
 *   impossible (the file shrank below the last good record) the log refuses for good (-EIO).
 */
int audit_log_append(AuditLog *log, const AuditEvent *ev, uint64_t *ret_seq);

/* Append the seal (count = records before it); afterwards appends fail with -ESTALE. */
int audit_log_seal(AuditLog *log);

/*
 * audit_log_answer_interrupted: for every "request" record in the log at path (the file log
 * writes) that no later record answers (request_seq), append an answer
 *   {"op": <its op>, "decision":"error", "kind":"interrupted", "request_seq": N,
 *    "result_sha256": sha256(why), "actor":"nucleus-node"}
 * Used at node start for pods a killed node left behind. Reads the whole file (<= 1 GiB);
 * lines that do not parse are skipped (the verifier judges them). Returns the number of
 * records appended, or -errno.
 */
int audit_log_answer_interrupted(AuditLog *log, const char *path, const char *why);

/* Records written so far (excluding a seal). */
uint64_t audit_log_count(AuditLog *log);

AuditLog *audit_log_free(AuditLog *log);
static inline void audit_log_freep(AuditLog **l) {
        if (*l)
                *l = audit_log_free(*l);
}

/* Hex genesis prev value for pod (65 bytes). */
void audit_genesis(const char *pod, char ret[65]);

/* A parsed record (borrowed strings point into `json`, which the caller frees). */
typedef struct AuditRecord {
        json_t *json;
        uint64_t seq;
        const char *pod;
        const char *prev;
        const char *op;
        const char *sig;
        bool is_seal;
        bool is_repair;
        uint64_t count;     /* seal only */
        uint64_t cut_bytes; /* repair only */
} AuditRecord;

/*
 * audit_record_parse_line: strict syntax check of one line (no "\n"): canonical JSON object
 * with exactly the known fields and valid types. Does not check the signature or chain.
 * Returns 0 (ret->json owned by the caller) or -EBADMSG with *reterr (malloc'd).
 */
int audit_record_parse_line(const char *line, size_t len, AuditRecord *ret, char **reterr);

/* Verification report. */
typedef struct AuditVerifyReport {
        bool valid;
        uint64_t records; /* records checked and valid (excluding the seal) */
        bool sealed;
        uint64_t repairs;   /* signed "audit_repair" records (a torn tail was cut); the log is
                             * then "repaired", not plainly valid */
        uint64_t cut_bytes; /* total bytes those records say were cut */
        char *pod;          /* pod id of the log (malloc'd; NULL if none) */
        uint64_t bad_seq;   /* first bad record's seq (0 if not known / valid) */
        unsigned bad_line;  /* its 1-based line number (0 if valid) */
        char *reason;       /* malloc'd human-readable reason; NULL when valid */
} AuditVerifyReport;

void audit_verify_report_done(AuditVerifyReport *r);

typedef enum AuditVerifyFlags {
        AUDIT_VERIFY_ALLOW_UNSEALED = 1 << 0, /* a live log without seal is acceptable */
} AuditVerifyFlags;

/*
 * audit_verify_buffer / audit_verify_file: check syntax, seq order, chain, pod, signatures
 * (with public_key, 32 bytes) and seal of a whole log.
 * Returns: 0 when the check ran (see report->valid), -errno when the file could not be read.
 */
int audit_verify_buffer(
        const char *data, size_t size, const uint8_t public_key[32], unsigned flags, AuditVerifyReport *report);
int audit_verify_file(const char *path, const uint8_t public_key[32], unsigned flags, AuditVerifyReport *report);
