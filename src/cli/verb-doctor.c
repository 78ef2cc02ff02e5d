/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus doctor: check everything a working node needs and print one line per check,
 * "[OK|WARN|ERR] name: message" with the fix; exit 1 when any check is ERR. Each check is
 * independent, so one failure does not hide the others.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-check.h"
#include "cli-files.h"
#include "cli-lima.h"
#include "cli-node.h"
#include "cli-opt.h"
#include "cli.h"
#include "client-paths.h"
#include "client-settings.h"
#include "fd-util.h"
#include "json-util.h"
#include "parse-util.h"
#include "string-util.h"
#ifdef NUCLEUS_HAVE_AUTH_DEP
#        include "secrets.h"
#endif
#ifdef NUCLEUS_HAVE_IMAGE_DEP
#        include "image.h"
#endif
#ifdef NUCLEUS_HAVE_NET_DEP
#        include "net.h"
#endif
#ifdef NUCLEUS_HAVE_SPEC_DEP
#        include "config.h"
#endif

static void usage(void) {
        printf("Usage: nucleus doctor [OPTIONS]\n\n"
               "Check the installation: config, secrets, VMM and acceleration, images, the node\n"
               "(with a signed request), nftables and dnsmasq, free disk. Exit 1 on any [ERR].\n\n"
               "Options:\n"
               "      --output FORMAT     text (default) or json\n"
               "  -h, --help              Show this help\n");
}

#ifdef NUCLEUS_HAVE_SPEC_DEP
#        define DOCTOR_VMM_USER "nucleus-vmm"

/* The node keeps each pod's files (console log, channel socket, scratch disk) below its
 * state_dir, and QEMU runs as the VMM user: every existing ancestor of state_dir must let that
 * user through, or every VM pod fails at boot. Without the VMM user VMMs run as root. */
static void check_state_reachable(CheckList *l, const char *state_dir) {
        const struct passwd *pw = getpwnam(DOCTOR_VMM_USER);
        if (!pw || state_dir[0] != '/')
                return;
        uid_t uid = pw->pw_uid;
        gid_t gid = pw->pw_gid;
        _cleanup_free_ char *p = xstrdup(state_dir);
        for (char *s = p;; s++) {
                if (*s != '/' && *s != 0)
                        continue;
                char saved = *s;
                *s = 0;
                struct stat st;
                if (stat(s == p ? "/" : p, &st) < 0) /* not yet created: the node makes it */
                        break;
                bool through = st.st_uid == uid ? (st.st_mode & S_IXUSR)
                        : st.st_gid == gid      ? (st.st_mode & S_IXGRP)
                                                : (st.st_mode & S_IXOTH);
                if (!through) {
                        _cleanup_free_ char *fix = xasprintf("chmod o+x %s", s == p ? "/" : p);
                        check_add(
                                l,
                                CHECK_ERR,
                                "state dir",
                                fix,
                                "%s (mode %04o) keeps the VMM user " DOCTOR_VMM_USER " out of %s: every VM "
                                "pod would fail at "
                                "boot",
                                s == p ? "/" : p,
                                (unsigned) (st.st_mode & 07777),
                                state_dir);
                        return;
                }
                *s = saved;
                if (saved == 0)
                        break;
        }
        check_add(l, CHECK_OK, "state dir", NULL, "%s (reachable by " DOCTOR_VMM_USER ")", state_dir);
}

#endif

