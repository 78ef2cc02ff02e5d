/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for src/lib/image/image-oci.c: the layer applier (whiteouts, opaque directories,
 * refused names, writes through symlinks, setuid/setgid, device nodes, hard links) on layers
 * built here with libarchive, and the archive descriptions (docker save, OCI layout, digests). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "hash-util.h"
#include "image-internal.h"
#include "string-util.h"

/* One tar entry: type f(ile) d(ir) l(symlink) h(ard link) c(har device) p(fifo). */
typedef struct Ent {
        const char *name;
        char type;
        const char *data; /* file contents, or the link target */
        unsigned mode;
} Ent;

typedef enum Comp {
        COMP_NONE,
        COMP_GZIP,
        COMP_ZSTD
} Comp;

/* The tar bytes of ents (malloc'd), compressed as asked. */
static char *build_tar(const Ent *ents, size_t n, Comp comp, size_t *ret_size) {
        struct archive *a = archive_write_new();
        size_t cap = 1u << 20, used = 0;
        char *buf = xmalloc(cap);
        assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        if (comp == COMP_GZIP)
                assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
        if (comp == COMP_ZSTD)
                assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
        assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, ents[i].name);
                archive_entry_set_uid(e, 0);
                archive_entry_set_gid(e, 0);
                archive_entry_set_mtime(e, 1700000000, 0);
                unsigned mode = ents[i].mode ?: 0644;
                switch (ents[i].type) {
                case 'f':
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_size(e, (la_int64_t) strlen(ents[i].data ?: ""));
                        break;
                case 'd':
                        archive_entry_set_filetype(e, AE_IFDIR);
                        mode = ents[i].mode ?: 0755;
                        break;
                case 'l':
                        archive_entry_set_filetype(e, AE_IFLNK);
                        archive_entry_set_symlink(e, ents[i].data);
                        mode = 0777;
                        break;
                case 'h':
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_hardlink(e, ents[i].data);
                        archive_entry_set_size(e, 0);
                        break;
                case 'c':
                        archive_entry_set_filetype(e, AE_IFCHR);
                        archive_entry_set_rdevmajor(e, 1);
                        archive_entry_set_rdevminor(e, 3);
                        break;
                case 'p':
                        archive_entry_set_filetype(e, AE_IFIFO);
                        break;
                default:
                        fail();
                }
                archive_entry_set_perm(e, mode);
                assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
                if (ents[i].type == 'f' && ents[i].data && *ents[i].data)
                        assert_int_equal(
                                archive_write_data(a, ents[i].data, strlen(ents[i].data)),
                                (la_ssize_t) strlen(ents[i].data));
                archive_entry_free(e);
        }
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
        *ret_size = used;
        return buf;
}

static int apply_ents(int rootfd, const Ent *ents, size_t n, Comp comp, ImageOciStats *st, char **err) {
        size_t size;
        _cleanup_free_ char *tar = build_tar(ents, n, comp, &size);
        struct archive *a = archive_read_new();
        archive_read_support_filter_gzip(a);
        archive_read_support_filter_zstd(a);
        archive_read_support_format_tar(a);
        assert_int_equal(archive_read_open_memory(a, tar, size), ARCHIVE_OK);
        int r = image_oci_apply_layer(rootfd, a, st, err);
        archive_read_free(a);
        return r;
}

typedef struct Fixture {
        char *tmp;  /* parent of both */
        char *root; /* the rootfs being built */
        char *host; /* a directory outside it, standing for the host */
        int rootfd;
} Fixture;

