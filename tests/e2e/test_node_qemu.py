# SPDX-License-Identifier: Apache-2.0
"""nucleus-node with real microVMs (driver qemu, TCG on this machine, G's cached images):
the functional session, A4 against the live API, three VMs at once, kill -9 of QEMU mid-call,
node restart with a VM running, the deadline (B2), metrics and the audit log. Boots take a few
seconds under TCG; every test uses its own node, ports and state dir."""
import json
import os
import signal
import threading
import time

import pytest

from conftest import require_root
from helpers.images import guest_images  # noqa: F401  (session fixture)
from helpers.nodeproc import NodeProc, spec_yaml, tar_bytes

BOOT_TIMEOUT = 240
RES = "  resources: {memory_mib: 384, scratch_mib: 128}\n"


@pytest.fixture
def node(tmp_path, guest_images):  # noqa: F811
    require_root()
    with NodeProc(tmp_path, driver="qemu", images_dir=guest_images, accel="tcg") as n:
        yield n


def qemu_pids(node):
    return [p for p in node.processes_mentioning_state()
            if b"qemu-system" in open(f"/proc/{p}/cmdline", "rb").read()]


def running_pod(c, **kw):
    kw.setdefault("extra", RES)
    kw.setdefault("driver", "qemu")
    r = c.create_pod(spec_yaml(**kw))
    assert r.status == 201, r
    st = c.wait_state(r.json()["id"], {"running", "failed", "exited"}, timeout=BOOT_TIMEOUT)
    assert st["state"] == "running", st
    assert st["accel"] in ("tcg", "kvm")
    return st["id"]


def test_qemu_functional_session(node):
    c = node.client()
    pod = running_pod(c)
    assert "warning" not in c.get_pod(pod).json()  # a real VM: no weak-isolation warning
    assert len(qemu_pids(node)) == 1
    r = c.upload_workspace(pod, tar_bytes({"README.md": "hello from the host\n"}))
    assert r.status == 200, r
    r = c.tool(pod, "read", {"path": "README.md"})
    assert r.status == 200 and "hello from the host" in r.json()["content"], r
    assert "warning" not in r.json()
    assert c.tool(pod, "write", {"path": "out.txt", "content": "written in the VM\n"}).status == 200
    r = c.tool(pod, "run", {"argv": ["git", "status"]})
    assert r.status == 200 and "exit_code" in r.json(), r
    r = c.tool(pod, "read", {"path": "/etc/passwd"})
    assert r.status == 403 and r.json()["kind"] == "sandbox_escape"
    r = c.patch(pod)
    assert r.status == 200, r
    assert "out.txt" in r.json()["changed"] and "written in the VM" in r.json()["patch"]
    logs = c.logs(pod, tail=200).text
    assert "nucleus-guest-init" in logs
    assert c.delete_pod(pod).json()["state"] == "exited"
    node.assert_clean()
    assert not qemu_pids(node)
    v = node.verify_audit(pod)
    assert v.returncode == 0, v.stdout + v.stderr
    assert node.metric("nucleus_pod_boot_seconds_count") == 1
    assert 'accel="tcg"' in node.metrics() or 'accel="kvm"' in node.metrics()


def test_qemu_a4(node):
    c = node.client()
    pod = running_pod(c)
    first = c.get_pod(pod)
    assert c.request("GET", f"/v1/pods/{pod}", signed_headers=first.sent_headers).json()["detail"] == "replay"
    assert c.request("GET", f"/v1/pods/{pod}", timestamp=int(time.time()) - 300).json()["detail"] == "skew"
    from helpers.nodeclient import sign_headers
    h = sign_headers(c.key, "GET", f"/v1/pods/{pod}", b"", "test")
    r = c.request("DELETE", f"/v1/pods/{pod}", signed_headers=h)
    assert r.status == 401 and r.json()["detail"] == "bad_signature"
    h = sign_headers(c.key, "GET", f"/v1/pods/{pod}", b"", "test")
    r = c.request("GET", f"/v1/pods/{pod}/audit", signed_headers=h)
    assert r.status == 401 and r.json()["detail"] == "bad_signature"
    assert c.get_pod(pod).json()["state"] == "running"
    c.delete_pod(pod)


def test_qemu_three_pods(node):
    c = node.client()
    ids = [c.create_pod(spec_yaml(driver="qemu", extra=RES)).json()["id"] for _ in range(3)]
    for i in ids:
        assert c.wait_state(i, {"running", "failed"}, timeout=BOOT_TIMEOUT)["state"] == "running"
    assert len(qemu_pids(node)) == 3
    for n, i in enumerate(ids):
        assert c.tool(i, "write", {"path": "who", "content": f"vm {n}"}).status == 200
    for n, i in enumerate(ids):
        assert c.tool(i, "read", {"path": "who"}).json()["content"] == f"vm {n}"
    for i in ids:
        c.delete_pod(i)
    node.assert_clean()


