# SPDX-License-Identifier: Apache-2.0
"""The CLI keeps its promises against a real nucleus-node (local driver, bubblewrap):

* a usage error of ANY verb exits 2 with a message on stderr, nothing on stdout, no crash,
  and never creates a pod (the node's pod list is checked after each case);
* `nucleus run` checks its workspace and its model endpoint before a pod exists;
* a pod created by `nucleus run` does not outlive the CLI: SIGPIPE (`| head -1`), SIGHUP and
  SIGTERM delete it and exit 128+N; SIGKILL leaves it to the node's lease expiry.
"""
import json
import re
import os
import signal
import subprocess
import time

import pytest

from conftest import binary, require_root
from helpers.model_server import ModelServer
from helpers.nodeproc import NodeProc

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")

# The node's lease grace period in these tests (its test knob), seconds.
GRACE = 3


class Cli:
    def __init__(self, tmp, node):
        self.tmp = tmp
        self.nucleus = str(binary("nucleus"))
        (tmp / "home").mkdir(exist_ok=True)
        self.env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(tmp / "home"),
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "XDG_STATE_HOME": str(tmp / "state"),
            "NUCLEUS_NODE_URL": f"http://127.0.0.1:{node.port}",
            "NUCLEUS_NODE_KEY_FILE": str(node.secrets / "node.key"),
            "LANG": "C.UTF-8",
        }

    def argv(self, *args):
        return [self.nucleus, *args]

    def run(self, *args, timeout=120, **kw):
        return subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, **kw)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    require_root()
    with NodeProc(tmp_path_factory.mktemp("node"), driver="local",
                  extra_args=node_lease_args()) as n:
        yield n


def node_lease_args():
    """The node's short-grace knob, when this node has leases."""
    try:
        helptext = subprocess.run([str(binary("nucleus-node")), "--help"], capture_output=True,
                                  text=True, timeout=30).stdout
    except OSError:
        return []
    return ["--lease-grace", str(GRACE)] if "--lease-grace" in helptext else []


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    (d / "ws").mkdir()
    (d / "ws" / "README.md").write_text("hello\n")
    (d / "a-file").write_text("not a directory\n")
    plan = d / "plan.json"
    plan.write_text(json.dumps({"steps": [{"tool": "read", "args": {"path": "README.md"}}]}))
    spec = d / "pod.yaml"
    spec.write_text("apiVersion: nucleus/v1\nkind: Pod\nspec:\n  policy: fix-issue\n  driver: local\n")
    (d / "policy.yaml").write_text("x: 1\n")
    (d / "policy.json").write_text("{}\n")
    return d


