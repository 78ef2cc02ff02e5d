/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus image build: build or refresh the guest images (kernel, initramfs, system disk, rootfs, manifest)
 * in the images dir, reusing every artifact whose inputs did not change. Progress goes to
 * stderr; the result (the manifest) to stdout, as text or one JSON document. Options are the
 * user's own; the paths they name are read, never written, except the images dir.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-files.h"
#include "cli.h"
#include "escape.h"
#include "client-paths.h"
#include "config.h"
#include "json-util.h"
#include "log.h"
#include "parse-util.h"
#include "string-util.h"

#ifdef NUCLEUS_HAVE_IMAGE_DEP
#        include "image.h"

/* Named images: built beside the default one in <images dir>/<name>, selected with spec.image
 * or nucleus run --image. The recipes give the common stacks with no package list; every
 * image also holds IMAGE_DEFAULT_PACKAGES (git for the baseline and export). What the proxy
 * needs beyond that (the proxy and init themselves) comes from the initramfs and the system
 * disk, never from the rootfs. */
typedef struct ImageRecipe {
        const char *name;
        const char *packages; /* on top of IMAGE_DEFAULT_PACKAGES */
} ImageRecipe;

static const ImageRecipe image_recipes[] = {
        { "python", "python3,python3-pytest,python3-pip,python3-venv" },
        { "node", "nodejs,npm" },
        { "c", "build-essential,pkg-config,cmake,meson,ninja-build" },
        { "rust", "cargo,rustc,build-essential" },
        { "go", "golang-go,build-essential" },
};

static const ImageRecipe *image_recipe_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(image_recipes); i++)
                if (streq(image_recipes[i].name, name))
                        return &image_recipes[i];
        return NULL;
}

/* The same syntax spec.image accepts (src/lib/spec/podspec.c): never a path. */
static bool image_name_valid(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= 64 && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')) &&
                strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n && !strstr(s, "..") &&
                !streq(s, "cache") && !streq(s, "default");
}

static void strv_extend_csv(char ***l, const char *csv) {
        _cleanup_free_ char *d = xstrdup(csv);
        char *save = NULL;
        for (char *t = strtok_r(d, ",", &save); t; t = strtok_r(NULL, ",", &save))
                strv_extend(l, t);
}

/* A named image's dir shares the default image's kernel cache (same package, same hash), so a
 * second image does not download the kernel again. */
static void image_share_kernel_cache(const char *images_dir, const char *dir) {
        _cleanup_free_ char *cache = xasprintf("%s/cache", dir), *link = xasprintf("%s/cache/kernel", dir),
                            *target = xasprintf("%s/cache/kernel", images_dir);
        struct stat st;
        if (stat(target, &st) < 0 || !S_ISDIR(st.st_mode) || lstat(link, &st) == 0)
                return;
        (void) mkdir(dir, 0755);
        (void) mkdir(cache, 0755);
        if (symlink(target, link) < 0)
                log_debug_errno(-errno, "Cannot share the kernel cache at %s: %m", link);
}

