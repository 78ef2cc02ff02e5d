/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secret files on Linux (see secrets.h). Files are created with their final mode at the
 * first instant (O_EXCL, explicit mode, fchmod against odd umasks) and loaded only after
 * fstat() checks on the opened fd (owner, mode, regular file), never on the path.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "secrets.h"
#include "string-util.h"
#include "time-util.h"

static const char *const secret_kind_table[_SECRET_KIND_MAX] = {
        [SECRET_NODE] = "node",
        [SECRET_APPROVER] = "approver",
        [SECRET_AUDIT] = "audit",
};

DEFINE_STRING_TABLE_LOOKUP(secret_kind, SecretKind)

const char *secret_kind_file(SecretKind k) {
        static const char *const t[_SECRET_KIND_MAX] = { "node.key", "approver.key", "audit.key" };
        return k >= 0 && k < _SECRET_KIND_MAX ? t[k] : NULL;
}

const char *secret_kind_public_file(SecretKind k) {
        static const char *const t[_SECRET_KIND_MAX] = { NULL, "approver.pub", "audit.pub" };
        return k >= 0 && k < _SECRET_KIND_MAX ? t[k] : NULL;
}

#define METADATA_FILE "secrets-metadata.json"

#define SET_ERR(...)                                      \
        do {                                              \
                if (reterr)                               \
                        *reterr = xasprintf(__VA_ARGS__); \
        } while (0)

int secret_dir_default(char **ret) {
        const char *e;
        if (geteuid() == 0) {
                *ret = xstrdup("/etc/nucleus/secrets");
                return 0;
        }
        e = secure_getenv("XDG_CONFIG_HOME");
        if (!isempty(e) && e[0] == '/') {
                *ret = xasprintf("%s/nucleus/secrets", e);
                return 0;
        }
        e = secure_getenv("HOME");
        if (isempty(e) || e[0] != '/')
                return -ENOENT;
        *ret = xasprintf("%s/.config/nucleus/secrets", e);
        return 0;
}

int secret_dir_ensure(const char *dir, char **reterr) {
        struct stat st;
        int r;

        if (isempty(dir) || dir[0] != '/') {
                SET_ERR("secret directory must be an absolute path");
                return -EINVAL;
        }
        r = mkdir_parents_at(AT_FDCWD, dir, 0700);
        if (r < 0) {
                SET_ERR("cannot create parents of %s: %s", dir, strerror(-r));
                return r;
        }
        if (mkdir(dir, 0700) >= 0)
                (void) chmod(dir, 0700); /* a umask may have removed owner bits: set exactly */
        else if (errno != EEXIST) {
                r = -errno;
                SET_ERR("cannot create %s: %s", dir, strerror(-r));
                return r;
        }
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                r = -errno;
                SET_ERR("cannot open %s: %s", dir, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_uid != geteuid()) {
                SET_ERR("%s is owned by uid %u, not by us (uid %u); fix: chown %u %s",
                        dir,
                        (unsigned) st.st_uid,
                        (unsigned) geteuid(),
                        (unsigned) geteuid(),
                        dir);
                return -EPERM;
        }
        if (st.st_mode & 077) {
                SET_ERR("%s has mode %04o, group/others may access it; fix: chmod 700 %s",
                        dir,
                        (unsigned) (st.st_mode & 07777),
                        dir);
                return -EPERM;
        }
        return 0;
}

static int fsync_parent(const char *path) {
        _cleanup_free_ char *d = xstrdup(path);
        char *slash = strrchr(d, '/');
        if (!slash)
                return 0;
        if (slash == d)
                slash[1] = 0;
        else
                *slash = 0;
        _cleanup_close_ int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return fsync(fd) < 0 ? -errno : 0;
}

int secret_write_new(const char *path, const void *data, size_t n) {
        int r;
        /* Mode 0600 at creation: the file is never readable by others, not even briefly.
         * fchmod undoes a umask that removed owner bits (umask can only narrow). */
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, 0600) < 0 || (r = loop_write(fd, data, n)) < 0 || fsync(fd) < 0) {
                r = errno > 0 ? -errno : -EIO;
                (void) unlink(path);
                return r;
        }
        return fsync_parent(path);
}

static int write_replace(const char *dir, const char *name, const void *data, size_t n) {
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dfd < 0)
                return -errno;
        int r = write_file_atomic_at(dfd, name, data, n, 0600);
        if (r < 0)
                return r;
        return fsync(dfd) < 0 ? -errno : 0;
}

static int write_secret(const char *dir, const char *name, const void *data, size_t n, bool overwrite) {
        if (overwrite)
                return write_replace(dir, name, data, n);
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
        return secret_write_new(p, data, n);
}

