/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcurl transport for the node API. Trusts its caller (URL, key, actor); distrusts the
 * server: response bodies are capped at CLIENT_BODY_MAX, headers are parsed defensively, and
 * error messages are made printable before they reach a terminal. Every answer must carry a
 * valid X-Nucleus-Response-MAC (sign.h) for the nonce we sent: an answer from anything that
 * does not hold the node key (a process squatting on the port) is refused before its body is
 * used, and a stream before its first byte is delivered.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <time.h>

#include "alloc-util.h"
#include "client-sign.h"
#include "client-sse.h"
#include "client.h"
#include "json-util.h"
#include "log.h"
#include "sign.h"
#include "string-util.h"

struct NucleusClient {
        char *base;   /* scheme://authority, no trailing slash */
        char *prefix; /* path prefix of the base URL ("" or "/x"), part of what is signed */
        char *actor;
        uint8_t key[CLIENT_KEY_SIZE]; /* the node key, or a scoped credential's secret */
        char *key_id;                 /* the scoped credential's id (X-Nucleus-Key-Id), or NULL */
        usec_t connect_timeout;
        usec_t total_timeout;
        const volatile sig_atomic_t *interrupt; /* client_set_interrupt(); not cloned */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) {
        (void) curl_global_init(CURL_GLOBAL_DEFAULT);
}

void client_error_done(ClientError *e) {
        if (!e)
                return;
        e->message = mfree(e->message);
        e->kind = mfree(e->kind);
        e->status = 0;
}

void client_response_done(ClientResponse *r) {
        if (!r)
                return;
        r->body = mfree(r->body);
        r->content_type = mfree(r->content_type);
        r->size = 0;
        r->status = 0;
}

static void set_error(ClientError *e, long status, const char *kind, const char *fmt, ...) _printf_(4, 5);
static void set_error(ClientError *e, long status, const char *kind, const char *fmt, ...) {
        if (!e)
                return;
        client_error_done(e);
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *raw = xvasprintf(fmt, ap);
        va_end(ap);
        e->status = status;
        e->message = string_make_visible(raw);
        e->kind = xstrdup(kind);
}

int client_new(
        const char *url, const uint8_t key[static CLIENT_KEY_SIZE], const char *actor, NucleusClient **ret) {
        const char *rest;

        if (!url)
                return -EINVAL;
        rest = startswith(url, "http://");
        if (!rest)
                rest = startswith(url, "https://");
        if (!rest || isempty(rest) || string_has_cc(url, NULL) || strpbrk(url, " \"<>\\^`{|}#?"))
                return -EINVAL;
        actor = actor ?: CLIENT_DEFAULT_ACTOR;
        if (string_has_cc(actor, NULL) || strlen(actor) > 256)
                return -EINVAL;

        const char *slash = strchr(rest, '/');
        size_t authority = slash ? (size_t) (slash - rest) : strlen(rest);
        if (authority == 0)
                return -EINVAL;

        NucleusClient *c = xnew0(NucleusClient, 1);
        c->base = xstrndup(url, (size_t) (rest - url) + authority);
        c->prefix = xstrdup(slash ?: "");
        /* Drop trailing slashes of the prefix: paths we append start with '/'. */
        for (size_t n = strlen(c->prefix); n > 0 && c->prefix[n - 1] == '/'; n--)
                c->prefix[n - 1] = 0;
        c->actor = xstrdup(actor);
        memcpy(c->key, key, CLIENT_KEY_SIZE);
        c->connect_timeout = 5 * USEC_PER_SEC;
        c->total_timeout = 60 * USEC_PER_SEC;
        (void) pthread_once(&curl_once, curl_init_once);
        *ret = c;
        return 0;
}

NucleusClient *client_free(NucleusClient *c) {
        if (!c)
                return NULL;
        sodium_memzero(c->key, sizeof(c->key));
        free(c->key_id);
        free(c->base);
        free(c->prefix);
        free(c->actor);
        return mfree(c);
}

NucleusClient *client_clone(const NucleusClient *c) {
        NucleusClient *n = xnew0(NucleusClient, 1);
        n->base = xstrdup(c->base);
        n->prefix = xstrdup(c->prefix);
        n->actor = xstrdup(c->actor);
        memcpy(n->key, c->key, CLIENT_KEY_SIZE);
        n->key_id = c->key_id ? xstrdup(c->key_id) : NULL;
        n->connect_timeout = c->connect_timeout;
        n->total_timeout = c->total_timeout;
        return n;
}