/* nucleus image ls: the default image and every named one, with size and packages. */
static int image_ls_verb(int argc, char **argv) {
        _cleanup_free_ char *dir = NULL;
        OutputMode output = OUTPUT_TEXT;
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--images-dir") && i + 1 < argc) {
                        free(dir);
                        dir = xstrdup(argv[++i]);
                } else if (streq(argv[i], "--output") && i + 1 < argc) {
                        int r = cli_parse_output(argv[++i], &output);
                        if (r != 0)
                                return r;
                } else
                        return cli_usage_error("image", "ls takes --images-dir DIR and --output text|json");
        }
        if (!dir && client_images_dir(&dir) < 0)
                return cli_usage_error("image", "pass --images-dir");
        json_t *list = json_array();
        _cleanup_json_ json_t *doc = json_pack("{s:s, s:o}", "images_dir", dir, "images", list);
        _cleanup_strv_free_ char **names = NULL;
        strv_extend(&names, "default");
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d)))
                if (image_name_valid(de->d_name))
                        strv_extend(&names, de->d_name);
        if (d)
                closedir(d);
        strv_sort_uniq(names + 1);
        STRV_FOREACH(nm, names) {
                _cleanup_free_ char *idir = streq(*nm, "default") ? xstrdup(dir)
                                                                  : xasprintf("%s/%s", dir, *nm);
                _cleanup_json_ json_t *m = NULL;
                if (image_manifest_load(idir, &m) < 0)
                        continue;
                json_t *rootfs = json_object_get(m, "rootfs");
                json_t *art = json_object_get(json_object_get(m, "artifacts"), IMAGE_ROOTFS);
                json_t *pk = json_object_get(rootfs, "packages");
                json_t *entry = json_pack(
                        "{s:s, s:s, s:I, s:O, s:s, s:O}",
                        "name",
                        *nm,
                        "dir",
                        idir,
                        "rootfs_bytes",
                        json_integer_value(json_object_get(art, "size")),
                        "packages",
                        pk ? pk : json_array(),
                        "source",
                        json_string_value(json_object_get(rootfs, "source")) ?: "?",
                        "built_at",
                        json_object_get(m, "built_at") ?: json_null());
                /* Where the package list came from (recipe, --packages, config.toml), or the
                 * OCI image an imported rootfs was made from. */
                json_t *from = json_object_get(rootfs, "packages_from");
                if (json_is_string(from))
                        json_object_set(entry, "packages_from", from);
                json_t *oci = json_object_get(rootfs, "oci");
                if (json_is_object(oci))
                        json_object_set(entry, "oci", oci);
                json_array_append_new(list, entry);
        }
        if (output == OUTPUT_JSON)
                return cli_print_json(doc) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        printf("%-16s %10s  %s\n", "NAME", "ROOTFS", "PACKAGES (FROM) / SOURCE");
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) {
                _cleanup_free_ char *pk = NULL;
                size_t j;
                json_t *p;
                json_array_foreach(json_object_get(v, "packages"), j, p) {
                        char *n = xasprintf("%s%s%s", pk ?: "", pk ? "," : "", json_string_value(p));
                        free(pk);
                        pk = n;
                }
                json_t *oci = json_object_get(v, "oci");
                const char *from = json_string_value(json_object_get(v, "packages_from"));
                _cleanup_free_ char *what = NULL;
                if (oci) {
                        json_t *tag = json_array_get(json_object_get(oci, "tags"), 0);
                        what = xasprintf(
                                "%s image %s (%zu layers)",
                                json_string_value(json_object_get(oci, "format")) ?: "oci",
                                json_is_string(tag) ? json_string_value(tag)
                                                    : json_string_value(json_object_get(oci, "config_digest")) ?: "?",
                                json_array_size(json_object_get(oci, "layers")));
                } else if (pk)
                        what = xasprintf("%s%s%s%s", pk, from ? " (" : "", from ?: "", from ? ")" : "");
                else
                        what = xstrdup(json_string_value(json_object_get(v, "source")) ?: "?");
                /* Tags come from the archive: shown with hidden characters made visible. */
                _cleanup_free_ char *shown = string_make_visible(what);
                printf("%-16s %7lld MiB  %s\n",
                       json_string_value(json_object_get(v, "name")),
                       (long long) (json_integer_value(json_object_get(v, "rootfs_bytes")) >> 20),
                       shown);
        }
        if (json_array_size(list) == 0)
                printf("(no image built in %s: nucleus image build)\n", dir);
        return CLI_EXIT_OK;
}

