/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MCP protocol core; see mcp-server.h. Client messages are untrusted: the line size is capped
 * by the caller, JSON is parsed strictly (no duplicate keys), tool arguments are checked
 * against the tool's schema, and tool names not offered are refused here.
 */
#include <errno.h>
#include <string.h>

#include "alloc-util.h"
#include "json-util.h"
#include "mcp-server.h"
#include "nucleus-config.h"
#include "string-util.h"
#include "tools.h"

static const char *const mcp_protocols[] = { "2025-06-18", "2025-03-26", "2024-11-05" };

struct McpServer {
        json_t *tools;
        McpCallToolFn call_tool;
        void *userdata;
        const char *protocol; /* static; NULL until initialize */
};

McpServer *mcp_server_new(json_t *tools, McpCallToolFn call_tool, void *userdata) {
        McpServer *s = xnew0(McpServer, 1);
        s->tools = json_incref(tools);
        s->call_tool = call_tool;
        s->userdata = userdata;
        return s;
}

McpServer *mcp_server_free(McpServer *s) {
        if (!s)
                return NULL;
        json_decref(s->tools);
        return mfree(s);
}

const char *mcp_server_protocol(const McpServer *s) {
        return s->protocol;
}

static json_t *reply_error(json_t *id, int code, const char *message) {
        return json_pack(
                "{s:s, s:O, s:{s:i, s:s}}",
                "jsonrpc",
                "2.0",
                "id",
                id ? id : json_null(),
                "error",
                "code",
                code,
                "message",
                message);
}

static json_t *reply_result(json_t *id, json_t *result) {
        return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result);
}

static json_t *handle_initialize(McpServer *s, json_t *id, json_t *params) {
        const char *want = json_string_value(json_object_get(params, "protocolVersion"));
        const char *agreed = MCP_PROTOCOL_LATEST;

        if (!json_is_object(params) || !want)
                return reply_error(id, MCP_INVALID_PARAMS, "initialize needs params.protocolVersion (string)");
        /* Answer with the client's revision when we speak it, else our latest; the client
         * decides whether it can continue (MCP lifecycle, version negotiation). */
        for (size_t i = 0; i < ELEMENTSOF(mcp_protocols); i++)
                if (streq(want, mcp_protocols[i]))
                        agreed = mcp_protocols[i];
        s->protocol = agreed;
        return reply_result(
                id,
                json_pack(
                        "{s:s, s:{s:{s:b}}, s:{s:s, s:s, s:s}, s:s}",
                        "protocolVersion",
                        agreed,
                        "capabilities",
                        "tools",
                        "listChanged",
                        0,
                        "serverInfo",
                        "name",
                        "nucleus-mcp",
                        "title",
                        "Nucleus sandbox tools",
                        "version",
                        NUCLEUS_VERSION,
                        "instructions",
                        "Tools act inside a Nucleus microVM sandbox on the pod's /workspace. "
                        "Every call is checked against the pod's policy; refused calls "
                        "return isError with the denial kind."));
}

static json_t *handle_tools_list(McpServer *s, json_t *id) {
        json_t *out = json_array(), *t;
        size_t i;
        json_array_foreach(s->tools, i, t)
                json_array_append_new(
                        out,
                        json_pack(
                                "{s:O, s:O, s:O}",
                                "name",
                                json_object_get(t, "name"),
                                "description",
                                json_object_get(t, "description"),
                                "inputSchema",
                                json_object_get(t, "input_schema")));
        return reply_result(id, json_pack("{s:o}", "tools", out));
}

static bool tool_offered(McpServer *s, const char *name) {
        json_t *t;
        size_t i;
        json_array_foreach(s->tools, i, t)
                if (streq_ptr(json_string_value(json_object_get(t, "name")), name))
                        return true;
        return false;
}

static json_t *tool_result(McpServer *s, json_t *id, json_t *answer, bool is_error, const char *text) {
        json_t *res = json_pack(
                "{s:[{s:s, s:s}], s:b}", "content", "type", "text", "text", text, "isError", is_error);
        /* structuredContent exists from 2025-06-18 on. */
        if (s->protocol && streq(s->protocol, "2025-06-18") && json_is_object(answer))
                json_object_set(res, "structuredContent", answer);
        return reply_result(id, res);
}

