/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the model wire formats (src/agent/llm-format.c): request bodies, streamed
 * and whole answers of both providers, tool-call assembly, errors and caps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "json-util.h"
#include "llm.h"
#include "sse.h"
#include "string-util.h"

static json_t *conversation(void) {
        json_error_t e;
        json_t *j = json_loads(
                "[{\"role\":\"user\",\"content\":\"fix it\"},"
                "{\"role\":\"assistant\",\"content\":\"looking\",\"tool_calls\":["
                "{\"id\":\"c1\",\"name\":\"read\",\"input\":{\"path\":\"a.c\"}},"
                "{\"id\":\"c2\",\"name\":\"run\",\"input\":{\"argv\":[\"make\"]}}]},"
                "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"name\":\"read\",\"content\":\"int "
                "x;\",\"is_error\":false},"
                "{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"name\":\"run\",\"content\":\"denied\",\"is_"
                "error\":true},"
                "{\"role\":\"assistant\",\"content\":\"done\"}]",
                0,
                &e);
        assert_non_null(j);
        return j;
}

static json_t *tools(void) {
        return json_loads(
                "[{\"name\":\"read\",\"description\":\"Read\",\"input_schema\":{\"type\":\"object\"}}]",
                0,
                NULL);
}

static void test_openai_request(void **state) {
        _cleanup_json_ json_t *m = conversation(), *t = tools();
        _cleanup_json_ json_t *req = llm_openai_build_request("gpt-x", 0, true, "sys", m, t);
        json_t *msgs = json_object_get(req, "messages");
        assert_string_equal(json_string_value(json_object_get(req, "model")), "gpt-x");
        assert_int_equal(json_integer_value(json_object_get(req, "max_tokens")), 4096);
        assert_true(json_is_true(json_object_get(json_object_get(req, "stream_options"), "include_usage")));
        assert_int_equal(json_array_size(msgs), 6);
        assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "role")), "system");
        json_t *tc = json_array_get(json_object_get(json_array_get(msgs, 2), "tool_calls"), 1);
        assert_string_equal(json_string_value(json_object_get(tc, "type")), "function");
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(tc, "function"), "arguments")),
                "{\"argv\":[\"make\"]}");
        assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 4), "tool_call_id")), "c2");
        json_t *tool = json_array_get(json_object_get(req, "tools"), 0);
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(tool, "function"), "name")), "read");
        assert_non_null(json_object_get(json_object_get(tool, "function"), "parameters"));
}

static void test_anthropic_request(void **state) {
        _cleanup_json_ json_t *m = conversation(), *t = tools();
        _cleanup_json_ json_t *req = llm_anthropic_build_request("claude-x", 100, false, "sys", m, t);
        json_t *msgs = json_object_get(req, "messages");
        assert_string_equal(json_string_value(json_object_get(req, "system")), "sys");
        assert_int_equal(json_integer_value(json_object_get(req, "max_tokens")), 100);
        /* user, assistant(text+2 tool_use), user(2 tool_result merged), assistant */
        assert_int_equal(json_array_size(msgs), 4);
        json_t *blocks = json_object_get(json_array_get(msgs, 1), "content");
        assert_int_equal(json_array_size(blocks), 3);
        assert_string_equal(json_string_value(json_object_get(json_array_get(blocks, 2), "type")), "tool_use");
        json_t *results = json_object_get(json_array_get(msgs, 2), "content");
        assert_int_equal(json_array_size(results), 2);
        assert_string_equal(
                json_string_value(json_object_get(json_array_get(results, 1), "tool_use_id")), "c2");
        assert_true(json_is_true(json_object_get(json_array_get(results, 1), "is_error")));
        assert_string_equal(
                json_string_value(json_object_get(json_array_get(json_object_get(req, "tools"), 0), "name")),
                "read");
}

typedef struct Seen {
        char text[256];
} Seen;

static void on_text(const char *t, size_t n, void *userdata) {
        Seen *s = userdata;
        strncat(s->text, t, NUCLEUS_MIN(n, sizeof(s->text) - strlen(s->text) - 1));
}

static int feed(const char *event, const char *d, size_t n, void *userdata) {
        char *err = NULL;
        int r = llm_stream_event(userdata, event, d, n, &err);
        free(err);
        return r;
}

