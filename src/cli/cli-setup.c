/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The steps of `nucleus setup` that both of its paths take: recording a step's outcome, the
 * secret store, and the CLI's config.toml. The Linux path (verb-setup.c) and the macOS/Lima
 * path (cli-lima.c) call these; nothing here calls back into either.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-files.h"
#include "cli-setup.h"
#include "client-paths.h"
#include "json-util.h"
#include "string-util.h"
#ifdef NUCLEUS_HAVE_AUTH_DEP
#        include "secrets.h"
#endif

void setup_step(SetupContext *ctx, const char *step, SetupStepResult res, const char *fmt, ...) {
        static const char *const names[] = {
                [SETUP_UNCHANGED] = "unchanged", [SETUP_CHANGED] = "changed", [SETUP_SKIPPED] = "skipped",
                [SETUP_WARNING] = "warning",     [SETUP_FAILED] = "failed",
        };
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *raw = xvasprintf(fmt, ap);
        va_end(ap);
        _cleanup_free_ char *msg = string_make_visible(raw);

        if (res == SETUP_CHANGED)
                ctx->n_changed++;
        if (res == SETUP_FAILED)
                ctx->n_failed++;
        json_t *o = json_pack("{s:s,s:s,s:s}", "step", step, "result", names[res], "message", msg);
        if (o)
                json_array_append_new(ctx->steps, o);
        /* Progress goes to stderr; stdout carries only the result. */
        fprintf(stderr, "  %-9s %-9s %s\n", step, names[res], msg);
}

int setup_secrets(SetupContext *ctx, const char *secrets_dir) {
#ifdef NUCLEUS_HAVE_AUTH_DEP
        _cleanup_free_ char *err = NULL;
        int r;

        if (ctx->secrets_provided) {
                /* Inside the Lima VM: the host handed over node.key, approver.pub and audit.key;
                 * the approver's secret half stays on the host. */
                const char *need[] = { "node.key", "approver.pub", "audit.key" };
                for (size_t i = 0; i < ELEMENTSOF(need); i++) {
                        _cleanup_free_ char *path = xasprintf("%s/%s", secrets_dir, need[i]);
                        if (access(path, R_OK) < 0) {
                                setup_step(
                                        ctx,
                                        "secrets",
                                        SETUP_FAILED,
                                        "%s missing; fix: rerun 'nucleus setup' on the host",
                                        path);
                                return -ENOENT;
                        }
                }
                setup_step(ctx, "secrets", SETUP_UNCHANGED, "provided by the host in %s", secrets_dir);
                return 0;
        }
        r = secret_dir_ensure(secrets_dir, &err);
        if (r < 0) {
                setup_step(ctx, "secrets", SETUP_FAILED, "%s", err ?: strerror(-r));
                return r;
        }
        for (SecretKind k = 0; k < _SECRET_KIND_MAX; k++) {
                _cleanup_free_ char *path = xasprintf("%s/%s", secrets_dir, secret_kind_file(k));
                _cleanup_free_ char *e = NULL;
                int64_t now = (int64_t) time(NULL);
                struct stat st;

                if (lstat(path, &st) == 0) {
                        if (ctx->rotate_secrets) {
                                r = secret_rotate(secrets_dir, k, now, &e);
                                if (r < 0) {
                                        setup_step(
                                                ctx,
                                                "secrets",
                                                SETUP_FAILED,
                                                "rotating %s: %s",
                                                path,
                                                e ?: strerror(-r));
                                        return r;
                                }
                                setup_step(ctx, "secrets", SETUP_CHANGED, "rotated %s", path);
                                continue;
                        }
                        uint8_t buf[64];
                        r = secret_load(secrets_dir, k, buf, k == SECRET_NODE ? 32 : 64, &e);
                        explicit_bzero_safe(buf, sizeof(buf));
                        if (r < 0) {
                                setup_step(
                                        ctx,
                                        "secrets",
                                        SETUP_FAILED,
                                        "%s is unusable: %s (or replace it: nucleus setup --rotate-secrets)",
                                        path,
                                        e ?: strerror(-r));
                                return r;
                        }
                        setup_step(ctx, "secrets", SETUP_UNCHANGED, "%s present (0600)", path);
                        continue;
                }
                r = secret_generate(secrets_dir, k, /* overwrite= */ false, now, &e);
                if (r < 0) {
                        setup_step(ctx, "secrets", SETUP_FAILED, "creating %s: %s", path, e ?: strerror(-r));
                        return r;
                }
                setup_step(ctx, "secrets", SETUP_CHANGED, "created %s (0600)", path);
        }
        return 0;
#else
        setup_step(
                ctx,
                "secrets",
                SETUP_FAILED,
                "this nucleus was built without the secret store (src/lib/auth); fix: rebuild Nucleus");
        (void) secrets_dir;
        return -EOPNOTSUPP;
#endif
}

void setup_report_write(SetupContext *ctx, const char *step, const char *path, int r) {
        switch (r) {
        case WRITE_UNCHANGED:
                setup_step(ctx, step, SETUP_UNCHANGED, "%s is up to date", path);
                break;
        case WRITE_CREATED:
                setup_step(ctx, step, SETUP_CHANGED, "wrote %s", path);
                break;
        case WRITE_UPDATED:
                setup_step(ctx, step, SETUP_CHANGED, "rewrote %s (--force)", path);
                break;
        case WRITE_KEPT:
                setup_step(
                        ctx,
                        step,
                        SETUP_WARNING,
                        "%s differs from what setup would write; kept your version (use --force to replace "
                        "it)",
                        path);
                break;
        default:
                setup_step(ctx, step, SETUP_FAILED, "cannot write %s: %s", path, strerror(-r));
        }
}

int setup_cli_config(SetupContext *ctx, const char *url, const char *secrets_dir) {
        _cleanup_free_ char *config = NULL;
        int r;

        if (client_config_file(&config) < 0)
                return -ENOENT;
        _cleanup_free_ char *q_url = cli_toml_quote(url), *q_secrets = cli_toml_quote(secrets_dir),
                            *q_vm = cli_toml_quote(ctx->vm_name);
        /* Schema: docs/config.md "CLI" (unknown keys are errors there). */
        _cleanup_free_ char *text = xasprintf(
                "# Nucleus CLI configuration, written by `nucleus setup` (docs/config.md).\n"
                "# Edit freely; `nucleus setup --force` rewrites it. `nucleus config` shows the\n"
                "# effective values and where each comes from.\n"
                "\n"
                "[node]\n"
                "# The node's API.\n"
                "url = %s\n"
                "# Recorded in the audit log for requests from this CLI.\n"
                "actor = \"nucleus-cli\"\n"
                "\n"
                "[auth]\n"
                "# node.key, approver.key, audit.pub live here (0700; files 0600).\n"
                "secrets_dir = %s\n"
                "\n"
                "[vm]\n"
                "# The Lima VM (macOS only).\n"
                "name = %s\n"
                "cpus = %u\n"
                "memory_gib = %u\n"
                "disk_gib = %u\n",
                q_url,
                q_secrets,
                q_vm,
                ctx->vm_cpus,
                ctx->vm_memory_gib,
                ctx->vm_disk_gib);
        r = cli_write_if_changed(config, text, 0644, ctx->force);
        setup_report_write(ctx, "config", config, r);
        return r < 0 ? r : 0;
}
