# SPDX-License-Identifier: Apache-2.0
"""The warm pool with real microVMs (driver qemu, TCG here): a create claims a booted,
unconfigured VM (its tools work, its audit log states the claim and verifies), the pool is
refilled, an exhausted pool falls back to a cold boot, an idle pooled VM that dies is replaced,
and a node restart discards the pool (no QEMU, no files); refills after the first restore a
snapshot of it, and pods claimed from it get a reseeded CRNG and the node's clock. Pool size 1:
each test boots at most three VMs (restores are cheaper). The quick local-driver variant: tests/integration/test_node_pool.py."""
import json
import os
import signal
import time

import pytest

from conftest import require_root
from helpers.images import guest_images  # noqa: F401  (session fixture)
from helpers.nodeproc import NodeProc, spec_yaml, tar_bytes

WAIT = 300


@pytest.fixture
def pool_node(tmp_path, guest_images):  # noqa: F811
    require_root()
    cfg = tmp_path / "node.toml"
    cfg.write_text("[pool.images]\ndefault = 1\n")
    n = NodeProc(tmp_path, driver="qemu", images_dir=guest_images, accel="tcg",
                 extra_args=["--config", str(cfg)])
    with n:
        yield n


def pool_image(node):
    r = node.client().request("GET", "/v1/pool")
    assert r.status == 200, r
    return {i["image"]: i for i in r.json()["images"]}["default"]


def wait_ready(node, timeout=WAIT, exclude=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pool_image(node)["ready"] == 1 and not set(pooled_dirs(node)) & set(exclude):
            return pooled_dirs(node)[0]
        time.sleep(0.2)
    raise AssertionError(f"pool not ready: {pool_image(node)}\n{node.log()}")


def pooled_dirs(node):
    pods = node.state_dir / "pods"
    return sorted(p.name for p in pods.iterdir() if (p / "pool").exists()) if pods.is_dir() else []


def qemu_pids(node):
    out = []
    for p in node.processes_mentioning_state():
        try:
            if b"qemu-system" in open(f"/proc/{p}/cmdline", "rb").read():
                out.append(p)
        except OSError:
            pass
    return out


def create_running(c, policy=None):
    r = c.create_pod(spec_yaml(driver="qemu", **({"policy": policy} if policy else {})))
    assert r.status == 201, r
    st = c.wait_state(r.json()["id"], {"running", "failed", "exited"}, timeout=WAIT)
    assert st["state"] == "running", st
    return st["id"]


def audit_ops(node, pod):
    return [json.loads(line)["op"] for line in node.audit_path(pod).read_text().splitlines()]


def test_pool_claim_refill_exhaustion(pool_node):
    node = pool_node
    c = node.client()
    pooled = wait_ready(node)
    assert c.list_pods().json()["pods"] == []
    assert len(qemu_pids(node)) == 1
    pod = create_running(c)
    assert pod == pooled
    assert node.metric("nucleus_pool_hits_total") == 1
    assert c.upload_workspace(pod, tar_bytes({"README.md": "warm\n"})).status == 200
    r = c.tool(pod, "read", {"path": "README.md"})
    assert r.status == 200 and "warm" in r.json()["content"], r
    r = c.tool(pod, "run", {"argv": ["git", "status"]})
    assert r.status == 200 and "exit_code" in r.json(), r
    # Exhaustion: the next create comes while the refill boots (a miss, cold) or after it (a
    # hit); both run, and the counters say which.
    second = create_running(c)
    hits = node.metric("nucleus_pool_hits_total")
    assert hits + node.metric("nucleus_pool_misses_total", reason="empty") == 2
    assert ("pod_claim" in audit_ops(node, second)) == (hits == 2)
    assert ("pod_booting" in audit_ops(node, second)) == (hits == 1)
    # Refill: back to one ready pooled VM, a new one.
    wait_ready(node, exclude=(pod, second))
    assert node.metric("nucleus_pool_pods", image="default", state="ready") == 1
    assert sorted(p["id"] for p in c.list_pods().json()["pods"]) == sorted([pod, second])
    # Later refills restore a snapshot of the first pooled VM ([pool] restore = "auto"): two
    # pods claimed from it are not twins (the CRNG reseeded at configure), keep the node's clock,
    # and their claim records say so.
    assert "restored from the pool's snapshot" in node.log()
    assert len(list((node.state_dir / "pool-snapshots").iterdir())) == 1
    restored = []
    for _ in range(2):
        wait_ready(node, exclude=(pod, second, *restored))
        restored.append(create_running(c, policy="local-dev"))
    rnd = []
    for p in restored:
        claim = [json.loads(line) for line in node.audit_path(p).read_text().splitlines()][1]
        assert claim["op"] == "pod_claim", claim
        r = c.tool(p, "run", {"argv": ["od", "-An", "-tx1", "-N32", "/dev/urandom"]})
        assert r.status == 200 and r.json()["exit_code"] == 0, r
        rnd.append("".join(r.json()["stdout"].split()))
        r = c.tool(p, "run", {"argv": ["date", "+%s"]})
        assert r.status == 200 and abs(int(r.json()["stdout"]) - time.time()) < 120, r
    assert rnd[0] != rnd[1] and len(rnd[0]) == 64
    for p in (pod, second, *restored):
        assert c.delete_pod(p).json()["state"] == "exited"
    ops = audit_ops(node, pod)
    assert ops[:2] == ["pod_create", "pod_claim"] and ops.count("pod_claim") == 1
    assert "guest.boot" in ops and "configure" in ops and "pod_running" in ops
    v = node.verify_audit(pod)
    assert v.returncode == 0, v.stdout + v.stderr


def test_pool_idle_vm_killed_is_replaced_and_restart_discards(pool_node):
    node = pool_node
    victim = wait_ready(node)
    [pid] = qemu_pids(node)
    os.kill(pid, signal.SIGKILL)
    replacement = wait_ready(node, exclude=(victim,))
    assert replacement != victim
    assert not (node.state_dir / "pods" / victim).exists()
    assert node.metric("nucleus_pool_lost_total") == 1
    assert node.client().list_pods().json()["pods"] == []
    # The node dies with a pooled VM: the next start reaps it and removes its dir.
    node.kill9()
    assert qemu_pids(node)
    node.start()
    deadline = time.monotonic() + 60
    while replacement in pooled_dirs(node) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (node.state_dir / "pods" / replacement).exists()
    assert "Discarded pool pod" in node.log()
    assert node.client().list_pods().json()["pods"] == []
    wait_ready(node, exclude=(replacement,))
    assert len(qemu_pids(node)) == 1
    # A clean stop ends the pool too (NodeProc's stop checks no process or file is left).
