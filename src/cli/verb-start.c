/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus start: start nucleus-node the way this machine runs it (pid-file daemon, systemd,
 * or inside the Lima VM) and wait until a SIGNED request succeeds, so "ready" also proves the
 * CLI and the node share the secret. Every failure names its fix.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-lima.h"
#include "cli-node.h"
#include "cli.h"
#include "client-paths.h"
#include "client-settings.h"
#include "config.h"
#include "json-util.h"
#include "log.h"
#include "parse-util.h"
#include "string-util.h"

static void usage(void) {
        printf("Usage: nucleus start [OPTIONS]\n\n"
               "Start nucleus-node and wait until it answers a signed request.\n\n"
               "Options:\n"
               "      --no-wait           Do not wait for the node to become ready\n"
               "      --timeout S         Seconds to wait (default 60)\n"
               "      --output FORMAT     text (default) or json\n"
               "  -h, --help              Show this help\n");
}

/* The port of a node URL ("http://127.0.0.1:8080/..." -> "8080"), for messages. Caller frees. */
static char *url_port(const char *url) {
        const char *host = strstr(url, "://");
        host = host ? host + 3 : url;
        size_t n = strcspn(host, "/");
        const char *colon = memrchr(host, ':', n);
        if (!colon || host[n - 1] == ']')
                return xstrdup(startswith(url, "https://") ? "443" : "80");
        return xstrndup(colon + 1, (size_t) (host + n - colon - 1));
}

/*
 * Before starting a daemon: is the node's address taken? Returns -1 when nothing listens (go
 * on and start), 0 when a node that holds our key already answers there (started some other
 * way), or an exit code after reporting the squatter: a program that answers (or accepts and
 * hangs) but fails our signed check would receive the workspaces of every run.
 */
static int port_squatted(NucleusClient *client, const ClientSettings *s, OutputMode output) {
        _cleanup_client_error_ ClientError e = {};
        int r = cli_node_check(client, &e);
        if (r >= 0)
                return 0;
        if (e.status == 0 && (r == -ECONNREFUSED || r == -EHOSTUNREACH || r == -ENETUNREACH))
                return -1;
        _cleanup_free_ char *port = url_port(s->url), *d = client_error_describe(&e);
        return cli_fail(
                output,
                "address_in_use",
                "something else is listening on %s and does not hold the node key (%s); nucleus-node "
                "was not started. fix: stop that program, or move the node: nucleus setup --listen "
                "127.0.0.1:PORT --metrics-listen 127.0.0.1:PORT",
                port,
                d);
}

/* config.toml [vm] auto_start (default true): may start bring a stopped Lima VM up? */
static bool vm_auto_start(const char *config_file) {
        _cleanup_free_ char *err = NULL;
        CliConfig *cfg = NULL;
        if (cli_config_load(config_file, false, &cfg, &err) < 0)
                return true; /* settings already loaded this file; a race is not worth a refusal */
        bool r = cfg->vm.auto_start;
        cli_config_free(cfg);
        return r;
}

/* A start that fails leaves nothing behind: the daemon we started is stopped. */
static void stop_started(NodeMode mode, bool already, pid_t pid) {
        if (mode != NODE_MODE_DAEMON || already || pid <= 0)
                return;
        log_info("Stopping the nucleus-node this start began (pid %d).", (int) pid);
        (void) cli_daemon_stop(/* force= */ true, 10 * USEC_PER_SEC);
}

/* The warm pool's fill, summed over its images (GET /v1/pool; docs/node.md "Warm pool").
 * false when the node has no pool route or no pool configured. */
static bool pool_fill(NucleusClient *c, long long *ret_size, long long *ret_ready, long long *ret_booting) {
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *res = NULL;
        long long size = 0, ready = 0, booting = 0;
        if (client_call_json(c, "GET", "/v1/pool", NULL, &res, &e) < 0)
                return false;
        size_t i;
        json_t *img;
        json_array_foreach(json_object_get(res, "images"), i, img) {
                json_int_t n = json_integer_value(json_object_get(img, "size"));
                if (n <= 0)
                        continue;
                size += n;
                ready += json_integer_value(json_object_get(img, "ready"));
                booting += json_integer_value(json_object_get(img, "booting"));
        }
        *ret_size = size;
        *ret_ready = ready;
        *ret_booting = booting;
        return size > 0;
}

