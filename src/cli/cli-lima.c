/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The macOS path: a Lima VM holds the node (see cli-lima.h). The template mounts only the
 * artifacts folder, read-only (no home mount), forwards 8080/9080 to the host loopback, and
 * asks for nested virtualization only where the chip (M3+) and macOS (15+) support it.
 * Secrets reach the VM on limactl's stdin into root-only files, never on a command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-files.h"
#include "cli-lima.h"
#include "cli-node.h"
#include "client-paths.h"
#include "fd-util.h"
#include "log.h"
#include "parse-util.h"
#include "process-util.h"
#include "string-util.h"

void mac_platform_done(MacPlatform *p) {
        p->chip = mfree(p->chip);
}

static const char *test_platform(void) {
        const char *e = secure_getenv("NUCLEUS_TEST_PLATFORM");
        return isempty(e) ? NULL : e;
}

bool cli_platform_is_darwin(void) {
        const char *t = test_platform();
        if (t)
                return startswith(t, "darwin") != NULL;
#ifdef __APPLE__
        return true;
#else
        return false;
#endif
}

static char *first_line(char *s) {
        if (!s)
                return NULL;
        s[strcspn(s, "\r\n")] = 0;
        return s;
}

int mac_platform_detect(MacPlatform *ret) {
        _cleanup_free_ char *chip = NULL, *version = NULL;
        const char *t = test_platform();
        MacPlatform p = {};

        if (t) {
                const char *c = secure_getenv("NUCLEUS_TEST_MAC_CHIP");
                const char *v = secure_getenv("NUCLEUS_TEST_MAC_VERSION");
                p.apple_silicon = streq(t, "darwin-arm64");
                chip = xstrdup(!isempty(c) ? c : p.apple_silicon ? "Apple M1" : "Intel(R) Core(TM) i7");
                version = xstrdup(!isempty(v) ? v : "14.0");
        } else {
                char *sysctl_argv[] = {
                        (char *) "sysctl", (char *) "-n", (char *) "machdep.cpu.brand_string", NULL
                };
                char *sw_argv[] = { (char *) "sw_vers", (char *) "-productVersion", NULL };
                struct utsname u;
                if (cli_run_capture(sysctl_argv, &chip, 4096) != 0 ||
                    cli_run_capture(sw_argv, &version, 4096) != 0)
                        return log_error_errno(
                                -EIO, "Cannot detect the Mac's chip (sysctl) or macOS version (sw_vers)");
                p.apple_silicon = uname(&u) == 0 && streq(u.machine, "arm64");
        }
        p.chip = xstrdup(first_line(chip));
        const char *m = strstr(p.chip, "Apple M");
        if (m) {
                m += strlen("Apple M");
                unsigned gen = 0;
                while (*m >= '0' && *m <= '9' && gen < 1000)
                        gen = gen * 10 + (unsigned) (*m++ - '0');
                p.chip_generation = gen;
        }
        first_line(version);
        char *dot = strchr(version, '.');
        if (dot)
                *dot = 0;
        uint32_t major = 0, minor = 0;
        (void) safe_atou32(version, &major);
        if (dot) {
                char *dot2 = strchr(dot + 1, '.');
                if (dot2)
                        *dot2 = 0;
                (void) safe_atou32(dot + 1, &minor);
        }
        p.os_major = major;
        p.os_minor = minor;
        /* Apple's Virtualization.framework offers nested virtualization from M3 on macOS 15. */
        p.nested_virt = p.apple_silicon && p.chip_generation >= 3 && p.os_major >= 15;
        *ret = p;
        return 0;
}

