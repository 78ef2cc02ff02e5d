/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The model client: one HTTPS request per turn through libcurl, streamed through the SSE
 * parser into the provider's accumulator (llm-format.c), or the scripted provider. The API key
 * comes from the environment variable the config names; it lives only in this object's memory
 * and curl's header list, both erased on free, and it is never logged or put in an error.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/random.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "llm.h"
#include "log.h"
#include "sse.h"
#include "string-util.h"
#include "time-util.h"

static const char *const llm_provider_table[_LLM_PROVIDER_MAX] = {
        [LLM_PROVIDER_OPENAI] = "openai",
        [LLM_PROVIDER_ANTHROPIC] = "anthropic",
        [LLM_PROVIDER_SCRIPT] = "script",
};
DEFINE_STRING_TABLE_LOOKUP(llm_provider, LlmProvider);

#define LLM_SCRIPT_MAX_BYTES (4U * 1024U * 1024U)
#define LLM_SCRIPT_MAX_STEPS 1000U

struct LlmClient {
        LlmConfig cfg;
        char *key; /* erased on free */
        volatile sig_atomic_t *interrupt;
        uint64_t deadline;    /* CLOCK_MONOTONIC usec; 0: none */
        json_t *script_steps; /* LLM_PROVIDER_SCRIPT */
        char *script_final;
};

void llm_config_done(LlmConfig *c) {
        if (!c)
                return;
        c->base_url = mfree(c->base_url);
        c->model = mfree(c->model);
        c->api_key_env = mfree(c->api_key_env);
        c->api_key = erase_and_free(c->api_key);
        c->script_path = mfree(c->script_path);
}

void llm_response_done(LlmResponse *r) {
        if (!r)
                return;
        r->text = mfree(r->text);
        r->stop_reason = mfree(r->stop_reason);
        json_decref(r->tool_calls);
        r->tool_calls = NULL;
}

static char *dup_or_null(const char *s) {
        return s ? xstrdup(s) : NULL;
}

static bool key_in(const char *k, const char *const *allowed) {
        for (; *allowed; allowed++)
                if (streq(k, *allowed))
                        return true;
        return false;
}

static int script_load(LlmClient *c, const char *path, char **reterr) {
        _cleanup_free_ char *data = NULL, *perr = NULL;
        _cleanup_json_ json_t *j = NULL;
        size_t n, i;
        json_t *step;
        int r;

        /* A FIFO or a device would block or never end: a plan is a regular file. */
        struct stat st;
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
                if (reterr)
                        *reterr = xasprintf("%s: not a regular file (a plan is a JSON file)", path);
                return -EINVAL;
        }
        r = read_full_file_at(AT_FDCWD, path, LLM_SCRIPT_MAX_BYTES, &data, &n);
        if (r < 0) {
                if (reterr)
                        *reterr = xasprintf("%s: cannot read: %s", path, strerror(-r));
                return r;
        }
        if (json_parse_strict(data, n, LLM_SCRIPT_MAX_BYTES, &j, &perr) < 0) {
                if (reterr)
                        *reterr = xasprintf("%s: %s", path, perr ? perr : "invalid JSON");
                return -EINVAL;
        }
        json_t *steps = json_object_get(j, "steps");
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v)
                if (!key_in(key, (const char *const[]){ "description", "steps", "final", NULL })) {
                        if (reterr)
                                *reterr = xasprintf(
                                        "%s: unknown key \"%s\" (allowed: description, steps, final)",
                                        path,
                                        key);
                        return -EINVAL;
                }
        if (!json_is_array(steps) || json_array_size(steps) > LLM_SCRIPT_MAX_STEPS) {
                if (reterr)
                        *reterr = xasprintf(
                                "%s: \"steps\" must be an array of at most %u steps",
                                path,
                                LLM_SCRIPT_MAX_STEPS);
                return -EINVAL;
        }
        json_array_foreach(steps, i, step) {
                json_object_foreach(step, key, v)
                        if (!key_in(key, (const char *const[]){ "say", "tool", "args", NULL })) {
                                if (reterr)
                                        *reterr = xasprintf(
                                                "%s: steps[%zu]: unknown key \"%s\" (allowed: say, tool, "
                                                "args)",
                                                path,
                                                i,
                                                key);
                                return -EINVAL;
                        }
                if (!json_is_object(step) || !json_is_string(json_object_get(step, "tool")) ||
                    (json_object_get(step, "args") && !json_is_object(json_object_get(step, "args"))) ||
                    (json_object_get(step, "say") && !json_is_string(json_object_get(step, "say")))) {
                        if (reterr)
                                *reterr = xasprintf(
                                        "%s: steps[%zu]: needs \"tool\" (string), optional \"args\" "
                                        "(object) and \"say\" (string)",
                                        path,
                                        i);
                        return -EINVAL;
                }
        }
        json_t *fin = json_object_get(j, "final");
        if (fin && !json_is_string(fin)) {
                if (reterr)
                        *reterr = xasprintf("%s: \"final\" must be a string", path);
                return -EINVAL;
        }
        c->script_steps = json_incref(steps);
        c->script_final = xstrdup(fin ? json_string_value(fin) : "Script finished.");
        return 0;
}