# (verb, args); "{ws}", "{plan}", "{spec}", "{file}", "{missing}", "{dir}" are filled in.
USAGE_ERRORS = [
    ("run", []),
    ("run", ["one", "two"]),
    ("run", ["--max-turns", "0", "t"]),
    ("run", ["--max-turns", "-3", "t"]),
    ("run", ["--timeout", "-1", "t"]),
    ("run", ["--timeout", "0", "t"]),
    ("run", ["--timeout", "soon", "t"]),
    ("run", ["--timeout"]),
    ("run", ["--script", "{plan}", "--agent-cmd", "true", "t"]),
    ("run", ["--script", "{plan}", "--model", "m", "t"]),
    ("run", ["--script", "{plan}", "--base-url", "http://127.0.0.1:9/v1", "t"]),
    ("run", ["--agent", "mcp", "t"]),
    ("run", ["t", "--", "extra"]),
    ("run", ["--apply-flagged", "t"]),
    ("run", ["--profile", "no-such-profile", "t"]),
    ("run", ["--profile", "restrictive", "--config", "{dir}/policy.json", "t"]),
    ("run", ["--config", "{dir}/policy.yaml", "t"]),
    ("run", ["--provider", "bogus", "t"]),
    ("run", ["--base-url", "ftp://example.com", "t"]),
    ("run", ["--api-key-env", "sk-live-1234", "t"]),
    ("run", ["--max-cost", "cheap", "t"]),
    ("run", ["--price-in", "x", "t"]),
    ("run", ["--network", "everything", "t"]),
    ("run", ["--output", "yaml", "t"]),
    ("run", ["-d", "{file}", "--script", "{plan}", "t"]),
    ("run", ["-d", "{missing}", "--script", "{plan}", "t"]),
    ("run", ["--bogus", "t"]),
    ("run", ["--history", "some", "t"]),
    ("run", ["--scratch-mib", "0", "t"]),
    ("run", ["--image", "../etc", "t"]),
    ("run", ["  ", "--script", "{plan}", "-d", "{ws}"]),
    ("setup", ["--listen", "nowhere"]),
    ("setup", ["--listen", "127.0.0.1:99999"]),
    ("setup", ["--metrics-listen", "nohost:9080"]),
    ("setup", ["--vm-cpus", "0"]),
    ("setup", ["--pool-size", "65"]),
    ("setup", ["extra"]),
    ("start", ["--timeout", "0"]),
    ("start", ["extra"]),
    ("stop", ["extra"]),
    ("doctor", ["extra"]),
    ("doctor", ["--output", "yaml"]),
    ("profiles", ["extra"]),
    ("config", ["extra"]),
    ("secrets", []),
    ("secrets", ["bogus"]),
    ("secrets", ["rotate", "nope"]),
    ("ps", ["extra"]),
    ("ps", ["--bogus"]),
    ("ps", ["--state", "sleeping"]),
    ("ps", ["--output", "yaml"]),
    ("logs", []),
    ("logs", ["a", "b"]),
    ("logs", ["../etc"]),
    ("logs", ["p", "--tail", "x"]),
    ("logs", ["p", "--output", "yaml"]),
    ("create", []),
    ("create", ["-f"]),
    ("create", ["-f", "{spec}", "extra"]),
    ("create", ["-f", "{spec}", "--wait", "--timeout", "0"]),
    ("wait", []),
    ("wait", ["p", "--state", "sleeping"]),
    ("wait", ["p", "--timeout", "0"]),
    ("upload", []),
    ("upload", ["p", "extra"]),
    ("tool", ["p"]),
    ("tool", ["p", "Bad-Op"]),
    ("tool", ["p", "read", "[1]"]),
    ("tool", ["p", "read", "--arg", "novalue"]),
    ("approve", ["p"]),
    ("approve", ["p", "a", "b"]),
    ("patch", []),
    ("patch", ["p", "extra"]),
    ("delete", []),
    ("delete", ["../x"]),
    ("cancel", []),
    ("audit", []),
    ("audit", ["bogus"]),
    ("audit", ["verify"]),
    ("audit", ["verify", "a", "b"]),
    ("audit", ["show"]),
    ("audit", ["show", "no such pod!"]),
    ("image", ["extra"]),
    ("image", ["build", "--bogus"]),
    ("rm", []),
    ("rm", ["--bogus", "p"]),
    ("rm", ["../x"]),
    ("prune", ["extra"]),
    ("prune", ["--older-than", "soon"]),
    ("prune", ["--older-than", "-1d"]),
    ("no-such-verb", []),
]


@pytest.mark.parametrize("verb,args", USAGE_ERRORS, ids=[f"{v}:{' '.join(a)}" for v, a in USAGE_ERRORS])
def test_usage_error(node, files, tmp_path, verb, args):
    cli = Cli(tmp_path, node)
    fill = {"ws": str(files / "ws"), "plan": str(files / "plan.json"), "spec": str(files / "pod.yaml"),
            "file": str(files / "a-file"), "missing": str(files / "missing"), "dir": str(files)}
    argv = [a.format(**fill) for a in args]
    before = pod_ids(node)
    p = cli.run(verb, *argv, cwd=files / "ws", timeout=60)
    assert p.returncode == 2, f"{verb} {argv}: rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert p.stderr.strip(), "no message on stderr"
    assert p.stdout == ""
    assert pod_ids(node) == before, "a usage error created a pod"


def test_run_fails_before_booting(node, files, tmp_path):
    """Problems found only by looking (an unreachable model, a missing key, an agent that
    does not exist) are failures (exit 1) named before any pod exists."""
    cli = Cli(tmp_path, node)
    ws = str(files / "ws")
    before = pod_ids(node)
    cases = [
        (["--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--api-key-env", "NOT_SET_ANYWHERE"],
         "NOT_SET_ANYWHERE"),
        (["--model", "m", "--base-url", "http://127.0.0.1:9/v1"], "not reachable"),
        (["--agent-cmd", "/nonexistent/agent --flag"], "not found"),
        (["--script", str(files / "missing.json")], "missing.json"),
    ]
    for extra, needle in cases:
        p = cli.run("run", "t", "-d", ws, *extra, timeout=60)
        assert p.returncode == 1, (extra, p.stderr)
        assert needle in p.stderr, (extra, p.stderr)
        assert pod_ids(node) == before, extra


# ---- the pod does not outlive the CLI -------------------------------------------------------


def slow_model(first_text="first line\n"):
    """A model that answers one turn with text and a tool call, then thinks for a long time."""
    def script(body, i):
        if i == 0:
            return {"text": first_text, "tool_calls": [{"name": "read", "args": {"path": "README.md"}}]}
        time.sleep(120)
        return {"text": "too late"}
    return script


