/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OCI image archives as a rootfs: `docker save` / `podman save` output (manifest.json, a config
 * JSON, layer tars) and OCI image layout tars (oci-layout, index.json, blobs/sha256/...).
 *
 * The archive is untrusted. Its descriptions are parsed with jansson (image_oci_plan), every
 * blob is checked against the SHA-256 the manifest names, and each layer is applied by our own
 * write loop (image_oci_apply_layer): libarchive only decodes; every path is resolved with
 * openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) beneath the rootfs fd,
 * the last component is never followed, names with ".." or a leading "/" are refused, hard
 * links are made only between names inside the rootfs, setuid/setgid bits are stripped,
 * device nodes, fifos and sockets are dropped, and extended attributes (file capabilities
 * among them) are never written. Whiteouts (".wh.NAME", ".wh..wh..opq") are resolved the same
 * way. Nothing in the archive is ever run.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alloc-util.h"
#include "escape.h"
#include "fd-util.h"
#include "hash-util.h"
#include "image-internal.h"
#include "json-util.h"
#include "log.h"
#include "string-util.h"

#define OCI_SMALL_FILE_MAX (4u << 20)   /* a manifest, index or config */
#define OCI_SMALL_TOTAL_MAX (64u << 20) /* all of them together */
#define OCI_MAX_LAYERS 256
/* What an image may unpack to (file bytes, entries): a layer that decompresses without end
 * is refused rather than filling the host's disk. */
#define OCI_MAX_TREE_BYTES (UINT64_C(64) << 30)
#define OCI_MAX_ENTRIES (UINT64_C(4) << 20)
#define OCI_WHITEOUT ".wh."
#define OCI_OPAQUE ".wh..wh..opq"

