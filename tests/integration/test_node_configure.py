# SPDX-License-Identifier: Apache-2.0
"""The configure contract end to end, with the local driver: the pod's deadline is one number
from the API to the guest (a timeout above the policy's window or the node's limit is refused at
create with the limit named; no timeout means min([pods] default_timeout_seconds, the window);
the pod object, `nucleus ps` and the proxy's `status` agree on it), and a proxy that answers a
policy digest other than the one of the policy the node sent fails the pod with that reason.
The wrong proxy is a Python stand-in speaking the channel protocol, started by the local driver
in place of nucleus-tool-proxy."""
import datetime
import json
import os
import subprocess
import time

import pytest

from conftest import binary, require_root
from helpers.nodeproc import NodeProc

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")


def spec(policy, timeout=None):
    t = f"  timeout_seconds: {timeout}\n" if timeout is not None else ""
    return f"apiVersion: nucleus/v1\nkind: Pod\nspec:\n  policy: {policy}\n{t}  driver: local\n"


def rfc3339(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def node(tmp_path):
    require_root()
    cfg = tmp_path / "node.toml"
    cfg.write_text("[pods]\ndefault_timeout_seconds = 2400\nmax_timeout_seconds = 7200\n")
    with NodeProc(tmp_path, driver="local", extra_args=["--config", str(cfg)]) as n:
        yield n


def test_timeout_above_window_refused(node):
    c = node.client()
    r = c.create_pod(spec("pr-review", 3600))  # pr_review: a 30-minute window
    assert r.status == 400 and r.json()["kind"] == "invalid_request", r
    msg = r.json()["error"]
    assert "spec.timeout_seconds" in msg and "1800 seconds" in msg and "pr_review" in msg, msg
    assert c.request("GET", "/v1/pods").json()["pods"] == []  # nothing was started


def test_timeout_above_node_limit_refused(node):
    r = node.client().create_pod(spec("permissive", 10000))  # window 4 h, node limit 2 h
    assert r.status == 400, r
    assert "max_timeout_seconds" in r.json()["error"] and "7200" in r.json()["error"], r.json()


def test_no_timeout_gets_the_window_and_one_deadline(node, tmp_path):
    c = node.client()
    r = c.create_pod(spec("pr-review"))  # node default 40 min, window 30 min
    assert r.status == 201, r
    pod = r.json()["id"]
    st = c.wait_state(pod, {"running", "failed", "exited"}, timeout=60)
    assert st["state"] == "running", st
    assert st["timeout_seconds"] == 1800, st
    deadline = rfc3339(st["deadline"])
    assert deadline - rfc3339(st["created"]) == pytest.approx(1800, abs=0.01)

    # The proxy enforces the same deadline (it got the time left, counted from its receipt).
    before = time.time()
    status = c.tool(pod, "status", {}).json()
    guest_deadline = before + status["deadline_remaining_ms"] / 1000
    assert abs(guest_deadline - deadline) < 60, (guest_deadline, deadline)
    assert status["policy"]["time"]["max_duration_seconds"] == 1800, status["policy"]

    # nucleus ps shows the pod object's deadline.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "XDG_STATE_HOME": str(tmp_path / "state"), "LANG": "C.UTF-8",
           "NUCLEUS_NODE_URL": f"http://127.0.0.1:{node.port}",
           "NUCLEUS_NODE_KEY_FILE": str(node.secrets / "node.key")}
    p = subprocess.run([str(binary("nucleus")), "ps", "--output", "json"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    pods = doc["pods"] if isinstance(doc, dict) else doc
    mine = [x for x in pods if x["id"] == pod]
    assert mine and mine[0]["deadline"] == st["deadline"], mine
    c.delete_pod(pod)


def test_default_below_window(node):
    c = node.client()
    r = c.create_pod(spec("permissive"))  # window 4 h, node default 40 min
    assert r.status == 201, r
    assert r.json()["timeout_seconds"] == 2400, r.json()
    c.delete_pod(r.json()["id"])


WRONG_PROXY = r'''#!/usr/bin/python3
# Stand-in nucleus-tool-proxy that answers configure with another policy's digest.
import json, socket, struct
H = struct.Struct(">2sBBIII")
s = socket.socket(fileno=3)
def send(t, sid, obj):
    p = json.dumps(obj).encode()
    s.sendall(H.pack(b"NU", 1, t, sid, len(p), 0) + p)
def recv_exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise SystemExit(0)
        b += c
    return b
while True:
    _, _, t, sid, n, _ = H.unpack(recv_exact(16))
    payload = recv_exact(n)
    if t != 1:
        continue
    if json.loads(payload).get("op") == "configure":
        send(2, sid, {"policy_sha256": "cc" * 32, "configure_sha256": "dd" * 32, "pod_id": "x",
                      "approvals": False})
    else:
        send(2, sid, {"ok": True})
'''


def test_wrong_policy_digest_fails_the_pod(tmp_path):
    require_root()
    fake = tmp_path / "wrong-proxy"
    fake.write_text(WRONG_PROXY)
    fake.chmod(0o755)
    with NodeProc(tmp_path, driver="local", proxy_path=fake) as node:
        c = node.client()
        r = c.create_pod(spec("fix-issue", 300))
        assert r.status == 201, r
        st = c.wait_state(r.json()["id"], {"running", "failed", "exited"}, timeout=60)
        assert st["state"] == "failed", st
        assert "reports policy " + "cc" * 32 in st["reason"], st
        assert "not the policy the node sent" in st["reason"], st
        assert "policy_sha256" not in st  # never recorded as the pod's policy
        tool = c.tool(st["id"], "read", {"path": "x"})
        assert tool.status == 409, tool