static int setup(void **state) {
        Fixture *f = xmalloc(sizeof(Fixture));
        char t[] = "/tmp/test-image-oci-XXXXXX";
        assert_non_null(mkdtemp(t));
        f->tmp = xstrdup(t);
        f->root = xasprintf("%s/root", t);
        f->host = xasprintf("%s/host", t);
        assert_int_equal(mkdir(f->root, 0755), 0);
        assert_int_equal(mkdir(f->host, 0755), 0);
        f->rootfd = open(f->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(f->rootfd >= 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        safe_close(f->rootfd);
        (void) image_rm_rf(f->tmp);
        free(f->tmp);
        free(f->root);
        free(f->host);
        free(f);
        return 0;
}

static char *slurp(const char *dir, const char *rel) {
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
        char *data = NULL;
        size_t n;
        if (read_full_file_at(AT_FDCWD, p, 1 << 20, &data, &n) < 0)
                return NULL;
        return data;
}

static bool exists(const char *dir, const char *rel) {
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
        struct stat st;
        return lstat(p, &st) == 0;
}

static mode_t mode_of(const char *dir, const char *rel) {
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
        struct stat st;
        assert_int_equal(lstat(p, &st), 0);
        return st.st_mode;
}

static void test_basic_tree(void **state) {
        Fixture *f = *state;
        const Ent l[] = {
                { "./", 'd', NULL, 0755 },
                { "./usr/", 'd', NULL, 0755 },
                { "./usr/bin/", 'd', NULL, 0755 },
                { "./usr/bin/tool", 'f', "#!/bin/sh\necho hi\n", 0755 },
                { "bin", 'l', "usr/bin", 0 },
                { "usr/bin/tool2", 'h', "usr/bin/tool", 0 },
                { "deep/missing/parents/file", 'f', "x", 0600 },
        };
        _cleanup_free_ char *err = NULL;
        ImageOciStats st = {};
        assert_int_equal(apply_ents(f->rootfd, l, ELEMENTSOF(l), COMP_NONE, &st, &err), 0);
        _cleanup_free_ char *c = slurp(f->root, "usr/bin/tool2");
        assert_string_equal(c, "#!/bin/sh\necho hi\n");
        assert_int_equal(mode_of(f->root, "usr/bin/tool") & 07777, 0755);
        assert_true(S_ISLNK(mode_of(f->root, "bin")));
        assert_int_equal(mode_of(f->root, "deep/missing/parents/file") & 07777, 0600);
        assert_int_equal(st.entries, ELEMENTSOF(l));
        struct stat a, b;
        _cleanup_free_ char *pa = xasprintf("%s/usr/bin/tool", f->root),
                            *pb = xasprintf("%s/usr/bin/tool2", f->root);
        assert_int_equal(stat(pa, &a), 0);
        assert_int_equal(stat(pb, &b), 0);
        assert_int_equal(a.st_ino, b.st_ino);
}

/* Layers in order: a later layer replaces files, a directory by a file and a file by a
 * directory, and writes through an in-root symlink (bin -> usr/bin) land inside the root. */
static void test_layers_replace(void **state) {
        Fixture *f = *state;
        const Ent l1[] = {
                { "usr/bin/a", 'f', "one", 0 }, { "bin", 'l', "usr/bin", 0 }, { "x/", 'd', NULL, 0 },
                { "x/inside", 'f', "i", 0 },    { "y", 'f', "file", 0 },
        };
        const Ent l2[] = {
                { "usr/bin/a", 'f', "two", 0 }, { "bin/b", 'f', "via link", 0 },
                { "x", 'f', "now a file", 0 },  { "y/", 'd', NULL, 0 },
                { "y/z", 'f', "z", 0 },
        };
        _cleanup_free_ char *err = NULL;
        assert_int_equal(apply_ents(f->rootfd, l1, ELEMENTSOF(l1), COMP_NONE, NULL, &err), 0);
        assert_int_equal(apply_ents(f->rootfd, l2, ELEMENTSOF(l2), COMP_GZIP, NULL, &err), 0);
        _cleanup_free_ char *a = slurp(f->root, "usr/bin/a"), *b = slurp(f->root, "usr/bin/b"),
                            *x = slurp(f->root, "x"), *z = slurp(f->root, "y/z");
        assert_string_equal(a, "two");
        assert_string_equal(b, "via link");
        assert_string_equal(x, "now a file");
        assert_string_equal(z, "z");
}

static void test_whiteout(void **state) {
        Fixture *f = *state;
        const Ent l1[] = {
                { "a/x", 'f', "x", 0 },
                { "a/y", 'f', "y", 0 },
                { "a/sub/deep", 'f', "d", 0 },
        };
        const Ent l2[] = {
                { "a/.wh.x", 'f', "", 0 },
                { "a/.wh.sub", 'f', "", 0 },
                { "gone/.wh.nothing", 'f', "", 0 }, /* names a directory that is not there */
        };
        _cleanup_free_ char *err = NULL;
        ImageOciStats st = {};
        assert_int_equal(apply_ents(f->rootfd, l1, ELEMENTSOF(l1), COMP_NONE, &st, &err), 0);
        assert_int_equal(apply_ents(f->rootfd, l2, ELEMENTSOF(l2), COMP_NONE, &st, &err), 0);
        assert_false(exists(f->root, "a/x"));
        assert_false(exists(f->root, "a/sub"));
        assert_false(exists(f->root, "a/.wh.x"));
        assert_false(exists(f->root, "gone"));
        assert_true(exists(f->root, "a/y"));
        assert_int_equal(st.whiteouts, 3);
}

/* A whiteout never follows a symlink: removing "l/.wh.secret" where l -> the host directory
 * removes nothing outside the root. */
static void test_whiteout_through_symlink(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *secret = xasprintf("%s/secret", f->host);
        assert_int_equal(write_file_atomic_at(AT_FDCWD, secret, "keep", 4, 0644), 0);
        const Ent l1[] = { { "l", 'l', f->host, 0 }, { "m", 'l', "../../../../../..", 0 } };
        _cleanup_free_ char *rel = xasprintf("m%s/.wh.secret", f->host);
        const Ent l2[] = {
                { "l/.wh.secret", 'f', "", 0 },
                { rel, 'f', "", 0 },
        };
        _cleanup_free_ char *err = NULL;
        assert_int_equal(apply_ents(f->rootfd, l1, ELEMENTSOF(l1), COMP_NONE, NULL, &err), 0);
        (void) apply_ents(f->rootfd, l2, ELEMENTSOF(l2), COMP_NONE, NULL, &err);
        _cleanup_free_ char *c = slurp(f->host, "secret");
        assert_string_equal(c, "keep");
}

static void test_opaque(void **state) {
        Fixture *f = *state;
        const Ent l1[] = {
                { "d/old", 'f', "old", 0 },
                { "d/olddir/f", 'f', "f", 0 },
                { "e/kept", 'f', "k", 0 },
        };
        /* "d/early" comes before the marker in the same layer and stays; so does "d/new". */
        const Ent l2[] = {
                { "d/", 'd', NULL, 0 },
                { "d/early", 'f', "early", 0 },
                { "d/.wh..wh..opq", 'f', "", 0 },
                { "d/new", 'f', "new", 0 },
        };
        _cleanup_free_ char *err = NULL;
        assert_int_equal(apply_ents(f->rootfd, l1, ELEMENTSOF(l1), COMP_NONE, NULL, &err), 0);
        assert_int_equal(apply_ents(f->rootfd, l2, ELEMENTSOF(l2), COMP_NONE, NULL, &err), 0);
        assert_false(exists(f->root, "d/old"));
        assert_false(exists(f->root, "d/olddir"));
        assert_false(exists(f->root, "d/.wh..wh..opq"));
        assert_true(exists(f->root, "d/early"));
        assert_true(exists(f->root, "d/new"));
        assert_true(exists(f->root, "e/kept"));
}

static void refused(Fixture *f, const Ent *l, size_t n, const char *want_in_err) {
        _cleanup_free_ char *err = NULL;
        int r = apply_ents(f->rootfd, l, n, COMP_NONE, NULL, &err);
        assert_true(r < 0);
        assert_non_null(err);
        if (want_in_err && !strstr(err, want_in_err))
                fail_msg("error '%s' lacks '%s'", err, want_in_err);
}

static void test_dotdot_and_absolute_refused(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *abs = xasprintf("%s/evil", f->host);
        const Ent a[] = { { "../evil", 'f', "x", 0 } };
        const Ent b[] = { { "ok/../../evil", 'f', "x", 0 } };
        const Ent c[] = { { abs, 'f', "x", 0 } };
        const Ent d[] = { { "target", 'f', "t", 0 }, { "h", 'h', "../host/evil", 0 } };
        const Ent e[] = { { "h2", 'h', abs, 0 } };
        refused(f, a, ELEMENTSOF(a), "'..'");
        refused(f, b, ELEMENTSOF(b), "'..'");
        refused(f, c, ELEMENTSOF(c), "absolute");
        refused(f, d, ELEMENTSOF(d), "'..'");
        refused(f, e, ELEMENTSOF(e), "absolute");
        assert_false(exists(f->host, "evil"));
        assert_false(exists(f->tmp, "evil"));
}

/* The attack: a layer makes etc -> <host dir>, then writes etc/passwd. The path resolves
 * inside the root (where <host dir> does not exist), so the write is refused and the host is
 * untouched; the same with a relative link climbing out and with a hard link through it. */
static void test_symlink_then_write_through(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *hostfile = xasprintf("%s/passwd", f->host);
        assert_int_equal(write_file_atomic_at(AT_FDCWD, hostfile, "root:x:0:0\n", 11, 0644), 0);
        const Ent abs[] = { { "etc", 'l', f->host, 0 }, { "etc/passwd", 'f', "pwned", 0 } };
        refused(f, abs, ELEMENTSOF(abs), "etc/passwd");
        const Ent hl[] = { { "link", 'h', "etc/passwd", 0 } };
        refused(f, hl, ELEMENTSOF(hl), "link");
        const Ent rel[] = { { "etc2", 'l', "../../../../../../../../..", 0 } };
        _cleanup_free_ char *through = xasprintf("etc2%s/passwd", f->host);
        const Ent rel2[] = { { through, 'f', "pwned", 0 } };
        _cleanup_free_ char *err = NULL;
        assert_int_equal(apply_ents(f->rootfd, rel, ELEMENTSOF(rel), COMP_NONE, NULL, &err), 0);
        /* Resolved inside the root: the missing directories are made there, never on the host. */
        (void) apply_ents(f->rootfd, rel2, ELEMENTSOF(rel2), COMP_NONE, NULL, &err);
        _cleanup_free_ char *c = slurp(f->host, "passwd");
        assert_string_equal(c, "root:x:0:0\n");
        struct stat st;
        assert_int_equal(stat(hostfile, &st), 0);
        assert_int_equal(st.st_nlink, 1);
        /* And where the in-root counterpart exists, the write lands there. */
        _cleanup_free_ char *inroot = xasprintf("%s%s/passwd", f->root, f->host);
        if (access(inroot, F_OK) == 0) {
                _cleanup_free_ char *w = NULL;
                size_t n;
                assert_int_equal(read_full_file_at(AT_FDCWD, inroot, 1024, &w, &n), 0);
                assert_string_equal(w, "pwned");
        }
}

/* A symlink as the final name is replaced, never written through. */
static void test_final_symlink_replaced(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *hostfile = xasprintf("%s/target", f->host);
        assert_int_equal(write_file_atomic_at(AT_FDCWD, hostfile, "host", 4, 0644), 0);
        const Ent l1[] = { { "f", 'l', hostfile, 0 } };
        const Ent l2[] = { { "f", 'f', "layer", 0 } };
        _cleanup_free_ char *err = NULL;
        assert_int_equal(apply_ents(f->rootfd, l1, ELEMENTSOF(l1), COMP_NONE, NULL, &err), 0);
        assert_int_equal(apply_ents(f->rootfd, l2, ELEMENTSOF(l2), COMP_NONE, NULL, &err), 0);
        _cleanup_free_ char *h = slurp(f->host, "target"), *r = slurp(f->root, "f");
        assert_string_equal(h, "host");
        assert_string_equal(r, "layer");
}

static void test_setuid_stripped_devices_dropped(void **state) {
        Fixture *f = *state;
        const Ent l[] = {
                { "usr/bin/su", 'f', "elf", 04755 }, { "usr/bin/wall", 'f', "elf", 02755 },
                { "srv/", 'd', NULL, 02775 },        { "tmp/", 'd', NULL, 01777 },
                { "null", 'c', NULL, 0666 },         { "fifo", 'p', NULL, 0644 },
                { "dev/sda", 'f', "disk", 0644 },
        };
        _cleanup_free_ char *err = NULL;
        ImageOciStats st = {};
        assert_int_equal(apply_ents(f->rootfd, l, ELEMENTSOF(l), COMP_ZSTD, &st, &err), 0);
        assert_int_equal(mode_of(f->root, "usr/bin/su") & 07777, 0755);
        assert_int_equal(mode_of(f->root, "usr/bin/wall") & 07777, 0755);
        assert_int_equal(mode_of(f->root, "srv") & 07000, 0);
        assert_int_equal(mode_of(f->root, "tmp") & 07777, 01777);
        assert_false(exists(f->root, "null"));
        assert_false(exists(f->root, "fifo"));
        assert_false(exists(f->root, "dev/sda"));
        assert_int_equal(st.stripped, 3);
        assert_int_equal(st.dropped, 3);
}

/* ---- Whole archives -------------------------------------------------------------------- */

typedef struct Member {
        char *name;
        char *data;
        size_t size;
        const char *symlink; /* a link member instead of data */
} Member;

static void write_archive(const char *path, const Member *m, size_t n, bool gzip) {
        struct archive *a = archive_write_new();
        assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        if (gzip) /* docker save | gzip */
                assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
        assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, m[i].name);
                archive_entry_set_filetype(e, m[i].symlink ? AE_IFLNK : AE_IFREG);
                archive_entry_set_perm(e, 0644);
                if (m[i].symlink)
                        archive_entry_set_symlink(e, m[i].symlink);
                archive_entry_set_size(e, m[i].symlink ? 0 : (la_int64_t) m[i].size);
                assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
                if (!m[i].symlink)
                        assert_int_equal(archive_write_data(a, m[i].data, m[i].size), (la_ssize_t) m[i].size);
                archive_entry_free(e);
        }
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
}

