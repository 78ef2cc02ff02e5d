# SPDX-License-Identifier: Apache-2.0
"""The warm pool with real microVMs (driver qemu, TCG here): a create claims a booted,
unconfigured VM (its tools work, its audit log states the claim and verifies), the pool is
refilled, an exhausted pool falls back to a cold boot, an idle pooled VM that dies is replaced,
and a node restart discards the pool (no QEMU, no files); refills after the first restore a
snapshot of it, and pods claimed from it get a reseeded CRNG and the node's clock. With
`[pool] network = true` a pooled VM waits with a parked NIC (its namespace holds only the tap
and a drop-everything table) and a create with a network claims it: web_fetch reaches an
allowed lab host, a denied one is refused as for a cold pod, and a restart removes a parked
namespace. Pool size 1: each test boots at most three VMs (restores are cheaper). The quick
local-driver variant: tests/integration/test_node_pool.py."""
import hashlib
import ipaddress
import json
import os
import random
import shutil
import signal
import tempfile
import time

import pytest

from conftest import require_root
from helpers.images import guest_images  # noqa: F401  (session fixture)
from helpers.netlab import NetLab, host_ipv4_addrs, host_routes, netns_exec, netns_list
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
    assert st["state"] == "running", (st.get("reason"), st)
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


# ---- [pool] network = true: pooled pods with a parked NIC --------------------------------------

def _short(pod):
    return hashlib.sha256(pod.encode()).hexdigest()[:10]


def _free_pool():
    used = host_ipv4_addrs()
    routes = json.dumps(host_routes())
    for _ in range(200):
        a, b = random.randrange(100, 250), random.randrange(0, 256)
        if not any(u.startswith(f"10.{a}.{b}.") for u in used) and f'"10.{a}.{b}.' not in routes:
            return f"10.{a}.{b}.0/24"
    pytest.skip("no free address pool")


def _assert_parked(node, pool, pod):
    """A pooled pod's namespace holds only lo and its tap, no address, no route, and one table
    that drops everything; nothing in it reaches the guest's future address."""
    ns = f"nucleus-{_short(pod)}"
    assert ns in netns_list(), netns_list()
    links = json.loads(netns_exec(ns, "ip", "-j", "addr").stdout)
    assert sorted(l["ifname"] for l in links) == sorted(["lo", f"nut-{_short(pod)}"]), links
    assert all(a["family"] != "inet" for l in links for a in l.get("addr_info", [])), links
    assert json.loads(netns_exec(ns, "ip", "-j", "-4", "route").stdout) == []
    rules = json.loads(netns_exec(ns, "nft", "-j", "list", "ruleset").stdout)["nftables"]
    tables = [r["table"]["name"] for r in rules if "table" in r]
    chains = {r["chain"]["name"]: r["chain"]["policy"] for r in rules if "chain" in r}
    assert tables == ["nucleus"] and chains == {"input": "drop", "forward": "drop", "output": "drop"}, rules
    assert not [r for r in rules if "rule" in r], rules
    # Its address block is claimed already; the guest's address in it (block + 6, given at the
    # claim) is unreachable from the namespace, and the tap has passed no packet either way.
    [idx] = [a.name for a in (node.state_dir / "net" / "alloc").iterdir() if a.read_text().strip() == pod]
    base = ipaddress.ip_network(pool).network_address + 8 * int(idx)
    assert netns_exec(ns, "ping", "-c", "1", "-W", "1", str(base + 6), check=False).returncode != 0
    [tap] = [l for l in json.loads(netns_exec(ns, "ip", "-j", "-s", "link").stdout) if l["ifname"].startswith("nut-")]
    assert tap["stats64"]["rx"]["packets"] == 0 and tap["stats64"]["tx"]["packets"] == 0, tap


