/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Wire formats of the two model APIs: request bodies from the neutral conversation, streamed
 * SSE events and whole JSON answers back into an LlmResponse. Everything parsed here comes
 * from the network and is untrusted: sizes capped, types checked, tool arguments must be JSON
 * objects.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "alloc-util.h"
#include "json-util.h"
#include "llm.h"
#include "string-util.h"

#define LLM_DEFAULT_MAX_TOKENS 4096U

static const char *json_str(json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);
        return json_is_string(v) ? json_string_value(v) : NULL;
}

static char *input_to_string(json_t *input) {
        char *s = json_dumps(input ? input : json_object(), JSON_COMPACT);
        return s ? s : xstrdup("{}");
}

/* ---- OpenAI chat completions ---- */

json_t *llm_openai_build_request(
        const char *model, uint32_t max_tokens, bool stream, const char *system, json_t *messages, json_t *tools) {
        json_t *msgs = json_array();
        size_t i;
        json_t *m;

        if (!isempty(system))
                json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", system));

        json_array_foreach(messages, i, m) {
                const char *role = json_str(m, "role");
                const char *content = json_str(m, "content");
                if (streq_ptr(role, "user"))
                        json_array_append_new(
                                msgs,
                                json_pack("{s:s, s:s}", "role", "user", "content", content ? content : ""));
                else if (streq_ptr(role, "assistant")) {
                        json_t *o = json_pack("{s:s}", "role", "assistant");
                        json_t *calls = json_object_get(m, "tool_calls");
                        if (!isempty(content) || json_array_size(calls) == 0)
                                json_object_set_new(o, "content", json_string(content ? content : ""));
                        else
                                json_object_set_new(o, "content", json_null());
                        if (json_array_size(calls) > 0) {
                                json_t *tc = json_array(), *c;
                                size_t j;
                                json_array_foreach(calls, j, c) {
                                        _cleanup_free_ char *args = input_to_string(
                                                json_object_get(c, "input"));
                                        json_array_append_new(
                                                tc,
                                                json_pack(
                                                        "{s:s, s:s, s:{s:s, s:s}}",
                                                        "id",
                                                        json_str(c, "id") ?: "",
                                                        "type",
                                                        "function",
                                                        "function",
                                                        "name",
                                                        json_str(c, "name") ?: "",
                                                        "arguments",
                                                        args));
                                }
                                json_object_set_new(o, "tool_calls", tc);
                        }
                        json_array_append_new(msgs, o);
                } else if (streq_ptr(role, "tool"))
                        json_array_append_new(
                                msgs,
                                json_pack(
                                        "{s:s, s:s, s:s}",
                                        "role",
                                        "tool",
                                        "tool_call_id",
                                        json_str(m, "tool_call_id") ?: "",
                                        "content",
                                        content ? content : ""));
        }

        json_t *req = json_pack(
                "{s:s, s:o, s:I, s:b}",
                "model",
                model ? model : "",
                "messages",
                msgs,
                "max_tokens",
                (json_int_t) (max_tokens ? max_tokens : LLM_DEFAULT_MAX_TOKENS),
                "stream",
                stream);
        if (stream)
                json_object_set_new(req, "stream_options", json_pack("{s:b}", "include_usage", 1));
        if (json_array_size(tools) > 0) {
                json_t *ts = json_array(), *t;
                json_array_foreach(tools, i, t)
                        json_array_append_new(
                                ts,
                                json_pack(
                                        "{s:s, s:{s:s, s:s, s:O}}",
                                        "type",
                                        "function",
                                        "function",
                                        "name",
                                        json_str(t, "name") ?: "",
                                        "description",
                                        json_str(t, "description") ?: "",
                                        "parameters",
                                        json_object_get(t, "input_schema")));
                json_object_set_new(req, "tools", ts);
                json_object_set_new(req, "tool_choice", json_string("auto"));
        }
        return req;
}

/* ---- Anthropic Messages ---- */