static Member mem(const char *name, const char *data, size_t size) {
        Member m = { .name = xstrdup(name), .data = xmalloc(size + 1), .size = size };
        memcpy(m.data, data, size);
        return m;
}

static void members_free(Member *m, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(m[i].name);
                free(m[i].data);
        }
}

static int import(Fixture *f, const char *archive, char **ret_err_text, json_t **ret_info) {
        ImageBuildOptions o = { .quiet = true };
        ImageCtx ctx = { .opts = &o, .log_fd = -EBADF };
        json_t *info = NULL;
        int r = image_oci_import(&ctx, archive, f->root, &info);
        if (ret_info)
                *ret_info = info;
        else
                json_decref(info);
        (void) ret_err_text;
        return r;
}

/* docker save: manifest.json names the config (by its digest) and the layers; the config's
 * diff_ids give each layer's digest. */
static void docker_archive(Fixture *f, const char *path, bool corrupt_digest, const char *arch, bool gzip) {
        const Ent l1[] = { { "bin/sh", 'f', "shell", 0755 }, { "etc/old", 'f', "old", 0 } };
        const Ent l2[] = { { "usr/local/bin/hello", 'f', "#!/bin/sh\necho hello\n", 0755 },
                           { "etc/.wh.old", 'f', "", 0 } };
        size_t s1, s2;
        _cleanup_free_ char *t1 = build_tar(l1, ELEMENTSOF(l1), COMP_NONE, &s1),
                            *t2 = build_tar(l2, ELEMENTSOF(l2), COMP_NONE, &s2);
        char h1[SHA256_HEX_SIZE], h2[SHA256_HEX_SIZE], hc[SHA256_HEX_SIZE];
        sha256_hex(t1, s1, h1);
        sha256_hex(t2, s2, h2);
        if (corrupt_digest)
                h2[0] = h2[0] == '0' ? '1' : '0';
        _cleanup_free_ char *config = xasprintf(
                "{\"architecture\":\"%s\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\","
                "\"diff_ids\":[\"sha256:%s\",\"sha256:%s\"]}}",
                arch,
                h1,
                h2);
        sha256_hex(config, strlen(config), hc);
        _cleanup_free_ char *cname = xasprintf("%s.json", hc);
        _cleanup_free_ char *manifest = xasprintf(
                "[{\"Config\":\"%s\",\"RepoTags\":[\"hello:latest\"],\"Layers\":[\"l1/layer.tar\",\"l2/"
                "layer.tar\"]}]",
                cname);
        Member m[] = {
                mem("l1/layer.tar", t1, s1),
                mem("l2/layer.tar", t2, s2),
                mem(cname, config, strlen(config)),
                mem("manifest.json", manifest, strlen(manifest)),
        };
        write_archive(path, m, ELEMENTSOF(m), gzip);
        members_free(m, ELEMENTSOF(m));
        (void) f;
}

