# SPDX-License-Identifier: Apache-2.0
"""nucleus-mcp with a real MCP client: the official TypeScript SDK (@modelcontextprotocol/sdk,
installed from the npm registry at test time with `npm ci` into tests/mcp-client). The server
talks signed HTTP to a stand-in node (tests/helpers/stub_node.py); test_mcp_vm.py does the
same against a real pod. Checks: version negotiation, tools/list (one tool per granted
operation, with JSON Schemas), an allowed call, a denied call (isError + kind), an invalid
call refused before the node, a tool that is not granted.
"""
import json
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import ROOT, binary
from helpers.stub_node import StubNode

CLIENT_DIR = ROOT / "tests" / "mcp-client"


@pytest.fixture(scope="session")
def mcp_client():
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        pytest.skip("node/npm not installed")
    if not (CLIENT_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CLIENT_DIR, capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0:
            pytest.skip(f"npm ci failed (registry unreachable?): {r.stderr[-500:]}")
    return [node, str(CLIENT_DIR / "client.mjs")]


@pytest.fixture
def setup(tmp_path):
    cfg = tmp_path / "cfg"
    (cfg / "secrets").mkdir(parents=True, mode=0o700)
    os.chmod(cfg, 0o700)
    key = os.urandom(32)
    keyfile = cfg / "secrets" / "node.key"
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (key.hex() + "\n").encode())
    os.close(fd)
    with StubNode(key) as node:
        pod = node.add_running_pod()
        pathlib.Path(pod.dir, "hello.txt").write_text("hello from the pod\n")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NUCLEUS_CONFIG_DIR": str(cfg),
               "NUCLEUS_STATE_DIR": str(tmp_path / "state"), "NUCLEUS_NODE_URL": node.url}
        yield node, pod, env


def client(mcp_client, env, args, calls):
    spec = {"command": str(binary("nucleus-mcp")), "args": args, "env": env, "calls": calls}
    r = subprocess.run([*mcp_client, json.dumps(spec)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def text_of(result):
    return "".join(c["text"] for c in result["content"] if c["type"] == "text")


def test_sdk_lists_and_calls_tools(mcp_client, setup):
    node, pod, env = setup
    out, err = client(mcp_client, env, ["--pod", pod.id, "--profile", "fix_issue"], [
        {"name": "read", "arguments": {"path": "hello.txt"}},
        {"name": "read", "arguments": {"path": "../../../etc/shadow"}},
        {"name": "read", "arguments": {"path": 42}},
        {"name": "web_fetch", "arguments": {"url": "https://example.com"}},
        {"name": "write", "arguments": {"path": "new.txt", "content": "written through MCP\n"}},
    ])
    # The SDK asked for its latest revision; we answered with ours, which it accepts.
    assert out["protocolVersion"] == "2025-06-18"
    assert out["serverVersion"]["name"] == "nucleus-mcp"
    tools = {t["name"]: t for t in out["tools"]}
    # fix_issue grants read/write/edit/run/glob/grep but no web: no web_fetch tool.
    assert {"read", "write", "edit", "run", "glob", "grep"} <= set(tools) and "web_fetch" not in tools
    assert tools["read"]["inputSchema"]["required"] == ["path"]
    assert tools["edit"]["inputSchema"]["properties"].keys() >= {"path", "old", "new"}

    ok, denied, invalid, ungranted, write = out["calls"]
    assert ok["ok"] and ok["result"]["isError"] is False
    assert "hello from the pod" in text_of(ok["result"])
    assert ok["result"]["structuredContent"]["content"] == "hello from the pod\n"

    assert denied["ok"] and denied["result"]["isError"] is True
    assert text_of(denied["result"]).startswith("sandbox_escape: ")
    assert denied["result"]["structuredContent"]["kind"] == "sandbox_escape"

    assert invalid["ok"] and invalid["result"]["isError"] is True
    assert invalid["result"]["structuredContent"]["kind"] == "invalid_request"

    assert not ungranted["ok"] and ungranted["code"] == -32602 and "web_fetch" in ungranted["error"]

    assert write["ok"] and write["result"]["isError"] is False
    assert pathlib.Path(pod.dir, "new.txt").read_text() == "written through MCP\n"
    # Only the calls that passed local validation reached the node, all signed.
    assert [(c[1], c[2].get("path")) for c in node.tool_calls] == [
        ("read", "hello.txt"), ("read", "../../../etc/shadow"), ("write", "new.txt")]
    assert all(s != 401 for _, _, s in node.log)


def test_tools_follow_the_pod_policy_reported_by_the_node(mcp_client, setup):
    node, pod, env = setup
    pod.spec = {"spec": {"policy": "read_only"}}  # the node reports a profile name
    out, _ = client(mcp_client, env, ["--pod", pod.id], [])
    names = {t["name"] for t in out["tools"]}
    assert "read" in names and "write" not in names and "run" not in names


def test_wrong_key_is_refused_by_the_node(mcp_client, setup, tmp_path):
    node, pod, env = setup
    bad = tmp_path / "bad.key"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (os.urandom(32).hex() + "\n").encode())
    os.close(fd)
    out, _ = client(mcp_client, dict(env, NUCLEUS_NODE_KEY_FILE=str(bad)), ["--pod", pod.id, "--tools", "read"],
                    [{"name": "read", "arguments": {"path": "hello.txt"}}])
    call = out["calls"][0]
    assert call["result"]["isError"] is True
    assert call["result"]["structuredContent"]["kind"] == "unauthorized"
    assert node.tool_calls == []
