/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the model gateway's wire formats (src/gateway/gateway-wire.c): endpoint and
 * field allow lists (provider-side tools, stored files and state refused), the rewrite
 * (output tokens capped, streamed usage requested), usage from streamed and whole answers of
 * the three formats, and the budget bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "gateway-wire.h"
#include "json-util.h"
#include "string-util.h"

static json_t *parse(const char *s) {
        json_error_t e;
        json_t *j = json_loads(s, 0, &e);
        if (!j)
                fail_msg("bad test JSON: %s: %s", e.text, s);
        return j;
}

/* Returns the check's result; *ret_err gets the message. */
static int check(
        GatewayFormat f, const char *body, uint64_t cap, json_t **ret_req, uint64_t *ret_max, char **ret_err) {
        json_t *req = parse(body);
        const char *model = NULL;
        bool stream = false;
        uint64_t max_out = 0;
        char *err = NULL;
        int r = gateway_request_check(f, req, cap, &model, &max_out, &stream, &err);
        if (ret_req)
                *ret_req = req;
        else
                json_decref(req);
        if (ret_max)
                *ret_max = max_out;
        if (ret_err)
                *ret_err = err;
        else
                free(err);
        return r;
}

static void test_routes(void **state) {
        assert_int_equal(gateway_route(true, "POST", "/v1/messages"), GATEWAY_ANTHROPIC_MESSAGES);
        assert_int_equal(gateway_route(true, "POST", "/v1/messages/count_tokens"), GATEWAY_ANTHROPIC_COUNT);
        assert_int_equal(gateway_route(false, "POST", "/v1/chat/completions"), GATEWAY_OPENAI_CHAT);
        assert_int_equal(gateway_route(false, "POST", "/v1/responses"), GATEWAY_OPENAI_RESPONSES);
        /* The other provider's endpoints, the Files and Batch APIs, anything else: refused. */
        assert_int_equal(gateway_route(false, "POST", "/v1/messages"), -EPERM);
        assert_int_equal(gateway_route(true, "POST", "/v1/responses"), -EPERM);
        assert_int_equal(gateway_route(true, "POST", "/v1/files"), -ENOENT);
        assert_int_equal(gateway_route(false, "POST", "/v1/files"), -ENOENT);
        assert_int_equal(gateway_route(true, "POST", "/v1/messages/batches"), -ENOENT);
        assert_int_equal(gateway_route(false, "POST", "/v1/batches"), -ENOENT);
        assert_int_equal(gateway_route(false, "GET", "/v1/chat/completions"), -ENOENT);
        assert_int_equal(gateway_route(true, "POST", "/v1/messages/"), -ENOENT);
        assert_int_equal(gateway_route(true, "POST", "/v1//messages"), -ENOENT);
        assert_true(gateway_query_allowed(GATEWAY_ANTHROPIC_MESSAGES, "beta", "true"));
        assert_false(gateway_query_allowed(GATEWAY_ANTHROPIC_MESSAGES, "beta", "false"));
        assert_false(gateway_query_allowed(GATEWAY_OPENAI_CHAT, "beta", "true"));
        assert_false(gateway_query_allowed(GATEWAY_ANTHROPIC_MESSAGES, "x", "1"));
}