static int fail(char **ret_err, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(char **ret_err, int r, const char *fmt, ...) {
        if (ret_err && !*ret_err) {
                va_list ap;
                va_start(ap, fmt);
                if (vasprintf(ret_err, fmt, ap) < 0)
                        *ret_err = NULL;
                va_end(ap);
        }
        return r;
}

void image_oci_plan_done(ImageOciPlan *p) {
        if (!p)
                return;
        p->format = NULL;
        p->layers = strv_free(p->layers);
        p->digests = strv_free(p->digests);
        p->config_digest = mfree(p->config_digest);
        p->tags = strv_free(p->tags);
}

/* ---- The descriptions ---------------------------------------------------------------------- */

static bool hex64(const char *s) {
        return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* "sha256:<64 lower-case hex>" -> the hex part; anything else (another algorithm) NULL. */
static const char *digest_hex(const char *d) {
        const char *h = d ? startswith(d, "sha256:") : NULL;
        return hex64(h) ? h : NULL;
}

/* Strip "./" prefixes, as tar writers differ in them. */
static const char *member_name(const char *n) {
        while (n && startswith(n, "./"))
                n += 2;
        return n;
}

static const ImageOciFile *file_find(const ImageOciFile *files, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (streq(files[i].name, name))
                        return &files[i];
        return NULL;
}

/* The blob with this digest, checked: its bytes hash to it (and have the size the descriptor
 * gives, when it gives one). */
static int blob_get(
        const ImageOciFile *files,
        size_t n,
        const char *hex,
        json_int_t size,
        const ImageOciFile **ret,
        char **ret_err) {
        _cleanup_free_ char *name = xasprintf("blobs/sha256/%s", hex);
        const ImageOciFile *f = file_find(files, n, name);
        char got[SHA256_HEX_SIZE];
        if (!f)
                return fail(ret_err, -ENOENT, "%s is not in the archive (or is larger than 4 MiB)", name);
        if (size >= 0 && (json_int_t) f->size != size)
                return fail(
                        ret_err,
                        -EBADMSG,
                        "%s holds %zu bytes, its descriptor says %lld",
                        name,
                        f->size,
                        (long long) size);
        sha256_hex(f->data, f->size, got);
        if (!streq(got, hex))
                return fail(ret_err, -EBADMSG, "%s: sha256 mismatch (the archive holds sha256:%s)", name, got);
        *ret = f;
        return 0;
}

static int parse_json(const ImageOciFile *f, json_t **ret, char **ret_err) {
        _cleanup_free_ char *e = NULL;
        if (json_parse_strict(f->data, f->size, OCI_SMALL_FILE_MAX, ret, &e) < 0 || !json_is_object(*ret)) {
                json_decref(*ret);
                *ret = NULL;
                return fail(ret_err, -EBADMSG, "%s: not a JSON object (%s)", f->name, e ?: "wrong type");
        }
        return 0;
}

/* The guest is x86_64 Linux: an image made for anything else would not run. Fields absent are
 * accepted (hand-made images often leave them out). */
static int check_platform(json_t *o, const char *where, char **ret_err) {
        const char *os = json_string_value(json_object_get(o, "os")),
                   *arch = json_string_value(json_object_get(o, "architecture"));
        if ((os && !streq(os, "linux")) || (arch && !streq(arch, "amd64")))
                return fail(
                        ret_err,
                        -EINVAL,
                        "%s: the image is for %s/%s; Nucleus pods are linux/amd64",
                        where,
                        os ?: "?",
                        arch ?: "?");
        return 0;
}

static void tags_from(json_t *arr, char ***tags) {
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v)
                if (json_is_string(v) && i < 16)
                        strv_extend(tags, json_string_value(v));
}

static int plan_docker(
        const ImageOciFile *files, size_t n, const ImageOciFile *mf, ImageOciPlan *p, char **ret_err) {
        _cleanup_json_ json_t *m = NULL, *cfg = NULL;
        _cleanup_free_ char *e = NULL;
        if (json_parse_strict(mf->data, mf->size, OCI_SMALL_FILE_MAX, &m, &e) < 0 || !json_is_array(m))
                return fail(ret_err, -EBADMSG, "manifest.json: not a JSON array (%s)", e ?: "wrong type");
        if (json_array_size(m) != 1)
                return fail(
                        ret_err,
                        -EINVAL,
                        "manifest.json: the archive holds %zu images; save exactly one",
                        json_array_size(m));
        json_t *img = json_array_get(m, 0);
        const char *config = member_name(json_string_value(json_object_get(img, "Config")));
        json_t *layers = json_object_get(img, "Layers");
        if (!config || !json_is_array(layers))
                return fail(ret_err, -EBADMSG, "manifest.json: the image needs \"Config\" and \"Layers\"");
        if (json_array_size(layers) > OCI_MAX_LAYERS)
                return fail(ret_err, -E2BIG, "manifest.json: more than %d layers", OCI_MAX_LAYERS);

        /* The config is named by its digest: "<hex>.json" (docker < 25) or "blobs/sha256/<hex>". */
        const char *b = strrchr(config, '/');
        b = b ? b + 1 : config;
        _cleanup_free_ char *hex = xstrndup(b, endswith(b, ".json") ? strlen(b) - 5 : strlen(b));
        if (!hex64(hex))
                return fail(ret_err, -EBADMSG, "manifest.json: Config '%s' is not named by its sha256", config);
        const ImageOciFile *cf = file_find(files, n, config);
        if (!cf)
                return fail(ret_err, -ENOENT, "manifest.json: Config %s is not in the archive", config);
        char got[SHA256_HEX_SIZE];
        sha256_hex(cf->data, cf->size, got);
        if (!streq(got, hex))
                return fail(
                        ret_err, -EBADMSG, "%s: sha256 mismatch (the archive holds sha256:%s)", config, got);
        int r = parse_json(cf, &cfg, ret_err);
        if (r < 0)
                return r;
        if ((r = check_platform(cfg, config, ret_err)) < 0)
                return r;
        json_t *rootfs = json_object_get(cfg, "rootfs");
        json_t *diff = json_object_get(rootfs, "diff_ids");
        if (!json_is_array(diff) || json_array_size(diff) != json_array_size(layers))
                return fail(
                        ret_err,
                        -EBADMSG,
                        "%s: rootfs.diff_ids must list one digest per layer (%zu layers)",
                        config,
                        json_array_size(layers));

        size_t i;
        json_t *v;
        json_array_foreach(layers, i, v) {
                const char *name = member_name(json_string_value(v));
                const char *d = digest_hex(json_string_value(json_array_get(diff, i)));
                if (isempty(name) || !d)
                        return fail(
                                ret_err,
                                -EBADMSG,
                                "manifest.json: layer %zu: a member name and a sha256 diff_id are needed",
                                i + 1);
                /* Newer docker stores layers as blobs named by their digest (uncompressed tars,
                 * so it equals the diff_id); older ones as <id>/layer.tar, whose bytes are the
                 * uncompressed tar the diff_id hashes. */
                const char *bh = startswith(name, "blobs/sha256/");
                strv_extend(&p->layers, name);
                strv_extend(&p->digests, bh && hex64(bh) ? bh : d);
        }
        p->format = "docker-save";
        p->config_digest = xasprintf("sha256:%s", hex);
        tags_from(json_object_get(img, "RepoTags"), &p->tags);
        return 0;
}

static bool media_is_manifest(const char *t) {
        return t &&
                (streq(t, "application/vnd.oci.image.manifest.v1+json") ||
                 streq(t, "application/vnd.docker.distribution.manifest.v2+json"));
}

static bool media_is_index(const char *t) {
        return t &&
                (streq(t, "application/vnd.oci.image.index.v1+json") ||
                 streq(t, "application/vnd.docker.distribution.manifest.list.v2+json"));
}

static bool media_is_layer(const char *t) {
        static const char *const ok[] = {
                "application/vnd.oci.image.layer.v1.tar",
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "application/vnd.oci.image.layer.v1.tar+zstd",
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                "application/vnd.docker.image.rootfs.diff.tar",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        };
        for (size_t i = 0; t && i < ELEMENTSOF(ok); i++)
                if (streq(t, ok[i]))
                        return true;
        return false;
}

/* Follow an index (index.json or a nested one) to the single linux/amd64 image manifest. */
static int oci_pick(
        const ImageOciFile *files,
        size_t n,
        json_t *index,
        const char *where,
        int depth,
        json_t **ret,
        char **ret_err) {
        json_t *ms = json_object_get(index, "manifests");
        json_t *pick = NULL;
        size_t i, found = 0;
        json_t *v;
        if (!json_is_array(ms))
                return fail(ret_err, -EBADMSG, "%s: no \"manifests\" array", where);
        json_array_foreach(ms, i, v) {
                const char *t = json_string_value(json_object_get(v, "mediaType"));
                json_t *pl = json_object_get(v, "platform");
                if (!media_is_manifest(t) && !media_is_index(t))
                        continue; /* attestations, signatures, ... */
                if (pl) {
                        const char *os = json_string_value(json_object_get(pl, "os")),
                                   *arch = json_string_value(json_object_get(pl, "architecture"));
                        if (!os || !arch || !streq(os, "linux") || !streq(arch, "amd64"))
                                continue;
                }
                pick = v;
                found++;
        }
        if (found != 1)
                return fail(
                        ret_err,
                        -EINVAL,
                        "%s: %zu linux/amd64 images found; the archive must hold exactly one",
                        where,
                        found);
        const char *t = json_string_value(json_object_get(pick, "mediaType"));
        const char *hex = digest_hex(json_string_value(json_object_get(pick, "digest")));
        json_t *size = json_object_get(pick, "size");
        const ImageOciFile *f;
        json_t *doc = NULL;
        if (!hex)
                return fail(ret_err, -EBADMSG, "%s: the manifest's digest is not sha256:<hex>", where);
        int r = blob_get(files, n, hex, json_is_integer(size) ? json_integer_value(size) : -1, &f, ret_err);
        if (r < 0)
                return r;
        if ((r = parse_json(f, &doc, ret_err)) < 0)
                return r;
        if (media_is_index(t)) {
                if (depth >= 2) {
                        json_decref(doc);
                        return fail(ret_err, -ELOOP, "%s: indexes nested too deep", f->name);
                }
                r = oci_pick(files, n, doc, f->name, depth + 1, ret, ret_err);
                json_decref(doc);
                return r;
        }
        *ret = doc;
        return 0;
}

static int plan_oci(const ImageOciFile *files, size_t n, ImageOciPlan *p, char **ret_err) {
        const ImageOciFile *lf = file_find(files, n, "oci-layout"), *ix = file_find(files, n, "index.json");
        _cleanup_json_ json_t *layout = NULL, *index = NULL, *man = NULL;
        int r;
        if (!lf || !ix)
                return fail(
                        ret_err,
                        -EINVAL,
                        "neither manifest.json (docker save) nor oci-layout and index.json (an OCI "
                        "image layout) is in the archive");
        if ((r = parse_json(lf, &layout, ret_err)) < 0)
                return r;
        const char *ver = json_string_value(json_object_get(layout, "imageLayoutVersion"));
        if (!ver || !startswith(ver, "1."))
                return fail(ret_err, -EINVAL, "oci-layout: imageLayoutVersion '%s' is not 1.x", ver ?: "?");
        if ((r = parse_json(ix, &index, ret_err)) < 0)
                return r;
        if ((r = oci_pick(files, n, index, "index.json", 0, &man, ret_err)) < 0)
                return r;
        json_t *cfg = json_object_get(man, "config");
        const char *ch = digest_hex(json_string_value(json_object_get(cfg, "digest")));
        json_t *layers = json_object_get(man, "layers");
        if (!ch || !json_is_array(layers))
                return fail(
                        ret_err, -EBADMSG, "image manifest: needs a sha256 \"config\" and a \"layers\" array");
        if (json_array_size(layers) > OCI_MAX_LAYERS)
                return fail(ret_err, -E2BIG, "image manifest: more than %d layers", OCI_MAX_LAYERS);
        const ImageOciFile *cf;
        json_t *cs = json_object_get(cfg, "size");
        if ((r = blob_get(files, n, ch, json_is_integer(cs) ? json_integer_value(cs) : -1, &cf, ret_err)) < 0)
                return r;
        _cleanup_json_ json_t *config = NULL;
        if ((r = parse_json(cf, &config, ret_err)) < 0 || (r = check_platform(config, cf->name, ret_err)) < 0)
                return r;
        size_t i;
        json_t *v;
        json_array_foreach(layers, i, v) {
                const char *t = json_string_value(json_object_get(v, "mediaType"));
                const char *h = digest_hex(json_string_value(json_object_get(v, "digest")));
                if (!media_is_layer(t))
                        return fail(
                                ret_err,
                                -EOPNOTSUPP,
                                "image manifest: layer %zu has media type '%s' (tar, tar+gzip and "
                                "tar+zstd are supported)",
                                i + 1,
                                t ?: "?");
                if (!h)
                        return fail(
                                ret_err,
                                -EBADMSG,
                                "image manifest: layer %zu: digest is not sha256:<hex>",
                                i + 1);
                _cleanup_free_ char *name = xasprintf("blobs/sha256/%s", h);
                strv_extend(&p->layers, name);
                strv_extend(&p->digests, h);
        }
        json_t *ann = json_object_get(json_array_get(json_object_get(index, "manifests"), 0), "annotations");
        const char *ref = json_string_value(json_object_get(ann, "org.opencontainers.image.ref.name"));
        if (ref)
                strv_extend(&p->tags, ref);
        p->format = "oci-layout";
        p->config_digest = xasprintf("sha256:%s", ch);
        return 0;
}

int image_oci_plan(const ImageOciFile *files, size_t n, ImageOciPlan *ret, char **ret_err) {
        ImageOciPlan p = {};
        const ImageOciFile *mf = file_find(files, n, "manifest.json");
        int r = mf ? plan_docker(files, n, mf, &p, ret_err) : plan_oci(files, n, &p, ret_err);
        if (r < 0) {
                image_oci_plan_done(&p);
                return r;
        }
        *ret = p;
        return 0;
}

/* ---- Applying one layer -------------------------------------------------------------------- */

/* Split an entry name into components: "./" prefixes and empty or "." components dropped;
 * absolute names and ".." refused. Returns the number of components (0: the root itself). */
static int split_name(const char *raw, char ***ret, char **ret_err) {
        _cleanup_strv_free_ char **c = NULL;
        if (isempty(raw))
                return fail(ret_err, -EINVAL, "an entry without a name");
        if (raw[0] == '/')
                return fail(ret_err, -EPERM, "'%s': absolute names are refused", raw);
        _cleanup_free_ char *d = xstrdup(raw);
        char *save = NULL;
        for (char *t = strtok_r(d, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
                if (streq(t, "."))
                        continue;
                if (streq(t, ".."))
                        return fail(ret_err, -EPERM, "'%s': names with '..' are refused", raw);
                strv_extend(&c, t);
        }
        int n = (int) strv_length(c);
        *ret = TAKE_PTR(c);
        return n;
}

/* The directory holding the entry, beneath the root: missing directories are created (0755,
 * as a layer may leave its parents out); symlinks on the way resolve inside the root. */
static int open_parent(int rootfd, char *const *c, int n, bool create, char **ret_err) {
        _cleanup_free_ char *prefix = xstrdup(".");
        int fd = image_open_in_root(rootfd, ".", O_PATH | O_DIRECTORY, true);
        if (fd < 0)
                return fail(ret_err, fd, "cannot open the rootfs");
        for (int i = 0; i < n - 1; i++) {
                char *np = xasprintf("%s/%s", prefix, c[i]);
                free(prefix);
                prefix = np;
                int k = image_open_in_root(rootfd, prefix, O_PATH | O_DIRECTORY, true);
                if (k == -ENOENT && create) {
                        /* c[i] is absent in fd (the previous component): make it there. A name
                         * that exists (a dangling symlink) is never replaced on the way. */
                        if (mkdirat(fd, c[i], 0755) < 0 && errno != EEXIST) {
                                k = -errno;
                                safe_close(fd);
                                return fail(ret_err, k, "cannot create the directory %s", prefix + 2);
                        }
                        k = image_open_in_root(rootfd, prefix, O_PATH | O_DIRECTORY, true);
                }
                safe_close(fd);
                if (k < 0)
                        return fail(ret_err, k, "%s is not a directory inside the rootfs", prefix + 2);
                fd = k;
        }
        return fd;
}

static char *join_path(char *const *c, int n) {
        _cleanup_free_ char *s = xstrdup("");
        for (int i = 0; i < n; i++) {
                char *t = xasprintf("%s%s%s", s, i ? "/" : "", c[i]);
                free(s);
                s = t;
        }
        return TAKE_PTR(s);
}

/* ".wh..wh..opq": the directory's contents from earlier layers are gone; what this layer put
 * there (recorded in seen) stays. */
static int opaque_dir(int pfd, const char *dirpath, json_t *seen) {
        int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                safe_close(fd);
                return r;
        }
        int r = 0;
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                _cleanup_free_ char *p = isempty(dirpath) ? xstrdup(de->d_name)
                                                          : xasprintf("%s/%s", dirpath, de->d_name);
                if (!json_object_get(seen, p))
                        r = image_remove_at(dirfd(d), de->d_name);
        }
        closedir(d);
        return r;
}

