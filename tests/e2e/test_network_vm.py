# SPDX-License-Identifier: Apache-2.0
"""Network isolation with real microVMs (QEMU, TCG) through the node API (adversarial N1-N5).

A nucleus-node with the qemu driver, a private address pool and `[net] dns_upstream` pointing at
the test "internet"'s DNS server (tests/helpers/netlab.py) runs pods with a `network` section;
commands inside the VM (`git ls-remote`, through the proxy's run tool) try to reach the lab.
Library-level coverage of the same cases (UDP, ICMP, IPv6, CNAMEs) lives in
tests/integration/test_net_isolation.py; this file proves the pieces are wired together: the
node sets the network up and hands QEMU the tap as an fd (QEMU runs as nucleus-vmm and could
not open /dev/net/tun itself), the guest configures eth0 and its resolver from nucleus.net=,
the pod's dnsmasq forwards only allowed names to the configured upstream, the drift monitor
kills a pod whose ruleset was changed by hand, and nothing is left after the pod ends.
"""
import hashlib
import json
import os
import random
import shutil
import tempfile
import time

import pytest

from helpers.netlab import NetLab, host_ipv4_addrs, host_routes, link_exists, netns_exec, netns_list, sh

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("qemu-system-x86_64"), reason="needs qemu-system-x86_64"),
    pytest.mark.skipif(not shutil.which("dnsmasq"), reason="needs dnsmasq"),
]

BOOT_TIMEOUT = 600  # TCG on a shared 2-core machine
DRIFT_PERIOD = 5.0  # the node's drift monitor period (src/node/pod-supervisor.c POD_DRIFT_INTERVAL)
RES = "  resources: {memory_mib: 256, scratch_mib: 64}\n"


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
    from helpers.images import build_images
    from helpers.nodeproc import NodeProc

    images, _ = build_images()
    base = tmp_path_factory.mktemp("netvm")
    pool = _free_pool()
    lab = NetLab(base, pool)
    cfg = base / "node.toml"
    cfg.write_text(f'[net]\npool = "{pool}"\ndns_upstream = "{lab.dns_addr}"\n')
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
            f"  driver: qemu\n{RES}  network:\n{network_yaml}")


def _short(pod):
    return hashlib.sha256(pod.encode()).hexdigest()[:10]


def _start(c, spec):
    r = c.create_pod(spec)
    assert r.status == 201, r
    pod = r.json()["id"]
    st = c.wait_state(pod, {"running", "failed", "exited"}, timeout=BOOT_TIMEOUT)
    if st["state"] != "running":
        logs = c.logs(pod, tail=60)
        raise AssertionError(f"pod did not start: {json.dumps(st)}\n{logs.text[-6000:]}")
    return pod


def _fetch(c, pod, url, timeout=10):
    """HTTP GET from inside the VM with git (in the rootfs, allowed by the codegen profile).
    Returns (reached, result): reached is True when the lab's HTTP server answered."""
    r = c.tool(pod, "run", {"argv": ["git", "ls-remote", url], "timeout_seconds": timeout}, timeout=180)
    assert r.status == 200, r
    res = r.json()
    # The lab answers every GET with a page that is not a git ref list: git says so.
    return "not valid: is this a git repository" in res.get("stderr", ""), res


def _pod_net_leftovers(node, pod):
    """Everything of the pod's network still on the machine: netns, links, host table, dnsmasq,
    allocation record, per-pod network files."""
    s = _short(pod)
    left = []
    if f"nucleus-{s}" in netns_list():
        left.append(f"netns nucleus-{s}")
    for link in (f"nuh-{s}", f"nun-{s}"):
        if link_exists(link):
            left.append(f"link {link}")
    if sh("nft", "list", "table", "inet", f"nucleus_{s}", check=False).returncode == 0:
        left.append(f"nft table inet nucleus_{s}")
    net_dir = node.state_dir / "net"
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"dnsmasq" in cmd and f"pods/{s}".encode() in cmd:
            left.append(f"process {d}: {cmd[:80]!r}")
    alloc = net_dir / "alloc"
    if alloc.is_dir():
        for a in alloc.iterdir():
            if a.read_text().strip() == pod:
                left.append(f"allocation {a}")
    if (net_dir / "pods" / s).exists():
        left.append(f"dir {net_dir / 'pods' / s}")
    return left


def _assert_net_gone(node, pod, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        left = _pod_net_leftovers(node, pod)
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"pod {pod} left behind: {left}\n{node.log()}")
        time.sleep(0.2)


