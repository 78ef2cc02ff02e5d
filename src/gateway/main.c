/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus-gateway: the model gateway of one run (docs/gateway.md). Agents (the built-in loop,
 * Claude Code, Codex) send their model requests here with a per-run token; the gateway checks
 * each request against the allow lists (gateway-wire.c), reserves an upper bound of its cost
 * on the run's budget, forwards it to the provider with the real credential, streams the
 * answer back unchanged, and settles the reservation from the usage in the answer (a cut
 * answer settles at the reservation). One audit line per call; never the prompt or a key.
 *
 * Its configuration, the provider key included, arrives as one JSON document on stdin, never
 * in argv or the environment. It prints {"listen":"127.0.0.1:PORT"} on stdout when ready and
 * runs until SIGTERM or its parent dies.
 *
 * Concurrency: libmicrohttpd with a thread per connection; each forwarded call has a libcurl
 * worker thread feeding a bounded buffer that the connection thread drains into the reply.
 * The budget meter (src/lib/policy/budget.c) is thread-safe; the rest of the shared state is
 * under `lock`.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc-util.h"
#include "budget.h"
#include "client-settings.h"
#include "client.h"
#include "fd-util.h"
#include "gateway-wire.h"
#include "json-util.h"
#include "log.h"
#include "sse.h"
#include "string-util.h"
#include "time-util.h"

#include "gateway-internal.h"

Gateway gw = { .audit_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER };

/* ---- configuration ---- */

