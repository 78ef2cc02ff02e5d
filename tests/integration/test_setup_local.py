# SPDX-License-Identifier: Apache-2.0
"""The setup route (POST /v1/pods/{id}/setup, docs/run.md "Dependencies") through a real
nucleus-node with the `local` driver (no VM, no network): the commands run as argv in the
workspace before any agent call, what they write becomes part of the baseline (not of the
patch), the step runs once, a failing command stops the step with its output in the answer and
in no audit record, and the agent's ways in are closed: the tool route refuses the proxy's
setup operations, a pod-scoped credential cannot call the route, and bad bodies are 400.
Network opening is covered with real VMs in tests/e2e/test_setup_vm.py."""
import json
import os
import subprocess
import threading
import time

import pytest

from conftest import binary, require_root
from helpers.nodeclient import NodeClient, sign_headers
from helpers.nodeproc import NodeProc, spec_yaml, tar_bytes

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    require_root()
    with NodeProc(tmp_path_factory.mktemp("setup-local"), driver="local") as n:
        yield n


def _pod(c):
    r = c.create_pod(spec_yaml())
    assert r.status == 201, r
    pod = r.json()["id"]
    assert c.wait_state(pod, {"running", "failed", "exited"}, timeout=60)["state"] == "running"
    assert c.upload_workspace(pod, tar_bytes({"README.md": "hello\n"})).status == 200
    return pod


def _setup(c, pod, commands, **kw):
    body = json.dumps({"commands": commands, **kw}).encode()
    return c.request("POST", f"/v1/pods/{pod}/setup", body, {"Content-Type": "application/json"}, timeout=120)


def _records(c, pod, op):
    return [json.loads(line) for line in c.audit(pod).text.splitlines() if json.loads(line).get("op") == op]


def test_setup_runs_before_the_agent_and_is_baseline(node):
    c = node.client()
    pod = _pod(c)
    try:
        # sh -c is the user's own explicit choice here: the route takes argv and never adds a shell.
        r = _setup(c, pod, [["sh", "-c", "mkdir -p .deps && echo dep > .deps/pkg.py && id -u > uid.txt"],
                            ["touch", "made-by-setup"]])
        assert r.status == 200, r
        ans = r.json()
        assert ans["ok"] is True and len(ans["results"]) == 2, ans
        assert all(x["exit_code"] == 0 for x in ans["results"]) and len(ans["baseline"]) == 40, ans
        assert ans["hosts"] == []  # no setup hosts: nothing opened
        # Not root: the agent's user ran it, in the workspace.
        uid = c.tool(pod, "read", {"path": "uid.txt"}).json()
        assert "1000" in json.dumps(uid), uid
        # What setup wrote is the baseline: only the agent's own change is in the patch.
        assert c.tool(pod, "edit", {"path": "README.md", "old": "hello", "new": "bye"}).status == 200
        p = c.patch(pod).json()
        assert p["changed"] == ["README.md"], p
        recs = _records(c, pod, "setup_command")
        assert [x["detail"]["argv"][0] for x in recs] == ["sh", "touch"], recs
        assert all(x["decision"] == "allow" and x["detail"]["exit_code"] == 0 for x in recs), recs
        assert not _records(c, pod, "setup_network")  # nothing to open without hosts and a NIC
        # Once per pod.
        r = _setup(c, pod, [["true"]])
        assert r.status == 409 and r.json()["kind"] == "conflict", r
    finally:
        c.delete_pod(pod)


def test_failing_setup_command_stops_the_step(node):
    c = node.client()
    pod = _pod(c)
    try:
        r = _setup(c, pod, [["sh", "-c", "touch partial; printf 'the-%s\\n' reason >&2; exit 3"],
                            ["touch", "never"]])
        assert r.status == 200, r
        ans = r.json()
        assert ans["ok"] is False and len(ans["results"]) == 1, ans
        assert ans["results"][0]["exit_code"] == 3 and "the-reason" in ans["results"][0]["stderr"], ans
        recs = _records(c, pod, "setup_command")
        assert len(recs) == 1 and recs[0]["decision"] == "error" and recs[0]["detail"]["exit_code"] == 3, recs
        assert "the-reason" not in c.audit(pod).text  # the output is the user's, not the log's
        assert c.tool(pod, "read", {"path": "never"}).status == 404
        # The step ended all the same: what the failed command left is baseline, not the
        # agent's change, and setup cannot run again.
        assert len(ans["baseline"]) == 40, ans
        assert c.tool(pod, "edit", {"path": "README.md", "old": "hello", "new": "bye"}).status == 200
        assert c.patch(pod).json()["changed"] == ["README.md"]
        assert _setup(c, pod, [["true"]]).status == 409
    finally:
        c.delete_pod(pod)


