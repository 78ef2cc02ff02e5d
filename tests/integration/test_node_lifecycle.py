# SPDX-License-Identifier: Apache-2.0
"""Issue 16, node side, with the local driver: the sandbox dies with its pod (even a hung,
stopped proxy), the node raises its open-files limit, ended pods release their fds, leases,
the node authenticates its answers, idle connections cannot lock clients out, and audit
records are written before a call reaches the guest."""
import json
import os
import signal
import threading
import time

import pytest

from conftest import require_root
from helpers.nodeproc import NodeProc, spec_yaml, tar_bytes

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")


@pytest.fixture
def node(tmp_path):
    require_root()
    with NodeProc(tmp_path, driver="local") as n:
        yield n


def running_pod(c, **kw):
    r = c.create_pod(spec_yaml(**kw))
    assert r.status == 201, r
    pod = r.json()["id"]
    st = c.wait_state(pod, {"running", "failed", "exited"}, timeout=60)
    assert st["state"] == "running", (st.get("reason"), st)
    return pod


def ppid_map():
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # field 4 (ppid) after the ")" that ends the command name
        out[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def descendants(roots):
    m = ppid_map()
    found, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        for child, parent in m.items():
            if parent == p and child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_hung_proxy_dies_with_its_pod(node):
    """A stopped (hung) proxy and the agent command it runs are gone once the pod ends: bwrap
    runs with --die-with-parent, so killing bwrap takes the whole PID namespace."""
    c = node.client()
    pod = running_pod(c, policy="local-dev")
    bwraps = node.processes_mentioning_state()
    assert bwraps
    result = {}

    def call():
        result["r"] = c.tool(pod, "run", {"argv": ["sleep", "300"], "timeout_seconds": 280}, timeout=120)

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tree = descendants(bwraps)
        if any(cmdline(p).startswith("sleep 300") for p in tree):
            break
        time.sleep(0.1)
    tree = descendants(bwraps)
    proxies = [p for p in tree if "nucleus-tool-proxy" in cmdline(p)]
    assert proxies and any(cmdline(p).startswith("sleep 300") for p in tree), tree
    for p in proxies:
        os.kill(p, signal.SIGSTOP)  # the proxy hangs: it will never answer or exit by itself
    assert c.delete_pod(pod).status in (200, 202, 204)
    c.wait_state(pod, {"exited", "failed"}, timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(p) for p in tree):
        time.sleep(0.1)
    assert not [p for p in tree if alive(p)], [(p, cmdline(p)) for p in tree if alive(p)]
    t.join(60)
    assert not t.is_alive()


def test_open_files_limit_raised(node):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with open(f"/proc/{node.proc.pid}/limits") as f:
        line = next(x for x in f if x.startswith("Max open files"))
    fields = line.split()
    node_soft, node_hard = fields[3], fields[4]
    assert node_soft == node_hard, line
    # reported (metrics; doctor reads it there)
    if node_soft != "unlimited":
        assert node.metric("nucleus_node_open_files_limit") == float(node_soft)
    assert 0 < node.metric("nucleus_node_open_fds") < 100


# ---- the client authenticates the node ---------------------------------------------------

def test_answers_carry_the_node_mac(node):
    c = node.client()
    r = c.list_pods()
    assert r.status == 200 and r.mac_ok, r.headers
    # refusals too: a 401 from the real node is told apart from one by a squatter
    r = c.request("GET", "/v1/pods", signed_headers={**c.request("GET", "/v1/pods").sent_headers})
    assert r.status == 401 and r.mac_ok
    # a MAC for one answer does not fit another (another key)
    other = node.client()
    other.key = os.urandom(32)
    r = other.list_pods()
    assert r.status == 401 and not r.mac_ok


def _squatter(answer_mac_key=None):
    """An HTTP server on a free port that answers every request 200 {"pods": []} like a node
    would, without the node key (or with another key)."""
    import http.server
    import json as _json
    from helpers.nodeclient import response_mac_header

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = _json.dumps({"pods": [], "status": "ok"}).encode()
            self.send_response(200)
            if answer_mac_key:
                for k, v in response_mac_header(answer_mac_key, self.headers, 200, body).items():
                    self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_DELETE = do_PUT = do_GET

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.mark.parametrize("mac_key", [None, os.urandom(32)], ids=["no-mac", "other-key"])
def test_clients_refuse_a_squatter(tmp_path, mac_key):
    """A program on the node's port without the node key: the CLI (src/lib/client) refuses its
    answers, whatever they say."""
    from conftest import binary
    import subprocess
    keyfile = tmp_path / "node.key"
    keyfile.write_text(os.urandom(32).hex() + "\n")
    keyfile.chmod(0o600)
    srv = _squatter(mac_key)
    try:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
               "NUCLEUS_NODE_URL": f"http://127.0.0.1:{srv.server_address[1]}",
               "NUCLEUS_NODE_KEY_FILE": str(keyfile)}
        p = subprocess.run([str(binary("nucleus")), "ps", "-a"], env=env, capture_output=True, text=True,
                           timeout=60)
    finally:
        srv.shutdown()
    assert p.returncode == 1, p.stdout + p.stderr
    assert "node_unauthenticated" in p.stderr and p.stdout == "", p.stderr


