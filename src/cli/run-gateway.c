/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Starting and stopping nucleus-gateway for a run (see run-gateway.h). The provider key goes
 * to the gateway through a pipe on its stdin: never argv, never an environment variable of
 * any child. The per-run token is 32 random bytes in hex.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-files.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "run-gateway.h"
#include "string-util.h"
#include "time-util.h"

#define RUN_GATEWAY_READY_TIMEOUT_MS 30000
#define RUN_GATEWAY_IDLE_SLACK_SEC 5 /* the gateway outwaits the client's idle timeout by this */

static char *random_token(void) {
        uint8_t b[32];
        char *s = xnew(char, 4 + 2 * sizeof(b) + 1);
        if (getrandom(b, sizeof(b), 0) != (ssize_t) sizeof(b))
                return mfree(s);
        strcpy(s, "nrt-");
        for (size_t i = 0; i < sizeof(b); i++)
                (void) snprintf(s + 4 + 2 * i, 3, "%02x", b[i]);
        explicit_bzero_safe(b, sizeof(b));
        return s;
}

static int read_ready_line(int fd, char **ret) {
        char buf[256];
        size_t n = 0;
        uint64_t until = now_usec(CLOCK_MONOTONIC) + RUN_GATEWAY_READY_TIMEOUT_MS * USEC_PER_MSEC;

        for (;;) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= until)
                        return -ETIMEDOUT;
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int r = poll(&p, 1, usec_to_timeout_ms(until - now));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        continue;
                ssize_t k = read(fd, buf + n, sizeof(buf) - 1 - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return -EPIPE;
                n += (size_t) k;
                buf[n] = 0;
                char *nl = strchr(buf, '\n');
                if (nl) {
                        *nl = 0;
                        *ret = xstrdup(buf);
                        return 0;
                }
                if (n >= sizeof(buf) - 1)
                        return -EBADMSG;
        }
}

/* The run credential (scope run) the gateway reserves and settles the pod's budget with
 * (docs/api.md "Budget reserve and settle"): minted here with the node key; it reaches the
 * gateway only on its stdin. Returns the node's answer {"key_id","secret",...} or NULL
 * (logged). */
static json_t *mint_run_credential(const RunGatewayOptions *o) {
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_free_ char *err = NULL, *route = xasprintf("/v1/pods/%s/credentials", o->pod);
        _cleanup_json_ json_t *body = json_pack("{s:s}", "scope", "run");
        json_t *ans = NULL;
        int r = client_open(o->node, &c, &err);
        if (r < 0) {
                log_error_errno(r, "%s", err ?: "cannot open the node client");
                return NULL;
        }
        r = client_call_json(c, "POST", route, body, &ans, &e);
        if (r < 0) {
                _cleanup_free_ char *d = client_error_describe(&e);
                log_error_errno(r, "cannot mint the run's credential for pod %s: %s", o->pod, d);
                return NULL;
        }
        return ans;
}

