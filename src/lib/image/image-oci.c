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

int image_oci_fail(char **ret_err, int r, const char *fmt, ...) {
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
                return image_oci_fail(
                        ret_err, -ENOENT, "%s is not in the archive (or is larger than 4 MiB)", name);
        if (size >= 0 && (json_int_t) f->size != size)
                return image_oci_fail(
                        ret_err,
                        -EBADMSG,
                        "%s holds %zu bytes, its descriptor says %lld",
                        name,
                        f->size,
                        (long long) size);
        sha256_hex(f->data, f->size, got);
        if (!streq(got, hex))
                return image_oci_fail(
                        ret_err, -EBADMSG, "%s: sha256 mismatch (the archive holds sha256:%s)", name, got);
        *ret = f;
        return 0;
}

static int parse_json(const ImageOciFile *f, json_t **ret, char **ret_err) {
        _cleanup_free_ char *e = NULL;
        if (json_parse_strict(f->data, f->size, OCI_SMALL_FILE_MAX, ret, &e) < 0 || !json_is_object(*ret)) {
                json_decref(*ret);
                *ret = NULL;
                return image_oci_fail(
                        ret_err, -EBADMSG, "%s: not a JSON object (%s)", f->name, e ?: "wrong type");
        }
        return 0;
}

/* The guest is x86_64 Linux: an image made for anything else would not run. Fields absent are
 * accepted (hand-made images often leave them out). */
