/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The web_fetch op: judged like any side effect (deadline, capability web_fetch, obligation,
 * budget), then carried out by the separate nucleus-web-fetch helper (web-fetch.c), confined as
 * the agent like every command, with the host allowlist (dns_allow) re-checked by the helper on
 * every redirect hop. Arguments are untrusted.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "proxy.h"
#include "string-util.h"

#define FETCH_MAX_URL 8192U
#define FETCH_MAX_BODY (256U * 1024U)
#define FETCH_MAX_RESPONSE (512U * 1024U)
#define FETCH_MAX_TIMEOUT_S 120U

static void fetch_done(Request *req, int status, bool timed_out, const char *out, size_t n) {
        json_t *j = NULL;
        _cleanup_free_ char *err = NULL;
        if (timed_out) {
                request_fail(req, ERROR_KIND_IO_ERROR, "web_fetch: timed out");
                return;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
            json_parse_strict(out, n, PROTO_MAX_PAYLOAD, &j, &err) < 0 || !json_is_object(j)) {
                json_decref(j);
                request_fail(req, ERROR_KIND_IO_ERROR, "web_fetch: the fetch helper failed");
                return;
        }
        /* The helper's own refusals keep their kind; anything else is passed through. */
        json_t *kind = json_object_get(j, "kind");
        if (kind && (!json_is_string(kind) || error_kind_from_string(json_string_value(kind)) < 0)) {
                json_decref(j);
                request_fail(req, ERROR_KIND_IO_ERROR, "web_fetch: malformed helper answer");
                return;
        }
        request_finish(req, j);
}

/* Request headers are an allowlist. Host (domain fronting: the connection goes to the
 * checked name, the front end serves another site), hop-by-hop and framing headers
 * (Connection, Transfer-Encoding, Content-Length, TE, Upgrade, Expect, Proxy-*), and
 * credentials (Authorization, Cookie: they would be re-sent to every redirect hop) are
 * refused; the host always comes from the URL that was checked. */
#define WEB_ALLOWED_HEADERS_TEXT                                                            \
        "Accept, Accept-Language, User-Agent, Content-Type, Cache-Control, If-None-Match, " \
        "If-Modified-Since, Range"
static bool web_header_allowed(const char *name) {
        static const char *const allowed[] = {
                "Accept",        "Accept-Language", "User-Agent",        "Content-Type",
                "Cache-Control", "If-None-Match",   "If-Modified-Since", "Range",
        };
        for (size_t i = 0; i < ELEMENTSOF(allowed); i++)
                if (strcasecmp(name, allowed[i]) == 0)
                        return true;
        return false;
}