/* check_config stores node.toml's [pods] accel here (NULL: not read) for check_vmm. */
static void check_config(CheckList *l, const ClientSettings *s, char **ret_accel) {
        _cleanup_free_ char *node_config = NULL;
        if (!s->config_found)
                check_add(l, CHECK_ERR, "config", "nucleus setup", "%s: %s", s->config_file, strerror(ENOENT));
        else
                check_add(
                        l,
                        CHECK_OK,
                        "config",
                        NULL,
                        "%s (node at %s, %s)",
                        s->config_file,
                        s->url,
                        node_mode_to_string(cli_node_mode()));
        if (cli_node_mode() == NODE_MODE_LIMA)
                return;
        if (client_node_config_file(&node_config) < 0 || access(node_config, R_OK) < 0) {
                check_add(l, CHECK_ERR, "node config", "nucleus setup", "%s: missing", node_config ?: "node.toml");
                return;
        }
#ifdef NUCLEUS_HAVE_SPEC_DEP
        _cleanup_free_ char *err = NULL;
        NodeConfig *nc = NULL;
        int r = node_config_load(node_config, true, &nc, &err);
        if (r < 0) {
                _cleanup_free_ char *fix = xasprintf(
                        "correct %s, or rewrite it: nucleus setup --force", node_config);
                check_add(l, CHECK_ERR, "node config", fix, "%s", err ?: strerror(-r));
                return;
        }
        check_add(
                l,
                CHECK_OK,
                "node config",
                NULL,
                "%s (listen %s, driver %s, accel %s)",
                node_config,
                nc->listen,
                nc->driver,
                nc->accel);
        *ret_accel = xstrdup(nc->accel);
        /* The CLI must talk to the address the node listens on. */
        const char *auth = startswith(s->url, "http://") ?: startswith(s->url, "https://");
        if (auth) {
                _cleanup_free_ char *a = xstrndup(auth, strcspn(auth, "/"));
                const char *lport = strrchr(nc->listen, ':'), *uport = strrchr(a, ':');
                bool wildcard = startswith(nc->listen, "0.0.0.0:") || startswith(nc->listen, "[::]:");
                if (!lport || !uport || !streq(lport, uport) || (!wildcard && !streq(a, nc->listen))) {
                        /* The fix is where the URL came from. */
                        _cleanup_free_ char *fix = streq_ptr(s->url_source, "NUCLEUS_NODE_URL")
                                ? xasprintf("unset NUCLEUS_NODE_URL or set it to http://%s", nc->listen)
                                : xasprintf(
                                          "make [node] url in %s point at %s (or: nucleus setup --force)",
                                          s->config_file,
                                          nc->listen);
                        check_add(
                                l,
                                CHECK_ERR,
                                "node address",
                                fix,
                                "the CLI uses %s but the node listens on %s",
                                s->url,
                                nc->listen);
                }
        }
        if (!streq_ptr(nc->driver, "local") && !isempty(nc->state_dir))
                check_state_reachable(l, nc->state_dir);
        if (nc->ksm) {
                /* A deliberate setting with a cost: always a warning, with what it needs. */
                _cleanup_free_ char *run = NULL;
                size_t n;
                bool on = read_full_file_at(AT_FDCWD, "/sys/kernel/mm/ksm/run", 16, &run, &n) >= 0 &&
                        startswith(run, "1");
                /* What merging saves right now: pages_sharing is the number of page mappings
                 * that point at a merged page instead of their own copy. */
                _cleanup_free_ char *sharing = NULL, *state = NULL;
                uint64_t pages = 0;
                if (on &&
                    read_full_file_at(AT_FDCWD, "/sys/kernel/mm/ksm/pages_sharing", 32, &sharing, &n) >= 0) {
                        sharing[strcspn(sharing, "\n")] = 0;
                        if (safe_atou64(sharing, &pages) < 0)
                                pages = 0;
                }
                state = on ? xasprintf(
                                     "on (pages_sharing %llu, ~%llu MiB saved)",
                                     (unsigned long long) pages,
                                     (unsigned long long) (pages * 4096 >> 20))
                           : xstrdup("off, so nothing is merged");
                check_add(
                        l,
                        CHECK_WARN,
                        "ksm",
                        on ? NULL : "echo 1 > /sys/kernel/mm/ksm/run",
                        "[pods] ksm = true: pods' identical pages are merged, a timing side channel "
                        "between pods (SECURITY.md); the host's ksmd is %s",
                        state);
        }
        node_config_free(nc);
#else
        check_add(l, CHECK_OK, "node config", NULL, "%s", node_config);
#endif
}