json_t *llm_anthropic_build_request(
        const char *model, uint32_t max_tokens, bool stream, const char *system, json_t *messages, json_t *tools) {
        json_t *msgs = json_array();
        json_t *pending_results = NULL; /* consecutive tool results merge into one user turn */
        size_t i;
        json_t *m;

        json_array_foreach(messages, i, m) {
                const char *role = json_str(m, "role");
                const char *content = json_str(m, "content");

                if (!streq_ptr(role, "tool") && pending_results) {
                        json_array_append_new(
                                msgs, json_pack("{s:s, s:o}", "role", "user", "content", pending_results));
                        pending_results = NULL;
                }
                if (streq_ptr(role, "user"))
                        json_array_append_new(
                                msgs,
                                json_pack("{s:s, s:s}", "role", "user", "content", content ? content : ""));
                else if (streq_ptr(role, "assistant")) {
                        json_t *blocks = json_array(), *c;
                        size_t j;
                        if (!isempty(content))
                                json_array_append_new(
                                        blocks, json_pack("{s:s, s:s}", "type", "text", "text", content));
                        json_array_foreach(json_object_get(m, "tool_calls"), j, c) {
                                json_t *input = json_object_get(c, "input");
                                json_array_append_new(
                                        blocks,
                                        json_pack(
                                                "{s:s, s:s, s:s, s:O}",
                                                "type",
                                                "tool_use",
                                                "id",
                                                json_str(c, "id") ?: "",
                                                "name",
                                                json_str(c, "name") ?: "",
                                                "input",
                                                json_is_object(input) ? input : json_object()));
                        }
                        if (json_array_size(blocks) == 0)
                                json_array_append_new(
                                        blocks, json_pack("{s:s, s:s}", "type", "text", "text", "(no text)"));
                        json_array_append_new(
                                msgs, json_pack("{s:s, s:o}", "role", "assistant", "content", blocks));
                } else if (streq_ptr(role, "tool")) {
                        if (!pending_results)
                                pending_results = json_array();
                        json_array_append_new(
                                pending_results,
                                json_pack(
                                        "{s:s, s:s, s:s, s:b}",
                                        "type",
                                        "tool_result",
                                        "tool_use_id",
                                        json_str(m, "tool_call_id") ?: "",
                                        "content",
                                        content ? content : "",
                                        "is_error",
                                        json_is_true(json_object_get(m, "is_error"))));
                }
        }
        if (pending_results)
                json_array_append_new(
                        msgs, json_pack("{s:s, s:o}", "role", "user", "content", pending_results));

        json_t *req = json_pack(
                "{s:s, s:o, s:I, s:b}",
                "model",
                model ? model : "",
                "messages",
                msgs,
                "max_tokens",
                (json_int_t) (max_tokens ? max_tokens : LLM_DEFAULT_MAX_TOKENS),
                "stream",
                stream);
        if (!isempty(system))
                json_object_set_new(req, "system", json_string(system));
        if (json_array_size(tools) > 0) {
                json_t *ts = json_array(), *t;
                json_array_foreach(tools, i, t)
                        json_array_append_new(
                                ts,
                                json_pack(
                                        "{s:s, s:s, s:O}",
                                        "name",
                                        json_str(t, "name") ?: "",
                                        "description",
                                        json_str(t, "description") ?: "",
                                        "input_schema",
                                        json_object_get(t, "input_schema")));
                json_object_set_new(req, "tools", ts);
        }
        return req;
}

/* ---- Streaming accumulator ---- */

typedef struct StreamCall {
        char *id;
        char *name;
        char *args; /* partial JSON, accumulated */
        size_t args_len;
        bool is_tool; /* anthropic: block is tool_use (text blocks are tracked too) */
        bool used;
} StreamCall;

struct LlmStream {
        LlmProvider provider;
        LlmTextFn on_text;
        void *userdata;
        char *text;
        size_t text_len;
        StreamCall calls[LLM_MAX_TOOL_CALLS];
        uint64_t input_tokens, output_tokens;
        char *stop_reason;
        bool done;
};

