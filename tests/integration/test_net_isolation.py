# SPDX-License-Identifier: Apache-2.0
"""Network isolation at library level, without VMs.

net-test-helper sets up a real pod network (namespace, bridge, tap, veth, NAT, nftables,
dnsmasq); a namespace attached to the pod's bridge plays the guest; NetLab is the "internet"
(HTTP/UDP echo servers and an authoritative DNS server that logs every query it receives).
Every "dropped" check expects a timeout (the packet vanished), never a refusal (which would mean
it arrived); every dropped case has a reachable twin, so the tests can fail.
"""
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import threading

import pytest

from conftest import binary, require_root
from helpers.netlab import (Guest, NetLab, PodNet, leftovers, host_ipv4_addrs, host_routes, netns_exec, netns_list,
                            sh)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, nftables)")


def _free_pool():
    used = host_ipv4_addrs()
    routes = json.dumps(host_routes())
    for _ in range(200):
        a, b = random.randrange(100, 250), random.randrange(0, 256)
        pfx = f"10.{a}.{b}."
        if not any(u.startswith(pfx) for u in used) and f'"10.{a}.{b}.' not in routes:
            return f"10.{a}.{b}.0/24"
    pytest.skip("no free 10.x.y.0/24 pool")


@pytest.fixture(scope="module")
def pool():
    require_root()
    return _free_pool()


@pytest.fixture(scope="module")
def lab(pool, tmp_path_factory):
    with NetLab(tmp_path_factory.mktemp("netlab"), pool) as lab:
        yield lab


@pytest.fixture
def make_pod(pool, lab, tmp_path):
    helper = binary("net-test-helper")
    made = []

    def make(spec, state_dir=None):
        sd = state_dir or (tmp_path / "state")
        p = PodNet(helper, sd, pool, f"test-{os.getpid()}-{random.randrange(1 << 30)}", spec,
                   dns_upstream=lab.dns_addr)
        g = Guest(p.info)
        made.append((p, g, sd))
        return p, g

    yield make
    results = []
    for p, g, sd in made:
        g.close()
        results.append(p.teardown())
    assert results == [{"teardown": 0}] * len(made)
    for p, g, sd in made:
        assert leftovers(p.info, sd) == []


def dropped(r):
    return not r["ok"] and r.get("error") == "timeout"


def test_allowed_cidr_port_reachable_everything_else_dropped(lab, make_pod):
    _, g = make_pod({"allow": [f"{lab.web}/32:{lab.port}/tcp"]})
    r = g.tcp(lab.web, lab.port)
    assert r["ok"] and f"nucleus-lab {lab.web}" in r["body"]
    assert dropped(g.tcp(lab.web_unresolved, lab.port))    # other address
    assert dropped(g.tcp(lab.web, lab.port + 1))           # other port (no listener: would be RST)
    assert dropped(g.udp(lab.web, lab.port))               # other protocol
    assert not g.ping(lab.web)                             # ICMP
    assert dropped(g.tcp(lab.dns_addr, 53))
    assert dropped(g.udp(lab.dns_addr, 53))


def test_entry_without_port_allows_all_protocols(lab, make_pod):
    _, g = make_pod({"allow": [f"{lab.web}/32"]})
    assert g.tcp(lab.web, lab.port)["ok"]
    assert g.udp(lab.web, lab.port)["ok"]
    assert g.ping(lab.web)
    assert dropped(g.udp(lab.web_other, lab.port))
    assert not g.ping(lab.web_other)


def test_deny_wins_over_allow(lab, make_pod):
    _, g = make_pod({"allow": [lab.services_net], "deny": [f"{lab.web}/32"]})
    assert dropped(g.tcp(lab.web, lab.port))
    assert g.tcp(lab.web_unresolved, lab.port)["ok"]