static void check_secrets(CheckList *l, const char *settings_dir) {
        _cleanup_free_ char *dir = settings_dir ? xstrdup(settings_dir) : NULL;
        struct stat st;

        if (!dir && client_secrets_dir(&dir) < 0) {
                check_add(
                        l,
                        CHECK_ERR,
                        "secrets",
                        "set HOME or XDG_CONFIG_HOME",
                        "cannot locate the secrets directory");
                return;
        }
        if (lstat(dir, &st) < 0) {
                check_add(l, CHECK_ERR, "secrets", "nucleus setup", "%s: %s", dir, strerror(errno));
                return;
        }
        if (!S_ISDIR(st.st_mode) || (st.st_mode & 077) || st.st_uid != geteuid()) {
                _cleanup_free_ char *fix = xasprintf(
                        "chmod 700 %s (and make it owned by uid %u)", dir, (unsigned) geteuid());
                check_add(
                        l,
                        CHECK_ERR,
                        "secrets",
                        fix,
                        "%s must be a directory owned by us with mode 0700 (is %04o)",
                        dir,
                        (unsigned) (st.st_mode & 07777));
        } else
                check_add(l, CHECK_OK, "secrets dir", NULL, "%s (0700)", dir);

        static const struct {
                const char *file;
                size_t len;
                bool secret;
        } files[] = {
                { "node.key", 32, true },  { "approver.key", 64, true }, { "approver.pub", 32, false },
                { "audit.key", 64, true }, { "audit.pub", 32, false },
        };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *path = xasprintf("%s/%s", dir, files[i].file), *err = NULL;
                uint8_t buf[64];
                int r;
#ifdef NUCLEUS_HAVE_AUTH_DEP
                r = secret_load_file(path, buf, files[i].len, files[i].secret, &err);
#else
                r = files[i].len == 32 && files[i].secret ? client_load_key_file(path, buf, &err)
                                                          : (access(path, R_OK) < 0 ? -errno : 0);
#endif
                explicit_bzero_safe(buf, sizeof(buf));
                if (r < 0) {
                        _cleanup_free_ char *fix = r == -ENOENT ? xstrdup("nucleus setup")
                                : r == -EPERM                   ? xasprintf("chmod 600 %s", path)
                                                                : xstrdup("nucleus setup --rotate-secrets");
                        check_add(l, CHECK_ERR, files[i].file, fix, "%s", err ?: strerror(-r));
                } else {
                        struct stat fst;
                        unsigned mode = stat(path, &fst) == 0 ? (unsigned) (fst.st_mode & 07777) : 0;
                        check_add(l, CHECK_OK, files[i].file, NULL, "%s (%04o)", path, mode);
                }
        }
}

