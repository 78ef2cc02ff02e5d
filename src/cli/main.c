/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus: the command-line front end. Parses the global options, then dispatches to one
 * verb_<name>() per subcommand through a { name, fn } table (crun's commands[]). Results go
 * to stdout, logs and progress to stderr; exit 0 ok, 1 failure, 2 usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "cli.h"
#include "client-paths.h"
#include "log.h"
#include "nucleus-config.h"
#include "string-util.h"

/* Global options (STYLE.md rule 12: arg_* only here). */
static const char *arg_config = NULL; /* -c/--config or $NUCLEUS_CONFIG */
static int arg_log_level = LOG_INFO;

typedef struct Verb {
        const char *name;
        int (*fn)(int argc, char **argv);
        const char *summary;
} Verb;

static const Verb verbs[] = {
        { "setup", verb_setup, "Install dependencies, images, secrets and configuration" },
        { "start", verb_start, "Start nucleus-node and wait until it answers" },
        { "stop", verb_stop, "Stop nucleus-node" },
        { "doctor", verb_doctor, "Check the installation; exit non-zero on any error" },
        { "profiles", verb_profiles, "List the permission profiles and their capabilities" },
        { "config", verb_config, "Show the effective configuration and where each value comes from" },
        { "secrets", verb_secrets, "Rotate the secrets or show where they are stored" },
        { "ps", verb_ps, "List the node's pods" },
        { "logs", verb_logs, "Show a pod's logs" },
        { "rm", verb_rm, "Remove ended pods and the files 'nucleus run' kept for them" },
        { "prune", verb_prune, "Remove what 'nucleus run' kept for pods that ended" },
        { "create", verb_create, "Create a pod from a PodSpec file; prints its id" },
        { "wait", verb_wait, "Wait until a pod reaches a state (default: running)" },
        { "upload", verb_upload, "Upload a directory as a pod's workspace" },
        { "tool", verb_tool, "Call one tool of a pod (read, write, run, ...) and print the answer" },
        { "approve", verb_approve, "Hand an approval token to a pod" },
        { "credential", verb_credential, "Mint a credential scoped to one pod (for an MCP server or an SDK)" },
        { "approvals", verb_approvals, "List and decide the calls waiting for a human approval" },
        { "console", verb_console, "Serve a local web page of pods, live tool calls and approvals" },
        { "patch", verb_patch, "Fetch a pod's workspace changes as a git patch" },
        { "snapshot", verb_snapshot, "Save a running pod's memory and disk on the node" },
        { "fork", verb_fork, "Start pods from a snapshot of a running pod" },
        { "delete", verb_delete, "Stop and delete a pod" },
        { "cancel", verb_delete, "Same as delete" },
        { "audit", verb_audit, "Verify an audit log, or show it as a transcript" },
        { "run", verb_run, "Run an agent on a task in a fresh microVM pod and return its patch" },
        { "image", verb_image, "Build or refresh the guest images (kernel, initramfs, rootfs)" },
};

static void help_to(FILE *f) {
        fprintf(f,
                "Usage: nucleus [GLOBAL OPTIONS] COMMAND [ARGS...]\n\n"
                "Run AI agent tasks in microVMs with enforced permissions.\n\n"
                "Commands:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
        fprintf(f,
                "\nGlobal options (before COMMAND):\n"
                "  -c, --config PATH   CLI config file (default: $NUCLEUS_CONFIG, then\n"
                "                      <config dir>/config.toml; see 'nucleus secrets show-paths')\n"
                "  -v, --verbose       Debug logging on stderr\n"
                "  -q, --quiet         Only errors on stderr\n"
                "  -h, --help          Show this help\n"
                "      --version       Show the version\n\n"
                "Run 'nucleus COMMAND --help' for a command's options.\n");
}

static void help(void) {
        help_to(stdout);
}

static int parse_global(int argc, char **argv) {
        enum {
                ARG_VERSION = 0x100
        };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },    { "verbose", no_argument, NULL, 'v' },
                { "quiet", no_argument, NULL, 'q' },           { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION }, {},
        };
        int c;

        /* '+': stop at the first non-option (the verb); verbs parse the rest. */
        while ((c = getopt_long(argc, argv, "+c:vqh", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        break;
                case 'v':
                        arg_log_level = LOG_DEBUG;
                        break;
                case 'q':
                        arg_log_level = LOG_ERR;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("nucleus %s\n", NUCLEUS_VERSION);
                        return 0;
                case '?':
                        return -EINVAL;
                default:
                        cli_assert_not_reached();
                }
        return 1;
}

int main(int argc, char **argv) {
        int r;

        log_set_prefix("nucleus");
        r = parse_global(argc, argv);
        if (r < 0)
                return CLI_EXIT_USAGE;
        if (r == 0)
                return CLI_EXIT_OK;
        log_set_max_level(arg_log_level);

        if (!arg_config) {
                const char *e = secure_getenv("NUCLEUS_CONFIG");
                if (!isempty(e))
                        arg_config = e;
        }
        if (arg_config)
                client_paths_set_config_file(arg_config);

        if (optind >= argc) {
                /* A usage error: the help goes where errors go, stdout stays empty. */
                help_to(stderr);
                return CLI_EXIT_USAGE;
        }

        const char *name = argv[optind];
        if (streq(name, "help")) {
                help();
                return CLI_EXIT_OK;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, name)) {
                        /* Verbs restart getopt from scratch on their own argv. */
                        int vargc = argc - optind;
                        char **vargv = argv + optind;
                        optind = 0;
                        /* getopt names the verb in its messages ("nucleus ps: unrecognized
                         * option ..."), like every other usage error. */
                        _cleanup_free_ char *argv0 = xasprintf("nucleus %s", name);
                        vargv[0] = argv0;
                        log_set_prefix(argv0);
                        cli_set_verb(verbs[i].name);
                        return verbs[i].fn(vargc, vargv);
                }

        fprintf(stderr, "nucleus: unknown command '%s'. Run 'nucleus --help' for the list.\n", name);
        return CLI_EXIT_USAGE;
}