int client_new_scoped(
        const char *url,
        const uint8_t secret[static CLIENT_KEY_SIZE],
        const char *key_id,
        const char *actor,
        NucleusClient **ret) {
        if (!key_id || !auth_key_id_is_valid(key_id))
                return -EINVAL;
        int r = client_new(url, secret, actor, ret);
        if (r < 0)
                return r;
        (*ret)->key_id = xstrdup(key_id);
        return 0;
}

bool client_is_scoped(const NucleusClient *c) {
        return c->key_id;
}

void client_set_timeouts(NucleusClient *c, usec_t connect, usec_t total) {
        c->connect_timeout = connect;
        c->total_timeout = total;
}

const char *client_url(const NucleusClient *c) {
        return c->base;
}

/* Receive state shared by the buffered and the streaming paths. */
typedef struct Recv {
        char *buf;
        size_t size;
        size_t max;
        bool overflow;
        /* streaming */
        bool stream;
        bool started; /* status and content type known */
        bool sse;
        CURL *curl;
        ClientDataFn on_data;
        ClientEventFn on_event;
        void *userdata;
        int cb_error;
        ClientSse sse_parser;
        /* answer authentication */
        const uint8_t *key;
        char nonce[AUTH_NONCE_MAX_HEX + 1];   /* the nonce we sent */
        char mac[AUTH_SIGNATURE_HEX_LEN + 1]; /* X-Nucleus-Response-MAC as received ("" if none) */
        bool mac_bad;                         /* a header line of that name was malformed or repeated */
        bool deferred; /* a 2xx answer to a stream request not MAC'd as a stream (a plain body):
                        * buffered whole, checked over its digest, then delivered */
        /* streamed upload (client_request_upload) */
        int up_fd;
        uint64_t up_size, up_sent;
        const char *up_sha256;
        ClientProgressFn up_progress;
        void *up_userdata;
} Recv;

static size_t upload_read_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Recv *rv = userdata;
        size_t want = size * nmemb;
        if (rv->up_sent >= rv->up_size)
                return 0;
        if (want > rv->up_size - rv->up_sent)
                want = (size_t) (rv->up_size - rv->up_sent);
        ssize_t k;
        do
                k = pread(rv->up_fd, ptr, want, (off_t) rv->up_sent);
        while (k < 0 && errno == EINTR);
        if (k <= 0) {
                rv->cb_error = k < 0 ? -errno : -EIO; /* the file shrank under us */
                return CURL_READFUNC_ABORT;
        }
        rv->up_sent += (uint64_t) k;
        if (rv->up_progress) {
                int r = rv->up_progress(rv->up_sent, rv->up_size, rv->up_userdata);
                if (r < 0) {
                        rv->cb_error = r;
                        return CURL_READFUNC_ABORT;
                }
        }
        return (size_t) k;
}

static void recv_done(Recv *r) {
        free(r->buf);
        client_sse_done(&r->sse_parser);
}

static int buf_append(Recv *r, const char *p, size_t n) {
        if (n > r->max - r->size) {
                r->overflow = true;
                return -EFBIG;
        }
        r->buf = xrealloc(r->buf, r->size + n + 1);
        memcpy(r->buf + r->size, p, n);
        r->size += n;
        r->buf[r->size] = 0;
        return 0;
}

static int stream_start(Recv *r) {
        long status = 0;
        const char *ct = NULL;
        (void) curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
        (void) curl_easy_getinfo(r->curl, CURLINFO_CONTENT_TYPE, &ct);
        r->started = true;
        /* Errors are collected whole and decoded later; only 2xx bodies are streamed. */
        if (status < 200 || status >= 300) {
                r->stream = false;
                r->max = 1024 * 1024;
                return 0;
        }
        r->sse = ct && r->on_event && strncasecmp(ct, "text/event-stream", 17) == 0;
        if (r->sse)
                client_sse_init(&r->sse_parser, r->on_event, r->userdata);
        if (!auth_verify_response(
                    r->key, r->nonce, (unsigned) status, NULL, SIZE_MAX, r->mac_bad ? NULL : r->mac)) {
                /* Not a stream MAC: maybe a plain answer (its MAC covers the body digest). Hold
                 * every byte back until the whole body is checked. */
                r->stream = false;
                r->deferred = true;
                r->max = CLIENT_BODY_MAX;
        }
        return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Recv *r = userdata;
        size_t n = size * nmemb;

        if (r->stream && !r->started)
                (void) stream_start(r);

        if (!r->stream)
                return buf_append(r, ptr, n) < 0 ? 0 : n;

        if (!r->sse) {
                int k = r->on_data ? r->on_data(ptr, n, r->userdata) : 0;
                if (k < 0) {
                        r->cb_error = k;
                        return 0;
                }
                return n;
        }

        int k = client_sse_feed(&r->sse_parser, ptr, n);
        if (k < 0) {
                r->cb_error = k;
                return 0;
        }
        return n;
}

