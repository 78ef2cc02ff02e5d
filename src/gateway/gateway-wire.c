/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Allow lists and usage accounting of the model gateway (see gateway-wire.h). The allow
 * lists name what may pass; anything else is refused with the field named, so a new provider
 * feature stays closed until someone decides it cannot leave through the provider.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "alloc-util.h"
#include "gateway-wire.h"
#include "json-util.h"
#include "macro.h"
#include "string-util.h"

#define GATEWAY_MAX_BODY (64U * 1024U * 1024U)

static const char *const gateway_format_table[_GATEWAY_FORMAT_MAX] = {
        [GATEWAY_ANTHROPIC_MESSAGES] = "anthropic-messages",
        [GATEWAY_ANTHROPIC_COUNT] = "anthropic-count-tokens",
        [GATEWAY_OPENAI_CHAT] = "openai-chat",
        [GATEWAY_OPENAI_RESPONSES] = "openai-responses",
};

const char *gateway_format_to_string(GatewayFormat f) {
        return f >= 0 && f < _GATEWAY_FORMAT_MAX ? gateway_format_table[f] : NULL;
}

static const char *const gateway_path_table[_GATEWAY_FORMAT_MAX] = {
        [GATEWAY_ANTHROPIC_MESSAGES] = "/v1/messages",
        [GATEWAY_ANTHROPIC_COUNT] = "/v1/messages/count_tokens",
        [GATEWAY_OPENAI_CHAT] = "/v1/chat/completions",
        [GATEWAY_OPENAI_RESPONSES] = "/v1/responses",
};

const char *gateway_format_path(GatewayFormat f) {
        return f >= 0 && f < _GATEWAY_FORMAT_MAX ? gateway_path_table[f] : "";
}

bool gateway_format_is_anthropic(GatewayFormat f) {
        return f == GATEWAY_ANTHROPIC_MESSAGES || f == GATEWAY_ANTHROPIC_COUNT;
}

GatewayFormat gateway_route(bool anthropic, const char *method, const char *path) {
        GatewayFormat f = _GATEWAY_FORMAT_INVALID;

        if (!streq_ptr(method, "POST") || !path)
                return -ENOENT;
        for (GatewayFormat i = 0; i < _GATEWAY_FORMAT_MAX; i++)
                if (streq(path, gateway_path_table[i]))
                        f = i;
        if (f < 0)
                return -ENOENT;
        if (gateway_format_is_anthropic(f) != anthropic)
                return -EPERM;
        return f;
}

bool gateway_query_allowed(GatewayFormat f, const char *key, const char *value) {
        return gateway_format_is_anthropic(f) && streq_ptr(key, "beta") && streq_ptr(value, "true");
}

static _printf_(3, 4) int refuse(char **reterr, int r, const char *fmt, ...) {
        if (reterr) {
                va_list ap;
                va_start(ap, fmt);
                _cleanup_free_ char *raw = xvasprintf(fmt, ap);
                va_end(ap);
                free(*reterr);
                *reterr = string_make_visible(raw);
        }
        return r;
}

static bool in_list(const char *s, const char *const *list) {
        for (; *list; list++)
                if (streq_ptr(s, *list))
                        return true;
        return false;
}