char *lima_template(
        const MacPlatform *p, const char *artifacts_dir, unsigned cpus, unsigned memory_gib, unsigned disk_gib) {
        const char *arch = p->apple_silicon ? "aarch64" : "x86_64";
        const char *deb = p->apple_silicon ? "arm64" : "amd64";
        _cleanup_free_ char *q_art = NULL;

        /* YAML double-quoted string: same escapes as TOML basic strings for our purposes. */
        q_art = cli_toml_quote(artifacts_dir);
        return xasprintf(
                "# Lima template written by `nucleus setup` for %s, macOS %u.%u (%s).\n"
                "# Do not edit: `nucleus setup --force` regenerates it.\n"
                "vmType: %s\n"
                "arch: %s\n"
                "cpus: %u\n"
                "memory: \"%uGiB\"\n"
                "disk: \"%uGiB\"\n"
                "# Nested virtualization needs Apple M3 or newer and macOS 15 or newer.\n"
                "nestedVirtualization: %s\n"
                "images:\n"
                "  - location: "
                "\"https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-%s.qcow2\"\n"
                "    arch: %s\n"
                "# Only the artifacts folder, read-only. No home folder mount.\n"
                "mounts:\n"
                "  - location: %s\n"
                "    mountPoint: /nucleus/artifacts\n"
                "    writable: false\n"
                "portForwards:\n"
                "  - guestIP: 127.0.0.1\n"
                "    guestPort: 8080\n"
                "    hostIP: 127.0.0.1\n"
                "    hostPort: 8080\n"
                "  - guestIP: 127.0.0.1\n"
                "    guestPort: 9080\n"
                "    hostIP: 127.0.0.1\n"
                "    hostPort: 9080\n"
                "containerd:\n"
                "  system: false\n"
                "  user: false\n",
                p->chip,
                p->os_major,
                p->os_minor,
                p->apple_silicon ? "Apple Silicon" : "Intel",
                p->apple_silicon ? "vz" : "qemu",
                arch,
                cpus,
                memory_gib,
                disk_gib,
                p->nested_virt ? "true" : "false",
                deb,
                arch,
                q_art);
}

/* limactl needs the user's HOME (instances live in ~/.lima), LIMA_HOME when set, and a PATH
 * that finds Homebrew's tools. Nothing else of our environment is passed on; the stand-in
 * limactl of the tests gets its FAKE_LIMACTL_* variables only in test mode. */
static char **lima_env(void) {
        static const char *const pass[] = { "HOME", "LIMA_HOME", "USER", "TMPDIR" };
        char **env = NULL;
        const char *path = secure_getenv("PATH");

        strv_consume(
                &env,
                xasprintf(
                        "PATH=%s:/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin",
                        isempty(path) ? "/usr/bin" : path));
        for (size_t i = 0; i < ELEMENTSOF(pass); i++) {
                const char *v = secure_getenv(pass[i]);
                if (v)
                        strv_consume(&env, xasprintf("%s=%s", pass[i], v));
        }
        if (test_platform()) {
                const char *names[] = { "FAKE_LIMACTL_LOG", "FAKE_LIMACTL_STATE" };
                for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                        const char *v = secure_getenv(names[i]);
                        if (v)
                                strv_consume(&env, xasprintf("%s=%s", names[i], v));
                }
        }
        return env;
}

int lima_run(char *const argv[]) {
        _cleanup_strv_free_ char **env = lima_env();
        return cli_run_capture_env(argv, env, NULL, 0);
}

int lima_vm_status(const char *name, char **ret_status) {
        _cleanup_free_ char *out = NULL;
        char *argv[] = {
                (char *) "limactl", (char *) "list", (char *) "--format", (char *) "{{.Name}}\t{{.Status}}", NULL
        };
        _cleanup_strv_free_ char **env = lima_env();
        int r = cli_run_capture_env(argv, env, &out, 1024 * 1024);
        if (r < 0)
                return r;
        if (r != 0)
                return -EIO;
        char *save = NULL;
        for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *tab = strchr(line, '\t');
                if (!tab)
                        continue;
                *tab = 0;
                if (streq(line, name)) {
                        *ret_status = xstrdup(tab + 1);
                        return 1;
                }
        }
        *ret_status = NULL;
        return 0;
}