typedef struct ApplyCtx {
        bool chown;
        ImageOciStats *st;
        char **err;
        const char *name;
} ApplyCtx;

static int set_owner_mode_time(ApplyCtx *c, int fd, struct archive_entry *e, mode_t mode) {
        if (c->chown && fchown(fd, (uid_t) archive_entry_uid(e), (gid_t) archive_entry_gid(e)) < 0)
                return fail(c->err, -errno, "'%s': chown", c->name);
        /* chown already clears setuid/setgid on files; the mode never sets them again. */
        if (fchmod(fd, mode) < 0)
                return fail(c->err, -errno, "'%s': chmod", c->name);
        struct timespec ts[2] = {
                { .tv_sec = archive_entry_mtime(e), .tv_nsec = 0 },
                { .tv_sec = archive_entry_mtime(e), .tv_nsec = 0 },
        };
        (void) futimens(fd, ts);
        return 0;
}

static mode_t safe_mode(ApplyCtx *c, struct archive_entry *e, bool dir) {
        mode_t m = archive_entry_perm(e);
        if (m & (S_ISUID | S_ISGID))
                c->st->stripped++;
        return m & (dir ? 01777 : 0777);
}

static int write_file(ApplyCtx *c, struct archive *a, int pfd, const char *base, struct archive_entry *e) {
        la_int64_t size = archive_entry_size(e);
        if (size < 0 || (uint64_t) size > OCI_MAX_TREE_BYTES - c->st->bytes)
                return fail(
                        c->err,
                        -EFBIG,
                        "'%s': the image unpacks to more than %llu GiB",
                        c->name,
                        (unsigned long long) (OCI_MAX_TREE_BYTES >> 30));
        c->st->bytes += (uint64_t) size;
        int r = image_remove_at(pfd, base);
        if (r < 0)
                return fail(c->err, r, "'%s': cannot replace what is there", c->name);
        _cleanup_close_ int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return fail(c->err, -errno, "'%s': create", c->name);
        const void *buf;
        size_t len;
        la_int64_t off;
        for (;;) {
                int k = archive_read_data_block(a, &buf, &len, &off);
                if (k == ARCHIVE_EOF)
                        break;
                if (k < ARCHIVE_WARN)
                        return fail(c->err, -EBADMSG, "'%s': %s", c->name, archive_error_string(a));
                if (off < 0 || len > (size_t) size || off > size - (la_int64_t) len)
                        return fail(c->err, -EBADMSG, "'%s': data beyond the entry's size", c->name);
                for (size_t done = 0; done < len;) {
                        ssize_t w = pwrite(fd, (const char *) buf + done, len - done, off + (off_t) done);
                        if (w < 0)
                                return fail(c->err, -errno, "'%s': write", c->name);
                        done += (size_t) w;
                }
        }
        /* A sparse file's last hole. */
        if (ftruncate(fd, archive_entry_size(e)) < 0)
                return fail(c->err, -errno, "'%s': truncate", c->name);
        return set_owner_mode_time(c, fd, e, safe_mode(c, e, false));
}