static void test_anthropic_allow_list(void **state) {
        json_t *req = NULL;
        uint64_t max = 0;
        char *err = NULL;

        /* What Claude Code sends passes, with max_tokens capped. */
        assert_int_equal(
                check(GATEWAY_ANTHROPIC_MESSAGES,
                      "{\"model\":\"claude-x\",\"max_tokens\":64000,\"stream\":true,"
                      "\"system\":[{\"type\":\"text\",\"text\":\"s\",\"cache_control\":{\"type\":"
                      "\"ephemeral\"}}],"
                      "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"},"
                      "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\","
                      "\"data\":\"AA==\"}}]},{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\","
                      "\"id\":\"t\",\"name\":\"mcp__nucleus__read\",\"input\":{}}]},{\"role\":\"user\","
                      "\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":[{\"type\":"
                      "\"text\",\"text\":\"x\"}]}]}],"
                      "\"tools\":[{\"name\":\"mcp__nucleus__read\",\"input_schema\":{\"type\":\"object\"}}],"
                      "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1000},\"metadata\":{\"user_id\":"
                      "\"u\"}}",
                      8192,
                      &req,
                      &max,
                      NULL),
                0);
        assert_int_equal(max, 8192);
        assert_int_equal(json_integer_value(json_object_get(req, "max_tokens")), 8192);
        json_decref(req);

        /* Below the cap: unchanged. */
        assert_int_equal(
                check(GATEWAY_ANTHROPIC_MESSAGES,
                      "{\"model\":\"m\",\"max_tokens\":100,\"messages\":[]}",
                      8192,
                      NULL,
                      &max,
                      NULL),
                0);
        assert_int_equal(max, 100);

        static const char *const refused[] = {
                /* provider-side tools */
                "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"tools\":[{\"type\":\"web_search_"
                "20250305\","
                "\"name\":\"web_search\"}]}",
                "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"tools\":[{\"type\":\"web_fetch_"
                "20250910\","
                "\"name\":\"web_fetch\"}]}",
                "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"tools\":[{\"type\":\"code_execution_"
                "20250825\","
                "\"name\":\"code_execution\"}]}",
                /* remote MCP servers, containers */
                "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"mcp_servers\":[{\"type\":\"url\","
                "\"url\":"
                "\"https://evil\"}]}",
                "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"container\":\"c\"}",
                /* stored files and URLs the provider would fetch */
                "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                "\"document\",\"source\":{\"type\":\"file\",\"file_id\":\"f\"}}]}]}",
                "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                "\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://x/secret?leak\"}}]}]}",
                "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                "\"tool_result\",\"tool_use_id\":\"t\",\"content\":[{\"type\":\"image\",\"source\":{"
                "\"type\":"
                "\"url\",\"url\":\"https://x\"}}]}]}]}",
                "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                "\"container_upload\",\"file_id\":\"f\"}]}]}",
                "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"assistant\",\"content\":[{"
                "\"type\":"
                "\"server_tool_use\",\"id\":\"s\",\"name\":\"web_search\",\"input\":{}}]}]}",
                /* unknown fields */
                "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"brand_new_field\":1}",
        };
        for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                int r = check(GATEWAY_ANTHROPIC_MESSAGES, refused[i], 8192, NULL, NULL, &err);
                if (r != -EPERM)
                        fail_msg("case %zu: expected -EPERM, got %d (%s)", i, r, err ? err : "(none)");
                assert_non_null(err);
                err = mfree(err);
        }
        /* Malformed. */
        assert_int_equal(
                check(GATEWAY_ANTHROPIC_MESSAGES, "{\"model\":\"m\",\"messages\":[]}", 8192, NULL, NULL, NULL),
                -EINVAL);
        assert_int_equal(
                check(GATEWAY_ANTHROPIC_MESSAGES,
                      "{\"model\":\"m\",\"max_tokens\":-1,\"messages\":[]}",
                      8192,
                      NULL,
                      NULL,
                      NULL),
                -EINVAL);
        assert_int_equal(
                check(GATEWAY_ANTHROPIC_MESSAGES, "{\"max_tokens\":1,\"messages\":[]}", 8192, NULL, NULL, NULL),
                -EINVAL);
        assert_int_equal(check(GATEWAY_ANTHROPIC_MESSAGES, "[1]", 8192, NULL, NULL, NULL), -EINVAL);
        /* count_tokens has no max_tokens and is not metered. */
        assert_int_equal(
                check(GATEWAY_ANTHROPIC_COUNT, "{\"model\":\"m\",\"messages\":[]}", 8192, NULL, &max, NULL),
                0);
        assert_int_equal(max, 0);
        assert_int_equal(
                check(GATEWAY_ANTHROPIC_COUNT,
                      "{\"model\":\"m\",\"messages\":[],\"mcp_servers\":[]}",
                      8192,
                      NULL,
                      NULL,
                      NULL),
                -EPERM);
}

