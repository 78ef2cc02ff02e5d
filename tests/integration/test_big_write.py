# SPDX-License-Identifier: Apache-2.0
"""`write` with content larger than one channel frame (1 MiB), with the `local` driver: the node
streams the decoded content to the proxy as data frames (docs/proxy.md "Size"). Text and binary
files of 3 MiB are written and read back in pieces; a write over the pod's max_file_bytes is
refused with too_large and writes nothing; the same through nucleus-mcp (JSON-RPC tools/call)."""
import base64
import hashlib
import json
import os
import socket
import subprocess
import time

import pytest

from conftest import binary, require_root
from helpers.nodeproc import NodeProc, spec_yaml

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")

MiB = 1024 * 1024
MAX_FILE_BYTES = 16 * MiB  # the proxy's default (configure sends no limits)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    require_root()
    with NodeProc(tmp_path_factory.mktemp("bigwrite"), driver="local") as n:
        yield n


@pytest.fixture(scope="module")
def pod(node):
    c = client(node)
    r = c.create_pod(spec_yaml())
    assert r.status == 201, r
    pid = r.json()["id"]
    st = c.wait_state(pid, {"running", "failed", "exited"}, timeout=60)
    assert st["state"] == "running", st
    yield pid
    c.delete_pod(pid)


def client(node):
    c = node.client()
    c.timeout = 120
    return c


def read_all(c, pod, path):
    """The whole file, read in pieces of the proxy's max_read_bytes."""
    out, off = b"", 0
    while True:
        r = c.tool(pod, "read", {"path": path, "offset": off, "length": 512 * 1024})
        assert r.status == 200, r
        a = r.json()
        piece = base64.b64decode(a["content_base64"]) if "content_base64" in a else a["content"].encode()
        out += piece
        off += len(piece)
        if a["eof"] or not piece:
            return out