static int make_dir(ApplyCtx *c, int pfd, const char *base, struct archive_entry *e) {
        struct stat st;
        if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
                int r = image_remove_at(pfd, base);
                if (r < 0)
                        return fail(c->err, r, "'%s': cannot replace what is there", c->name);
        }
        if (mkdirat(pfd, base, 0700) < 0 && errno != EEXIST)
                return fail(c->err, -errno, "'%s': mkdir", c->name);
        _cleanup_close_ int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return fail(c->err, -errno, "'%s': open the directory", c->name);
        mode_t m = safe_mode(c, e, true);
        /* Unprivileged (tests), a directory must stay writable for the entries that follow. */
        return set_owner_mode_time(c, fd, e, c->chown ? m : (m | 0700));
}

static int make_symlink(ApplyCtx *c, int pfd, const char *base, struct archive_entry *e) {
        const char *target = archive_entry_symlink(e);
        if (isempty(target))
                return fail(c->err, -EBADMSG, "'%s': a symlink without a target", c->name);
        int r = image_remove_at(pfd, base);
        if (r < 0)
                return fail(c->err, r, "'%s': cannot replace what is there", c->name);
        /* The target is stored as text; it is resolved later inside the guest (or, by this
         * applier, inside the root), never here on the host. */
        if (symlinkat(target, pfd, base) < 0)
                return fail(c->err, -errno, "'%s': symlink", c->name);
        if (c->chown &&
            fchownat(pfd, base, (uid_t) archive_entry_uid(e), (gid_t) archive_entry_gid(e), AT_SYMLINK_NOFOLLOW) <
                    0)
                return fail(c->err, -errno, "'%s': chown", c->name);
        struct timespec ts[2] = {
                { .tv_sec = archive_entry_mtime(e), .tv_nsec = 0 },
                { .tv_sec = archive_entry_mtime(e), .tv_nsec = 0 },
        };
        (void) utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
        return 0;
}