/* Pipe the file at path into `limactl shell NAME -- sudo sh -c SCRIPT` on stdin. */
static int lima_shell_stdin(const char *name, const char *script, const char *path) {
        _cleanup_free_ char *limactl = NULL;
        _cleanup_close_ int fd = -EBADF;
        _cleanup_pidref_kill_ PidRef ref = PIDREF_NULL;
        int status, r;

        r = cli_find_program("limactl", &limactl);
        if (r < 0)
                return r;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        char *argv[] = { limactl,       (char *) "shell", (char *) name,   (char *) "--", (char *) "sudo",
                         (char *) "sh", (char *) "-c",    (char *) script, NULL };
        _cleanup_strv_free_ char **env = lima_env();
        r = spawn_argv(argv, env, fd, STDERR_FILENO, -1, &ref);
        if (r < 0)
                return r;
        r = pidref_wait(&ref, &status);
        pidref_done(&ref);
        if (r < 0)
                return r;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static int setup_lima_vm(SetupContext *ctx, const MacPlatform *p, const char *config_dir) {
        _cleanup_free_ char *limactl = NULL, *status = NULL, *artifacts = NULL, *tmpl_path = NULL,
                            *tmpl = NULL;
        int r;

        if (cli_find_program("limactl", &limactl) < 0) {
                setup_step(
                        ctx,
                        "lima",
                        SETUP_FAILED,
                        "limactl not found; fix: brew install lima%s",
                        p->apple_silicon ? "" : " qemu");
                return -ENOENT;
        }
        char *ver[] = { (char *) "limactl", (char *) "--version", NULL };
        if (lima_run(ver) != 0) {
                setup_step(ctx, "lima", SETUP_FAILED, "limactl --version failed; fix: brew reinstall lima");
                return -EIO;
        }

        /* The artifacts folder is mounted read-only: it must exist before the VM does. */
        artifacts = xasprintf("%s/artifacts", config_dir);
        r = cli_mkdir_p(artifacts, 0755);
        if (r < 0) {
                setup_step(ctx, "lima", SETUP_FAILED, "cannot create %s: %s", artifacts, strerror(-r));
                return r;
        }
        tmpl_path = xasprintf("%s/lima.yaml", config_dir);
        tmpl = lima_template(p, artifacts, ctx->vm_cpus, ctx->vm_memory_gib, ctx->vm_disk_gib);
        r = cli_write_if_changed(tmpl_path, tmpl, 0644, true);
        if (r < 0) {
                setup_step(ctx, "lima", SETUP_FAILED, "cannot write %s: %s", tmpl_path, strerror(-r));
                return r;
        }
        bool tmpl_changed = r == WRITE_CREATED || r == WRITE_UPDATED;
        setup_step(
                ctx,
                "template",
                tmpl_changed ? SETUP_CHANGED : SETUP_UNCHANGED,
                "%s (%s, nested virtualization %s)",
                tmpl_path,
                p->apple_silicon ? "vz" : "qemu",
                p->nested_virt ? "on" : "off");

        r = lima_vm_status(ctx->vm_name, &status);
        if (r < 0) {
                setup_step(ctx, "lima", SETUP_FAILED, "limactl list failed; fix: check 'limactl list'");
                return r;
        }
        if (r > 0 && ctx->force) {
                char *del[] = {
                        (char *) "limactl", (char *) "delete", (char *) "--force", (char *) ctx->vm_name, NULL
                };
                if (lima_run(del) != 0) {
                        setup_step(ctx, "lima", SETUP_FAILED, "limactl delete %s failed", ctx->vm_name);
                        return -EIO;
                }
                status = mfree(status);
                r = 0;
        }
        if (r == 0) {
                char *create[] = { (char *) "limactl",
                                   (char *) "create",
                                   (char *) "--tty=false",
                                   (char *) "--name",
                                   (char *) ctx->vm_name,
                                   tmpl_path,
                                   NULL };
                if (lima_run(create) != 0) {
                        setup_step(
                                ctx,
                                "lima",
                                SETUP_FAILED,
                                "limactl create failed; fix: see the output above, then 'nucleus setup "
                                "--force'");
                        return -EIO;
                }
                setup_step(ctx, "lima", SETUP_CHANGED, "created VM '%s'", ctx->vm_name);
        } else if (tmpl_changed)
                setup_step(
                        ctx,
                        "lima",
                        SETUP_WARNING,
                        "VM '%s' exists from an older template; 'nucleus setup --force' recreates it",
                        ctx->vm_name);
        if (!status || !streq(status, "Running")) {
                char *start[] = {
                        (char *) "limactl", (char *) "start", (char *) "--tty=false", (char *) ctx->vm_name, NULL
                };
                if (lima_run(start) != 0) {
                        setup_step(
                                ctx,
                                "lima",
                                SETUP_FAILED,
                                "limactl start %s failed; fix: check 'limactl list'",
                                ctx->vm_name);
                        return -EIO;
                }
                setup_step(ctx, "lima", SETUP_CHANGED, "started VM '%s'", ctx->vm_name);
        } else
                setup_step(ctx, "lima", SETUP_UNCHANGED, "VM '%s' is running", ctx->vm_name);
        return 0;
}

static int setup_lima_node(SetupContext *ctx, const char *config_dir, const char *secrets_dir) {
        _cleanup_free_ char *bin = NULL;
        const char *dir = secure_getenv("NUCLEUS_LINUX_BIN_DIR");
        int r;

        /* The node inside the VM is a Linux build of Nucleus, shipped in the artifacts folder. */
        bin = xasprintf("%s/artifacts/bin", config_dir);
        if (!isempty(dir)) {
                const char *names[] = { "nucleus", "nucleus-node", "nucleus-guest-init", "nucleus-tool-proxy" };
                r = cli_mkdir_p(bin, 0755);
                for (size_t i = 0; r >= 0 && i < ELEMENTSOF(names); i++) {
                        _cleanup_free_ char *src = xasprintf("%s/%s", dir, names[i]),
                                            *dst = xasprintf("%s/%s", bin, names[i]);
                        _cleanup_free_ char *data = NULL;
                        size_t n;
                        r = read_full_file_at(AT_FDCWD, src, 256 * 1024 * 1024, &data, &n);
                        if (r >= 0)
                                r = write_file_atomic_at(AT_FDCWD, dst, data, n, 0755);
                }
                if (r < 0) {
                        setup_step(
                                ctx,
                                "node",
                                SETUP_FAILED,
                                "cannot copy Linux binaries from %s: %s",
                                dir,
                                strerror(-r));
                        return r;
                }
        }
        _cleanup_free_ char *probe = xasprintf("%s/nucleus-node", bin);
        if (access(probe, R_OK) < 0) {
                setup_step(
                        ctx,
                        "node",
                        SETUP_FAILED,
                        "no Linux build of Nucleus in %s; fix: build Nucleus for Linux/%s and rerun with "
                        "NUCLEUS_LINUX_BIN_DIR=<dir with nucleus, nucleus-node, nucleus-guest-init, "
                        "nucleus-tool-proxy>",
                        bin,
                        "aarch64 or x86_64");
                return -ENOENT;
        }
        char *install[] = { (char *) "limactl",
                            (char *) "shell",
                            (char *) ctx->vm_name,
                            (char *) "--",
                            (char *) "sudo",
                            (char *) "install",
                            (char *) "-m",
                            (char *) "0755",
                            (char *) "-t",
                            (char *) "/usr/local/bin",
                            (char *) "/nucleus/artifacts/bin/nucleus",
                            (char *) "/nucleus/artifacts/bin/nucleus-node",
                            (char *) "/nucleus/artifacts/bin/nucleus-guest-init",
                            (char *) "/nucleus/artifacts/bin/nucleus-tool-proxy",
                            NULL };
        if (lima_run(install) != 0) {
                setup_step(
                        ctx,
                        "node",
                        SETUP_FAILED,
                        "installing the node into the VM failed; fix: see the output above");
                return -EIO;
        }
        setup_step(
                ctx,
                "node",
                SETUP_UNCHANGED,
                "nucleus and nucleus-node installed in /usr/local/bin of VM '%s'",
                ctx->vm_name);

        /* Secrets: stdin into files created 0600 under a 0700 dir by root (umask 077 first). */
        const char *files[] = { "node.key", "approver.pub", "audit.key", "audit.pub" };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *src = xasprintf("%s/%s", secrets_dir, files[i]);
                _cleanup_free_ char *script = xasprintf(
                        "umask 077 && mkdir -p /etc/nucleus/secrets && chmod 0700 /etc/nucleus/secrets && "
                        "cat > /etc/nucleus/secrets/%s.new && mv -f /etc/nucleus/secrets/%s.new "
                        "/etc/nucleus/secrets/%s",
                        files[i],
                        files[i],
                        files[i]);
                r = lima_shell_stdin(ctx->vm_name, script, src);
                if (r < 0) {
                        setup_step(
                                ctx,
                                "secrets",
                                SETUP_FAILED,
                                "handing %s to the VM failed: %s",
                                files[i],
                                strerror(-r));
                        return r;
                }
        }
        setup_step(
                ctx,
                "secrets",
                SETUP_UNCHANGED,
                "node.key, approver.pub, audit.key/.pub copied into /etc/nucleus/secrets of VM '%s' (root "
                "only, via stdin)",
                ctx->vm_name);

        /* The same Linux setup inside the VM: packages, images, node config, systemd unit. */
        char *inner[] = { (char *) "limactl",
                          (char *) "shell",
                          (char *) ctx->vm_name,
                          (char *) "--",
                          (char *) "sudo",
                          (char *) "/usr/local/bin/nucleus",
                          (char *) "setup",
                          (char *) "--secrets-provided",
                          NULL };
        if (lima_run(inner) != 0) {
                setup_step(
                        ctx,
                        "node",
                        SETUP_FAILED,
                        "'nucleus setup' inside VM '%s' failed; fix: limactl shell %s -- sudo nucleus setup",
                        ctx->vm_name,
                        ctx->vm_name);
                return -EIO;
        }
        setup_step(ctx, "node", SETUP_UNCHANGED, "'nucleus setup' completed inside VM '%s'", ctx->vm_name);
        return 0;
}