def start_run(cli, ms, files, stdout=subprocess.PIPE):
    argv = cli.argv("run", "Slow task", "-d", str(files / "ws"), "--model", "m", "--provider", "openai",
                    "--base-url", ms.base_url, "--profile", "read_only")
    return subprocess.Popen(argv, env=cli.env, stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.PIPE)


def pod_ids(node):
    """Every pod the node lists, ended ones included."""
    return {p["id"] for p in node.client().list_pods().json()["pods"]}


def running_pod(node, timeout=120):
    """The one live pod (`nucleus run` created it), once it is running."""
    c = node.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = [p for p in c.list_pods().json()["pods"] if p["state"] not in ("exited", "failed")]
        if pods and pods[0]["state"] == "running":
            return pods[0]["id"]
        time.sleep(0.1)
    raise AssertionError("no running pod appeared")


def wait_ended(node, pod, timeout):
    c = node.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = c.get_pod(pod).json()
        if p.get("state") in ("exited", "failed") or "id" not in p:
            return p
        time.sleep(0.1)
    raise AssertionError(f"pod {pod} still {c.get_pod(pod).json().get('state')} after {timeout}s")


def test_sigpipe_deletes_the_pod(node, files, tmp_path):
    """`nucleus run ... | head -1`: head exits after the first line, the next write gets
    SIGPIPE, and the CLI deletes its pod instead of dying on the spot."""
    cli = Cli(tmp_path, node)
    script = slow_model()

    def chatty(body, i):
        if i == 0:
            return script(body, 0)
        # Text keeps coming (each turn a line) until the pipe is gone.
        return {"text": f"line {i}\n", "tool_calls": [{"name": "read", "args": {"path": "README.md"}}]}
    before = pod_ids(node)
    with ModelServer(chatty) as ms:
        p = start_run(cli, ms, files)
        head = subprocess.Popen(["head", "-1"], stdin=p.stdout, stdout=subprocess.PIPE)
        p.stdout.close()  # only head holds the read end now
        first = head.communicate(timeout=120)[0]
        rc = p.wait(timeout=120)
        err = p.stderr.read().decode()
    assert first == b"first line\n"
    assert rc == 128 + signal.SIGPIPE, err
    pods = [x for x in node.client().list_pods().json()["pods"] if x["id"] not in before]
    assert len(pods) == 1 and pods[0]["state"] in ("exited", "failed"), pods
    assert pods[0]["reason"] == "deleted by the API", pods[0]


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_hangup_and_term_delete_the_pod(node, files, tmp_path, sig):
    cli = Cli(tmp_path, node)
    with ModelServer(slow_model()) as ms:
        p = start_run(cli, ms, files)
        pod = running_pod(node)
        time.sleep(0.5)
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err.decode()
    ended = wait_ended(node, pod, timeout=10)
    assert ended["reason"] == "deleted by the API", ended


def test_sigkill_leaves_the_pod_to_its_lease(node, files, tmp_path):
    """Nothing runs in a SIGKILLed CLI: the pod ends because its renewals stop."""
    if not node_lease_args():
        pytest.xfail("the node has no leases yet (POST /v1/pods/{id}/lease and a --lease-grace knob "
                     "from the node side of issue 16)")
    cli = Cli(tmp_path, node)
    with ModelServer(slow_model()) as ms:
        p = start_run(cli, ms, files)
        pod = running_pod(node)
        # Renewals keep it alive well past the grace period while the CLI lives.
        time.sleep(2 * GRACE)
        assert node.client().get_pod(pod).json()["state"] == "running"
        p.kill()
        p.wait(timeout=30)
        ended = wait_ended(node, pod, timeout=GRACE + 30)
    assert "lease" in ended.get("reason", ""), ended


# ---- everyday verbs: ps, logs, pods by prefix or name -------------------------------------------


def new_pod(node, name):
    from helpers.nodeproc import spec_yaml
    spec = spec_yaml().replace("kind: Pod\n", f"kind: Pod\nmetadata:\n  name: {name}\n")
    r = node.client().create_pod(spec)
    assert r.status == 201, r.text
    pod = r.json()["id"]
    node.client().wait_state(pod, {"running"}, timeout=120)
    return pod


