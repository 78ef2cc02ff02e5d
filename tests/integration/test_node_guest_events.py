# SPDX-License-Identifier: Apache-2.0
"""The node caps what a (compromised) guest can put in the audit log:
per-event size, per-pod rate and total; drops are counted in a signed audit record and a
metric. Also: the proxy's configure_sha256 is recorded next to policy_sha256. The guest
is a Python stand-in speaking the channel protocol, started by the local driver in place of
nucleus-tool-proxy."""
import hashlib
import json
import os
import re
import time

import pytest

from conftest import require_root
from helpers.nodeproc import NodeProc, spec_yaml

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")

CONFIGURE_SHA = "bb" * 32
N_SMALL = 1000

FAKE_GUEST = r'''#!/usr/bin/python3
# Fake nucleus-tool-proxy: answers configure, then floods event frames.
import hashlib, json, socket, struct
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
    req = json.loads(payload)
    op = req.get("op")
    if op == "configure":
        # policy_sha256 is the SHA-256 of the policy's canonical JSON; the node checks it.
        canon = json.dumps(req["args"]["policy"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        send(2, sid, {"policy_sha256": hashlib.sha256(canon.encode()).hexdigest(), "configure_sha256": "%s",
                      "pod_id": "x", "approvals": False})
        send(5, 0, {"type": "tool", "op": "read", "decision": "allow", "pad": "x" * 20000})
        for i in range(%d):
            send(5, 0, {"type": "tool", "op": "read", "decision": "allow", "i": i})
    else:
        send(2, sid, {"ok": True})
''' % (CONFIGURE_SHA, N_SMALL)


def test_guest_event_flood_is_capped_and_counted(tmp_path):
    require_root()
    fake = tmp_path / "fake-proxy"
    fake.write_text(FAKE_GUEST)
    fake.chmod(0o755)
    with NodeProc(tmp_path, driver="local", proxy_path=fake) as node:
        c = node.client()
        r = c.create_pod(spec_yaml())
        assert r.status == 201, r
        pod = r.json()["id"]
        st = c.wait_state(pod, {"running", "failed", "exited"}, timeout=60)
        assert st["state"] == "running", st
        assert re.fullmatch(r"[0-9a-f]{64}", st["policy_sha256"]) and st["configure_sha256"] == CONFIGURE_SHA, st
        # Wait until the node has seen every frame (recorded or dropped).
        deadline = time.time() + 30
        while time.time() < deadline:
            seen = sum(node.metric("nucleus_guest_events_dropped_total", reason=x)
                       for x in ("rate", "size", "total"))
            recs = [json.loads(l) for l in c.audit(pod).text.splitlines()]
            guest = [x for x in recs if x["actor"] == "guest"]
            if seen + len(guest) >= N_SMALL + 1:
                break
            time.sleep(0.2)
        assert node.metric("nucleus_guest_events_dropped_total", reason="size") == 1
        assert node.metric("nucleus_guest_events_dropped_total", reason="rate") > 0
        # Burst 200 plus 50/s while the flood lasted (a few seconds at most under load).
        assert len(guest) < 200 + 50 * 10, len(guest)
        assert seen + len(guest) == N_SMALL + 1
        conf = [x for x in recs if x["op"] == "configure"]
        assert len(conf) == 1
        assert conf[0]["args_sha256"] == CONFIGURE_SHA and conf[0]["result_sha256"] == st["policy_sha256"]
        c.delete_pod(pod)
        recs = [json.loads(l) for l in node.audit_path(pod).read_text().splitlines()]
        drops = [x for x in recs if x["op"] == "guest_events_dropped"]
        assert drops and all(x["actor"] == "node" for x in drops)
        # Each drop record's digest is the SHA-256 of the counts the node logged.
        texts = re.findall(r"guest events dropped: (\{.*\})", c.logs(pod).text)
        assert len(texts) == len(drops)
        assert [hashlib.sha256(t.encode()).hexdigest() for t in texts] == [x["result_sha256"] for x in drops]
        total = sum(sum(json.loads(t)["dropped"].values()) for t in texts)
        assert total + len([x for x in recs if x["actor"] == "guest"]) == N_SMALL + 1
        assert node.verify_audit(pod).returncode == 0
