# SPDX-License-Identifier: Apache-2.0
"""Regressions found by walking the README and docs/cli.md as a new user: usage errors that
name the verb and the help, missing keys and bad URLs that name their fix, `profiles` showing
what needs approval, `ps` showing when a pod was created and why it ended, a setup rerun that
keeps the ports of the first run, a state dir the VMM user can traverse, and `audit verify POD`
for a pod the node forgot. Each test uses its own HOME / XDG dirs / ports.
"""
import http.server
import json
import re
import os
import pathlib
import socket
import stat
import subprocess
import threading

import pytest

from conftest import binary
from helpers.nodeclient import load_key, response_mac_header

HELPERS = pathlib.Path(__file__).resolve().parent.parent / "helpers"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def built(name):
    try:
        return binary(name)
    except pytest.fail.Exception:
        return None


class Env:
    def __init__(self, tmp):
        self.tmp = tmp
        self.nucleus = str(binary("nucleus"))
        self.port = free_port()
        self.metrics_port = free_port()
        bindir = tmp / "bin"
        bindir.mkdir()
        fake = bindir / "nucleus-node"
        fake.symlink_to(HELPERS / "fake_node.py")
        self.env = {
            "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(tmp / "home"),
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "XDG_STATE_HOME": str(tmp / "state"),
            "NUCLEUS_IMAGES_DIR": str(tmp / "images"),
            "NUCLEUS_NODE_BINARY": str(fake),
            "LANG": "C.UTF-8",
        }
        (tmp / "home").mkdir()
        self.config_dir = tmp / "config" / "nucleus"
        self.secrets = self.config_dir / "secrets"

    def run(self, *args, check=None, env=None, umask=None, timeout=120):
        e = dict(self.env)
        e.update(env or {})
        pre = (lambda: os.umask(umask)) if umask is not None else None
        p = subprocess.run([self.nucleus, *args], env=e, capture_output=True, text=True,
                           timeout=timeout, preexec_fn=pre)
        if check is not None:
            assert p.returncode == check, f"{args}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    def setup(self, *extra, check=0, ports=True):
        listen = ["--listen", f"127.0.0.1:{self.port}",
                  "--metrics-listen", f"127.0.0.1:{self.metrics_port}"] if ports else []
        return self.run("setup", "--skip-images", "--skip-deps", *listen, *extra, check=check)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.run("stop", "--force")


def test_option_errors_name_the_verb_and_the_help(env):
    for args, verb, what in [(["ps", "--bogus"], "ps", "unrecognized option '--bogus'"),
                             (["doctor", "--output"], "doctor", "requires an argument"),
                             (["logs", "-x", "p"], "logs", "invalid option"),
                             (["setup", "--nope"], "setup", "unrecognized option"),
                             (["ps", "--output", "yaml"], "ps", "--output must be 'text' or 'json'")]:
        p = env.run(*args)
        assert p.returncode == 2, args
        assert p.stdout == "", args
        first, _, rest = p.stderr.partition("\n")
        assert first.startswith(f"nucleus {verb}: ") and what in first, p.stderr
        assert f"Run 'nucleus {verb} --help' for usage." in rest, p.stderr


def test_commands_before_setup_name_the_fix(env):
    for args in (["ps"], ["ps", "--output", "json"], ["logs", "pod-1"]):
        p = env.run(*args)
        assert p.returncode == 1, args
        assert "does not exist" in p.stderr and "fix: run 'nucleus setup'" in p.stderr, p.stderr


def test_bad_node_url_is_named_alone(env):
    env.setup()
    p = env.run("ps", env={"NUCLEUS_NODE_URL": "not-a-url"})
    assert p.returncode == 1
    assert "Invalid node URL 'not-a-url' (from NUCLEUS_NODE_URL)" in p.stderr, p.stderr
    assert "actor" not in p.stderr and "fix:" in p.stderr