# ---- audit fails closed ------------------------------------------------------------------

def test_full_state_disk_refuses_calls_and_repairs(tmp_path):
    """The state dir on a small tmpfs that fills up while calls run: a call whose request
    record cannot be written is refused (503 audit_unavailable) and does not run; every call
    that ran has its record; after space returns the log heals itself and verifies as
    "repaired" (nucleus-audit exit 3)."""
    require_root()
    import subprocess
    n = NodeProc(tmp_path, driver="local")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0711", "tmpfs", str(n.state_root)], check=True)
    filler = n.state_root / "filler"
    try:
        n.start()
        c = n.client()
        pod = running_pod(c, policy="local-dev")
        ws = n.state_dir / "pods" / pod / "workspace"
        assert c.tool(pod, "run", {"argv": ["touch", "before"]}).status == 200
        with open(filler, "wb", buffering=0) as f:  # fill the disk
            for block in (1 << 20, 4096, 64):
                try:
                    while True:
                        f.write(b"\0" * block)
                except OSError:
                    pass
        refused = None
        ran = []
        for i in range(40):
            r = c.tool(pod, "run", {"argv": ["touch", f"m{i}"]})
            if r.status == 503:
                assert r.json()["kind"] == "audit_unavailable", r
                refused = f"m{i}"
                break
            assert r.status == 200, r
            ran.append(f"m{i}")
        assert refused, "the disk never filled"
        assert not (ws / refused).exists(), "a call ran without its audit record"
        assert n.metric("nucleus_audit_refused_total") >= 1
        # a second call while still full is refused too
        r = c.tool(pod, "run", {"argv": ["touch", "still-full"]})
        assert r.status == 503 and not (ws / "still-full").exists()
        filler.unlink()  # space returns
        r = c.tool(pod, "run", {"argv": ["touch", "after"]})
        assert r.status == 200, r
        assert (ws / "after").exists()
        log = n.audit_path(pod).read_text()
        for m in ["before", *ran, "after"]:
            assert f'"argv":["touch","{m}"]' in log, m
        assert '"op":"audit_repair"' in log
        assert c.delete_pod(pod).status == 200
        v = n.verify_audit(pod)
        assert v.returncode == 3, v.stdout + v.stderr
        assert json.loads(v.stdout)["repaired"] is True
        n.stop()
    finally:
        if n.proc is not None:
            n.stop(check_clean=False)
        subprocess.run(["umount", "-l", str(n.state_root)], check=False)
        n.remove_state()


# ---- connections ---------------------------------------------------------------------------

def test_idle_connections_cannot_lock_clients_out(node):
    """500 idle TCP connections from 127.0.0.2 (more than the whole connection cap): signed
    requests from 127.0.0.1 still succeed, and the idle ones are gone after the timeout."""
    import socket
    idle = []
    try:
        for _ in range(500):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.2", 0))
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", node.port))
            except BlockingIOError:
                pass
            idle.append(s)
        time.sleep(1)
        c = node.client()
        for _ in range(20):
            r = c.list_pods()
            assert r.status == 200 and r.mac_ok, r
        # and a whole pod session works meanwhile
        pod = running_pod(c)
        assert c.tool(pod, "read", {"path": "."}).status in (200, 400, 404)
    finally:
        for s in idle:
            s.close()


# ---- leases, liveness, restart, retention, fds -------------------------------------------

def lease_node(tmp_path, grace=2, liveness=3):
    return NodeProc(tmp_path, driver="local",
                    extra_args=["--lease-grace", str(grace), "--liveness-timeout", str(liveness)])


