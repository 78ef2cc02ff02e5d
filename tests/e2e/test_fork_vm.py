# SPDX-License-Identifier: Apache-2.0
"""Snapshot and fork of real microVMs (driver qemu, TCG; docs/snapshot.md): a child sees its
parent's files and what lived only in guest memory, has its own id, deadline and audit log
(whose first record names the parent and the snapshot, and which verifies), gets a reseeded
CRNG and an equal share of the parent's remaining budget (conserved), cannot be handed a looser
policy; the parent keeps running; a snapshot holds none of the node's keys; a snapshot with a
call in flight is refused. A snapshot outlives its parent: a fork after the parent ended shares
the escrow the parent left (never more), names parent and snapshot, and leaves the parent's
sealed log alone; `snapshot rm` and prune remove snapshots."""
import hashlib
import json
import os
import subprocess
import threading
import time

import pytest

from conftest import binary, require_root
from helpers.images import guest_images  # noqa: F401  (session fixture)
from helpers.nodeproc import NodeProc, spec_yaml, tar_bytes

BOOT_TIMEOUT = 240
RES = "  resources: {memory_mib: 384, scratch_mib: 128}\n"


@pytest.fixture
def node(tmp_path, guest_images):  # noqa: F811
    require_root()
    with NodeProc(tmp_path, driver="qemu", images_dir=guest_images, accel="tcg") as n:
        yield n


def _has_vmm_user():
    import pwd
    try:
        pwd.getpwnam("nucleus-vmm")
        return True
    except KeyError:
        return False


def running_pod(c, policy="local-dev", name=None):
    spec = spec_yaml(driver="qemu", policy=policy, timeout=900, extra=RES)
    if name:
        spec = spec.replace("kind: Pod\n", f"kind: Pod\nmetadata:\n  name: {name}\n", 1)
    r = c.create_pod(spec)
    assert r.status == 201, r
    st = c.wait_state(r.json()["id"], {"running", "failed", "exited"}, timeout=BOOT_TIMEOUT)
    assert st["state"] == "running", st
    return st["id"]


def run(c, pod, argv, stdin=None):
    args = {"argv": argv, "timeout_seconds": 60}
    if stdin is not None:
        args["stdin"] = stdin
    r = c.tool(pod, "run", args, timeout=120)
    assert r.status == 200, r
    assert r.json()["exit_code"] == 0, r.json()
    return r.json()["stdout"]


def status(c, pod):
    r = c.tool(pod, "status", {})
    assert r.status == 200, r
    return r.json()


def audit_records(node, pod):
    with open(node.audit_path(pod)) as f:
        return [json.loads(line) for line in f if line.strip()]


# What another pod's QEMU could do (they all run as the one VMM user, which owns every pod's
# vm/ dir): connect to a pod's QMP socket and wait for the monitor's greeting.
QMP_PROBE = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(float(sys.argv[2]))
try:
    data = s.recv(4096)
except socket.timeout:
    data = b""
sys.stdout.write(data.decode(errors="replace"))
"""


def qmp_probe(node, pod, seconds):
    """Start a process as the VMM user that connects to the pod's QMP socket; its stdout is
    what the monitor sent it within seconds."""
    import pwd
    vmm = pwd.getpwnam("nucleus-vmm")
    sock = node.state_dir / "pods" / pod / "vm" / "qmp.sock"
    return subprocess.Popen(["/usr/bin/python3", "-c", QMP_PROBE, str(sock), str(seconds)],
                            user=vmm.pw_uid, group=vmm.pw_gid, extra_groups=[],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


SWAP_PROBE = r"""
import os, sys
try:
    open(sys.argv[1], "rb").close()
    print("read")
except PermissionError:
    pass
try:
    os.rename(sys.argv[1], sys.argv[1] + ".swapped")
    os.rename(sys.argv[1] + ".swapped", sys.argv[1])
    print("swapped")
except PermissionError:
    print("refused")
