/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus setup: take this machine from nothing to a node that `nucleus start` can run.
 * Linux: packages, images, VMM acceleration probe, secrets, node.toml + config.toml, and the
 * systemd unit when systemd is PID 1. macOS (or NUCLEUS_TEST_PLATFORM=darwin-*): a Lima VM
 * running the Linux setup inside (cli-lima.c). Idempotent: a second run reports no changes.
 * Trusts its caller and the local package manager; secrets are created by src/lib/auth.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-files.h"
#include "cli-lima.h"
#include "cli-node.h"
#include "cli-setup.h"
#include "cli.h"
#include "client-paths.h"
#include "client.h"
#include "config.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "parse-util.h"
#include "string-util.h"
#ifdef NUCLEUS_HAVE_AUTH_DEP
#        include "secrets.h"
#endif
#ifdef NUCLEUS_HAVE_IMAGE_DEP
#        include "image.h"
#endif
#ifdef NUCLEUS_HAVE_SPEC_DEP
#        include "config.h"
#endif

/* Packages nucleus-node needs at run time on Debian (build deps: scripts/install-deps). */
static const char *const runtime_packages[] = {
        "qemu-system-x86", "e2fsprogs", "mmdebstrap", "bubblewrap", "nftables",        "dnsmasq-base",
        "iproute2",        "cpio",      "zstd",       "kmod",       "ca-certificates",
};

static void usage(void) {
        printf("Usage: nucleus setup [OPTIONS]\n\n"
               "Prepare this machine to run Nucleus. Safe to run again: it changes only what is\n"
               "missing or outdated, and says so.\n\n"
               "Options:\n"
               "      --force                    Overwrite config files that differ; recreate the Lima VM\n"
               "      --rotate-secrets           Replace the existing secrets with new ones\n"
               "      --skip-vm                  macOS: do not create or touch the Lima VM\n"
               "      --skip-images              Do not build or refresh the guest images\n"
               "      --skip-deps                Do not check or install packages\n"
               "      --listen ADDR:PORT         Node API address (default 127.0.0.1:8080)\n"
               "      --metrics-listen ADDR:PORT Metrics address (default 127.0.0.1:9080)\n"
               "      --vm-name NAME             Lima instance name (default nucleus)\n"
               "      --vm-cpus N                Lima VM CPUs (default: config.toml [vm] cpus, else 4)\n"
               "      --vm-memory-gib N          Lima VM memory in GiB ([vm] memory_gib, else 8)\n"
               "      --vm-disk-gib N            Lima VM disk in GiB ([vm] disk_gib, else 50)\n"
               "      --pool-size N              Warm pool: default-image pods kept booted ahead (0..64;\n"
               "                                 default 1 with at least 4 GiB of RAM, else 0)\n"
               "      --output FORMAT            text (default) or json (a summary of every step)\n"
               "  -h, --help                     Show this help\n\n"
               "Files: see 'nucleus secrets show-paths' and 'nucleus config'.\n");
}