def test_lease_holds_the_pod_and_its_end_is_recorded(tmp_path):
    require_root()
    with lease_node(tmp_path) as n:
        c = n.client()
        r = c.create_pod(spec_yaml(extra="  lease: {}\n"))
        assert r.status == 201, r
        pod = r.json()["id"]
        assert r.json()["lease_grace_seconds"] == 2
        assert c.wait_state(pod, {"running", "failed"}, timeout=60)["state"] == "running"
        # renewals hold it well past the grace period
        for _ in range(8):
            r = c.request("POST", f"/v1/pods/{pod}/lease")
            assert r.status == 200 and r.json()["lease_grace_seconds"] == 2, r
            time.sleep(0.5)
        assert c.get_pod(pod).json()["state"] == "running"
        # renewals stop: the node ends the pod and says why
        st = c.wait_state(pod, {"exited", "failed"}, timeout=60)
        assert st["state"] == "exited" and st["reason_kind"] == "lease_expired", st
        assert "lease expired" in st["reason"]
        assert '"kind":"lease_expired"' in n.audit_path(pod).read_text()
        assert n.verify_audit(pod).returncode == 0
        # an ended pod's lease cannot be renewed
        assert c.request("POST", f"/v1/pods/{pod}/lease").status == 409
        # a renewal starts a lease on a pod created without one (node default grace)
        r = c.create_pod(spec_yaml())
        pod2 = r.json()["id"]
        assert "lease_grace_seconds" not in r.json()
        assert c.wait_state(pod2, {"running", "failed"}, timeout=60)["state"] == "running"
        assert c.request("POST", f"/v1/pods/{pod2}/lease").status == 200
        st = c.wait_state(pod2, {"exited", "failed"}, timeout=60)
        assert st["reason_kind"] == "lease_expired", st


def test_stopped_guest_fails_its_pod_and_calls_within_the_bound(tmp_path):
    """The proxy stops answering (SIGSTOP, as a paused VM would): the call in flight and the
    pod fail within the liveness bound, long before the call's own timeout."""
    require_root()
    with lease_node(tmp_path, grace=3600, liveness=3) as n:
        c = n.client()
        pod = running_pod(c, policy="local-dev")
        bwraps = n.processes_mentioning_state()
        proxies = [p for p in descendants(bwraps) if "nucleus-tool-proxy" in cmdline(p)]
        assert proxies
        result = {}

        def call():
            result["r"] = c.tool(pod, "run", {"argv": ["sleep", "200"], "timeout_seconds": 200}, timeout=150)

        t = threading.Thread(target=call)
        t.start()
        time.sleep(0.5)
        for p in proxies:
            os.kill(p, signal.SIGSTOP)
        st = c.wait_state(pod, {"failed", "exited"}, timeout=60)
        assert st["state"] == "failed" and st["reason_kind"] == "guest_unresponsive", st
        t.join(60)
        assert not t.is_alive()
        assert result["r"].status in (409, 504), result["r"]
        log = n.audit_path(pod).read_text()
        assert '"decision":"request"' in log and '"kind":"pod_not_running"' in log
        assert n.verify_audit(pod).returncode == 0


def test_call_in_flight_at_node_kill_gets_an_interrupted_record(tmp_path):
    require_root()
    n = NodeProc(tmp_path, driver="local")
    try:
        n.start()
        c = n.client()
        pod = running_pod(c, policy="local-dev")
        def call():
            try:
                c.tool(pod, "run", {"argv": ["sleep", "60"]}, timeout=120)
            except ConnectionError:
                pass  # the node is killed under it: that is the point

        t = threading.Thread(target=call)
        t.daemon = True
        t.start()
        deadline = time.monotonic() + 30
        while '"decision":"request"' not in n.audit_path(pod).read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        n.kill9()
        n.start()
        log = n.audit_path(pod).read_text()
        assert '"kind":"interrupted"' in log, log[-2000:]
        v = n.verify_audit(pod)
        assert v.returncode in (0, 3), v.stdout + v.stderr
        n.stop()
    finally:
        if n.proc is not None:
            n.stop(check_clean=False)
        n.remove_state()