static void test_docker_save_import(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *path = xasprintf("%s/image.tar", f->tmp);
        docker_archive(f, path, false, "amd64", false);
        json_t *info = NULL;
        assert_int_equal(import(f, path, NULL, &info), 0);
        _cleanup_free_ char *hello = slurp(f->root, "usr/local/bin/hello");
        assert_string_equal(hello, "#!/bin/sh\necho hello\n");
        assert_false(exists(f->root, "etc/old"));
        assert_string_equal(json_string_value(json_object_get(info, "format")), "docker-save");
        assert_int_equal(json_array_size(json_object_get(info, "layers")), 2);
        assert_string_equal(
                json_string_value(json_array_get(json_object_get(info, "tags"), 0)), "hello:latest");
        json_decref(info);
}

/* docker save stores a layer that occurs twice once, the second as a symlink to the first;
 * a link leaving the archive is refused. */
static void docker_linked(const char *path, const char *link) {
        const Ent l1[] = { { "etc/x", 'f', "x", 0 } };
        size_t s1;
        _cleanup_free_ char *t1 = build_tar(l1, ELEMENTSOF(l1), COMP_NONE, &s1);
        char h1[SHA256_HEX_SIZE], hc[SHA256_HEX_SIZE];
        sha256_hex(t1, s1, h1);
        _cleanup_free_ char *config = xasprintf(
                "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:%s\",\"sha256:%s\"]}}", h1, h1);
        sha256_hex(config, strlen(config), hc);
        _cleanup_free_ char *cname = xasprintf("%s.json", hc);
        _cleanup_free_ char *manifest = xasprintf(
                "[{\"Config\":\"%s\",\"Layers\":[\"a/layer.tar\",\"b/layer.tar\"]}]", cname);
        Member m[] = {
                mem("a/layer.tar", t1, s1),
                mem("b/layer.tar", "", 0),
                mem(cname, config, strlen(config)),
                mem("manifest.json", manifest, strlen(manifest)),
        };
        m[1].symlink = link;
        write_archive(path, m, ELEMENTSOF(m), false);
        members_free(m, ELEMENTSOF(m));
}