static int u64_field(json_t *cfg, const char *key, uint64_t def, uint64_t max, uint64_t *ret) {
        json_t *v = json_object_get(cfg, key);
        if (!v) {
                *ret = def;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t) json_integer_value(v) > max)
                return log_error_errno(-EINVAL, "config: \"%s\" must be an integer in 0..%" PRIu64, key, max);
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static int load_config(json_t *cfg, char **ret_listen) {
        static const char *const keys[] = { "provider",
                                            "upstream",
                                            "api_key",
                                            "token",
                                            "listen",
                                            "prices",
                                            "max_usd_micros",
                                            "max_output_tokens",
                                            "timeout_seconds",
                                            "connect_timeout_seconds",
                                            "idle_timeout_seconds",
                                            "audit",
                                            "node",
                                            NULL };
        const char *k, *provider, *upstream, *token;
        json_t *v;
        uint64_t max_usd, timeout, conn_s, idle_s;
        int r;

        if (!json_is_object(cfg))
                return log_error_errno(-EINVAL, "config: not a JSON object");
        json_object_foreach(cfg, k, v) {
                bool ok = false;
                for (size_t i = 0; keys[i]; i++)
                        ok = ok || streq(k, keys[i]);
                if (!ok)
                        return log_error_errno(-EINVAL, "config: unknown key \"%s\"", k);
        }
        provider = json_string_value(json_object_get(cfg, "provider"));
        upstream = json_string_value(json_object_get(cfg, "upstream"));
        token = json_string_value(json_object_get(cfg, "token"));
        if (!streq_ptr(provider, "anthropic") && !streq_ptr(provider, "openai"))
                return log_error_errno(-EINVAL, "config: \"provider\" must be \"anthropic\" or \"openai\"");
        if (!upstream || !(startswith(upstream, "http://") || startswith(upstream, "https://")) ||
            string_has_cc(upstream, NULL))
                return log_error_errno(-EINVAL, "config: \"upstream\" must be an http(s) URL");
        if (!token || strlen(token) < 32 || string_has_cc(token, NULL) || strchr(token, ' '))
                return log_error_errno(-EINVAL, "config: \"token\" must be at least 32 printable characters");
        v = json_object_get(cfg, "api_key");
        if (v && (!json_is_string(v) || string_has_cc(json_string_value(v), NULL)))
                return log_error_errno(
                        -EINVAL, "config: \"api_key\" must be a string without control characters");
        gw.anthropic = streq(provider, "anthropic");
        gw.upstream = xstrdup(upstream);
        size_t l = strlen(gw.upstream);
        while (l > 0 && gw.upstream[l - 1] == '/')
                gw.upstream[--l] = 0;
        if (endswith(gw.upstream, "/v1"))
                gw.upstream[l - 3] = 0;
        gw.token = xstrdup(token);
        gw.api_key = v ? xstrdup(json_string_value(v)) : NULL;

        json_t *prices = json_object_get(cfg, "prices");
        if (!json_is_object(prices) || json_object_size(prices) == 0)
                return log_error_errno(
                        -EINVAL, "config: \"prices\" must map model names to [in, out] micro-USD per Mtok");
        json_object_foreach(prices, k, v) {
                if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 0)) ||
                    !json_is_integer(json_array_get(v, 1)) || json_integer_value(json_array_get(v, 0)) < 0 ||
                    json_integer_value(json_array_get(v, 1)) < 0)
                        return log_error_errno(
                                -EINVAL, "config: prices[\"%s\"] must be [in, out], non-negative integers", k);
        }
        gw.prices = json_incref(prices);

        if ((r = u64_field(cfg, "max_usd_micros", 0, UINT64_C(1) << 50, &max_usd)) < 0 ||
            (r = u64_field(cfg, "max_output_tokens", GW_DEFAULT_MAX_OUTPUT, 1U << 24, &gw.max_output)) < 0 ||
            (r = u64_field(cfg, "timeout_seconds", 0, 86400 * 7, &timeout)) < 0 ||
            (r = u64_field(cfg, "connect_timeout_seconds", 30, 600, &conn_s)) < 0 ||
            (r = u64_field(cfg, "idle_timeout_seconds", 120, 3600, &idle_s)) < 0)
                return r;
        if (!json_object_get(cfg, "max_usd_micros"))
                return log_error_errno(
                        -EINVAL, "config: \"max_usd_micros\" (the run's model budget) is required");
        gw.connect_timeout_ms = NUCLEUS_MAX(conn_s, (uint64_t) 1) * 1000;
        gw.idle_timeout_ms = NUCLEUS_MAX(idle_s, (uint64_t) 1) * 1000;
        gw.deadline = timeout > 0 ? now_usec(CLOCK_MONOTONIC) + timeout * USEC_PER_SEC : 0;
        r = budget_meter_new(max_usd, UINT64_MAX, UINT64_MAX, &gw.meter);
        if (r < 0)
                return log_error_errno(r, "cannot create the budget meter: %m");

        const char *audit = json_string_value(json_object_get(cfg, "audit"));
        if (audit) {
                gw.audit_fd = open(
                        audit, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
                if (gw.audit_fd < 0)
                        return log_error_errno(-errno, "cannot open the audit file %s: %m", audit);
        }

        /* The pod's budget is the node's: every call is reserved and settled there, signed
         * with the run credential (scope run, docs/api.md "Budget reserve and settle"), which
         * arrives here only on stdin, in this configuration; never the node key. */
        json_t *node = json_object_get(cfg, "node");
        if (node) {
                const char *url = json_string_value(json_object_get(node, "url"));
                const char *pod = json_string_value(json_object_get(node, "pod"));
                json_t *cred = json_object_get(node, "credential");
                const char *kid = json_string_value(json_object_get(cred, "key_id"));
                const char *sec = json_string_value(json_object_get(cred, "secret"));
                _cleanup_free_ void *raw = NULL;
                size_t rawlen = 0;
                if (!url || !pod || !kid || !sec || strlen(sec) != 64 ||
                    unhexmem(sec, 64, &raw, &rawlen) < 0 || rawlen != CLIENT_KEY_SIZE)
                        return log_error_errno(
                                -EINVAL,
                                "config: \"node\" needs url, pod and credential {key_id, secret} (a run "
                                "credential of the pod)");
                r = client_new_scoped(url, raw, kid, "nucleus-gateway", &gw.node);
                explicit_bzero_safe(raw, rawlen);
                if (r < 0)
                        return log_error_errno(r, "config: \"node\": bad url or credential key id");
                client_set_timeouts(gw.node, 5 * USEC_PER_SEC, 30 * USEC_PER_SEC);
                gw.pod = xstrdup(pod);
                /* The configuration document is wiped by the caller; so is this copy. */
                (void) json_string_set(json_object_get(cred, "secret"), "");
        }

        const char *listen = json_string_value(json_object_get(cfg, "listen"));
        *ret_listen = xstrdup(listen ? listen : "127.0.0.1:0");
        return 0;
}