int llm_client_new(const LlmConfig *cfg, LlmClient **ret, char **reterr) {
        _cleanup_(llm_client_freep) LlmClient *c = xnew0(LlmClient, 1);
        int r;

        if (cfg->provider < 0 || cfg->provider >= _LLM_PROVIDER_MAX) {
                if (reterr)
                        *reterr = xstrdup("unknown model provider (expected openai, anthropic or script)");
                return -EINVAL;
        }
        c->cfg = (LlmConfig){
                .provider = cfg->provider,
                .base_url = dup_or_null(cfg->base_url),
                .model = dup_or_null(cfg->model),
                .api_key_env = dup_or_null(cfg->api_key_env),
                .api_key = dup_or_null(cfg->api_key),
                .max_tokens = cfg->max_tokens,
                .connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 30000,
                .idle_timeout_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : 120000,
                .max_attempts = cfg->max_attempts ? cfg->max_attempts : 6,
                .script_path = dup_or_null(cfg->script_path),
                .stream = cfg->stream,
        };

        if (c->cfg.provider == LLM_PROVIDER_SCRIPT) {
                if (isempty(c->cfg.script_path)) {
                        if (reterr)
                                *reterr = xstrdup("script provider needs a plan file");
                        return -EINVAL;
                }
                r = script_load(c, c->cfg.script_path, reterr);
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(c);
                return 0;
        }

        if (isempty(c->cfg.base_url) ||
            !(startswith(c->cfg.base_url, "http://") || startswith(c->cfg.base_url, "https://"))) {
                if (reterr)
                        *reterr = xstrdup("model base_url must be an http:// or https:// URL");
                return -EINVAL;
        }
        if (isempty(c->cfg.model)) {
                if (reterr)
                        *reterr = xstrdup("no model configured (set [model] model in config.toml or "
                                          "--model)");
                return -EINVAL;
        }
        if (!isempty(c->cfg.api_key)) {
                if (string_has_cc(c->cfg.api_key, NULL)) {
                        if (reterr)
                                *reterr = xstrdup("the model API key contains control characters");
                        return -EINVAL;
                }
                c->key = xstrdup(c->cfg.api_key);
        } else if (!isempty(c->cfg.api_key_env)) {
                const char *k = secure_getenv(c->cfg.api_key_env);
                if (isempty(k)) {
                        if (reterr)
                                *reterr = xasprintf(
                                        "environment variable %s (the model API key) is not set",
                                        c->cfg.api_key_env);
                        return -ENOKEY;
                }
                if (string_has_cc(k, NULL)) {
                        if (reterr)
                                *reterr = xasprintf(
                                        "environment variable %s contains control characters",
                                        c->cfg.api_key_env);
                        return -EINVAL;
                }
                c->key = xstrdup(k);
        }
        *ret = TAKE_PTR(c);
        return 0;
}

LlmClient *llm_client_free(LlmClient *c) {
        if (!c)
                return NULL;
        llm_config_done(&c->cfg);
        c->key = erase_and_free(c->key);
        json_decref(c->script_steps);
        free(c->script_final);
        return mfree(c);
}

void llm_client_set_interrupt(LlmClient *c, volatile sig_atomic_t *flag) {
        c->interrupt = flag;
}

void llm_client_set_deadline(LlmClient *c, uint64_t deadline_usec) {
        c->deadline = deadline_usec;
}