static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Recv *r = userdata;
        size_t n = size * nmemb;
        static const char name[] = AUTH_HEADER_RESPONSE_MAC ":";

        /* A new header block (an interim 1xx answer, a redirect we do not follow) starts over. */
        if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
                r->mac[0] = 0;
                r->mac_bad = false;
                return n;
        }
        if (n <= strlen(name) || strncasecmp(ptr, name, strlen(name)) != 0)
                return n;
        const char *v = ptr + strlen(name);
        size_t len = n - strlen(name);
        while (len > 0 && (*v == ' ' || *v == '\t'))
                v++, len--;
        while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' ' || v[len - 1] == '\t'))
                len--;
        if (r->mac[0] || len != AUTH_SIGNATURE_HEX_LEN) {
                r->mac_bad = true; /* repeated or malformed: never pick one of several */
                return n;
        }
        memcpy(r->mac, v, len);
        r->mac[len] = 0;
        return n;
}

static int interrupt_cb(
        void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
        const NucleusClient *c = userdata;
        (void) dltotal, (void) dlnow, (void) ultotal, (void) ulnow;
        return c->interrupt && *c->interrupt ? 1 : 0;
}

void client_set_interrupt(NucleusClient *c, const volatile sig_atomic_t *flag) {
        c->interrupt = flag;
}

static int map_curl_error(CURLcode cc) {
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
                return -EINVAL;
        default:
                return -EIO;
        }
}

/* An answer without a valid X-Nucleus-Response-MAC. A 401 keeps its kind (the usual cause is
 * a CLI and a node with different keys, which also makes our check fail); anything else is
 * "node_unauthenticated". Nothing of the answer's body is used either way. */
static void set_node_unauthenticated(ClientError *e, NucleusClient *c, long status) {
        if (status == 401)
                set_error(
                        e,
                        status,
                        "unauthorized",
                        "%s refused our signature, and its answer is not signed with our node key either",
                        c->base);
        else
                set_error(
                        e,
                        status,
                        "node_unauthenticated",
                        "the answer from %s carries no valid %s: the program on that port does not hold "
                        "the node key (another program holds the port, or the keys differ); nothing it "
                        "sent was used",
                        c->base,
                        AUTH_HEADER_RESPONSE_MAC);
}

static long usec_to_ms(usec_t u) {
        if (u == 0 || u == USEC_INFINITY)
                return 0;
        u /= USEC_PER_MSEC;
        return u > LONG_MAX ? LONG_MAX : (long) (u ?: 1);
}