int setup_darwin(SetupContext *ctx) {
        _cleanup_(mac_platform_done) MacPlatform p = {};
        _cleanup_free_ char *config_dir = NULL, *secrets_dir = NULL;
        int r;

        r = mac_platform_detect(&p);
        if (r < 0)
                return r;
        setup_step(
                ctx,
                "platform",
                SETUP_UNCHANGED,
                "%s, macOS %u.%u, %s",
                p.chip,
                p.os_major,
                p.os_minor,
                p.nested_virt ? "nested virtualization available (KVM inside the VM)"
                              : "no nested virtualization (needs M3+ and macOS 15+): pods use TCG inside "
                                "the VM");
        if (client_config_dir(&config_dir) < 0 || client_secrets_dir(&secrets_dir) < 0)
                return log_error_errno(-ENOENT, "Cannot locate the config directory: set HOME");
        r = cli_mkdir_p(config_dir, 0755);
        if (r < 0)
                return log_error_errno(r, "Cannot create %s: %m", config_dir);

        r = setup_secrets(ctx, secrets_dir);
        if (r < 0)
                return r;
        if (ctx->skip_vm)
                setup_step(ctx, "lima", SETUP_SKIPPED, "--skip-vm given");
        else {
                r = setup_lima_vm(ctx, &p, config_dir);
                if (r < 0)
                        return r;
                r = setup_lima_node(ctx, config_dir, secrets_dir);
                if (r < 0)
                        return r;
        }
        /* Lima forwards the VM's 127.0.0.1:8080 to the host's. */
        return setup_cli_config(ctx, "http://127.0.0.1:8080", secrets_dir);
}