static int script_complete(LlmClient *c, json_t *messages, LlmTextFn on_text, void *userdata, LlmResponse *ret) {
        size_t turn = 0, i;
        json_t *m;

        json_array_foreach(messages, i, m)
                if (streq_ptr(json_string_value(json_object_get(m, "role")), "assistant"))
                        turn++;

        _cleanup_json_ json_t *calls = json_array();
        const char *text;
        if (turn < json_array_size(c->script_steps)) {
                json_t *step = json_array_get(c->script_steps, turn);
                json_t *args = json_object_get(step, "args");
                _cleanup_free_ char *id = xasprintf("script-%zu", turn + 1);
                text = json_string_value(json_object_get(step, "say")) ?: "";
                json_array_append_new(
                        calls,
                        json_pack(
                                "{s:s, s:s, s:O}",
                                "id",
                                id,
                                "name",
                                json_string_value(json_object_get(step, "tool")),
                                "input",
                                args ? args : json_object()));
        } else
                text = c->script_final;

        if (on_text && !isempty(text))
                on_text(text, strlen(text), userdata);
        *ret = (LlmResponse){
                .text = xstrdup(text),
                .stop_reason = xstrdup(json_array_size(calls) > 0 ? "tool_use" : "end"),
        };
        ret->tool_calls = TAKE_PTR(calls);
        return 0;
}

/* ---- HTTP ---- */

#define LLM_RETRY_BASE_USEC (1 * USEC_PER_SEC)
#define LLM_RETRY_MAX_USEC (30 * USEC_PER_SEC)

uint64_t llm_retry_delay(unsigned attempt, uint64_t retry_after_usec, double jitter) {
        if (retry_after_usec > 0)
                return retry_after_usec;
        uint64_t d = LLM_RETRY_MAX_USEC;
        if (attempt >= 1 && attempt <= 6)
                d = NUCLEUS_MIN(LLM_RETRY_BASE_USEC << (attempt - 1), LLM_RETRY_MAX_USEC);
        if (jitter < 0 || jitter >= 1)
                jitter = 0;
        return d - (uint64_t) ((double) (d / 4) * jitter);
}

bool llm_http_status_retryable(long status) {
        return status == 408 || status == 409 || status == 429 || (status >= 500 && status <= 599);
}

typedef struct Transfer {
        CURL *curl;
        LlmClient *client;
        SseParser *sse;
        LlmStream *stream;
        LlmTextFn on_text;
        void *userdata;
        char *body; /* non-SSE body, capped */
        size_t body_len;
        int mode;  /* 0 undecided, 1 SSE, 2 plain body */
        int error; /* first error from parsing, <0 */
        char *errmsg;
        size_t total;
        bool emitted;     /* text was passed on: the answer can no longer be retried */
        char refusal[16]; /* X-Nucleus-Refusal of the run's gateway ("budget", "deadline") */
        bool deadline_hit;
        bool idle_hit;
        uint64_t last_activity; /* CLOCK_MONOTONIC usec of the last byte (or the start) */
        curl_off_t last_dlnow;
} Transfer;

static void transfer_text(const char *text, size_t n, void *userdata) {
        Transfer *t = userdata;
        t->emitted = true;
        if (t->on_text)
                t->on_text(text, n, t->userdata);
}

static size_t header_cb(char *line, size_t size, size_t nmemb, void *userdata) {
        Transfer *t = userdata;
        size_t n = size * nmemb;
        static const char name[] = "x-nucleus-refusal:";
        if (n > strlen(name) && strncasecmp(line, name, strlen(name)) == 0) {
                const char *v = line + strlen(name);
                size_t l = n - strlen(name);
                while (l > 0 && (*v == ' ' || *v == '\t'))
                        v++, l--;
                while (l > 0 && (v[l - 1] == '\r' || v[l - 1] == '\n' || v[l - 1] == ' '))
                        l--;
                l = NUCLEUS_MIN(l, sizeof(t->refusal) - 1);
                memcpy(t->refusal, v, l);
                t->refusal[l] = 0;
        }
        return n;
}

