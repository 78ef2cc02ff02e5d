# SPDX-License-Identifier: Apache-2.0
"""The warm pool with the local driver (quick: no VM boots): claim, refill, exhaustion falls
back to a cold boot, a pooled pod that dies while idle is replaced, a restart discards the
pool. The same behaviour with real microVMs: tests/e2e/test_node_pool_qemu.py."""
import json
import os
import signal
import time

import subprocess

import pytest

from conftest import binary
from helpers.nodeproc import NodeProc, spec_yaml

WAIT = 120


def pool_node(tmp_path, size=1, budget=None, driver="local", extra_args=(), **kw):
    cfg = tmp_path / "node.toml"
    text = f"[pool.images]\ndefault = {size}\n"
    if budget is not None:
        text = f"[pool]\nmemory_budget_mib = {budget}\n" + text
    cfg.write_text(text)
    return NodeProc(tmp_path, driver=driver, extra_args=["--config", str(cfg), *extra_args], **kw)


def pool_state(node):
    r = node.client().request("GET", "/v1/pool")
    assert r.status == 200, r
    return r.json()


def wait_ready(node, n, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = pool_state(node)
        img = {i["image"]: i for i in st["images"]}["default"]
        if img["ready"] == n:
            return st
        time.sleep(0.1)
    raise AssertionError(f"pool not at {n} ready: {pool_state(node)}\n{node.log()}")


def pooled_dirs(node):
    pods = node.state_dir / "pods"
    return sorted(p.name for p in pods.iterdir() if (p / "pool").exists()) if pods.is_dir() else []


def create_running(c, **kw):
    r = c.create_pod(spec_yaml(**kw))
    assert r.status == 201, r
    pod = r.json()["id"]
    st = c.wait_state(pod, {"running", "failed", "exited"}, timeout=WAIT)
    assert st["state"] == "running", st
    return pod


def audit_ops(node, pod):
    return [json.loads(line)["op"] for line in node.audit_path(pod).read_text().splitlines()]


def test_pool_claim_refill_and_audit(tmp_path):
    with pool_node(tmp_path, size=1) as node:
        wait_ready(node, 1)
        pooled = pooled_dirs(node)
        assert len(pooled) == 1
        c = node.client()
        assert c.list_pods().json()["pods"] == []  # pooled pods are not user pods
        pod = create_running(c)
        assert pod == pooled[0]  # the pooled pod's dir became the pod's
        assert node.metric("nucleus_pool_hits_total") == 1
        r = c.tool(pod, "write", {"path": "a.txt", "content": "claimed\n"})
        assert r.status == 200, r
        r = c.tool(pod, "read", {"path": "a.txt"})
        assert r.status == 200 and "claimed" in r.json()["content"], r
        # Refilled in the background: a new pooled pod, not the claimed one.
        wait_ready(node, 1)
        assert pooled_dirs(node) and pooled_dirs(node)[0] != pod
        assert [p["id"] for p in c.list_pods().json()["pods"]] == [pod]
        assert node.metric("nucleus_pool_refill_seconds_count") >= 2
        assert node.metric("nucleus_pool_pods", image="default", state="ready") == 1
        assert c.delete_pod(pod).json()["state"] == "exited"
        ops = audit_ops(node, pod)
        assert ops.count("pod_claim") == 1
        assert "pod_booting" not in ops
        assert ops[:2] == ["pod_create", "pod_claim"]
        assert "configure" in ops and "pod_running" in ops and "guest.boot" not in ops[:2]
        # The pool's readiness ping is the proxy's liveness ping, answered outside the audit:
        # it used to reach the proxy as an unknown operation, a `guest.ping deny/unsupported`
        # record in the log of every pod claimed from the pool.
        assert "guest.ping" not in ops, ops
        v = node.verify_audit(pod)
        assert v.returncode == 0, v.stdout + v.stderr


def test_pool_exhaustion_and_shape_miss_boot_cold(tmp_path):
    with pool_node(tmp_path, size=1) as node:
        wait_ready(node, 1)
        c = node.client()
        # Another shape is a miss with its reason, booted cold; the pooled pod stays.
        other = create_running(c, extra="  resources: {memory_mib: 256}\n")
        assert node.metric("nucleus_pool_misses_total", reason="memory") == 1
        img = create_running(c, extra="  image: python\n")
        assert node.metric("nucleus_pool_misses_total", reason="disabled") == 1  # no pool for it
        assert "pod_booting" in audit_ops(node, img)
        assert "pod_booting" in audit_ops(node, other) and "pod_claim" not in audit_ops(node, other)
        # Three creates of the default shape in a row: the first is a hit; the others are hits
        # only when the refill won the race, else misses ("empty") booted cold. Either way
        # every pod runs and its audit log says which it was.
        pods = [create_running(c) for _ in range(3)]
        hits = node.metric("nucleus_pool_hits_total")
        empty = node.metric("nucleus_pool_misses_total", reason="empty")
        assert hits >= 1 and hits + empty == 3
        claimed = [p for p in pods if "pod_claim" in audit_ops(node, p)]
        assert len(claimed) == hits and claimed[0] == pods[0]
        for p in pods:
            assert ("pod_booting" in audit_ops(node, p)) != (p in claimed)
        for p in [other] + pods:
            r = c.tool(p, "list", {"path": "."})
            assert r.status == 200, r


def test_pool_empty_falls_back_to_cold(tmp_path):
    # A budget below one pooled pod: the pool never fills, every create is a cold boot.
    with pool_node(tmp_path, size=1, budget=100) as node:
        c = node.client()
        pod = create_running(c)
        assert node.metric("nucleus_pool_misses_total", reason="empty") == 1
        assert node.metric("nucleus_pool_hits_total") == 0
        assert "pod_booting" in audit_ops(node, pod)
        assert "below one pooled pod" in node.log()
        assert pool_state(node)["images"][0]["ready"] == 0


def test_pool_idle_pod_killed_is_replaced(tmp_path):
    with pool_node(tmp_path, size=1) as node:
        wait_ready(node, 1)
        victim = pooled_dirs(node)[0]
        pid = int((node.state_dir / "pods" / victim / "vmm.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            dirs = pooled_dirs(node)
            if dirs and victim not in dirs and pool_state(node)["images"][0]["ready"] == 1:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"not replaced: {pooled_dirs(node)}\n{node.log()}")
        assert not (node.state_dir / "pods" / victim).exists()
        assert node.metric("nucleus_pool_lost_total") == 1
        pod = create_running(node.client())
        assert "pod_claim" in audit_ops(node, pod)


def descendants(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def test_pool_idle_pod_that_stops_answering_is_replaced(tmp_path):
    # A hung guest (here: every process of the sandbox stopped) is noticed by the channel's
    # liveness pings while it waits in the pool, discarded and replaced.
    with pool_node(tmp_path, size=1, extra_args=["--liveness-timeout", "2"]) as node:
        wait_ready(node, 1)
        victim = pooled_dirs(node)[0]
        pid = int((node.state_dir / "pods" / victim / "vmm.pid").read_text().split()[0])
        stopped = descendants(pid)
        for p in stopped:
            os.kill(p, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                dirs = pooled_dirs(node)
                if dirs and victim not in dirs and pool_state(node)["images"][0]["ready"] == 1:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"not replaced: {pooled_dirs(node)}\n{node.log()}")
        finally:
            for p in stopped:
                try:
                    os.kill(p, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        assert "stopped answering on its channel; replacing it" in node.log()
        assert node.metric("nucleus_pool_lost_total") == 1
        pod = create_running(node.client())
        assert "pod_claim" in audit_ops(node, pod)
        assert c_ok(node, pod)


def c_ok(node, pod):
    r = node.client().tool(pod, "list", {"path": "."})
    return r.status == 200


def test_pool_restart_discards_pool(tmp_path):
    node = pool_node(tmp_path, size=2)
    node.start()
    try:
        wait_ready(node, 2)
        old = pooled_dirs(node)
        assert len(old) == 2
        node.kill9()  # their dirs stay behind (bwrap dies with the node: --die-with-parent)
        node.start()
        wait_ready(node, 2)
        new = pooled_dirs(node)
        assert not set(old) & set(new)
        for d in old:
            assert not (node.state_dir / "pods" / d).exists()
        assert node.client().list_pods().json()["pods"] == []
        assert "Discarded pool pod" in node.log()
        node.stop()  # asserts nothing is left (processes, files)
        assert not (node.state_dir / "pods").exists() or not any((node.state_dir / "pods").iterdir())
    finally:
        if node.proc:
            node.stop(check_clean=False)
        node.remove_state()


def test_pool_budget_bounds_the_pool(tmp_path):
    # 768 MiB per pooled pod (512 MiB guest + 256): a 1600 MiB budget holds two of three.
    with pool_node(tmp_path, size=3, budget=1600) as node:
        st = wait_ready(node, 2)
        time.sleep(1)
        st = pool_state(node)
        assert st["images"][0]["ready"] + st["images"][0]["booting"] == 2, st
        assert st["memory_used_mib"] <= st["memory_budget_mib"] == 1600
        assert "memory_budget_mib = 1600 is reached" in node.log()
        # doctor names the budget that holds the whole pool.
        d = nucleus(node, tmp_path, "doctor", "--output", "json")
        pool = [c for c in json.loads(d.stdout)["checks"] if c["name"] == "warm-pool"]
        assert pool[0]["status"] == "WARN", pool
        assert "memory_budget_mib in node.toml to 2304 (3 pooled pod(s) x 768 MiB)" in pool[0]["fix"], pool


def nucleus(node, tmp_path, *args):
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(tmp_path / "home"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "LANG": "C.UTF-8", "NUCLEUS_NODE_URL": f"http://127.0.0.1:{node.port}",
           "NUCLEUS_NODE_KEY_FILE": str(node.secrets / "node.key")}
    return subprocess.run([str(binary("nucleus")), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_pool_in_ps_and_doctor(tmp_path):
    with pool_node(tmp_path, size=1) as node:
        wait_ready(node, 1)
        ps = nucleus(node, tmp_path, "ps")
        assert ps.returncode == 0, ps.stderr
        assert "warm pool: default 1/1 ready" in ps.stdout
        # JSON stays the pod list only: pooled pods are not pods.
        doc = json.loads(nucleus(node, tmp_path, "ps", "--output", "json").stdout)
        assert doc == {"pods": []}
        d = nucleus(node, tmp_path, "doctor", "--output", "json")
        pool = [c for c in json.loads(d.stdout)["checks"] if c["name"] == "warm-pool"]
        assert len(pool) == 1 and pool[0]["status"] == "OK", pool
        assert "image default: 1 of 1 pooled pod(s) ready" in pool[0]["message"]


def test_no_pool_by_default(tmp_path):
    with NodeProc(tmp_path, driver="local") as node:
        st = pool_state(node)
        assert st["images"] == [] and st["hits"] == 0
        assert "warm pool" not in nucleus(node, tmp_path, "ps").stdout
        pod = create_running(node.client())
        # No pool at all: nothing is counted (a miss is a create a pool could have served).
        assert node.metric("nucleus_pool_misses_total", reason="disabled") == 0
        assert node.metric("nucleus_pool_hits_total") == 0
        assert "pod_booting" in audit_ops(node, pod)
        assert not pooled_dirs(node)