static int step_packages(SetupContext *ctx) {
        _cleanup_strv_free_ char **argv = NULL, **missing = NULL;
        _cleanup_free_ char *out = NULL, *dpkg = NULL;
        int r;

        if (ctx->skip_deps) {
                setup_step(ctx, "packages", SETUP_SKIPPED, "--skip-deps given");
                return 0;
        }
        if (cli_find_program("dpkg-query", &dpkg) < 0) {
                setup_step(
                        ctx,
                        "packages",
                        SETUP_WARNING,
                        "not a Debian system (no dpkg-query): install the equivalents of qemu-system-x86 "
                        "e2fsprogs mmdebstrap bubblewrap nftables dnsmasq iproute2 yourself");
                return 0;
        }
        strv_extend(&argv, "dpkg-query");
        strv_extend(&argv, "-W");
        strv_extend(&argv, "-f=${Package} ${db:Status-Status}\\n");
        for (size_t i = 0; i < ELEMENTSOF(runtime_packages); i++)
                strv_extend(&argv, runtime_packages[i]);
        /* dpkg-query exits 1 when a package is unknown; the output still lists the others. */
        r = cli_run_capture(argv, &out, 1024 * 1024);
        if (r < 0) {
                setup_step(ctx, "packages", SETUP_FAILED, "cannot run dpkg-query: %s", strerror(-r));
                return r;
        }
        for (size_t i = 0; i < ELEMENTSOF(runtime_packages); i++) {
                _cleanup_free_ char *want = xasprintf("%s installed\n", runtime_packages[i]);
                _cleanup_free_ char *want_line = xasprintf("\n%s", want);
                if (!startswith(out ?: "", want) && !strstr(out ?: "", want_line))
                        strv_extend(&missing, runtime_packages[i]);
        }
        if (strv_length(missing) == 0) {
                setup_step(
                        ctx,
                        "packages",
                        SETUP_UNCHANGED,
                        "all %zu runtime packages installed",
                        ELEMENTSOF(runtime_packages));
                return 0;
        }
        _cleanup_free_ char *list = strv_join(missing, " ");
        if (geteuid() != 0) {
                setup_step(
                        ctx,
                        "packages",
                        SETUP_FAILED,
                        "missing: %s; fix: sudo apt-get install -y --no-install-recommends %s",
                        list,
                        list);
                return -EPERM;
        }
        log_info("Installing %s ...", list);
        _cleanup_strv_free_ char **inst = NULL;
        strv_extend(&inst, "env");
        strv_extend(&inst, "DEBIAN_FRONTEND=noninteractive");
        strv_extend(&inst, "apt-get");
        strv_extend(&inst, "install");
        strv_extend(&inst, "-y");
        strv_extend(&inst, "-q");
        strv_extend(&inst, "--no-install-recommends");
        STRV_FOREACH(p, missing)
                strv_extend(&inst, *p);
        r = cli_run_capture(inst, NULL, 0);
        if (r != 0) {
                setup_step(
                        ctx,
                        "packages",
                        SETUP_FAILED,
                        "apt-get install failed (%d); fix: apt-get update && apt-get install -y %s",
                        r,
                        list);
                return -EIO;
        }
        setup_step(ctx, "packages", SETUP_CHANGED, "installed %s", list);
        return 0;
}

/* nucleus-node runs each VMM as this unprivileged user when it exists (src/node/main.c). */
#define SETUP_VMM_USER "nucleus-vmm"

static int step_vmm_user(SetupContext *ctx) {
        _cleanup_strv_free_ char **argv = NULL;
        struct group *kvm;
        int r;

        if (getpwnam(SETUP_VMM_USER)) {
                setup_step(ctx, "vmm user", SETUP_UNCHANGED, "system user '%s' exists", SETUP_VMM_USER);
                return 0;
        }
        if (geteuid() != 0) {
                setup_step(
                        ctx,
                        "vmm user",
                        SETUP_WARNING,
                        "no '%s' user, so the node would run QEMU as root (confined by -sandbox only); fix: "
                        "sudo "
                        "useradd --system --user-group --no-create-home --shell /usr/sbin/nologin %s",
                        SETUP_VMM_USER,
                        SETUP_VMM_USER);
                return 0;
        }
        strv_extend(&argv, "useradd");
        strv_extend(&argv, "--system");
        strv_extend(&argv, "--user-group");
        strv_extend(&argv, "--no-create-home");
        strv_extend(&argv, "--home-dir");
        strv_extend(&argv, "/nonexistent");
        strv_extend(&argv, "--shell");
        strv_extend(&argv, "/usr/sbin/nologin");
        /* KVM access, where the host has it. */
        kvm = getgrnam("kvm");
        if (kvm) {
                strv_extend(&argv, "--groups");
                strv_extend(&argv, "kvm");
        }
        strv_extend(&argv, SETUP_VMM_USER);
        r = cli_run_capture(argv, NULL, 0);
        if (r != 0) {
                setup_step(ctx, "vmm user", SETUP_FAILED, "useradd %s failed (%d)", SETUP_VMM_USER, r);
                return -EIO;
        }
        setup_step(
                ctx,
                "vmm user",
                SETUP_CHANGED,
                "created system user '%s'%s (QEMU runs as it)",
                SETUP_VMM_USER,
                kvm ? " in group kvm" : "");
        return 0;
}

static char *read_text(const char *path) {
        char *t = NULL;
        size_t n;
        if (read_full_file_at(AT_FDCWD, path, 16 * 1024 * 1024, &t, &n) < 0)
                return NULL;
        return t;
}

