# SPDX-License-Identifier: Apache-2.0
"""nucleus-node with the `local` driver (bubblewrap): the functional suite, request signing
(unsigned and replayed requests) against the live API, malformed input, limits, kills,
restart, deadline, approvals (as far as the node checks them), metrics and the audit log. Each
test runs its own node on free ports with a temp state dir; leaving a NodeProc block asserts
nothing was left behind."""
import json
import os
import signal
import threading
import time

import pytest

from conftest import require_root
from helpers.nodeproc import NodeProc, spec_yaml, tar_bytes

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")


@pytest.fixture
def node(tmp_path):
    require_root()
    with NodeProc(tmp_path, driver="local") as n:
        yield n


def running_pod(c, **kw):
    r = c.create_pod(spec_yaml(**kw))
    assert r.status == 201, r
    body = r.json()
    assert body["state"] in ("pending", "booting", "configuring", "running") and len(body["id"]) == 36
    st = c.wait_state(body["id"], {"running", "failed", "exited"}, timeout=60)
    assert st["state"] == "running", st
    return body["id"]


def proxy_pids(node):
    return node.processes_mentioning_state()


# ---- functional ----------------------------------------------------------------------------

def test_functional_session(node):
    c = node.client()
    pod = running_pod(c)
    st = c.get_pod(pod).json()
    assert st["driver"] == "local" and "weaker isolation" in st["warning"]
    assert len(st["policy_sha256"]) == 64

    r = c.upload_workspace(pod, tar_bytes({"README.md": "hello\n", "src/main.c": "int main(void){return 0;}\n"}))
    assert r.status == 200, r
    assert r.json()["files"] == 2 and "weaker isolation" in r.json()["warning"]

    r = c.tool(pod, "read", {"path": "README.md"})
    assert r.status == 200, r
    assert "hello" in json.dumps(r.json())
    assert c.tool(pod, "write", {"path": "new.txt", "content": "x\n"}).status == 200
    r = c.tool(pod, "edit", {"path": "README.md", "old": "hello", "new": "bye"})
    assert r.status == 200, r
    r = c.tool(pod, "run", {"argv": ["git", "status"]})
    assert r.status == 200, r  # allowed by fix-issue; git's own exit status is in the answer

    # A path escape through the node: the proxy's answer comes back unchanged (status from its kind).
    r = c.tool(pod, "read", {"path": "../../etc/shadow"})
    assert r.status == 403 and r.json()["kind"] == "sandbox_escape", r
    r = c.tool(pod, "run", {"argv": ["ls", "-la"]})
    assert r.status == 403 and r.json()["kind"] == "command_denied", r

    r = c.patch(pod)
    assert r.status == 200, r
    p = r.json()
    assert "new.txt" in p["changed"] and "README.md" in p["changed"]
    assert "+bye" in p["patch"] and "new.txt" in p["patch"]

    logs = c.logs(pod, tail=50)
    assert logs.status == 200 and logs.headers["content-type"].startswith("text/plain")
    assert "weaker isolation" in logs.text and "running (driver local" in logs.text, logs.text
    assert "Configured pod" in logs.text  # the proxy's own output (console section)
    assert len(c.logs(pod, tail=1).text.splitlines()) == 1

    r = c.delete_pod(pod)
    assert r.status == 200 and r.json()["state"] == "exited", r
    assert r.json()["reason"] == "deleted by the API"
    # Idempotent: a second DELETE answers the same final state.
    assert c.delete_pod(pod).json()["state"] == "exited"
    r = c.tool(pod, "read", {"path": "README.md"})
    assert r.status == 409 and r.json()["kind"] == "pod_not_running"

    audit = c.audit(pod)
    assert audit.status == 200
    ops = [json.loads(l)["op"] for l in audit.text.splitlines()]
    for op in ("pod_create", "configure", "pod_running", "workspace_import", "read", "write", "edit",
               "run", "workspace_export", "pod_delete", "pod_exited", "seal"):
        assert op in ops, (op, ops)
    v = node.verify_audit(pod)
    assert v.returncode == 0, v.stdout + v.stderr
    node.assert_clean()


def test_list_and_get(node):
    c = node.client()
    pod = running_pod(c)
    r = c.list_pods()
    assert r.status == 200 and pod in [p["id"] for p in r.json()["pods"]]
    assert c.get_pod("00000000-0000-4000-8000-000000000000").status == 404
    assert c.request("GET", "/v1/pods/not-a-uuid").status == 404
    c.delete_pod(pod)