static json_t *handle_tools_call(McpServer *s, json_t *id, json_t *params) {
        const char *name = json_string_value(json_object_get(params, "name"));
        json_t *args = json_object_get(params, "arguments");
        _cleanup_json_ json_t *answer = NULL;
        _cleanup_free_ char *err = NULL;

        if (!json_is_object(params) || !name)
                return reply_error(id, MCP_INVALID_PARAMS, "tools/call needs params.name (string)");
        if (!tool_offered(s, name)) {
                _cleanup_free_ char *vis = string_make_visible(name);
                _cleanup_free_ char *m = xasprintf("Unknown tool: %s (not granted by this pod's policy)", vis);
                return reply_error(id, MCP_INVALID_PARAMS, m);
        }
        if (args && !json_is_object(args))
                return reply_error(id, MCP_INVALID_PARAMS, "tools/call params.arguments must be an object");
        _cleanup_json_ json_t *a = args ? json_incref(args) : json_object();
        if (agent_tool_check_args(agent_tool_find(name), a, &err) < 0) {
                _cleanup_json_ json_t *doc = json_pack("{s:s, s:s}", "error", err, "kind", "invalid_request");
                _cleanup_free_ char *text = xasprintf("invalid_request: %s", err);
                return tool_result(s, id, doc, true, text);
        }

        int r = s->call_tool(s->userdata, name, a, &answer, &err);
        if (r < 0) {
                _cleanup_free_ char *vis = string_make_visible(err ? err : strerror(-r));
                _cleanup_json_ json_t *doc = json_pack("{s:s, s:s}", "error", vis, "kind", "internal");
                _cleanup_free_ char *text = xasprintf("internal: %s", vis);
                return tool_result(s, id, doc, true, text);
        }
        if (json_is_object(answer) && json_object_get(answer, "error")) {
                const char *kind = json_string_value(json_object_get(answer, "kind")) ?: "internal";
                _cleanup_free_ char *msg = string_make_visible(
                        json_string_value(json_object_get(answer, "error")) ?: "refused");
                _cleanup_free_ char *text = xasprintf("%s: %s", kind, msg);
                return tool_result(s, id, answer, true, text);
        }
        _cleanup_free_ char *text = json_dumps(answer, JSON_COMPACT);
        return tool_result(s, id, answer, false, text ? text : "{}");
}

json_t *mcp_server_handle(McpServer *s, const char *line, size_t n) {
        _cleanup_json_ json_t *msg = NULL;
        _cleanup_free_ char *perr = NULL;

        if (json_parse_strict(line, n, MCP_MAX_MESSAGE, &msg, &perr) < 0) {
                _cleanup_free_ char *m = xasprintf("Parse error: %s", perr ? perr : "invalid JSON");
                return reply_error(NULL, MCP_PARSE_ERROR, m);
        }
        if (json_is_array(msg)) /* batching was removed in 2025-06-18; we never negotiated it */
                return reply_error(NULL, MCP_INVALID_REQUEST, "Invalid Request: batches are not supported");
        if (!json_is_object(msg))
                return reply_error(NULL, MCP_INVALID_REQUEST, "Invalid Request: not a JSON object");

        json_t *id = json_object_get(msg, "id");
        const char *method = json_string_value(json_object_get(msg, "method"));
        json_t *params = json_object_get(msg, "params");
        bool has_id = id && (json_is_string(id) || json_is_integer(id));

        if (id && !has_id)
                return reply_error(
                        NULL, MCP_INVALID_REQUEST, "Invalid Request: id must be a string or an integer");
        if (!streq_ptr(json_string_value(json_object_get(msg, "jsonrpc")), "2.0"))
                return has_id
                        ? reply_error(id, MCP_INVALID_REQUEST, "Invalid Request: jsonrpc must be \"2.0\"")
                        : NULL;
        if (!method) {
                /* A response to a request of ours (we send none) or garbage: no reply. */
                if (json_object_get(msg, "result") || json_object_get(msg, "error"))
                        return NULL;
                return reply_error(has_id ? id : NULL, MCP_INVALID_REQUEST, "Invalid Request: no method");
        }
        if (params && !json_is_object(params))
                return has_id ? reply_error(id, MCP_INVALID_PARAMS, "params must be an object") : NULL;
        if (!has_id)
                return NULL; /* notifications: initialized, cancelled, ... need no answer */

        if (streq(method, "initialize"))
                return handle_initialize(s, id, params);
        if (streq(method, "ping"))
                return reply_result(id, json_object());
        if (!s->protocol)
                return reply_error(id, MCP_NOT_INITIALIZED, "Server not initialized: send initialize first");
        if (streq(method, "tools/list"))
                return handle_tools_list(s, id);
        if (streq(method, "tools/call"))
                return handle_tools_call(s, id, params);
        _cleanup_free_ char *vis = string_make_visible(method);
        _cleanup_free_ char *m = xasprintf("Method not found: %s", vis);
        return reply_error(id, MCP_METHOD_NOT_FOUND, m);
}