def test_profiles_text_lists_what_needs_approval(env):
    doc = json.loads(env.run("profiles", "--output", "json", check=0).stdout)
    text = env.run("profiles", check=0).stdout
    blocks = {b[0]: "\n".join(b) for b in _blocks(text)}
    n = 0
    for prof in doc["profiles"]:
        approvals = prof["obligations"].get("approvals", [])
        block = blocks[prof["name"]]
        if approvals:
            n += 1
            assert f"    needs approval: {', '.join(approvals)}" in block.splitlines(), block
        else:
            assert "needs approval" not in block
    assert n > 0


def _blocks(text):
    cur = []
    for line in text.splitlines():
        if line and not line.startswith(" "):
            if cur:
                yield cur
            cur = [line]
        elif line:
            cur.append(line)
    if cur:
        yield cur


class _Pods(http.server.BaseHTTPRequestHandler):
    KEY = None  # the node key: a stand-in must sign its answers (docs/api.md) to be believed
    POD = {"id": "0b5c1e9e-3a6f-4c39-9d1e-5f1b2d3c4a5e", "name": "fix-bug", "state": "failed",
           "created": "2026-11-29T21:11:10.984Z", "driver": "qemu",
           "reason": "QEMU exited before the channel came up"}

    def do_GET(self):
        body = json.dumps({"pods": [self.POD]}).encode()
        status = 200 if self.path == "/v1/pods" else 404
        self.send_response(status)
        for k, v in response_mac_header(self.KEY, self.headers, status, body).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_ps_shows_created_and_reason(env):
    env.setup()
    _Pods.KEY = load_key(next(env.secrets.glob("node*.key")))
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Pods)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        # -a: the pod has ended (ps alone lists the live ones).
        p = env.run("ps", "-a", env={"NUCLEUS_NODE_URL": f"http://127.0.0.1:{srv.server_address[1]}"},
                    check=0)
    finally:
        srv.shutdown()
    head, row = p.stdout.splitlines()[:2]
    assert head.split() == ["ID", "NAME", "STATE", "CREATED", "REASON"]
    assert row.split()[:4] == [_Pods.POD["id"], "fix-bug", "failed", _Pods.POD["created"]], row
    assert row.endswith(_Pods.POD["reason"])


def test_setup_rerun_keeps_the_ports_of_the_first_run(env):
    env.setup()
    p = env.setup("--output", "json", ports=False)
    doc = json.loads(p.stdout)
    warn = [s for s in doc["steps"] if s["result"] == "warning" and s["step"] in ("node.toml", "config")]
    assert warn == [] and doc["changed"] == 0, doc["steps"]
    node_toml = (env.config_dir / "node.toml").read_text()
    assert f'listen = "127.0.0.1:{env.port}"' in node_toml
    # An explicit flag wins: node.toml and config.toml move together, nothing is "kept".
    new = free_port()
    q = env.setup("--output", "json", "--listen", f"127.0.0.1:{new}", ports=False)
    steps = json.loads(q.stdout)["steps"]
    assert not [s for s in steps if s["result"] == "warning" and s["step"] in ("node.toml", "config")], steps
    assert f'listen = "127.0.0.1:{new}"' in (env.config_dir / "node.toml").read_text()
    assert f'url = "http://127.0.0.1:{new}"' in (env.config_dir / "config.toml").read_text()


def test_start_leaves_the_state_dir_traversable(env):
    """pods/ live below the state dir; a 0700 state dir locks the VMM user out of them."""
    state = env.tmp / "deep" / "state"
    e = {"NUCLEUS_STATE_DIR": str(state)}
    env.setup()
    env.run("start", "--timeout", "30", env=e, umask=0o077, check=0)
    for d in (state, state.parent):
        mode = stat.S_IMODE(d.stat().st_mode)
        assert mode & 0o011 == 0o011, f"{d}: {mode:o}"
    for d in ("run", "log"):
        assert stat.S_IMODE((state / d).stat().st_mode) == 0o700
    env.run("stop", env=e, check=0)