static int step_images(SetupContext *ctx, const char *images_dir) {
#ifdef NUCLEUS_HAVE_IMAGE_DEP
        _cleanup_free_ char *init = NULL, *proxy = NULL, *fetch = NULL, *manifest_path = NULL,
                            *before = NULL, *after = NULL;
        _cleanup_json_ json_t *manifest = NULL;
        int r;

        if (ctx->skip_images) {
                r = image_manifest_load(images_dir, &manifest);
                setup_step(
                        ctx,
                        "images",
                        r < 0 ? SETUP_WARNING : SETUP_SKIPPED,
                        r < 0 ? "--skip-images given and no valid image in %s: pods cannot boot until "
                                "'nucleus setup' builds one"
                              : "--skip-images given (image in %s is valid)",
                        images_dir);
                return 0;
        }
        if (cli_find_helper("nucleus-guest-init", "NUCLEUS_GUEST_INIT", "../guest/init", &init) < 0 ||
            cli_find_helper("nucleus-tool-proxy", "NUCLEUS_TOOL_PROXY", "../guest/proxy", &proxy) < 0) {
                setup_step(
                        ctx,
                        "images",
                        SETUP_FAILED,
                        "the static guest programs nucleus-guest-init and nucleus-tool-proxy were not "
                        "found; "
                        "fix: build them (ninja) or set NUCLEUS_GUEST_INIT / NUCLEUS_TOOL_PROXY");
                return -ENOENT;
        }
        /* Every image carries the web_fetch helper (as `nucleus image build` does); without it,
         * pods answer web_fetch with "unsupported", so say so. */
        if (cli_find_helper("nucleus-web-fetch", "NUCLEUS_WEB_FETCH", "../guest/proxy", &fetch) < 0)
                log_warning("nucleus-web-fetch not found: the images will have no web_fetch helper "
                            "(fix: build it or set NUCLEUS_WEB_FETCH)");
        manifest_path = xasprintf("%s/manifest.json", images_dir);
        before = read_text(manifest_path);
        log_info("Building or refreshing the guest images in %s (cached by input hash) ...", images_dir);
        /* The rootfs packages: the defaults plus config.toml [images] packages. */
        _cleanup_strv_free_ char **packages = NULL;
        bool tables = false;
#        ifdef NUCLEUS_HAVE_SPEC_DEP
        {
                _cleanup_free_ char *cfgpath = NULL, *cerr = NULL;
                CliConfig *cfg = NULL;
                if (client_config_file(&cfgpath) >= 0 && cli_config_load(cfgpath, false, &cfg, &cerr) >= 0) {
                        tables = json_object_size(cfg->images.named) > 0;
                        if (strv_length(cfg->images.packages) > 0) {
                                _cleanup_free_ char *def = xstrdup(IMAGE_DEFAULT_PACKAGES);
                                char *save = NULL;
                                for (char *w = strtok_r(def, ",", &save); w; w = strtok_r(NULL, ",", &save))
                                        strv_extend(&packages, w);
                                STRV_FOREACH(pkg, cfg->images.packages)
                                        strv_extend(&packages, *pkg);
                                strv_sort_uniq(packages);
                        }
                        cli_config_free(cfg);
                } else if (cerr)
                        log_warning("Not using [images] packages: %s", cerr);
        }
#        endif
        ImageBuildOptions o = {
                .images_dir = images_dir,
                .packages = packages,
                .init_path = init,
                .proxy_path = proxy,
                .fetch_path = fetch,
                .quiet = log_get_max_level() < LOG_INFO,
        };
        r = image_build(&o, &manifest);
        if (r < 0) {
                setup_step(
                        ctx,
                        "images",
                        SETUP_FAILED,
                        "image build failed: %s; see %s/cache/build.log",
                        strerror(-r),
                        images_dir);
                return r;
        }
        after = read_text(manifest_path);
        bool same = before && after && streq(before, after);
        setup_step(
                ctx,
                "images",
                same ? SETUP_UNCHANGED : SETUP_CHANGED,
                same ? "up to date in %s" : "built in %s",
                images_dir);
        /* Then every [images.NAME] table of config.toml, as `nucleus image build --all` does. */
        if (tables) {
                char *argv[] = {
                        (char *) "image",
                        (char *) "build",
                        (char *) "--all",
                        (char *) "--images-dir",
                        (char *) images_dir,
                        (char *) "--init",
                        init,
                        (char *) "--proxy",
                        proxy,
                        NULL,
                };
                r = verb_image((int) ELEMENTSOF(argv) - 1, argv);
                setup_step(
                        ctx,
                        "named images",
                        r == 0 ? SETUP_CHANGED : SETUP_FAILED,
                        r == 0 ? "every [images.NAME] table of config.toml built (or up to date) in %s"
                               : "building the [images.NAME] tables failed; see the errors above and "
                                 "'nucleus image build --all' (images dir %s)",
                        images_dir);
                if (r != 0)
                        return -EIO;
        }
        return 0;
#else
        setup_step(
                ctx,
                "images",
                SETUP_FAILED,
                "this nucleus was built without the image library (src/lib/image); fix: rebuild Nucleus");
        (void) images_dir;
        return -EOPNOTSUPP;
#endif
}