def test_dns_allowlist(lab, make_pod):
    p, g = make_pod({"dns_allow": [f"www.{lab.ZONE}"]})
    # Before any lookup nothing in the zone is reachable.
    assert dropped(g.tcp(lab.web, lab.port))
    ans = g.dns(f"www.{lab.ZONE}")
    assert ans["ok"] and ans["rcode"] == "NOERROR" and ans["addrs"] == [lab.web]
    r = g.tcp(lab.web, lab.port)
    assert r["ok"], r
    # dnsmasq's additions to the DNS set are not drift.
    assert p.drift()["drift"] == 0

    # A name not on the list: no real answer, and the query never reaches the lab server.
    for name in (f"secret.{lab.ZONE}", f"deep.www.{lab.ZONE}", "exfil-6e75636c657573.evil.example", "localhost"):
        a = g.dns(name)
        assert not a["ok"] or (a["rcode"] in ("REFUSED", "NXDOMAIN") and a["addrs"] == []), (name, a)
    for q in (16, 28):  # TXT and AAAA for a forbidden name
        a = g.dns(f"secret.{lab.ZONE}", qtype=q)
        assert not a["ok"] or a["addrs"] == []
    asked = lab.dns_queries()
    assert f"www.{lab.ZONE}" in asked
    for name in (f"secret.{lab.ZONE}", f"deep.www.{lab.ZONE}", "exfil-6e75636c657573.evil.example"):
        assert name not in asked
    # Addresses of the zone that were never resolved stay closed.
    assert dropped(g.tcp(lab.web_other, lab.port))
    assert dropped(g.tcp(lab.web_unresolved, lab.port))
    # The guest cannot use the lab resolver directly either (no tunnel around dnsmasq).
    assert dropped(g.udp(lab.dns_addr, 53))


def test_dns_wildcard(lab, make_pod):
    _, g = make_pod({"dns_allow": [f"*.www.{lab.ZONE}"]})
    a = g.dns(f"deep.www.{lab.ZONE}")
    assert a["ok"] and a["addrs"] == [lab.web]
    before = lab.dns_queries().count(f"www.{lab.ZONE}")
    b = g.dns(f"www.{lab.ZONE}")  # "*." does not include the name itself
    assert not b["ok"] or b["addrs"] == []
    assert lab.dns_queries().count(f"www.{lab.ZONE}") == before  # and it was not forwarded
    assert g.tcp(lab.web, lab.port)["ok"]


def test_dns_wildcard_budget_bounds_data_names(lab, make_pod):
    """A wildcard entry is not a tunnel: of 50 data-carrying names under it, only the first
    `dns_wildcard_names` (default 16) reach the upstream; the rest are REFUSED by the pod's DNS
    filter, never forwarded, and each refusal is reported (audit event + metric in the node)."""
    p, g = make_pod({"dns_allow": [f"*.www.{lab.ZONE}"]})
    names = [f"x{i:02d}-{secrets.token_hex(12)}.www.{lab.ZONE}" for i in range(50)]
    answers = [g.dns(n) for n in names]
    asked = lab.dns_queries()
    reached = [n for n in names if n in asked]
    assert reached == names[:16], (len(reached), reached)
    for n, a in zip(names[16:], answers[16:]):  # (the lab answers the others REFUSED itself)
        assert a["ok"] and a["rcode"] == "REFUSED" and a["addrs"] == [], (n, a)
    ev = [e for e in p.dns_events() if e["reason"] == "wildcard_budget"]
    assert [e["name"] for e in ev] == names[16:]
    assert all(e["entry"] == f"*.www.{lab.ZONE}" and e["limit"] == 16 for e in ev)
    # A name admitted earlier still resolves (in any case); a new name stays refused.
    before = lab.dns_queries().count(names[0])
    assert g.dns(names[0].upper())["ok"]
    assert lab.dns_queries().count(names[0]) == before + 1
    late = f"late-{secrets.token_hex(8)}.www.{lab.ZONE}"
    assert g.dns(late)["rcode"] == "REFUSED"
    assert late not in lab.dns_queries()


def test_dns_wildcard_budget_per_pod(lab, make_pod):
    _, g = make_pod({"dns_allow": [f"*.www.{lab.ZONE}"], "dns_wildcard_names": 2})
    names = [f"y{i}-{secrets.token_hex(8)}.www.{lab.ZONE}" for i in range(6)]
    for n in names:
        g.dns(n)
    asked = lab.dns_queries()
    assert [n for n in names if n in asked] == names[:2]