/* How long a pool that is not full and boots nothing is waited for: the pool thread starts
 * its first boot as the node starts, so this only ends the wait for a pool that cannot fill
 * (memory budget, boots failing and backing off; nucleus doctor says which). */
#define POOL_IDLE_GRACE_USEC (10 * USEC_PER_SEC)

/* Once the node answers, wait (within the same --timeout) until its warm pool is full, so the
 * first create after `nucleus start` (make demo's run, a script's) claims a pooled pod instead
 * of booting a second VM cold beside the one still filling the pool. Best effort: a pool that
 * does not fill in time only means that create boots cold, so the result is reported, never
 * an error. Returns false when the node has no pool. */
static bool wait_for_pool(
        NucleusClient *c, usec_t deadline, OutputMode output, long long *ret_size, long long *ret_ready) {
        usec_t idle_since = now_usec(CLOCK_MONOTONIC);
        bool said = false;
        long long size, ready, booting;
        for (;;) {
                if (!pool_fill(c, &size, &ready, &booting))
                        return false;
                usec_t now = now_usec(CLOCK_MONOTONIC);
                if (booting > 0)
                        idle_since = now;
                if (ready >= size || now >= deadline || now - idle_since >= POOL_IDLE_GRACE_USEC)
                        break;
                if (!said && output != OUTPUT_JSON)
                        fprintf(stderr,
                                "nucleus start: the node is up; waiting for its warm pool (%lld of %lld "
                                "pooled "
                                "pod(s) ready) ...\n",
                                ready,
                                size);
                said = true;
                (void) usleep(250 * 1000);
        }
        *ret_size = size;
        *ret_ready = ready;
        return true;
}