static void step_accel(SetupContext *ctx, const char *images_dir) {
#ifdef NUCLEUS_HAVE_IMAGE_DEP
        _cleanup_free_ char *kernel = xasprintf("%s/%s", images_dir, IMAGE_QEMU_KERNEL);
        _cleanup_free_ char *initrd = xasprintf("%s/%s", images_dir, IMAGE_INITRAMFS);
        _cleanup_free_ char *qemu = NULL, *reason = NULL;
        ImageAccel accel = IMAGE_ACCEL_TCG;

        if (cli_find_program("qemu-system-x86_64", &qemu) < 0) {
                ctx->accel = xstrdup("tcg");
                ctx->accel_reason = xstrdup("qemu-system-x86_64 not found (install qemu-system-x86)");
                setup_step(
                        ctx,
                        "vmm",
                        SETUP_FAILED,
                        "qemu-system-x86_64 not found; fix: apt-get install qemu-system-x86");
                return;
        }
        if (access(kernel, R_OK) < 0 || access(initrd, R_OK) < 0) {
                ctx->accel = xstrdup("tcg");
                ctx->accel_reason = xstrdup("no guest image to run the KVM probe with; using TCG");
        } else if (image_kvm_probe(qemu, kernel, initrd, IMAGE_KVM_PROBE_TIMEOUT, &accel, &reason) < 0) {
                ctx->accel = xstrdup("tcg");
                ctx->accel_reason = xstrdup("KVM probe could not run; using TCG");
        } else {
                ctx->accel = xstrdup(image_accel_to_string(accel));
                ctx->accel_reason = TAKE_PTR(reason);
        }
        setup_step(
                ctx,
                "vmm",
                streq(ctx->accel, "kvm") ? SETUP_UNCHANGED : SETUP_WARNING,
                "%s with %s acceleration: %s",
                qemu,
                streq(ctx->accel, "kvm") ? "KVM" : "TCG (software)",
                ctx->accel_reason ?: "");
#else
        (void) images_dir;
        ctx->accel = xstrdup("tcg");
        ctx->accel_reason = xstrdup("built without the image library: no KVM probe");
        setup_step(ctx, "vmm", SETUP_WARNING, "TCG: %s", ctx->accel_reason);
#endif
}

#define SETUP_POOL_MIN_RAM_MIB 4096u

