# SPDX-License-Identifier: Apache-2.0
"""Every command runs in its own PID namespace whose init is the proxy's child;
when the command exits, times out or is cancelled, the kernel kills whatever it left behind
(setsid/double fork cannot escape), and the run answers only once the tree is gone. Also:
the command's capability bounding set is empty."""
import os
import time

import pytest

from helpers.proxyrun import (agent_ids, configure, fix_issue_policy, proxy, proxy_bin)  # noqa: F401

MARK = "/tmp/nucleus-xfix-tree-{tag}"

DAEMON = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    for fd in (0, 1, 2):
        os.close(fd)
    time.sleep(1.5)
    open({mark!r}, "w").write(str(os.getpid()))
    time.sleep(60)
    os._exit(0)
print("parent done", flush=True)
if sys.argv[1:] == ["hang"]:
    time.sleep(60)
"""

STATUS = """
import os, sys, signal
if sys.argv[1] == "exit":
    sys.exit(int(sys.argv[2]))
os.kill(os.getpid(), signal.SIGTERM)
"""


def daemon_pids(uid):
    """Processes of the agent uid running this test's daemon.py (other tests share the uid)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid and b"daemon.py" in open(f"/proc/{d}/cmdline", "rb").read():
                    out.append(int(d))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


@pytest.fixture
def mark(request):
    m = MARK.format(tag=request.node.name.replace("[", "-").replace("]", ""))
    if os.path.exists(m):
        os.unlink(m)
    yield m
    if os.path.exists(m):
        try:
            os.kill(int(open(m).read() or 0), 9)
        except (ValueError, ProcessLookupError):
            pass
        os.unlink(m)


def start_daemon_policy(proxy, proxy_bin, agent_ids, mark, hang):
    argv = ["python3", "daemon.py"] + (["hang"] if hang else [])
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=[" ".join(argv)]))
    proxy.put("daemon.py", DAEMON.format(mark=mark))
    return argv


@pytest.mark.parametrize("how", ["exit", "timeout", "cancel"])
def test_descendants_die_with_the_command(proxy_bin, agent_ids, proxy, mark, how):
    argv = start_daemon_policy(proxy, proxy_bin, agent_ids, mark, hang=how != "exit")
    t0 = time.monotonic()
    if how == "cancel":
        sid = proxy.ch.start("run", {"argv": argv, "timeout_seconds": 30})
        time.sleep(0.8)
        proxy.ch.cancel(sid)
        r = proxy.ch.wait(sid, timeout=10)
    else:
        r = proxy.ch.request("run", {"argv": argv, "timeout_seconds": 1})
    assert "error" not in r, r
    assert time.monotonic() - t0 < 8
    if how == "exit":
        assert r["exit_code"] == 0 and "parent done" in r["stdout"], r
    elif how == "timeout":
        assert r["timed_out"] and r["signal"] == 9, r
    else:
        assert r["cancelled"], r
    # The run answered: nothing of the agent's is left running (the tree died first).
    assert daemon_pids(agent_ids[0]) == [], "agent processes outlived the run"
    time.sleep(2.0)
    assert not os.path.exists(mark), "a daemonised descendant kept running after the run ended"


def test_exit_status_of_the_command_is_reported(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids,
                                             extra_allowed=["python3 st.py exit 7", "python3 st.py kill"]))
    proxy.put("st.py", STATUS)
    r = proxy.ch.request("run", {"argv": ["python3", "st.py", "exit", "7"]})
    assert r["exit_code"] == 7 and r["signal"] is None and not r["success"], r
    r = proxy.ch.request("run", {"argv": ["python3", "st.py", "kill"]})
    assert r["exit_code"] is None and r["signal"] == 15, r
    r = proxy.ch.request("run", {"argv": ["nonexistent-program-xfix"]})
    assert "error" in r


def test_command_has_its_own_pid_namespace_and_no_capabilities(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["cat /proc/self/status"]))
    r = proxy.ch.request("run", {"argv": ["cat", "/proc/self/status"]})
    st = dict(line.split(":", 1) for line in r["stdout"].splitlines() if ":" in line)
    assert int(st["CapBnd"].strip(), 16) == 0, st["CapBnd"]
    assert int(st["CapAmb"].strip(), 16) == 0 and int(st["CapEff"].strip(), 16) == 0
    # NSpid lists the pid in each namespace: two levels (host/guest, then the command's own).
    nspid = st["NSpid"].split()
    assert len(nspid) == 2 and nspid[1] == "2", nspid


def test_commands_are_the_preferred_oom_victims(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["cat /proc/self/oom_score_adj"]))
    r = proxy.ch.request("run", {"argv": ["cat", "/proc/self/oom_score_adj"]})
    assert r["stdout"].strip() == "1000", r


VSOCK = """
import socket
try:
    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    print("created")
except OSError as e:
    print("errno", e.errno)
"""


def test_commands_cannot_create_vsock_sockets(proxy_bin, agent_ids, proxy):
    import errno
    import socket
    try:
        socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
    except OSError:
        pytest.skip("no AF_VSOCK on this kernel: nothing to refuse")
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["python3 vs.py"]))
    proxy.put("vs.py", VSOCK)
    r = proxy.ch.request("run", {"argv": ["python3", "vs.py"]})
    assert r["stdout"].strip() == f"errno {errno.EAFNOSUPPORT}", r