def test_qemu_kill9_mid_call(node):
    c = node.client()
    pod = running_pod(c, policy="local-dev")
    [qpid] = qemu_pids(node)
    result = {}

    def call():
        result["r"] = c.tool(pod, "run", {"argv": ["sleep", "60"], "timeout_seconds": 120}, timeout=150)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(2)
    os.kill(qpid, signal.SIGKILL)
    t.join(60)
    assert not t.is_alive()
    assert result["r"].status == 409 and result["r"].json()["kind"] == "pod_not_running", result["r"]
    st = c.wait_state(pod, {"failed"}, timeout=30)
    assert "killed by signal KILL" in st["reason"], st
    node.assert_clean()  # no QEMU, no socket, no scratch disk
    assert node.verify_audit(pod).returncode == 0


def test_qemu_node_restart_with_pod_running(node):
    c = node.client()
    pod = running_pod(c)
    [qpid] = qemu_pids(node)
    node.kill9()
    assert os.path.exists(f"/proc/{qpid}")  # the VM outlived the node ...
    node.start()
    node.assert_clean()  # ... and the restart found and removed it, its socket and disk
    assert not os.path.exists(f"/proc/{qpid}") or b"qemu" not in open(f"/proc/{qpid}/cmdline", "rb").read()
    st = json.loads((node.state_dir / "pods" / pod / "state.json").read_text())
    assert st["state"] == "failed"
    assert node.verify_audit(pod).returncode == 0


def test_qemu_b2_deadline(node):
    c = node.client()
    pod = running_pod(c, timeout=25)
    st = c.get_pod(pod).json()
    assert c.tool(pod, "write", {"path": "a", "content": "1"}).status == 200
    # Wait until the deadline passes.
    from datetime import datetime
    deadline = datetime.fromisoformat(st["deadline"].replace("Z", "+00:00")).timestamp()
    time.sleep(max(0.0, deadline - time.time()) + 1.5)
    r = c.tool(pod, "read", {"path": "a"})
    assert r.status == 408 and r.json()["kind"] == "time_violation", r
    st = c.wait_state(pod, {"exited", "failed"}, timeout=20)
    assert st["reason_kind"] == "time_violation"
    node.assert_clean()
    assert not qemu_pids(node)


def _netns_names():
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def test_qemu_pod_with_network(node):
    """A pod with a network section gets its own network namespace, tap and ruleset; the guest sees its
    nucleus.net= address; DELETE removes the namespace again."""
    c = node.client()
    before = _netns_names()
    extra = RES + "  network:\n    allow: [\"192.0.2.0/24:443\"]\n"
    pod = running_pod(c, extra=extra)
    st = c.get_pod(pod).json()
    assert st["network"] is True
    assert st["netns"] in _netns_names() - before, (st, before)
    created = {st["netns"]}
    r = c.tool(pod, "write", {"path": "n.txt", "content": "1"})
    assert r.status == 200
    c.delete_pod(pod)
    node.assert_clean()
    assert not (_netns_names() & created), "the pod's namespace survived DELETE"


def test_qemu_stopped_mid_call_fails_call_and_pod_within_the_bound(tmp_path, guest_images):  # noqa: F811
    """QEMU stopped with SIGSTOP while a call runs (as a VM paused by a full disk would look):
    the node's liveness watch fails the pod and the call within --liveness-timeout, long
    before the call's own timeout or the pod's deadline."""
    require_root()
    with NodeProc(tmp_path, driver="qemu", images_dir=guest_images, accel="tcg",
                  extra_args=["--liveness-timeout", "5"]) as n:
        c = n.client()
        pod = running_pod(c, policy="local-dev")
        result = {}

        def call():
            result["r"] = c.tool(pod, "run", {"argv": ["sleep", "300"], "timeout_seconds": 300}, timeout=280)

        t = threading.Thread(target=call)
        t.start()
        time.sleep(2)
        pids = qemu_pids(n)
        assert pids
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        try:
            st = c.wait_state(pod, {"failed", "exited"}, timeout=120)
        finally:
            for p in pids:
                try:
                    os.kill(p, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        assert st["state"] == "failed" and st["reason_kind"] == "guest_unresponsive", st
        t.join(120)
        assert not t.is_alive()
        assert result["r"].status in (409, 504), result["r"]
        assert n.verify_audit(pod).returncode == 0