static int step_node_config(
        SetupContext *ctx, const char *node_config, const char *secrets_dir, const char *images_dir) {
        _cleanup_free_ char *state = NULL;
        int r;

        r = client_state_dir(&state);
        if (r < 0)
                return r;
        _cleanup_free_ char *node_state = xasprintf("%s/node", state);
        _cleanup_free_ char *key = xasprintf("%s/node.key", secrets_dir);
        _cleanup_free_ char *appr = xasprintf("%s/approver.pub", secrets_dir);
        _cleanup_free_ char *audit = xasprintf("%s/audit.key", secrets_dir);
        _cleanup_free_ char *q_listen = cli_toml_quote(ctx->listen),
                            *q_metrics = cli_toml_quote(ctx->metrics_listen),
                            *q_state = cli_toml_quote(node_state), *q_images = cli_toml_quote(images_dir),
                            *q_accel = cli_toml_quote(ctx->accel ?: "tcg"), *q_key = cli_toml_quote(key),
                            *q_appr = cli_toml_quote(appr), *q_audit = cli_toml_quote(audit);
        _cleanup_free_ char *reason = string_make_visible(ctx->accel_reason ?: "not probed");
        /* One pooled pod of the default image holds at most 768 MiB (512 MiB guest + 256 MiB)
         * while it waits: worth it with at least 4 GiB of RAM (under a fifth of it). */
        struct sysinfo si = {};
        uint64_t ram_mib = sysinfo(&si) == 0 ? (uint64_t) si.totalram * si.mem_unit / (1024 * 1024) : 0;
        unsigned pool = ctx->pool_size >= 0         ? (unsigned) ctx->pool_size
                : ram_mib >= SETUP_POOL_MIN_RAM_MIB ? 1
                                                    : 0;
        _cleanup_free_ char *pool_why = ctx->pool_size >= 0
                ? xasprintf("%u pod(s) of the default image kept booted ahead (--pool-size)", pool)
                : xasprintf(
                          "%s (host RAM %" PRIu64 " MiB; the rule: 1 pooled pod at >= %u MiB, else 0)",
                          pool ? "one default-image pod kept booted ahead" : "off",
                          ram_mib,
                          SETUP_POOL_MIN_RAM_MIB);

        /* Schema: docs/config.md "Node". Secrets are referenced by path only. */
        _cleanup_free_ char *text = xasprintf(
                "# nucleus-node configuration, written by `nucleus setup` (docs/config.md).\n"
                "# Edit freely; `nucleus setup --force` rewrites it. Secrets are referenced by path only.\n"
                "\n"
                "[node]\n"
                "listen = %s\n"
                "metrics_listen = %s\n"
                "state_dir = %s\n"
                "images_dir = %s\n"
                "\n"
                "[pods]\n"
                "driver = \"qemu\"\n"
                "# Chosen by setup's KVM probe: %s\n"
                "accel = %s\n"
                "\n"
                "[secrets]\n"
                "node_secret_file = %s\n"
                "approver_public_key_file = %s\n"
                "audit_signing_key_file = %s\n"
                "\n"
                "[pool]\n"
                "# Warm pool (docs/node.md \"Warm pool\"): %s\n"
                "memory_budget_mib = %u\n"
                "\n"
                "[pool.images]\n"
                "default = %u\n",
                q_listen,
                q_metrics,
                q_state,
                q_images,
                reason,
                q_accel,
                q_key,
                q_appr,
                q_audit,
                pool_why,
                (pool ?: 1) * 768u, /* each pooled pod: 512 MiB guest + 256 MiB (docs/node.md) */
                pool);
        r = cli_write_if_changed(node_config, text, 0600, ctx->force);
        setup_report_write(ctx, "node.toml", node_config, r);
        return r < 0 ? r : 0;
}

static int step_service(SetupContext *ctx, const char *node_config) {
        _cleanup_free_ char *node = NULL;
        int r;

        if (!cli_have_systemd() || geteuid() != 0) {
                setup_step(
                        ctx,
                        "service",
                        SETUP_UNCHANGED,
                        cli_have_systemd() ? "not root: `nucleus start` will run nucleus-node as a pid-file "
                                             "daemon"
                                           : "systemd is not PID 1 here: `nucleus start` will run "
                                             "nucleus-node as a "
                                             "pid-file daemon");
                return 0;
        }
        r = cli_find_node_binary(&node);
        if (r < 0) {
                setup_step(
                        ctx,
                        "service",
                        SETUP_FAILED,
                        "nucleus-node not found; fix: install Nucleus (meson install)");
                return r;
        }
        _cleanup_free_ char *unit = xasprintf(
                "# Written by `nucleus setup`.\n"
                "[Unit]\n"
                "Description=Nucleus node (microVM sandboxes for AI agents)\n"
                "After=network-online.target\n"
                "Wants=network-online.target\n"
                "\n"
                "[Service]\n"
                "Type=simple\n"
                "ExecStart=%s --config %s\n"
                "Restart=on-failure\n"
                "RestartSec=2\n"
                "UMask=0077\n"
                "\n"
                "[Install]\n"
                "WantedBy=multi-user.target\n",
                node,
                node_config);
        const char *path = CLI_SYSTEMD_UNIT_PATH;
        r = cli_write_if_changed(path, unit, 0644, true);
        setup_report_write(ctx, "service", path, r);
        if (r == WRITE_CREATED || r == WRITE_UPDATED) {
                char *reload[] = { (char *) "systemctl", (char *) "daemon-reload", NULL };
                char *enable[] = {
                        (char *) "systemctl", (char *) "enable", (char *) "nucleus-node.service", NULL
                };
                if (cli_run_capture(reload, NULL, 0) != 0 || cli_run_capture(enable, NULL, 0) != 0)
                        setup_step(ctx, "service", SETUP_FAILED, "systemctl daemon-reload/enable failed");
        }
        return r < 0 ? r : 0;
}

/* Set keys of an existing TOML file in place (cli_toml_set_key), keeping everything else the
 * user wrote. keys: NULL-terminated {section, key, value} triples. Records a step when the
 * file changed. Returns 0, or a negative errno (recorded). */
