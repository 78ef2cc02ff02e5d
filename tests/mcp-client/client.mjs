// SPDX-License-Identifier: Apache-2.0
// Test client for nucleus-mcp: the official MCP TypeScript SDK client over stdio.
// Usage: node client.mjs '<json>' where json = {"command": PATH, "args": [...], "env": {...},
//        "calls": [{"name": "read", "arguments": {...}}, ...]}
// Prints one JSON document: {"serverVersion", "protocolVersion", "tools", "calls": [...]}.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const spec = JSON.parse(process.argv[2]);
const transport = new StdioClientTransport({
  command: spec.command,
  args: spec.args || [],
  env: spec.env || {},
  stderr: "inherit",
});
let negotiated = null;
const setVersion = transport.setProtocolVersion?.bind(transport);
transport.setProtocolVersion = (v) => {
  negotiated = v;
  if (setVersion) setVersion(v);
};

const client = new Client({ name: "nucleus-test-client", version: "0.1.0" });
await client.connect(transport);
const out = {
  serverVersion: client.getServerVersion(),
  protocolVersion: negotiated,
  tools: (await client.listTools()).tools,
  calls: [],
};
for (const c of spec.calls || []) {
  try {
    out.calls.push({ ok: true, result: await client.callTool({ name: c.name, arguments: c.arguments || {} }) });
  } catch (e) {
    out.calls.push({ ok: false, code: e.code ?? null, error: String(e.message) });
  }
}
await client.close();
process.stdout.write(JSON.stringify(out) + "\n");