static void test_openai_allow_list(void **state) {
        json_t *req = NULL;
        uint64_t max = 0;
        char *err = NULL;

        /* Chat: streamed usage forced on, max tokens set when absent. */
        assert_int_equal(
                check(GATEWAY_OPENAI_CHAT,
                      "{\"model\":\"gpt\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":"
                      "[{\"type\":\"text\",\"text\":\"hi\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
                      "\"data:image/png;base64,AA==\"}}]}],\"tools\":[{\"type\":\"function\",\"function\":"
                      "{\"name\":\"read\"}}]}",
                      4096,
                      &req,
                      &max,
                      NULL),
                0);
        assert_int_equal(max, 4096);
        assert_int_equal(json_integer_value(json_object_get(req, "max_tokens")), 4096);
        assert_true(json_is_true(json_object_get(json_object_get(req, "stream_options"), "include_usage")));
        json_decref(req);
        /* Both limits given: both capped, the smaller one counts. */
        assert_int_equal(
                check(GATEWAY_OPENAI_CHAT,
                      "{\"model\":\"gpt\",\"messages\":[],\"max_tokens\":50000,\"max_completion_tokens\":"
                      "300,\"stream_options\":{\"include_usage\":false},\"stream\":true}",
                      4096,
                      &req,
                      &max,
                      NULL),
                0);
        assert_int_equal(max, 300);
        assert_int_equal(json_integer_value(json_object_get(req, "max_tokens")), 4096);
        assert_true(json_is_true(json_object_get(json_object_get(req, "stream_options"), "include_usage")));
        json_decref(req);

        /* Responses: what Codex sends passes. */
        assert_int_equal(
                check(GATEWAY_OPENAI_RESPONSES,
                      "{\"model\":\"gpt-5\",\"instructions\":\"i\",\"stream\":true,\"store\":false,"
                      "\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":"
                      "\"input_text\",\"text\":\"hi\"}]},{\"type\":\"function_call\",\"call_id\":\"c\","
                      "\"name\":\"mcp__nucleus__read\",\"arguments\":\"{}\"},{\"type\":"
                      "\"function_call_output\",\"call_id\":\"c\",\"output\":\"x\"},{\"type\":\"reasoning\","
                      "\"summary\":[]}],\"tools\":[{\"type\":\"function\",\"name\":\"read\",\"parameters\":"
                      "{}},{\"type\":\"namespace\",\"name\":\"mcp__nucleus\",\"tools\":[{\"type\":"
                      "\"function\","
                      "\"name\":\"read\",\"parameters\":{}}]}],\"tool_choice\":\"auto\",\"parallel_tool_"
                      "calls\":false,"
                      "\"reasoning\":{\"effort\":\"low\"},\"client_metadata\":{\"thread_id\":\"t\"},"
                      "\"include\":[\"reasoning.encrypted_content\"],\"prompt_cache_key\":\"k\"}",
                      4096,
                      &req,
                      &max,
                      NULL),
                0);
        assert_int_equal(max, 4096);
        assert_int_equal(json_integer_value(json_object_get(req, "max_output_tokens")), 4096);
        json_decref(req);

        static const struct {
                GatewayFormat f;
                const char *body;
        } refused[] = {
                { GATEWAY_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[],\"web_search_options\":{}}" },
                { GATEWAY_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[],\"n\":3}" },
                { GATEWAY_OPENAI_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                  "\"image_url\":{\"url\":\"https://attacker/?q=secret\"}}]}]}" },
                { GATEWAY_OPENAI_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"file\","
                  "\"file\":"
                  "{\"file_id\":\"f\"}}]}]}" },
                { GATEWAY_OPENAI_CHAT,
                  "{\"model\":\"m\",\"messages\":[],\"tools\":[{\"type\":\"web_search_preview\"}]}" },
                { GATEWAY_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"web_search\"}]}" },
                { GATEWAY_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"file_search\"}]}" },
                { GATEWAY_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"code_interpreter\"}]}" },
                { GATEWAY_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"mcp\",\"server_url\":\"https://"
                  "e\"}]}" },
                { GATEWAY_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"namespace\",\"name\":\"n\","
                  "\"tools\":"
                  "[{\"type\":\"web_search\"}]}]}" },
                { GATEWAY_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"namespace\",\"name\":\"n\","
                  "\"tools\":"
                  "[{\"type\":\"namespace\",\"name\":\"m\",\"tools\":[]}]}]}" },
                { GATEWAY_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":\"r\"}" },
                { GATEWAY_OPENAI_RESPONSES, "{\"model\":\"m\",\"input\":\"x\",\"conversation\":\"c\"}" },
                { GATEWAY_OPENAI_RESPONSES, "{\"model\":\"m\",\"input\":\"x\",\"background\":true}" },
                { GATEWAY_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":[{\"type\":\"item_reference\",\"id\":\"i\"}]}" },
                { GATEWAY_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_file\","
                  "\"file_id\":\"f\"}]}]}" },
                { GATEWAY_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\","
                  "\"image_url\":\"https://x\"}]}]}" },
        };
        for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                int r = check(refused[i].f, refused[i].body, 4096, NULL, NULL, &err);
                if (r != -EPERM)
                        fail_msg("case %zu: expected -EPERM, got %d (%s)", i, r, err ? err : "(none)");
                err = mfree(err);
        }
}

static void feed_events(GatewayFormat f, GatewayUsage *u, const char *const *ev) {
        for (size_t i = 0; ev[i]; i += 2)
                gateway_usage_event(f, u, ev[i], ev[i + 1], strlen(ev[i + 1]));
}