int run_gateway_start(const RunGatewayOptions *o, RunGateway *ret) {
        _cleanup_(run_gateway_stop_and_free_records) RunGateway g = RUN_GATEWAY_NULL;
        _cleanup_free_ char *exe = NULL, *line = NULL, *perr = NULL;
        _cleanup_json_ json_t *ready = NULL;
        _cleanup_(erase_and_freep) char *cfgtext = NULL;
        int in[2] = { -EBADF, -EBADF }, out[2] = { -EBADF, -EBADF };
        int r;

        r = cli_find_helper("nucleus-gateway", "NUCLEUS_GATEWAY_PATH", "../gateway", &exe);
        if (r < 0)
                return log_error_errno(r, "nucleus-gateway not found (set NUCLEUS_GATEWAY_PATH)");
        const char *td = secure_getenv("TMPDIR");
        g.dir = xasprintf("%s/nucleus-gateway-XXXXXX", isempty(td) ? "/tmp" : td);
        if (!mkdtemp(g.dir)) {
                r = -errno;
                g.dir = mfree(g.dir);
                return log_error_errno(r, "cannot create a temporary directory: %m");
        }
        g.audit_path = xasprintf("%s/model-calls.jsonl", g.dir);
        g.token = random_token();
        if (!g.token)
                return log_error_errno(-EIO, "cannot generate the run's model token");

        const char *key = o->model->api_key_env ? secure_getenv(o->model->api_key_env) : NULL;
        _cleanup_json_ json_t *cfg = json_pack(
                "{s:s, s:s, s:s, s:{s:[I, I]}, s:I, s:I, s:I, s:I, s:s}",
                "provider",
                o->model->provider == LLM_PROVIDER_ANTHROPIC ? "anthropic" : "openai",
                "upstream",
                o->model->base_url,
                "token",
                g.token,
                "prices",
                o->model->model,
                (json_int_t) o->price_in,
                (json_int_t) o->price_out,
                "max_usd_micros",
                (json_int_t) NUCLEUS_MIN(o->max_usd_micros, (uint64_t) 1 << 50),
                "timeout_seconds",
                (json_int_t) o->timeout_sec,
                "connect_timeout_seconds",
                (json_int_t) NUCLEUS_MAX(o->model->connect_timeout_ms / 1000, (uint64_t) 1),
                /* The client's idle timeout must fire first, so the user reads "idle timeout" and not
                 * a gateway error the client would retry: the gateway waits a little longer. */
                "idle_timeout_seconds",
                (json_int_t) (NUCLEUS_MAX(o->model->idle_timeout_ms / 1000, (uint64_t) 1) + RUN_GATEWAY_IDLE_SLACK_SEC),
                "audit",
                g.audit_path);
        if (!cfg)
                return log_oom();
        if (o->model->max_tokens > 0)
                json_object_set_new(cfg, "max_output_tokens", json_integer(o->model->max_tokens));
        if (o->node && o->pod) {
                _cleanup_json_ json_t *cred = mint_run_credential(o);
                if (!cred)
                        return -EIO;
                json_object_set_new(
                        cfg,
                        "node",
                        json_pack(
                                "{s:s, s:s, s:{s:O, s:O}}",
                                "url",
                                o->node->url,
                                "pod",
                                o->pod,
                                "credential",
                                "key_id",
                                json_object_get(cred, "key_id"),
                                "secret",
                                json_object_get(cred, "secret")));
        }
        if (!isempty(key))
                json_object_set_new(cfg, "api_key", json_string(key));
        cfgtext = json_dumps(cfg, JSON_COMPACT);
        /* The key and the run credential are in cfgtext only from here on. */
        json_object_del(cfg, "api_key");
        json_t *cs = json_object_get(json_object_get(json_object_get(cfg, "node"), "credential"), "secret");
        if (cs)
                (void) json_string_set(cs, "");
        if (!cfgtext)
                return log_oom();

        if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
                r = -errno;
                safe_close(in[0]);
                safe_close(in[1]);
                return log_error_errno(r, "pipe: %m");
        }
        _cleanup_close_ int in_w = in[1], out_r = out[0];
        char *argv[] = { exe, NULL };
        char *envp[] = { (char *) "PATH=/usr/local/bin:/usr/bin:/bin", (char *) "LC_ALL=C", NULL };
        r = spawn_argv(argv, envp, in[0], out[1], STDERR_FILENO, &g.pid);
        safe_close(in[0]);
        safe_close(out[1]);
        if (r < 0)
                return log_error_errno(r, "cannot start %s: %m", exe);
        r = loop_write(in_w, cfgtext, strlen(cfgtext));
        in_w = safe_close(in_w);
        if (r < 0)
                return log_error_errno(r, "cannot configure the model gateway: %m");
        r = read_ready_line(out_r, &line);
        if (r < 0)
                return log_error_errno(r, "the model gateway did not start: %m");
        if (json_parse_strict(line, strlen(line), 4096, &ready, &perr) < 0 ||
            !json_is_string(json_object_get(ready, "listen")))
                return log_error_errno(-EBADMSG, "the model gateway's ready line is malformed");
        g.url = xasprintf("http://%s", json_string_value(json_object_get(ready, "listen")));
        *ret = g;
        g = RUN_GATEWAY_NULL;
        return 0;
}

char *run_gateway_base_url(const RunGateway *g, LlmProvider provider) {
        return provider == LLM_PROVIDER_ANTHROPIC ? xstrdup(g->url) : xasprintf("%s/v1", g->url);
}

json_t *run_gateway_stop(RunGateway *g) {
        json_t *records = json_array();

        if (pidref_is_set(&g->pid)) {
                (void) pidref_kill(&g->pid, SIGTERM);
                (void) pidref_wait(&g->pid, NULL);
                pidref_done(&g->pid);
        }
        if (g->audit_path) {
                _cleanup_free_ char *data = NULL;
                size_t n = 0;
                if (read_full_file_at(AT_FDCWD, g->audit_path, 64U * 1024U * 1024U, &data, &n) >= 0) {
                        char *save = NULL;
                        for (char *l = strtok_r(data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                                json_t *j = NULL;
                                if (json_parse_strict(l, strlen(l), 1024 * 1024, &j, NULL) >= 0)
                                        json_array_append_new(records, j);
                        }
                }
                (void) unlink(g->audit_path);
        }
        if (g->dir)
                (void) rmdir(g->dir);
        g->url = mfree(g->url);
        g->token = erase_and_free(g->token);
        g->dir = mfree(g->dir);
        g->audit_path = mfree(g->audit_path);
        return records;
}

void run_gateway_stop_and_free_records(RunGateway *g) {
        json_decref(run_gateway_stop(g));
}

void run_gateway_totals(json_t *records, RunGatewayTotals *ret) {
        json_t *r;
        size_t i;
        *ret = (RunGatewayTotals){};
        json_array_foreach(records, i, r) {
                const char *outcome = json_string_value(json_object_get(r, "outcome"));
                if (streq_ptr(outcome, "refused")) {
                        ret->refused++;
                        continue;
                }
                ret->calls++;
                ret->input_tokens += (uint64_t) json_integer_value(json_object_get(r, "input_tokens"));
                ret->output_tokens += (uint64_t) json_integer_value(json_object_get(r, "output_tokens"));
                ret->cost_micros += (uint64_t) json_integer_value(json_object_get(r, "cost_micros"));
        }
}