LlmStream *llm_stream_new(LlmProvider provider, LlmTextFn on_text, void *userdata) {
        LlmStream *s = xnew0(LlmStream, 1);
        s->provider = provider;
        s->on_text = on_text;
        s->userdata = userdata;
        s->text = xstrdup("");
        return s;
}

LlmStream *llm_stream_free(LlmStream *s) {
        if (!s)
                return NULL;
        free(s->text);
        for (size_t i = 0; i < LLM_MAX_TOOL_CALLS; i++) {
                free(s->calls[i].id);
                free(s->calls[i].name);
                free(s->calls[i].args);
        }
        free(s->stop_reason);
        return mfree(s);
}

static int append_capped(char **buf, size_t *len, const char *p, size_t n, size_t max) {
        if (n > max || *len > max - n)
                return -E2BIG;
        *buf = xrealloc(*buf, *len + n + 1);
        memcpy(*buf + *len, p, n);
        *len += n;
        (*buf)[*len] = 0;
        return 0;
}

static int stream_text(LlmStream *s, const char *t) {
        size_t n = strlen(t);
        int r = append_capped(&s->text, &s->text_len, t, n, LLM_MAX_TEXT);
        if (r < 0)
                return r;
        if (s->on_text && n > 0)
                s->on_text(t, n, s->userdata);
        return 0;
}

static void set_str(char **dst, const char *v) {
        if (!v)
                return;
        free(*dst);
        *dst = xstrdup(v);
}

static const char *normalize_stop(const char *raw) {
        if (!raw)
                return NULL;
        if (streq(raw, "stop") || streq(raw, "end_turn") || streq(raw, "stop_sequence"))
                return "end";
        if (streq(raw, "tool_calls") || streq(raw, "function_call") || streq(raw, "tool_use"))
                return "tool_use";
        if (streq(raw, "length") || streq(raw, "max_tokens"))
                return "max_tokens";
        return raw;
}

