/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus stop: stop nucleus-node (pid-file daemon, systemd, or inside the Lima VM) and, with
 * --stop-vm, the Lima VM. Stopping a node that is not running succeeds and says so.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "macro.h"
#include "cli-lima.h"
#include "cli-node.h"
#include "cli-pod.h"
#include "cli.h"
#include "client-settings.h"
#include "client.h"
#include "string-util.h"
#include "json-util.h"
#include "log.h"
#include "string-util.h"

static void usage(void) {
        printf("Usage: nucleus stop [OPTIONS]\n\n"
               "Stop nucleus-node. Running pods are stopped by the node as it shuts down.\n\n"
               "Options:\n"
               "      --stop-vm           macOS: also stop the Lima VM\n"
               "      --force             SIGKILL the node if it does not exit on SIGTERM (10 s);\n"
               "                          force-stop the Lima VM\n"
               "      --output FORMAT     text (default) or json\n"
               "  -h, --help              Show this help\n");
}

static char *stop_error = NULL;

/* Log the failure (stderr) and keep it for the JSON answer. */
static int stop_fail(const char *fmt, ...) _printf_(1, 2);
static int stop_fail(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        free(stop_error);
        stop_error = xvasprintf(fmt, ap);
        va_end(ap);
        log_error("%s", stop_error);
        return CLI_EXIT_FAILURE;
}

static int do_stop(bool stop_vm, bool force, NodeMode *ret_mode, bool *ret_was_running);
static json_t *live_pods(void);

int verb_stop(int argc, char **argv) {
        enum {
                ARG_STOP_VM = 0x100,
                ARG_FORCE
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                { "stop-vm", no_argument, NULL, ARG_STOP_VM },
                { "force", no_argument, NULL, ARG_FORCE },
                CLI_OPTION_OUTPUT,
                {},
        };
        OutputMode output = OUTPUT_TEXT;
        bool stop_vm = false, force = false, was_running = false;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case ARG_STOP_VM:
                        stop_vm = true;
                        break;
                case ARG_FORCE:
                        force = true;
                        break;
                default:
                        r = cli_option_common(c, usage, &output);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        if (optind < argc)
                return cli_usage_error(
                        "stop",
                        "unexpected argument '%s': stop ends the node and takes no operand; to end a pod: "
                        "nucleus delete POD",
                        argv[optind]);

        /* Said before, not after: a user who did not mean to end them learns what went. */
        _cleanup_json_ json_t *ended = live_pods();
        if (json_array_size(ended) > 0) {
                _cleanup_free_ char *list = NULL;
                size_t i;
                json_t *p;
                json_array_foreach(ended, i, p) {
                        const char *name = json_string_value(json_object_get(p, "name"));
                        _cleanup_free_ char *item = xasprintf(
                                "%s%s%s%s",
                                json_string_value(json_object_get(p, "id")),
                                name ? " (" : "",
                                name ?: "",
                                name ? ")" : "");
                        _cleanup_free_ char *vis = string_make_visible(item);
                        char *l = list ? xasprintf("%s, %s", list, vis) : xstrdup(vis);
                        free(list);
                        list = l;
                }
                log_warning(
                        "ending %zu live pod(s) with the node (their runs fail): %s",
                        json_array_size(ended),
                        list);
        }

        NodeMode mode = NODE_MODE_DAEMON;
        r = do_stop(stop_vm, force, &mode, &was_running);
        if (r != 0) {
                cli_print_json_failure(output, "internal", stop_error ?: "failed");
                stop_error = mfree(stop_error);
                return CLI_EXIT_FAILURE;
        }
        if (output == OUTPUT_JSON) {
                _cleanup_json_ json_t *j = json_pack(
                        "{s:b,s:s,s:b,s:O}",
                        "ok",
                        true,
                        "mode",
                        node_mode_to_string(mode),
                        "was_running",
                        was_running,
                        "ended_pods",
                        ended);
                (void) cli_print_json(j);
        } else
                printf(was_running ? "nucleus-node stopped.\n"
                                   : "nucleus-node was not running; nothing to stop.\n");
        return CLI_EXIT_OK;
}