static void test_docker_save_linked_layer(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *path = xasprintf("%s/image.tar", f->tmp);
        docker_linked(path, "../a/layer.tar");
        assert_int_equal(import(f, path, NULL, NULL), 0);
        assert_true(exists(f->root, "etc/x"));
        docker_linked(path, "../../a/layer.tar");
        assert_int_equal(import(f, path, NULL, NULL), -EBADMSG);
        docker_linked(path, "/etc/passwd");
        assert_int_equal(import(f, path, NULL, NULL), -EBADMSG);
        docker_linked(path, "layer.tar"); /* itself: a loop */
        assert_int_equal(import(f, path, NULL, NULL), -ENOENT);
}

/* The progress lines quote member names from the archive with their control characters made
 * visible: a crafted archive cannot drive the terminal of whoever imports it. */
static void test_progress_names_made_visible(void **state) {
        Fixture *f = *state;
        const Ent l1[] = { { "etc/x", 'f', "x", 0 } };
        size_t s1;
        _cleanup_free_ char *t1 = build_tar(l1, ELEMENTSOF(l1), COMP_NONE, &s1);
        char h1[SHA256_HEX_SIZE], hc[SHA256_HEX_SIZE];
        sha256_hex(t1, s1, h1);
        _cleanup_free_ char *config = xasprintf("{\"rootfs\":{\"diff_ids\":[\"sha256:%s\"]}}", h1);
        sha256_hex(config, strlen(config), hc);
        _cleanup_free_ char *cname = xasprintf("%s.json", hc);
        const char *evil = "\x1b]0;owned\x07\x1b[2Jlayer.tar";
        _cleanup_free_ char *manifest = xasprintf(
                "[{\"Config\":\"%s\",\"Layers\":[\"\\u001b]0;owned\\u0007\\u001b[2Jlayer.tar\"]}]", cname);
        Member m[] = {
                mem(evil, t1, s1),
                mem(cname, config, strlen(config)),
                mem("manifest.json", manifest, strlen(manifest)),
        };
        _cleanup_free_ char *path = xasprintf("%s/image.tar", f->tmp), *log = xasprintf("%s/stderr", f->tmp);
        write_archive(path, m, ELEMENTSOF(m), false);
        members_free(m, ELEMENTSOF(m));
        fflush(stderr);
        int saved = dup(2), lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(saved >= 0 && lfd >= 0);
        assert_int_equal(dup2(lfd, 2), 2);
        ImageBuildOptions o = { .quiet = false };
        ImageCtx ctx = { .opts = &o, .log_fd = -EBADF };
        json_t *info = NULL;
        int r = image_oci_import(&ctx, path, f->root, &info);
        fflush(stderr);
        assert_int_equal(dup2(saved, 2), 2);
        safe_close(saved);
        safe_close(lfd);
        json_decref(info);
        assert_int_equal(r, 0);
        _cleanup_free_ char *text = slurp(f->tmp, "stderr");
        assert_non_null(text);
        assert_non_null(strstr(text, "layer.tar applied"));
        assert_null(strchr(text, '\x1b'));
        assert_null(strchr(text, '\x07'));
}