static int on_sse_event(const char *event, const char *data, size_t n, void *userdata) {
        Transfer *t = userdata;
        return llm_stream_event(t->stream, event, data, n, &t->errmsg);
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Transfer *t = userdata;
        size_t n = size * nmemb;
        long code = 0;
        int r;

        t->last_activity = now_usec(CLOCK_MONOTONIC);
        if (t->mode == 0) {
                const char *ct = NULL;
                (void) curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
                (void) curl_easy_getinfo(t->curl, CURLINFO_CONTENT_TYPE, &ct);
                t->mode = (code >= 200 && code < 300 && ct && strstr(ct, "text/event-stream")) ? 1 : 2;
        }
        if (n > LLM_MAX_RESPONSE || t->total > LLM_MAX_RESPONSE - n) {
                t->error = -E2BIG;
                return 0;
        }
        t->total += n;
        if (t->mode == 1) {
                r = sse_parser_feed(t->sse, ptr, n);
                if (r < 0) {
                        t->error = r;
                        return 0;
                }
                return n;
        }
        t->body = xrealloc(t->body, t->body_len + n + 1);
        memcpy(t->body + t->body_len, ptr, n);
        t->body_len += n;
        t->body[t->body_len] = 0;
        return n;
}

/* Called by curl about once a second and on every transfer: interrupt, deadline and the idle
 * timeout (no answer byte for idle_timeout_ms, whether before the first byte or mid-stream). */
static int progress_cb(
        void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
        Transfer *t = userdata;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        if (t->client->interrupt && *t->client->interrupt)
                return 1;
        if (t->client->deadline > 0 && now >= t->client->deadline) {
                t->deadline_hit = true;
                return 1;
        }
        if (dlnow != t->last_dlnow) {
                t->last_dlnow = dlnow;
                t->last_activity = now;
        }
        if (now - t->last_activity >= t->client->cfg.idle_timeout_ms * USEC_PER_MSEC) {
                t->idle_hit = true;
                return 1;
        }
        return 0;
}

static char *endpoint_url(const LlmClient *c) {
        _cleanup_free_ char *base = xstrdup(c->cfg.base_url);
        size_t l = strlen(base);
        while (l > 0 && base[l - 1] == '/')
                base[--l] = 0;
        if (c->cfg.provider == LLM_PROVIDER_OPENAI)
                return xasprintf("%s/chat/completions", base);
        if (endswith(base, "/v1"))
                return xasprintf("%s/messages", base);
        return xasprintf("%s/v1/messages", base);
}

static void slist_erase_free(struct curl_slist *l) {
        for (struct curl_slist *i = l; i; i = i->next)
                explicit_bzero_safe(i->data, strlen(i->data));
        curl_slist_free_all(l);
}

/* One HTTP attempt. Returns as llm_client_complete(), plus -EAGAIN when the failure is
 * transient and nothing was shown yet (*ret_retry_after_usec: the server's Retry-After, 0 when
 * none). */
