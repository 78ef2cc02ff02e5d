/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the MCP message handler (src/mcp/mcp-server.c): each input line is one message; the
 * server is initialized first so tools/call paths are reached. Tool calls answer locally. */
#include <stdint.h>
#include <string.h>

#include "json-util.h"
#include "mcp-server.h"
#include "tools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int answer(void *userdata, const char *op, json_t *args, json_t **ret, char **reterr) {
        *ret = json_pack("{s:s, s:s}", "error", "denied", "kind", "path_denied");
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char init[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
                                   "{\"protocolVersion\":\"2025-06-18\"}}";
        char *ops[] = { "read", "write", "edit", "run", "grep", NULL };
        if (size > 64 * 1024)
                return 0;
        json_t *tools = agent_tools_for_ops(ops);
        McpServer *s = mcp_server_new(tools, answer, NULL);
        json_decref(mcp_server_handle(s, init, strlen(init)));
        const char *p = (const char *) data, *end = p + size;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);
                json_t *r = mcp_server_handle(s, p, n);
                if (r && !json_is_object(r))
                        __builtin_trap();
                json_decref(r);
                p += n + 1;
        }
        mcp_server_free(s);
        json_decref(tools);
        return 0;
}