static int check_platform(json_t *o, const char *where, char **ret_err) {
        const char *os = json_string_value(json_object_get(o, "os")),
                   *arch = json_string_value(json_object_get(o, "architecture"));
        if ((os && !streq(os, "linux")) || (arch && !streq(arch, "amd64")))
                return image_oci_fail(
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
                return image_oci_fail(
                        ret_err, -EBADMSG, "manifest.json: not a JSON array (%s)", e ?: "wrong type");
        if (json_array_size(m) != 1)
                return image_oci_fail(
                        ret_err,
                        -EINVAL,
                        "manifest.json: the archive holds %zu images; save exactly one",
                        json_array_size(m));
        json_t *img = json_array_get(m, 0);
        const char *config = member_name(json_string_value(json_object_get(img, "Config")));
        json_t *layers = json_object_get(img, "Layers");
        if (!config || !json_is_array(layers))
                return image_oci_fail(
                        ret_err, -EBADMSG, "manifest.json: the image needs \"Config\" and \"Layers\"");
        if (json_array_size(layers) > OCI_MAX_LAYERS)
                return image_oci_fail(ret_err, -E2BIG, "manifest.json: more than %d layers", OCI_MAX_LAYERS);

        /* The config is named by its digest: "<hex>.json" (docker < 25) or "blobs/sha256/<hex>". */
        const char *b = strrchr(config, '/');
        b = b ? b + 1 : config;
        _cleanup_free_ char *hex = xstrndup(b, endswith(b, ".json") ? strlen(b) - 5 : strlen(b));
        if (!hex64(hex))
                return image_oci_fail(
                        ret_err, -EBADMSG, "manifest.json: Config '%s' is not named by its sha256", config);
        const ImageOciFile *cf = file_find(files, n, config);
        if (!cf)
                return image_oci_fail(
                        ret_err, -ENOENT, "manifest.json: Config %s is not in the archive", config);
        char got[SHA256_HEX_SIZE];
        sha256_hex(cf->data, cf->size, got);
        if (!streq(got, hex))
                return image_oci_fail(
                        ret_err, -EBADMSG, "%s: sha256 mismatch (the archive holds sha256:%s)", config, got);
        int r = parse_json(cf, &cfg, ret_err);
        if (r < 0)
                return r;
        if ((r = check_platform(cfg, config, ret_err)) < 0)
                return r;
        json_t *rootfs = json_object_get(cfg, "rootfs");
        json_t *diff = json_object_get(rootfs, "diff_ids");
        if (!json_is_array(diff) || json_array_size(diff) != json_array_size(layers))
                return image_oci_fail(
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
                        return image_oci_fail(
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
                return image_oci_fail(ret_err, -EBADMSG, "%s: no \"manifests\" array", where);
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
                return image_oci_fail(
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
                return image_oci_fail(
                        ret_err, -EBADMSG, "%s: the manifest's digest is not sha256:<hex>", where);
        int r = blob_get(files, n, hex, json_is_integer(size) ? json_integer_value(size) : -1, &f, ret_err);
        if (r < 0)
                return r;
        if ((r = parse_json(f, &doc, ret_err)) < 0)
                return r;
        if (media_is_index(t)) {
                if (depth >= 2) {
                        json_decref(doc);
                        return image_oci_fail(ret_err, -ELOOP, "%s: indexes nested too deep", f->name);
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
                return image_oci_fail(
                        ret_err,
                        -EINVAL,
                        "neither manifest.json (docker save) nor oci-layout and index.json (an OCI "
                        "image layout) is in the archive");
        if ((r = parse_json(lf, &layout, ret_err)) < 0)
                return r;
        const char *ver = json_string_value(json_object_get(layout, "imageLayoutVersion"));
        if (!ver || !startswith(ver, "1."))
                return image_oci_fail(
                        ret_err, -EINVAL, "oci-layout: imageLayoutVersion '%s' is not 1.x", ver ?: "?");
        if ((r = parse_json(ix, &index, ret_err)) < 0)
                return r;
        if ((r = oci_pick(files, n, index, "index.json", 0, &man, ret_err)) < 0)
                return r;
        json_t *cfg = json_object_get(man, "config");
        const char *ch = digest_hex(json_string_value(json_object_get(cfg, "digest")));
        json_t *layers = json_object_get(man, "layers");
        if (!ch || !json_is_array(layers))
                return image_oci_fail(
                        ret_err, -EBADMSG, "image manifest: needs a sha256 \"config\" and a \"layers\" array");
        if (json_array_size(layers) > OCI_MAX_LAYERS)
                return image_oci_fail(ret_err, -E2BIG, "image manifest: more than %d layers", OCI_MAX_LAYERS);
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
                        return image_oci_fail(
                                ret_err,
                                -EOPNOTSUPP,
                                "image manifest: layer %zu has media type '%s' (tar, tar+gzip and "
                                "tar+zstd are supported)",
                                i + 1,
                                t ?: "?");
                if (!h)
                        return image_oci_fail(
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

/* ---- The archive ------------------------------------------------------------------------- */

static struct archive *outer_open(const char *path, char **ret_err) {
        struct archive *a = archive_read_new();
        /* Only in-process decoders: libarchive runs an external program for some filters. */
        archive_read_support_filter_gzip(a);
        archive_read_support_filter_xz(a);
        archive_read_support_filter_zstd(a);
        archive_read_support_format_tar(a);
        if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
                image_oci_fail(ret_err, -EINVAL, "%s: %s", path, archive_error_string(a));
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
                        r = image_oci_fail(ret_err, -EBADMSG, "%s: %s", path, archive_error_string(a));
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
                        r = image_oci_fail(ret_err, -EBADMSG, "%s: cannot read %s", path, name);
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
                        r = image_oci_fail(
                                ret_err, -E2BIG, "%s: more than 64 MiB of manifests and configs", path);
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
                                r = image_oci_fail(ret_err, -EBADMSG, "%s: %s", path, archive_error_string(a));
                                goto out;
                        }
                        const char *m = member_name(archive_entry_pathname(e));
                        if (!m || !streq(m, name))
                                continue;
                        const char *hl = archive_entry_hardlink(e);
                        if (hl || archive_entry_filetype(e) == AE_IFLNK) {
                                next = member_link_target(name, hl ?: archive_entry_symlink(e), !!hl);
                                if (!next) {
                                        r = image_oci_fail(
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
                        r = image_oci_fail(ret_err, -ENOENT, "layer %s is not in the archive", member);
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
                r = image_oci_fail(ret_err, -EBADMSG, "layer %s: %s", name, archive_error_string(in));
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
                r = image_oci_fail(
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
