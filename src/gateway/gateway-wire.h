/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The model gateway's wire formats (docs/gateway.md): which requests an agent may send
 * (an allow list of endpoints, request fields, tool types and content blocks), the rewrite
 * before forwarding (output tokens capped, streamed usage requested), the usage in an answer
 * (streamed or whole), the budget bounds, and error bodies each kind of client understands.
 * No I/O here: everything is unit-tested and fuzzed. Requests come from the agent and answers
 * from the provider: both are untrusted.
 */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum GatewayFormat {
        GATEWAY_ANTHROPIC_MESSAGES, /* POST /v1/messages */
        GATEWAY_ANTHROPIC_COUNT,    /* POST /v1/messages/count_tokens (free, not metered) */
        GATEWAY_OPENAI_CHAT,        /* POST /v1/chat/completions */
        GATEWAY_OPENAI_RESPONSES,   /* POST /v1/responses */
        _GATEWAY_FORMAT_MAX,
        _GATEWAY_FORMAT_INVALID = -EINVAL,
} GatewayFormat;

const char *gateway_format_to_string(GatewayFormat f);

/* The endpoint path of a format ("/v1/messages", ...). */
const char *gateway_format_path(GatewayFormat f);

/* Which provider a format belongs to: true for the Anthropic formats. */
bool gateway_format_is_anthropic(GatewayFormat f);

/* The endpoint of a request. Returns the format, or -ENOENT (no such endpoint: the Files and
 * Batch APIs, model listing, anything else), -EPERM (an endpoint of the other provider than
 * the one configured). */
GatewayFormat gateway_route(bool anthropic, const char *method, const char *path);

/* Query parameters allowed on an endpoint (Claude Code sends "?beta=true"). */
bool gateway_query_allowed(GatewayFormat f, const char *key, const char *value);

/*
 * Check a request body against the allow lists and rewrite it for forwarding:
 *   - only known top-level fields; no provider-side tools (web search, web fetch, code
 *     execution, remote MCP servers, file search...), no references to files or to state
 *     stored at the provider (file ids, URL sources the provider would fetch,
 *     previous_response_id, conversation, stored prompts), no n > 1;
 *   - the output-token limit set to min(requested, max_out_cap), or max_out_cap when absent;
 *   - streamed Chat Completions get stream_options.include_usage = true (the usage chunk is
 *     how the gateway meters the answer).
 * Returns 0 with *ret_model (borrowed from req), *ret_max_out and *ret_stream, or -EPERM
 * (refused by the allow list) / -EINVAL (malformed) with *reterr naming the field.
 */
int gateway_request_check(
        GatewayFormat f,
        json_t *req,
        uint64_t max_out_cap,
        const char **ret_model,
        uint64_t *ret_max_out,
        bool *ret_stream,
        char **reterr);

/* Usage seen in an answer. complete: the answer's terminal event arrived (a whole JSON body
 * that parsed counts as complete). */
typedef struct GatewayUsage {
        uint64_t input_tokens;
        uint64_t output_tokens;
        uint64_t cache_write_tokens; /* Anthropic cache_creation_input_tokens */
        uint64_t cache_read_tokens;  /* Anthropic cache_read_input_tokens */
        bool have_usage;
        bool complete;
} GatewayUsage;

/* One SSE event of a streamed answer (event name, data). Malformed events are ignored (the
 * answer then settles at its reservation unless a later event completes it with usage). */
void gateway_usage_event(GatewayFormat f, GatewayUsage *u, const char *event, const char *data, size_t n);

/* A whole JSON answer. */
void gateway_usage_body(GatewayFormat f, GatewayUsage *u, const char *body, size_t n);

/* Tokens added by the provider beyond the request body (tool-use system prompts). */
#define GATEWAY_INPUT_OVERHEAD_TOKENS 4096U

/* Upper bound of a call's cost in micro-USD: the input bounded by the body size (a token
 * covers at least one byte) plus the overhead, all priced as cache writes (1.25 x input
 * price, the dearest input), and max_out output tokens. Prices in micro-USD per million
 * tokens. Saturates. *ret_input_tokens: the input bound in tokens. */
uint64_t gateway_reserve_bound(
        size_t body_bytes, uint64_t max_out, uint64_t price_in, uint64_t price_out, uint64_t *ret_input_tokens);

/* Cost of the usage: input at price_in, cache writes at 1.25x, cache reads at 0.1x, output at
 * price_out; rounded up. Saturates. */
uint64_t gateway_usage_cost(const GatewayUsage *u, uint64_t price_in, uint64_t price_out);

/* An error body in the format's own shape (Anthropic {"type":"error","error":{type,message}},
 * OpenAI {"error":{message,type,code}}). type: e.g. "invalid_request_error",
 * "authentication_error", "permission_error", "not_found_error"; code: OpenAI's code (may be
 * NULL). Returns a new string. */
char *gateway_error_body(bool anthropic, const char *type, const char *code, const char *message);