static void check_vmm(CheckList *l, const char *images_dir, const char *configured_accel) {
        _cleanup_free_ char *qemu = NULL;
        if (cli_find_program("qemu-system-x86_64", &qemu) < 0) {
                check_add(l, CHECK_ERR, "vmm", "apt-get install qemu-system-x86", "qemu-system-x86_64 not found");
                return;
        }
        check_add(l, CHECK_OK, "vmm", NULL, "%s", qemu);

#ifdef NUCLEUS_HAVE_IMAGE_DEP
        _cleanup_free_ char *kernel = xasprintf("%s/%s", images_dir, IMAGE_QEMU_KERNEL);
        _cleanup_free_ char *initrd = xasprintf("%s/%s", images_dir, IMAGE_INITRAMFS);
        _cleanup_free_ char *reason = NULL;
        ImageAccel accel = IMAGE_ACCEL_TCG;
        if (access(kernel, R_OK) < 0 || access(initrd, R_OK) < 0) {
                check_add(
                        l,
                        CHECK_WARN,
                        "acceleration",
                        "nucleus setup",
                        "not probed: no guest image yet; pods would use TCG (software emulation, slower)");
                return;
        }
        /* node.toml pins TCG (nucleus setup writes that when its probe failed): the node never
         * probes, so neither does doctor (a broken /dev/kvm makes each probe wait it out). */
        if (streq_ptr(configured_accel, "tcg")) {
                check_add(
                        l,
                        CHECK_WARN,
                        "acceleration",
                        "none needed: TCG is fully functional, only slower; to try KVM again set [pods] "
                        "accel = \"auto\" in node.toml (or run nucleus setup --force)",
                        "TCG (software emulation, slower): node.toml [pods] accel = \"tcg\"; not probed");
                return;
        }
        if (image_kvm_probe(qemu, kernel, initrd, IMAGE_KVM_PROBE_TIMEOUT, &accel, &reason) < 0) {
                check_add(
                        l,
                        CHECK_WARN,
                        "acceleration",
                        NULL,
                        "KVM probe could not run; pods use TCG (software emulation, slower)");
                return;
        }
        if (accel == IMAGE_ACCEL_KVM)
                check_add(l, CHECK_OK, "acceleration", NULL, "KVM (%s)", reason ?: "probe boot succeeded");
        else
                check_add(
                        l,
                        CHECK_WARN,
                        "acceleration",
                        "none needed: TCG is fully functional, only slower; for KVM use a host whose "
                        "/dev/kvm boots guests",
                        "TCG (software emulation, slower) because %s",
                        reason ?: "the KVM probe boot failed");
#else
        (void) images_dir;
        (void) configured_accel;
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                check_add(
                        l,
                        CHECK_WARN,
                        "acceleration",
                        NULL,
                        "TCG: /dev/kvm cannot be opened (%s)",
                        strerror(errno));
        else {
                close(fd);
                check_add(
                        l,
                        CHECK_WARN,
                        "acceleration",
                        NULL,
                        "TCG assumed: built without the image library's KVM probe");
        }
#endif
}

/* Every [images.NAME] table of config.toml should be built: a pod asking for it is refused at
 * create time until it is. */
static void check_named_images(CheckList *l, const char *config_file, const char *images_dir) {
#if defined(NUCLEUS_HAVE_IMAGE_DEP) && defined(NUCLEUS_HAVE_SPEC_DEP)
        CliConfig *cfg = NULL;
        _cleanup_free_ char *err = NULL;
        if (!config_file || cli_config_load(config_file, false, &cfg, &err) < 0)
                return; /* the config check reports a broken file */
        const char *name;
        json_t *t;
        _cleanup_strv_free_ char **missing = NULL;
        size_t n = json_object_size(cfg->images.named);
        json_object_foreach(cfg->images.named, name, t) {
                _cleanup_free_ char *dir = xasprintf("%s/%s", images_dir, name);
                _cleanup_json_ json_t *m = NULL;
                if (image_manifest_load(dir, &m) < 0)
                        strv_extend(&missing, name);
        }
        cli_config_free(cfg);
        if (n == 0)
                return;
        if (missing) {
                _cleanup_free_ char *list = strv_join(missing, ", ");
                check_add(
                        l,
                        CHECK_WARN,
                        "named images",
                        "nucleus image build --all",
                        "[images.NAME] tables of %s not built in %s: %s",
                        config_file,
                        images_dir,
                        list);
        } else
                check_add(l, CHECK_OK, "named images", NULL, "all %zu [images.NAME] tables built", n);
#endif
}