def test_the_agent_cannot_run_setup(node):
    c = node.client()
    pod = _pod(c)
    try:
        for op in ("setup", "setup_done"):
            r = c.tool(pod, op, {"argv": ["touch", "x"]} if op == "setup" else {})
            assert r.status == 400 and "not a tool call" in r.json()["error"], r
        cred = c.mint_credential(pod).json()
        s = NodeClient.scoped(f"http://127.0.0.1:{node.port}", cred)
        r = _setup(s, pod, [["touch", "x"]])
        assert r.status == 403 and r.json()["detail"] == "node_key_required", r
        for body in ({}, {"commands": []}, {"commands": ["touch x"]}, {"commands": [[""]]},
                     {"commands": [["true"]], "timeout_seconds": 0}, {"commands": [["true"]], "x": 1}):
            r = c.request("POST", f"/v1/pods/{pod}/setup", json.dumps(body).encode(),
                          {"Content-Type": "application/json"})
            assert r.status == 400 and r.json()["kind"] == "invalid_request", (body, r)
        # None of it ran anything.
        assert not _records(c, pod, "setup_command")
        assert c.tool(pod, "read", {"path": "x"}).status == 404
    finally:
        c.delete_pod(pod)


def test_no_tool_call_while_setup_runs(node):
    """While the setup step runs (its network window open, the baseline not yet recorded), the
    tool route refuses every caller, the agent's pod credential included; the step then ends as
    if nothing had been asked, and tools work again."""
    c = node.client()
    pod = _pod(c)
    cred = c.mint_credential(pod).json()
    s = NodeClient.scoped(f"http://127.0.0.1:{node.port}", cred)
    done = {}
    # The command waits for the test's "go" file: no race with the machine's speed.
    cmd = ["sh", "-c", "touch started; while [ ! -e go ]; do sleep 0.1; done"]
    t = threading.Thread(target=lambda: done.update(r=_setup(c, pod, [cmd], timeout_seconds=120)))
    try:
        t.start()
        started = node.state_dir / "pods" / pod / "workspace" / "started"
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline and t.is_alive():
            time.sleep(0.05)
        assert started.exists(), done
        for client in (s, c):
            r = client.tool(pod, "write", {"path": "agent.txt", "content": "x"})
            assert r.status == 409 and r.json()["kind"] == "conflict" and "setup" in r.json()["error"], r
        (started.parent / "go").touch()
        t.join(120)
        ans = done["r"].json()
        assert done["r"].status == 200 and ans["ok"] is True and len(ans["baseline"]) == 40, ans
        assert not (node.state_dir / "pods" / pod / "workspace" / "agent.txt").exists()
        assert s.tool(pod, "read", {"path": "started"}).status == 200
    finally:
        (node.state_dir / "pods" / pod / "workspace" / "go").touch()
        t.join(120)
        c.delete_pod(pod)


def test_no_setup_once_the_agent_has_acted(node):
    """The other direction: the setup step begins only before the agent's first call. A command
    the agent started (its pod credential minted early) must not run on while the window is
    open, so the step is refused (409: nothing run, nothing opened) while such a call is under
    way, by the plain route and by the event stream alike, and after it answered too (the
    proxy's setup phase ended with it; the node must not open the window to learn that)."""
    c = node.client()
    # fix-issue runs the project's tests; this one waits for the test's "go" file.
    makefile = "test:\n\ttouch agent-started; while [ ! -e go ]; do sleep 0.1; done; touch agent-done\n"
    for stream in (False, True):
        pod = _pod(c)
        ws = node.state_dir / "pods" / pod / "workspace"
        try:
            assert c.upload_workspace(pod, tar_bytes({"Makefile": makefile})).status == 200
            s = NodeClient.scoped(f"http://127.0.0.1:{node.port}", c.mint_credential(pod).json())
            # The node's own status calls do not end the setup phase.
            assert s.tool(pod, "status").status == 200
            done = {}

            def agent():
                if stream:
                    conn, resp = s.stream("POST", f"/v1/pods/{pod}/tools/run",
                                          json.dumps({"argv": ["make", "test"]}).encode(),
                                          {"Accept": "text/event-stream"}, timeout=180)
                    try:
                        done["r"] = (resp.status, list(NodeClient.sse_events(resp)))
                    finally:
                        conn.close()
                else:
                    done["r"] = s.tool(pod, "run", {"argv": ["make", "test"]}, timeout=180)

            t = threading.Thread(target=agent)
            t.start()
            try:
                deadline = time.monotonic() + 60
                while not (ws / "agent-started").exists() and time.monotonic() < deadline and t.is_alive():
                    time.sleep(0.05)
                assert (ws / "agent-started").exists(), done
                r = _setup(c, pod, [["touch", "setup-ran"]])
                assert r.status == 409 and r.json()["kind"] == "conflict", r
                assert "agent has called" in r.json()["error"], r
            finally:
                (ws / "go").touch()
                t.join(120)
            assert (ws / "agent-done").exists(), done
            assert (done["r"][0] if stream else done["r"].status) == 200, done
            r = _setup(c, pod, [["touch", "setup-ran"]])
            assert r.status == 409 and r.json()["kind"] == "conflict", r
            assert not (ws / "setup-ran").exists()
            assert not _records(c, pod, "setup_command") and not _records(c, pod, "setup_network")
        finally:
            (ws / "go").touch()
            c.delete_pod(pod)