/* The same archive gzip-compressed as a whole. */
static void test_docker_save_gzip(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *path = xasprintf("%s/image.tar.gz", f->tmp);
        docker_archive(f, path, false, "amd64", true);
        assert_int_equal(import(f, path, NULL, NULL), 0);
        _cleanup_free_ char *hello = slurp(f->root, "usr/local/bin/hello");
        assert_string_equal(hello, "#!/bin/sh\necho hello\n");
}

static void test_docker_save_bad_digest(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *path = xasprintf("%s/image.tar", f->tmp);
        docker_archive(f, path, true, "amd64", false);
        assert_int_equal(import(f, path, NULL, NULL), -EBADMSG);
}

static void test_docker_save_wrong_arch(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *path = xasprintf("%s/image.tar", f->tmp);
        docker_archive(f, path, false, "arm64", false);
        assert_int_equal(import(f, path, NULL, NULL), -EINVAL);
        assert_false(exists(f->root, "bin"));
}

/* OCI layout: oci-layout, index.json -> manifest blob -> config and gzip layer blobs. */
static void oci_archive(const char *path, bool bad_manifest_digest) {
        const Ent l1[] = { { "usr/local/bin/hello", 'f', "hi", 0755 } };
        size_t s1;
        _cleanup_free_ char *t1 = build_tar(l1, ELEMENTSOF(l1), COMP_GZIP, &s1);
        char h1[SHA256_HEX_SIZE], hc[SHA256_HEX_SIZE], hm[SHA256_HEX_SIZE];
        sha256_hex(t1, s1, h1);
        const char *config = "{\"architecture\":\"amd64\",\"os\":\"linux\"}";
        sha256_hex(config, strlen(config), hc);
        _cleanup_free_ char *man = xasprintf(
                "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
                "\"config\":{\"mediaType\":\"application/"
                "vnd.oci.image.config.v1+json\",\"digest\":\"sha256:%s\","
                "\"size\":%zu},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
                "\"digest\":\"sha256:%s\",\"size\":%zu}]}",
                hc,
                strlen(config),
                h1,
                s1);
        sha256_hex(man, strlen(man), hm);
        _cleanup_free_ char *index = xasprintf(
                "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/"
                "vnd.oci.image.manifest.v1+json\","
                "\"digest\":\"sha256:%s\",\"size\":%zu,\"annotations\":{\"org.opencontainers.image.ref."
                "name\":"
                "\"v1\"}}]}",
                hm,
                strlen(man));
        _cleanup_free_ char *n1 = xasprintf("blobs/sha256/%s", h1), *nc = xasprintf("blobs/sha256/%s", hc),
                            *nm = xasprintf("blobs/sha256/%s", hm);
        if (bad_manifest_digest)
                man[strlen(man) - 2] = ' '; /* the bytes no longer hash to their name */
        const char *layout = "{\"imageLayoutVersion\":\"1.0.0\"}";
        Member m[] = {
                mem("oci-layout", layout, strlen(layout)),
                mem("index.json", index, strlen(index)),
                mem(nm, man, strlen(man)),
                mem(nc, config, strlen(config)),
                mem(n1, t1, s1),
        };
        write_archive(path, m, ELEMENTSOF(m), false);
        members_free(m, ELEMENTSOF(m));
}

static void test_oci_layout_import(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *path = xasprintf("%s/oci.tar", f->tmp);
        oci_archive(path, false);
        json_t *info = NULL;
        assert_int_equal(import(f, path, NULL, &info), 0);
        _cleanup_free_ char *hello = slurp(f->root, "usr/local/bin/hello");
        assert_string_equal(hello, "hi");
        assert_string_equal(json_string_value(json_object_get(info, "format")), "oci-layout");
        json_decref(info);
}

