/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The MCP protocol core of nucleus-mcp: JSON-RPC 2.0 messages (one per line on stdio) for
 * protocol revision 2025-06-18, negotiating down to 2025-03-26 and 2024-11-05 when the client
 * asks for them. initialize, ping, tools/list (one tool per operation the pod's policy grants)
 * and tools/call (handed to a callback that performs the call on the node). Every message is
 * untrusted client input: sizes capped, types checked, arguments validated against the tool
 * schema before anything reaches the node. Transport-free so it can be unit tested.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "macro.h"

#define MCP_PROTOCOL_LATEST "2025-06-18"
/* One JSON-RPC line, bytes: room for a write of the proxy's default max_file_bytes (16 MiB) as
 * JSON-escaped text or base64 (the node's tool-call cap is twice that plus 1 MiB). */
#define MCP_MAX_MESSAGE (48U * 1024U * 1024U)

/* JSON-RPC error codes. */
#define MCP_PARSE_ERROR (-32700)
#define MCP_INVALID_REQUEST (-32600)
#define MCP_METHOD_NOT_FOUND (-32601)
#define MCP_INVALID_PARAMS (-32602)
#define MCP_INTERNAL_ERROR (-32603)
#define MCP_NOT_INITIALIZED (-32002)

/* Perform a tool call: same contract as AgentHooks.call_tool (agent.h). */
typedef int (*McpCallToolFn)(void *userdata, const char *op, json_t *args, json_t **ret_answer, char **reterr);

typedef struct McpServer McpServer;

/* tools: the offered tools in the neutral form (agent_tools_for_ops()); a reference is taken. */
McpServer *mcp_server_new(json_t *tools, McpCallToolFn call_tool, void *userdata);
McpServer *mcp_server_free(McpServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(McpServer *, mcp_server_free);

/* Handle one message (one line, without the newline). Returns a new reference to the reply
 * object to write, or NULL when nothing is to be written (notifications, responses). */
json_t *mcp_server_handle(McpServer *s, const char *line, size_t n);

/* The protocol revision agreed in initialize (NULL before). */
const char *mcp_server_protocol(const McpServer *s);