def test_ps_filters_and_json(node, tmp_path):
    cli = Cli(tmp_path, node)
    live = new_pod(node, "ps-live")
    gone = new_pod(node, "ps-gone")
    node.client().delete_pod(gone)
    ids = lambda args: {p["id"] for p in json.loads(cli.run("ps", *args, "--output", "json").stdout)["pods"]}
    assert live in ids([]) and gone not in ids([])  # running only by default
    assert {live, gone} <= ids(["-a"])
    assert gone in ids(["--state", "exited"]) and live not in ids(["--state", "exited"])
    assert live in ids(["--state", "running"])
    text = cli.run("ps").stdout
    assert live in text and gone not in text and text.startswith("ID ")
    # The columns line up with the header: a creation time (24 characters) does not push the
    # REASON of an ended pod out of its column.
    lines = cli.run("ps", "-a").stdout.splitlines()
    col = lines[0].index("REASON")
    row = next(l for l in lines if l.startswith(gone))
    assert row[col - 1] == " " and row[col:].startswith("deleted"), lines
    node.client().delete_pod(live)


def test_pods_by_prefix_and_name(node, tmp_path):
    cli = Cli(tmp_path, node)
    pod = new_pod(node, "by-name")
    p = cli.run("logs", "no-such-name")
    assert p.returncode == 1 and "no pod has the id, id prefix or name 'no-such-name'" in p.stderr, p.stderr
    for ref in (pod, pod[:8], "by-name"):
        p = cli.run("logs", ref, "--output", "json")
        assert p.returncode == 0, (ref, p.stderr)
        assert json.loads(p.stdout)["pod"] == pod
    # The pod verbs take the same references.
    assert cli.run("wait", pod[:8]).stdout == f"{pod} running\n"
    assert json.loads(cli.run("tool", "by-name", "status", "--output", "json").stdout)
    # Two live pods with one name: ambiguous, both listed, nothing done.
    twin = new_pod(node, "by-name")
    for verb in ("logs", "delete"):
        p = cli.run(verb, "by-name")
        assert p.returncode == 1 and pod in p.stderr and twin in p.stderr and "matches 2 pods" in p.stderr, p.stderr
    assert node.client().get_pod(pod).json()["state"] == "running"
    # The name of an ended pod no longer competes with the live one.
    node.client().delete_pod(twin)
    assert json.loads(cli.run("logs", "by-name", "--output", "json").stdout)["pod"] == pod
    # An ambiguous id prefix: make pods until two ids share their first character.
    seen = {pod[0]: pod, twin[0]: twin} if pod[0] != twin[0] else None
    pair = (pod, twin) if seen is None else None
    while pair is None:
        x = new_pod(node, "filler")
        node.client().delete_pod(x)
        if x[0] in seen:
            pair = (seen[x[0]], x)
        seen[x[0]] = x
    p = cli.run("logs", pair[0][0])
    assert p.returncode == 1, p.stderr
    assert pair[0] in p.stderr and pair[1] in p.stderr and "use more of the id" in p.stderr
    node.client().delete_pod(pod)