static int
        perform(NucleusClient *c,
                const char *method,
                const char *path_query,
                const char *content_type,
                const void *body,
                size_t body_len,
                Recv *rv,
                long *ret_status,
                char **ret_content_type,
                ClientError *reterr) {
        _cleanup_free_ char *signed_path = NULL, *url = NULL, *h_ts = NULL, *h_nonce = NULL, *h_actor = NULL,
                            *h_sig = NULL, *h_ct = NULL, *h_sha = NULL, *h_kid = NULL;
        ClientSignedHeaders sh;
        char errbuf[CURL_ERROR_SIZE] = "";
        struct curl_slist *headers = NULL;
        CURLcode cc;
        int r;

        if (!path_query || path_query[0] != '/') {
                set_error(reterr, 0, "invalid_request", "Request path must start with '/'");
                return -EINVAL;
        }
        signed_path = xasprintf("%s%s", c->prefix, path_query);
        url = xasprintf("%s%s", c->base, signed_path);

        if (rv->up_sha256)
                r = client_sign_digest(
                        c->key, c->key_id, method, signed_path, c->actor, rv->up_sha256, (uint64_t) time(NULL), &sh);
        else
                r = client_sign(
                        c->key,
                        c->key_id,
                        method,
                        signed_path,
                        c->actor,
                        body,
                        body_len,
                        (uint64_t) time(NULL),
                        &sh);
        if (r < 0) {
                set_error(reterr, 0, "invalid_request", "Cannot sign request %s %s", method, path_query);
                return r;
        }

        if (c->interrupt && *c->interrupt) {
                set_error(reterr, 0, "interrupted", "%s %s: interrupted", method, path_query);
                return -EINTR;
        }

        CURL *curl = curl_easy_init();
        if (!curl)
                return log_oom();
        rv->curl = curl;
        rv->key = c->key;
        (void) snprintf(rv->nonce, sizeof(rv->nonce), "%s", sh.nonce);

        h_ts = xasprintf("X-Nucleus-Timestamp: %s", sh.timestamp);
        h_nonce = xasprintf("X-Nucleus-Nonce: %s", sh.nonce);
        h_actor = xasprintf("X-Nucleus-Actor: %s", c->actor);
        h_sig = xasprintf("X-Nucleus-Signature: %s", sh.signature);
        h_sha = xasprintf("X-Nucleus-Content-SHA256: %s", sh.content_sha256);
        h_ct = xasprintf("Content-Type: %s", content_type ?: "application/json");
        headers = curl_slist_append(headers, h_ts);
        headers = curl_slist_append(headers, h_nonce);
        headers = curl_slist_append(headers, h_actor);
        headers = curl_slist_append(headers, h_sig);
        headers = curl_slist_append(headers, h_sha);
        if (c->key_id) {
                h_kid = xasprintf("X-Nucleus-Key-Id: %s", c->key_id);
                headers = curl_slist_append(headers, h_kid);
        }
        if (body || rv->up_sha256)
                headers = curl_slist_append(headers, h_ct);
        headers = curl_slist_append(headers, "Expect:");
        if (rv->stream)
                headers = curl_slist_append(headers, "Accept: text/event-stream, text/plain, */*");
        else
                headers = curl_slist_append(headers, "Accept: application/json, */*");

        (void) curl_easy_setopt(curl, CURLOPT_URL, url);
        (void) curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
        (void) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        (void) curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        (void) curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
        /* A signature is for one host; never let an environment proxy see our requests. */
        (void) curl_easy_setopt(curl, CURLOPT_PROXY, "");
        (void) curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
        (void) curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, usec_to_ms(c->connect_timeout));
        (void) curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, rv->stream ? 0L : usec_to_ms(c->total_timeout));
        (void) curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_cb);
        (void) curl_easy_setopt(curl, CURLOPT_WRITEDATA, rv);
        (void) curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, header_cb);
        (void) curl_easy_setopt(curl, CURLOPT_HEADERDATA, rv);
        if (rv->up_sha256) {
                (void) curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
                (void) curl_easy_setopt(curl, CURLOPT_READFUNCTION, upload_read_cb);
                (void) curl_easy_setopt(curl, CURLOPT_READDATA, rv);
                (void) curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t) rv->up_size);
                /* The total timeout would cut a large upload (and the import that follows it)
                 * short; the node ends the call at the pod's deadline. */
                (void) curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 0L);
        } else if (body) {
                (void) curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
                (void) curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
        } else if (streq(method, "HEAD"))
                (void) curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
        if (c->interrupt) {
                /* Called about once a second even while the answer is awaited. */
                (void) curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, interrupt_cb);
                (void) curl_easy_setopt(curl, CURLOPT_XFERINFODATA, c);
                (void) curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
        }

        cc = curl_easy_perform(curl);
        long status = 0;
        const char *ct = NULL;
        (void) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        (void) curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
        _cleanup_free_ char *ct_copy = ct ? xstrdup(ct) : NULL;
        curl_easy_cleanup(curl);
        curl_slist_free_all(headers);
        rv->curl = NULL;

        if (rv->cb_error < 0) {
                if (rv->cb_error == -EFBIG)
                        set_error(reterr, status, "too_large", "Response from %s is too large", c->base);
                return rv->cb_error;
        }
        if (rv->overflow) {
                set_error(reterr, status, "too_large", "Response from %s exceeds %zu bytes", c->base, rv->max);
                return -EFBIG;
        }
        if (cc == CURLE_ABORTED_BY_CALLBACK && c->interrupt && *c->interrupt) {
                set_error(reterr, 0, "interrupted", "%s %s: interrupted", method, path_query);
                return -EINTR;
        }
        if (cc != CURLE_OK) {
                r = map_curl_error(cc);
                set_error(
                        reterr,
                        0,
                        "io_error",
                        "%s %s: %s",
                        method,
                        url,
                        errbuf[0] ? errbuf : curl_easy_strerror(cc));
                return r;
        }
        /* Streams were checked before their first byte was delivered; everything else (plain
         * answers, error answers to streams, deferred bodies) over the digest of the whole body. */
        const char *mac = rv->mac_bad ? NULL : rv->mac;
        bool ok;
        if (rv->stream && status >= 200 && status < 300)
                ok = rv->started ||
                        auth_verify_response(c->key, rv->nonce, (unsigned) status, NULL, SIZE_MAX, mac);
        else
                ok = auth_verify_response(c->key, rv->nonce, (unsigned) status, rv->buf ?: "", rv->size, mac);
        if (!ok) {
                set_node_unauthenticated(reterr, c, status);
                /* A 401 stays an HTTP refusal for callers (kind "unauthorized" in reterr). */
                return status == 401 ? -EREMOTEIO : -EPROTO;
        }
        if (rv->deferred && rv->size > 0) {
                r = rv->sse           ? client_sse_feed(&rv->sse_parser, rv->buf, rv->size)
                        : rv->on_data ? rv->on_data(rv->buf, rv->size, rv->userdata)
                                      : 0;
                if (r < 0)
                        return r;
        }
        *ret_status = status;
        if (ret_content_type)
                *ret_content_type = TAKE_PTR(ct_copy);
        return 0;
}

