# SPDX-License-Identifier: Apache-2.0
"""Network isolation with real microVMs (QEMU, TCG) through the node API (adversarial N1, N4, N5).

A nucleus-node with the qemu driver and a private address pool runs pods with a `network`
section; commands inside the VM (`busybox wget`, through the proxy's run tool) try to reach
the test "internet" (tests/helpers/netlab.py). Library-level coverage of the same cases, and of
DNS, lives in tests/integration/test_net_isolation.py; this file proves the pieces are wired
together: the node sets the network up, the guest configures eth0 from nucleus.net=, the VMM
sits in the pod's namespace, and everything is gone after the pod ends.
"""
import hashlib
import json
import os
import random
import shutil
import time

import pytest

from conftest import binary
from helpers.netlab import NetLab, host_ipv4_addrs, host_routes, netns_exec, netns_list, sh

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("qemu-system-x86_64"), reason="needs qemu-system-x86_64"),
]


BOOT_TIMEOUT = 600  # TCG on a shared 2-core machine


def _free_pool():
    used = host_ipv4_addrs()
    routes = json.dumps(host_routes())
    for _ in range(200):
        a, b = random.randrange(100, 250), random.randrange(0, 256)
        if not any(u.startswith(f"10.{a}.{b}.") for u in used) and f'"10.{a}.{b}.' not in routes:
            return f"10.{a}.{b}.0/24"
    pytest.skip("no free pool")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from helpers.nodeproc import NodeProc

    if not _tun_usable_by_vmm():
        pytest.skip("QEMU runs as nucleus-vmm but /dev/net/tun is not world rw (mode 0600 here); "
                    "needs the node to pass a tap fd (net_pod_open_tap) or mode 0666")
    from helpers.images import build_images
    images, _ = build_images()
    base = tmp_path_factory.mktemp("netvm")
    pool = _free_pool()
    cfg = base / "node.toml"
    cfg.write_text(f'[net]\npool = "{pool}"\n')
    lab = NetLab(base, pool)
    node = NodeProc(base, driver="qemu", images_dir=images, extra_args=["--config", str(cfg)])
    try:
        node.start()
        yield node, lab
    finally:
        try:
            node.stop()
        finally:
            lab.close()


def _spec(network_yaml, policy="codegen", timeout=900):
    return (f"apiVersion: nucleus/v1\nkind: Pod\nspec:\n  policy: {policy}\n  timeout_seconds: {timeout}\n"
            f"  driver: qemu\n  network:\n{network_yaml}")


def _netns_of(pod):
    return "nucleus-" + hashlib.sha256(pod.encode()).hexdigest()[:10]


def _start(c, spec):
    r = c.create_pod(spec)
    assert r.status == 201, r
    pod = r.json()["id"]
    st = c.wait_state(pod, {"running", "failed", "exited"}, timeout=BOOT_TIMEOUT)
    assert st["state"] == "running", st
    return pod


def _fetch(c, pod, url, timeout=10):
    """HTTP GET from inside the VM with git (in the rootfs, allowed by the codegen profile).
    Returns (reached, result): reached is True when the lab's HTTP server answered."""
    r = c.tool(pod, "run", {"argv": ["git", "ls-remote", url], "timeout_seconds": timeout}, timeout=180)
    assert r.status == 200, r
    res = r.json()
    # The lab answers every GET with a page that is not a git ref list: git says so.
    return "not valid: is this a git repository" in res.get("stderr", ""), res


def _tun_usable_by_vmm():
    """QEMU opens the tap by name (-netdev tap,ifname=): as the unprivileged nucleus-vmm user it
    needs /dev/net/tun world read/write (Debian's udev default 0666)."""
    import pwd
    try:
        pwd.getpwnam("nucleus-vmm")
    except KeyError:
        return True  # QEMU runs as root
    return (os.stat("/dev/net/tun").st_mode & 0o006) == 0o006


def test_vm_allowed_reachable_rest_dropped(env):  # N1, N4
    node, lab = env
    c = node.client()
    pod = _start(c, _spec(f'    allow: ["{lab.web}/32:{lab.port}/tcp"]\n'))
    ns = _netns_of(pod)
    assert ns in netns_list()
    try:
        reached, res = _fetch(c, pod, f"http://{lab.web}:{lab.port}/x")
        assert reached, res
        for url in (f"http://{lab.web_unresolved}:{lab.port}/x",   # other address
                    f"http://{lab.web}:{lab.port + 1}/x",           # other port
                    f"http://169.254.169.254:{lab.port}/x",         # metadata
                    f"http://{lab.host_addr}:{lab.port}/x"):        # the host
            reached, res = _fetch(c, pod, url, timeout=8)
            assert not reached and not res.get("success"), (url, res)
    finally:
        r = c.delete_pod(pod)
        assert r.status == 200, r
    deadline = time.monotonic() + 30
    while ns in netns_list() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ns not in netns_list()


def test_vm_drift_kills_pod(env):  # N5
    node, lab = env
    if b"network policy drift" not in binary("nucleus-node").read_bytes():
        pytest.skip("this nucleus-node has no drift monitor yet (net_pod_check_drift is not called)")
    c = node.client()
    pod = _start(c, _spec(f'    allow: ["{lab.web}/32:{lab.port}/tcp"]\n'))
    ns = _netns_of(pod)
    netns_exec(ns, "nft", "insert", "rule", "inet", "nucleus", "forward", "accept")
    st = c.wait_state(pod, {"failed", "exited"}, timeout=120)
    assert st["state"] in ("failed", "exited") and "network policy drift" in st.get("reason", ""), st
    deadline = time.monotonic() + 30
    while ns in netns_list() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ns not in netns_list()