static int update_keys(
        SetupContext *ctx, const char *step, const char *path, mode_t mode, const char *const *keys) {
        _cleanup_free_ char *text = NULL;
        size_t n;
        int r = read_full_file_at(AT_FDCWD, path, 1024 * 1024, &text, &n);
        if (r == -ENOENT)
                return 0; /* written whole by its own step */
        if (r < 0) {
                setup_step(ctx, step, SETUP_FAILED, "cannot read %s: %s", path, strerror(-r));
                return r;
        }
        _cleanup_free_ char *what = xstrdup("");
        for (const char *const *k = keys; *k; k += 3) {
                char *next = cli_toml_set_key(text, k[0], k[1], k[2]);
                free(text);
                text = next;
                char *w = xasprintf("%s%s[%s] %s", what, *what ? ", " : "", k[0], k[1]);
                free(what);
                what = w;
        }
        r = cli_write_if_changed(path, text, mode, /* force= */ true);
        if (r < 0) {
                setup_step(ctx, step, SETUP_FAILED, "cannot write %s: %s", path, strerror(-r));
                return r;
        }
        if (r != WRITE_UNCHANGED)
                setup_step(ctx, step, SETUP_CHANGED, "set %s in %s", what, path);
        return 0;
}

/* Flags given on a rerun change the existing files together, whatever else was edited in
 * them: the node's addresses in node.toml and the CLI's node URL in config.toml (so the two
 * never disagree), and the Lima VM's size in config.toml. */
static int update_existing(SetupContext *ctx, const char *node_config) {
        _cleanup_free_ char *q_listen = cli_toml_quote(ctx->listen),
                            *q_metrics = cli_toml_quote(ctx->metrics_listen),
                            *url = xasprintf("http://%s", ctx->listen), *q_url = cli_toml_quote(url),
                            *config = NULL, *cpus = xasprintf("%u", ctx->vm_cpus),
                            *mem = xasprintf("%u", ctx->vm_memory_gib),
                            *disk = xasprintf("%u", ctx->vm_disk_gib);
        const char *node_keys[7] = {}, *cli_keys[16] = {};
        size_t nn = 0, nc = 0;
        int r = 0;

        if (ctx->listen_given) {
                node_keys[nn++] = "node", node_keys[nn++] = "listen", node_keys[nn++] = q_listen;
                cli_keys[nc++] = "node", cli_keys[nc++] = "url", cli_keys[nc++] = q_url;
        }
        if (ctx->metrics_listen_given)
                node_keys[nn++] = "node", node_keys[nn++] = "metrics_listen", node_keys[nn++] = q_metrics;
        if (ctx->vm_given) {
                cli_keys[nc++] = "vm", cli_keys[nc++] = "cpus", cli_keys[nc++] = cpus;
                cli_keys[nc++] = "vm", cli_keys[nc++] = "memory_gib", cli_keys[nc++] = mem;
                cli_keys[nc++] = "vm", cli_keys[nc++] = "disk_gib", cli_keys[nc++] = disk;
        }
        if (nn > 0)
                r = update_keys(ctx, "node.toml", node_config, 0600, node_keys);
        if (nc > 0 && client_config_file(&config) >= 0) {
                int k = update_keys(ctx, "config", config, 0644, cli_keys);
                if (r >= 0)
                        r = k;
        }
        return r;
}

static int setup_linux(SetupContext *ctx) {
        _cleanup_free_ char *config_dir = NULL, *secrets_dir = NULL, *images_dir = NULL, *node_config = NULL;
        int r;

        if (client_config_dir(&config_dir) < 0 || client_secrets_dir(&secrets_dir) < 0 ||
            client_images_dir(&images_dir) < 0 || client_node_config_file(&node_config) < 0)
                return log_error_errno(
                        -ENOENT,
                        "Cannot locate the config or state directory: set HOME (or XDG_CONFIG_HOME / "
                        "NUCLEUS_CONFIG_DIR and NUCLEUS_STATE_DIR) to absolute paths");
        r = cli_mkdir_p(config_dir, 0755);
        if (r < 0)
                return log_error_errno(r, "Cannot create %s: %m", config_dir);

        /* A rerun without --listen / --metrics-listen keeps the addresses of the node.toml an
         * earlier run wrote, instead of calling that file "edited" against the defaults. */
        _cleanup_free_ char *kept_listen = NULL, *kept_metrics = NULL;
#ifdef NUCLEUS_HAVE_SPEC_DEP
        if ((!ctx->listen_given || !ctx->metrics_listen_given) && access(node_config, F_OK) == 0) {
                _cleanup_free_ char *err = NULL;
                NodeConfig *nc = NULL;
                if (node_config_load(node_config, true, &nc, &err) >= 0) {
                        if (!ctx->listen_given && !isempty(nc->listen))
                                ctx->listen = kept_listen = xstrdup(nc->listen);
                        if (!ctx->metrics_listen_given && nc->metrics_listen)
                                ctx->metrics_listen = kept_metrics = xstrdup(nc->metrics_listen);
                        node_config_free(nc);
                }
        }
#endif

        (void) step_packages(ctx);
        (void) step_vmm_user(ctx);
        r = step_images(ctx, images_dir);
        step_accel(ctx, images_dir);
        r = setup_secrets(ctx, secrets_dir);
        if (r < 0)
                return r; /* without secrets nothing below is usable */
        (void) update_existing(ctx, node_config);
        r = step_node_config(ctx, node_config, secrets_dir, images_dir);
        (void) step_service(ctx, node_config);
        _cleanup_free_ char *url = xasprintf("http://%s", ctx->listen);
        (void) setup_cli_config(ctx, url, secrets_dir);
        return 0;
}