int client_request(
        NucleusClient *c,
        const char *method,
        const char *path_query,
        const char *content_type,
        const void *body,
        size_t body_len,
        ClientResponse *ret,
        ClientError *reterr) {
        _cleanup_(recv_done) Recv rv = { .max = CLIENT_BODY_MAX };
        long status = 0;
        char *ct = NULL;
        int r;

        r = perform(c, method, path_query, content_type, body, body_len, &rv, &status, &ct, reterr);
        if (r < 0)
                return r;
        *ret = (ClientResponse){
                .status = status,
                .body = rv.buf ? TAKE_PTR(rv.buf) : xstrdup(""),
                .size = rv.size,
                .content_type = ct,
        };
        return 0;
}

int client_request_upload(
        NucleusClient *c,
        const char *method,
        const char *path_query,
        const char *content_type,
        int fd,
        uint64_t size,
        const char *body_sha256,
        ClientProgressFn progress,
        void *userdata,
        ClientResponse *ret,
        ClientError *reterr) {
        _cleanup_(recv_done) Recv rv = {
                .max = CLIENT_BODY_MAX,
                .up_fd = fd,
                .up_size = size,
                .up_sha256 = body_sha256,
                .up_progress = progress,
                .up_userdata = userdata,
        };
        long status = 0;
        char *ct = NULL;
        int r;

        if (fd < 0 || !body_sha256) {
                set_error(reterr, 0, "invalid_request", "client_request_upload needs a file and its digest");
                return -EINVAL;
        }
        r = perform(c, method, path_query, content_type, NULL, 0, &rv, &status, &ct, reterr);
        if (r < 0)
                return r;
        *ret = (ClientResponse){
                .status = status,
                .body = rv.buf ? TAKE_PTR(rv.buf) : xstrdup(""),
                .size = rv.size,
                .content_type = ct,
        };
        return 0;
}

static const char *kind_for_status(long status) {
        switch (status) {
        case 400:
                return "invalid_request";
        case 401:
                return "unauthorized";
        case 402:
                return "budget_exhausted";
        case 403:
                return "insufficient_capability";
        case 404:
                return "not_found";
        case 409:
                return "conflict";
        case 413:
                return "too_large";
        case 503:
                return "capacity";
        default:
                return status >= 500 ? "internal" : "invalid_request";
        }
}

