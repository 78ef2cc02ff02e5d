/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the MCP protocol core (src/mcp/mcp-server.c): lifecycle and version
 * negotiation, tools/list, tools/call (allowed, denied, invalid, unknown), JSON-RPC errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "alloc-util.h"
#include "json-util.h"
#include "mcp-server.h"
#include "string-util.h"
#include "tools.h"

static int n_calls;

static int fake_call(void *userdata, const char *op, json_t *args, json_t **ret, char **reterr) {
        n_calls++;
        const char *path = json_string_value(json_object_get(args, "path"));
        if (streq_ptr(path, "boom")) {
                *reterr = xstrdup("connection refused");
                return -ECONNREFUSED;
        }
        if (path && startswith(path, "/"))
                *ret = json_pack("{s:s, s:s}", "error", "path outside the workspace", "kind", "sandbox_escape");
        else
                *ret = json_pack("{s:s}", "contents", "hello\n");
        return 0;
}

static McpServer *server(void) {
        char *ops[] = { "read", "run", NULL };
        _cleanup_json_ json_t *tools = agent_tools_for_ops(ops);
        return mcp_server_new(tools, fake_call, NULL);
}

static json_t *ask(McpServer *s, const char *line) {
        return mcp_server_handle(s, line, strlen(line));
}

static int err_code(json_t *r) {
        return (int) json_integer_value(json_object_get(json_object_get(r, "error"), "code"));
}

static void init(McpServer *s, const char *version, const char *expect) {
        _cleanup_free_ char *m = xasprintf(
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                "\"protocolVersion\":\"%s\",\"capabilities\":{},\"clientInfo\":{\"name\":"
                "\"t\",\"version\":\"1\"}}}",
                version);
        _cleanup_json_ json_t *r = ask(s, m);
        json_t *res = json_object_get(r, "result");
        assert_string_equal(json_string_value(json_object_get(res, "protocolVersion")), expect);
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(res, "serverInfo"), "name")), "nucleus-mcp");
        assert_non_null(json_object_get(json_object_get(res, "capabilities"), "tools"));
        assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
}

static void test_lifecycle(void **state) {
        _cleanup_(mcp_server_freep) McpServer *s = server();
        _cleanup_json_ json_t *early = ask(s, "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"tools/list\"}");
        assert_int_equal(err_code(early), MCP_NOT_INITIALIZED);
        _cleanup_json_ json_t *ping = ask(s, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"ping\"}");
        assert_true(json_is_object(json_object_get(ping, "result")));

        init(s, "2025-06-18", "2025-06-18");
        assert_null(ask(s, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"));
        /* Negotiating down, and answering an unknown revision with our latest. */
        init(s, "2024-11-05", "2024-11-05");
        init(s, "2025-03-26", "2025-03-26");
        init(s, "1999-01-01", MCP_PROTOCOL_LATEST);
}

static void test_tools_list(void **state) {
        _cleanup_(mcp_server_freep) McpServer *s = server();
        init(s, "2025-06-18", "2025-06-18");
        _cleanup_json_ json_t *r = ask(
                s, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":{}}");
        json_t *tools = json_object_get(json_object_get(r, "result"), "tools");
        assert_int_equal(json_array_size(tools), 2);
        json_t *t = json_array_get(tools, 0);
        assert_string_equal(json_string_value(json_object_get(t, "name")), "read");
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(t, "inputSchema"), "type")), "object");
        assert_non_null(json_object_get(t, "description"));
}

static void test_tools_call(void **state) {
        _cleanup_(mcp_server_freep) McpServer *s = server();
        init(s, "2025-06-18", "2025-06-18");
        n_calls = 0;

        _cleanup_json_ json_t *ok = ask(
                s,
                "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":"
                "\"read\",\"arguments\":{\"path\":\"README.md\"}}}");
        json_t *res = json_object_get(ok, "result");
        assert_true(json_is_false(json_object_get(res, "isError")));
        assert_non_null(strstr(
                json_string_value(json_object_get(json_array_get(json_object_get(res, "content"), 0), "text")),
                "hello"));
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(res, "structuredContent"), "contents")),
                "hello\n");

        _cleanup_json_ json_t *denied = ask(
                s,
                "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{"
                "\"name\":\"read\",\"arguments\":{\"path\":\"/etc/shadow\"}}}");
        res = json_object_get(denied, "result");
        assert_true(json_is_true(json_object_get(res, "isError")));
        assert_true(startswith(
                json_string_value(json_object_get(json_array_get(json_object_get(res, "content"), 0), "text")),
                "sandbox_escape: "));

        /* Not granted: a protocol error, and the node is never asked. */
        _cleanup_json_ json_t *ungranted = ask(
                s,
                "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{"
                "\"name\":\"write\",\"arguments\":{\"path\":\"a\",\"contents\":\"\"}}}");
        assert_int_equal(err_code(ungranted), MCP_INVALID_PARAMS);

        /* Invalid arguments: a tool error, the node is never asked. */
        _cleanup_json_ json_t *bad = ask(
                s,
                "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":{"
                "\"name\":\"read\",\"arguments\":{\"path\":3}}}");
        res = json_object_get(bad, "result");
        assert_true(json_is_true(json_object_get(res, "isError")));
        assert_string_equal(
                json_string_value(json_object_get(json_object_get(res, "structuredContent"), "kind")),
                "invalid_request");

        /* Transport failure: a tool error with kind internal. */
        _cleanup_json_ json_t *boom = ask(
                s,
                "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{"
                "\"name\":\"read\",\"arguments\":{\"path\":\"boom\"}}}");
        assert_true(json_is_true(json_object_get(json_object_get(boom, "result"), "isError")));
        assert_int_equal(n_calls, 3);

        /* Older revisions get no structuredContent. */
        init(s, "2025-03-26", "2025-03-26");
        _cleanup_json_ json_t *old = ask(
                s,
                "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{"
                "\"name\":\"read\",\"arguments\":{\"path\":\"x\"}}}");
        assert_null(json_object_get(json_object_get(old, "result"), "structuredContent"));
}

static void test_jsonrpc_errors(void **state) {
        _cleanup_(mcp_server_freep) McpServer *s = server();
        _cleanup_json_ json_t *a = ask(s, "{nope");
        assert_int_equal(err_code(a), MCP_PARSE_ERROR);
        assert_true(json_is_null(json_object_get(a, "id")));
        _cleanup_json_ json_t *b = ask(s, "[1,2]");
        assert_int_equal(err_code(b), MCP_INVALID_REQUEST);
        _cleanup_json_ json_t *c = ask(s, "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}");
        assert_int_equal(err_code(c), MCP_INVALID_REQUEST);
        _cleanup_json_ json_t *d = ask(s, "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}");
        assert_int_equal(err_code(d), MCP_INVALID_REQUEST);
        _cleanup_json_ json_t *e = ask(s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"id\":2}");
        assert_int_equal(err_code(e), MCP_PARSE_ERROR); /* duplicate keys */
        init(s, "2025-06-18", "2025-06-18");
        _cleanup_json_ json_t *f = ask(s, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"resources/list\"}");
        assert_int_equal(err_code(f), MCP_METHOD_NOT_FOUND);
        _cleanup_json_ json_t *g = ask(
                s, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":[]}");
        assert_int_equal(err_code(g), MCP_INVALID_PARAMS);
        assert_null(ask(s, "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_lifecycle),
                cmocka_unit_test(test_tools_list),
                cmocka_unit_test(test_tools_call),
                cmocka_unit_test(test_jsonrpc_errors),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