static void test_usage(void **state) {
        const char *const anthropic[] = {
                "message_start",
                "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":100,"
                "\"cache_creation_input_tokens\":50,\"cache_read_input_tokens\":1000,\"output_tokens\":1}}}",
                "content_block_delta",
                "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"
                "\"x\"}}",
                "message_delta",
                "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_"
                "tokens\":"
                "42}}",
                "message_stop",
                "{\"type\":\"message_stop\"}",
                NULL,
        };
        GatewayUsage u = {};
        feed_events(GATEWAY_ANTHROPIC_MESSAGES, &u, anthropic);
        assert_true(u.complete && u.have_usage);
        assert_int_equal(u.input_tokens, 100);
        assert_int_equal(u.output_tokens, 42);
        assert_int_equal(u.cache_write_tokens, 50);
        assert_int_equal(u.cache_read_tokens, 1000);
        /* $3 / $15 per Mtok: 100*3 + 50*3.75 + 1000*0.3 + 42*15 = 300 + 187.5 + 300 + 630 -> ceil per part */
        assert_int_equal(gateway_usage_cost(&u, 3000000, 15000000), 300 + 188 + 300 + 630);

        /* Cut before message_stop: usage seen, but not complete. */
        const char *const cut[] = { anthropic[0], anthropic[1], anthropic[4], anthropic[5], NULL };
        GatewayUsage c = {};
        feed_events(GATEWAY_ANTHROPIC_MESSAGES, &c, cut);
        assert_false(c.complete);
        assert_true(c.have_usage);

        const char *const chat[] = {
                "message", "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}",
                "message", "{\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":9}}",
                "message", "[DONE]",
                NULL,
        };
        GatewayUsage o = {};
        feed_events(GATEWAY_OPENAI_CHAT, &o, chat);
        assert_true(o.complete && o.have_usage);
        assert_int_equal(o.input_tokens, 7);
        assert_int_equal(o.output_tokens, 9);

        const char *const responses[] = {
                "response.created",
                "{\"type\":\"response.created\",\"response\":{\"usage\":null}}",
                "response.output_text.delta",
                "{\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}",
                "response.completed",
                "{\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":11,\"output_"
                "tokens\":"
                "13,\"total_tokens\":24}}}",
                NULL,
        };
        GatewayUsage p = {};
        feed_events(GATEWAY_OPENAI_RESPONSES, &p, responses);
        assert_true(p.complete && p.have_usage);
        assert_int_equal(p.input_tokens, 11);
        assert_int_equal(p.output_tokens, 13);
        GatewayUsage p2 = {};
        const char *const responses_cut[] = { responses[0], responses[1], responses[2], responses[3], NULL };
        feed_events(GATEWAY_OPENAI_RESPONSES, &p2, responses_cut);
        assert_false(p2.complete);

        /* Garbage never counts as complete. */
        GatewayUsage g = {};
        gateway_usage_event(GATEWAY_ANTHROPIC_MESSAGES, &g, "message_stop", "{not json", 9);
        gateway_usage_event(GATEWAY_OPENAI_CHAT, &g, "message", "[DONE", 5);
        assert_false(g.complete);

        GatewayUsage w = {};
        const char *whole = "{\"usage\":{\"input_tokens\":5,\"output_tokens\":6}}";
        gateway_usage_body(GATEWAY_OPENAI_RESPONSES, &w, whole, strlen(whole));
        assert_true(w.complete && w.have_usage);
        assert_int_equal(w.output_tokens, 6);
}

static void test_bounds(void **state) {
        uint64_t in = 0;
        /* 1000-byte body: (1000 + 4096) input tokens at 1.25 x $3, 500 output at $15. */
        uint64_t b = gateway_reserve_bound(1000, 500, 3000000, 15000000, &in);
        assert_int_equal(in, 1000 + GATEWAY_INPUT_OVERHEAD_TOKENS);
        assert_int_equal(b, (5096ULL * 3750000 + 999999) / 1000000 + 500ULL * 15);
        /* The bound is never below the cost of any usage within it. */
        GatewayUsage u = { .input_tokens = 5096, .output_tokens = 500 };
        assert_true(gateway_usage_cost(&u, 3000000, 15000000) <= b);
        GatewayUsage u2 = { .cache_write_tokens = 5096, .output_tokens = 500 };
        assert_true(gateway_usage_cost(&u2, 3000000, 15000000) <= b);
        /* Saturation instead of overflow. */
        assert_int_equal(gateway_reserve_bound(SIZE_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, NULL), UINT64_MAX);
        GatewayUsage huge = { .input_tokens = UINT64_MAX, .output_tokens = UINT64_MAX };
        assert_int_equal(gateway_usage_cost(&huge, UINT64_MAX, UINT64_MAX), UINT64_MAX);

        char *e = gateway_error_body(true, "invalid_request_error", NULL, "budget \"gone\"");
        json_t *j = parse(e);
        assert_string_equal(json_string_value(json_object_get(j, "type")), "error");
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(j, "error"), "message")), "budget \"gone\"");
        json_decref(j);
        free(e);
        e = gateway_error_body(false, "insufficient_quota", "insufficient_quota", "no");
        j = parse(e);
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(j, "error"), "code")), "insufficient_quota");
        json_decref(j);
        free(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_routes),
                cmocka_unit_test(test_anthropic_allow_list),
                cmocka_unit_test(test_openai_allow_list),
                cmocka_unit_test(test_usage),
                cmocka_unit_test(test_bounds),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