void client_error_from_response(const ClientResponse *resp, ClientError *ret) {
        _cleanup_json_ json_t *j = NULL;
        const char *msg = NULL, *kind = NULL;

        if (resp->body && resp->size > 0 &&
            json_parse_strict(resp->body, resp->size, 1024 * 1024, &j, NULL) >= 0 && json_is_object(j)) {
                msg = json_string_value(json_object_get(j, "error"));
                kind = json_string_value(json_object_get(j, "kind"));
        }
        /* A kind must look like one: lowercase identifier, short. Anything else is replaced. */
        if (kind && (strlen(kind) > 64 || strspn(kind, "abcdefghijklmnopqrstuvwxyz_") != strlen(kind)))
                kind = NULL;

        client_error_done(ret);
        ret->status = resp->status;
        ret->kind = xstrdup(kind ?: kind_for_status(resp->status));
        if (msg)
                ret->message = string_make_visible(msg);
        else {
                /* Not our error document: show the start of whatever came back. */
                _cleanup_free_ char *head = xstrndup(resp->body ?: "", NUCLEUS_MIN(resp->size, (size_t) 200));
                _cleanup_free_ char *vis = string_make_visible(head);
                ret->message = isempty(vis) ? xasprintf("HTTP status %ld", resp->status)
                                            : xasprintf("HTTP status %ld: %s", resp->status, vis);
        }
}

int client_call_json(
        NucleusClient *c,
        const char *method,
        const char *path_query,
        const json_t *body,
        json_t **ret,
        ClientError *reterr) {
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_free_ char *text = NULL;
        _cleanup_free_ char *perr = NULL;
        _cleanup_json_ json_t *j = NULL;
        int r;

        if (body) {
                text = json_dumps(body, JSON_COMPACT);
                if (!text)
                        return log_oom();
        }
        r = client_request(
                c, method, path_query, "application/json", text, text ? strlen(text) : 0, &resp, reterr);
        if (r < 0)
                return r;
        if (resp.status < 200 || resp.status >= 300) {
                if (reterr)
                        client_error_from_response(&resp, reterr);
                return -EREMOTEIO;
        }
        if (!ret)
                return 0;
        r = json_parse_strict(resp.body, resp.size, CLIENT_BODY_MAX, &j, &perr);
        if (r < 0) {
                set_error(
                        reterr,
                        resp.status,
                        "internal",
                        "Node sent invalid JSON for %s %s: %s",
                        method,
                        path_query,
                        perr ?: "empty");
                return -EBADMSG;
        }
        *ret = TAKE_PTR(j);
        return 0;
}

int client_stream(
        NucleusClient *c,
        const char *path_query,
        ClientDataFn on_data,
        ClientEventFn on_event,
        void *userdata,
        ClientError *reterr) {
        _cleanup_(recv_done) Recv rv = {
                .max = 1024 * 1024,
                .stream = true,
                .on_data = on_data,
                .on_event = on_event,
                .userdata = userdata,
        };
        long status = 0;
        _cleanup_free_ char *ct = NULL;
        int r;

        r = perform(c, "GET", path_query, NULL, NULL, 0, &rv, &status, &ct, reterr);
        if (r < 0)
                return r;
        if (status < 200 || status >= 300) {
                ClientResponse resp = { .status = status, .body = rv.buf, .size = rv.size };
                if (reterr)
                        client_error_from_response(&resp, reterr);
                return -EREMOTEIO;
        }
        /* A final event without a trailing blank line still counts. */
        if (rv.sse)
                return client_sse_finish(&rv.sse_parser);
        return 0;
}

char *client_error_describe(const ClientError *e) {
        const char *kind = e->kind ?: "internal";
        const char *fix = NULL;

        if (streq(kind, "unauthorized"))
                fix = "the node rejected our signature: make sure the CLI and the node use the same "
                      "node.key "
                      "(nucleus secrets show-paths) and that both clocks agree; restart the node after "
                      "'nucleus secrets rotate'";
        else if (streq(kind, "node_unauthenticated"))
                fix = "check what listens on the node's port ('nucleus doctor'; 'ss -ltnp'), and that the "
                      "CLI "
                      "and the node use the same node.key (nucleus secrets show-paths)";
        else if (e->status == 0 && streq(kind, "io_error"))
                fix = "is the node running? Start it with 'nucleus start' (or check 'nucleus doctor')";
        if (fix)
                return xasprintf("%s (%s); fix: %s", e->message ?: "error", kind, fix);
        return xasprintf("%s (%s)", e->message ?: "error", kind);
}
