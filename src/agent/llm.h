/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Model clients: OpenAI-compatible chat completions (OpenAI, Ollama, llama.cpp, vLLM, ...) and
 * Anthropic's Messages API, both with tool calling and streaming (SSE), over libcurl; plus the
 * deterministic "script" provider (--script PLAN.json). Model answers are untrusted input:
 * sizes are capped, tool arguments must parse as JSON objects.
 *
 * Conversation format (provider-neutral, a jansson array), converted per provider:
 *   {"role":"user","content":"text"}
 *   {"role":"assistant","content":"text","tool_calls":[{"id":"..","name":"..","input":{..}}]}
 *   {"role":"tool","tool_call_id":"..","name":"..","content":"text","is_error":bool}
 * Tools: [{"name":"..","description":"..","input_schema":{JSON Schema}}].
 */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef enum LlmProvider {
        LLM_PROVIDER_OPENAI,
        LLM_PROVIDER_ANTHROPIC,
        LLM_PROVIDER_SCRIPT,
        _LLM_PROVIDER_MAX,
        _LLM_PROVIDER_INVALID = -EINVAL,
} LlmProvider;

const char *llm_provider_to_string(LlmProvider p);
LlmProvider llm_provider_from_string(const char *s);

#define LLM_MAX_TEXT (4U * 1024U * 1024U)      /* assistant text per response, bytes */
#define LLM_MAX_TOOL_ARGS (1024U * 1024U)      /* one tool call's JSON arguments, bytes */
#define LLM_MAX_TOOL_CALLS 64U                 /* tool calls per response */
#define LLM_MAX_RESPONSE (16U * 1024U * 1024U) /* whole HTTP response body, bytes */

typedef struct LlmConfig {
        LlmProvider provider;
        char *base_url;      /* OpenAI: ".../v1" (POST base/chat/completions); Anthropic: host root
                                or ".../v1" (POST .../v1/messages) */
        char *model;         /* model name sent to the API */
        char *api_key_env;   /* NAME of the environment variable holding the key; NULL: no key */
        char *api_key;       /* the key itself (a run's gateway token); wins over api_key_env; erased by
                                llm_config_done() */
        uint32_t max_tokens; /* per response; 0: provider default (4096) */
        uint64_t connect_timeout_ms; /* to open the connection; 0: 30000; never past the deadline */
        uint64_t idle_timeout_ms;    /* longest silence while waiting for answer bytes; 0: 120000 */
        unsigned max_attempts;       /* tries per turn for transient failures (429, 5xx, overloaded);
                                        0: 6; retries never go past the deadline */
        char *script_path;           /* LLM_PROVIDER_SCRIPT only */
        bool stream;                 /* ask for SSE (default true) */
} LlmConfig;

void llm_config_done(LlmConfig *c);

typedef struct LlmResponse {
        char *text; /* assistant text ("" when none); never NULL after success */
        /* array of {"id","name","input"}; never NULL after success. A call whose arguments were
         * not a JSON object has input {} and "invalid_arguments" (a message for the model): it
         * must not be performed, only answered with that error. */
        json_t *tool_calls;
        uint64_t input_tokens; /* as reported by the API (0 when not reported) */
        uint64_t output_tokens;
        char *stop_reason; /* provider's word, normalized: "end", "tool_use", "max_tokens", or raw */
} LlmResponse;

void llm_response_done(LlmResponse *r);

/* Called with each piece of assistant text as it arrives (not NUL-terminated). */
typedef void (*LlmTextFn)(const char *text, size_t n, void *userdata);

typedef struct LlmClient LlmClient;

/* Arguments: cfg is copied. The API key is read from the environment variable cfg->api_key_env
 *   (secure_getenv) now, kept in memory only, erased on free; it is never logged.
 * Returns: 0, -EINVAL (bad config; *reterr says what), -ENOKEY (the named variable is unset
 *   or empty), or the script loader's error. */