# ---- request signing against the live API ------------------------------------------------------

def test_unsigned_and_replayed(node):
    c = node.client()
    # Health is the only unauthenticated route; it reveals nothing.
    h = c.health()
    assert h.status == 200 and h.json() == {"status": "ok"}
    r = c.request("GET", "/v1/pods", sign=False)
    assert r.status == 401 and r.json()["kind"] == "unauthorized" and r.json()["detail"] == "missing_header"

    first = c.list_pods()
    assert first.status == 200
    # Same nonce replayed (the exact same headers): refused.
    again = c.request("GET", "/v1/pods", signed_headers=first.sent_headers)
    assert again.status == 401 and again.json()["detail"] == "replay", again
    # Fresh nonce, timestamp 5 minutes old: refused as skew.
    old = c.request("GET", "/v1/pods", timestamp=int(time.time()) - 300)
    assert old.status == 401 and old.json()["detail"] == "skew", old
    future = c.request("GET", "/v1/pods", timestamp=int(time.time()) + 300)
    assert future.status == 401 and future.json()["detail"] == "skew"


def test_signature_moved_to_other_path_or_method(node):
    c = node.client()
    pod = running_pod(c)
    from helpers.nodeclient import sign_headers
    h = sign_headers(c.key, "GET", f"/v1/pods/{pod}", b"", "test")
    # Another path with the same headers (nonce not yet used, so only the signature can fail).
    r = c.request("GET", f"/v1/pods/{pod}/audit", signed_headers=h)
    assert r.status == 401 and r.json()["detail"] == "bad_signature", r
    # Another method.
    h = sign_headers(c.key, "GET", f"/v1/pods/{pod}", b"", "test")
    r = c.request("DELETE", f"/v1/pods/{pod}", signed_headers=h)
    assert r.status == 401 and r.json()["detail"] == "bad_signature", r
    assert c.get_pod(pod).json()["state"] == "running"
    # A query string is part of what is signed.
    h = sign_headers(c.key, "GET", f"/v1/pods/{pod}/logs?tail=1", b"", "test")
    r = c.request("GET", f"/v1/pods/{pod}/logs?tail=1000", signed_headers=h)
    assert r.status == 401 and r.json()["detail"] == "bad_signature"
    # The body too: a tool call re-sent with other arguments.
    body = json.dumps({"path": "README.md"}).encode()
    h = sign_headers(c.key, "POST", f"/v1/pods/{pod}/tools/read", body, "test")
    r = c.request("POST", f"/v1/pods/{pod}/tools/read", json.dumps({"path": "x"}).encode(), signed_headers=h)
    assert r.status == 401 and r.json()["detail"] == "content_mismatch", r
    # Same without the declared digest: the MAC over the body itself fails.
    h = sign_headers(c.key, "POST", f"/v1/pods/{pod}/tools/read", body, "test", declare_sha256=False)
    r = c.request("POST", f"/v1/pods/{pod}/tools/read", json.dumps({"path": "x"}).encode(), signed_headers=h)
    assert r.status == 401 and r.json()["detail"] == "bad_signature", r
    # A declared digest that is not the one signed: refused before the body is read.
    h = sign_headers(c.key, "POST", f"/v1/pods/{pod}/tools/read", body, "test")
    h["X-Nucleus-Content-SHA256"] = "0" * 64
    r = c.request("POST", f"/v1/pods/{pod}/tools/read", body, signed_headers=h)
    assert r.status == 401 and r.json()["detail"] == "bad_signature", r
    # A different key.
    from helpers.nodeclient import NodeClient
    other = NodeClient(f"http://127.0.0.1:{node.port}", key=os.urandom(32))
    assert other.list_pods().json()["detail"] == "bad_signature"
    # Malformed nonce.
    r = c.request("GET", "/v1/pods", nonce="abc")
    assert r.status == 401 and r.json()["detail"] == "bad_nonce"
    assert node.metric("nucleus_auth_failures_total", detail="bad_signature") >= 5
    c.delete_pod(pod)


# ---- malformed input and limits -------------------------------------------------------------