static void image_help(void) {
        printf("Usage: nucleus image build [--name NAME] [OPTIONS]\n"
               "       nucleus image build --all     (every [images.NAME] table of config.toml)\n"
               "       nucleus image import --name NAME FILE.tar   (docker save / OCI layout archive)\n"
               "       nucleus image ls [--images-dir DIR] [--output text|json]\n"
               "       nucleus image argv --images-dir DIR --console FILE [--scratch FILE --channel SOCK]\n"
               "                          [--no-disks] [--memory MIB] [--accel tcg|kvm] [--cmdline-extra "
               "S]\n"
               "                          [--tcg-tb-mib N] [--ksm]\n"
               "                          [--stock-boot]   (bzImage, no boot tuning: bench/boot's "
               "baseline)\n"
               "       nucleus image scratch PATH SIZE_MIB\n"
               "       nucleus image probe [--images-dir DIR]\n\n"
               "Build the guest images (kernel, initramfs, system disk, rootfs) into the images dir. Each\n"
               "artifact is cached by the SHA-256 of its inputs and rebuilt only when they change.\n\n"
               "  --images-dir DIR        Output directory (default: the configured images dir)\n"
               "  --name NAME             A named image beside the default one (<images dir>/NAME),\n"
               "                          for spec.image / nucleus run --image NAME. Its packages:\n"
               "                          --packages, else config.toml [images.NAME] packages, else\n"
               "                          the recipe (python, node, c, rust, go)\n"
               "  --all                   Build every [images.NAME] table of config.toml\n"
               "  --force                 Rebuild everything\n"
               "  --packages LIST         Comma-separated rootfs packages (default: " IMAGE_DEFAULT_PACKAGES
               ")\n"
               "  --rootfs-tar FILE       Import this rootfs tar (e.g. a docker export) instead\n"
               "  --from-oci FILE         Use this OCI image archive (docker save, podman save, an OCI\n"
               "                          layout tar) as the rootfs of --name NAME (= image import)\n"
               "  --kernel-deb FILE       Use this kernel package instead of apt-get download\n"
               "  --kernel-sha256 HEX     Its SHA-256 (required with --kernel-deb)\n"
               "  --init FILE             Static nucleus-guest-init (default: the built one)\n"
               "  --proxy FILE            Static nucleus-tool-proxy (default: the built one)\n"
               "  --output text|json      Result format on stdout\n"
               "  -h, --help              Show this help\n");
}

/* nucleus image argv: print the QEMU argv the node would use, as one JSON array (tests, bench
 * and debugging use it so they exercise the same builder as the node). */
static int image_argv_verb(int argc, char **argv) {
        enum {
                ARG_IMAGES_DIR = 0x100,
                ARG_SCRATCH,
                ARG_CHANNEL,
                ARG_CONSOLE,
                ARG_QMP,
                ARG_MEMORY,
                ARG_ACCEL,
                ARG_EXTRA,
                ARG_INITRAMFS,
                ARG_NO_DISKS,
                ARG_TAP,
                ARG_MAC,
                ARG_NET,
                ARG_STOCK_BOOT,
                ARG_TB,
                ARG_KSM,
        };
        static const struct option options[] = {
                { "images-dir", required_argument, NULL, ARG_IMAGES_DIR },
                { "scratch", required_argument, NULL, ARG_SCRATCH },
                { "channel", required_argument, NULL, ARG_CHANNEL },
                { "console", required_argument, NULL, ARG_CONSOLE },
                { "qmp", required_argument, NULL, ARG_QMP },
                { "memory", required_argument, NULL, ARG_MEMORY },
                { "accel", required_argument, NULL, ARG_ACCEL },
                { "cmdline-extra", required_argument, NULL, ARG_EXTRA },
                { "initramfs", required_argument, NULL, ARG_INITRAMFS },
                { "no-disks", no_argument, NULL, ARG_NO_DISKS },
                { "tap", required_argument, NULL, ARG_TAP },
                { "mac", required_argument, NULL, ARG_MAC },
                { "net", required_argument, NULL, ARG_NET },
                { "stock-boot", no_argument, NULL, ARG_STOCK_BOOT },
                { "tcg-tb-mib", required_argument, NULL, ARG_TB },
                { "ksm", no_argument, NULL, ARG_KSM },
                {},
        };
        _cleanup_free_ char *dir = NULL, *kernel = NULL, *initramfs = NULL, *rootfs = NULL, *system = NULL;
        ImageQemuConfig q = { .accel = IMAGE_ACCEL_TCG };
        bool no_disks = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case ARG_IMAGES_DIR:
                        free(dir);
                        dir = xstrdup(optarg);
                        break;
                case ARG_SCRATCH:
                        q.scratch = optarg;
                        break;
                case ARG_CHANNEL:
                        q.channel_socket = optarg;
                        break;
                case ARG_CONSOLE:
                        q.console_log = optarg;
                        break;
                case ARG_QMP:
                        q.qmp_socket = optarg;
                        break;
                case ARG_MEMORY: {
                        uint32_t v;
                        if (safe_atou32(optarg, &v) < 0)
                                return cli_usage_error(
                                        "image", "--memory: '%s' is not a number of MiB", optarg);
                        q.memory_mib = v;
                        break;
                }
                case ARG_ACCEL:
                        q.accel = image_accel_from_string(optarg);
                        if (q.accel < 0)
                                return cli_usage_error("image", "--accel must be tcg or kvm");
                        break;
                case ARG_EXTRA:
                        q.extra_cmdline = optarg;
                        break;
                case ARG_INITRAMFS:
                        free(initramfs);
                        initramfs = xstrdup(optarg);
                        break;
                case ARG_NO_DISKS:
                        no_disks = true;
                        break;
                case ARG_TAP:
                        q.tap_ifname = optarg;
                        break;
                case ARG_MAC:
                        q.mac = optarg;
                        break;
                case ARG_NET:
                        q.net_cmdline = optarg;
                        break;
                case ARG_STOCK_BOOT:
                        q.stock_boot = true;
                        break;
                case ARG_TB: {
                        uint32_t v;
                        if (safe_atou32(optarg, &v) < 0 || v < 4 || v > 2048)
                                return cli_usage_error(
                                        "image", "--tcg-tb-mib: '%s' is not a number of MiB in 4..2048", optarg);
                        q.tcg_tb_mib = v;
                        break;
                }
                case ARG_KSM:
                        q.mem_merge = true;
                        break;
                default:
                        return CLI_EXIT_USAGE;
                }
        if (!dir && (r = client_images_dir(&dir)) < 0)
                return cli_usage_error("image", "pass --images-dir");
        if (!q.console_log || (!no_disks && !q.scratch))
                return cli_usage_error("image", "argv needs --console and --scratch (or --no-disks)");
        kernel = xasprintf("%s/%s", dir, q.stock_boot ? IMAGE_VMLINUZ : IMAGE_QEMU_KERNEL);
        if (!initramfs)
                initramfs = xasprintf("%s/%s", dir, IMAGE_INITRAMFS);
        rootfs = xasprintf("%s/%s", dir, IMAGE_ROOTFS);
        system = xasprintf("%s/%s", dir, IMAGE_SYSTEM);
        q.kernel = kernel;
        q.initramfs = initramfs;
        q.rootfs = no_disks ? NULL : rootfs;
        q.system = system;

        _cleanup_strv_free_ char **a = NULL;
        if ((r = image_qemu_argv(&q, &a)) < 0) {
                log_error_errno(r, "Cannot build the QEMU argv: %m");
                return CLI_EXIT_FAILURE;
        }
        _cleanup_json_ json_t *j = json_array();
        STRV_FOREACH(s, a)
                json_array_append_new(j, json_string(*s));
        return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}

