# SPDX-License-Identifier: Apache-2.0
"""Credentials scoped to one pod (docs/api.md "Scoped credentials"), through a real node with the
`local` driver: a pod credential signs its pod's tool, status, event, lease and approval-queue
routes and nothing else (403 naming why); a wrong signature with a valid key id, an unknown key
id and a credential of an ended or removed pod are refused; answers are authenticated with the
credential's secret; nucleus-mcp works with the credential alone (no node key readable)."""
import json
import os
import subprocess
import threading
import time

import pytest

from conftest import binary, require_root
from helpers.nodeclient import NodeClient
from helpers.nodeproc import NodeProc, spec_yaml, tar_bytes

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")


@pytest.fixture
def node(tmp_path):
    require_root()
    with NodeProc(tmp_path, driver="local") as n:
        yield n


def running_pod(c):
    r = c.create_pod(spec_yaml())
    assert r.status == 201, r
    pod = r.json()["id"]
    assert c.wait_state(pod, {"running", "failed", "exited"}, timeout=60)["state"] == "running"
    return pod


def mint(c, pod, scope=None):
    r = c.mint_credential(pod, scope)
    assert r.status == 201, r
    cred = r.json()
    assert cred["pod"] == pod and cred["scope"] == (scope or "pod")
    assert len(cred["secret"]) == 64 and cred["key_id"].startswith(f"{cred['scope']}-{pod}-")
    return cred


def refused(r, detail):
    assert r.status == 403, r
    body = r.json()
    assert body["kind"] == "insufficient_capability" and body["detail"] == detail, body
    return body


def test_pod_credential_scope(node):
    c = node.client()
    pod, other = running_pod(c), running_pod(c)
    assert c.upload_workspace(pod, tar_bytes({"README.md": "hello\n"})).status == 200
    cred = mint(c, pod)
    s = NodeClient.scoped(f"http://127.0.0.1:{node.port}", cred, actor="sdk")

    # Its own pod's status, tools, lease and approval queue; answers carry a MAC with the
    # credential's secret (the client has no node key to check one with).
    r = s.get_pod(pod)
    assert r.status == 200 and r.json()["id"] == pod and r.mac_ok, r
    r = s.tool(pod, "read", {"path": "README.md"})
    assert r.status == 200 and "hello" in r.text and r.mac_ok, r
    assert s.request("POST", f"/v1/pods/{pod}/lease").status == 200
    r = s.request("GET", f"/v1/pods/{pod}/approvals")
    assert r.status == 200, r
    conn, resp = s.stream("GET", f"/v1/pods/{pod}/events", timeout=30)
    try:
        assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    finally:
        conn.close()

    # Never: another pod, the node's routes, the workspace, budget operations, more credentials.
    refused(s.get_pod(other), "other_pod")
    refused(s.tool(other, "read", {"path": "README.md"}), "other_pod")
    refused(s.create_pod(spec_yaml()), "node_key_required")
    refused(s.list_pods(), "node_key_required")
    body = refused(s.upload_workspace(pod, tar_bytes({"x": "y\n"})), "node_key_required")
    assert "node key" in body["error"]
    refused(s.patch(pod), "node_key_required")
    refused(s.delete_pod(pod), "node_key_required")
    refused(s.cancel_pod(pod), "node_key_required")
    refused(s.logs(pod), "node_key_required")
    refused(s.audit(pod), "node_key_required")
    refused(s.mint_credential(pod), "node_key_required")
    refused(s.request("POST", "/v1/pods/prune", b"{}"), "node_key_required")
    r = s.tool(pod, "charge", {"usd": "0.01"})
    assert r.status == 403 and r.json()["kind"] == "insufficient_capability", r
    assert c.get_pod(pod).json()["state"] == "running"

    # Answers refused at header time are authenticated with the credential's secret too.
    # (Over a tool call's cap: twice the pod's max_file_bytes plus 1 MiB, 33 MiB.)
    r = s.tool(pod, "write", {"path": "big.txt", "content": "a" * (34 << 20)})
    assert r.status == 413 and r.json()["kind"] == "too_large" and r.mac_ok, r

    # The workspace upload is refused before its body is read (header time).
    big = tar_bytes({"big.bin": "x" * (2 << 20)})
    refused(s.upload_workspace(pod, big), "node_key_required")

    # A wrong signature with a valid key id; an unknown key id; a malformed one.
    bad = NodeClient(f"http://127.0.0.1:{node.port}", key=os.urandom(32), key_id=cred["key_id"])
    r = bad.get_pod(pod)
    assert r.status == 401 and r.json()["detail"] == "bad_signature", r
    assert not r.mac_ok  # signed with the real secret, which this client does not hold
    swapped = NodeClient(f"http://127.0.0.1:{node.port}", key=bytes.fromhex(cred["secret"]),
                         key_id=cred["key_id"][:-1] + ("0" if cred["key_id"][-1] != "0" else "1"))
    r = swapped.get_pod(pod)
    assert r.status == 401 and r.json()["detail"] == "unknown_key", r
    r = NodeClient(f"http://127.0.0.1:{node.port}", key=bytes.fromhex(cred["secret"]), key_id="BAD KEY").get_pod(pod)
    assert r.status == 401, r
    # The key id is signed: the node key's signature with someone's key id does not pass.
    r = c.request("GET", f"/v1/pods/{pod}", headers={"X-Nucleus-Key-Id": cred["key_id"]})
    assert r.status == 401 and r.json()["detail"] == "bad_signature", r

    # A run credential signs only the budget routes of its pod.
    run = NodeClient.scoped(f"http://127.0.0.1:{node.port}", mint(c, pod, "run"))
    refused(run.get_pod(pod), "pod_credential_required")
    refused(run.tool(pod, "read", {"path": "README.md"}), "pod_credential_required")

    # The audit log names the credential (never its secret) on the calls it signed.
    log = c.audit(pod).text
    assert cred["key_id"] in log and cred["secret"] not in log
    assert f"sdk (credential {cred['key_id']})" in log
    assert cred["secret"] not in node.log()

    # Expires with its pod: ended, then removed.
    assert c.delete_pod(pod).status == 200
    refused(s.get_pod(pod), "pod_ended")
    refused(s.tool(pod, "read", {"path": "README.md"}), "pod_ended")
    r = c.mint_credential(pod)
    assert r.status == 409 and r.json()["kind"] == "pod_not_running", r
    assert c.request("POST", f"/v1/pods/{pod}/remove").status == 200
    r = s.get_pod(pod)
    assert r.status == 401 and r.json()["detail"] == "unknown_key", r
    c.delete_pod(other)