static void test_oci_layout_bad_digest(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *path = xasprintf("%s/oci.tar", f->tmp);
        oci_archive(path, true);
        assert_int_equal(import(f, path, NULL, NULL), -EBADMSG);
        assert_false(exists(f->root, "usr"));
}

static void test_plan_refusals(void **state) {
        ImageOciPlan p = {};
        char *err = NULL;
        ImageOciFile two[] = { { (char *) "manifest.json", (char *) "[{},{}]", 7 } };
        assert_int_equal(image_oci_plan(two, 1, &p, &err), -EINVAL);
        assert_non_null(strstr(err, "2 images"));
        err = mfree(err);
        ImageOciFile none[] = { { (char *) "other.txt", (char *) "x", 1 } };
        assert_int_equal(image_oci_plan(none, 1, &p, &err), -EINVAL);
        assert_non_null(strstr(err, "manifest.json"));
        err = mfree(err);
        ImageOciFile notjson[] = { { (char *) "manifest.json", (char *) "[{", 2 } };
        assert_int_equal(image_oci_plan(notjson, 1, &p, &err), -EBADMSG);
        err = mfree(err);
        const char *nh = "[{\"Config\":\"c.json\",\"Layers\":[]}]";
        ImageOciFile nohex[] = { { (char *) "manifest.json", (char *) nh, strlen(nh) } };
        assert_int_equal(image_oci_plan(nohex, 1, &p, &err), -EBADMSG);
        assert_non_null(strstr(err, "sha256"));
        free(err);
}

static void put(const char *dir, const char *rel, const char *data) {
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
        _cleanup_free_ char *parent = xstrndup(p, (size_t) (strrchr(p, '/') - p));
        assert_int_equal(mkdir_p_at(AT_FDCWD, parent, 0755), 0);
        assert_int_equal(write_file_atomic_at(AT_FDCWD, p, data, strlen(data), 0644), 0);
}

/* The customising step after an import (agent user, mount points, trimming, machine-id) works
 * on a tree the archive made: a layer whose tmp, etc, var/log, etc/passwd or a doc directory
 * are absolute symlinks to host paths must not make it delete, empty or rewrite host files,
 * nor copy a host file into the image. f->host stands for the host's root. */