def test_audit_verify_pod_the_node_forgot_uses_the_log_on_disk(env):
    writer = built("test-audit-writer")
    if not writer:
        pytest.skip("test-audit-writer not built (unit tests disabled)")
    env.setup()
    pod = "5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    log = env.tmp / "state" / "nucleus" / "node" / "pods" / pod / "audit.jsonl"
    log.parent.mkdir(parents=True)
    subprocess.run([str(writer), str(log), pod, str(env.secrets / "audit.key"), "4"], check=True)
    env.run("start", "--timeout", "30", check=0)

    p = env.run("audit", "verify", pod)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"{pod}: valid (4 records, sealed"), p.stdout
    assert str(log) in p.stderr
    doc = json.loads(env.run("audit", "verify", pod, "--output", "json", check=0).stdout)
    assert doc["valid"] is True and doc["records"] == 4
    # A pod the node never had, with no log on disk: still the node's answer.
    q = env.run("audit", "verify", "0" * 8 + "-0000-4000-8000-" + "0" * 12)
    assert q.returncode == 1 and "not_found" in q.stderr


def test_audit_verify_unsealed_names_allow_unsealed(env):
    writer = built("test-audit-writer")
    if not writer:
        pytest.skip("test-audit-writer not built (unit tests disabled)")
    env.setup()
    log = env.tmp / "running.jsonl"
    subprocess.run([str(writer), str(log), "pod-1", str(env.secrets / "audit.key"), "3"], check=True)
    lines = log.read_text().splitlines()
    assert '"seal"' in lines[-1]
    log.write_text("\n".join(lines[:-1]) + "\n")
    p = env.run("audit", "verify", str(log))
    assert p.returncode == 1 and "INVALID" in p.stdout
    assert "--allow-unsealed" in p.stderr, p.stderr
    assert env.run("audit", "verify", str(log), "--allow-unsealed").returncode == 0


def test_doctor_names_a_state_dir_the_vmm_user_cannot_reach(env):
    import pwd
    import shutil
    import tempfile
    try:
        pwd.getpwnam("nucleus-vmm")
    except KeyError:
        pytest.skip("no nucleus-vmm user on this machine (VMMs run as root)")
    base = pathlib.Path(tempfile.mkdtemp(prefix="nucleus-newuser-", dir="/var/tmp"))
    try:
        base.chmod(0o711)
        state = base / "state"
        state.mkdir(mode=0o700)
        state.chmod(0o700)
        e = {"NUCLEUS_STATE_DIR": str(state)}
        env.env.update(e)  # setup writes [node] state_dir = <state>/node
        env.setup()
        doc = json.loads(env.run("doctor", "--output", "json", env=e).stdout)
        c = {x["name"]: x for x in doc["checks"]}["state dir"]
        assert c["status"] == "ERR" and c["fix"] == f"chmod o+x {state}", c
        assert "0700" in c["message"] and str(state / "node") in c["message"]
        assert doc["ok"] is False
        state.chmod(0o711)
        doc = json.loads(env.run("doctor", "--output", "json", env=e).stdout)
        assert {x["name"]: x for x in doc["checks"]}["state dir"]["status"] == "OK"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_doctor_warns_of_ksm_and_names_the_host_switch(env):
    env.setup()
    doc = json.loads(env.run("doctor", "--output", "json").stdout)
    assert "ksm" not in {x["name"] for x in doc["checks"]}  # off by default: no line
    p = env.config_dir / "node.toml"
    p.write_text(p.read_text().replace('driver = "qemu"\n', 'driver = "qemu"\nksm = true\n', 1))
    doc = json.loads(env.run("doctor", "--output", "json").stdout)
    c = {x["name"]: x for x in doc["checks"]}["ksm"]
    assert c["status"] == "WARN" and "side channel" in c["message"], c
    with open("/sys/kernel/mm/ksm/run") as f:
        on = f.read().startswith("1")
    assert c.get("fix") == (None if on else "echo 1 > /sys/kernel/mm/ksm/run"), c
    # With ksmd on, what merging saves right now.
    assert ("pages_sharing" in c["message"]) == on, c