"""


def disk_swap_probe(node, pod):
    """As the VMM user (any pod's QEMU): can the pod's scratch disk be read (its workspace), or
    renamed away (and another file put in its place, which its snapshot and its children would
    then carry)?"""
    import pwd
    vmm = pwd.getpwnam("nucleus-vmm")
    pdir = node.state_dir / "pods" / pod
    disk = pdir / "scratch.img" if (pdir / "scratch.img").exists() else pdir / "vm" / "scratch.img"
    assert disk.exists(), sorted(os.listdir(pdir))
    r = subprocess.run(["/usr/bin/python3", "-c", SWAP_PROBE, str(disk)], user=vmm.pw_uid, group=vmm.pw_gid,
                       extra_groups=[], capture_output=True, text=True, timeout=60)
    return r.stdout.strip() or r.stderr


def test_snapshot_and_fork(node):
    c = node.client()
    t_cold = time.monotonic()
    parent = running_pod(c, name="explore")
    # The node holds the parent's monitor from its boot on: another process of the VMM user
    # gets no greeting (QEMU serves one monitor client), not even while the node snapshots.
    probe = qmp_probe(node, parent, 20) if _has_vmm_user() else None
    if _has_vmm_user():
        assert disk_swap_probe(node, parent) == "refused"
    assert c.upload_workspace(parent, tar_bytes({"README.md": "from the host\n"})).status == 200
    cold_first_answer = time.monotonic() - t_cold
    assert c.tool(parent, "write", {"path": "parent.txt", "content": "written by the parent\n"}).status == 200
    # Something that lives only in guest memory: a file on the guest's tmpfs.
    assert run(c, parent, ["stat", "-f", "-c", "%T", "/tmp"]).strip() == "tmpfs"
    token = os.urandom(16).hex()
    assert run(c, parent, ["tee", "/tmp/mem-only"], stdin=token) == token
    before = status(c, parent)["budget"]
    # A per-pod secret the node holds: a credential scoped to the parent.
    r = c.request("POST", f"/v1/pods/{parent}/credentials", b"")
    assert r.status == 201, r
    cred = r.json()

    r = c.request("POST", f"/v1/pods/{parent}/snapshot", b"{}")
    assert r.status == 201, r
    snap = r.json()
    sid = snap["id"]
    assert snap["parent"] == parent and snap["state_bytes"] > 0
    sdir = node.state_dir / "snapshots" / sid
    assert sorted(os.listdir(sdir)) == ["scratch.img", "snapshot.json", "state"]
    if probe:
        out, err = probe.communicate(timeout=120)
        assert probe.returncode == 0, err
        assert "QMP" not in out, f"another process of the VMM user got the pod's monitor: {out[:200]}"

    # The snapshot holds none of the node's secrets (the node key, the audit signing key), as
    # text or as bytes: the guest never had them, and the metadata is not written from them.
    node_key_hex = (node.secrets / "node.key").read_text().strip()
    audit_key_hex = (node.secrets / "audit.key").read_text().strip()
    needles = [node_key_hex.encode(), audit_key_hex.encode(), bytes.fromhex(node_key_hex),
               bytes.fromhex(audit_key_hex)[:32], cred["secret"].encode(), bytes.fromhex(cred["secret"])]
    for name in os.listdir(sdir):
        with open(sdir / name, "rb") as f:
            data = f.read()
        for n in needles:
            assert n not in data, f"{name} holds a node secret"

    # The parent keeps running, with its state.
    assert c.get_pod(parent).json()["state"] == "running"
    assert run(c, parent, ["cat", "/tmp/mem-only"]) == token

    t_fork = time.monotonic()
    r = c.request("POST", f"/v1/pods/{parent}/fork", json.dumps({"snapshot": sid, "count": 2}).encode())
    assert r.status == 201, r
    out = r.json()
    kids = [k["id"] for k in out["children"]]
    assert len(kids) == 2 and parent not in kids and kids[0] != kids[1]
    # Children are named after the parent, numbered over its life, so a name finds one pod.
    assert sorted(k["name"] for k in out["children"]) == ["explore-f1", "explore-f2"], out
    for k in kids:
        st = c.wait_state(k, {"running", "failed", "exited"}, timeout=BOOT_TIMEOUT)
        assert st["state"] == "running", (st, c.logs(k, tail=50).text)
    r = c.tool(kids[0], "read", {"path": "parent.txt"})
    fork_first_answer = time.monotonic() - t_fork
    assert r.status == 200 and r.json()["content"] == "written by the parent\n", r
    print(f"\ncold create -> first answer {cold_first_answer:.2f}s; fork of 2 -> first answer "
          f"{fork_first_answer:.2f}s (ratio {fork_first_answer / cold_first_answer:.2f}); snapshot took "
          f"{snap['took_ms']} ms, state {snap['state_bytes'] >> 20} MiB")

    ppod = c.get_pod(parent).json()
    rnd = []
    for k in kids:
        # The parent's files and its in-memory state are there.
        assert c.tool(k, "read", {"path": "README.md"}).json()["content"] == "from the host\n"
        assert run(c, k, ["cat", "/tmp/mem-only"]) == token
        # Its own identity and deadline.
        kp = c.get_pod(k).json()
        assert kp["id"] == k and kp["deadline"] > ppod["deadline"]
        assert kp["forked_from"] == {"parent": parent, "snapshot": sid}
        s = status(c, k)
        assert s["pod_id"] == k
        # The time window restarted with the child: more time left than the older parent has.
        assert s["deadline_remaining_ms"] > status(c, parent)["deadline_remaining_ms"]
        assert s["policy_sha256"] == kp["policy_sha256"]
        rnd.append("".join(run(c, k, ["od", "-An", "-tx1", "-N32", "/dev/urandom"]).split()))
        # The guest clock is the node's now, not the snapshot's.
        guest_now = int(run(c, k, ["date", "+%s"]))
        assert abs(guest_now - time.time()) < 120
    # The parent's credential is the parent's: it signs nothing of a child.
    from helpers.nodeclient import NodeClient
    pc = NodeClient.scoped(f"http://127.0.0.1:{node.port}", cred)
    assert pc.get_pod(parent).status == 200
    assert pc.get_pod(kids[0]).status in (401, 403)
    # A reseeded CRNG: the children's randomness differs (identical memory otherwise).
    assert rnd[0] != rnd[1] and len(rnd[0]) == 64

    # Budget: each child got an equal share; the parent was charged for both; nothing was made.
    share = out["share"]["usd_micros"]
    kid_max = [status(c, k)["budget"]["max_usd_micros"] for k in kids]
    assert kid_max == [share, share]
    after = status(c, parent)["budget"]
    assert after["left_usd_micros"] + sum(kid_max) <= before["left_usd_micros"]
    assert after["left_usd_micros"] == out["parent_keeps"]["usd_micros"] >= share

    # A child's writes stay its own.
    assert c.tool(kids[0], "write", {"path": "kid0.txt", "content": "k0"}).status == 200
    assert c.tool(kids[1], "read", {"path": "kid0.txt"}).status == 404
    assert c.tool(parent, "read", {"path": "kid0.txt"}).status == 404

    # The child's audit log: its first record names the parent and the snapshot.
    first = audit_records(node, kids[0])[0]
    assert first["op"] == "pod_fork", first
    assert first["detail"]["parent"] == parent and first["detail"]["snapshot"] == sid
    ops = [rec["op"] for rec in audit_records(node, kids[0])]
    assert "reconfigure" in ops
    assert any(rec["op"] == "pod_fork" and rec.get("detail", {}).get("children") == kids
               for rec in audit_records(node, parent))

    for k in kids:
        assert c.delete_pod(k).json()["state"] == "exited"
        v = node.verify_audit(k)
        assert v.returncode == 0, v.stdout + v.stderr
    assert c.get_pod(parent).json()["state"] == "running"
    left_at_end = status(c, parent)["budget"]["left_usd_micros"]
    assert c.delete_pod(parent).json()["state"] == "exited"

    # The snapshot outlives its parent; the parent's remainder at its end is the escrow its
    # snapshots' forks share, never more than it had left.
    assert os.path.exists(sdir)
    ended = c.get_pod(parent).json()
    assert ended["snapshots"] == 1, ended
    escrow = ended["snapshot_escrow"]["usd_micros"]
    assert 0 < escrow <= left_at_end, ended
    with open(node.audit_path(parent), "rb") as f:
        sealed = hashlib.sha256(f.read()).hexdigest()
    r = c.request("POST", f"/v1/pods/{parent}/fork", json.dumps({"snapshot": sid, "count": 1}).encode())
    assert r.status == 201, r
    late = r.json()
    assert late["parent_ended"] is True
    share2 = late["share"]["usd_micros"]
    assert share2 == escrow // 2 and late["escrow_keeps"]["usd_micros"] == escrow - share2
    [k2] = [k["id"] for k in late["children"]]
    st = c.wait_state(k2, {"running", "failed", "exited"}, timeout=BOOT_TIMEOUT)
    assert st["state"] == "running", (st, c.logs(k2, tail=50).text)
    assert run(c, k2, ["cat", "/tmp/mem-only"]) == token
    assert status(c, k2)["budget"]["max_usd_micros"] == share2
    assert c.get_pod(parent).json()["snapshot_escrow"]["usd_micros"] == escrow - share2
    first = audit_records(node, k2)[0]
    assert first["op"] == "pod_fork" and first["detail"]["parent"] == parent
    assert first["detail"]["snapshot"] == sid
    # The parent's sealed log is not touched, and still verifies.
    with open(node.audit_path(parent), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == sealed
    v = node.verify_audit(parent)
    assert v.returncode == 0, v.stdout + v.stderr
    assert c.delete_pod(k2).json()["state"] == "exited"

    # Removed by id; then a fork of the ended parent says what is missing and what to do.
    r = c.request("DELETE", f"/v1/snapshots/{sid}")
    assert r.status == 200 and r.json()["removed"] == sid, r
    assert not os.path.exists(sdir)
    assert c.request("DELETE", f"/v1/snapshots/{sid}").status == 404
    r = c.request("POST", f"/v1/pods/{parent}/fork", b'{"count": 1}')
    assert r.status == 409 and "no snapshot" in r.json()["error"], r
    assert f"nucleus snapshot {parent}" in r.json()["error"], r
    node.assert_clean()


def test_snapshot_refused_with_a_call_in_flight(node):
    c = node.client()
    pod = running_pod(c)
    result = {}

    def call():
        result["r"] = c.tool(pod, "run", {"argv": ["sleep", "8"], "timeout_seconds": 60}, timeout=120)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(2)
    r = c.request("POST", f"/v1/pods/{pod}/snapshot", b"")
    t.join(120)
    assert r.status == 409 and r.json()["kind"] == "conflict", r
    assert "in flight" in r.json()["error"] or "running" in r.json()["error"]
    assert result["r"].status == 200
    # An unknown snapshot is not found; a bad count is refused before anything starts.
    r = c.request("POST", f"/v1/pods/{pod}/fork", b'{"snapshot": "00000000-0000-4000-8000-000000000000"}')
    assert r.status == 404, r
    r = c.request("POST", f"/v1/pods/{pod}/fork", b'{"count": 0}')
    assert r.status == 400, r
    assert c.get_pod(pod).json()["state"] == "running"

    # The CLI verbs: snapshot prints the id, --list shows it, fork prints the children.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(node.base), "LANG": "C.UTF-8",
           "XDG_CONFIG_HOME": str(node.base / "config"), "XDG_STATE_HOME": str(node.base / "state"),
           "NUCLEUS_NODE_URL": f"http://127.0.0.1:{node.port}",
           "NUCLEUS_NODE_KEY_FILE": str(node.secrets / "node.key")}

    def cli(*args):
        p = subprocess.run([str(binary("nucleus")), *args], env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout

    sid = cli("snapshot", pod).strip()
    assert len(sid) == 36
    assert sid in cli("snapshot", "--list", pod)
    [child] = cli("fork", pod, "-n", "1", "--snapshot", sid).split()
    assert c.wait_state(child, {"running", "failed", "exited"}, timeout=BOOT_TIMEOUT)["state"] == "running"
    assert c.tool(child, "status", {}).json()["pod_id"] == child
    sid2 = cli("snapshot", pod).strip()
    c.delete_pod(child)
    c.delete_pod(pod)
    # Snapshots outlive the pod: rm removes one, prune the others of ended pods (then the
    # pod's record can go too).
    assert cli("snapshot", "rm", sid2).strip() == f"removed snapshot {sid2}"
    assert not (node.state_dir / "snapshots" / sid2).exists()
    assert (node.state_dir / "snapshots" / sid).exists()
    assert c.get_pod(pod).json()["snapshots"] == 1
    out = json.loads(cli("prune", "--output", "json"))
    assert out["snapshots"] == [sid] and pod in out["pods"], out
    assert not (node.state_dir / "snapshots" / sid).exists()
    node.assert_clean()


def test_fork_drops_the_parents_approvals(node):
    """An approval given to the parent is not the child's: its proxy starts with none, and the
    parent's token (bound to the parent's id) is refused for the child; the parent keeps it."""
    c = node.client()
    parent = running_pod(c, policy="default")
    r = c.tool(parent, "write", {"path": "a.txt", "content": "1"})
    assert r.status == 403 and r.json()["kind"] == "approval_required", r
    tok = node.mint_approval(parent, "write_files", uses=5)
    assert c.approve(parent, {"token": tok}).status == 200
    assert c.tool(parent, "write", {"path": "a.txt", "content": "1"}).status == 200
    r = c.request("POST", f"/v1/pods/{parent}/fork", b'{"count": 1}')
    assert r.status == 201, r
    [kid] = [k["id"] for k in r.json()["children"]]
    assert c.wait_state(kid, {"running", "failed", "exited"}, timeout=BOOT_TIMEOUT)["state"] == "running"
    assert c.tool(kid, "read", {"path": "a.txt"}).json()["content"] == "1"
    r = c.tool(kid, "write", {"path": "b.txt", "content": "2"})
    assert r.status == 403 and r.json()["kind"] == "approval_required", r
    r = c.approve(kid, {"token": tok})
    assert r.status == 403 and r.json()["detail"] == "wrong_pod", r
    assert c.tool(parent, "write", {"path": "c.txt", "content": "3"}).status == 200
    c.delete_pod(kid)
    c.delete_pod(parent)
    node.assert_clean()


def test_fork_of_a_networked_pod(tmp_path, guest_images):  # noqa: F811
    """A child of a pod with a network gets its own namespace, tap and address block, and its
    guest re-addresses the NIC at reconfigure: it reaches an allowed lab host (its namespace's
    ruleset drops anything not from the child's own address), a denied one stays refused, and
    the parent keeps its network."""
    import hashlib
    import ipaddress
    import random
    import shutil
    import tempfile
    from helpers.netlab import NetLab, host_ipv4_addrs, netns_exec, netns_list
    require_root()
    if not shutil.which("dnsmasq"):
        pytest.skip("needs dnsmasq")
    used = host_ipv4_addrs()
    pool = next(f"10.{a}.{b}.0/24" for a, b in ((random.randrange(100, 250), random.randrange(256))
                                                 for _ in range(200))
                if not any(u.startswith(f"10.{a}.{b}.") for u in used))
    lab = NetLab(tmp_path, pool)
    www = tempfile.mkdtemp(prefix="nucleus-lab-www-")
    with open(os.path.join(www, "hello.txt"), "w") as f:
        f.write("hello from the lab\n")
    lab.serve_files(lab.web, 80, www)
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[net]\npool = "{pool}"\ndns_upstream = "{lab.dns_addr}"\n')
    short = lambda pod: hashlib.sha256(pod.encode()).hexdigest()[:10]  # noqa: E731
    allowed = f"www.{lab.ZONE}"

    def fetch(c, pod, url):
        r = c.tool(pod, "web_fetch", {"url": url}, timeout=180)
        return r.status, r.json()

    try:
        with NodeProc(tmp_path, driver="qemu", images_dir=guest_images, accel="tcg",
                      extra_args=["--config", str(cfg)]) as node:
            c = node.client()
            r = c.create_pod(spec_yaml(driver="qemu", policy="web_research", timeout=900,
                                       extra="  resources: {memory_mib: 256, scratch_mib: 64}\n"
                                             f'  network:\n    dns_allow: ["{allowed}"]\n'))
            assert r.status == 201, r
            parent = r.json()["id"]
            st = c.wait_state(parent, {"running", "failed", "exited"}, timeout=BOOT_TIMEOUT)
            assert st["state"] == "running", (st, c.logs(parent, tail=50).text)
            r = c.request("POST", f"/v1/pods/{parent}/fork", b'{"count": 1}')
            assert r.status == 201, r
            [kid] = [k["id"] for k in r.json()["children"]]
            st = c.wait_state(kid, {"running", "failed", "exited"}, timeout=BOOT_TIMEOUT)
            assert st["state"] == "running", (st, c.logs(kid, tail=50).text)
            kp, pp = c.get_pod(kid).json(), c.get_pod(parent).json()
            assert kp["netns"] == f"nucleus-{short(kid)}" != pp["netns"], (kp, pp)
            assert kp["netns"] in netns_list() and pp["netns"] in netns_list()
            # The child's address is in its own block, not the parent's: its bridge's /30.
            addrs = json.loads(netns_exec(kp["netns"], "ip", "-j", "-4", "addr").stdout)
            [gw] = [a for l in addrs if l["ifname"] == f"nub-{short(kid)}" for a in l["addr_info"]]
            child_guest = str(ipaddress.ip_address(gw["local"]) + 1)
            status, res = fetch(c, kid, f"http://{allowed}/hello.txt")
            assert status == 200 and res.get("body") == "hello from the lab\n", res
            # Anything from another source is dropped in the child's namespace, so the answer
            # came to the child's own address; the guest says so too.
            neigh = netns_exec(kp["netns"], "ip", "-4", "neigh").stdout
            assert child_guest in neigh, neigh
            status, res = fetch(c, kid, f"http://secret.{lab.ZONE}:{lab.port}/x")
            assert status != 200 and res.get("kind") == "network_denied", res
            recs = audit_records(node, kid)
            rec = [x for x in recs if x["op"] == "reconfigure"]
            assert rec and rec[0]["decision"] == "allow", recs
            # The parent keeps its network.
            status, res = fetch(c, parent, f"http://{allowed}/hello.txt")
            assert status == 200 and res.get("body") == "hello from the lab\n", res
            c.delete_pod(kid)
            c.delete_pod(parent)
            node.assert_clean()
    finally:
        shutil.rmtree(www, ignore_errors=True)
        lab.close()