static void test_customize_stays_inside(void **state) {
        Fixture *f = *state;
        if (geteuid() != 0)
                skip(); /* the mount points are chowned to root and the agent */
        put(f->host, "tmp/keep", "host tmp file\n");
        put(f->host, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
        put(f->host, "etc/shadow", "root:$6$hostsecret:19000:0:99999:7:::\n");
        put(f->host, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        put(f->host, "etc/ssh/ssh_host_ed25519_key", "host key\n");
        put(f->host, "log/syslog", "host log\n");
        put(f->host, "doc/changelog.gz", "host changelog\n");
        put(f->host, "home/agent/.keep", "host home\n");
        _cleanup_free_ char *htmp = xasprintf("%s/tmp", f->host), *hetc = xasprintf("%s/etc", f->host),
                            *hlog = xasprintf("%s/log", f->host), *hdoc = xasprintf("%s/doc", f->host),
                            *hpw = xasprintf("%s/etc/passwd", f->host),
                            *hsh = xasprintf("%s/etc/shadow", f->host),
                            *hhome = xasprintf("%s/home", f->host);
        const Ent l1[] = {
                { "tmp", 'l', htmp, 0 },     { "home", 'l', hhome, 0 },
                { "var/log", 'l', hlog, 0 }, { "usr/share/doc/pkg", 'l', hdoc, 0 },
                { "etc", 'l', hetc, 0 },
        };
        _cleanup_free_ char *err = NULL;
        assert_int_equal(apply_ents(f->rootfd, l1, ELEMENTSOF(l1), COMP_NONE, NULL, &err), 0);
        ImageCtx ctx = { .started = now_usec(CLOCK_MONOTONIC) };
        assert_int_equal(image_rootfs_customize(&ctx, f->root), 0);

        /* The host is as it was. */
        _cleanup_free_ char *k = slurp(f->host, "tmp/keep"), *pw = slurp(f->host, "etc/passwd"),
                            *sh = slurp(f->host, "etc/shadow"), *mid = slurp(f->host, "etc/machine-id");
        assert_non_null(k);
        assert_string_equal(pw, "root:x:0:0:root:/root:/bin/sh\n");
        assert_string_equal(sh, "root:$6$hostsecret:19000:0:99999:7:::\n");
        assert_string_equal(mid, "0123456789abcdef0123456789abcdef\n");
        assert_true(exists(f->host, "etc/ssh/ssh_host_ed25519_key"));
        assert_true(exists(f->host, "log/syslog"));
        assert_true(exists(f->host, "doc/changelog.gz"));
        assert_true(exists(f->host, "home/agent/.keep"));
        assert_int_equal(mode_of(f->host, "home") & 07777, 0755);

        /* The image got real directories in place of the links, and its own user files. */
        assert_true(S_ISDIR(mode_of(f->root, "tmp")));
        assert_true(S_ISDIR(mode_of(f->root, "etc")));
        assert_true(S_ISDIR(mode_of(f->root, "home/agent")));
        _cleanup_free_ char *ipw = slurp(f->root, "etc/passwd");
        assert_non_null(ipw);
        assert_non_null(strstr(ipw, "agent:x:1000:"));
        assert_null(strstr(ipw, "root:x:0:0"));
        assert_true(S_ISLNK(mode_of(f->root, "etc/resolv.conf")));

        /* A second layer, over real directories, links single files to the host's. */
        image_rm_rf(f->root);
        assert_int_equal(mkdir(f->root, 0755), 0);
        safe_close(f->rootfd);
        f->rootfd = open(f->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        const Ent l2[] = {
                { "etc/", 'd', NULL, 0755 },
                { "etc/passwd", 'l', hpw, 0 },
                { "etc/shadow", 'l', hsh, 0 },
                { "etc/group", 'l', "../../../../../../../etc/group.host", 0 },
        };
        err = mfree(err);
        assert_int_equal(apply_ents(f->rootfd, l2, ELEMENTSOF(l2), COMP_NONE, NULL, &err), 0);
        assert_int_equal(image_rootfs_customize(&ctx, f->root), 0);
        _cleanup_free_ char *pw2 = slurp(f->host, "etc/passwd"), *sh2 = slurp(f->host, "etc/shadow"),
                            *ipw2 = slurp(f->root, "etc/passwd"), *ish2 = slurp(f->root, "etc/shadow");
        assert_string_equal(pw2, "root:x:0:0:root:/root:/bin/sh\n");
        assert_string_equal(sh2, "root:$6$hostsecret:19000:0:99999:7:::\n");
        assert_true(S_ISREG(mode_of(f->root, "etc/passwd")));
        assert_null(strstr(ipw2, "root:x:0:0"));
        assert_null(strstr(ish2, "hostsecret"));
}

/* The git copied onto an imported image's system disk gets Nucleus's loader as its PT_INTERP. */
static void test_elf_set_interp(void **state) {
        _cleanup_free_ char *data = NULL;
        size_t n;
        if (read_full_file_at(AT_FDCWD, "/bin/true", 16u << 20, &data, &n) < 0)
                skip();
        assert_non_null(memmem(data, n, "/lib64/ld-linux-x86-64.so.2", 28));
        char long_name[128];
        memset(long_name, 'x', sizeof long_name - 1);
        long_name[0] = '/';
        long_name[sizeof long_name - 1] = 0;
        assert_int_equal(image_elf_set_interp(data, n, long_name), -ENAMETOOLONG);
        assert_int_equal(image_elf_set_interp(data, n, IMAGE_SYSTEM_LOADER_SHORT), 0);
        assert_null(memmem(data, n, "/lib64/ld-linux-x86-64.so.2", 28));
        assert_non_null(memmem(data, n, IMAGE_SYSTEM_LOADER_SHORT, sizeof IMAGE_SYSTEM_LOADER_SHORT));
        char notelf[64] = "not an ELF file";
        assert_int_equal(image_elf_set_interp(notelf, sizeof notelf, IMAGE_SYSTEM_LOADER_SHORT), -ENOEXEC);
        /* Truncated program headers are refused, not read past the end. */
        assert_int_equal(image_elf_set_interp(data, 80, IMAGE_SYSTEM_LOADER_SHORT), -ENOEXEC);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_basic_tree, setup, teardown),
                cmocka_unit_test_setup_teardown(test_layers_replace, setup, teardown),
                cmocka_unit_test_setup_teardown(test_whiteout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_whiteout_through_symlink, setup, teardown),
                cmocka_unit_test_setup_teardown(test_opaque, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dotdot_and_absolute_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_symlink_then_write_through, setup, teardown),
                cmocka_unit_test_setup_teardown(test_final_symlink_replaced, setup, teardown),
                cmocka_unit_test_setup_teardown(test_setuid_stripped_devices_dropped, setup, teardown),
                cmocka_unit_test_setup_teardown(test_docker_save_import, setup, teardown),
                cmocka_unit_test_setup_teardown(test_docker_save_gzip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_progress_names_made_visible, setup, teardown),
                cmocka_unit_test_setup_teardown(test_docker_save_linked_layer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_docker_save_bad_digest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_docker_save_wrong_arch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_oci_layout_import, setup, teardown),
                cmocka_unit_test_setup_teardown(test_oci_layout_bad_digest, setup, teardown),
                cmocka_unit_test(test_plan_refusals),
                cmocka_unit_test_setup_teardown(test_customize_stays_inside, setup, teardown),
                cmocka_unit_test(test_elf_set_interp),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