void op_web_fetch(Request *req) {
        Proxy *p = req->proxy;
        static const char *const keys[] = { "url",       "method",          "headers", "body",
                                            "max_bytes", "timeout_seconds", NULL };
        const char *url, *method, *body;
        uint64_t max_bytes, timeout_s;
        PolicyDecision d = {};

        if (args_check_keys(req, keys) < 0 || args_get_string(req, "url", true, &url) < 0 ||
            args_get_string(req, "method", false, &method) < 0 ||
            args_get_string(req, "body", false, &body) < 0 ||
            args_get_u64(req, "max_bytes", FETCH_MAX_RESPONSE / 2, FETCH_MAX_RESPONSE, &max_bytes) < 0 ||
            args_get_u64(req, "timeout_seconds", 30, FETCH_MAX_TIMEOUT_S, &timeout_s) < 0)
                return;
        if (strlen(url) > FETCH_MAX_URL || string_has_cc(url, NULL) ||
            !(startswith(url, "https://") || startswith(url, "http://"))) {
                request_fail(
                        req,
                        ERROR_KIND_INVALID_REQUEST,
                        "web_fetch: 'url' must be an http(s) URL of at most %u bytes",
                        FETCH_MAX_URL);
                return;
        }
        static const char *const methods[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", NULL };
        if (method && !strv_contains((char **) methods, method)) {
                request_fail(req, ERROR_KIND_INVALID_REQUEST, "web_fetch: unsupported method");
                return;
        }
        if (body && strlen(body) > FETCH_MAX_BODY) {
                request_fail(req, ERROR_KIND_TOO_LARGE, "web_fetch: body larger than %u bytes", FETCH_MAX_BODY);
                return;
        }
        json_t *h = json_object_get(req->args, "headers");
        if (h) {
                const char *k;
                json_t *v;
                if (!json_is_object(h) || json_object_size(h) > 50) {
                        request_fail(
                                req,
                                ERROR_KIND_INVALID_REQUEST,
                                "web_fetch: 'headers' must be an object of at most 50 strings");
                        return;
                }
                json_object_foreach(h, k, v) {
                        if (!json_is_string(v) || string_has_cc(k, NULL) ||
                            string_has_cc(json_string_value(v), "\t") || strchr(k, ':') || !*k ||
                            strlen(k) > 256 || json_string_length(v) > 8192) {
                                request_fail(req, ERROR_KIND_INVALID_REQUEST, "web_fetch: bad header");
                                return;
                        }
                        if (!web_header_allowed(k)) {
                                _cleanup_free_ char *vis = string_make_visible(k);
                                request_fail(
                                        req,
                                        ERROR_KIND_INVALID_REQUEST,
                                        "web_fetch: header '%s' may not be set by a request (allowed: %s)",
                                        vis,
                                        WEB_ALLOWED_HEADERS_TEXT);
                                return;
                        }
                }
        }
        (void) approval_args_sha256(req->args, req->approval_args);

        if (request_check_deadline(req) < 0)
                return;
        if (policy_check_operation(p->cfg.policy, OPERATION_WEB_FETCH, &d) < 0) {
                request_fail(req, ERROR_KIND_INTERNAL, "web_fetch: policy check failed");
                return;
        }
        if (d.verdict == POLICY_DENY) {
                (void) request_gate(req, &d, 0);
                return;
        }
        if (strv_length(p->cfg.dns_allow) == 0) {
                policy_decision_done(&d);
                request_fail(
                        req,
                        ERROR_KIND_NETWORK_DENIED,
                        "web_fetch: this pod has no dns_allow list; no host may be fetched");
                return;
        }
        if (!p->fetch_helper) {
                policy_decision_done(&d);
                request_fail(
                        req, ERROR_KIND_UNSUPPORTED, "web_fetch: no fetch helper is installed (--fetch-helper)");
                return;
        }
        usec_t timeout = timeout_s * USEC_PER_SEC, left = time_window_remaining(&p->window);
        if (left < timeout)
                timeout = left;
        if (request_gate(req, &d, p->cfg.costs.base_usd_micros) < 0)
                return;

        json_t *hr = json_pack(
                "{s:s, s:s, s:I, s:I, s:i, s:o}",
                "url",
                url,
                "method",
                method ?: "GET",
                "max_bytes",
                (json_int_t) max_bytes,
                "timeout_ms",
                (json_int_t) (timeout / USEC_PER_MSEC),
                "max_redirects",
                5,
                "dns_allow",
                json_array());
        STRV_FOREACH(a, p->cfg.dns_allow)
                json_array_append_new(json_object_get(hr, "dns_allow"), json_string(*a));
        if (h)
                json_object_set(hr, "headers", h);
        if (body)
                json_object_set_new(hr, "body", json_string(body));
        _cleanup_free_ char *in = json_dumps(hr, JSON_COMPACT);
        json_decref(hr);
        _cleanup_close_ int cwd = open(p->workspace_real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        /* In a VM the helper and its libraries come from the initramfs: its loader is run
         * explicitly with that library path, so the rootfs' own libraries never matter. */
        _cleanup_free_ char *loader = p->fetch_libdir ? xasprintf("%s/ld-linux-x86-64.so.2", p->fetch_libdir)
                                                      : NULL;
        char *argv_plain[] = { p->fetch_helper, NULL };
        char *argv_loader[] = { loader, (char *) "--library-path", p->fetch_libdir, p->fetch_helper, NULL };
        char **argv = loader ? argv_loader : argv_plain;
        (void) proxy_spawn(
                req, argv, cwd, in, strlen(in), timeout + USEC_PER_SEC, false, fetch_done, PROTO_MAX_PAYLOAD - 1024);
}