/* Formats the message, then makes control characters visible (it may quote model output). */
static _printf_(3, 4) int set_err(char **reterr, int r, const char *fmt, ...) {
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

/* One OpenAI tool call (a whole one, or a streamed fragment of it) into c: the id and name it
 * carries replace the ones seen, its arguments are appended (capped). */
static int openai_tool_call_merge(StreamCall *c, json_t *tc, char **reterr) {
        json_t *fn = json_object_get(tc, "function");
        const char *args = json_str(fn, "arguments");
        c->used = c->is_tool = true;
        set_str(&c->id, json_str(tc, "id"));
        set_str(&c->name, json_str(fn, "name"));
        if (args) {
                int r = append_capped(&c->args, &c->args_len, args, strlen(args), LLM_MAX_TOOL_ARGS);
                if (r < 0)
                        return set_err(reterr, r, "tool call arguments exceed the cap");
        }
        return 0;
}

static void usage_from(LlmStream *s, json_t *usage) {
        json_t *v;
        if (!json_is_object(usage))
                return;
        /* OpenAI: prompt_tokens/completion_tokens; Anthropic: input_tokens/output_tokens. */
        if (json_is_integer(v = json_object_get(usage, "prompt_tokens")) && json_integer_value(v) >= 0)
                s->input_tokens = (uint64_t) json_integer_value(v);
        if (json_is_integer(v = json_object_get(usage, "completion_tokens")) && json_integer_value(v) >= 0)
                s->output_tokens = (uint64_t) json_integer_value(v);
        if (json_is_integer(v = json_object_get(usage, "input_tokens")) && json_integer_value(v) >= 0)
                s->input_tokens = (uint64_t) json_integer_value(v);
        if (json_is_integer(v = json_object_get(usage, "output_tokens")) && json_integer_value(v) >= 0)
                s->output_tokens = (uint64_t) json_integer_value(v);
}

/* An error the API reported: -EAGAIN when it says to come back later (overloaded or rate
 * limited: the client may retry), -EIO otherwise. */
static int api_error(json_t *j, char **reterr) {
        json_t *e = json_object_get(j, "error");
        const char *msg = json_is_string(e) ? json_string_value(e) : json_str(e, "message");
        const char *type = json_str(e, "type") ?: json_str(e, "code");
        bool transient = streq_ptr(type, "overloaded_error") || streq_ptr(type, "rate_limit_error") ||
                streq_ptr(type, "rate_limit_exceeded") || streq_ptr(type, "server_error") ||
                (msg && strcasestr(msg, "overloaded"));
        return set_err(reterr, transient ? -EAGAIN : -EIO, "model API error: %s", msg ? msg : "(no message)");
}

static int openai_event(LlmStream *s, json_t *j, char **reterr) {
        json_t *choices = json_object_get(j, "choices"), *choice;
        size_t i;

        if (json_object_get(j, "error"))
                return api_error(j, reterr);
        usage_from(s, json_object_get(j, "usage"));
        json_array_foreach(choices, i, choice) {
                json_t *delta = json_object_get(choice, "delta");
                const char *fin = json_str(choice, "finish_reason");
                const char *content = json_str(delta, "content");
                json_t *tcs = json_object_get(delta, "tool_calls"), *tc;
                size_t k;
                int r;

                if (content) {
                        r = stream_text(s, content);
                        if (r < 0)
                                return set_err(reterr, r, "model text exceeds the cap");
                }
                json_array_foreach(tcs, k, tc) {
                        json_t *idx = json_object_get(tc, "index");
                        json_int_t n = json_is_integer(idx) ? json_integer_value(idx) : (json_int_t) k;
                        if (n < 0 || n >= (json_int_t) LLM_MAX_TOOL_CALLS)
                                return set_err(reterr, -E2BIG, "too many tool calls in one answer");
                        r = openai_tool_call_merge(&s->calls[n], tc, reterr);
                        if (r < 0)
                                return r;
                }
                if (fin)
                        set_str(&s->stop_reason, fin);
        }
        return 0;
}

static int anthropic_event(LlmStream *s, json_t *j, char **reterr) {
        const char *type = json_str(j, "type");
        json_t *idx = json_object_get(j, "index");
        json_int_t n = json_is_integer(idx) ? json_integer_value(idx) : -1;
        int r;

        if (!type)
                return set_err(reterr, -EBADMSG, "stream event without a type");
        if (streq(type, "error"))
                return api_error(j, reterr);
        if (streq(type, "message_start")) {
                usage_from(s, json_object_get(json_object_get(j, "message"), "usage"));
                return 0;
        }
        if (streq(type, "message_delta")) {
                usage_from(s, json_object_get(j, "usage"));
                set_str(&s->stop_reason, json_str(json_object_get(j, "delta"), "stop_reason"));
                return 0;
        }
        if (streq(type, "message_stop")) {
                s->done = true;
                return 0;
        }
        if (!startswith(type, "content_block_"))
                return 0; /* ping and future event types */
        if (n < 0 || n >= (json_int_t) LLM_MAX_TOOL_CALLS)
                return set_err(reterr, -E2BIG, "content block index out of range in %s", type);
        StreamCall *c = &s->calls[n];

        if (streq(type, "content_block_start")) {
                json_t *b = json_object_get(j, "content_block");
                const char *bt = json_str(b, "type");
                if (streq_ptr(bt, "tool_use")) {
                        c->used = c->is_tool = true;
                        set_str(&c->id, json_str(b, "id"));
                        set_str(&c->name, json_str(b, "name"));
                } else if (streq_ptr(bt, "text") && json_str(b, "text")) {
                        r = stream_text(s, json_str(b, "text"));
                        if (r < 0)
                                return set_err(reterr, r, "model text exceeds the cap");
                }
        } else if (streq(type, "content_block_delta")) {
                json_t *d = json_object_get(j, "delta");
                const char *dt = json_str(d, "type");
                if (streq_ptr(dt, "text_delta") && json_str(d, "text")) {
                        r = stream_text(s, json_str(d, "text"));
                        if (r < 0)
                                return set_err(reterr, r, "model text exceeds the cap");
                } else if (streq_ptr(dt, "input_json_delta") && json_str(d, "partial_json")) {
                        const char *pj = json_str(d, "partial_json");
                        if (!c->is_tool)
                                return set_err(reterr, -EBADMSG, "input_json_delta for a non-tool block");
                        r = append_capped(&c->args, &c->args_len, pj, strlen(pj), LLM_MAX_TOOL_ARGS);
                        if (r < 0)
                                return set_err(reterr, r, "tool call arguments exceed the cap");
                }
        }
        return 0;
}

int llm_stream_event(LlmStream *s, const char *event, const char *data, size_t n, char **reterr) {
        _cleanup_json_ json_t *j = NULL;
        _cleanup_free_ char *perr = NULL;

        if (s->provider == LLM_PROVIDER_OPENAI && n == 6 && memcmp(data, "[DONE]", 6) == 0) {
                s->done = true;
                return 0;
        }
        if (json_parse_strict(data, n, LLM_MAX_RESPONSE, &j, &perr) < 0)
                return set_err(reterr, -EBADMSG, "malformed stream event: %s", perr ? perr : "?");
        if (!json_is_object(j))
                return set_err(reterr, -EBADMSG, "stream event is not a JSON object");
        if (streq_ptr(event, "error"))
                return api_error(j, reterr);
        return s->provider == LLM_PROVIDER_ANTHROPIC ? anthropic_event(s, j, reterr)
                                                     : openai_event(s, j, reterr);
}

/* Arguments that do not parse as a JSON object do not fail the turn: the call is kept with an
 * empty input and "invalid_arguments" saying why, so the agent loop answers it with a tool
 * error and the model can correct itself. */
static int finish_call(StreamCall *c, size_t i, json_t *calls, char **reterr) {
        _cleanup_json_ json_t *input = NULL;
        _cleanup_free_ char *perr = NULL, *invalid = NULL;

        if (isempty(c->name))
                return set_err(reterr, -EBADMSG, "tool call without a name");
        if (c->args_len == 0)
                input = json_object();
        else if (json_parse_strict(c->args, c->args_len, LLM_MAX_TOOL_ARGS, &input, &perr) < 0 || !json_is_object(input)) {
                _cleanup_free_ char *raw = xasprintf(
                        "the arguments of tool call %s are not a JSON object (%s); send the arguments "
                        "as one JSON object matching the tool's input schema",
                        c->name,
                        perr ? perr : "a JSON value of another type");
                invalid = string_make_visible(raw);
                json_decref(input);
                input = json_object();
        }
        _cleanup_free_ char *gen = c->id ? NULL : xasprintf("call_%zu", i);
        json_t *call = json_pack("{s:s, s:s, s:O}", "id", c->id ? c->id : gen, "name", c->name, "input", input);
        if (invalid)
                json_object_set_new(call, "invalid_arguments", json_string(invalid));
        json_array_append_new(calls, call);
        return 0;
}

int llm_stream_finish(LlmStream *s, LlmResponse *ret, char **reterr) {
        _cleanup_json_ json_t *calls = json_array();
        /* A stream cut before its terminal event (OpenAI "data: [DONE]", Anthropic
         * message_stop) may hold half of the answer: a partial tool call must never run. */
        if (!s->done)
                return set_err(
                        reterr,
                        -EBADMSG,
                        "the model's answer stream ended before its final event (connection cut?); "
                        "none of its tool calls were run");
        for (size_t i = 0; i < LLM_MAX_TOOL_CALLS; i++) {
                if (!s->calls[i].used || !s->calls[i].is_tool)
                        continue;
                int r = finish_call(&s->calls[i], i, calls, reterr);
                if (r < 0)
                        return r;
        }
        const char *stop = normalize_stop(s->stop_reason) ?: (json_array_size(calls) > 0 ? "tool_use" : "end");
        *ret = (LlmResponse){
                .text = xstrdup(s->text),
                .stop_reason = xstrdup(stop),
                .input_tokens = s->input_tokens,
                .output_tokens = s->output_tokens,
        };
        ret->tool_calls = TAKE_PTR(calls);
        return 0;
}

/* ---- Whole JSON answers ---- */

int llm_parse_response(LlmProvider provider, const char *body, size_t n, LlmResponse *ret, char **reterr) {
        _cleanup_json_ json_t *j = NULL;
        _cleanup_free_ char *perr = NULL;
        _cleanup_(llm_stream_freep) LlmStream *s = llm_stream_new(provider, NULL, NULL);
        int r;

        if (json_parse_strict(body, n, LLM_MAX_RESPONSE, &j, &perr) < 0)
                return set_err(reterr, -EBADMSG, "malformed model answer: %s", perr ? perr : "?");
        if (!json_is_object(j))
                return set_err(reterr, -EBADMSG, "model answer is not a JSON object");
        if (json_object_get(j, "error"))
                return api_error(j, reterr);
        usage_from(s, json_object_get(j, "usage"));

        if (provider == LLM_PROVIDER_ANTHROPIC) {
                json_t *b;
                size_t i;
                if (!json_is_array(json_object_get(j, "content")))
                        return set_err(reterr, -EBADMSG, "model answer has no content array");
                json_array_foreach(json_object_get(j, "content"), i, b) {
                        const char *bt = json_str(b, "type");
                        if (streq_ptr(bt, "text") && json_str(b, "text")) {
                                r = stream_text(s, json_str(b, "text"));
                                if (r < 0)
                                        return set_err(reterr, r, "model text exceeds the cap");
                        } else if (streq_ptr(bt, "tool_use")) {
                                if (i >= LLM_MAX_TOOL_CALLS)
                                        return set_err(reterr, -E2BIG, "too many tool calls in one answer");
                                StreamCall *c = &s->calls[i];
                                c->used = c->is_tool = true;
                                set_str(&c->id, json_str(b, "id"));
                                set_str(&c->name, json_str(b, "name"));
                                json_t *input = json_object_get(b, "input");
                                if (!json_is_object(input))
                                        return set_err(
                                                reterr, -EBADMSG, "tool_use block without an input object");
                                c->args = json_dumps(input, JSON_COMPACT);
                                c->args_len = c->args ? strlen(c->args) : 0;
                        }
                }
                set_str(&s->stop_reason, json_str(j, "stop_reason"));
        } else {
                json_t *choice = json_array_get(json_object_get(j, "choices"), 0);
                json_t *msg = json_object_get(choice, "message"), *tc;
                size_t i;
                if (!json_is_object(msg))
                        return set_err(reterr, -EBADMSG, "model answer has no choices[0].message");
                if (json_str(msg, "content")) {
                        r = stream_text(s, json_str(msg, "content"));
                        if (r < 0)
                                return set_err(reterr, r, "model text exceeds the cap");
                }
                json_array_foreach(json_object_get(msg, "tool_calls"), i, tc) {
                        if (i >= LLM_MAX_TOOL_CALLS)
                                return set_err(reterr, -E2BIG, "too many tool calls in one answer");
                        r = openai_tool_call_merge(&s->calls[i], tc, reterr);
                        if (r < 0)
                                return r;
                }
                set_str(&s->stop_reason, json_str(choice, "finish_reason"));
        }
        s->done = true; /* a whole JSON body that parsed is complete */
        return llm_stream_finish(s, ret, reterr);
}

char *llm_error_message(const char *body, size_t n) {
        _cleanup_json_ json_t *j = NULL;
        const char *msg = NULL;
        if (body && n > 0 && json_parse_strict(body, n, 1024 * 1024, &j, NULL) >= 0) {
                json_t *e = json_object_get(j, "error");
                msg = json_is_string(e) ? json_string_value(e) : json_str(e, "message");
                if (!msg)
                        msg = json_str(j, "message");
        }
        _cleanup_free_ char *raw = msg ? xstrdup(msg)
                                       : xstrndup(body ? body : "", NUCLEUS_MIN(n, (size_t) 300));
        if (strlen(raw) > 300)
                raw[300] = 0;
        return string_make_visible(raw);
}