/* The node's live pods, which stopping it ends (their runs fail, their agents lose their
 * sandbox): asked with a short timeout, best effort (a node that does not answer is stopped
 * all the same). Returns a JSON array of {id, name}. */
static json_t *live_pods(void) {
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_free_ char *err = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *res = NULL;
        json_t *out = json_array(), *p;
        size_t i;
        if (client_open_default(&c, &err) < 0)
                return out;
        client_set_timeouts(c, USEC_PER_SEC, 3 * USEC_PER_SEC);
        if (client_call_json(c, "GET", "/v1/pods", NULL, &res, &e) < 0)
                return out;
        json_array_foreach(json_object_get(res, "pods"), i, p) {
                const char *id = json_string_value(json_object_get(p, "id"));
                const char *st = json_string_value(json_object_get(p, "state"));
                if (!id || cli_pod_state_ended(st))
                        continue;
                const char *name = json_string_value(json_object_get(p, "name"));
                json_array_append_new(out, json_pack("{s:s, s:s?}", "id", id, "name", name));
        }
        return out;
}

static int do_stop(bool stop_vm, bool force, NodeMode *ret_mode, bool *ret_was_running) {
        _cleanup_(client_settings_done) ClientSettings s = {};
        _cleanup_free_ char *err = NULL;
        int r;

        r = client_settings_load(&s, &err);
        if (r < 0)
                return stop_fail("%s; fix: nucleus setup", err ?: strerror(-r));
        NodeMode mode = *ret_mode = cli_node_mode();
        switch (mode) {
        case NODE_MODE_DAEMON:
                r = cli_daemon_stop(force, 10 * USEC_PER_SEC);
                if (r < 0) {
                        /* cli_daemon_stop() already logged the reason and the fix. */
                        stop_error = xasprintf("could not stop nucleus-node: %s", strerror(-r));
                        return -1;
                }
                *ret_was_running = r > 0;
                break;
        case NODE_MODE_SYSTEMD: {
                char *argv_s[] = { (char *) "systemctl",
                                   (char *) (force ? "kill" : "stop"),
                                   (char *) "nucleus-node.service",
                                   NULL };
                char *argv_k[] = { (char *) "systemctl",
                                   (char *) "kill",
                                   (char *) "--signal=SIGKILL",
                                   (char *) "nucleus-node.service",
                                   NULL };
                if (cli_run_capture(force ? argv_k : argv_s, NULL, 0) != 0) {
                        return stop_fail(
                                "systemctl %s nucleus-node.service failed; fix: journalctl -u nucleus-node",
                                force ? "kill" : "stop");
                }
                *ret_was_running = true;
                break;
        }
        case NODE_MODE_LIMA: {
                _cleanup_free_ char *status = NULL;
                r = lima_vm_status(s.vm_name, &status);
                if (r < 0) {
                        return stop_fail("limactl is not usable (%s); fix: brew install lima", strerror(-r));
                }
                if (r == 0 || !streq(status, "Running")) {
                        log_info("Lima VM '%s' is %s: nothing to stop.", s.vm_name, r == 0 ? "absent" : status);
                        break;
                }
                char *sv[] = { (char *) "limactl",
                               (char *) "shell",
                               s.vm_name,
                               (char *) "--",
                               (char *) "sudo",
                               (char *) "systemctl",
                               (char *) "stop",
                               (char *) "nucleus-node.service",
                               NULL };
                if (lima_run(sv) != 0 && !force) {
                        return stop_fail(
                                "Stopping nucleus-node in VM '%s' failed; fix: nucleus stop --force",
                                s.vm_name);
                }
                *ret_was_running = true;
                if (stop_vm) {
                        char *st[] = { (char *) "limactl",
                                       (char *) "stop",
                                       (char *) (force ? "--force" : s.vm_name),
                                       force ? s.vm_name : NULL,
                                       NULL };
                        if (lima_run(st) != 0) {
                                return stop_fail(
                                        "limactl stop %s failed; fix: nucleus stop --stop-vm --force",
                                        s.vm_name);
                        }
                }
                break;
        }
        default:
                cli_assert_not_reached();
                return -1;
        }
        return 0;
}