def test_malformed_specs_and_bodies(node):
    c = node.client()
    bad = [
        b"",
        b"{not json",
        b"apiVersion: nucleus/v1\nkind: Pod\nspec:\n  policy: fix-issue\n  netwrok: {}\n",
        b"apiVersion: nucleus/v2\nkind: Pod\nspec:\n  policy: fix-issue\n",
        b"apiVersion: nucleus/v1\nkind: Pod\nspec:\n  policy: no-such-profile\n",
        b"apiVersion: nucleus/v1\nkind: Pod\nspec:\n  policy: fix-issue\n  driver: docker\n",
        b"apiVersion: nucleus/v1\nkind: Pod\nspec:\n  policy: fix-issue\n  image: ../../etc\n",
        b"- a\n- b\n",
        b"\x00\xff\xfe",
    ]
    for body in bad:
        r = c.create_pod(body)
        assert r.status == 400, (body, r)
        j = r.json()
        assert j["kind"] == "invalid_request" and j["error"].startswith("invalid spec"), j
    # A local pod cannot have a network: refused at boot with a clear reason.
    r = c.create_pod(spec_yaml(extra="  network:\n    allow: [\"10.0.0.0/8:443\"]\n"))
    assert r.status == 201
    st = c.wait_state(r.json()["id"], {"failed", "running"}, timeout=30)
    assert st["state"] == "failed" and "network" in st["reason"], st

    pod = running_pod(c)
    r = c.request("POST", f"/v1/pods/{pod}/tools/read", b"[1,2]")
    assert r.status == 400 and r.json()["kind"] == "invalid_request"
    r = c.request("POST", f"/v1/pods/{pod}/tools/read", b"{\"path\": \"a\", \"path\": \"b\"}")
    assert r.status == 400
    r = c.request("POST", f"/v1/pods/{pod}/tools/Bad-Op", b"{}")
    assert r.status == 404
    r = c.request("POST", f"/v1/pods/{pod}/tools/configure", b"{}")
    assert r.status == 400, r  # node-only operations are not tool calls
    r = c.request("POST", f"/v1/pods/{pod}/tools/frobnicate", b"{}")
    assert r.status >= 400 and "kind" in r.json()
    r = c.request("GET", "/v1/nothing")
    assert r.status == 404 and r.json()["kind"] == "not_found"
    r = c.request("PATCH", "/v1/pods", b"{}")
    assert r.status == 405
    r = c.request("PUT", f"/v1/pods/{pod}/workspace", b"this is not a tar archive at all" * 20)
    assert r.status == 400, r
    r = c.request("GET", f"/v1/pods/{pod}/logs?tail=abc")
    assert r.status == 400
    # Still serving, the pod still works.
    assert c.health().status == 200
    assert c.tool(pod, "write", {"path": "ok.txt", "content": "1"}).status == 200
    c.delete_pod(pod)


def test_oversize_body_413(node):
    c = node.client()
    big = b"a: " + b"x" * (3 * 1024 * 1024)
    r = c.create_pod(big)
    assert r.status == 413 and r.json()["kind"] == "too_large", r
    # Refused from Content-Length alone, even unsigned (nothing is buffered).
    r = c.request("POST", "/v1/pods", big, sign=False)
    assert r.status == 413
    assert c.health().status == 200


def test_large_write_crosses_the_frame_size(node):
    """A write whose request does not fit one channel frame (1 MiB) streams its content to the
    guest (docs/proxy.md "Size"): every size around the frame cap works and the pod keeps running.
    (It used to answer "409 pod_not_running: pod ... is running", then 413.)"""
    c = node.client()
    pod = running_pod(c)
    for size in (1024 * 1024 - 4096, 1024 * 1024, 1024 * 1024 + 1, 1536 * 1024):
        r = c.tool(pod, "write", {"path": "big2.txt", "content": "z" * size})
        assert r.status == 200 and r.json()["bytes"] == size, (size, r.status, r.json())
    assert c.get_pod(pod).json()["state"] == "running"
    assert c.tool(pod, "write", {"path": "after.txt", "content": "1"}).status == 200
    c.delete_pod(pod)


def test_pod_limit(tmp_path):
    require_root()
    with NodeProc(tmp_path, driver="local", max_pods=2) as node:
        c = node.client()
        a = running_pod(c)
        b = running_pod(c)
        r = c.create_pod(spec_yaml())
        assert r.status == 409 and r.json()["kind"] == "conflict", r
        c.delete_pod(a)
        d = running_pod(c)
        c.delete_pod(b)
        c.delete_pod(d)