/* nucleus image scratch PATH SIZE_MIB: make a per-pod scratch disk exactly as the node does. */
static int image_scratch_verb(int argc, char **argv) {
        uint64_t mib;
        if (argc != 3 || safe_atou64(argv[2], &mib) < 0 || mib == 0 || mib > (UINT64_C(1) << 24))
                return cli_usage_error("image", "usage: nucleus image scratch PATH SIZE_MIB");
        int r = image_scratch_create(argv[1], mib << 20);
        if (r < 0) {
                log_error_errno(r, "Cannot create the scratch disk %s: %m", argv[1]);
                return CLI_EXIT_FAILURE;
        }
        return CLI_EXIT_OK;
}

/* nucleus image probe: run the KVM probe (TCG fallback) and print the decision. */
static int image_probe_verb(int argc, char **argv) {
        _cleanup_free_ char *dir = NULL, *reason = NULL;
        if (argc >= 3 && streq(argv[1], "--images-dir"))
                dir = xstrdup(argv[2]);
        else if (client_images_dir(&dir) < 0)
                return cli_usage_error("image", "pass --images-dir");
        _cleanup_free_ char *kernel = xasprintf("%s/%s", dir, IMAGE_QEMU_KERNEL),
                            *initramfs = xasprintf("%s/%s", dir, IMAGE_INITRAMFS);
        ImageAccel a;
        int r = image_kvm_probe(NULL, kernel, initramfs, 10 * USEC_PER_SEC, &a, &reason);
        if (r < 0) {
                log_error_errno(r, "Probe failed: %m");
                return CLI_EXIT_FAILURE;
        }
        _cleanup_json_ json_t *j = json_pack("{s:s, s:s}", "accel", image_accel_to_string(a), "reason", reason);
        return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}

static void print_text(const json_t *m, const char *dir) {
        json_t *arts = json_object_get(m, "artifacts");
        const char *k;
        json_t *v;
        printf("Images in %s (kernel %s):\n",
               dir,
               json_string_value(json_object_get(json_object_get(m, "kernel"), "release")));
        json_object_foreach((json_t *) arts, k, v)
                printf("  %-18s %12lld bytes  sha256 %s\n",
                       k,
                       (long long) json_integer_value(json_object_get(v, "size")),
                       json_string_value(json_object_get(v, "sha256")));
}