def test_doctor_does_not_probe_kvm_when_node_toml_pins_tcg(env, tmp_path):
    # setup wrote accel = "tcg" (its probe failed): the node never probes, nor does doctor (a
    # broken /dev/kvm made every doctor wait out a probe boot). Stand-in image files: a probe
    # would fail on them, so the message shows none ran.
    env.setup()
    images = tmp_path / "images"
    images.mkdir()
    for name in ("vmlinux", "initramfs.cpio.gz"):
        (images / name).write_bytes(b"")
    p = env.config_dir / "node.toml"
    text = p.read_text()
    assert "accel = " in text
    p.write_text(re.sub(r'accel = "[a-z]+"', 'accel = "tcg"', text, count=1))
    doc = json.loads(env.run("doctor", "--output", "json", env={"NUCLEUS_IMAGES_DIR": str(images)}).stdout)
    c = {x["name"]: x for x in doc["checks"]}["acceleration"]
    assert c["status"] == "WARN" and 'accel = "tcg"; not probed' in c["message"], c
    assert 'accel = \\"auto\\"' in json.dumps(c["fix"]), c


def test_doctor_url_from_the_environment_names_the_variable(env):
    env.setup()
    p = env.run("doctor", "--output", "json", env={"NUCLEUS_NODE_URL": "http://127.0.0.1:1"})
    c = {x["name"]: x for x in json.loads(p.stdout)["checks"]}["node address"]
    assert c["status"] == "ERR"
    assert c["fix"] == f"unset NUCLEUS_NODE_URL or set it to http://127.0.0.1:{env.port}", c
    # From config.toml the fix still names the file.
    q = env.run("doctor", "--output", "json", env={"NUCLEUS_NODE_URL": ""})
    assert "node address" not in {x["name"] for x in json.loads(q.stdout)["checks"]}


def test_no_command_is_a_usage_error_on_stderr(env):
    p = env.run()
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("Usage: nucleus") and "Commands:" in p.stderr
    assert env.run("--help", check=0).stdout.startswith("Usage: nucleus")


def test_show_paths_says_when_the_secrets_dir_is_missing(env):
    p = env.run("secrets", "show-paths", check=0)
    assert f"secrets dir:  {env.secrets} (missing; fix: nucleus setup)" in p.stdout
    env.setup()
    p = env.run("secrets", "show-paths", check=0)
    assert f"secrets dir:  {env.secrets} (0700)" in p.stdout


def test_logs_of_a_pod_the_node_forgot_name_its_files(env):
    env.setup()
    pod = "7e6d5c4b-3a29-4180-9f7e-6d5c4b3a2918"
    d = env.tmp / "state" / "nucleus" / "node" / "pods" / pod
    d.mkdir(parents=True)
    (d / "console.log").write_text("booted\n")
    env.run("start", "--timeout", "30", check=0)
    p = env.run("logs", pod)
    assert p.returncode == 1 and "not_found" in p.stderr
    assert f"its logs stay in {d} (console.log, node.log)" in p.stderr, p.stderr
    q = env.run("logs", "0" * 8 + "-0000-4000-8000-" + "0" * 12)
    assert q.returncode == 1 and "logs stay in" not in q.stderr


def test_failures_are_prefixed_with_the_verb(env):
    p = env.run("start")
    assert p.returncode == 1
    assert p.stderr.startswith("nucleus start: No CLI config at "), p.stderr
    assert "fix: nucleus setup" in p.stderr


def test_config_says_why_the_node_mode_was_chosen(env):
    env.setup()
    doc = json.loads(env.run("config", "--output", "json", check=0).stdout)
    mode = doc["node.mode"]
    expect = {"daemon": "detected: no systemd unit, so 'nucleus start' runs a pid-file daemon",
              "systemd": "detected: nucleus-node.service under systemd"}
    assert mode["source"] == expect[mode["value"]], mode