def test_three_pods_at_once(node):
    c = node.client()
    ids = [c.create_pod(spec_yaml()).json()["id"] for _ in range(3)]
    for i in ids:
        assert c.wait_state(i, {"running", "failed"}, timeout=60)["state"] == "running"
    for n, i in enumerate(ids):
        assert c.tool(i, "write", {"path": "who.txt", "content": f"pod {n}"}).status == 200
    # Each pod sees only its own workspace.
    for n, i in enumerate(ids):
        r = c.tool(i, "read", {"path": "who.txt"})
        assert f"pod {n}" in json.dumps(r.json())
    errors = []

    def hammer(pid):
        for _ in range(10):
            r = c.tool(pid, "read", {"path": "who.txt"})
            if r.status != 200:
                errors.append(r)

    ts = [threading.Thread(target=hammer, args=(i,)) for i in ids]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors
    for i in ids:
        assert c.delete_pod(i).json()["state"] == "exited"


# ---- killing ----------------------------------------------------------------------------------

def test_kill9_sandbox_mid_call(node):
    c = node.client()
    pod = running_pod(c, policy="local-dev")
    before = set(proxy_pids(node))
    assert before
    result = {}

    def call():
        result["r"] = c.tool(pod, "run", {"argv": ["sleep", "30"], "timeout_seconds": 60}, timeout=90)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(1.0)
    for pid in before:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    t.join(30)
    assert not t.is_alive()
    r = result["r"]
    assert r.status == 409 and r.json()["kind"] == "pod_not_running", r
    st = c.wait_state(pod, {"failed"}, timeout=20)
    assert "killed by signal" in st["reason"] or "exited" in st["reason"] or "channel" in st["reason"], st
    node.assert_clean()
    assert node.verify_audit(pod).returncode == 0


def test_node_restart_with_pod_running(node):
    c = node.client()
    pod = running_pod(c)
    assert c.upload_workspace(pod, tar_bytes({"a.txt": "1"})).status == 200
    assert node.processes_mentioning_state()
    node.kill9()  # the node dies; the proxy sees its channel close and exits on its own
    assert (node.state_dir / "pods" / pod / "workspace").exists()
    node.start()
    node.assert_clean()  # the restart killed the leftover and removed the workspace
    state = json.loads((node.state_dir / "pods" / pod / "state.json").read_text())
    assert state["state"] == "failed" and "restarted" in state["reason"]
    v = node.verify_audit(pod)
    assert v.returncode == 0, v.stdout + v.stderr
    assert node.client().get_pod(pod).status == 404  # not adopted: the pod is gone


def test_sigterm_ends_every_pod(tmp_path):
    require_root()
    node = NodeProc(tmp_path, driver="local").start()
    try:
        c = node.client()
        ids = [running_pod(c) for _ in range(2)]
    except BaseException:
        node.stop(check_clean=False)
        raise
    node.stop()  # asserts exit 0 and nothing left behind
    for i in ids:
        st = json.loads((node.state_dir / "pods" / i / "state.json").read_text())
        assert st["state"] == "exited" and st["reason"] == "node shutdown"
        assert node.verify_audit(i).returncode == 0
    node.remove_state()


def test_sigterm_with_a_call_in_flight_ends_the_pod(tmp_path):
    """A tool call that runs for minutes does not hold the node's shutdown: the pods end first
    (which ends their calls), then the API stops. It used to wait for the command to finish,
    so `nucleus stop` timed out on any busy pod."""
    require_root()
    node = NodeProc(tmp_path, driver="local").start()
    try:
        c = node.client()
        pod = running_pod(c, policy="local-dev")
        result = {}

        def call():
            try:
                result["r"] = c.tool(pod, "run", {"argv": ["sleep", "3600"], "timeout_seconds": 3600},
                                     timeout=3600)
            except Exception as e:  # the node may close the connection instead of answering
                result["e"] = e

        t = threading.Thread(target=call, daemon=True)
        t.start()
        deadline = time.time() + 60
        while time.time() < deadline and "guest.run" not in c.audit(pod).text and \
                '"op":"run"' not in c.audit(pod).text:
            time.sleep(0.1)
        time.sleep(0.5)
    except BaseException:
        node.stop(check_clean=False)
        raise
    node.stop(timeout=120)  # asserts exit 0 and nothing left behind
    t.join(30)
    assert not t.is_alive()
    st = json.loads((node.state_dir / "pods" / pod / "state.json").read_text())
    assert st["state"] == "exited" and st["reason"] == "node shutdown", st
    assert node.verify_audit(pod).returncode == 0
    node.remove_state()