static void check_images(CheckList *l, const char *images_dir) {
#ifdef NUCLEUS_HAVE_IMAGE_DEP
        _cleanup_json_ json_t *m = NULL;
        int r = image_manifest_load(images_dir, &m);
        if (r == -ENOENT)
                check_add(l, CHECK_ERR, "images", "nucleus setup", "no guest image in %s", images_dir);
        else if (r < 0)
                check_add(
                        l,
                        CHECK_ERR,
                        "images",
                        "nucleus setup --force (rebuilds the image)",
                        "%s/manifest.json is invalid: %s",
                        images_dir,
                        strerror(-r));
        else {
                /* The images carry the guest binaries they were built with: after an upgrade of
                 * Nucleus without `nucleus setup`, pods would boot the old proxy, which fails
                 * what the new node asks of it (a reseed, a new op) with a confusing message. */
                _cleanup_free_ char *init = NULL, *proxy = NULL;
                const char *which = NULL;
                if (cli_find_helper("nucleus-guest-init", "NUCLEUS_GUEST_INIT", "../guest/init", &init) >= 0 &&
                    cli_find_helper("nucleus-tool-proxy", "NUCLEUS_TOOL_PROXY", "../guest/proxy", &proxy) >= 0 &&
                    image_guest_binaries_match(m, init, proxy, &which) == 0)
                        check_add(
                                l,
                                CHECK_ERR,
                                "images",
                                "nucleus setup (rebuilds what changed), then nucleus stop && nucleus start",
                                "%s was built with another %s than this installation's %s (Nucleus upgraded "
                                "since?): pods would run the old one",
                                images_dir,
                                which,
                                streq(which, "nucleus-guest-init") ? init : proxy);
                else
                        check_add(
                                l,
                                CHECK_OK,
                                "images",
                                NULL,
                                "%s (manifest valid, all artifacts present)",
                                images_dir);
        }
#else
        _cleanup_free_ char *m = xasprintf("%s/manifest.json", images_dir);
        if (access(m, R_OK) < 0)
                check_add(l, CHECK_ERR, "images", "nucleus setup", "%s missing", m);
        else
                check_add(
                        l,
                        CHECK_WARN,
                        "images",
                        NULL,
                        "%s present (not validated: built without the image library)",
                        m);
#endif
}

/* The node's warm pool (GET /v1/pool; docs/node.md "Warm pool"): configured and ready per
 * image. A node without the route (older) is not an error. */
static void check_pool(CheckList *l, NucleusClient *c) {
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *res = NULL;
        if (client_call_json(c, "GET", "/v1/pool", NULL, &res, &e) < 0)
                return;
        json_t *images = json_object_get(res, "images");
        size_t i;
        json_t *img;
        unsigned configured = 0;
        /* What a full pool needs: each pooled pod is charged its guest memory plus 256 MiB
         * (the node's pool_pod_charge_mib). A pool short of it is told the number to write. */
        json_int_t total = 0, budget = json_integer_value(json_object_get(res, "memory_budget_mib"));
        json_int_t charge = json_integer_value(json_object_get(res, "memory_mib")) + 256;
        json_array_foreach(images, i, img)
                total += NUCLEUS_MAX(json_integer_value(json_object_get(img, "size")), (json_int_t) 0);
        _cleanup_free_ char *fix = total * charge > budget ? xasprintf(
                                                                     "raise [pool] memory_budget_mib in "
                                                                     "node.toml to %lld (%lld pooled pod(s) "
                                                                     "x %lld MiB), "
                                                                     "then restart the node",
                                                                     (long long) (total * charge),
                                                                     (long long) total,
                                                                     (long long) charge)
                                                           : xstrdup("see the node log for failing boots");
        json_array_foreach(images, i, img) {
                _cleanup_free_ char *name = string_make_visible(
                        json_string_value(json_object_get(img, "image")) ?: "?");
                json_int_t size = json_integer_value(json_object_get(img, "size"));
                json_int_t ready = json_integer_value(json_object_get(img, "ready"));
                json_int_t booting = json_integer_value(json_object_get(img, "booting"));
                if (size <= 0)
                        continue;
                configured++;
                check_add(
                        l,
                        ready + booting < size ? CHECK_WARN : CHECK_OK,
                        "warm-pool",
                        ready + booting < size ? fix : NULL,
                        "image %s: %lld of %lld pooled pod(s) ready, %lld booting%s (memory %lld of %lld "
                        "MiB; "
                        "%lld hit(s), %lld miss(es))",
                        name,
                        (long long) ready,
                        (long long) size,
                        (long long) booting,
                        json_is_true(json_object_get(res, "network")) ? ", each with a parked NIC (for "
                                                                        "specs with a network, [pool] "
                                                                        "network)"
                                                                      : "",
                        (long long) json_integer_value(json_object_get(res, "memory_used_mib")),
                        (long long) json_integer_value(json_object_get(res, "memory_budget_mib")),
                        (long long) json_integer_value(json_object_get(res, "hits")),
                        (long long) json_integer_value(json_object_get(res, "misses")));
        }
        if (configured == 0)
                check_add(
                        l,
                        CHECK_OK,
                        "warm-pool",
                        NULL,
                        "off: every create boots a pod (set [pool.images] default = 1 in node.toml for warm "
                        "starts)");
}

