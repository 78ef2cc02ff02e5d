/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus secrets rotate|show-paths: rotate the secrets through src/lib/auth's store, or print
 * where every Nucleus file lives. Never prints secret values.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <sys/stat.h>
#include <string.h>
#include <time.h>

#include "alloc-util.h"
#include "cli-node.h"
#include "cli-opt.h"
#include "cli.h"
#include "client-paths.h"
#include "client-settings.h"
#include "json-util.h"
#include "string-util.h"
#ifdef NUCLEUS_HAVE_AUTH_DEP
#        include "secrets.h"
#endif

static void usage(void) {
        printf("Usage: nucleus secrets COMMAND [OPTIONS]\n\n"
               "Commands:\n"
               "  show-paths             Where the config, secrets, images, state and logs live\n"
               "  rotate [KIND...]       Replace secrets (node, approver, audit; default: all).\n"
               "                         Restart the node afterwards: nucleus stop && nucleus start\n\n"
               "Options:\n"
               "      --output FORMAT     text (default) or json\n"
               "  -h, --help              Show this help\n");
}

static int show_paths(OutputMode output) {
        _cleanup_free_ char *config_dir = NULL, *config = NULL, *secrets = NULL, *node_config = NULL,
                            *state = NULL, *images = NULL, *log = NULL, *pid = NULL;
        if (client_config_dir(&config_dir) < 0 || client_config_file(&config) < 0 ||
            client_secrets_dir(&secrets) < 0 || client_node_config_file(&node_config) < 0 ||
            client_state_dir(&state) < 0 || client_images_dir(&images) < 0 ||
            client_node_log_file(&log) < 0 || client_pid_file(&pid) < 0) {
                fprintf(stderr, "nucleus secrets: cannot locate the config or state directory; set HOME.\n");
                return CLI_EXIT_FAILURE;
        }
        static const char *const files[] = {
                "node.key", "approver.key", "approver.pub", "audit.key", "audit.pub"
        };
        _cleanup_json_ json_t *doc = json_pack(
                "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}",
                "config_dir",
                config_dir,
                "config",
                config,
                "secrets_dir",
                secrets,
                "node_config",
                node_config,
                "state_dir",
                state,
                "images_dir",
                images,
                "node_log",
                log,
                "pid_file",
                pid);
        json_t *sf = json_object();
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *p = xasprintf("%s/%s", secrets, files[i]);
                json_object_set_new(sf, files[i], json_string(p));
        }
        json_object_set_new(doc, "secrets", sf);
        if (output == OUTPUT_JSON)
                return cli_print_json(doc) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        printf("config dir:   %s (%s)\n", config_dir, client_config_dir_source());
        printf("config:       %s\n", config);
        printf("node config:  %s\n", node_config);
        struct stat st;
        if (stat(secrets, &st) < 0)
                printf("secrets dir:  %s (missing; fix: nucleus setup)\n", secrets);
        else
                printf("secrets dir:  %s (%04o)\n", secrets, (unsigned) (st.st_mode & 07777));
        for (size_t i = 0; i < ELEMENTSOF(files); i++)
                printf("  %-12s %s/%s\n", files[i], secrets, files[i]);
        printf("state dir:    %s (%s)\n", state, client_state_dir_source());
        printf("images dir:   %s\n", images);
        printf("node log:     %s\n", log);
        printf("pid file:     %s\n", pid);
        return CLI_EXIT_OK;
}

static int rotate(char **kinds, OutputMode output) {
#ifdef NUCLEUS_HAVE_AUTH_DEP
        _cleanup_free_ char *dir = NULL;
        bool want[_SECRET_KIND_MAX] = {};
        if (client_secrets_dir(&dir) < 0) {
                fprintf(stderr, "nucleus secrets: cannot locate the secrets directory; set HOME.\n");
                return CLI_EXIT_FAILURE;
        }
        if (strv_length(kinds) == 0 || strv_contains(kinds, "all"))
                for (SecretKind k = 0; k < _SECRET_KIND_MAX; k++)
                        want[k] = true;
        STRV_FOREACH(k, kinds) {
                if (streq(*k, "all"))
                        continue;
                SecretKind sk = secret_kind_from_string(*k);
                if (sk < 0)
                        return cli_usage_error(
                                "secrets", "unknown secret kind '%s' (node, approver, audit, all)", *k);
                want[sk] = true;
        }
        _cleanup_json_ json_t *rotated = json_array();
        for (SecretKind k = 0; k < _SECRET_KIND_MAX; k++) {
                _cleanup_free_ char *err = NULL;
                if (!want[k])
                        continue;
                int r = secret_rotate(dir, k, (int64_t) time(NULL), &err);
                if (r < 0) {
                        fprintf(stderr,
                                "nucleus secrets: rotating %s failed: %s%s\n",
                                secret_kind_to_string(k),
                                err ?: strerror(-r),
                                r == -ENOENT ? " (fix: nucleus setup)" : "");
                        return CLI_EXIT_FAILURE;
                }
                json_array_append_new(rotated, json_string(secret_kind_to_string(k)));
                fprintf(stderr, "Rotated %s in %s.\n", secret_kind_to_string(k), dir);
        }
        pid_t pid;
        bool running = cli_daemon_pid(&pid) > 0;
        if (output == OUTPUT_JSON) {
                _cleanup_json_ json_t *doc = json_pack(
                        "{s:b,s:O,s:b}", "ok", true, "rotated", rotated, "restart_needed", running);
                (void) cli_print_json(doc);
        } else
                printf("Secrets rotated.%s\n",
                       running ? " The running node still uses the old ones: nucleus stop && nucleus start"
                               : "");
        return CLI_EXIT_OK;
#else
        (void) kinds;
        (void) output;
        fprintf(stderr, "nucleus secrets: built without the secret store (src/lib/auth).\n");
        return CLI_EXIT_FAILURE;
#endif
}

int verb_secrets(int argc, char **argv) {
        OutputMode output = OUTPUT_TEXT;
        int r;

        bool done;
        r = cli_parse_simple(argc, argv, usage, &output, &done);
        if (done)
                return r;
        if (optind >= argc)
                return cli_usage_error("secrets", "missing command: rotate or show-paths");
        if (streq(argv[optind], "show-paths")) {
                if (optind + 1 < argc)
                        return cli_usage_error("secrets", "show-paths takes no arguments");
                return show_paths(output);
        }
        if (streq(argv[optind], "rotate"))
                return rotate(argv + optind + 1, output);
        return cli_usage_error("secrets", "unknown command '%s' (rotate, show-paths)", argv[optind]);
}