def test_b2_deadline(node):
    c = node.client()
    pod = running_pod(c, timeout=3)
    assert c.tool(pod, "write", {"path": "a", "content": "1"}).status == 200
    time.sleep(4.5)
    r = c.tool(pod, "read", {"path": "a"})
    assert r.status == 408 and r.json()["kind"] == "time_violation", r
    st = c.wait_state(pod, {"exited", "failed"}, timeout=10)
    assert st["reason_kind"] == "time_violation", st
    node.assert_clean()
    ops = [json.loads(l)["op"] for l in c.audit(pod).text.splitlines()]
    assert "pod_exited" in ops and ops[-1] == "seal"


# ---- approvals (as far as the node checks them) -------------------------------------------

def test_approvals(node):
    c = node.client()
    pod = running_pod(c)
    other = running_pod(c)
    import nacl.signing
    # Signed by a key other than the configured approver key.
    tok = node.mint_approval(pod, "git_push", key=nacl.signing.SigningKey.generate())
    r = c.approve(pod, {"token": tok})
    assert r.status == 403 and r.json()["kind"] == "approval_invalid" and r.json()["detail"] == "bad_signature", r
    # Bound to another pod.
    r = c.approve(pod, {"token": node.mint_approval(other, "git_push")})
    assert r.json()["detail"] == "wrong_pod", r
    # Expired.
    r = c.approve(pod, {"token": node.mint_approval(pod, "git_push", exp=int(time.time()) - 5)})
    assert r.json()["detail"] == "expired", r
    # Garbage.
    r = c.approve(pod, {"token": "nat1.xxx.yyy"})
    assert r.status == 403 and r.json()["detail"] in ("malformed", "bad_signature")
    r = c.approve(pod, b"not json")
    assert r.status == 400
    # A valid token reaches the proxy, whose answer comes back unchanged.
    r = c.approve(pod, {"token": node.mint_approval(pod, "git_push")})
    assert r.status in (200, 403), r
    assert node.metric("nucleus_approvals_total", result="invalid") == 4
    c.delete_pod(pod)
    c.delete_pod(other)


# ---- events, streaming, metrics -----------------------------------------------------------

def test_events_stream(node):
    c = node.client()
    pod = running_pod(c)
    conn, resp = c.stream("GET", f"/v1/pods/{pod}/events", timeout=30)
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
    got = []

    def reader():
        for ev, data in c.sse_events(resp):
            got.append((ev, json.loads(data)))
            if ev == "end":
                return

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.3)
    c.tool(pod, "write", {"path": "e.txt", "content": "1"})
    c.delete_pod(pod)
    t.join(20)
    conn.close()
    ops = [d.get("op") for e, d in got if e == "audit"]
    assert "write" in ops and "pod_exited" in ops, got
    assert got[-1][0] == "end" and got[-1][1]["state"] == "exited"


def test_run_as_sse(node):
    c = node.client()
    pod = running_pod(c, policy="local-dev")
    body = json.dumps({"argv": ["echo", "streamed"]}).encode()
    conn, resp = c.stream("POST", f"/v1/pods/{pod}/tools/run", body,
                          headers={"Accept": "text/event-stream", "Content-Type": "application/json"})
    assert resp.status == 200
    events = list(c.sse_events(resp))
    conn.close()
    assert events[-1][0] == "result"
    assert "streamed" in events[-1][1] or any("streamed" in d for e, d in events), events
    c.delete_pod(pod)


def test_metrics_match_calls(node):
    c = node.client()
    pod = running_pod(c)
    for _ in range(3):
        assert c.tool(pod, "write", {"path": "m.txt", "content": "1"}).status == 200
    for _ in range(2):
        assert c.tool(pod, "read", {"path": "/etc/passwd"}).status == 403
    text = node.metrics()
    assert "nucleus_build_info{version=" in text
    assert 'nucleus_node_driver_info{driver="local",accel="none"} 1' in text
    assert node.metric("nucleus_tool_calls_total", op="write", decision="allow") == 3
    assert node.metric("nucleus_tool_calls_total", op="read", decision="deny") == 2
    assert node.metric("nucleus_denials_total", kind="sandbox_escape") == 2
    assert node.metric("nucleus_pods", state="running") == 1
    assert node.metric("nucleus_pod_ready_seconds_count") == 1
    assert node.metric("nucleus_pods_created_total") == 1
    up = node.metric("nucleus_bytes_total", direction="upload")
    data = tar_bytes({"f": "x" * 1000})
    assert c.upload_workspace(pod, data).status == 200
    assert node.metric("nucleus_bytes_total", direction="upload") == up + len(data)
    assert c.tool(pod, "run", {"argv": ["git", "status"]}).status == 200
    assert node.metric("nucleus_budget_spent_micro_usd") == 0
    r = c.delete_pod(pod)
    spent = r.json().get("budget_spent_usd_micros", 0)
    assert spent > 0, r  # the proxy's own meter, read at the end
    assert node.metric("nucleus_budget_spent_micro_usd") == spent
    assert node.metric("nucleus_pods", state="exited") == 1
    assert node.metric("nucleus_pods", state="running") == 0