static void check_node(CheckList *l, const ClientSettings *s) {
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_free_ char *err = NULL;
        int r;

        r = client_open(s, &c, &err);
        if (r < 0) {
                check_add(
                        l, CHECK_ERR, "node", "nucleus setup", "cannot sign requests: %s", err ?: strerror(-r));
                return;
        }
        client_set_timeouts(c, 2 * USEC_PER_SEC, 5 * USEC_PER_SEC);
        r = cli_node_check(c, &e);
        if (r >= 0) {
                check_add(l, CHECK_OK, "node", NULL, "%s answers signed requests", s->url);
                check_pool(l, c);
                return;
        }
        if (e.status == 401 || streq_ptr(e.kind, "node_unauthenticated"))
                /* Either the node refused our signature, or whatever answered does not hold our
                 * key (its answer MAC failed): different keys, or another program on the port. */
                check_add(
                        l,
                        CHECK_ERR,
                        "node",
                        "make the node use the same node.key as the CLI (nucleus secrets show-paths), then "
                        "nucleus stop && nucleus start; if that does not help, another program holds the "
                        "port (ss -ltnp)",
                        "%s rejected our signature or does not hold our key: %s",
                        s->url,
                        e.message);
        else if (e.status == 0)
                check_add(l, CHECK_ERR, "node", "nucleus start", "not reachable at %s (%s)", s->url, e.message);
        else
                check_add(
                        l,
                        CHECK_ERR,
                        "node",
                        "see the node log (nucleus config shows where)",
                        "%s answered %ld: %s (%s)",
                        s->url,
                        e.status,
                        e.message,
                        e.kind);
}

static void check_network(CheckList *l) {
#ifdef NUCLEUS_HAVE_NET_DEP
        NetDoctorCheck checks[16];
        NetConfig cfg = NET_CONFIG_NULL;
        size_t n = net_doctor_checks(&cfg, checks, ELEMENTSOF(checks));
        for (size_t i = 0; i < n; i++) {
                checks[i].name[sizeof(checks[i].name) - 1] = 0;
                checks[i].detail[sizeof(checks[i].detail) - 1] = 0;
                /* Missing firewall or DNS tooling breaks every pod with a network policy; the
                 * others (e.g. forwarding) the node can still report per pod. */
                bool hard = streq(checks[i].name, "nftables") || streq(checks[i].name, "dnsmasq") ||
                        streq(checks[i].name, "netns");
                if (checks[i].ok)
                        check_add(l, CHECK_OK, checks[i].name, NULL, "%s", checks[i].detail);
                else
                        check_add(
                                l,
                                hard ? CHECK_ERR : CHECK_WARN,
                                checks[i].name,
                                checks[i].detail,
                                "failed (needed for pods with a network policy)");
        }
#else
        static const struct {
                const char *prog, *pkg;
        } tools[] = { { "nft", "nftables" }, { "dnsmasq", "dnsmasq-base" } };
        for (size_t i = 0; i < ELEMENTSOF(tools); i++) {
                _cleanup_free_ char *p = NULL;
                if (cli_find_program(tools[i].prog, &p) < 0) {
                        _cleanup_free_ char *fix = xasprintf("apt-get install %s", tools[i].pkg);
                        check_add(
                                l,
                                CHECK_ERR,
                                tools[i].prog,
                                fix,
                                "not found (needed for pods with a network policy)");
                } else
                        check_add(l, CHECK_OK, tools[i].prog, NULL, "%s", p);
        }
#endif
}

