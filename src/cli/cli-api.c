/* SPDX-License-Identifier: Apache-2.0 */
/* The node API as the CLI verbs call it (cli-api.h). */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-api.h"
#include "cli-pod.h"
#include "client-settings.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "string-util.h"

int cli_api_open(OutputMode mode, NucleusClient **ret) {
        _cleanup_free_ char *err = NULL;
        int r = client_open_default(ret, &err);
        if (r < 0)
                return cli_fail(mode, "not_configured", "%s", err ?: strerror(-r));
        return 0;
}

int cli_api_fail(OutputMode mode, const ClientError *e, const ClientResponse *resp) {
        _cleanup_free_ char *d = client_error_describe(e);
        log_error("%s", d);
        if (mode != OUTPUT_JSON)
                return CLI_EXIT_FAILURE;
        _cleanup_json_ json_t *doc = NULL;
        if (resp && resp->body && resp->size > 0)
                doc = json_loadb(resp->body, resp->size, JSON_REJECT_DUPLICATES, NULL);
        if (json_is_object(doc) && json_is_string(json_object_get(doc, "kind"))) {
                json_object_set_new(doc, "ok", json_false());
                (void) cli_print_json(doc);
        } else
                cli_print_json_failure(mode, e->kind ?: "internal", e->message ?: "");
        return CLI_EXIT_FAILURE;
}

int cli_api_call(
        NucleusClient *c,
        const char *method,
        const char *path,
        const char *content_type,
        const void *body,
        size_t n,
        ClientResponse *resp,
        ClientError *e) {
        int r = client_request(c, method, path, content_type, body, n, resp, e);
        if (r < 0)
                return r;
        if (resp->status < 200 || resp->status >= 300) {
                client_error_from_response(resp, e);
                return -EREMOTEIO;
        }
        return 0;
}

json_t *cli_api_answer(const ClientResponse *resp) {
        if (!resp->body || resp->size == 0)
                return NULL;
        json_t *j = json_loadb(resp->body, resp->size, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(j)) {
                json_decref(j);
                return NULL;
        }
        return j;
}

int cli_api_open_pod_operand(
        int argc, char **argv, OutputMode mode, NucleusClient **ret, const char **pod, char **ret_owned) {
        int r = cli_pod_operand(argc, argv, 1, pod);
        if (r != 0)
                return r;
        return cli_api_open_pod(mode, ret, pod, ret_owned);
}

int cli_api_answer_object(OutputMode mode, const ClientResponse *resp, json_t **ret) {
        *ret = cli_api_answer(resp);
        if (!*ret)
                return cli_fail(mode, "internal", "the node's answer is not a JSON object");
        return 0;
}

char *cli_api_field(const json_t *o, const char *k) {
        json_t *v = json_object_get(o, k);
        if (json_is_string(v))
                return string_make_visible(json_string_value(v));
        if (json_is_integer(v))
                return xasprintf("%lld", (long long) json_integer_value(v));
        return NULL;
}

int cli_pod_operand(int argc, char **argv, int want, const char **ret) {
        if (optind + want != argc)
                return cli_usage_error(
                        cli_verb(),
                        "expected %s",
                        want == 1 ? "exactly one POD (an id, a unique id prefix or a name)"
                                  : "POD and one more operand");
        if (!cli_pod_id_valid(argv[optind]))
                return cli_usage_error(
                        cli_verb(),
                        "'%s' is not a pod id or name (letters, digits, '-' and '_')",
                        argv[optind]);
        *ret = argv[optind];
        return 0;
}

int cli_api_open_pod(OutputMode mode, NucleusClient **ret, const char **pod, char **ret_owned) {
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_free_ char *err = NULL;
        int r = cli_api_open(mode, &c);
        if (r != 0)
                return r;
        r = cli_pod_resolve(c, NULL, *pod, ret_owned, &err);
        if (r < 0)
                return cli_fail(mode, r == -EEXIST ? "ambiguous" : "io_error", "%s", err ?: strerror(-r));
        /* Nothing matched a short reference: say so here rather than send it on as an id. */
        if (strlen(*pod) != CLI_POD_FULL_ID_LEN && streq(*ret_owned, *pod))
                return cli_fail(
                        mode,
                        "not_found",
                        "no pod has the id, id prefix or name '%s' (nucleus ps -a lists them)",
                        *pod);
        *pod = *ret_owned;
        *ret = TAKE_PTR(c);
        return 0;
}

int cli_read_input(const char *path, size_t max, char **ret, size_t *ret_n) {
        if (streq(path, "-"))
                return read_full_fd(STDIN_FILENO, max, ret, ret_n);
        return read_full_file_at(AT_FDCWD, path, max, ret, ret_n);
}

void cli_print_pod_line(const json_t *pod) {
        _cleanup_free_ char *id = cli_api_field(pod, "id"), *state = cli_api_field(pod, "state"),
                            *reason = cli_api_field(pod, "reason");
        printf("%s\n", id ?: "-");
        fflush(stdout);
        if (reason)
                log_info("pod %s: %s (%s)", id ?: "-", state ?: "-", reason);
        else
                log_info("pod %s: %s", id ?: "-", state ?: "-");
}

const char *const cli_pod_states[] = { "pending",  "booting", "configuring", "running",
                                       "stopping", "exited",  "failed",      NULL };

static bool state_final(const char *s) {
        return s && (streq(s, "exited") || streq(s, "failed"));
}

int cli_pod_wait_state(
        NucleusClient *c, OutputMode mode, const char *pod, const char *want, usec_t timeout, json_t **ret) {
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s", pod);
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;
        _cleanup_free_ char *last = NULL;

        for (;;) {
                _cleanup_client_error_ ClientError e = {};
                _cleanup_json_ json_t *j = NULL;
                int r = client_call_json(c, "GET", path, NULL, &j, &e);
                if (r < 0)
                        return cli_api_fail(mode, &e, NULL);
                const char *st = json_string_value(json_object_get(j, "state"));
                if (st && streq(st, want)) {
                        *ret = TAKE_PTR(j);
                        return 0;
                }
                if (state_final(st)) {
                        _cleanup_free_ char *vs = string_make_visible(st),
                                            *reason = cli_api_field(j, "reason"),
                                            *kind = cli_api_field(j, "reason_kind");
                        return cli_fail(
                                mode,
                                kind ?: "pod_not_running",
                                "pod %s ended (%s) before reaching %s: %s",
                                pod,
                                vs,
                                want,
                                reason ?: "no reason given");
                }
                if (st && (!last || !streq(last, st))) {
                        free(last);
                        last = string_make_visible(st);
                        log_debug("pod %s: %s", pod, last);
                }
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        return cli_fail(
                                mode,
                                "time_violation",
                                "pod %s did not reach %s within %llu s (still %s)",
                                pod,
                                want,
                                (unsigned long long) (timeout / USEC_PER_SEC),
                                last ?: "unknown");
                (void) usleep(200 * 1000);
        }
}