def test_vm_allowed_reachable_rest_dropped(env):  # N1, N4
    node, lab = env
    c = node.client()
    pod = _start(c, _spec(f'    allow: ["{lab.web}/32:{lab.port}/tcp"]\n'))
    st = c.get_pod(pod).json()
    assert st["network"] is True and st["netns"] == f"nucleus-{_short(pod)}", st
    assert st["netns"] in netns_list()
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
    assert c.wait_state(pod, {"exited", "failed"}, timeout=60)["state"] == "exited"
    _assert_net_gone(node, pod)
    node.assert_clean()


def test_vm_dns_allowlist(env):  # N2, N3
    node, lab = env
    c = node.client()
    allowed = f"www.{lab.ZONE}"
    denied = f"secret.{lab.ZONE}"
    pod = _start(c, _spec(f'    dns_allow: ["{allowed}"]\n'))
    try:
        # An allowed name resolves in the VM (guest resolver -> pod dnsmasq -> lab DNS) and its
        # answer opens exactly that address.
        reached, res = _fetch(c, pod, f"http://{allowed}:{lab.port}/x", timeout=20)
        assert reached, res
        assert allowed in lab.dns_queries()
        # A name not on the list gets no answer, and the query never reaches the lab server.
        reached, res = _fetch(c, pod, f"http://{denied}:{lab.port}/x", timeout=20)
        assert not reached and not res.get("success"), res
        assert "resolve" in res.get("stderr", "").lower(), res
        assert denied not in lab.dns_queries(), lab.dns_queries()
        # The node's DNS filter refused it: counted, and audited with the name.
        assert node.metric("nucleus_dns_refused_total", reason="not_allowed") >= 1
        recs = [json.loads(l) for l in c.audit(pod).text.splitlines()]
        dns = [r for r in recs if r["op"] == "dns_query"]
        assert dns and all(r["decision"] == "deny" and r["kind"] == "network_denied" for r in dns), dns
        assert any(r.get("detail", {}).get("name") == denied for r in dns), dns
        # Zone addresses that were never in an answer stay closed: the denied name's address
        # and one nobody resolves.
        for addr in (lab.web_other, lab.web_unresolved):
            reached, res = _fetch(c, pod, f"http://{addr}:{lab.port}/x", timeout=8)
            assert not reached and not res.get("success"), (addr, res)
        # Metadata and the host stay unreachable for a pod with DNS, too.
        for addr in ("169.254.169.254", lab.host_addr):
            reached, res = _fetch(c, pod, f"http://{addr}:{lab.port}/x", timeout=8)
            assert not reached and not res.get("success"), (addr, res)
        # The resolved address is in the pod's DNS set, nothing else is.
        out = netns_exec(f"nucleus-{_short(pod)}", "nft", "-j", "list", "set", "inet", "nucleus", "dns4").stdout
        assert lab.web in out and lab.web_other not in out, out
    finally:
        r = c.delete_pod(pod)
        assert r.status == 200, r
    assert c.wait_state(pod, {"exited", "failed"}, timeout=60)["state"] == "exited"
    _assert_net_gone(node, pod)
    node.assert_clean()


def test_vm_drift_kills_pod(env):  # N5
    node, lab = env
    c = node.client()
    pod = _start(c, _spec(f'    allow: ["{lab.web}/32:{lab.port}/tcp"]\n'))
    ns = f"nucleus-{_short(pod)}"
    netns_exec(ns, "nft", "insert", "rule", "inet", "nucleus", "forward", "accept")
    t0 = time.monotonic()
    # Within one monitor period (plus scheduling slack on a loaded machine) the pod is no longer
    # running; the reason names the drift.
    while time.monotonic() - t0 < DRIFT_PERIOD + 5:
        st = c.get_pod(pod).json()
        if st["state"] != "running":
            break
        time.sleep(0.2)
    assert st["state"] != "running", f"still running {time.monotonic() - t0:.1f}s after the change"
    st = c.wait_state(pod, {"failed", "exited"}, timeout=60)
    assert st["state"] == "failed" and "network policy drift" in st.get("reason", ""), st
    assert st.get("reason_kind") == "network_denied", st
    _assert_net_gone(node, pod)
    node.assert_clean()