static int complete_once(
        LlmClient *c,
        const char *url,
        const char *body,
        struct curl_slist *hdrs,
        LlmTextFn on_text,
        void *userdata,
        LlmResponse *ret,
        uint64_t *ret_retry_after_usec,
        char **reterr) {
        _cleanup_(llm_stream_freep) LlmStream *stream = NULL;
        Transfer t = {
                .client = c,
                .on_text = on_text,
                .userdata = userdata,
                .last_activity = now_usec(CLOCK_MONOTONIC),
        };
        int r = 0;

        stream = llm_stream_new(c->cfg.provider, transfer_text, &t);
        t.stream = stream;
        t.curl = curl_easy_init();
        if (!t.curl)
                return -ENOMEM;
        t.sse = sse_parser_new(LLM_MAX_TOOL_ARGS * 2, on_sse_event, &t);

        /* The connect timeout never reaches past the deadline. */
        uint64_t connect_ms = c->cfg.connect_timeout_ms;
        if (c->deadline > 0) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                uint64_t left_ms = c->deadline > now ? (c->deadline - now) / USEC_PER_MSEC : 0;
                connect_ms = NUCLEUS_MAX(NUCLEUS_MIN(connect_ms, left_ms), (uint64_t) 1);
        }

        (void) curl_easy_setopt(t.curl, CURLOPT_URL, url);
        (void) curl_easy_setopt(t.curl, CURLOPT_PROTOCOLS_STR, "http,https");
        (void) curl_easy_setopt(t.curl, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(t.curl, CURLOPT_HTTPHEADER, hdrs);
        (void) curl_easy_setopt(t.curl, CURLOPT_POSTFIELDS, body);
        (void) curl_easy_setopt(t.curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(body));
        (void) curl_easy_setopt(t.curl, CURLOPT_HEADERFUNCTION, header_cb);
        (void) curl_easy_setopt(t.curl, CURLOPT_HEADERDATA, &t);
        (void) curl_easy_setopt(t.curl, CURLOPT_WRITEFUNCTION, write_cb);
        (void) curl_easy_setopt(t.curl, CURLOPT_WRITEDATA, &t);
        (void) curl_easy_setopt(t.curl, CURLOPT_NOPROGRESS, 0L);
        (void) curl_easy_setopt(t.curl, CURLOPT_XFERINFOFUNCTION, progress_cb);
        (void) curl_easy_setopt(t.curl, CURLOPT_XFERINFODATA, &t);
        (void) curl_easy_setopt(t.curl, CURLOPT_CONNECTTIMEOUT_MS, (long) connect_ms);
        (void) curl_easy_setopt(t.curl, CURLOPT_FOLLOWLOCATION, 0L);

        CURLcode cc = curl_easy_perform(t.curl);
        long code = 0;
        curl_off_t retry_after = 0;
        (void) curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &code);
        (void) curl_easy_getinfo(t.curl, CURLINFO_RETRY_AFTER, &retry_after);
        *ret_retry_after_usec = retry_after > 0 ? (uint64_t) retry_after * USEC_PER_SEC : 0;

        if (cc == CURLE_ABORTED_BY_CALLBACK && c->interrupt && *c->interrupt)
                r = -EINTR;
        else if (cc == CURLE_ABORTED_BY_CALLBACK && t.deadline_hit) {
                r = -ETIME;
                if (reterr)
                        *reterr = xstrdup("deadline reached while waiting for the model");
        } else if (cc == CURLE_ABORTED_BY_CALLBACK && t.idle_hit) {
                r = -ETIMEDOUT;
                if (reterr)
                        *reterr = xasprintf(
                                "the model sent nothing for %" PRIu64 " s (idle timeout; [model] "
                                "idle_timeout_seconds)",
                                c->cfg.idle_timeout_ms / 1000);
        } else if (t.error < 0) {
                r = t.error == -E2BIG ? -E2BIG : (t.error == -EIO || t.error == -EAGAIN ? t.error : -EBADMSG);
                if (reterr)
                        *reterr = t.errmsg ? TAKE_PTR(t.errmsg) : xstrdup("model answer exceeds a size cap");
        } else if (cc == CURLE_OPERATION_TIMEDOUT) {
                r = -ETIMEDOUT;
                if (reterr)
                        *reterr = xasprintf("connecting to %s timed out", url);
        } else if (cc != CURLE_OK) {
                r = -EIO;
                if (reterr)
                        *reterr = xasprintf("model request to %s failed: %s", url, curl_easy_strerror(cc));
        } else if (code < 200 || code >= 300) {
                r = streq(t.refusal, "budget")            ? -EDQUOT
                        : streq(t.refusal, "deadline")    ? -ETIME
                        : llm_http_status_retryable(code) ? -EAGAIN
                                                          : -EIO;
                if (reterr) {
                        _cleanup_free_ char *m = llm_error_message(t.body, t.body_len);
                        *reterr = xasprintf("model API answered HTTP %ld: %s", code, m);
                }
        } else if (t.mode == 1) {
                r = sse_parser_finish(t.sse);
                if (r < 0) {
                        if (r != -EAGAIN && r != -EIO)
                                r = -EBADMSG;
                        if (reterr)
                                *reterr = t.errmsg ? TAKE_PTR(t.errmsg) : xstrdup("malformed event stream");
                } else
                        r = llm_stream_finish(stream, ret, reterr);
        } else
                r = llm_parse_response(c->cfg.provider, t.body ? t.body : "", t.body_len, ret, reterr);

        /* Text already shown cannot be taken back: such an answer is not retried. */
        if (r == -EAGAIN && t.emitted)
                r = -EIO;
        if (r >= 0 && t.mode == 2 && on_text && !isempty(ret->text))
                on_text(ret->text, strlen(ret->text), userdata);

        curl_easy_cleanup(t.curl);
        sse_parser_free(t.sse);
        free(t.body);
        free(t.errmsg);
        return r;
}