static int make_hardlink(ApplyCtx *c, int rootfd, int pfd, const char *base, const char *target) {
        _cleanup_strv_free_ char **tc = NULL;
        int n = split_name(target, &tc, c->err);
        if (n < 0)
                return n;
        if (n == 0)
                return fail(c->err, -EPERM, "'%s': a hard link to the root", c->name);
        _cleanup_free_ char *perr = NULL;
        _cleanup_close_ int tfd = open_parent(rootfd, tc, n, false, &perr);
        if (tfd < 0)
                return fail(
                        c->err, tfd, "'%s': hard link target '%s': %s", c->name, target, perr ?: "not found");
        struct stat st;
        if (fstatat(tfd, tc[n - 1], &st, AT_SYMLINK_NOFOLLOW) < 0)
                return fail(c->err, -errno, "'%s': hard link target '%s'", c->name, target);
        if (S_ISDIR(st.st_mode))
                return fail(c->err, -EPERM, "'%s': a hard link to a directory", c->name);
        /* Same file already (a layer repeating a link): nothing to do. */
        struct stat cur;
        if (fstatat(pfd, base, &cur, AT_SYMLINK_NOFOLLOW) == 0 && cur.st_dev == st.st_dev &&
            cur.st_ino == st.st_ino)
                return 0;
        int r = image_remove_at(pfd, base);
        if (r < 0)
                return fail(c->err, r, "'%s': cannot replace what is there", c->name);
        /* linkat without AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink itself. */
        if (linkat(tfd, tc[n - 1], pfd, base, 0) < 0)
                return fail(c->err, -errno, "'%s': hard link to '%s'", c->name, target);
        return 0;
}

