#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Stand-ins for Claude Code and Codex (a TEST FIXTURE, never shipped): the same command line,
environment, MCP configuration and output formats as the real programs (docs/run.md lists
what was verified against Claude Code 2.1.197 and Codex 0.171.0), driving a model through
ANTHROPIC_BASE_URL (Messages, streamed) or the Codex provider's base_url (Responses,
streamed) and the pod's tools through the MCP server named in their configuration.

Run as `claude` or `codex` (by symlink name). `--record -` (after nucleus run's `--`)
prints what the agent saw to stderr: argv, environment, working directory, offered tools.
"""
import json
import os
import subprocess
import sys
import tomllib
import urllib.request


def die(msg, code=2):
    print(msg, file=sys.stderr)
    sys.exit(code)


class Mcp:
    def __init__(self, cfg):
        env = dict(cfg.get("env", {}), PATH="/usr/bin:/bin")
        self.p = subprocess.Popen([cfg["command"], *cfg.get("args", [])], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.n = 0
        self.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                 "clientInfo": {"name": "fake", "version": "1"}})
        self.tools = self.call("tools/list", {})["tools"]

    def call(self, method, params):
        self.n += 1
        self.p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": self.n, "method": method, "params": params}) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())["result"]

    def tool(self, name, args):
        r = self.call("tools/call", {"name": name, "arguments": args})
        return "".join(c.get("text", "") for c in r.get("content", [])), bool(r.get("isError"))


def sse(resp):
    """(event, data) pairs of an SSE body."""
    event, data = "message", []
    for raw in resp:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    if data:
        yield event, "\n".join(data)


def post(url, body, headers):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=dict(headers, **{
        "Content-Type": "application/json"}), method="POST")
    try:
        return urllib.request.urlopen(req, timeout=120), None
    except urllib.error.HTTPError as e:
        return None, f"HTTP {e.code}: {e.read().decode(errors='replace')}"


def record(path, extra):
    """The agent runs confined (no writable host path): what it saw goes to stderr, one line
    the test picks up."""
    if path:
        doc = dict(argv=sys.argv, env=dict(os.environ), cwd=os.getcwd(), **extra)
        print("FAKE-AGENT-RECORD " + json.dumps(doc), file=sys.stderr, flush=True)


def claude(argv):
    a = {"tools": None, "record": None, "max_turns": 10}
    i, task = 0, None
    while i < len(argv):
        x = argv[i]
        if x in ("-p", "--verbose", "--strict-mcp-config"):
            a[x] = True
        elif x in ("--output-format", "--mcp-config", "--tools", "--allowedTools", "--model", "--max-turns",
                   "--record"):
            a[x.lstrip("-").replace("-", "_")] = argv[i + 1]
            i += 1
        elif x.startswith("-"):
            die(f"error: unknown option '{x}'")
        else:
            task = x
        i += 1
    if not a.get("-p") or a.get("output_format") != "stream-json" or not a.get("--verbose"):
        die("Error: --output-format=stream-json requires --print and --verbose")
    if a["tools"] != "" or not a.get("--strict-mcp-config"):
        die("fake claude: nucleus must turn every built-in tool off")
    servers = json.load(open(a["mcp_config"]))["mcpServers"]
    mcp = Mcp(servers["nucleus"])
    tools = [{"name": f"mcp__nucleus__{t['name']}", "description": t.get("description", ""),
              "input_schema": t["inputSchema"]} for t in mcp.tools]
    record(a["record"], {"offered": [t["name"] for t in tools]})
    print(json.dumps({"type": "system", "subtype": "init", "tools": [t["name"] for t in tools]}), flush=True)
    base = os.environ["ANTHROPIC_BASE_URL"]
    messages = [{"role": "user", "content": task}]
    text = ""
    for turn in range(int(a["max_turns"])):
        resp, err = post(base + "/v1/messages?beta=true",
                         {"model": a["model"], "max_tokens": 32000, "stream": True, "messages": messages,
                          "tools": tools, "metadata": {"user_id": "fake"}},
                         {"x-api-key": os.environ["ANTHROPIC_API_KEY"], "anthropic-version": "2023-06-01",
                          "anthropic-beta": "claude-code-20250219,fine-grained-tool-streaming-2025-05-14"})
        if err:
            print(json.dumps({"type": "result", "subtype": "error_during_execution", "is_error": True,
                              "result": f"API Error: {err}"}), flush=True)
            return 1
        blocks, partial = {}, {}
        for ev, data in sse(resp):
            d = json.loads(data)
            if d.get("type") == "content_block_start":
                blocks[d["index"]] = dict(d["content_block"])
                partial[d["index"]] = ""
            elif d.get("type") == "content_block_delta":
                dl = d["delta"]
                if dl.get("type") == "text_delta":
                    blocks[d["index"]]["text"] = blocks[d["index"]].get("text", "") + dl["text"]
                elif dl.get("type") == "input_json_delta":
                    partial[d["index"]] += dl["partial_json"]
        content = []
        for k in sorted(blocks):
            b = blocks[k]
            if b["type"] == "tool_use":
                b["input"] = json.loads(partial[k] or "{}")
            content.append(b)
        messages.append({"role": "assistant", "content": content})
        print(json.dumps({"type": "assistant", "message": {"role": "assistant", "content": content}}), flush=True)
        for b in content:
            if b["type"] == "text":
                text = b["text"]
        uses = [b for b in content if b["type"] == "tool_use"]
        if not uses:
            break
        results = []
        for u in uses:
            if not u["name"].startswith("mcp__nucleus__"):
                out, is_err = "No such tool available", True
            else:
                out, is_err = mcp.tool(u["name"][len("mcp__nucleus__"):], u["input"])
            results.append({"type": "tool_result", "tool_use_id": u["id"], "content": out, "is_error": is_err})
        messages.append({"role": "user", "content": results})
    print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": text,
                      "num_turns": turn + 1}), flush=True)
    return 0


def codex(argv):
    if not argv or argv[0] != "exec":
        die("fake codex: only `codex exec` is supported")
    argv = argv[1:]
    cfg, model, task, rec, flags = {}, None, None, None, set()
    i = 0
    while i < len(argv):
        x = argv[i]
        if x in ("--skip-git-repo-check", "--ephemeral", "--json"):
            flags.add(x)
        elif x == "-m":
            model = argv[i + 1]
            i += 1
        elif x == "-c":
            k, v = argv[i + 1].split("=", 1)
            cfg[k] = tomllib.loads(f"v = {v}")["v"]
            i += 1
        elif x == "--record":
            rec = argv[i + 1]
            i += 1
        elif x.startswith("-"):
            die(f"error: unexpected argument '{x}'")
        else:
            task = x
        i += 1
    if "--json" not in flags:
        die("fake codex: nucleus reads --json")
    for k in ("features.shell_tool", "features.apply_patch_freeform", "features.unified_exec"):
        if cfg.get(k) is not False:
            die(f"fake codex: {k} must be false (its own tools act on the host)")
    server = cfg["mcp_servers.nucleus"]
    if server.get("default_tools_approval_mode") != "approve":
        die("MCP tool call requires approval, but approval policy is never")
    prov = cfg["model_providers." + cfg["model_provider"]]
    if prov.get("wire_api") != "responses":
        die("fake codex: wire_api must be responses")
    mcp = Mcp(server)
    # Like Codex 0.171: an MCP server's tools inside one namespace tool, called by name.
    tools = [{"type": "namespace", "name": "mcp__nucleus", "description": "Tools in the mcp__nucleus namespace.",
              "tools": [{"type": "function", "name": t["name"], "description": t.get("description", ""),
                         "parameters": t["inputSchema"]} for t in mcp.tools]}]
    record(rec, {"offered": [f"mcp__nucleus__{t['name']}" for t in mcp.tools], "config": cfg})
    print(json.dumps({"type": "thread.started", "thread_id": "t"}), flush=True)
    token = os.environ[prov["env_key"]]
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": task}]}]
    text = ""
    for turn in range(20):
        resp, err = post(prov["base_url"] + "/responses",
                         {"model": model, "instructions": "You are Codex.", "input": items, "tools": tools,
                          "tool_choice": "auto", "parallel_tool_calls": False, "store": False, "stream": True,
                          "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k"},
                         {"Authorization": f"Bearer {token}"})
        if err:
            print(json.dumps({"type": "turn.failed", "error": {"message": err}}), flush=True)
            return 1
        output, usage = [], None
        for ev, data in sse(resp):
            d = json.loads(data)
            if d.get("type") == "response.completed":
                output, usage = d["response"]["output"], d["response"].get("usage")
        calls = []
        for it in output:
            items.append(it)
            if it["type"] == "message":
                text = "".join(c.get("text", "") for c in it["content"])
                print(json.dumps({"type": "item.completed", "item": {"id": it.get("id"), "type": "agent_message",
                                                                    "text": text}}), flush=True)
            elif it["type"] == "function_call":
                calls.append(it)
        print(json.dumps({"type": "turn.completed", "usage": usage}), flush=True)
        if not calls:
            break
        for c in calls:
            if c.get("namespace") == "mcp__nucleus":
                out, is_err = mcp.tool(c["name"], json.loads(c["arguments"] or "{}"))
            else:
                out = f"unsupported call: {c['name']}"
            items.append({"type": "function_call_output", "call_id": c["call_id"], "output": out})
    return 0


if __name__ == "__main__":
    name = os.path.basename(sys.argv[0])
    sys.exit(claude(sys.argv[1:]) if name == "claude" else codex(sys.argv[1:]))