int secret_load_file(const char *path, void *buf, size_t len, bool strict_perms, char **reterr) {
        struct stat st;
        int r;

        _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                if (r == -ELOOP)
                        SET_ERR("%s is a symlink; secret files must be regular files", path);
                else
                        SET_ERR("cannot open %s: %s", path, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode)) {
                SET_ERR("%s is not a regular file", path);
                return -EINVAL;
        }
        if (st.st_uid != geteuid() && st.st_uid != 0) {
                SET_ERR("%s is owned by uid %u, not by us (uid %u) or root; fix: chown %u %s",
                        path,
                        (unsigned) st.st_uid,
                        (unsigned) geteuid(),
                        (unsigned) geteuid(),
                        path);
                return -EPERM;
        }
        if ((strict_perms && (st.st_mode & 077)) || (st.st_mode & 022)) {
                SET_ERR("%s has mode %04o, %s; fix: chmod 600 %s",
                        path,
                        (unsigned) (st.st_mode & 07777),
                        (st.st_mode & 022) ? "group/others can write it" : "group/others can read it",
                        path);
                return -EPERM;
        }
        _cleanup_erase_free_ char *data = NULL;
        size_t n;
        r = read_full_fd(fd, SECRET_FILE_MAX, &data, &n);
        if (r < 0) {
                SET_ERR("cannot read %s: %s", path, strerror(-r));
                return r;
        }
        if (n > 0 && data[n - 1] == '\n')
                n--;
        size_t got = 0;
        const char *end = NULL;
        if (n != len * 2 || sodium_hex2bin(buf, len, data, n, NULL, &got, &end) != 0 || got != len ||
            end != data + n) {
                sodium_memzero(buf, len);
                SET_ERR("%s must hold exactly %zu hex characters and a newline", path, len * 2);
                return -EINVAL;
        }
        return 0;
}

static size_t secret_size(SecretKind k) {
        return k == SECRET_NODE ? 32 : crypto_sign_SECRETKEYBYTES;
}

int secret_load(const char *dir, SecretKind k, void *buf, size_t len, char **reterr) {
        if (k < 0 || k >= _SECRET_KIND_MAX || len != secret_size(k))
                return -EINVAL;
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, secret_kind_file(k));
        return secret_load_file(p, buf, len, true, reterr);
}

int secret_load_public(const char *dir, SecretKind k, uint8_t buf[32], char **reterr) {
        if (k != SECRET_APPROVER && k != SECRET_AUDIT)
                return -EINVAL;
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, secret_kind_public_file(k));
        return secret_load_file(p, buf, 32, false, reterr);
}

static char *hex_line(const uint8_t *p, size_t n) {
        char *s = xmalloc(n * 2 + 2);
        sodium_bin2hex(s, n * 2 + 1, p, n);
        s[n * 2] = '\n';
        s[n * 2 + 1] = 0;
        return s;
}

static int write_material(const char *dir, SecretKind k, bool overwrite) {
        uint8_t sk[crypto_sign_SECRETKEYBYTES], pk[crypto_sign_PUBLICKEYBYTES];
        int r;

        if (sodium_init() < 0)
                return -EIO;
        if (k == SECRET_NODE) {
                randombytes_buf(sk, 32);
                _cleanup_erase_free_ char *h = hex_line(sk, 32);
                sodium_memzero(sk, sizeof(sk));
                return write_secret(dir, secret_kind_file(k), h, strlen(h), overwrite);
        }
        crypto_sign_keypair(pk, sk);
        _cleanup_erase_free_ char *hs = hex_line(sk, sizeof(sk));
        _cleanup_free_ char *hp = hex_line(pk, sizeof(pk));
        sodium_memzero(sk, sizeof(sk));
        /* Secret first: a crash in between leaves a key without a public half, which
         * secret_generate(overwrite) repairs; never a public key without its secret. */
        r = write_secret(dir, secret_kind_file(k), hs, strlen(hs), overwrite);
        if (r < 0)
                return r;
        return write_secret(dir, secret_kind_public_file(k), hp, strlen(hp), true);
}