int image_oci_apply_layer(int rootfd, struct archive *a, ImageOciStats *st, char **ret_err) {
        _cleanup_json_ json_t *seen = json_object(); /* names this layer wrote: opaque dirs keep them */
        ImageOciStats dummy = {};
        ApplyCtx c = { .chown = geteuid() == 0, .st = st ?: &dummy, .err = ret_err };
        struct archive_entry *e;
        for (;;) {
                int k = archive_read_next_header(a, &e);
                if (k == ARCHIVE_EOF)
                        return 0;
                if (k < ARCHIVE_WARN)
                        return fail(ret_err, -EBADMSG, "%s", archive_error_string(a));
                const char *raw = archive_entry_pathname(e);
                _cleanup_strv_free_ char **comp = NULL;
                int n = split_name(raw, &comp, ret_err);
                if (n < 0)
                        return n;
                if (++c.st->entries > OCI_MAX_ENTRIES)
                        return fail(
                                ret_err, -EFBIG, "more than %llu entries", (unsigned long long) OCI_MAX_ENTRIES);
                if (n == 0)
                        continue; /* "./": the root's own entry */
                c.name = raw;
                const char *base = comp[n - 1];
                const char *hl = archive_entry_hardlink(e);
                mode_t type = archive_entry_filetype(e);

                /* Nothing lands in the mount points the guest init mounts over. */
                if ((streq(comp[0], "dev") || streq(comp[0], "proc") || streq(comp[0], "sys")) &&
                    (n > 1 || type != AE_IFDIR)) {
                        c.st->dropped++;
                        continue;
                }
                if (!hl && (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO || type == AE_IFSOCK)) {
                        c.st->dropped++;
                        continue;
                }
                if (!hl && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
                        return fail(ret_err, -EBADMSG, "'%s': unknown entry type 0%o", raw, (unsigned) type);

                /* A whiteout names something that may not be there: nothing is made for it. */
                bool wh = startswith(base, OCI_WHITEOUT);
                _cleanup_free_ char *perr = NULL;
                _cleanup_close_ int pfd = open_parent(rootfd, comp, n, !wh, &perr);
                if (pfd == -ENOENT && wh) {
                        c.st->whiteouts++;
                        continue;
                }
                if (pfd < 0)
                        return fail(ret_err, pfd, "'%s': %s", raw, perr ?: "cannot open the parent directory");
                _cleanup_free_ char *dirpath = join_path(comp, n - 1);
                int r;
                if (streq(base, OCI_OPAQUE)) {
                        c.st->whiteouts++;
                        if ((r = opaque_dir(pfd, dirpath, seen)) < 0)
                                return fail(ret_err, r, "'%s': cannot empty the directory", raw);
                        continue;
                }
                if (startswith(base, OCI_WHITEOUT)) {
                        const char *victim = base + strlen(OCI_WHITEOUT);
                        if (isempty(victim) || streq(victim, ".") || streq(victim, ".."))
                                return fail(ret_err, -EPERM, "'%s': a whiteout for no name", raw);
                        c.st->whiteouts++;
                        if ((r = image_remove_at(pfd, victim)) < 0)
                                return fail(ret_err, r, "'%s': cannot remove %s", raw, victim);
                        continue;
                }
                for (int i = 1; i <= n; i++) {
                        _cleanup_free_ char *sub = join_path(comp, i);
                        json_object_set_new(seen, sub, json_true());
                }
                if (hl)
                        r = make_hardlink(&c, rootfd, pfd, base, hl);
                else if (type == AE_IFDIR)
                        r = make_dir(&c, pfd, base, e);
                else if (type == AE_IFLNK)
                        r = make_symlink(&c, pfd, base, e);
                else
                        r = write_file(&c, a, pfd, base, e);
                if (r < 0)
                        return r;
        }
}

/* ---- The archive ------------------------------------------------------------------------- */

static struct archive *outer_open(const char *path, char **ret_err) {
        struct archive *a = archive_read_new();
        /* Only in-process decoders: libarchive runs an external program for some filters. */
        archive_read_support_filter_gzip(a);
        archive_read_support_filter_xz(a);
        archive_read_support_filter_zstd(a);
        archive_read_support_format_tar(a);
        if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
                fail(ret_err, -EINVAL, "%s: %s", path, archive_error_string(a));
                archive_read_free(a);
                return NULL;
        }
        return a;
}

static void files_free(ImageOciFile *f, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(f[i].name);
                free(f[i].data);
        }
        free(f);
}