static int run_stream(LlmProvider p, const char *sse, Seen *seen, LlmResponse *ret, char **reterr) {
        _cleanup_(llm_stream_freep) LlmStream *s = llm_stream_new(p, on_text, seen);
        _cleanup_(sse_parser_freep) SseParser *parser = sse_parser_new(1 << 20, feed, s);
        int r;
        /* Feed in small pieces like a network would. */
        for (size_t i = 0; i < strlen(sse); i += 7) {
                r = sse_parser_feed(parser, sse + i, NUCLEUS_MIN((size_t) 7, strlen(sse) - i));
                if (r < 0)
                        return r;
        }
        r = sse_parser_finish(parser);
        if (r < 0)
                return r;
        return llm_stream_finish(s, ret, reterr);
}

static void test_openai_stream(void **state) {
        const char *sse = "data: "
                          "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Let "
                          "me \"}}]}\n\n"
                          "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"look.\"}}]}\n\n"
                          "data: "
                          "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_"
                          "a\",\"type\":"
                          "\"function\",\"function\":{\"name\":\"read\",\"arguments\":\"\"}}]}}]}\n\n"
                          "data: "
                          "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{"
                          "\"arguments\":"
                          "\"{\\\"path\\\":\"}}]}}]}\n\n"
                          "data: "
                          "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{"
                          "\"arguments\":"
                          "\"\\\"src/"
                          "a.c\\\"}\"}},{\"index\":1,\"id\":\"call_b\",\"function\":{\"name\":\"list\","
                          "\"arguments\":"
                          "\"{}\"}}]}}]}\n\n"
                          "data: "
                          "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
                          "data: "
                          "{\"choices\":[],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":30}}\n\n"
                          "data: [DONE]\n\n";
        Seen seen = {};
        LlmResponse r = {};
        char *err = NULL;
        assert_int_equal(run_stream(LLM_PROVIDER_OPENAI, sse, &seen, &r, &err), 0);
        assert_string_equal(seen.text, "Let me look.");
        assert_string_equal(r.text, "Let me look.");
        assert_string_equal(r.stop_reason, "tool_use");
        assert_int_equal(r.input_tokens, 120);
        assert_int_equal(r.output_tokens, 30);
        assert_int_equal(json_array_size(r.tool_calls), 2);
        json_t *c = json_array_get(r.tool_calls, 0);
        assert_string_equal(json_string_value(json_object_get(c, "id")), "call_a");
        assert_string_equal(json_string_value(json_object_get(json_object_get(c, "input"), "path")), "src/a.c");
        assert_string_equal(
                json_string_value(json_object_get(json_array_get(r.tool_calls, 1), "name")), "list");
        llm_response_done(&r);
}

static void test_anthropic_stream(void **state) {
        const char *sse = "event: message_start\ndata: "
                          "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_"
                          "tokens\":"
                          "55,\"output_tokens\":1}}}\n\n"
                          "event: content_block_start\ndata: "
                          "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
                          "\"text\",\"text\":\"\"}}\n\n"
                          "event: ping\ndata: {\"type\":\"ping\"}\n\n"
                          "event: content_block_delta\ndata: "
                          "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                          "\"text_delta\",\"text\":\"Reading\"}}\n\n"
                          "event: content_block_stop\ndata: "
                          "{\"type\":\"content_block_stop\",\"index\":0}\n\n"
                          "event: content_block_start\ndata: "
                          "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":"
                          "\"tool_use\",\"id\":\"toolu_1\",\"name\":\"grep\",\"input\":{}}}\n\n"
                          "event: content_block_delta\ndata: "
                          "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
                          "\"input_json_delta\",\"partial_json\":\"{\\\"pattern\\\": \\\"TODO\"}}\n\n"
                          "event: content_block_delta\ndata: "
                          "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
                          "\"input_json_delta\",\"partial_json\":\"\\\"}\"}}\n\n"
                          "event: content_block_stop\ndata: "
                          "{\"type\":\"content_block_stop\",\"index\":1}\n\n"
                          "event: message_delta\ndata: "
                          "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":"
                          "{\"output_tokens\":40}}\n\n"
                          "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        Seen seen = {};
        LlmResponse r = {};
        char *err = NULL;
        assert_int_equal(run_stream(LLM_PROVIDER_ANTHROPIC, sse, &seen, &r, &err), 0);
        assert_string_equal(seen.text, "Reading");
        assert_int_equal(r.input_tokens, 55);
        assert_int_equal(r.output_tokens, 40);
        assert_string_equal(r.stop_reason, "tool_use");
        assert_int_equal(json_array_size(r.tool_calls), 1);
        json_t *c = json_array_get(r.tool_calls, 0);
        assert_string_equal(json_string_value(json_object_get(c, "id")), "toolu_1");
        assert_string_equal(json_string_value(json_object_get(json_object_get(c, "input"), "pattern")), "TODO");
        llm_response_done(&r);
}