/* config.toml's [images.NAME] tables ({} when the file does not exist). Returns 0, or an exit
 * code after saying what is wrong with the file (FILE:LINE:COL: images.NAME.KEY: problem). */
static int image_config_tables(json_t **ret, char **ret_path) {
        _cleanup_free_ char *path = NULL, *err = NULL;
        CliConfig *cfg = NULL;
        int r = client_config_file(&path);
        if (r < 0) {
                *ret = json_object();
                return 0;
        }
        r = cli_config_load(path, false, &cfg, &err);
        if (r < 0) {
                log_error("%s", err ?: "cannot read config.toml");
                return CLI_EXIT_FAILURE;
        }
        *ret = json_incref(cfg->images.named) ?: json_object();
        *ret_path = TAKE_PTR(path);
        cli_config_free(cfg);
        return 0;
}

static char **table_packages(json_t *t) {
        char **l = NULL;
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(t, "packages"), i, v)
                strv_extend(&l, json_string_value(v));
        return l;
}

/* Build one image: the default (name NULL) or <images dir>/NAME. packages (NULL: the default
 * list, or the OCI/tar import in o) gets IMAGE_DEFAULT_PACKAGES added for a named image; from
 * says where the list came from. With collect, the manifest is added there instead of being
 * printed as JSON. */
static int image_build_one(
        const ImageBuildOptions *base,
        const char *images_dir,
        const char *name,
        char *const *packages,
        const char *from,
        OutputMode output,
        json_t *collect) {
        ImageBuildOptions o = *base;
        _cleanup_strv_free_ char **pk = packages ? strv_copy(packages) : NULL;
        _cleanup_free_ char *dir = name ? xasprintf("%s/%s", images_dir, name) : xstrdup(images_dir);
        if (name) {
                /* The proxy's own needs (git for the baseline and export) are always in. */
                if (pk)
                        strv_extend_csv(&pk, IMAGE_DEFAULT_PACKAGES);
                image_share_kernel_cache(images_dir, dir);
        }
        o.images_dir = dir;
        o.packages = pk;
        o.packages_from = pk ? from : NULL;

        _cleanup_json_ json_t *m = NULL;
        int r = image_build(&o, &m);
        if (r < 0) {
                if (output == OUTPUT_JSON) {
                        _cleanup_json_ json_t *e = json_pack(
                                "{s:s, s:s, s:s?}",
                                "error",
                                "image build failed (see the images dir's cache/build.log)",
                                "kind",
                                "io_error",
                                "image",
                                name);
                        (void) cli_print_json(e);
                }
                log_error_errno(r, "Image build failed%s%s: %m", name ? " for " : "", name ?: "");
                return CLI_EXIT_FAILURE;
        }
        if (collect) {
                json_object_set_new(m, "image", json_string(name));
                json_array_append(collect, m);
                if (output == OUTPUT_JSON)
                        return CLI_EXIT_OK;
        }
        if (output == OUTPUT_JSON)
                return cli_print_json(m) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        print_text(m, dir);
        return CLI_EXIT_OK;
}