/* First pass: the descriptions (manifest.json, index.json, oci-layout, *.json, and blobs that
 * look like JSON: manifests, indexes, configs), bounded in size. */
static int collect_small(const char *path, ImageOciFile **ret, size_t *ret_n, char **ret_err) {
        struct archive *a = outer_open(path, ret_err);
        struct archive_entry *e;
        ImageOciFile *f = NULL;
        size_t n = 0, total = 0;
        int r = 0;
        if (!a)
                return -EINVAL;
        for (;;) {
                int k = archive_read_next_header(a, &e);
                if (k == ARCHIVE_EOF)
                        break;
                if (k < ARCHIVE_WARN) {
                        r = fail(ret_err, -EBADMSG, "%s: %s", path, archive_error_string(a));
                        break;
                }
                const char *name = member_name(archive_entry_pathname(e));
                la_int64_t size = archive_entry_size(e);
                if (!name || archive_entry_filetype(e) != AE_IFREG || size < 0 || size > OCI_SMALL_FILE_MAX)
                        continue;
                bool want = streq(name, "manifest.json") || streq(name, "index.json") ||
                        streq(name, "oci-layout") || (!strchr(name, '/') && endswith(name, ".json")) ||
                        startswith(name, "blobs/sha256/");
                if (!want)
                        continue;
                char *data = xmalloc((size_t) size + 1);
                la_int64_t got = 0;
                for (la_ssize_t step = 1; got < size && step > 0; got += step > 0 ? step : 0)
                        step = archive_read_data(a, data + got, (size_t) (size - got));
                if (got != size) {
                        free(data);
                        r = fail(ret_err, -EBADMSG, "%s: cannot read %s", path, name);
                        break;
                }
                data[size] = 0;
                /* A layer blob is not kept: only what could be JSON. */
                if (startswith(name, "blobs/") && (size == 0 || data[0] != '{')) {
                        free(data);
                        continue;
                }
                total += (size_t) size;
                if (total > OCI_SMALL_TOTAL_MAX) {
                        free(data);
                        r = fail(ret_err, -E2BIG, "%s: more than 64 MiB of manifests and configs", path);
                        break;
                }
                f = xrealloc(f, (n + 1) * sizeof *f);
                f[n++] = (ImageOciFile){ .name = xstrdup(name), .data = data, .size = (size_t) size };
        }
        archive_read_free(a);
        if (r < 0) {
                files_free(f, n);
                return r;
        }
        *ret = f;
        *ret_n = n;
        return 0;
}

typedef struct Feed {
        struct archive *outer;
        crypto_hash_sha256_state h;
        uint64_t bytes;
        char buf[1 << 16];
} Feed;

static la_ssize_t feed_read(struct archive *inner, void *userdata, const void **buf) {
        Feed *f = userdata;
        la_ssize_t k = archive_read_data(f->outer, f->buf, sizeof f->buf);
        if (k > 0) {
                crypto_hash_sha256_update(&f->h, (const unsigned char *) f->buf, (unsigned long long) k);
                f->bytes += (uint64_t) k;
        }
        *buf = f->buf;
        return k;
}

/* Apply the member named name (whose bytes must hash to hex) from the archive at path. */
/* Where a member that is a link in the archive points: docker save stores a layer that occurs
 * twice as "<id2>/layer.tar -> ../<id1>/layer.tar" (or as a hard link). The target is resolved
 * lexically inside the archive; leaving it or an absolute target is refused (NULL). */