static void test_stream_errors(void **state) {
        Seen seen = {};
        LlmResponse r = {};
        char *err = NULL;
        _cleanup_(llm_stream_freep) LlmStream *s = llm_stream_new(LLM_PROVIDER_ANTHROPIC, NULL, NULL);
        const char *e = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
                        "\"Overloaded\"}}";
        /* Overloaded and rate-limit errors are transient (the client retries them). */
        assert_int_equal(llm_stream_event(s, "error", e, strlen(e), &err), -EAGAIN);
        assert_non_null(strstr(err, "Overloaded"));
        err = mfree(err);
        const char *fatal = "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
                            "\"message\":\"prompt is too long\"}}";
        assert_int_equal(llm_stream_event(s, "error", fatal, strlen(fatal), &err), -EIO);
        assert_non_null(strstr(err, "too long"));
        err = mfree(err);
        assert_int_equal(llm_stream_event(s, "message", "{not json", 9, &err), -EBADMSG);
        err = mfree(err);
        const char *big = "{\"type\":\"content_block_start\",\"index\":9999,\"content_block\":{\"type\":"
                          "\"text\"}}";
        assert_int_equal(llm_stream_event(s, "message", big, strlen(big), &err), -E2BIG);
        err = mfree(err);

        /* Tool arguments that are not a JSON object do not fail the turn: the call is marked,
         * with a message for the model, and its input is empty. */
        const char *sse = "data: "
                          "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"x\",\"function\":"
                          "{\"name\":"
                          "\"read\",\"arguments\":\"[1,2]\"}},{\"index\":1,\"id\":\"y\",\"function\":"
                          "{\"name\":\"list\",\"arguments\":\"{\\\"path\\\": \"}}]}}]}\n\n"
                          "data: [DONE]\n\n";
        assert_int_equal(run_stream(LLM_PROVIDER_OPENAI, sse, &seen, &r, &err), 0);
        assert_int_equal(json_array_size(r.tool_calls), 2);
        for (size_t i = 0; i < 2; i++) {
                json_t *c = json_array_get(r.tool_calls, i);
                const char *inv = json_string_value(json_object_get(c, "invalid_arguments"));
                assert_non_null(inv);
                assert_non_null(strstr(inv, "not a JSON object"));
                assert_int_equal(json_object_size(json_object_get(c, "input")), 0);
        }
        llm_response_done(&r);
}

/* A stream cut before its terminal event is an error and yields no tool call, for both
 * providers, wherever it is cut (even after a complete tool call and a finish reason). */
static void test_cut_stream(void **state) {
        const char *openai = "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
                             "\"id\":\"c\",\"function\":{\"name\":\"run\",\"arguments\":"
                             "\"{\\\"argv\\\":[\\\"rm\\\"]}\"}}]}}]}\n\n"
                             "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_"
                             "calls\"}]}\n\n";
        const char *anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n"
                                "event: content_block_start\ndata: {\"type\":\"content_block_start\","
                                "\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\","
                                "\"name\":\"run\",\"input\":{}}}\n\n"
                                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
                                "\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"
                                "\"{}\"}}\n\n"
                                "event: content_block_stop\ndata: {\"type\":\"content_block_stop\","
                                "\"index\":0}\n\n"
                                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":"
                                "{\"stop_reason\":\"tool_use\"}}\n\n";
        const struct {
                LlmProvider p;
                const char *sse;
        } cases[] = { { LLM_PROVIDER_OPENAI, openai }, { LLM_PROVIDER_ANTHROPIC, anthropic } };

        for (size_t k = 0; k < ELEMENTSOF(cases); k++)
                for (size_t cut = 0; cut <= strlen(cases[k].sse); cut += 5) {
                        _cleanup_free_ char *part = strndup(cases[k].sse, cut);
                        Seen seen = {};
                        LlmResponse r = {};
                        char *err = NULL;
                        int ret = run_stream(cases[k].p, part, &seen, &r, &err);
                        assert_true(ret < 0);
                        assert_null(r.tool_calls);
                        free(err);
                }
}