int llm_client_new(const LlmConfig *cfg, LlmClient **ret, char **reterr);
LlmClient *llm_client_free(LlmClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(LlmClient *, llm_client_free);

/* Point the client at a flag polled during transfers: when it becomes non-zero the request
 * is aborted and llm_client_complete() returns -EINTR. */
void llm_client_set_interrupt(LlmClient *c, volatile sig_atomic_t *flag);

/* Abort requests still running at this CLOCK_MONOTONIC time (usec; 0: none); they return
 * -ETIME. */
void llm_client_set_deadline(LlmClient *c, uint64_t deadline_usec);

/* One model turn. HTTP 429 and 5xx answers and "overloaded"/rate-limit errors (as an HTTP
 * body or a stream's error event before any text) are retried with exponential backoff
 * (1 s doubling to 30 s, with jitter), or after the server's Retry-After when it sends one, up
 * to max_attempts, and never past the deadline: a wait that would cross it gives up at once.
 * Arguments: system prompt (may be NULL), messages and tools in the neutral format (not
 *   consumed), on_text for streamed text (may be NULL).
 * A refusal from the run's model gateway (header X-Nucleus-Refusal) is not retried: "budget"
 * returns -EDQUOT, "deadline" -ETIME.
 * Returns: 0 and *ret filled; -EINTR (interrupted), -ETIME (deadline), -ETIMEDOUT (connect or
 *   idle timeout), -EIO (transport or HTTP error, or retries exhausted; *reterr carries the
 *   status and the API's error message), -EBADMSG (unparseable or cut-off answer), -E2BIG
 *   (answer over a cap). On failure *ret is untouched. */
int llm_client_complete(
        LlmClient *c,
        const char *system,
        json_t *messages,
        json_t *tools,
        LlmTextFn on_text,
        void *userdata,
        LlmResponse *ret,
        char **reterr);

/* ---- Provider internals, exposed for unit tests and the fuzzer. ---- */

/* Request bodies (new reference). */
json_t *llm_openai_build_request(
        const char *model, uint32_t max_tokens, bool stream, const char *system, json_t *messages, json_t *tools);
json_t *llm_anthropic_build_request(
        const char *model, uint32_t max_tokens, bool stream, const char *system, json_t *messages, json_t *tools);

/* Streaming accumulator: feed it SSE events, then finish into an LlmResponse. */
typedef struct LlmStream LlmStream;
LlmStream *llm_stream_new(LlmProvider provider, LlmTextFn on_text, void *userdata);
LlmStream *llm_stream_free(LlmStream *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(LlmStream *, llm_stream_free);
/* Returns 0, -EBADMSG (malformed event; *reterr), -E2BIG (cap), -EIO (the API sent an error
 * event; *reterr carries its message), -EAGAIN (the error says overloaded or rate limited). */
int llm_stream_event(LlmStream *s, const char *event, const char *data, size_t n, char **reterr);
/* Returns 0 and fills *ret, or -EBADMSG when the stream ended before its terminal event
 * ("[DONE]" / message_stop) or a tool call has no name. */
int llm_stream_finish(LlmStream *s, LlmResponse *ret, char **reterr);

/* Non-streaming answers (a whole JSON body). Same return values as llm_stream_finish(). */
int llm_parse_response(LlmProvider provider, const char *body, size_t n, LlmResponse *ret, char **reterr);

/* The wait before retry number `attempt` (1 = the first retry), usec: the server's
 * Retry-After when it gave one (retry_after_usec > 0), else 1 s doubling per attempt up to 30 s,
 * minus up to a quarter at random (jitter in [0, 1)). */
uint64_t llm_retry_delay(unsigned attempt, uint64_t retry_after_usec, double jitter);

/* Whether an HTTP status is worth retrying: 408, 409, 429 and 5xx (529 is "overloaded"). */
bool llm_http_status_retryable(long status);

/* A readable message for an HTTP error body ({"error":{"message":..}} or {"error":".."}),
 * made visible and capped. Never NULL. */
char *llm_error_message(const char *body, size_t n);