def test_setup_stops_when_the_client_goes(node):
    """A client that goes away during the setup step (nucleus run interrupted) gets no further
    command run for it: the step stops after the running one, says so in the audit log, and the
    pod's tools answer again."""
    c = node.client()
    pod = _pod(c)
    ws = node.state_dir / "pods" / pod / "workspace"
    try:
        path = f"/v1/pods/{pod}/setup"
        body = json.dumps({"commands": [["sh", "-c", "touch started; while [ ! -e go ]; do sleep 0.1; done"],
                                        ["touch", "second"]], "timeout_seconds": 120}).encode()
        h = sign_headers(c.key, "POST", path, body, "test")
        h.update({"Content-Type": "application/json", "Content-Length": str(len(body))})
        conn = c._conn(60)
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for k, v in h.items():
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(body)
        deadline = time.monotonic() + 60
        while not (ws / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (ws / "started").exists()
        conn.close()  # the client goes while the first command runs
        (ws / "go").touch()
        # The step has ended when the tool route answers again (409 while it runs).
        deadline = time.monotonic() + 120
        while c.tool(pod, "status").status == 409 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.tool(pod, "status").status == 200
        assert not (ws / "second").exists()
        stopped = _records(c, pod, "setup_stopped")
        assert len(stopped) == 1 and stopped[0]["detail"]["commands_run"] == 1, stopped
        assert len(_records(c, pod, "setup_command")) == 1
    finally:
        (ws / "go").touch()
        c.delete_pod(pod)


def _cli(node, tmp_path, proj, *extra):
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(tmp_path / "home"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "NUCLEUS_NODE_URL": f"http://127.0.0.1:{node.port}",
           "NUCLEUS_NODE_KEY_FILE": str(node.secrets / "node.key"), "LANG": "C.UTF-8"}
    (tmp_path / "home").mkdir(exist_ok=True)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"steps": [{"tool": "read", "args": {"path": "made.txt"}}]}))
    argv = [str(binary("nucleus")), "run", "t", "-d", str(proj), "--profile", "fix-issue", "--script", str(plan),
            "--output", "json", "--audit-out", str(tmp_path / "audit.jsonl"), *extra]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


def test_cli_setup_runs_then_the_agent(node, tmp_path):
    """nucleus run --setup: the command's file is there for the agent's first step; a failing
    command ends the run with its output (made visible) on stderr and no agent step."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "README.md").write_text("hi\n")
    r = _cli(node, tmp_path, proj, "--setup", "sh -c 'echo from-setup > made.txt'")
    assert r.returncode == 0, r.stderr
    assert "[nucleus] setup: sh -c 'echo from-setup > made.txt': ok" in r.stderr, r.stderr
    assert "no network" in r.stderr, r.stderr
    doc = json.loads(r.stdout)
    assert doc["calls"][0]["outcome"] == "ok" and "from-setup" in json.dumps(doc["calls"][0]), doc["calls"]
    assert doc["patch"]["changed"] == [], doc["patch"]
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    setup_seq = [x["seq"] for x in records if x.get("op") == "setup_command"]
    read_seq = [x["seq"] for x in records if x.get("op") == "read"]
    assert len(setup_seq) == 1 and read_seq and setup_seq[0] < min(read_seq), records

    r = _cli(node, tmp_path, proj, "--setup", r"""sh -c 'printf "\377bad-%s\n" out >&2; exit 4'""")
    assert r.returncode == 1, r.stderr
    assert "exit status 4; its output:" in r.stderr and "\\xffbad-out" in r.stderr, r.stderr
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [x["detail"]["exit_code"] for x in records if x.get("op") == "setup_command"] == [4]
    assert not any(x.get("op") == "read" for x in records), "an agent step ran after a failed setup"



def test_local_driver_refuses_setup_hosts_at_create(node):
    """The local driver has no network to open: a spec with setup hosts is refused when it is
    created, naming the key, instead of failing at boot."""
    c = node.client()
    r = c.create_pod(spec_yaml(extra="  setup: {hosts: [\"pypi.org\"]}\n"))
    assert r.status == 400 and "spec.setup.hosts: the local driver" in r.json()["error"], r
    r = c.create_pod(spec_yaml(extra="  setup: {hosts: [\"pypi.org\", \"-bad\"]}\n"))
    assert r.status == 400 and "spec.setup.hosts[1]" in r.json()["error"], r