def test_mint_refuses_bad_scope(node):
    c = node.client()
    pod = running_pod(c)
    for body in (b'{"scope":"node"}', b'{"scope":1}', b'[]', b'{"scope":"pod","x":1}'):
        r = c.request("POST", f"/v1/pods/{pod}/credentials", body)
        assert r.status == 400 and r.json()["kind"] == "invalid_request", (body, r)
    keys = {mint(c, pod)["key_id"] for _ in range(3)}
    assert len(keys) == 3
    c.delete_pod(pod)


def mcp_call(proc, msg):
    proc.stdin.write((json.dumps(msg) + "\n").encode())
    proc.stdin.flush()
    if "id" not in msg:
        return None
    line = proc.stdout.readline()
    assert line, proc.stderr.read().decode()
    return json.loads(line)


def test_nucleus_mcp_with_the_credential_alone(node, tmp_path):
    c = node.client()
    pod = running_pod(c)
    assert c.upload_workspace(pod, tar_bytes({"README.md": "scoped hello\n"})).status == 200
    # `nucleus credential` mints it with the node key and saves it 0600.
    path = tmp_path / "pod.cred"
    cli_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NUCLEUS_CONFIG_DIR": str(node.base),
               "NUCLEUS_NODE_URL": f"http://127.0.0.1:{node.port}",
               "NUCLEUS_NODE_KEY_FILE": str(node.secrets / "node.key")}
    r = subprocess.run([str(binary("nucleus")), "credential", pod, "--out", str(path)], env=cli_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    cred = json.loads(path.read_text())
    assert r.stdout.strip() == cred["key_id"] and cred["secret"] not in r.stdout + r.stderr
    assert os.stat(path).st_mode & 0o777 == 0o600
    r = subprocess.run([str(binary("nucleus")), "credential", pod, "--out", str(path)], env=cli_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "exists" in r.stderr, r.stderr
    # A home and config dir without any node key; the node key file path points nowhere.
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "NUCLEUS_NODE_URL": f"http://127.0.0.1:{node.port}",
           "NUCLEUS_NODE_KEY_FILE": str(home / "no-such-node.key")}

    # Group-readable credential files are refused before anything is sent.
    os.chmod(path, 0o640)
    bad = subprocess.run([str(binary("nucleus-mcp")), "--credential", str(path)], env=env,
                         input=b"", capture_output=True, timeout=30)
    assert bad.returncode != 0 and b"0600" in bad.stderr, bad.stderr
    os.chmod(path, 0o600)

    mcp = subprocess.Popen([str(binary("nucleus-mcp")), "--credential", str(path)], env=env,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        r = mcp_call(mcp, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                           "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                      "clientInfo": {"name": "t", "version": "1"}}})
        assert "result" in r, r
        mcp_call(mcp, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        r = mcp_call(mcp, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        names = {t["name"] for t in r["result"]["tools"]}
        assert "read" in names, r
        r = mcp_call(mcp, {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                           "params": {"name": "read", "arguments": {"path": "README.md"}}})
        assert "scoped hello" in json.dumps(r["result"]), r
        assert not r["result"].get("isError"), r
    finally:
        mcp.stdin.close()
        mcp.wait(timeout=30)
    err = mcp.stderr.read().decode()
    assert cred["secret"] not in err
    assert cred["key_id"] in c.audit(pod).text
    c.delete_pod(pod)


# ---- budget reserve and settle (scope RUN) ---------------------------------------------------

BUDGET_SPEC = spec_yaml(policy="\n    profile: fix-issue\n    max_cost_usd: 1")


def budget_pod(c):
    r = c.create_pod(BUDGET_SPEC)
    assert r.status == 201, r
    pod = r.json()["id"]
    assert c.wait_state(pod, {"running", "failed", "exited"}, timeout=60)["state"] == "running"
    return pod


def reserve(cl, pod, usd_micros, **kw):
    return cl.request("POST", f"/v1/pods/{pod}/budget/reserve", json.dumps({"usd_micros": usd_micros, **kw}))


def settle(cl, pod, rid, usd_micros, **kw):
    return cl.request("POST", f"/v1/pods/{pod}/budget/settle",
                      json.dumps({"reservation": rid, "usd_micros": usd_micros, **kw}))


def left(c, pod):
    return c.tool(pod, "status").json()["budget"]


def test_reserve_and_settle_only_with_the_run_credential(node):
    c = node.client()
    pod, other = budget_pod(c), budget_pod(c)
    url = f"http://127.0.0.1:{node.port}"
    run = NodeClient.scoped(url, mint(c, pod, "run"), actor="gateway")
    # The node key, a pod credential and another pod's run credential are refused.
    refused(reserve(c, pod, 1000), "run_credential_required")
    refused(reserve(NodeClient.scoped(url, mint(c, pod)), pod, 1000), "run_credential_required")
    refused(reserve(NodeClient.scoped(url, mint(c, other, "run")), pod, 1000), "other_pod")
    for bad in ({}, {"usd_micros": -1}, {"usd_micros": 1, "ttl_seconds": 0}, {"usd_micros": 1, "x": 1}):
        r = run.request("POST", f"/v1/pods/{pod}/budget/reserve", json.dumps(bad))
        assert r.status == 400 and r.json()["kind"] == "invalid_request", (bad, r)

    r = reserve(run, pod, 400_000)
    assert r.status == 200 and r.mac_ok, r
    rid = r.json()["reservation"]
    assert r.json()["free_usd_micros"] == 600_000
    r = reserve(run, pod, 700_000)  # 0.4 held + 0.7 > 1.0
    assert r.status == 402 and r.json()["kind"] == "budget_exhausted", r
    r = settle(run, pod, rid, 250_000, input_tokens=1000, output_tokens=100)
    assert r.status == 200 and r.json()["charged_usd_micros"] == 250_000 and not r.json()["exhausted"], r
    assert left(c, pod)["used_usd_micros"] == 250_000
    assert settle(run, pod, rid, 1).status == 404  # settled once
    # Settling above what is left spends the rest: exhausted, and further reserves are refused.
    rid = reserve(run, pod, 700_000).json()["reservation"]
    r = settle(run, pod, rid, 900_000)
    assert r.status == 200 and r.json()["exhausted"], r
    r = reserve(run, pod, 1)
    assert r.status == 402 and r.json()["kind"] == "budget_exhausted", r
    log = c.audit(pod).text
    assert '"budget_reserve"' in log and '"budget_settle"' in log and "credential run-" in log

    # A pod's end takes its run credential with it.
    c.delete_pod(pod)
    refused(reserve(run, pod, 1), "pod_ended")
    c.delete_pod(other)


def test_concurrent_reserves_never_overspend(node):
    c = node.client()
    pod = budget_pod(c)
    run = NodeClient.scoped(f"http://127.0.0.1:{node.port}", mint(c, pod, "run"))
    results = []
    barrier = threading.Barrier(8)

    def one():
        barrier.wait()
        results.append(reserve(run, pod, 300_000))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    ok = [r for r in results if r.status == 200]
    assert len(results) == 8 and len(ok) == 3, [r.status for r in results]  # 3 x 0.3 <= 1.0 < 4 x 0.3
    assert all(r.status == 402 for r in results if r.status != 200)
    # Every holder settles at its full reservation: exactly what was promised, never more.
    for r in ok:
        assert settle(run, pod, r.json()["reservation"], 300_000).status == 200
    b = left(c, pod)
    assert b["used_usd_micros"] == 900_000 and b["used_usd_micros"] <= b["max_usd_micros"], b
    c.delete_pod(pod)


def test_unsettled_reservation_is_charged_at_its_amount(node):
    c = node.client()
    pod = budget_pod(c)
    run = NodeClient.scoped(f"http://127.0.0.1:{node.port}", mint(c, pod, "run"))
    r = reserve(run, pod, 200_000, ttl_seconds=1)
    assert r.status == 200, r
    rid = r.json()["reservation"]
    time.sleep(2.5)
    # The next reserve finds it expired and charges it at its reservation.
    r = reserve(run, pod, 100_000)
    assert r.status == 200 and r.json()["free_usd_micros"] == 700_000, r
    assert left(c, pod)["used_usd_micros"] == 200_000
    assert settle(run, pod, rid, 0).status == 404
    c.delete_pod(pod)


def test_expired_reservation_is_charged_without_another_call(node):
    """A gateway that dies mid-call never reserves or settles again: the node's periodic
    checks charge its expired reservation anyway, and the audit log says so."""
    c = node.client()
    pod = budget_pod(c)
    run = NodeClient.scoped(f"http://127.0.0.1:{node.port}", mint(c, pod, "run"))
    r = reserve(run, pod, 250_000, ttl_seconds=1)
    assert r.status == 200, r
    deadline = time.monotonic() + 60
    while left(c, pod)["used_usd_micros"] != 250_000:
        assert time.monotonic() < deadline, left(c, pod)
        time.sleep(0.5)
    log = c.request("GET", f"/v1/pods/{pod}/audit").text
    assert '"expired"' in log and "node" in log
    c.delete_pod(pod)


def test_node_restart_revokes_every_credential(node):
    """Credentials live in the node's memory only: a restart (which ends every pod) leaves
    none behind, on disk or accepted."""
    c = node.client()
    pod = running_pod(c)
    cred = mint(c, pod)
    s = NodeClient.scoped(f"http://127.0.0.1:{node.port}", cred)
    assert s.get_pod(pod).status == 200
    node.restart()
    r = s.get_pod(pod)
    assert r.status == 401 and r.json()["detail"] == "unknown_key", r
    for root, _, files in os.walk(node.state_dir):
        for f in files:
            try:
                data = open(os.path.join(root, f), "rb").read()
            except OSError:
                continue
            assert cred["secret"].encode() not in data, os.path.join(root, f)


def _held_get(client, path):
    """One signed GET on its own keep-alive connection, left open: (connection, status)."""
    from helpers.nodeclient import sign_headers
    conn = client._conn(30)
    h = sign_headers(client.key, "GET", path, b"", "sdk", key_id=client.key_id)
    conn.request("GET", path, headers=h)
    r = conn.getresponse()
    body = r.read()
    return conn, r.status, body


def test_one_pods_credentials_cannot_take_every_connection(node):
    """Connections signed with one pod's credentials are capped (16), so that pod's agent, through
    its MCP server, cannot take the node's connections from the node key's holder and other
    pods' clients; the refusal (503 capacity) closes the connection, and a closed one frees its
    place."""
    c = node.client()
    pod, other = running_pod(c), running_pod(c)
    s = NodeClient.scoped(f"http://127.0.0.1:{node.port}", mint(c, pod))
    t = NodeClient.scoped(f"http://127.0.0.1:{node.port}", mint(c, other))
    held = []
    try:
        for _ in range(16):
            conn, status, _ = _held_get(s, f"/v1/pods/{pod}")
            held.append(conn)
            assert status == 200
        conn, status, body = _held_get(s, f"/v1/pods/{pod}")
        conn.close()
        assert status == 503 and json.loads(body)["kind"] == "capacity", body
        # The node key and another pod's credential are not affected.
        assert c.get_pod(pod).status == 200
        assert t.get_pod(other).status == 200
        held.pop().close()
        deadline = time.monotonic() + 60
        while s.get_pod(pod).status != 200:
            assert time.monotonic() < deadline, "a closed connection did not free its place"
            time.sleep(0.1)
    finally:
        for conn in held:
            conn.close()