static int listen_socket(const char *spec, int *ret_fd, unsigned *ret_port) {
        _cleanup_free_ char *host = xstrdup(spec);
        char *colon = strrchr(host, ':');
        struct sockaddr_in sa = { .sin_family = AF_INET };
        socklen_t sl = sizeof(sa);
        unsigned port = 0;

        if (!colon)
                return -EINVAL;
        *colon = 0;
        if (sscanf(colon + 1, "%u", &port) != 1 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
                return -EINVAL;
        sa.sin_port = htons((uint16_t) port);
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
                return -errno;
        if (getsockname(fd, (struct sockaddr *) &sa, &sl) < 0)
                return -errno;
        *ret_port = ntohs(sa.sin_port);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int main(int argc, char **argv) {
        _cleanup_free_ char *data = NULL, *listen = NULL, *perr = NULL;
        _cleanup_json_ json_t *cfg = NULL;
        size_t n;
        sigset_t mask;
        int r, fd = -1;
        unsigned port = 0;

        log_set_prefix("nucleus-gateway");
        if (argc > 1) {
                printf("Usage: nucleus-gateway < CONFIG.json\n"
                       "The model gateway of one `nucleus run` (docs/gateway.md). Started by nucleus run;\n"
                       "reads its configuration, the provider key included, from stdin.\n");
                return streq(argv[1], "--help") ? 0 : 2;
        }
        (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
        (void) signal(SIGPIPE, SIG_IGN);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        (void) pthread_sigmask(SIG_BLOCK, &mask, NULL);

        r = read_full_fd(STDIN_FILENO, GW_MAX_CONFIG, &data, &n);
        if (r < 0)
                return log_error_errno(r, "reading the configuration from stdin: %m"), 1;
        if (json_parse_strict(data, n, GW_MAX_CONFIG, &cfg, &perr) < 0)
                return log_error("configuration: %s", perr ? perr : "invalid JSON"), 1;
        explicit_bzero_safe(data, n);
        if (load_config(cfg, &listen) < 0)
                return 1;
        /* The key now lives only in gw.api_key. */
        json_object_del(cfg, "api_key");

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return log_error("curl_global_init failed"), 1;
        r = listen_socket(listen, &fd, &port);
        if (r < 0)
                return log_error_errno(r, "cannot listen on %s (expected IPv4:PORT): %m", listen), 1;

        struct MHD_Daemon *d = MHD_start_daemon(
                MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                        MHD_USE_ERROR_LOG,
                0,
                NULL,
                NULL,
                gw_on_request,
                NULL,
                MHD_OPTION_LISTEN_SOCKET,
                fd,
                MHD_OPTION_CONNECTION_LIMIT,
                (unsigned) GW_MAX_CONNECTIONS,
                MHD_OPTION_CONNECTION_TIMEOUT,
                (unsigned) 0,
                MHD_OPTION_NOTIFY_COMPLETED,
                gw_on_completed,
                NULL,
                MHD_OPTION_END);
        if (!d)
                return log_error("cannot start the HTTP server"), 1;

        printf("{\"listen\":\"127.0.0.1:%u\"}\n", port);
        fflush(stdout);
        if (getppid() == 1)
                goto out;

        for (;;) {
                int sig = 0;
                if (sigwait(&mask, &sig) == 0)
                        break;
        }
out:
        /* No new connections; calls in flight are cut and settled (they may be billed). The
         * connection threads may be blocked on an agent that went away: the process ends
         * without joining them. */
        (void) MHD_quiesce_daemon(d);
        gw_abandon_active(10 * USEC_PER_SEC);
        explicit_bzero_safe(gw.api_key, gw.api_key ? strlen(gw.api_key) : 0);
        if (gw.audit_fd >= 0)
                (void) fsync(gw.audit_fd);
        _exit(0);
}