def text_content(size):
    # Quotes, backslashes, newlines and non-ASCII: the JSON body is larger than the file.
    line = 'const x = "a\\"b" // ü \t line\n'
    return (line * (size // len(line.encode()) + 1)).encode()[:size].decode("utf-8", "ignore")


def test_write_3mib_text_and_binary(node, pod):
    c = client(node)
    text = text_content(3 * MiB)
    r = c.tool(pod, "write", {"path": "big/package-lock.json", "content": text, "create_dirs": True})
    assert r.status == 200, r
    a = r.json()
    data = text.encode()
    assert a["bytes"] == len(data) and a["created"] is True, a
    assert a["sha256"] == hashlib.sha256(data).hexdigest()
    assert read_all(c, pod, "big/package-lock.json") == data

    blob = os.urandom(3 * MiB) + b"\0\xff"
    r = c.tool(pod, "write", {"path": "big/fixture.bin", "content_base64": base64.b64encode(blob).decode()})
    assert r.status == 200, r
    assert r.json()["bytes"] == len(blob) and r.json()["sha256"] == hashlib.sha256(blob).hexdigest()
    assert read_all(c, pod, "big/fixture.bin") == blob

    # Overwriting an existing file with big content keeps working (and with small content).
    r = c.tool(pod, "write", {"path": "big/fixture.bin", "content_base64": base64.b64encode(blob[::-1]).decode()})
    assert r.status == 200 and r.json()["created"] is False, r
    assert read_all(c, pod, "big/fixture.bin") == blob[::-1]
    assert c.tool(pod, "write", {"path": "big/small.txt", "content": "1\n"}).status == 200

    # The audit log records the call as the client made it (args digest, path, size).
    lines = [json.loads(l) for l in c.audit(pod).text.splitlines()]
    writes = [l for l in lines if l.get("op") == "write" and l.get("decision") == "allow"]
    assert writes, lines[-5:]
    v = node.verify_audit(pod, allow_unsealed=True)
    assert v.returncode == 0, v.stdout + v.stderr


def test_write_over_max_file_bytes_is_refused_and_writes_nothing(node, pod):
    c = client(node)
    big = base64.b64encode(b"\1" * (MAX_FILE_BYTES + 1)).decode()
    r = c.tool(pod, "write", {"path": "too/big.bin", "content_base64": big, "create_dirs": True})
    assert r.status == 413 and r.json()["kind"] == "too_large", (r.status, r.text[:300])
    assert "max_file_bytes" in r.json()["error"], r.json()
    r = c.tool(pod, "read", {"path": "too/big.bin"})
    assert r.status == 404 and r.json()["kind"] == "not_found", r
    # A refused path is refused before any content is accepted; the pod keeps working.
    r = c.tool(pod, "write", {"path": ".git/config", "content": "x" * (2 * MiB)})
    assert r.status == 403 and r.json()["kind"] == "path_denied", r
    assert c.get_pod(pod).json()["state"] == "running"
    assert c.tool(pod, "write", {"path": "after.txt", "content": "ok"}).status == 200


def test_body_over_the_tool_cap_is_413_naming_the_key(node, pod):
    c = client(node)
    cap = 2 * MAX_FILE_BYTES + MiB
    body = b'{"path":"x","content":"' + b"a" * cap + b'"}'
    r = c.request("POST", f"/v1/pods/{pod}/tools/write", body, {"Content-Type": "application/json"})
    assert r.status == 413 and r.json()["kind"] == "too_large", r
    assert "max_tool_body_bytes" in r.json()["error"] and str(cap) in r.json()["error"], r.json()
    # Without X-Nucleus-Content-SHA256 a body stays at 1 MiB.
    r = c.request("POST", f"/v1/pods/{pod}/tools/write", b'{"path":"y","content":"' + b"b" * (2 * MiB) + b'"}',
                  {"Content-Type": "application/json"}, declare_sha256=False)
    assert r.status == 413 and "without X-Nucleus-Content-SHA256" in r.json()["error"], r


def mcp_call(proc, msg):
    proc.stdin.write((json.dumps(msg) + "\n").encode())
    proc.stdin.flush()
    if "id" not in msg:
        return None
    line = proc.stdout.readline()
    assert line, proc.stderr.read().decode()
    return json.loads(line)


def test_nucleus_mcp_writes_2mib(node, pod, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "NUCLEUS_NODE_URL": f"http://127.0.0.1:{node.port}",
           "NUCLEUS_NODE_KEY_FILE": str(node.secrets / "node.key")}
    mcp = subprocess.Popen([str(binary("nucleus-mcp")), "--pod", pod, "--tools", "read,write"], env=env,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        r = mcp_call(mcp, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                           "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                      "clientInfo": {"name": "t", "version": "1"}}})
        assert "result" in r, r
        mcp_call(mcp, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        text = text_content(2 * MiB)
        r = mcp_call(mcp, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                           "params": {"name": "write", "arguments": {"path": "mcp/big.txt", "content": text,
                                                                     "create_dirs": True}}})
        res = r["result"]
        assert res["isError"] is False, res
        assert res["structuredContent"]["bytes"] == len(text.encode()), res
    finally:
        mcp.stdin.close()
        mcp.wait(timeout=30)
    c = client(node)
    assert read_all(c, pod, "mcp/big.txt") == text.encode()


def test_client_cannot_send_the_streamed_write_wire_arguments(node, pod):
    """content_bytes/content_sha256 are the node's own way of streaming a write to the proxy. From
    a client (the agent's pod credential included) they announced content that never came: the
    proxy held one of its few large-write streams, and the call hung until the tool timeout. The
    node refuses them at once, alone or beside content, and the pod's large writes still work."""
    c = client(node)
    c.timeout = 30
    s = scoped_client(node, pod)
    sha = hashlib.sha256(b"x" * 10).hexdigest()
    for who in (c, s):
        for args in ({"path": "w.txt", "content_bytes": 10, "content_sha256": sha},
                     {"path": "w.txt", "content_bytes": 10},
                     {"path": "w.txt", "content": "x" * 10, "content_sha256": sha}):
            r = who.tool(pod, "write", args)
            assert r.status == 400 and r.json()["kind"] == "invalid_request", (args, r)
            assert "wire arguments" in r.json()["error"], r
    assert c.tool(pod, "read", {"path": "w.txt"}).status == 404
    big = os.urandom(2 * MiB)
    r = c.tool(pod, "write", {"path": "w.bin", "content_base64": base64.b64encode(big).decode()})
    assert r.status == 200, r
    assert read_all(c, pod, "w.bin") == big


def scoped_client(node, pod):
    from helpers.nodeclient import NodeClient
    cred = node.client().mint_credential(pod).json()
    s = NodeClient.scoped(f"http://127.0.0.1:{node.port}", cred)
    s.timeout = 30
    return s


def test_large_tool_calls_in_flight_are_bounded(node, pod):
    """A tool call over the JSON body limit (a big write) is parsed and decoded whole in memory by
    its handler: a pod's credentials could make the node hold gigabytes with their 16
    connections. At most 2 per pod are under way at once: with two held open (part of their body
    sent), another is refused 503 capacity from its headers; small calls still answer; once the
    two are gone a big write works again."""
    from helpers.nodeclient import sign_headers
    cred = node.client().mint_credential(pod).json()
    key, key_id = bytes.fromhex(cred["secret"]), cred["key_id"]
    path = f"/v1/pods/{pod}/tools/write"
    body = json.dumps({"path": "held.txt", "content": "a" * (3 * MiB)}).encode()

    def open_request():
        h = sign_headers(key, "POST", path, body, key_id=key_id)
        lines = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}",
                 "Content-Type: application/json"] + [f"{k}: {v}" for k, v in h.items()]
        s = socket.create_connection(("127.0.0.1", node.port))
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        s.sendall(body[:MiB])  # under way: the rest never comes while the test holds it
        return s

    s = scoped_client(node, pod)
    held = [open_request(), open_request()]
    try:
        # The node takes the two when it has read their headers; no clock: ask until it says so.
        deadline = time.monotonic() + 60
        while True:
            r = s.tool(pod, "write", {"path": "third.txt", "content": "b" * (3 * MiB)})
            if r.status == 503 or time.monotonic() > deadline:
                break
            assert r.status == 200, r
        assert r.status == 503 and r.json()["kind"] == "capacity", r
        assert "large tool calls" in r.json()["error"], r
        assert s.tool(pod, "write", {"path": "small.txt", "content": "c"}).status == 200
    finally:
        for h in held:
            h.close()
    deadline = time.monotonic() + 60
    while True:
        r = s.tool(pod, "write", {"path": "after.txt", "content": "d" * (3 * MiB)})
        if r.status != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status == 200, r
    assert read_all(s, pod, "after.txt") == b"d" * (3 * MiB)
    assert s.tool(pod, "read", {"path": "held.txt"}).status == 404