int secret_generate(const char *dir, SecretKind k, bool overwrite, int64_t now, char **reterr) {
        int r;
        if (k < 0 || k >= _SECRET_KIND_MAX)
                return -EINVAL;
        r = secret_dir_ensure(dir, reterr);
        if (r < 0)
                return r;
        r = write_material(dir, k, overwrite);
        if (r == -EEXIST) {
                SET_ERR("%s/%s already exists (use rotation to replace it)", dir, secret_kind_file(k));
                return r;
        }
        if (r < 0) {
                SET_ERR("cannot write %s/%s: %s", dir, secret_kind_file(k), strerror(-r));
                return r;
        }
        SecretMetadata m = { .created = now, .due = now + SECRET_ROTATION_DAYS * 86400LL, .version = 1 };
        r = secret_metadata_set(dir, k, &m);
        if (r < 0)
                SET_ERR("cannot write %s/%s: %s", dir, METADATA_FILE, strerror(-r));
        return r;
}

int secret_rotate(const char *dir, SecretKind k, int64_t now, char **reterr) {
        SecretMetadata m = {};
        int r;
        if (k < 0 || k >= _SECRET_KIND_MAX)
                return -EINVAL;
        r = secret_dir_ensure(dir, reterr);
        if (r < 0)
                return r;
        r = secret_metadata_get(dir, k, &m);
        if (r < 0 && r != -ENOENT) {
                SET_ERR("cannot read %s/%s: %s", dir, METADATA_FILE, strerror(-r));
                return r;
        }
        r = write_material(dir, k, true);
        if (r < 0) {
                SET_ERR("cannot write %s/%s: %s", dir, secret_kind_file(k), strerror(-r));
                return r;
        }
        m.version = m.version == 0 ? 2 : m.version + 1; /* no metadata: an unknown v1 existed */
        m.created = now;
        m.due = now + SECRET_ROTATION_DAYS * 86400LL;
        r = secret_metadata_set(dir, k, &m);
        if (r < 0)
                SET_ERR("cannot write %s/%s: %s", dir, METADATA_FILE, strerror(-r));
        return r;
}

static int parse_rfc3339(const char *s, int64_t *ret) {
        struct tm tm = {};
        const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!e)
                return -EINVAL;
        if (*e == '.') {
                e++;
                while (*e >= '0' && *e <= '9')
                        e++;
        }
        if (!streq(e, "Z"))
                return -EINVAL;
        time_t t = timegm(&tm);
        if (t == (time_t) -1)
                return -EINVAL;
        *ret = (int64_t) t;
        return 0;
}

static int metadata_load(const char *dir, json_t **ret) {
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, METADATA_FILE), *data = NULL;
        size_t n;
        int r = read_full_file_at(AT_FDCWD, p, 65536, &data, &n);
        if (r == -ENOENT) {
                *ret = json_object();
                return 0;
        }
        if (r < 0)
                return r;
        json_t *j = NULL;
        r = json_parse_strict(data, n, 65536, &j, NULL);
        if (r < 0)
                return -EBADMSG;
        if (!json_is_object(j)) {
                json_decref(j);
                return -EBADMSG;
        }
        *ret = j;
        return 0;
}

int secret_metadata_get(const char *dir, SecretKind k, SecretMetadata *ret) {
        _cleanup_json_ json_t *j = NULL;
        int r = metadata_load(dir, &j);
        if (r < 0)
                return r;
        json_t *e = json_object_get(j, secret_kind_to_string(k));
        if (!e)
                return -ENOENT;
        json_t *c = json_object_get(e, "created"), *d = json_object_get(e, "due"),
               *v = json_object_get(e, "version");
        SecretMetadata m = {};
        if (!json_is_string(c) || !json_is_string(d) || !json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > UINT32_MAX || parse_rfc3339(json_string_value(c), &m.created) < 0 ||
            parse_rfc3339(json_string_value(d), &m.due) < 0)
                return -EBADMSG;
        m.version = (uint32_t) json_integer_value(v);
        *ret = m;
        return 0;
}

int secret_metadata_set(const char *dir, SecretKind k, const SecretMetadata *m) {
        _cleanup_json_ json_t *j = NULL;
        char c[32], d[32];
        int r = metadata_load(dir, &j);
        if (r < 0)
                return r;
        format_timestamp_rfc3339(c, (usec_t) m->created * USEC_PER_SEC);
        format_timestamp_rfc3339(d, (usec_t) m->due * USEC_PER_SEC);
        json_object_set_new(
                j,
                secret_kind_to_string(k),
                json_pack("{s:s,s:s,s:I}", "created", c, "due", d, "version", (json_int_t) m->version));
        char *text = json_dumps(j, JSON_SORT_KEYS | JSON_INDENT(2));
        if (!text)
                oom_abort();
        _cleanup_free_ char *t = xasprintf("%s\n", text);
        free(text);
        return write_replace(dir, METADATA_FILE, t, strlen(t));
}

int64_t secret_metadata_days_left(const SecretMetadata *m, int64_t now) {
        return (m->due - now) / 86400;
}
