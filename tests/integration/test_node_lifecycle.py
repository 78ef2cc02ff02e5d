# SPDX-License-Identifier: Apache-2.0
"""Issue 16, node side, with the local driver: the sandbox dies with its pod (even a hung,
stopped proxy), the node raises its open-files limit, ended pods release their fds, leases,
the node authenticates its answers, idle connections cannot lock clients out, and audit
records are written before a call reaches the guest."""
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