static void test_retry_policy(void **state) {
        assert_true(llm_http_status_retryable(429));
        assert_true(llm_http_status_retryable(500));
        assert_true(llm_http_status_retryable(503));
        assert_true(llm_http_status_retryable(529));
        assert_false(llm_http_status_retryable(400));
        assert_false(llm_http_status_retryable(401));
        assert_false(llm_http_status_retryable(404));
        assert_false(llm_http_status_retryable(200));
        /* Retry-After wins over the backoff. */
        assert_int_equal(llm_retry_delay(1, 7000000, 0.9), 7000000);
        /* 1 s doubling, capped at 30 s; jitter takes off at most a quarter. */
        assert_int_equal(llm_retry_delay(1, 0, 0), 1000000);
        assert_int_equal(llm_retry_delay(2, 0, 0), 2000000);
        assert_int_equal(llm_retry_delay(5, 0, 0), 16000000);
        assert_int_equal(llm_retry_delay(6, 0, 0), 30000000);
        assert_int_equal(llm_retry_delay(50, 0, 0), 30000000);
        assert_true(llm_retry_delay(3, 0, 0.999) >= 3000000 && llm_retry_delay(3, 0, 0.999) < 4000000);
        assert_int_equal(llm_retry_delay(3, 0, 7.0), 4000000); /* out-of-range jitter ignored */
}

static void test_whole_answers(void **state) {
        LlmResponse r = {};
        char *err = NULL;
        const char *oa = "{\"id\":\"x\",\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":null,"
                         "\"tool_calls\":"
                         "[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"edit\","
                         "\"arguments\":"
                         "\"{\\\"path\\\":\\\"a\\\",\\\"old_string\\\":\\\"x\\\",\\\"new_string\\\":"
                         "\\\"y\\\"}\"}}]},"
                         "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":9,\"completion_"
                         "tokens\":2}}";
        assert_int_equal(llm_parse_response(LLM_PROVIDER_OPENAI, oa, strlen(oa), &r, &err), 0);
        assert_string_equal(r.text, "");
        assert_int_equal(json_array_size(r.tool_calls), 1);
        assert_int_equal(r.input_tokens, 9);
        llm_response_done(&r);

        const char *an = "{\"content\":[{\"type\":\"text\",\"text\":\"All "
                         "good.\"}],\"stop_reason\":\"end_turn\","
                         "\"usage\":{\"input_tokens\":4,\"output_tokens\":3}}";
        assert_int_equal(llm_parse_response(LLM_PROVIDER_ANTHROPIC, an, strlen(an), &r, &err), 0);
        assert_string_equal(r.text, "All good.");
        assert_string_equal(r.stop_reason, "end");
        assert_int_equal(json_array_size(r.tool_calls), 0);
        llm_response_done(&r);

        const char *bad = "{\"choices\":[]}";
        assert_int_equal(llm_parse_response(LLM_PROVIDER_OPENAI, bad, strlen(bad), &r, &err), -EBADMSG);
        err = mfree(err);

        char *m = llm_error_message("{\"error\":{\"message\":\"Invalid key\\u001b[31m\"}}", 44);
        assert_non_null(strstr(m, "Invalid key"));
        assert_null(strchr(m, 0x1b)); /* made visible */
        free(m);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_openai_request), cmocka_unit_test(test_anthropic_request),
                cmocka_unit_test(test_openai_stream),  cmocka_unit_test(test_anthropic_stream),
                cmocka_unit_test(test_stream_errors),  cmocka_unit_test(test_whole_answers),
                cmocka_unit_test(test_cut_stream),     cmocka_unit_test(test_retry_policy),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