def test_config_file(tmp_path):
    """The node config as `nucleus setup` writes it (docs/config.md, src/lib/spec loader);
    flags override it; a bad key is refused with its name."""
    require_root()
    from conftest import binary
    import subprocess
    node = NodeProc(tmp_path, driver="local")
    node.port = __import__("helpers.nodeproc", fromlist=["free_port"]).free_port()
    node.metrics_port = __import__("helpers.nodeproc", fromlist=["free_port"]).free_port()
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        "[node]\n"
        f"listen = \"127.0.0.1:{node.port}\"\n"
        f"metrics_listen = \"127.0.0.1:{node.metrics_port}\"\n"
        f"state_dir = \"{node.state_dir}\"\n"
        "images_dir = \"/nonexistent\"\n"
        "[pods]\n"
        "driver = \"local\"\n"
        "max_pods = 1\n"
        "[secrets]\n"
        f"node_secret_file = \"{node.secrets / 'node.key'}\"\n"
        f"approver_public_key_file = \"{node.secrets / 'approver.pub'}\"\n"
        f"audit_signing_key_file = \"{node.secrets / 'audit.key'}\"\n")
    os.chmod(cfg, 0o600)
    node.argv = lambda: [str(binary("nucleus-node")), "--config", str(cfg),
                         "--proxy-path", str(binary("nucleus-tool-proxy"))]
    node.start()
    try:
        c = node.client()
        a = running_pod(c)
        r = c.create_pod(spec_yaml())
        assert r.status == 409, r  # max_pods = 1 from the file
        c.delete_pod(a)
    finally:
        node.stop()
    node.remove_state()
    bad = tmp_path / "bad.toml"
    bad.write_text("[node]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n")
    r = subprocess.run([str(binary("nucleus-node")), "--config", str(bad)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "lisen" in r.stderr, r.stderr
    r = subprocess.run([str(binary("nucleus-node")), "--driver", "docker"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "--driver" in r.stderr
    r = subprocess.run([str(binary("nucleus-node")), "--state-dir", str(tmp_path / "s")], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0 and "node key" in r.stderr, r.stderr


# ---- snapshot and fork refusals (the functional tests are tests/e2e/test_fork_vm.py) --------

def test_snapshot_and_fork_refused_without_qemu(node):
    c = node.client()
    pod = running_pod(c)
    for path in (f"/v1/pods/{pod}/snapshot", f"/v1/pods/{pod}/fork"):
        r = c.request("POST", path, b"{}")
        assert r.status == 400 and r.json()["kind"] == "unsupported", r
        assert "qemu driver" in r.json()["error"], r
    # A pod with a network is no longer refused for that (tests/e2e/test_fork_vm.py forks one):
    # here only for its driver.
    r = c.create_pod(spec_yaml(extra="  network:\n    allow: [\"10.0.0.0/8:443\"]\n"))
    assert r.status == 201
    netpod = r.json()["id"]
    r = c.request("POST", f"/v1/pods/{netpod}/snapshot", b"")
    assert r.status == 400 and "has a network" not in r.json()["error"], r
    r = c.request("POST", f"/v1/pods/{netpod}/fork", b'{"count": 2}')
    assert r.status == 400 and "has a network" not in r.json()["error"], r
    # The tool route never passes the handshake on.
    r = c.tool(pod, "reconfigure", {"pod_id": "x"})
    assert r.status == 400 and r.json()["kind"] == "invalid_request", r
    assert c.request("GET", f"/v1/pods/{pod}/snapshots").json() == {"snapshots": []}
    c.delete_pod(pod)
    c.wait_state(netpod, {"failed", "exited"}, timeout=30)
    node.assert_clean()