int verb_image(int argc, char **argv) {
        enum {
                ARG_IMAGES_DIR = 0x100,
                ARG_FORCE,
                ARG_PACKAGES,
                ARG_ROOTFS_TAR,
                ARG_KERNEL_DEB,
                ARG_KERNEL_SHA256,
                ARG_INIT,
                ARG_PROXY,
                ARG_OUTPUT,
                ARG_NAME,
                ARG_FROM_OCI,
                ARG_ALL,
        };
        static const struct option options[] = {
                { "images-dir", required_argument, NULL, ARG_IMAGES_DIR },
                { "name", required_argument, NULL, ARG_NAME },
                { "from-oci", required_argument, NULL, ARG_FROM_OCI },
                { "all", no_argument, NULL, ARG_ALL },
                { "force", no_argument, NULL, ARG_FORCE },
                { "packages", required_argument, NULL, ARG_PACKAGES },
                { "rootfs-tar", required_argument, NULL, ARG_ROOTFS_TAR },
                { "kernel-deb", required_argument, NULL, ARG_KERNEL_DEB },
                { "kernel-sha256", required_argument, NULL, ARG_KERNEL_SHA256 },
                { "init", required_argument, NULL, ARG_INIT },
                { "proxy", required_argument, NULL, ARG_PROXY },
                { "output", required_argument, NULL, ARG_OUTPUT },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_free_ char *dir = NULL, *init = NULL, *proxy = NULL, *name = NULL, *fetch = NULL;
        _cleanup_strv_free_ char **packages = NULL;
        ImageBuildOptions o = {};
        OutputMode output = OUTPUT_TEXT;
        int c, r;

        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                image_help();
                return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
        }
        if (streq(argv[1], "argv"))
                return image_argv_verb(argc - 1, argv + 1);
        if (streq(argv[1], "scratch"))
                return image_scratch_verb(argc - 1, argv + 1);
        if (streq(argv[1], "probe"))
                return image_probe_verb(argc - 1, argv + 1);
        if (streq(argv[1], "ls"))
                return image_ls_verb(argc - 1, argv + 1);
        /* import FILE is build --from-oci FILE. */
        bool import = streq(argv[1], "import"), all = false;
        if (!streq(argv[1], "build") && !import)
                return cli_usage_error(
                        "image",
                        "unknown subcommand '%s' (expected build, import, ls, argv, scratch or probe)",
                        argv[1]);
        argc--;
        argv++;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case ARG_IMAGES_DIR:
                        free(dir);
                        dir = xstrdup(optarg);
                        break;
                case ARG_FORCE:
                        o.force = true;
                        break;
                case ARG_NAME:
                        if (!image_name_valid(optarg))
                                return cli_usage_error(
                                        "image",
                                        "--name '%s': lower-case letters, digits, '.', '_' and '-', at most "
                                        "64, "
                                        "not 'default' or 'cache'",
                                        optarg);
                        free(name);
                        name = xstrdup(optarg);
                        break;
                case ARG_PACKAGES: {
                        packages = strv_free(packages);
                        _cleanup_free_ char *s = xstrdup(optarg);
                        char *save = NULL;
                        for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save))
                                strv_extend(&packages, t);
                        if (!packages)
                                return cli_usage_error("image", "--packages needs at least one package");
                        break;
                }
                case ARG_ROOTFS_TAR:
                        o.rootfs_tar = optarg;
                        break;
                case ARG_FROM_OCI:
                        o.oci_archive = optarg;
                        break;
                case ARG_ALL:
                        all = true;
                        break;
                case ARG_KERNEL_DEB:
                        o.kernel_deb = optarg;
                        break;
                case ARG_KERNEL_SHA256:
                        o.kernel_sha256 = optarg;
                        break;
                case ARG_INIT:
                        free(init);
                        init = xstrdup(optarg);
                        break;
                case ARG_PROXY:
                        free(proxy);
                        proxy = xstrdup(optarg);
                        break;
                case ARG_OUTPUT:
                        if ((r = cli_parse_output(optarg, &output)) != 0)
                                return r;
                        break;
                case 'h':
                        image_help();
                        return CLI_EXIT_OK;
                default:
                        return CLI_EXIT_USAGE;
                }
        if (import) {
                if (optind + 1 != argc || o.oci_archive)
                        return cli_usage_error("image", "usage: nucleus image import --name NAME FILE.tar");
                o.oci_archive = argv[optind++];
        }
        if (optind < argc)
                return cli_usage_error("image", "unexpected argument '%s'", argv[optind]);
        if (all && (name || packages || o.rootfs_tar || o.oci_archive))
                return cli_usage_error(
                        "image",
                        "--all builds every [images.NAME] table of config.toml; it takes no --name, "
                        "--packages, --rootfs-tar or --from-oci");
        if (o.oci_archive && !name)
                return cli_usage_error("image", "an OCI image archive becomes a named image: pass --name NAME");
        if (o.oci_archive && (packages || o.rootfs_tar))
                return cli_usage_error("image", "an OCI image archive excludes --packages and --rootfs-tar");
        if (!!o.kernel_deb != !!o.kernel_sha256)
                return cli_usage_error("image", "--kernel-deb and --kernel-sha256 go together");
        if (o.kernel_sha256 &&
            (strlen(o.kernel_sha256) != 64 || strspn(o.kernel_sha256, "0123456789abcdefABCDEF") != 64))
                return cli_usage_error("image", "--kernel-sha256 must be 64 hex digits");
        if (o.rootfs_tar && packages)
                return cli_usage_error("image", "--packages and --rootfs-tar exclude each other");

        if (!dir && (r = client_images_dir(&dir)) < 0) {
                log_error_errno(r, "Cannot determine the images dir (pass --images-dir): %m");
                return CLI_EXIT_FAILURE;
        }
        /* A named image's package list: --packages, else config.toml's [images.NAME] table,
         * else the shipped recipe. The config file is read (and must be valid) only then. */
        _cleanup_json_ json_t *tables = NULL;
        _cleanup_free_ char *cfgpath = NULL, *from = NULL;
        if (all || (name && !packages && !o.rootfs_tar && !o.oci_archive)) {
                r = image_config_tables(&tables, &cfgpath);
                if (r != 0)
                        return r;
        }
        if (name && !packages && !o.rootfs_tar && !o.oci_archive) {
                json_t *t = json_object_get(tables, name);
                const ImageRecipe *rec = image_recipe_find(name);
                if (t) {
                        packages = table_packages(t);
                        from = xasprintf(
                                "config.toml [images.%s] (%s:%lld)",
                                name,
                                cfgpath,
                                (long long) json_integer_value(json_object_get(t, "line")));
                } else if (rec) {
                        strv_extend_csv(&packages, rec->packages);
                        from = xasprintf("recipe %s", name);
                } else
                        return cli_usage_error(
                                "image",
                                "no recipe for '%s' (recipes: python, node, c, rust, go) and no [images.%s] "
                                "table in %s: pass --packages, --from-oci or --rootfs-tar",
                                name,
                                name,
                                cfgpath ?: "config.toml");
        } else if (packages)
                from = xstrdup("--packages");
        if (!init && cli_find_helper("nucleus-guest-init", "NUCLEUS_GUEST_INIT", "../guest/init", &init) < 0) {
                log_error("nucleus-guest-init not found: build it or pass --init / set NUCLEUS_GUEST_INIT");
                return CLI_EXIT_FAILURE;
        }
        if (!proxy &&
            cli_find_helper("nucleus-tool-proxy", "NUCLEUS_TOOL_PROXY", "../guest/proxy", &proxy) < 0) {
                log_error("nucleus-tool-proxy not found: build it or pass --proxy / set NUCLEUS_TOOL_PROXY");
                return CLI_EXIT_FAILURE;
        }

        /* Optional: without it, pods answer web_fetch with "unsupported". */
        if (cli_find_helper("nucleus-web-fetch", "NUCLEUS_WEB_FETCH", "../guest/proxy", &fetch) < 0)
                log_notice("nucleus-web-fetch not found: the images will have no web_fetch helper");
        o.fetch_path = fetch;
        o.init_path = init;
        o.proxy_path = proxy;
        o.quiet = log_get_max_level() < LOG_INFO;

        if (!all)
                return image_build_one(&o, dir, name, packages, from, output, NULL);

        /* --all: every [images.NAME] table of config.toml, in name order. */
        if (json_object_size(tables) == 0) {
                log_error("No [images.NAME] tables in %s: nothing to build with --all", cfgpath ?: "config.toml");
                return CLI_EXIT_FAILURE;
        }
        _cleanup_strv_free_ char **names = NULL;
        const char *k;
        json_t *t;
        json_object_foreach(tables, k, t)
                strv_extend(&names, k);
        strv_sort_uniq(names);
        _cleanup_json_ json_t *all_out = json_array();
        STRV_FOREACH(nm, names) {
                _cleanup_strv_free_ char **pk = table_packages(json_object_get(tables, *nm));
                _cleanup_free_ char *tfrom = xasprintf(
                        "config.toml [images.%s] (%s:%lld)",
                        *nm,
                        cfgpath,
                        (long long) json_integer_value(json_object_get(json_object_get(tables, *nm), "line")));
                log_info("Building image %s (%s)", *nm, tfrom);
                r = image_build_one(&o, dir, *nm, pk, tfrom, output, all_out);
                if (r != 0)
                        return r;
        }
        if (output == OUTPUT_JSON) {
                _cleanup_json_ json_t *doc = json_pack("{s:O}", "images", all_out);
                return cli_print_json(doc) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        }
        return CLI_EXIT_OK;
}
#else
int verb_image(int argc, char **argv) {
        log_error("This nucleus was built without the image library.");
        return CLI_EXIT_FAILURE;
}
#endif