def test_logs_follow_prints_each_line_once(node, tmp_path):
    """logs -f prints what is new in each section (node lines and console), once, without the
    CR of CRLF line ends and with other controls escaped, and ends when the pod does."""
    cli = Cli(tmp_path, node)
    pod = new_pod(node, "follow-me")
    console = node.state_dir / "pods" / pod / "console.log"
    p = subprocess.Popen(cli.argv("logs", pod, "-f"), env=cli.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        with open(console, "a") as f:
            f.write("crlf line one\r\nbell \x07 and \x1b[31mred\r\n")
        time.sleep(1.5)
        with open(console, "a") as f:
            f.write("crlf line two\r\n")
        time.sleep(1.5)
        node.client().delete_pod(pod)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert out.count("crlf line one\n") == 1 and out.count("crlf line two\n") == 1, out
    assert "\r" not in out, repr(out)
    assert "crlf line one?" not in out and "\x1b" not in out and "\x07" not in out, repr(out)
    # Nothing was printed again while the node section grew (the delete): the first lines of
    # each section (timestamped node lines, the proxy's start) appear once.
    lines = [l for l in out.splitlines() if not l.startswith("==>")]
    assert lines and out.count(lines[0] + "\n") == 1, out
    assert sum("booting" in l for l in lines) == 1, out
    doc = json.loads(cli.run("logs", pod, "--output", "json").stdout)
    assert "crlf line two" in doc["console"] and doc["node"], doc


def run_files(cli, pod, age=0):
    runs = cli.tmp / "state" / "nucleus" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    out = []
    for suffix in (".patch", ".audit.jsonl"):
        f = runs / (pod + suffix)
        f.write_text("x\n")
        if age:
            t = time.time() - age
            os.utime(f, (t, t))
        out.append(f)
    return out


def test_rm_and_prune(node, tmp_path):
    cli = Cli(tmp_path, node)
    live = new_pod(node, "rm-live")
    ended = new_pod(node, "rm-ended")
    node.client().delete_pod(ended)
    live_files, ended_files = run_files(cli, live, age=7200), run_files(cli, ended)
    # A live pod is refused without -f; nothing is touched.
    p = cli.run("rm", live[:10])
    assert p.returncode == 1 and "nucleus delete" in p.stderr and all(f.exists() for f in live_files)
    p = cli.run("rm", "rm-ended", "--output", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["ok"] and doc["pods"][0]["id"] == ended and len(doc["pods"][0]["removed"]) == 2
    assert not any(f.exists() for f in ended_files)
    # The node forgot it too (record and directory).
    assert ended not in pod_ids(node) and not (node.state_dir / "pods" / ended).exists()
    # Unrelated files in the runs dir are never touched; an unknown pod is an error.
    other = cli.tmp / "state" / "nucleus" / "runs" / "notes.txt"
    other.write_text("mine\n")
    assert cli.run("rm", "no-such-pod").returncode == 1
    # prune: old files of pods that are not live go, a live pod's stay.
    old = run_files(cli, "0f0f0f0f-dead-4000-8000-000000000000", age=7200)
    new = run_files(cli, "1e1e1e1e-dead-4000-8000-000000000000")
    p = cli.run("prune", "--older-than", "1h", "--output", "json")
    assert p.returncode == 0, p.stderr
    assert len(json.loads(p.stdout)["removed"]) == 2
    assert not any(f.exists() for f in old) and all(f.exists() for f in new + live_files) and other.exists()
    assert "removed 2 run files" in cli.run("prune").stdout  # the newer ones too, not the live pod's
    assert all(f.exists() for f in live_files)
    p = cli.run("rm", "-f", live)
    assert p.returncode == 0, p.stderr
    assert not any(f.exists() for f in live_files)
    assert live not in pod_ids(node)
    # prune asks the node to forget its ended pods as well.
    gone = new_pod(node, "prune-me")
    node.client().delete_pod(gone)
    node.client().wait_state(gone, {"exited", "failed"}, timeout=60)
    doc = json.loads(cli.run("prune", "--output", "json").stdout)
    assert gone in doc["pods"] and gone not in pod_ids(node)


def test_audit_show_reads_like_a_transcript(node, tmp_path):
    """Records carry the operation's arguments (argv, paths, URL), redacted by the node, so
    `nucleus audit show` says what ran; secrets never reach the log."""
    cli = Cli(tmp_path, node)
    pod = new_pod(node, "transcript")
    c = node.client()
    c.upload_workspace(pod, __import__("helpers.nodeproc", fromlist=["tar_bytes"]).tar_bytes(
        {"README.md": "hello\n"}))
    c.tool(pod, "read", {"path": "README.md"})
    c.tool(pod, "write", {"path": "notes.txt", "content": "hunter2-secret-content\n"})
    c.tool(pod, "run", {"argv": ["git", "status", "--short"]})
    c.tool(pod, "run", {"argv": ["curl", "-H", "Authorization: Bearer sk-live-abcdefghijkl", "https://x.example/"],
                        "env": {"API_TOKEN": "tok-value-123"}})
    key = ["--public-key", str(node.secrets / "audit.pub")]
    p = cli.run("audit", "show", pod[:8], *key)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "not sealed" in out.splitlines()[0]
    assert re.search(r"\bread\s+allow\s+README\.md$", out, re.M), out
    assert re.search(r"\bwrite\s+allow\s+notes\.txt \(23 bytes\)$", out, re.M), out
    assert re.search(r"\brun\s+\S+\s+git status --short$", out, re.M), out
    assert re.search(r"\brun\s+deny/command_denied\s+curl -H 'Authorization: <redacted>' https://x\.example/ "
                     r"env=API_TOKEN$", out, re.M), out
    log = node.audit_path(pod).read_text()
    for secret in ("hunter2-secret-content", "sk-live-abcdefghijkl", "tok-value-123"):
        assert secret not in log and secret not in out, secret
    doc = json.loads(cli.run("audit", "show", pod, *key, "--output", "json").stdout)
    runs = [r for r in doc["records"] if r["op"] == "run" and r["decision"] != "request"]
    assert runs[0]["detail"]["argv"] == ["git", "status", "--short"]
    assert doc["valid"] is True
    c.delete_pod(pod)
    p = cli.run("audit", "show", pod, *key)
    assert p.returncode == 0 and ", sealed" in p.stdout.splitlines()[0], p.stdout