static char *member_link_target(const char *member, const char *target, bool hard) {
        if (isempty(target) || target[0] == '/')
                return NULL;
        const char *slash = strrchr(member, '/');
        _cleanup_free_ char *joined = hard || !slash
                ? xstrdup(member_name(target))
                : xasprintf("%.*s/%s", (int) (slash - member), member, target);
        _cleanup_strv_free_ char **out = NULL;
        _cleanup_free_ char *d = xstrdup(joined);
        char *save = NULL;
        for (char *t = strtok_r(d, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
                if (streq(t, "."))
                        continue;
                if (streq(t, "..")) {
                        size_t n = strv_length(out);
                        if (n == 0)
                                return NULL;
                        out[n - 1] = mfree(out[n - 1]);
                        continue;
                }
                strv_extend(&out, t);
        }
        return out ? strv_join(out, "/") : NULL;
}

static int apply_member(
        ImageCtx *ctx,
        const char *path,
        const char *member,
        const char *hex,
        int rootfd,
        ImageOciStats *st,
        char **ret_err) {
        struct archive *a = NULL, *in = NULL;
        struct archive_entry *e;
        _cleanup_free_ Feed *f = xmalloc(sizeof(Feed));
        _cleanup_free_ char *got = NULL, *name = xstrdup(member), *shown = NULL;
        int r;
        /* Find the member, following links between members (a few hops at most). */
        for (int hop = 0;; hop++) {
                bool found = false;
                _cleanup_free_ char *next = NULL;
                if (a)
                        archive_read_free(a);
                a = outer_open(path, ret_err);
                if (!a)
                        return -EINVAL;
                for (;;) {
                        int k = archive_read_next_header(a, &e);
                        if (k == ARCHIVE_EOF)
                                break;
                        if (k < ARCHIVE_WARN) {
                                r = fail(ret_err, -EBADMSG, "%s: %s", path, archive_error_string(a));
                                goto out;
                        }
                        const char *m = member_name(archive_entry_pathname(e));
                        if (!m || !streq(m, name))
                                continue;
                        const char *hl = archive_entry_hardlink(e);
                        if (hl || archive_entry_filetype(e) == AE_IFLNK) {
                                next = member_link_target(name, hl ?: archive_entry_symlink(e), !!hl);
                                if (!next) {
                                        r = fail(
                                                ret_err,
                                                -EBADMSG,
                                                "layer %s: a link that leaves the archive",
                                                member);
                                        goto out;
                                }
                                break;
                        }
                        if (archive_entry_filetype(e) == AE_IFREG)
                                found = true;
                        break;
                }
                if (found)
                        break;
                if (!next || hop >= 8) {
                        r = fail(ret_err, -ENOENT, "layer %s is not in the archive", member);
                        goto out;
                }
                free(name);
                name = TAKE_PTR(next);
        }
        f->outer = a;
        f->bytes = 0;
        crypto_hash_sha256_init(&f->h);
        in = archive_read_new();
        archive_read_support_filter_gzip(in);
        archive_read_support_filter_zstd(in);
        archive_read_support_format_tar(in);
        if (archive_read_open(in, f, NULL, feed_read, NULL) != ARCHIVE_OK) {
                r = fail(ret_err, -EBADMSG, "layer %s: %s", name, archive_error_string(in));
                goto out;
        }
        r = image_oci_apply_layer(rootfd, in, st, ret_err);
        if (r < 0)
                goto out;
        /* The tar's end padding and anything after it count toward the digest too. */
        const void *dummy;
        while (feed_read(in, f, &dummy) > 0)
                ;
        unsigned char d[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_final(&f->h, d);
        got = hexmem(d, sizeof d);
        if (!memeq_consttime(got, hex, 64)) {
                r = fail(
                        ret_err,
                        -EBADMSG,
                        "layer %s: sha256 mismatch (the manifest says sha256:%s, the archive holds "
                        "sha256:%s)",
                        name,
                        hex,
                        got);
                goto out;
        }
        /* Progress goes to stderr as it is (not through the logger, which escapes): the
         * member name comes from the archive, so its control characters are made visible. */
        shown = string_make_visible(name);
        image_progress(ctx, "rootfs: layer %s applied (%llu bytes)", shown, (unsigned long long) f->bytes);
        r = 0;
out:
        if (in)
                archive_read_free(in);
        archive_read_free(a);
        return r;
}

int image_oci_import(ImageCtx *ctx, const char *path, const char *dir, json_t **ret_info) {
        ImageOciFile *files = NULL;
        size_t n = 0;
        _cleanup_(image_oci_plan_done) ImageOciPlan plan = {};
        _cleanup_free_ char *err = NULL;
        ImageOciStats st = {};
        int r;

        image_progress(ctx, "rootfs: reading the OCI image archive %s", path);
        r = collect_small(path, &files, &n, &err);
        if (r >= 0)
                r = image_oci_plan(files, n, &plan, &err);
        files_free(files, n);
        if (r < 0)
                return log_error_errno(r, "image: %s: %s", path, err ?: "cannot read it");
        _cleanup_close_ int rootfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return log_error_errno(-errno, "image: open %s: %m", dir);
        image_progress(ctx, "rootfs: %s image, %zu layers", plan.format, strv_length(plan.layers));
        for (size_t i = 0; plan.layers && plan.layers[i]; i++)
                if ((r = apply_member(ctx, path, plan.layers[i], plan.digests[i], rootfd, &st, &err)) < 0)
                        return log_error_errno(r, "image: %s: %s", path, err ?: "cannot apply a layer");
        image_progress(
                ctx,
                "rootfs: %llu entries; %llu whiteouts; %llu devices, fifos or sockets dropped; "
                "setuid/setgid "
                "stripped from %llu",
                (unsigned long long) st.entries,
                (unsigned long long) st.whiteouts,
                (unsigned long long) st.dropped,
                (unsigned long long) st.stripped);
        json_t *layers = json_array(), *tags = json_array();
        STRV_FOREACH(d, plan.digests) {
                _cleanup_free_ char *s = xasprintf("sha256:%s", *d);
                json_array_append_new(layers, json_string(s));
        }
        STRV_FOREACH(t, plan.tags)
                if (utf8_is_valid(*t))
                        json_array_append_new(tags, json_string(*t));
        *ret_info = json_pack(
                "{s:s, s:s, s:o, s:o, s:I, s:I}",
                "format",
                plan.format,
                "config_digest",
                plan.config_digest,
                "layers",
                layers,
                "tags",
                tags,
                "dropped_entries",
                (json_int_t) st.dropped,
                "setid_stripped",
                (json_int_t) st.stripped);
        return 0;
}