int verb_setup(int argc, char **argv) {
        enum {
                ARG_FORCE = 0x100,
                ARG_ROTATE,
                ARG_SKIP_VM,
                ARG_SKIP_IMAGES,
                ARG_SKIP_DEPS,
                ARG_LISTEN,
                ARG_METRICS,
                ARG_VM_NAME,
                ARG_VM_CPUS,
                ARG_VM_MEM,
                ARG_VM_DISK,
                ARG_SECRETS_PROVIDED,
                ARG_POOL_SIZE,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                { "force", no_argument, NULL, ARG_FORCE },
                { "rotate-secrets", no_argument, NULL, ARG_ROTATE },
                { "skip-vm", no_argument, NULL, ARG_SKIP_VM },
                { "skip-images", no_argument, NULL, ARG_SKIP_IMAGES },
                { "skip-deps", no_argument, NULL, ARG_SKIP_DEPS },
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "metrics-listen", required_argument, NULL, ARG_METRICS },
                { "vm-name", required_argument, NULL, ARG_VM_NAME },
                { "vm-cpus", required_argument, NULL, ARG_VM_CPUS },
                { "vm-memory-gib", required_argument, NULL, ARG_VM_MEM },
                { "vm-disk-gib", required_argument, NULL, ARG_VM_DISK },
                { "pool-size", required_argument, NULL, ARG_POOL_SIZE },
                CLI_OPTION_OUTPUT,
                { "secrets-provided", no_argument, NULL, ARG_SECRETS_PROVIDED }, /* hidden: Lima */
                {},
        };
        SetupContext ctx = {
                .listen = "127.0.0.1:8080",
                .metrics_listen = "127.0.0.1:9080",
                .vm_name = "nucleus",
                .vm_cpus = 4,
                .vm_memory_gib = 8,
                .vm_disk_gib = 50,
                .pool_size = -1,
        };
        _cleanup_free_ char *cfg_vm_name = NULL;
        int c, r;

#ifdef NUCLEUS_HAVE_SPEC_DEP
        /* config.toml [vm]: setup's defaults for the Lima VM; flags override. A config that does
         * not load is left to the config step (kept or rewritten with --force). */
        {
                _cleanup_free_ char *cfgpath = NULL, *cerr = NULL;
                CliConfig *cfg = NULL;
                if (client_config_file(&cfgpath) >= 0 && cli_config_load(cfgpath, false, &cfg, &cerr) >= 0) {
#        define FROM_FILE(f) (cfg->origins[(f)].source == CONFIG_SOURCE_FILE)
                        if (FROM_FILE(CLI_VM_NAME))
                                ctx.vm_name = cfg_vm_name = xstrdup(cfg->vm.name);
                        if (FROM_FILE(CLI_VM_CPUS))
                                ctx.vm_cpus = cfg->vm.cpus;
                        if (FROM_FILE(CLI_VM_MEMORY_GIB))
                                ctx.vm_memory_gib = cfg->vm.memory_gib;
                        if (FROM_FILE(CLI_VM_DISK_GIB))
                                ctx.vm_disk_gib = cfg->vm.disk_gib;
#        undef FROM_FILE
                        cli_config_free(cfg);
                }
        }