@pytest.fixture
def netpool_node(tmp_path, guest_images):  # noqa: F811
    require_root()
    if not shutil.which("dnsmasq"):
        pytest.skip("needs dnsmasq")
    pool = _free_pool()
    lab = NetLab(tmp_path, pool)
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[net]\npool = "{pool}"\ndns_upstream = "{lab.dns_addr}"\n'
                   "[pool]\nnetwork = true\n[pool.images]\ndefault = 1\n")
    n = NodeProc(tmp_path, driver="qemu", images_dir=guest_images, accel="tcg",
                 extra_args=["--config", str(cfg)])
    try:
        with n:
            yield n, lab, cfg, pool
    finally:
        lab.close()


def test_pool_network_pod_claimed(netpool_node):
    node, lab, cfg, pool = netpool_node
    c = node.client()
    allowed = f"www.{lab.ZONE}"
    # web_fetch of a bare dns_allow name means port 80: a web server there in the lab.
    www = tempfile.mkdtemp(prefix="nucleus-lab-www-")
    with open(os.path.join(www, "hello.txt"), "w") as f:
        f.write("hello from the lab\n")
    try:
        lab.serve_files(lab.web, 80, www)
        pooled = wait_ready(node)
        assert c.request("GET", "/v1/pool").json()["network"] is True
        _assert_parked(node, pool, pooled)
        # A spec without a network does not take a pod with a NIC (a cold pod has none).
        # (Not created here: the shape decision is unit-tested; it would cost a cold boot.)
        r = c.create_pod(
            "apiVersion: nucleus/v1\nkind: Pod\nspec:\n  policy: web_research\n  timeout_seconds: 900\n"
            f"  driver: qemu\n  network:\n    dns_allow: [\"{allowed}\"]\n")
        assert r.status == 201, r
        pod = r.json()["id"]
        st = c.wait_state(pod, {"running", "failed", "exited"}, timeout=WAIT)
        assert st["state"] == "running", (st, c.logs(pod, tail=60).text[-4000:])
        assert pod == pooled and node.metric("nucleus_pool_hits_total") == 1
        st = c.get_pod(pod).json()
        assert st["network"] is True and st["netns"] == f"nucleus-{_short(pod)}", st
        # The pod's own ruleset replaced the parked table; the guest got its address at configure.
        out = json.loads(netns_exec(st["netns"], "ip", "-j", "-4", "addr").stdout)
        assert any(l["ifname"] == f"nub-{_short(pod)}" for l in out), out
        r = c.tool(pod, "web_fetch", {"url": f"http://{allowed}/hello.txt"}, timeout=180)
        res = r.json()
        assert r.status == 200 and res.get("status") == 200, res
        assert res["body"] == "hello from the lab\n", res
        assert allowed in lab.dns_queries()
        r = c.tool(pod, "web_fetch", {"url": f"http://secret.{lab.ZONE}:{lab.port}/x"}, timeout=180)
        assert r.status != 200 and r.json().get("kind") == "network_denied", r.json()
        recs = [json.loads(l) for l in node.audit_path(pod).read_text().splitlines()]
        ops = [r["op"] for r in recs]
        assert ops[:2] == ["pod_create", "pod_claim"], ops
        assert recs[1]["detail"]["nic"] == "parked", recs[1]
        # The refill parks the next pod; the node dies with it: the next start removes its
        # namespace (no pool then, so nothing boots again).
        refill = wait_ready(node, exclude=(pod,))
        _assert_parked(node, pool, refill)
        assert c.delete_pod(pod).json()["state"] == "exited"
        v = node.verify_audit(pod)
        assert v.returncode == 0, v.stdout + v.stderr
        node.kill9()
        assert f"nucleus-{_short(refill)}" in netns_list()
        cfg.write_text(cfg.read_text().replace("default = 1", "default = 0"))
        node.start()
        deadline = time.monotonic() + 60
        while f"nucleus-{_short(refill)}" in netns_list() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"nucleus-{_short(refill)}" not in netns_list(), node.log()
        assert not (node.state_dir / "net" / "pods" / _short(refill)).exists()
        assert not [a for a in (node.state_dir / "net" / "alloc").iterdir()
                    if a.read_text().strip() in (pod, refill)]
    finally:
        shutil.rmtree(www, ignore_errors=True)