int verb_start(int argc, char **argv) {
        enum {
                ARG_NO_WAIT = 0x100,
                ARG_TIMEOUT
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                { "no-wait", no_argument, NULL, ARG_NO_WAIT },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                CLI_OPTION_OUTPUT,
                {},
        };
        _cleanup_(client_settings_done) ClientSettings s = {};
        _cleanup_client_free_ NucleusClient *client = NULL;
        _cleanup_free_ char *err = NULL, *node_config = NULL;
        OutputMode output = OUTPUT_TEXT;
        bool wait = true;
        uint32_t timeout = 60;
        pid_t pid = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case ARG_NO_WAIT:
                        wait = false;
                        break;
                case ARG_TIMEOUT:
                        if (safe_atou32(optarg, &timeout) < 0 || timeout == 0 || timeout > 3600)
                                return cli_usage_error(
                                        "start", "--timeout needs 1..3600 seconds, not '%s'", optarg);
                        break;
                default:
                        r = cli_option_common(c, usage, &output);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        if (optind < argc)
                return cli_usage_error("start", "unexpected argument '%s'", argv[optind]);

        r = client_settings_load(&s, &err);
        if (r < 0)
                return cli_fail(output, "not_configured", "%s; fix: nucleus setup", err ?: strerror(-r));
        NodeMode mode = cli_node_mode();
        if (access(s.config_file, F_OK) < 0)
                return cli_fail(
                        output, "not_configured", "No CLI config at %s; fix: nucleus setup", s.config_file);

        /* Our half of the secret first: without it no signed check can pass. */
        r = client_open(&s, &client, &err);
        if (r < 0)
                return cli_fail(
                        output, "not_configured", "%s", err ?: "cannot open the node client; fix: nucleus setup");
        client_set_timeouts(client, 2 * USEC_PER_SEC, 5 * USEC_PER_SEC);

        bool already = false;
        switch (mode) {
        case NODE_MODE_DAEMON:
                if (client_node_config_file(&node_config) < 0 || access(node_config, R_OK) < 0)
                        return cli_fail(
                                output,
                                "not_configured",
                                "Node config %s is missing; fix: nucleus setup",
                                node_config ?: "node.toml");
                if (cli_daemon_pid(&pid) <= 0) {
                        /* Not ours running: is the address free? Something that answers there
                         * and fails our signed check is a squatter, never "the wrong key". */
                        pid = 0;
                        r = port_squatted(client, &s, output);
                        if (r > 0)
                                return r;
                        if (r == 0) {
                                already = true;
                                break;
                        }
                }
                pid = 0;
                r = cli_daemon_start(node_config, &pid);
                if (r == -EALREADY)
                        already = true;
                else if (r < 0)
                        return cli_fail(output, "internal", "Could not start nucleus-node: %s", strerror(-r));
                else
                        log_info(
                                "Started nucleus-node (pid %d); waiting for it to answer at %s ...",
                                (int) pid,
                                s.url);
                break;
        case NODE_MODE_SYSTEMD: {
                char *argv_s[] = {
                        (char *) "systemctl", (char *) "start", (char *) "nucleus-node.service", NULL
                };
                r = cli_run_capture(argv_s, NULL, 0);
                if (r != 0)
                        return cli_fail(
                                output,
                                "internal",
                                "systemctl start nucleus-node.service failed; fix: journalctl -u "
                                "nucleus-node -n 50, then nucleus setup");
                break;
        }
        case NODE_MODE_LIMA: {
                _cleanup_free_ char *status = NULL;
                r = lima_vm_status(s.vm_name, &status);
                if (r < 0)
                        return cli_fail(
                                output,
                                "not_configured",
                                "limactl is not usable (%s); fix: brew install lima",
                                strerror(-r));
                if (r == 0)
                        return cli_fail(
                                output,
                                "not_configured",
                                "Lima VM '%s' does not exist; fix: nucleus setup",
                                s.vm_name);
                if (!streq(status, "Running") && !vm_auto_start(s.config_file))
                        return cli_fail(
                                output,
                                "not_configured",
                                "Lima VM '%s' is %s and config.toml [vm] auto_start is false; fix: limactl "
                                "start %s, or set auto_start = true",
                                s.vm_name,
                                status,
                                s.vm_name);
                if (!streq(status, "Running")) {
                        char *st[] = {
                                (char *) "limactl", (char *) "start", (char *) "--tty=false", s.vm_name, NULL
                        };
                        if (lima_run(st) != 0)
                                return cli_fail(
                                        output,
                                        "internal",
                                        "limactl start %s failed; fix: limactl list, then nucleus setup",
                                        s.vm_name);
                }
                char *sv[] = { (char *) "limactl",
                               (char *) "shell",
                               s.vm_name,
                               (char *) "--",
                               (char *) "sudo",
                               (char *) "systemctl",
                               (char *) "start",
                               (char *) "nucleus-node.service",
                               NULL };
                if (lima_run(sv) != 0)
                        return cli_fail(
                                output,
                                "internal",
                                "Starting nucleus-node in VM '%s' failed; fix: limactl shell %s -- sudo "
                                "journalctl -u nucleus-node",
                                s.vm_name,
                                s.vm_name);
                break;
        }
        default:
                cli_assert_not_reached();
        }

        if (!wait) {
                if (output == OUTPUT_JSON) {
                        _cleanup_json_ json_t *j = json_pack(
                                "{s:b,s:s,s:s,s:b}",
                                "ok",
                                true,
                                "mode",
                                node_mode_to_string(mode),
                                "url",
                                s.url,
                                "ready",
                                false);
                        (void) cli_print_json(j);
                } else
                        printf("nucleus-node %s (%s); not waiting for it (--no-wait).\n",
                               already ? "was already running" : "started",
                               node_mode_to_string(mode));
                return CLI_EXIT_OK;
        }

        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout * USEC_PER_SEC;
        _cleanup_client_error_ ClientError e = {};
        bool restarted = false;
        for (;;) {
                client_error_done(&e);
                r = cli_node_check(client, &e);
                if (r >= 0)
                        break;
                if (mode == NODE_MODE_DAEMON && already && pid > 0 && !restarted && !cli_pid_alive(pid)) {
                        /* The node of the pid file was on its way out (a SIGTERM, a `nucleus stop`
                         * that timed out while it ended its pods): it is gone now, so start ours.
                         * Its exit is not a failed start. */
                        log_info(
                                "nucleus-node (pid %d) was shutting down and has exited; starting it again",
                                (int) pid);
                        restarted = true;
                        already = false;
                        pid = 0;
                        r = cli_daemon_start(node_config, &pid);
                        if (r == -EALREADY)
                                already = true;
                        else if (r < 0)
                                return cli_fail(
                                        output, "internal", "Could not start nucleus-node: %s", strerror(-r));
                        continue;
                }
                if (e.status == 401 ||
                    (pid > 0 && !already && streq_ptr(e.kind, "node_unauthenticated") && cli_pid_alive(pid))) {
                        /* The node we just started answers but cannot be verified with our key
                         * (its answers carry a MAC by its key): the two keys differ. */
                        _cleanup_free_ char *d = client_error_describe(&e);
                        stop_started(mode, already, pid);
                        return cli_fail(
                                output,
                                "unauthorized",
                                "nucleus-node at %s rejected our signed request: %s",
                                s.url,
                                d);
                }
                if (mode == NODE_MODE_DAEMON && pid > 0 && !cli_pid_alive(pid)) {
                        _cleanup_free_ char *tail = cli_node_log_tail(15), *log = NULL;
                        (void) client_node_log_file(&log);
                        /* The usual cause has a fix of its own: the port is taken. */
                        bool port_taken = tail &&
                                (strstr(tail, "Address already in use") || strstr(tail, "Cannot listen on"));
                        return cli_fail(
                                output,
                                "internal",
                                "nucleus-node exited during startup. Last lines of %s:\n%sfix: %s",
                                log ?: "the node log",
                                tail ?: "(empty)\n",
                                port_taken ? "another program has the node's address: stop it, or move the "
                                             "node with nucleus setup --force --listen 127.0.0.1:PORT "
                                             "--metrics-listen 127.0.0.1:PORT"
                                           : "correct the problem above (often: nucleus setup --force)");
                }
                if (now_usec(CLOCK_MONOTONIC) >= deadline) {
                        _cleanup_free_ char *d = client_error_describe(&e), *log = NULL;
                        (void) client_node_log_file(&log);
                        stop_started(mode, already, pid);
                        return cli_fail(
                                output,
                                "internal",
                                "nucleus-node did not become ready within %u s (%s); fix: check %s, or "
                                "raise --timeout",
                                timeout,
                                d,
                                mode == NODE_MODE_DAEMON ? (log ?: "the node log") : "the node's journal");
                }
                (void) usleep(250 * 1000);
        }
        if (mode == NODE_MODE_DAEMON && pid == 0)
                (void) cli_daemon_pid(&pid);
        long long pool_size = 0, pool_ready = 0;
        bool pool = wait_for_pool(client, deadline, output, &pool_size, &pool_ready);
        if (output == OUTPUT_JSON) {
                _cleanup_json_ json_t *j = json_pack(
                        "{s:b,s:s,s:s,s:b,s:I}",
                        "ok",
                        true,
                        "mode",
                        node_mode_to_string(mode),
                        "url",
                        s.url,
                        "ready",
                        true,
                        "pid",
                        (json_int_t) pid);
                if (pool)
                        json_object_set_new(
                                j,
                                "pool",
                                json_pack(
                                        "{s:I,s:I}",
                                        "size",
                                        (json_int_t) pool_size,
                                        "ready",
                                        (json_int_t) pool_ready));
                (void) cli_print_json(j);
                return CLI_EXIT_OK;
        }
        if (pid > 0)
                printf("nucleus-node is %s and ready at %s (%s, pid %d).\n",
                       already ? "already running" : "running",
                       s.url,
                       node_mode_to_string(mode),
                       (int) pid);
        else
                printf("nucleus-node is ready at %s (%s).\n", s.url, node_mode_to_string(mode));
        if (pool)
                printf("warm pool: %lld of %lld pooled pod(s) ready%s\n",
                       pool_ready,
                       pool_size,
                       pool_ready < pool_size ? " (creates boot cold until it fills; nucleus doctor says "
                                                "why)"
                                              : "");
        return CLI_EXIT_OK;
}