#endif

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                uint32_t *num = NULL;
                switch (c) {
                case ARG_FORCE:
                        ctx.force = true;
                        break;
                case ARG_ROTATE:
                        ctx.rotate_secrets = true;
                        break;
                case ARG_SKIP_VM:
                        ctx.skip_vm = true;
                        break;
                case ARG_SKIP_IMAGES:
                        ctx.skip_images = true;
                        break;
                case ARG_SKIP_DEPS:
                        ctx.skip_deps = true;
                        break;
                case ARG_SECRETS_PROVIDED:
                        ctx.secrets_provided = true;
                        break;
                case ARG_LISTEN:
                case ARG_METRICS:
                        if (!strchr(optarg, ':') || string_has_cc(optarg, NULL) || strpbrk(optarg, " /\"\\"))
                                return cli_usage_error(
                                        "setup",
                                        "--%s needs ADDR:PORT, not '%s'",
                                        c == ARG_LISTEN ? "listen" : "metrics-listen",
                                        optarg);
                        {
                                /* The node's own rule, before setup changes anything. */
                                _cleanup_free_ char *why = config_check_listen(optarg);
                                if (why)
                                        return cli_usage_error(
                                                "setup",
                                                "--%s '%s': %s",
                                                c == ARG_LISTEN ? "listen" : "metrics-listen",
                                                optarg,
                                                why);
                        }
                        if (c == ARG_LISTEN) {
                                ctx.listen = optarg;
                                ctx.listen_given = true;
                        } else {
                                ctx.metrics_listen = optarg;
                                ctx.metrics_listen_given = true;
                        }
                        break;
                case ARG_VM_NAME:
                        if (isempty(optarg) ||
                            strspn(optarg, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(optarg))
                                return cli_usage_error(
                                        "setup", "--vm-name must be lowercase letters, digits and '-'");
                        ctx.vm_name = optarg;
                        break;
                case ARG_VM_CPUS:
                        num = &ctx.vm_cpus;
                        break;
                case ARG_VM_MEM:
                        num = &ctx.vm_memory_gib;
                        break;
                case ARG_VM_DISK:
                        num = &ctx.vm_disk_gib;
                        break;
                case ARG_POOL_SIZE: {
                        uint32_t v;
                        if (safe_atou32(optarg, &v) < 0 || v > 64)
                                return cli_usage_error(
                                        "setup", "--pool-size: '%s' is out of range (0..64)", optarg);
                        ctx.pool_size = (int) v;
                        break;
                }
                default:
                        r = cli_option_common(c, usage, &ctx.output);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
                if (num)
                        ctx.vm_given = true;
                if (num) {
                        /* The ranges of docs/config.md [vm]. */
                        uint32_t v, lo = c == ARG_VM_DISK ? 10 : 1,
                                    hi = c == ARG_VM_CPUS ? 64
                                : c == ARG_VM_MEM         ? 512
                                                          : 4096;
                        if (safe_atou32(optarg, &v) < 0 || v < lo || v > hi)
                                return cli_usage_error(
                                        "setup", "'%s' is out of range (%u..%u)", optarg, lo, hi);
                        *num = v;
                }
        }
        if (optind < argc)
                return cli_usage_error("setup", "unexpected argument '%s'", argv[optind]);

        ctx.steps = json_array();
        bool darwin = cli_platform_is_darwin();
        fprintf(stderr, "Nucleus setup (%s):\n", darwin ? "macOS, node inside a Lima VM" : "Linux host");
        r = darwin ? setup_darwin(&ctx) : setup_linux(&ctx);

        bool ok = r >= 0 && ctx.n_failed == 0;
        if (ctx.output == OUTPUT_JSON) {
                _cleanup_json_ json_t *doc = json_pack(
                        "{s:b,s:I,s:o,s:s?,s:s?}",
                        "ok",
                        ok,
                        "changed",
                        (json_int_t) ctx.n_changed,
                        "steps",
                        json_incref(ctx.steps),
                        "accel",
                        ctx.accel,
                        "accel_reason",
                        ctx.accel_reason);
                (void) cli_print_json(doc);
        } else if (!ok)
                printf("Setup failed: %u step(s) failed; see the messages above for the fix.\n", ctx.n_failed);
        else if (ctx.n_changed == 0)
                printf("Nothing changed: everything was already set up.\n");
        else
                printf("Setup complete: %u change(s). Next: nucleus start && nucleus doctor\n", ctx.n_changed);

        json_decref(ctx.steps);
        free(ctx.accel);
        free(ctx.accel_reason);
        return ok ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}
