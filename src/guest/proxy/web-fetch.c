/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus-web-fetch: the web_fetch helper of the tool proxy, a separate program because a
 * static libcurl would drag in a dozen static TLS/compression archives (docs/proxy.md). The
 * proxy runs it confined like any command (agent uid, seccomp, Landlock, empty env) and talks
 * JSON over stdin/stdout. The request comes from the proxy (already judged by policy); the
 * network and every response byte are untrusted. Redirects are followed by hand so that each
 * hop is re-checked against dns_allow; sizes and time are capped.
 *
 * stdin:  {"url", "method"?, "headers"?: {name: value}, "body"?, "max_bytes", "timeout_ms",
 *          "max_redirects", "dns_allow": [host | host:port]}
 * stdout: {"status", "headers": {...}, "body" | "body_base64", "truncated", "url", "redirects"}
 *         or {"error", "kind"} (network_denied, invalid_request, io_error, too_large)
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "string-util.h"

typedef struct Fetch {
        char *body;
        size_t n, max;
        bool truncated;
        json_t *headers;
        char *location;
} Fetch;

static size_t on_body(char *p, size_t sz, size_t nm, void *ud) {
        Fetch *f = ud;
        size_t n = sz * nm;
        size_t keep = f->n < f->max ? NUCLEUS_MIN(n, f->max - f->n) : 0;
        if (keep < n) {
                f->truncated = true;
                if (keep == 0)
                        return 0; /* abort the transfer: we have all we keep */
        }
        f->body = xrealloc(f->body, f->n + keep + 1);
        memcpy(f->body + f->n, p, keep);
        f->n += keep;
        return keep < n ? 0 : n;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud) {
        Fetch *f = ud;
        size_t n = sz * nm;
        if (n > 8192 || json_object_size(f->headers) > 200)
                return n;
        const char *colon = memchr(p, ':', n);
        if (!colon)
                return n; /* status line or blank */
        _cleanup_free_ char *name = xstrndup(p, (size_t) (colon - p));
        const char *v = colon + 1;
        size_t vl = n - (size_t) (v - p);
        while (vl > 0 && (*v == ' ' || *v == '\t'))
                v++, vl--;
        while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
                vl--;
        for (char *c = name; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                        *c = (char) (*c - 'A' + 'a');
        _cleanup_free_ char *val = xstrndup(v, vl);
        if (string_has_cc(val, "\t"))
                return n;
        if (streq(name, "location")) {
                free(f->location);
                f->location = xstrdup(val);
        }
        json_object_set_new(f->headers, name, json_string(val));
        return n;
}

static bool host_allowed(json_t *allow, const char *host, long port) {
        size_t i;
        json_t *e;
        if (json_array_size(allow) == 0)
                return false; /* fail closed: the proxy only calls us with a list */
        _cleanup_free_ char *hp = xasprintf("%s:%ld", host, port);
        json_array_foreach(allow, i, e) {
                const char *a = json_string_value(e);
                if (!a)
                        continue;
                /* Exact host:port, or a bare host meaning its scheme's default port. */
                if (strcasecmp(a, hp) == 0)
                        return true;
                if (!strchr(a, ':') && strcasecmp(a, host) == 0 && (port == 443 || port == 80))
                        return true;
        }
        return false;
}

static json_t *error(const char *kind, const char *fmt, const char *arg) {
        _cleanup_free_ char *m = NULL;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        m = xasprintf(fmt, arg ?: "");
#pragma GCC diagnostic pop
        return json_pack("{s:s, s:s}", "error", m, "kind", kind);
}

static json_t *fetch(json_t *req) {
        const char *url = json_string_value(json_object_get(req, "url"));
        const char *method = json_string_value(json_object_get(req, "method")) ?: "GET";
        const char *body = json_string_value(json_object_get(req, "body"));
        json_t *hdrs = json_object_get(req, "headers"), *allow = json_object_get(req, "dns_allow");
        json_int_t max = json_integer_value(json_object_get(req, "max_bytes"));
        json_int_t timeout = json_integer_value(json_object_get(req, "timeout_ms"));
        json_int_t max_redirects = json_integer_value(json_object_get(req, "max_redirects"));
        if (!url || max <= 0 || timeout <= 0)
                return error("invalid_request", "web_fetch: bad helper request%s", NULL);

        _cleanup_free_ char *cur = xstrdup(url);
        json_t *result = NULL;
        for (json_int_t hop = 0; hop <= max_redirects; hop++) {
                CURLU *u = curl_url();
                char *scheme = NULL, *host = NULL, *port = NULL;
                if (curl_url_set(u, CURLUPART_URL, cur, 0) != CURLUE_OK ||
                    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
                    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
                    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
                        curl_url_cleanup(u);
                        return error("invalid_request", "web_fetch: cannot parse URL '%s'", cur);
                }
                bool ok_scheme = streq(scheme, "https") || streq(scheme, "http");
                bool ok_host = ok_scheme && host_allowed(allow, host, strtol(port, NULL, 10));
                _cleanup_free_ char *hostcopy = xstrdup(host);
                curl_free(scheme), curl_free(host), curl_free(port);
                curl_url_cleanup(u);
                if (!ok_scheme)
                        return error(
                                "invalid_request",
                                "web_fetch: only http and https URLs are fetched ('%s')",
                                cur);
                if (!ok_host)
                        return error("network_denied", "web_fetch: host '%s' is not in dns_allow", hostcopy);

                Fetch f = { .max = (size_t) max, .headers = json_object() };
                CURL *c = curl_easy_init();
                struct curl_slist *sl = NULL;
                const char *k;
                json_t *v;
                json_object_foreach(hdrs, k, v) {
                        _cleanup_free_ char *line = xasprintf("%s: %s", k, json_string_value(v) ?: "");
                        sl = curl_slist_append(sl, line);
                }
                curl_easy_setopt(c, CURLOPT_URL, cur);
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, hop == 0 ? method : "GET");
                if (hop == 0 && body)
                        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c, CURLOPT_HTTPHEADER, sl);
                curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L); /* by hand, re-checked */
                curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
                curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) timeout);
                curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
                curl_easy_setopt(c, CURLOPT_USERAGENT, "nucleus-tool-proxy/0.1");
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
                curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
                curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
                curl_easy_setopt(c, CURLOPT_HEADERDATA, &f);
                CURLcode rc = curl_easy_perform(c);
                long status = 0;
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                curl_slist_free_all(sl);
                curl_easy_cleanup(c);
                if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && f.truncated)) {
                        json_decref(f.headers);
                        free(f.body), free(f.location);
                        return error("io_error", "web_fetch: %s", curl_easy_strerror(rc));
                }
                if (status >= 300 && status < 400 && f.location && hop < max_redirects) {
                        CURLU *base = curl_url();
                        char *next = NULL;
                        curl_url_set(base, CURLUPART_URL, cur, 0);
                        if (curl_url_set(base, CURLUPART_URL, f.location, 0) == CURLUE_OK &&
                            curl_url_get(base, CURLUPART_URL, &next, 0) == CURLUE_OK) {
                                free(cur);
                                cur = xstrdup(next);
                                curl_free(next);
                        }
                        curl_url_cleanup(base);
                        json_decref(f.headers);
                        free(f.body), free(f.location);
                        continue;
                }
                result = json_pack(
                        "{s:i, s:o, s:b, s:s, s:I}",
                        "status",
                        (int) status,
                        "headers",
                        f.headers,
                        "truncated",
                        f.truncated,
                        "url",
                        cur,
                        "redirects",
                        (json_int_t) hop);
                json_object_set_new(result, "body", json_stringn(f.body ?: "", f.n));
                if (!json_string_value(json_object_get(result, "body")) || memchr(f.body ?: "", 0, f.n)) {
                        /* Not UTF-8: send bytes as base64 via jansson-safe hex-free path. */
                        json_object_del(result, "body");
                        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz01234"
                                                  "56789+/";
                        size_t on = (f.n + 2) / 3 * 4;
                        _cleanup_free_ char *o = xmalloc(on + 1);
                        size_t j = 0;
                        for (size_t i = 0; i < f.n; i += 3) {
                                uint32_t x = (uint32_t) (uint8_t) f.body[i] << 16;
                                if (i + 1 < f.n)
                                        x |= (uint32_t) (uint8_t) f.body[i + 1] << 8;
                                if (i + 2 < f.n)
                                        x |= (uint8_t) f.body[i + 2];
                                o[j++] = tbl[(x >> 18) & 63];
                                o[j++] = tbl[(x >> 12) & 63];
                                o[j++] = i + 1 < f.n ? tbl[(x >> 6) & 63] : '=';
                                o[j++] = i + 2 < f.n ? tbl[x & 63] : '=';
                        }
                        o[j] = 0;
                        json_object_set_new(result, "body_base64", json_string(o));
                }
                free(f.body), free(f.location);
                return result;
        }
        return error("io_error", "web_fetch: too many redirects%s", NULL);
}

int main(int argc, char **argv) {
        _cleanup_free_ char *in = NULL;
        _cleanup_free_ char *err = NULL;
        size_t n;
        json_t *req = NULL, *res;
        if (read_full_fd(0, 1024 * 1024, &in, &n) < 0 ||
            json_parse_strict(in, n, 1024 * 1024, &req, &err) < 0 || !json_is_object(req))
                res = error("invalid_request", "web_fetch: unreadable helper request%s", NULL);
        else {
                curl_global_init(CURL_GLOBAL_DEFAULT);
                res = fetch(req);
                curl_global_cleanup();
        }
        char *s = json_dumps(res, JSON_COMPACT);
        if (s) {
                (void) loop_write(1, s, strlen(s));
                free(s);
        }
        json_decref(res);
        json_decref(req);
        return 0;
}