static void check_disk(CheckList *l) {
        _cleanup_free_ char *dir = NULL;
        struct statvfs sv;

        if (client_state_dir(&dir) < 0)
                return;
        /* The state dir may not exist yet: measure its nearest existing parent. */
        while (statvfs(dir, &sv) < 0) {
                char *slash = strrchr(dir, '/');
                if (!slash || slash == dir) {
                        strcpy(dir, "/");
                        if (statvfs(dir, &sv) < 0)
                                return;
                        break;
                }
                *slash = 0;
        }
        unsigned long long free_mib = (unsigned long long) sv.f_bavail * sv.f_frsize / (1024 * 1024);
        if (free_mib < 1024)
                check_add(
                        l,
                        CHECK_ERR,
                        "disk",
                        "free space on that filesystem",
                        "%llu MiB free at %s (need >= 1 GiB for images and pods)",
                        free_mib,
                        dir);
        else if (free_mib < 4096)
                check_add(
                        l,
                        CHECK_WARN,
                        "disk",
                        "free space on that filesystem",
                        "%llu MiB free at %s (4 GiB recommended)",
                        free_mib,
                        dir);
        else
                check_add(l, CHECK_OK, "disk", NULL, "%llu MiB free at %s", free_mib, dir);
}

int verb_doctor(int argc, char **argv) {
        _cleanup_(client_settings_done) ClientSettings s = {};
        _cleanup_free_ char *err = NULL, *images_dir = NULL, *accel = NULL;
        OutputMode output = OUTPUT_TEXT;
        CheckList l;
        int r;

        bool done;
        r = cli_parse_simple_no_args(argc, argv, usage, &output, &done);
        if (done)
                return r;

        check_list_init(&l, output);
        r = client_settings_load(&s, &err);
        if (r < 0)
                check_add(
                        &l,
                        CHECK_ERR,
                        "config",
                        "nucleus setup (or fix the file named above)",
                        "%s",
                        err ?: strerror(-r));
        else
                check_config(&l, &s, &accel);
        check_secrets(&l, r >= 0 ? s.secrets_dir : NULL);
        if (r >= 0 && cli_node_mode() == NODE_MODE_LIMA) {
                _cleanup_free_ char *status = NULL;
                int k = lima_vm_status(s.vm_name, &status);
                if (k < 0)
                        check_add(
                                &l,
                                CHECK_ERR,
                                "lima",
                                "brew install lima",
                                "limactl not usable: %s",
                                strerror(-k));
                else if (k == 0)
                        check_add(&l, CHECK_ERR, "lima", "nucleus setup", "VM '%s' does not exist", s.vm_name);
                else
                        check_add(
                                &l,
                                streq(status, "Running") ? CHECK_OK : CHECK_ERR,
                                "lima",
                                "nucleus start",
                                "VM '%s' is %s",
                                s.vm_name,
                                status);
        } else {
                if (client_images_dir(&images_dir) >= 0) {
                        check_vmm(&l, images_dir, accel);
                        check_images(&l, images_dir);
                        check_named_images(&l, s.config_file, images_dir);
                }
                check_network(&l);
                check_disk(&l);
        }
        if (r >= 0)
                check_node(&l, &s);

        if (output == OUTPUT_JSON) {
                _cleanup_json_ json_t *doc = json_pack(
                        "{s:b,s:I,s:I,s:I,s:O}",
                        "ok",
                        l.n_err == 0,
                        "errors",
                        (json_int_t) l.n_err,
                        "warnings",
                        (json_int_t) l.n_warn,
                        "passed",
                        (json_int_t) l.n_ok,
                        "checks",
                        l.items);
                (void) cli_print_json(doc);
        } else if (l.n_err > 0)
                printf("%u check(s) failed; apply the fixes above, then run 'nucleus doctor' again.\n",
                       l.n_err);
        else
                printf("All checks passed%s.\n", l.n_warn > 0 ? " (warnings above explain themselves)" : "");
        r = l.n_err > 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        check_list_done(&l);
        return r;
}