def test_start_with_the_port_taken_shows_this_runs_lines_and_the_fix(env):
    env.setup()
    log = env.tmp / "state" / "nucleus" / "log" / "nucleus-node.log"
    log.parent.mkdir(parents=True)
    log.write_text("OLD RUN LINE\n")
    log.chmod(0o600)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", env.port))
        s.listen()
        p = env.run("start", "--timeout", "20")
        j = env.run("start", "--timeout", "20", "--output", "json")
    # A listener that never answers is named as such before any node is started (it would
    # receive every run's workspace), not found later in the node's log.
    assert p.returncode == 1
    lines = p.stderr.splitlines()
    assert all(x.startswith("nucleus start: ") for x in lines), p.stderr
    assert f"something else is listening on {env.port} and does not hold the node key" in p.stderr
    assert "OLD RUN LINE" not in p.stderr and "fix: stop that program" in p.stderr
    doc = json.loads(j.stdout)
    assert doc["ok"] is False and doc["kind"] == "address_in_use" and "OLD RUN LINE" not in doc["error"]


def test_start_waits_for_the_warm_pool(env):
    """`nucleus start` returned while the pooled pod was still booting, so the first create
    (make demo's run) missed the pool and booted a second VM cold beside it."""
    env.setup("--pool-size", "1")
    p = env.run("start", "--timeout", "60", check=0)
    assert "warm pool: 1 of 1 pooled pod(s) ready\n" in p.stdout, p.stdout + p.stderr
    assert "waiting for its warm pool (0 of 1 pooled pod(s) ready)" in p.stderr, p.stderr
    # Already running and full: no wait, the same line; JSON carries the figures.
    j = json.loads(env.run("start", "--timeout", "60", "--output", "json", check=0).stdout)
    assert j["pool"] == {"size": 1, "ready": 1}, j


def test_start_without_a_pool_says_nothing_of_one(env):
    env.setup("--pool-size", "0")
    p = env.run("start", "--timeout", "60", check=0)
    assert "warm pool" not in p.stdout + p.stderr, p.stdout + p.stderr
    j = json.loads(env.run("start", "--timeout", "60", "--output", "json", check=0).stdout)
    assert "pool" not in j, j


def test_stop_with_a_pod_names_delete(env):
    """`nucleus stop POD` reads like ending a pod; stop ends the node and says what ends a pod."""
    p = env.run("stop", "trialpod", check=2)
    assert "unexpected argument 'trialpod'" in p.stderr and "nucleus delete POD" in p.stderr, p.stderr


def test_doctor_names_images_built_with_other_guest_binaries(env, tmp_path):
    # After an upgrade that skipped `nucleus setup`, the images still carry the old proxy:
    # pods would boot it and fail what the new node asks of them. Doctor says so and how to
    # fix it. Stand-in artifacts with the sizes the manifest records.
    import hashlib
    env.setup()
    p = env.config_dir / "node.toml"
    p.write_text(re.sub(r'accel = "[a-z]+"', 'accel = "tcg"', p.read_text(), count=1))
    images = tmp_path / "images"
    images.mkdir()
    arts = {}
    for name in ("vmlinuz", "vmlinux", "initramfs.cpio.gz", "nucleus.ext4", "rootfs.ext4"):
        (images / name).write_bytes(b"x")
        arts[name] = {"key": "k", "sha256": "0" * 64, "size": 1}

    def sha(name):
        return hashlib.sha256(binary(name).read_bytes()).hexdigest()

    def doctor(proxy_sha):
        (images / "manifest.json").write_text(json.dumps({
            "artifacts": arts, "init_sha256": sha("nucleus-guest-init"), "proxy_sha256": proxy_sha}))
        doc = json.loads(env.run("doctor", "--output", "json",
                                 env={"NUCLEUS_IMAGES_DIR": str(images)}).stdout)
        return {x["name"]: x for x in doc["checks"]}["images"]

    c = doctor(sha("nucleus-tool-proxy"))
    assert c["status"] == "OK", c
    c = doctor("1" * 64)
    assert c["status"] == "ERR" and "another nucleus-tool-proxy" in c["message"], c
    assert str(binary("nucleus-tool-proxy")) in c["message"] and c["fix"].startswith("nucleus setup"), c