static const char *jstr(json_t *o, const char *k) {
        json_t *v = json_object_get(o, k);
        return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Top-level fields refused with a reason (the rest of the unknown ones get a generic one). */
static const char *refused_field_reason(const char *k) {
        static const struct {
                const char *field, *why;
        } table[] = {
                { "mcp_servers",
                  "remote MCP servers are called by the provider, around the pod's egress policy" },
                { "container", "code-execution containers run at the provider" },
                { "web_search_options", "web search runs at the provider, around the pod's egress policy" },
                { "previous_response_id",
                  "state stored at the provider cannot be bounded by the request size (send the whole "
                  "input)" },
                { "conversation",
                  "state stored at the provider cannot be bounded by the request size (send the whole "
                  "input)" },
                { "prompt", "stored prompts live at the provider (send the whole input)" },
                { "background", "background responses outlive the run" },
                { "functions", "the legacy functions field (use tools)" },
                { "audio", "audio output has no price configured" },
                { "modalities", "only text output is metered" },
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (streq(k, table[i].field))
                        return table[i].why;
        return NULL;
}

static int check_fields(json_t *req, const char *const *allowed, char **reterr) {
        const char *k;
        json_t *v;
        json_object_foreach(req, k, v) {
                if (in_list(k, allowed))
                        continue;
                const char *why = refused_field_reason(k);
                if (why)
                        return refuse(reterr, -EPERM, "field \"%s\" is refused: %s", k, why);
                return refuse(reterr, -EPERM, "field \"%s\" is not on the gateway's allow list", k);
        }
        return 0;
}

/* Client-side tools only: the agent runs them (through the pod). */
static int check_tools_level(
        json_t *tools, const char *const *types, bool type_optional, bool nested, char **reterr) {
        json_t *t;
        size_t i;
        if (!tools)
                return 0;
        if (!json_is_array(tools))
                return refuse(reterr, -EINVAL, "\"tools\" must be an array");
        json_array_foreach(tools, i, t) {
                if (!json_is_object(t))
                        return refuse(reterr, -EINVAL, "tools[%zu] must be an object", i);
                const char *type = jstr(t, "type");
                if (!type && type_optional)
                        continue;
                /* Codex groups an MCP server's tools in a namespace: allowed when everything
                 * inside it is (one level, no namespace in a namespace). */
                if (streq_ptr(type, "namespace") && in_list("function", types) && !nested) {
                        int r = check_tools_level(json_object_get(t, "tools"), types, false, true, reterr);
                        if (r < 0)
                                return r;
                        if (!json_is_array(json_object_get(t, "tools")))
                                return refuse(
                                        reterr, -EINVAL, "tools[%zu]: a namespace needs a \"tools\" array", i);
                        continue;
                }
                if (!in_list(type, types))
                        return refuse(
                                reterr,
                                -EPERM,
                                "tools[%zu]: tool type \"%s\" runs at the provider (outside the pod's "
                                "egress "
                                "policy) and is refused; only tools the agent runs itself are allowed",
                                i,
                                type ?: "(none)");
        }
        return 0;
}

static int check_tools(json_t *tools, const char *const *types, bool type_optional, char **reterr) {
        return check_tools_level(tools, types, type_optional, false, reterr);
}

/* A media source the provider would not fetch: inline data only. */
static int check_source(json_t *src, const char *where, char **reterr) {
        static const char *const ok[] = { "base64", "text", "content", NULL };
        if (!src)
                return 0;
        const char *t = jstr(src, "type");
        if (!in_list(t, ok))
                return refuse(
                        reterr,
                        -EPERM,
                        "%s: source type \"%s\" is refused (the provider would fetch a URL or read a stored "
                        "file); send the data inline",
                        where,
                        t ?: "(none)");
        return 0;
}

static int check_anthropic_blocks(json_t *content, const char *where, int depth, char **reterr) {
        static const char *const ok[] = { "text",        "image",    "document",          "tool_use",
                                          "tool_result", "thinking", "redacted_thinking", NULL };
        json_t *b;
        size_t i;
        int r;

        if (json_is_string(content) || !content)
                return 0;
        if (!json_is_array(content) || depth > 2)
                return refuse(reterr, -EINVAL, "%s: content must be a string or an array of blocks", where);
        json_array_foreach(content, i, b) {
                const char *t = jstr(b, "type");
                if (!json_is_object(b) || !in_list(t, ok))
                        return refuse(
                                reterr,
                                -EPERM,
                                "%s[%zu]: content block type \"%s\" is not on the gateway's allow list",
                                where,
                                i,
                                t ?: "(none)");
                r = check_source(json_object_get(b, "source"), where, reterr);
                if (r < 0)
                        return r;
                if (streq(t, "tool_result")) {
                        r = check_anthropic_blocks(json_object_get(b, "content"), where, depth + 1, reterr);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int check_anthropic(GatewayFormat f, json_t *req, char **reterr) {
        static const char *const fields[] = { "model",         "messages",      "system",
                                              "max_tokens",    "metadata",      "stop_sequences",
                                              "stream",        "temperature",   "top_k",
                                              "top_p",         "tools",         "tool_choice",
                                              "thinking",      "service_tier",  "context_management",
                                              "output_format", "output_config", NULL };
        static const char *const count_fields[] = {
                "model", "messages", "system", "tools", "tool_choice", "thinking", "context_management", NULL
        };
        static const char *const tool_types[] = { "custom", NULL };
        json_t *m;
        size_t i;
        int r;

        r = check_fields(req, f == GATEWAY_ANTHROPIC_COUNT ? count_fields : fields, reterr);
        if (r < 0)
                return r;
        r = check_tools(json_object_get(req, "tools"), tool_types, true, reterr);
        if (r < 0)
                return r;
        if (!json_is_array(json_object_get(req, "messages")))
                return refuse(reterr, -EINVAL, "\"messages\" must be an array");
        r = check_anthropic_blocks(json_object_get(req, "system"), "system", 0, reterr);
        if (r < 0)
                return r;
        json_array_foreach(json_object_get(req, "messages"), i, m) {
                char where[48];
                (void) snprintf(where, sizeof(where), "messages[%zu].content", i);
                r = check_anthropic_blocks(json_object_get(m, "content"), where, 0, reterr);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* An image the provider would fetch from a URL is refused; data: URLs are inline. */
static int check_image_url(json_t *v, const char *where, char **reterr) {
        const char *url = json_is_string(v) ? json_string_value(v) : jstr(v, "url");
        if (!url || !startswith(url, "data:"))
                return refuse(
                        reterr,
                        -EPERM,
                        "%s: only inline images (data: URLs) are allowed; the provider would fetch any "
                        "other URL or stored file",
                        where);
        return 0;
}

static int check_openai_parts(json_t *content, const char *const *types, const char *where, char **reterr) {
        json_t *p;
        size_t i;
        int r;

        if (!content || json_is_string(content) || json_is_null(content))
                return 0;
        if (!json_is_array(content))
                return refuse(reterr, -EINVAL, "%s: content must be a string or an array of parts", where);
        json_array_foreach(content, i, p) {
                const char *t = jstr(p, "type");
                if (!json_is_object(p) || !in_list(t, types))
                        return refuse(
                                reterr,
                                -EPERM,
                                "%s[%zu]: content part type \"%s\" is not on the gateway's allow list",
                                where,
                                i,
                                t ?: "(none)");
                if (streq(t, "image_url")) {
                        r = check_image_url(json_object_get(p, "image_url"), where, reterr);
                        if (r < 0)
                                return r;
                } else if (streq(t, "input_image")) {
                        if (json_object_get(p, "file_id"))
                                return refuse(reterr, -EPERM, "%s: stored files (file_id) are refused", where);
                        r = check_image_url(json_object_get(p, "image_url"), where, reterr);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int check_openai_chat(json_t *req, char **reterr) {
        static const char *const fields[] = {
                "model",
                "messages",
                "max_tokens",
                "max_completion_tokens",
                "stream",
                "stream_options",
                "temperature",
                "top_p",
                "n",
                "stop",
                "tools",
                "tool_choice",
                "parallel_tool_calls",
                "response_format",
                "seed",
                "user",
                "frequency_penalty",
                "presence_penalty",
                "logit_bias",
                "logprobs",
                "top_logprobs",
                "reasoning_effort",
                "verbosity",
                "prompt_cache_key",
                "safety_identifier",
                "metadata",
                "store",
                "service_tier",
                NULL,
        };
        static const char *const tool_types[] = { "function", "custom", NULL };
        static const char *const parts[] = { "text", "image_url", "refusal", NULL };
        json_t *m, *n;
        size_t i;
        int r;

        r = check_fields(req, fields, reterr);
        if (r < 0)
                return r;
        n = json_object_get(req, "n");
        if (n && !(json_is_integer(n) && json_integer_value(n) == 1))
                return refuse(reterr, -EPERM, "\"n\" must be 1 (each choice is billed)");
        r = check_tools(json_object_get(req, "tools"), tool_types, false, reterr);
        if (r < 0)
                return r;
        if (!json_is_array(json_object_get(req, "messages")))
                return refuse(reterr, -EINVAL, "\"messages\" must be an array");
        json_array_foreach(json_object_get(req, "messages"), i, m) {
                char where[48];
                (void) snprintf(where, sizeof(where), "messages[%zu].content", i);
                if (!json_is_object(m))
                        return refuse(reterr, -EINVAL, "messages[%zu] must be an object", i);
                r = check_openai_parts(json_object_get(m, "content"), parts, where, reterr);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_openai_responses(json_t *req, char **reterr) {
        static const char *const fields[] = {
                "model",
                "input",
                "instructions",
                "max_output_tokens",
                "stream",
                "stream_options",
                "tools",
                "tool_choice",
                "parallel_tool_calls",
                "temperature",
                "top_p",
                "reasoning",
                "text",
                "store",
                "include",
                "metadata",
                "prompt_cache_key",
                "service_tier",
                "truncation",
                "user",
                "safety_identifier",
                "client_metadata",
                NULL,
        };
        static const char *const tool_types[] = { "function", "custom", NULL };
        static const char *const items[] = { "message",   "function_call",    "function_call_output",
                                             "reasoning", "custom_tool_call", "custom_tool_call_output",
                                             NULL };
        static const char *const parts[] = { "input_text", "output_text", "input_image", "refusal", NULL };
        json_t *input, *it;
        size_t i;
        int r;

        r = check_fields(req, fields, reterr);
        if (r < 0)
                return r;
        r = check_tools(json_object_get(req, "tools"), tool_types, false, reterr);
        if (r < 0)
                return r;
        input = json_object_get(req, "input");
        if (!input || json_is_string(input))
                return 0;
        if (!json_is_array(input))
                return refuse(reterr, -EINVAL, "\"input\" must be a string or an array of items");
        json_array_foreach(input, i, it) {
                char where[48];
                if (!json_is_object(it))
                        return refuse(reterr, -EINVAL, "input[%zu] must be an object", i);
                const char *t = jstr(it, "type");
                if (!t && json_object_get(it, "role"))
                        t = "message";
                if (!in_list(t, items))
                        return refuse(
                                reterr,
                                -EPERM,
                                "input[%zu]: item type \"%s\" is not on the gateway's allow list",
                                i,
                                t ?: "(none)");
                (void) snprintf(where, sizeof(where), "input[%zu].content", i);
                if (streq(t, "message")) {
                        r = check_openai_parts(json_object_get(it, "content"), parts, where, reterr);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* Caps the output-token field at cap (or sets it); returns the effective limit. */
static int cap_field(json_t *req, const char *field, uint64_t cap, uint64_t *ret, char **reterr) {
        json_t *v = json_object_get(req, field);
        if (!v)
                return 0;
        if (!json_is_integer(v) || json_integer_value(v) <= 0)
                return refuse(reterr, -EINVAL, "\"%s\" must be a positive integer", field);
        uint64_t want = (uint64_t) json_integer_value(v);
        if (want > cap) {
                json_object_set_new(req, field, json_integer((json_int_t) cap));
                want = cap;
        }
        *ret = want;
        return 1;
}

int gateway_request_check(
        GatewayFormat f,
        json_t *req,
        uint64_t max_out_cap,
        const char **ret_model,
        uint64_t *ret_max_out,
        bool *ret_stream,
        char **reterr) {
        uint64_t max_out = 0;
        int r;

        if (!json_is_object(req))
                return refuse(reterr, -EINVAL, "the request body must be a JSON object");
        const char *model = jstr(req, "model");
        if (isempty(model))
                return refuse(reterr, -EINVAL, "\"model\" is missing");
        json_t *stream = json_object_get(req, "stream");
        if (stream && !json_is_boolean(stream))
                return refuse(reterr, -EINVAL, "\"stream\" must be true or false");
        if (max_out_cap == 0 || max_out_cap > INT32_MAX)
                max_out_cap = INT32_MAX;

        switch (f) {
        case GATEWAY_ANTHROPIC_MESSAGES:
                r = check_anthropic(f, req, reterr);
                if (r < 0)
                        return r;
                if (!json_object_get(req, "max_tokens"))
                        return refuse(reterr, -EINVAL, "\"max_tokens\" is missing");
                r = cap_field(req, "max_tokens", max_out_cap, &max_out, reterr);
                break;
        case GATEWAY_ANTHROPIC_COUNT:
                r = check_anthropic(f, req, reterr);
                break;
        case GATEWAY_OPENAI_CHAT:
                r = check_openai_chat(req, reterr);
                if (r < 0)
                        return r;
                r = cap_field(req, "max_completion_tokens", max_out_cap, &max_out, reterr);
                if (r >= 0) {
                        uint64_t legacy = 0;
                        int r2 = cap_field(req, "max_tokens", max_out_cap, &legacy, reterr);
                        if (r2 < 0)
                                return r2;
                        if (r2 > 0 && (r == 0 || legacy < max_out))
                                max_out = legacy;
                        if (r == 0 && r2 == 0) {
                                json_object_set_new(req, "max_tokens", json_integer((json_int_t) max_out_cap));
                                max_out = max_out_cap;
                        }
                }
                if (r >= 0 && json_is_true(stream)) {
                        json_t *so = json_object_get(req, "stream_options");
                        if (so && !json_is_object(so))
                                return refuse(reterr, -EINVAL, "\"stream_options\" must be an object");
                        if (!so) {
                                so = json_object();
                                json_object_set_new(req, "stream_options", so);
                        }
                        json_object_set_new(so, "include_usage", json_true());
                }
                break;
        case GATEWAY_OPENAI_RESPONSES:
                r = check_openai_responses(req, reterr);
                if (r < 0)
                        return r;
                r = cap_field(req, "max_output_tokens", max_out_cap, &max_out, reterr);
                if (r == 0) {
                        json_object_set_new(req, "max_output_tokens", json_integer((json_int_t) max_out_cap));
                        max_out = max_out_cap;
                }
                break;
        default:
                return refuse(reterr, -EINVAL, "unknown format");
        }
        if (r < 0)
                return r;
        *ret_model = jstr(req, "model");
        *ret_max_out = max_out;
        *ret_stream = json_is_true(stream);
        return 0;
}

/* ---- usage ---- */

static void take(json_t *o, const char *k, uint64_t *dst, bool *have) {
        json_t *v = json_object_get(o, k);
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
                *dst = (uint64_t) json_integer_value(v);
                *have = true;
        }
}

static void usage_anthropic(GatewayUsage *u, json_t *usage) {
        if (!json_is_object(usage))
                return;
        take(usage, "input_tokens", &u->input_tokens, &u->have_usage);
        take(usage, "output_tokens", &u->output_tokens, &u->have_usage);
        take(usage, "cache_creation_input_tokens", &u->cache_write_tokens, &u->have_usage);
        take(usage, "cache_read_input_tokens", &u->cache_read_tokens, &u->have_usage);
}

static void usage_openai(GatewayUsage *u, json_t *usage) {
        if (!json_is_object(usage))
                return;
        /* Chat Completions names; the Responses API uses input_tokens/output_tokens. */
        take(usage, "prompt_tokens", &u->input_tokens, &u->have_usage);
        take(usage, "completion_tokens", &u->output_tokens, &u->have_usage);
        take(usage, "input_tokens", &u->input_tokens, &u->have_usage);
        take(usage, "output_tokens", &u->output_tokens, &u->have_usage);
}

void gateway_usage_event(GatewayFormat f, GatewayUsage *u, const char *event, const char *data, size_t n) {
        _cleanup_json_ json_t *j = NULL;

        if (f == GATEWAY_OPENAI_CHAT && n == 6 && memcmp(data, "[DONE]", 6) == 0) {
                u->complete = true;
                return;
        }
        if (json_parse_strict(data, n, GATEWAY_MAX_BODY, &j, NULL) < 0 || !json_is_object(j))
                return;
        const char *type = jstr(j, "type");
        switch (f) {
        case GATEWAY_ANTHROPIC_MESSAGES:
                if (streq_ptr(type, "message_start"))
                        usage_anthropic(u, json_object_get(json_object_get(j, "message"), "usage"));
                else if (streq_ptr(type, "message_delta"))
                        usage_anthropic(u, json_object_get(j, "usage"));
                else if (streq_ptr(type, "message_stop"))
                        u->complete = true;
                break;
        case GATEWAY_OPENAI_CHAT:
                usage_openai(u, json_object_get(j, "usage"));
                break;
        case GATEWAY_OPENAI_RESPONSES:
                if (streq_ptr(type, "response.completed") || streq_ptr(type, "response.incomplete") ||
                    streq_ptr(type, "response.failed")) {
                        usage_openai(u, json_object_get(json_object_get(j, "response"), "usage"));
                        u->complete = true;
                }
                break;
        default:
                break;
        }
}

void gateway_usage_body(GatewayFormat f, GatewayUsage *u, const char *body, size_t n) {
        _cleanup_json_ json_t *j = NULL;

        if (json_parse_strict(body, n, GATEWAY_MAX_BODY, &j, NULL) < 0 || !json_is_object(j))
                return;
        if (gateway_format_is_anthropic(f))
                usage_anthropic(u, json_object_get(j, "usage"));
        else
                usage_openai(u, json_object_get(j, "usage"));
        u->complete = true;
}

/* ceil(tokens * price / 10^6), saturating. */
static uint64_t tokens_cost(uint64_t tokens, uint64_t price_per_mtok) {
        unsigned __int128 c = (unsigned __int128) tokens * price_per_mtok;
        c = (c + 999999) / 1000000;
        return c > UINT64_MAX ? UINT64_MAX : (uint64_t) c;
}

static uint64_t add_sat(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t gateway_reserve_bound(
        size_t body_bytes, uint64_t max_out, uint64_t price_in, uint64_t price_out, uint64_t *ret_input_tokens) {
        uint64_t in = add_sat((uint64_t) body_bytes, GATEWAY_INPUT_OVERHEAD_TOKENS);
        uint64_t write_price = add_sat(price_in, price_in / 4 + (price_in % 4 != 0));
        if (ret_input_tokens)
                *ret_input_tokens = in;
        return add_sat(tokens_cost(in, write_price), tokens_cost(max_out, price_out));
}

uint64_t gateway_usage_cost(const GatewayUsage *u, uint64_t price_in, uint64_t price_out) {
        uint64_t write_price = add_sat(price_in, price_in / 4 + (price_in % 4 != 0));
        uint64_t read_price = price_in / 10 + (price_in % 10 != 0);
        uint64_t c = tokens_cost(u->input_tokens, price_in);
        c = add_sat(c, tokens_cost(u->cache_write_tokens, write_price));
        c = add_sat(c, tokens_cost(u->cache_read_tokens, read_price));
        return add_sat(c, tokens_cost(u->output_tokens, price_out));
}

char *gateway_error_body(bool anthropic, const char *type, const char *code, const char *message) {
        _cleanup_json_ json_t *j = NULL;
        if (anthropic)
                j = json_pack(
                        "{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", type, "message", message);
        else
                j = json_pack("{s:{s:s, s:s, s:s?}}", "error", "message", message, "type", type, "code", code);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        return s ? s : xstrdup("{\"error\":{\"message\":\"error\"}}");
}
