/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secret store (docs/config.md "Secret store"). Linux: a 0700 directory
 * ($XDG_CONFIG_HOME/nucleus/secrets, ~/.config/nucleus/secrets, or /etc/nucleus/secrets for
 * root) holding 0600 hex files created with O_CREAT|O_EXCL|O_NOFOLLOW and the final mode from
 * the first instant:
 *   node.key      64 hex   (32-byte HMAC key for request signing)
 *   approver.key  128 hex  (Ed25519 secret key, libsodium 64-byte form) / approver.pub 64 hex
 *   audit.key     128 hex  / audit.pub 64 hex
 * each followed by "\n", plus rotation metadata in secrets-metadata.json (same dir, 0600):
 *   {"node":{"created":"RFC3339","due":"RFC3339","version":1}, "approver":{...}, "audit":{...}}
 * Loading refuses files readable or writable by group/others or owned by another user, with a
 * message naming the fix. macOS: the Keychain through /usr/bin/security (secrets-keychain.c,
 * compiled on Darwin only, untested here).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SECRET_ROTATION_DAYS 90
#define SECRET_FILE_MAX 4096U

typedef enum SecretKind {
        SECRET_NODE,     /* node.key: 32 bytes */
        SECRET_APPROVER, /* approver.key (64 bytes) + approver.pub (32 bytes) */
        SECRET_AUDIT,    /* audit.key (64 bytes) + audit.pub (32 bytes) */
        _SECRET_KIND_MAX,
        _SECRET_KIND_INVALID = -22,
} SecretKind;

/* "node", "approver", "audit" */
const char *secret_kind_to_string(SecretKind k);
SecretKind secret_kind_from_string(const char *s);
/* "node.key", "approver.key", "audit.key" and the public halves ("approver.pub", NULL for node). */
const char *secret_kind_file(SecretKind k);
const char *secret_kind_public_file(SecretKind k);

typedef struct SecretMetadata {
        int64_t created; /* unix s */
        int64_t due;     /* unix s: created + SECRET_ROTATION_DAYS */
        uint32_t version;
} SecretMetadata;

/* Default directory: root -> /etc/nucleus/secrets; else $XDG_CONFIG_HOME/nucleus/secrets,
 * else $HOME/.config/nucleus/secrets. Returns 0 and a malloc'd path, -ENOENT without HOME. */
int secret_dir_default(char **ret);

/* Create dir (and missing parents, 0700) if needed; verify it is a directory owned by us
 * with no group/other access. Returns 0, or -EPERM with *reterr naming the fix. */
int secret_dir_ensure(const char *dir, char **reterr);

/*
 * secret_generate: create fresh secret(s) of kind k in dir with metadata version 1.
 * Arguments: overwrite: replace existing files (atomically via rename) instead of failing.
 * Returns 0; -EEXIST if the key exists and !overwrite; other -errno. *reterr (optional).
 */
int secret_generate(const char *dir, SecretKind k, bool overwrite, int64_t now, char **reterr);

/* secret_rotate: new key material, metadata version + 1, created = now, due = now + 90 d. */
int secret_rotate(const char *dir, SecretKind k, int64_t now, char **reterr);

/*
 * secret_load_file: read a hex secret file of exactly `len` decoded bytes into buf.
 * Arguments: strict_perms: refuse group/other-readable files (true for secret halves; for
 *   public keys pass false: then only group/other-*writable* files and foreign owners are
 *   refused, since a writable public key could be swapped).
 * Returns 0, or -EPERM/-EINVAL/-ENOENT/... with *reterr (optional, malloc'd) explaining and
 *   naming the fix ("chmod 600 PATH").
 */
int secret_load_file(const char *path, void *buf, size_t len, bool strict_perms, char **reterr);

/* Same, relative to dir and by kind: the secret half (32 bytes for NODE, 64 otherwise). */
int secret_load(const char *dir, SecretKind k, void *buf, size_t len, char **reterr);
/* The public half of APPROVER/AUDIT (32 bytes). */
int secret_load_public(const char *dir, SecretKind k, uint8_t buf[32], char **reterr);

/* Create a brand-new file holding data (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600 from creation,
 * fsync file and directory). -EEXIST if present. */
int secret_write_new(const char *path, const void *data, size_t n);

/* Metadata. Missing file or entry -> -ENOENT. */
int secret_metadata_get(const char *dir, SecretKind k, SecretMetadata *ret);
int secret_metadata_set(const char *dir, SecretKind k, const SecretMetadata *m);
/* Whole days until due (negative when overdue). */
int64_t secret_metadata_days_left(const SecretMetadata *m, int64_t now);

#ifdef __APPLE__
/* Keychain (service "com.nucleus", account = kind name) via /usr/bin/security. The value
 * never appears on a command line: stores go through `security -i` reading the command on
 * stdin. UNTESTED: compiled on Darwin only (secrets-keychain.c). */
int secret_keychain_store(SecretKind k, const char *hex);
int secret_keychain_load(SecretKind k, char **ret_hex);
#endif