def test_vm_kill9_qemu_leaves_no_network(env):
    """The VMM dies under the pod: the pod fails, and its network goes with it."""
    node, lab = env
    c = node.client()
    pod = _start(c, _spec(f'    allow: ["{lab.web}/32:{lab.port}/tcp"]\n    dns_allow: ["www.{lab.ZONE}"]\n'))
    qemu = [p for p in node.processes_mentioning_state() if b"qemu" in open(f"/proc/{p}/cmdline", "rb").read()
            and f"/{pod}/".encode() in open(f"/proc/{p}/cmdline", "rb").read()]
    assert len(qemu) == 1, qemu
    os.kill(qemu[0], 9)
    st = c.wait_state(pod, {"failed"}, timeout=60)
    assert "killed by signal KILL" in st["reason"], st
    _assert_net_gone(node, pod)
    node.assert_clean()


def test_vm_node_restart_cleans_network(env):
    """The node dies (kill -9) with a networked pod running; the next start removes the VM and
    the pod's namespace, links, host table and dnsmasq."""
    node, lab = env
    c = node.client()
    pod = _start(c, _spec(f'    allow: ["{lab.web}/32:{lab.port}/tcp"]\n    dns_allow: ["www.{lab.ZONE}"]\n'))
    assert _pod_net_leftovers(node, pod)  # the network is there while the pod runs
    node.kill9()
    assert _pod_net_leftovers(node, pod)  # ... and outlives the node
    node.start()
    _assert_net_gone(node, pod, timeout=10)
    node.assert_clean()
    st = json.loads((node.state_dir / "pods" / pod / "state.json").read_text())
    assert st["state"] == "failed"


def test_vm_deadline_leaves_no_network(env):
    """The pod's deadline ends it (while booting or running, whichever it reaches under TCG):
    time_violation, and its network is gone."""
    node, lab = env
    c = node.client()
    r = c.create_pod(_spec(f'    allow: ["{lab.web}/32:{lab.port}/tcp"]\n    dns_allow: ["www.{lab.ZONE}"]\n',
                           timeout=30))
    assert r.status == 201, r
    pod = r.json()["id"]
    st = c.wait_state(pod, {"exited", "failed"}, timeout=120)
    assert st["state"] == "exited" and st.get("reason_kind") == "time_violation", st
    _assert_net_gone(node, pod)
    node.assert_clean()


def test_vm_node_shutdown_leaves_no_network(env):
    """SIGTERM to the node with a networked pod running: the pod ends ("node shutdown") and its
    network goes with it before the node exits."""
    node, lab = env
    c = node.client()
    pod = _start(c, _spec(f'    allow: ["{lab.web}/32:{lab.port}/tcp"]\n    dns_allow: ["www.{lab.ZONE}"]\n'))
    node.stop()  # SIGTERM; asserts exit 0 and no process or pod file left
    try:
        assert _pod_net_leftovers(node, pod) == []
        st = json.loads((node.state_dir / "pods" / pod / "state.json").read_text())
        assert st["state"] == "exited" and "shutdown" in st["reason"], st
    finally:
        node.start()  # the module fixture stops it again


def test_vm_web_fetch_reaches_an_allowed_lab_host(env):
    """web_fetch works in a pod: the helper (shipped in the initramfs with its libraries, not in
    the rootfs) fetches from the lab's web server by an allowed name; a name off the list is
    refused before any connection."""
    node, lab = env
    c = node.client()
    allowed = f"www.{lab.ZONE}"
    # A bare dns_allow name means ports 80/443 to web_fetch: a web server on port 80 in the lab.
    www = tempfile.mkdtemp(prefix="nucleus-lab-www-")
    with open(os.path.join(www, "hello.txt"), "w") as f:
        f.write("hello from the lab\n")
    lab.serve_files(lab.web, 80, www)  # stopped with the lab
    pod = _start(c, _spec(f'    dns_allow: ["{allowed}"]\n', policy="web_research"))
    try:
        r = c.tool(pod, "web_fetch", {"url": f"http://{allowed}/hello.txt"}, timeout=180)
        res = r.json()
        assert r.status == 200 and res.get("status") == 200, res
        assert res["body"] == "hello from the lab\n", res
        assert allowed in lab.dns_queries()
        r = c.tool(pod, "web_fetch", {"url": f"http://secret.{lab.ZONE}:{lab.port}/x"}, timeout=180)
        assert r.status != 200 and r.json().get("kind") == "network_denied", r.json()
    finally:
        c.delete_pod(pod)
        shutil.rmtree(www, ignore_errors=True)
    assert c.wait_state(pod, {"exited", "failed"}, timeout=60)["state"] == "exited"