/* Sleeps until `until` (CLOCK_MONOTONIC usec) in short steps; -EINTR when interrupted. */
static int retry_wait(LlmClient *c, uint64_t until) {
        for (;;) {
                if (c->interrupt && *c->interrupt)
                        return -EINTR;
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= until)
                        return 0;
                uint64_t step = NUCLEUS_MIN(until - now, 100 * USEC_PER_MSEC);
                struct timespec ts = { .tv_sec = (time_t) (step / USEC_PER_SEC),
                                       .tv_nsec = (long) (step % USEC_PER_SEC) * 1000 };
                (void) nanosleep(&ts, NULL);
        }
}

int llm_client_complete(
        LlmClient *c,
        const char *system,
        json_t *messages,
        json_t *tools,
        LlmTextFn on_text,
        void *userdata,
        LlmResponse *ret,
        char **reterr) {
        if (c->cfg.provider == LLM_PROVIDER_SCRIPT) {
                if (c->interrupt && *c->interrupt)
                        return -EINTR;
                return script_complete(c, messages, on_text, userdata, ret);
        }

        _cleanup_json_ json_t *req = c->cfg.provider == LLM_PROVIDER_ANTHROPIC
                ? llm_anthropic_build_request(
                          c->cfg.model, c->cfg.max_tokens, c->cfg.stream, system, messages, tools)
                : llm_openai_build_request(
                          c->cfg.model, c->cfg.max_tokens, c->cfg.stream, system, messages, tools);
        if (!req)
                return -EINVAL;
        _cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);
        _cleanup_free_ char *url = endpoint_url(c);
        struct curl_slist *hdrs = NULL;
        int r = 0;

        if (!body)
                return -ENOMEM;
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        hdrs = curl_slist_append(
                hdrs, c->cfg.stream ? "Accept: text/event-stream" : "Accept: application/json");
        if (c->cfg.provider == LLM_PROVIDER_ANTHROPIC) {
                hdrs = curl_slist_append(hdrs, "anthropic-version: 2023-06-01");
                if (c->key) {
                        _cleanup_(erase_and_freep) char *h = xasprintf("x-api-key: %s", c->key);
                        hdrs = curl_slist_append(hdrs, h);
                }
        } else if (c->key) {
                _cleanup_(erase_and_freep) char *h = xasprintf("Authorization: Bearer %s", c->key);
                hdrs = curl_slist_append(hdrs, h);
        }

        for (unsigned attempt = 1;; attempt++) {
                _cleanup_free_ char *err = NULL;
                uint64_t retry_after = 0;

                r = complete_once(c, url, body, hdrs, on_text, userdata, ret, &retry_after, &err);
                if (r != -EAGAIN) {
                        if (r < 0 && reterr)
                                *reterr = TAKE_PTR(err);
                        break;
                }
                if (attempt >= c->cfg.max_attempts) {
                        r = -EIO;
                        if (reterr)
                                *reterr = xasprintf(
                                        "%s (gave up after %u attempts)", err ? err : "model busy", attempt);
                        break;
                }
                uint32_t rnd = 0;
                if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t) sizeof(rnd))
                        rnd = 0;
                /* A day bounds any Retry-After the server may claim (no overflow below). */
                uint64_t delay = NUCLEUS_MIN(
                        llm_retry_delay(attempt, retry_after, (double) rnd / 4294967296.0),
                        (uint64_t) 86400 * USEC_PER_SEC);
                uint64_t until = now_usec(CLOCK_MONOTONIC) + delay;
                if (c->deadline > 0 && until >= c->deadline) {
                        r = -EIO;
                        if (reterr)
                                *reterr = xasprintf(
                                        "%s; retrying in %" PRIu64 " s would pass the deadline",
                                        err ? err : "model busy",
                                        (delay + USEC_PER_SEC - 1) / USEC_PER_SEC);
                        break;
                }
                log_notice(
                        "model busy (%s); retry %u of %u in %.1f s",
                        err ? err : "transient error",
                        attempt,
                        c->cfg.max_attempts - 1,
                        (double) delay / USEC_PER_SEC);
                r = retry_wait(c, until);
                if (r < 0)
                        break;
        }

        slist_erase_free(hdrs);
        return r;
}