def _cut_call(node, pod):
    """A client that sends a tool call's headers and half its body, then goes away."""
    import socket
    from helpers.nodeclient import sign_headers
    path = f"/v1/pods/{pod}/tools/write"
    body = json.dumps({"path": "cut.txt", "content": "x" * 100000}).encode()
    h = sign_headers(node.node_key, "POST", path, body, "test")
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as s:
        req = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json",
               f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in h.items()]
        s.sendall(("\r\n".join(req) + "\r\n\r\n").encode() + body[:len(body) // 2])


def test_ended_pods_release_fds_and_can_be_removed(node):
    """fd and thread counts after 100 local-driver create -> call -> delete cycles equal those
    after 10, with what long-lived nodes see mixed in (an /events stream dropped, a scoped
    credential used, an approval left pending, a client gone mid-call, a lease left to lapse);
    ended pods keep their record until removed or pruned."""
    c = node.client()

    def cycle(i=0):
        leased = i % 30 == 15
        if leased:
            # Held while it boots (however long that takes here), then left to lapse.
            r = c.create_pod(spec_yaml(extra="  lease: {grace_seconds: 2}\n"))
            assert r.status == 201, r
            pod = r.json()["id"]
            deadline = time.monotonic() + 60
            while (st := c.get_pod(pod).json())["state"] not in ("running", "failed", "exited"):
                assert c.request("POST", f"/v1/pods/{pod}/lease").status == 200
                assert time.monotonic() < deadline, st
                time.sleep(0.2)
            assert st["state"] == "running", st
        else:
            pod = running_pod(c)
        assert c.tool(pod, "read", {"path": "."}).status in (200, 400, 404)
        if i % 10 == 1:
            conn, resp = c.stream("GET", f"/v1/pods/{pod}/events", timeout=30)
            assert resp.status == 200
            assert c.tool(pod, "write", {"path": "e.txt", "content": "1"}).status == 200
            assert next(c.sse_events(resp, limit=1))[0] == "audit"
            conn.close()
        if i % 10 == 2:
            from helpers.nodeclient import NodeClient
            cred = c.mint_credential(pod).json()
            sc = NodeClient.scoped(f"http://127.0.0.1:{node.port}", cred)
            assert sc.tool(pod, "read", {"path": "."}).status in (200, 400, 404)
        if i % 10 == 3:
            r = c.request("POST", f"/v1/pods/{pod}/tools/run?approval=hold",
                          json.dumps({"argv": ["git", "commit", "--allow-empty", "-m", "held"]}),
                          {"Content-Type": "application/json"})
            assert r.status == 403 and r.json()["kind"] == "approval_required", r
        if i % 10 == 4:
            _cut_call(node, pod)
        if leased:
            st = c.wait_state(pod, {"exited", "failed"}, timeout=60)
            assert st.get("reason_kind") == "lease_expired", st
        else:
            assert c.delete_pod(pod).status == 200
        return pod

    def usage():
        # The fewest open over a few samples: a connection or a pod's teardown may hold a
        # descriptor or a thread for a moment, a leaked one stays.
        fds, threads = [], []
        for _ in range(10):
            fds.append(len(os.listdir(f"/proc/{node.proc.pid}/fd")))
            threads.append(len(os.listdir(f"/proc/{node.proc.pid}/task")))
            time.sleep(0.1)
        return min(fds), min(threads)

    pods = [cycle() for _ in range(10)]
    after10 = usage()
    pods += [cycle(i) for i in range(10, 100)]
    for p in pods:  # the lapsed leases end on the supervisor's tick
        c.wait_state(p, {"exited", "failed"}, timeout=60)
    after100 = usage()
    # 90 more cycles leave no descriptor or thread behind (a leak of one per pod would show 90).
    assert after100[0] <= after10[0] and after100[1] <= after10[1], (after10, after100)
    # records stay: listed, filterable, readable
    r = c.request("GET", "/v1/pods?state=ended")
    assert r.status == 200 and len(r.json()["pods"]) == 100
    assert c.request("GET", "/v1/pods?state=running").json()["pods"] == []
    assert c.request("GET", "/v1/pods?state=bogus").status == 400
    assert (node.state_dir / "pods" / pods[0] / "audit.jsonl").exists()
    # remove one, prune the rest
    r = c.request("POST", f"/v1/pods/{pods[0]}/remove")
    assert r.status == 200 and r.json()["removed"] == pods[0]
    assert c.get_pod(pods[0]).status == 404 and not (node.state_dir / "pods" / pods[0]).exists()
    live = running_pod(c)
    assert c.request("POST", f"/v1/pods/{live}/remove").status == 409
    r = c.request("POST", "/v1/pods/prune", body=json.dumps({"older_than_seconds": 3600}))
    assert r.status == 200 and r.json()["removed"] == []
    r = c.request("POST", "/v1/pods/prune")
    assert r.status == 200 and len(r.json()["removed"]) == 99
    assert [p["id"] for p in c.list_pods().json()["pods"]] == [live]


def test_nucleus_mcp_holds_the_lease_of_its_pod(tmp_path):
    """nucleus-mcp renews the lease of the pod it serves while it runs; once it is gone the
    node ends the pod after the grace period."""
    require_root()
    import subprocess
    from conftest import binary
    with lease_node(tmp_path, grace=2) as n:
        c = n.client()
        r = c.create_pod(spec_yaml(extra="  lease: {}\n"))
        pod = r.json()["id"]
        assert c.wait_state(pod, {"running", "failed"}, timeout=60)["state"] == "running"
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
               "NUCLEUS_NODE_URL": f"http://127.0.0.1:{n.port}",
               "NUCLEUS_NODE_KEY_FILE": str(n.secrets / "node.key")}
        mcp = subprocess.Popen([str(binary("nucleus-mcp")), "--pod", pod, "--tools", "read"], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            time.sleep(6)  # three grace periods
            assert c.get_pod(pod).json()["state"] == "running"
        finally:
            mcp.stdin.close()
            mcp.wait(timeout=30)
        st = c.wait_state(pod, {"exited", "failed"}, timeout=60)
        assert st["reason_kind"] == "lease_expired", st