def test_dns_over_tcp_goes_through_the_same_filter(lab, make_pod):
    """The filter also serves DNS over TCP (for answers cut with TC): same rules, same budget."""
    p, g = make_pod({"dns_allow": [f"www.{lab.ZONE}", f"*.api.{lab.ZONE}"], "dns_wildcard_names": 1})
    a = g.dns(f"WwW.{lab.ZONE}", tcp=True)
    assert a["ok"] and a["rcode"] == "NOERROR" and a["addrs"] == [lab.web], a
    start = len(lab.dns_queries())
    assert g.dns(f"secret.{lab.ZONE}", tcp=True)["rcode"] == "REFUSED"
    assert g.dns(f"www.{lab.ZONE}", qtype=16, tcp=True)["rcode"] == "REFUSED"
    first, second = (f"t{i}-{secrets.token_hex(8)}.api.{lab.ZONE}" for i in range(2))
    g.dns(first, tcp=True)
    assert g.dns(second)["rcode"] == "REFUSED"          # the budget is shared by UDP and TCP
    assert g.dns(second, tcp=True)["rcode"] == "REFUSED"
    new = lab.dns_queries()[start:]
    assert first in new and second not in new and f"secret.{lab.ZONE}" not in new, new


def test_dns_case_normalized_before_forwarding(lab, make_pod):
    """Letter case carries no data upstream: every spelling of an allowed name reaches the
    upstream lower-cased, and the guest's own resolver (glibc) accepts the answers."""
    p, g = make_pod({"dns_allow": [f"www.{lab.ZONE}"]})
    variants = ["WWW.LAB.TEST", "wWw.LaB.tEsT", "Www.Lab.Test", "www.lab.TEST", "wWW.lAB.TeST"]
    start = len(lab.dns_queries())
    for v in variants:
        a = g.dns(v)
        assert a["ok"] and a["addrs"] == [lab.web], (v, a)
    new = lab.dns_queries()[start:]
    assert new and all(n == f"www.{lab.ZONE}" for n in new), new
    # Only A/AAAA pass; the types that carry more (TXT, ANY, NULL) are refused before dnsmasq.
    for qtype in (16, 255, 10):
        a = g.dns(f"www.{lab.ZONE}", qtype=qtype)
        assert a["ok"] and a["rcode"] == "REFUSED", (qtype, a)
    assert {e["reason"] for e in p.dns_events()} == {"type"}
    # glibc's stub resolver in the guest accepts an answer to a mixed-case name.
    etc = f"/etc/netns/{g.ns}"
    os.makedirs(etc, exist_ok=True)
    try:
        with open(f"{etc}/resolv.conf", "w") as f:
            f.write(f"nameserver {g.dns_server}\noptions timeout:2 attempts:1\n")
        r = subprocess.run(["ip", "netns", "exec", g.ns, "getent", "ahostsv4", "WwW.LaB.TeSt"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and lab.web in r.stdout, (r.returncode, r.stdout, r.stderr)
    finally:
        shutil.rmtree(etc, ignore_errors=True)


def test_dns_cname_target_opens(lab, make_pod):
    """alias.lab.test is a CNAME for www.lab.test: the final addresses of an allowed name open."""
    _, g = make_pod({"dns_allow": [f"alias.{lab.ZONE}"]})
    a = g.dns(f"alias.{lab.ZONE}")
    assert a["ok"] and lab.web in a["addrs"], a
    assert g.tcp(lab.web, lab.port)["ok"]
    b = g.dns(f"www.{lab.ZONE}")  # the target name itself is still not on the list
    assert not b["ok"] or b["addrs"] == []


def test_dns_rebinding_to_private_address_stays_closed(lab, make_pod):
    # rebind.lab.test answers 10.77.0.1, where the lab listens (routed for pod traffic only).
    _lab_extra_address(lab, "10.77.0.1")
    _, g = make_pod({"dns_allow": [f"rebind.{lab.ZONE}"]})
    g.dns(f"rebind.{lab.ZONE}")  # whatever the answer, the address must stay closed
    assert dropped(g.tcp("10.77.0.1", lab.port))
    _, g2 = make_pod({"allow": [f"10.77.0.1/32:{lab.port}/tcp"]})  # control: reachable when named
    assert g2.tcp("10.77.0.1", lab.port)["ok"]


def _lab_extra_address(lab, addr):
    """Make the lab serve on addr too, routed from the pod pool only."""
    sh("ip", "-n", lab.ns, "addr", "add", f"{addr}/32", "dev", "lo", check=False)
    sh("ip", "route", "replace", f"{addr}/32", "via", lab.lab_link_addr, "dev", lab.hveth, "onlink",
       "table", lab.table)
    lab.serve_on(addr)


@pytest.fixture
def host_listener():
    """A TCP listener on every host address (what a careless host service looks like)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 0))
    s.listen(16)
    stop = threading.Event()

    def serve():
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = s.accept()
                c.settimeout(2)
                try:
                    c.recv(4096)  # read the request first: closing with unread data sends RST
                except OSError:
                    pass
                c.sendall(b"HTTP/1.0 200 OK\r\n\r\nhost-service\n")
                c.close()
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield s.getsockname()[1]
    stop.set()
    t.join()
    s.close()


def test_metadata_and_host_addresses_unreachable(lab, make_pod, host_listener, pool):
    # The lab also plays a cloud metadata service, routed for pod traffic only.
    _lab_extra_address(lab, "169.254.169.254")
    p, g = make_pod({"allow": ["0.0.0.0/0"]})
    assert g.tcp(lab.web, lab.port)["ok"]  # the world is open...
    assert dropped(g.tcp("169.254.169.254", lab.port))  # ...but not metadata
    # Positive control: the lab listener on the host is reachable from elsewhere.
    r = netns_exec(lab.ns, "/usr/bin/python3", "-c",
                   f"import socket; s=socket.create_connection(('{lab.host_addr}', {host_listener}), 2); "
                   f"s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); print(s.recv(99))")
    assert b"host-service".decode() in r.stdout
    targets = set(host_ipv4_addrs()) - {"127.0.0.1"}
    assert lab.host_addr in targets
    for a in sorted(targets):
        assert dropped(g.tcp(a, host_listener)), a
    assert dropped(g.tcp(p.info["gateway"], host_listener))  # the namespace itself
    assert dropped(g.tcp(p.info["gateway"], 22))

    # With an explicit allow entry the metadata address opens (proves the drop above is policy).
    _, g2 = make_pod({"allow": ["0.0.0.0/0", f"169.254.169.254/32:{lab.port}/tcp"]})
    assert g2.tcp("169.254.169.254", lab.port)["ok"]


def test_pods_cannot_reach_each_other(lab, make_pod):
    pa, ga = make_pod({"allow": ["0.0.0.0/0", "10.0.0.0/8"]})
    pb, gb = make_pod({"allow": ["0.0.0.0/0"]})
    assert pa.info["guest_addr"] != pb.info["guest_addr"]
    srv = subprocess.Popen(["ip", "netns", "exec", gb.ns, "/usr/bin/python3", "-c",
                            "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 8099)); s.listen(); time.sleep(30)"])
    try:
        assert dropped(ga.tcp(pb.info["guest_addr"], 8099))
        assert dropped(ga.tcp(pb.info["gateway"], 53))
    finally:
        srv.kill()
        srv.wait()


def test_drift_in_namespace_detected(lab, make_pod):
    p, g = make_pod({"allow": [f"{lab.web}/32:{lab.port}/tcp"], "dns_allow": [f"www.{lab.ZONE}"]})
    assert p.drift()["drift"] == 0
    assert dropped(g.tcp(lab.web_other, lab.port))
    netns_exec(p.info["netns"], "nft", "insert", "rule", "inet", "nucleus", "forward", "accept")
    assert g.tcp(lab.web_other, lab.port)["ok"]  # the tampering really opened egress
    d = p.drift()
    assert d["drift"] == 1 and "ruleset changed" in d["detail"]


def test_drift_monitor_reports_within_period(lab, pool, tmp_path):  # the drift monitor thread
    import time
    sd = tmp_path / "state"
    p = PodNet(binary("net-test-helper"), sd, pool, f"mon-{os.getpid()}", {"dns_allow": [f"www.{lab.ZONE}"]},
               dns_upstream=lab.dns_addr, monitor_ms=300)
    g = Guest(p.info)
    try:
        assert g.dns(f"www.{lab.ZONE}")["addrs"] == [lab.web]  # dnsmasq fills the set: not drift
        assert p.wait_event(1.5) is None
        t0 = time.monotonic()
        netns_exec(p.info["netns"], "nft", "add", "rule", "inet", "nucleus", "output", "accept")
        ev = p.wait_event(5)
        elapsed = time.monotonic() - t0
        assert ev and ev["killed"] == "network policy drift" and ev["result"] == 1, ev
        assert elapsed < 0.3 + 1.5, elapsed
    finally:
        g.close()
        assert p.teardown() == {"teardown": 0}  # joins the (finished) monitor
    assert leftovers(p.info, sd) == []


def test_drift_of_host_table_detected(lab, make_pod):
    p, _ = make_pod({"allow": [f"{lab.web}/32"]})
    short = p.info["tap"].split("-", 1)[1]
    sh("nft", "flush", "chain", "inet", f"nucleus_{short}", "input")
    d = p.drift()
    assert d["drift"] == 1 and "host table" in d["detail"]


def test_drift_extra_table_detected(lab, make_pod):
    p, _ = make_pod({"allow": [f"{lab.web}/32"]})
    netns_exec(p.info["netns"], "nft", "add", "table", "ip", "sneaky")
    assert p.drift()["drift"] == 1


@pytest.fixture
def host_listener6():
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::", 0))
    s.listen(16)
    s.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = s.accept()
                c.settimeout(2)
                try:
                    c.recv(4096)  # read the request first: closing with unread data sends RST
                except OSError:
                    pass
                c.sendall(b"HTTP/1.0 200 OK\r\n\r\nhost-service6\n")
                c.close()
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield s.getsockname()[1]
    stop.set()
    t.join()
    s.close()


def test_ipv6_dropped_even_when_plumbed_by_hand(lab, make_pod, host_listener6):
    """The pod gets no IPv6; enable it by hand on every hop and the v6 policy still drops."""
    p, g = make_pod({"allow": ["0.0.0.0/0"]})
    ns, short = p.info["netns"], p.info["tap"].split("-", 1)[1]
    pre = f"2001:db8:{random.randrange(1, 0xffff):x}"
    for conf in ("all", "default", f"nub-{short}", f"nun-{short}"):
        netns_exec(ns, "sysctl", "-qw", f"net.ipv6.conf.{conf}.disable_ipv6=0")
    netns_exec(ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    netns_exec(g.ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0")
    sh("sysctl", "-qw", f"net.ipv6.conf.{p.info['host_veth']}.disable_ipv6=0")
    sh("ip", "-6", "addr", "add", f"{pre}:0::1/64", "dev", p.info["host_veth"], "nodad")
    sh("ip", "-6", "route", "add", f"{pre}:1::/64", "via", f"{pre}:0::2", "dev", p.info["host_veth"])
    sh("ip", "-n", ns, "-6", "addr", "add", f"{pre}:0::2/64", "dev", f"nun-{short}", "nodad")
    sh("ip", "-n", ns, "-6", "addr", "add", f"{pre}:1::1/64", "dev", f"nub-{short}", "nodad")
    sh("ip", "-n", ns, "-6", "route", "add", "default", "via", f"{pre}:0::1")
    sh("ip", "-n", g.ns, "-6", "addr", "add", f"{pre}:1::2/64", "dev", g.gveth, "nodad")
    sh("ip", "-n", g.ns, "-6", "route", "add", "default", "via", f"{pre}:1::1")
    target = f"{pre}:0::1"

    # Not through: a silent drop, or the guest giving up on neighbour discovery (the namespace's
    # input policy drops ICMPv6 too).
    def blocked(r):
        return not r["ok"] and r.get("error") in ("timeout", "No route to host")

    assert blocked(g.tcp(target, host_listener6))
    # Without the host table's input drop, the namespace's IPv6 policy alone still drops it.
    sh("nft", "flush", "chain", "inet", f"nucleus_{short}", "input")
    assert blocked(g.tcp(target, host_listener6))
    # Control: without the namespace's table too, the path is open (so the drops were policy).
    netns_exec(ns, "nft", "delete", "table", "inet", "nucleus")
    r = g.tcp(target, host_listener6)
    assert r["ok"] and "host-service6" in r["body"], r


def test_tap_opens_in_namespace(lab, make_pod):
    p, _ = make_pod({"allow": [f"{lab.web}/32"]})
    assert p._cmd("tap")["tap_fd"] >= 0


def test_teardown_and_stale_cleanup_leave_nothing(lab, pool, tmp_path):
    helper = binary("net-test-helper")
    sd = tmp_path / "state"
    p = PodNet(helper, sd, pool, f"stale-{os.getpid()}", {"dns_allow": [f"www.{lab.ZONE}"]},
               dns_upstream=lab.dns_addr)
    assert leftovers(p.info, sd) != []  # the checker sees a live pod
    p.crash()                           # node dies: dnsmasq, namespace, links, table stay
    left = leftovers(p.info, sd)
    assert any(x.startswith("process") for x in left) and any(x.startswith("netns") for x in left)
    r = sh(str(helper), "cleanup", "--state-dir", str(sd))
    assert json.loads(r.stdout)["cleaned"] == 1
    assert leftovers(p.info, sd) == []


def test_cleanup_pod_by_id_leaves_nothing(lab, pool, tmp_path):
    """net_cleanup_pod (the node's restart path, by the ids of pods it had live): everything of
    that pod goes, even when its allocation record was lost; another pod is not touched."""
    helper = binary("net-test-helper")
    sd = tmp_path / "state"
    spec = {"allow": [f"{lab.web}/32:{lab.port}/tcp"], "dns_allow": [f"www.{lab.ZONE}"]}
    victim = PodNet(helper, sd, pool, f"gone-{os.getpid()}", spec, dns_upstream=lab.dns_addr)
    other = PodNet(helper, tmp_path / "other", pool, f"other-{os.getpid()}", spec, dns_upstream=lab.dns_addr)
    try:
        victim.crash()
        for a in os.listdir(sd / "alloc"):  # the record is gone; the names derive from the id
            os.unlink(sd / "alloc" / a)
        left = leftovers(victim.info, sd)
        assert any(x.startswith("process") for x in left) and any(x.startswith("netns") for x in left), left
        r = sh(str(helper), "cleanup-pod", "--state-dir", str(sd), "--pod-id", victim.pod_id)
        assert json.loads(r.stdout)["found"] == 1
        assert leftovers(victim.info, sd) == []
        r = sh(str(helper), "cleanup-pod", "--state-dir", str(sd), "--pod-id", victim.pod_id)
        assert json.loads(r.stdout)["found"] == 0
        assert other.info["netns"] in netns_list() and other.drift()["drift"] == 0
    finally:
        other.teardown()
    assert leftovers(other.info, tmp_path / "other") == []


def test_invalid_spec_creates_nothing(pool, tmp_path):
    helper = binary("net-test-helper")
    r = sh(str(helper), "pod", "--state-dir", str(tmp_path), "--pool", pool, "--pod-id", "bad",
           "--spec", json.dumps({"allow": ["10.0.0.1/8"]}), check=False)
    out = json.loads(r.stdout)
    assert r.returncode == 2 and out["kind"] == "invalid_request" and "network.allow[0]" in out["error"]
    assert not os.path.exists(tmp_path / "alloc") or os.listdir(tmp_path / "alloc") == []


def test_pool_exhausted(tmp_path):
    require_root()
    a, b = _free_pool().split(".")[1:3]
    pool = f"10.{a}.{b}.0/26"  # 8 blocks of /29
    (tmp_path / "alloc").mkdir(mode=0o700)
    for i in range(8):
        (tmp_path / "alloc" / str(i)).write_text(f"other-{i}\n")
    r = sh(str(binary("net-test-helper")), "pod", "--state-dir", str(tmp_path), "--pool", pool, "--pod-id",
           "exhaust", "--spec", json.dumps({"allow": ["203.0.113.1"]}), check=False)
    assert r.returncode == 1 and "pool exhausted" in json.loads(r.stdout)["error"], r.stdout
    assert sorted(os.listdir(tmp_path / "alloc")) == sorted(str(i) for i in range(8))


def test_doctor(tmp_path):
    require_root()
    r = sh(str(binary("net-test-helper")), "doctor")
    checks = {c["name"]: c for c in json.loads(r.stdout)}
    for name in ("nftables", "dnsmasq", "dnsmasq-nftset", "iproute2", "pool", "ip-forward"):
        assert checks[name]["ok"], checks[name]
    # The node opens each tap as root and hands the VMM the fd: any mode of the device works.
    assert checks["tun"]["ok"] == os.path.exists("/dev/net/tun"), checks["tun"]
    if (os.stat("/dev/net/tun").st_mode & 0o006) != 0o006:
        assert "passes the VMM the fd" in checks["tun"]["detail"], checks["tun"]
