# SPDX-License-Identifier: Apache-2.0
"""The `nucleus` CLI end to end: setup (idempotent), secrets born 0600, start/stop/doctor with
the node up, down and misconfigured, --output json purity, and the Lima path against a stand-in
limactl. Every test uses its own HOME / XDG dirs / ports, so engineers can run them at once.

A stand-in node (tests/helpers/fake_node.py, reached as <tmp>/bin/nucleus-node) checks our
signatures independently of the C client; test_real_node_* use the real nucleus-node when built.
"""
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import stat
import subprocess
import time

import pytest
import yaml

from conftest import binary

HELPERS = pathlib.Path(__file__).resolve().parent.parent / "helpers"
VERBS = ["setup", "start", "stop", "doctor", "profiles", "config", "secrets", "ps", "logs", "audit", "rm", "prune",
         "run", "approvals", "console", "credential", "snapshot", "fork"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Env:
    """An isolated user environment for the CLI."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.nucleus = str(binary("nucleus"))
        self.port = free_port()
        self.metrics_port = free_port()
        self.bindir = tmp / "bin"
        self.bindir.mkdir()
        fake = self.bindir / "nucleus-node"
        fake.symlink_to(HELPERS / "fake_node.py")
        self.env = {
            "PATH": f"{self.bindir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
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
        self.cleanup = []

    def run(self, *args, check=None, env=None, prefix=(), timeout=120):
        e = dict(self.env)
        e.update(env or {})
        p = subprocess.run([*prefix, self.nucleus, *args], env=e, capture_output=True, text=True,
                           timeout=timeout)
        if check is not None:
            assert p.returncode == check, f"{args}: rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        return p

    def setup(self, *extra, check=0):
        return self.run("setup", "--skip-images", "--listen", f"127.0.0.1:{self.port}",
                        "--metrics-listen", f"127.0.0.1:{self.metrics_port}", *extra, check=check)

    def stop_quietly(self):
        self.run("stop", "--force")


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.stop_quietly()
    for d in e.cleanup:
        shutil.rmtree(d, ignore_errors=True)


def checks(doc):
    return {c["name"]: c for c in doc["checks"]}


def test_help_on_every_command(env):
    p = env.run("--help", check=0)
    for v in VERBS:
        assert v in p.stdout
        q = env.run(v, "--help", check=0)
        assert q.stdout.startswith("Usage: nucleus"), v
        assert q.stderr == ""
    assert env.run("no-such-verb").returncode == 2
    assert env.run("doctor", "--bogus").returncode == 2
    assert env.run("doctor", "--output", "yaml").returncode == 2
    assert re.match(r"nucleus \d+\.\d+\.\d+\n", env.run("--version", check=0).stdout)


def test_setup_then_idempotent(env):
    first = env.setup()
    assert "changed" in first.stderr and "Setup complete" in first.stdout
    cfg = (env.config_dir / "config.toml").read_text()
    assert f'url = "http://127.0.0.1:{env.port}"' in cfg
    node = (env.config_dir / "node.toml").read_text()
    assert f'listen = "127.0.0.1:{env.port}"' in node
    assert str(env.secrets / "node.key") in node
    # The warm pool by the host's RAM (docs/config.md): 1 with >= 4 GiB, else 0.
    ram_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    assert f"[pool.images]\ndefault = {1 if ram_mib >= 4096 else 0}\n" in node
    # The node config names secrets by path only; no key material in any config.
    key = (env.secrets / "node.key").read_text().strip()
    assert key not in node and key not in cfg
    assert stat.S_IMODE((env.secrets).stat().st_mode) == 0o700
    for f in ["node.key", "approver.key", "audit.key"]:
        assert stat.S_IMODE((env.secrets / f).stat().st_mode) == 0o600

    second = env.setup()
    assert "Nothing changed" in second.stdout
    assert "changed  " not in second.stderr.replace("unchanged", "")
    assert (env.secrets / "node.key").read_text().strip() == key

    third = env.setup("--output", "json")
    doc = json.loads(third.stdout)
    assert doc["ok"] is True and doc["changed"] == 0
    assert {s["step"] for s in doc["steps"]} >= {"secrets", "config", "node.toml", "service"}


def test_setup_keeps_edited_config_unless_forced(env):
    env.setup()
    cfg = env.config_dir / "config.toml"
    cfg.write_text(cfg.read_text() + "# my edit\n")
    p = env.setup()
    assert "kept your version" in p.stderr
    assert "# my edit" in cfg.read_text()
    env.setup("--force")
    assert "# my edit" not in cfg.read_text()


def test_rotate_secrets(env):
    env.setup()
    old = (env.secrets / "node.key").read_text()
    p = env.setup("--rotate-secrets")
    assert "rotated" in p.stderr
    assert (env.secrets / "node.key").read_text() != old
    old = (env.secrets / "audit.key").read_text()
    env.run("secrets", "rotate", "audit", check=0)
    assert (env.secrets / "audit.key").read_text() != old


@pytest.mark.parametrize("umask", ["0000", "0022"])
def test_secret_files_are_0600_from_creation(env, umask):
    """Every open() that creates a file in the secrets dir asks for O_EXCL and mode 0600, so no
    moment exists where a wider mode applies, whatever the umask."""
    if not shutil.which("strace"):
        pytest.skip("strace not installed")
    log = env.tmp / "strace.log"
    # (LeakSanitizer cannot run under ptrace: off for this one run in sanitizer builds.)
    p = env.run("setup", "--skip-images", "--skip-deps", "--listen", f"127.0.0.1:{env.port}",
                env={"ASAN_OPTIONS": "detect_leaks=0"},
                prefix=("strace", "-f", "-qq", "-e", "trace=open,openat,creat,chmod,fchmod,fchmodat,mkdir,mkdirat",
                        "-o", str(log), "sh", "-c", f'umask {umask}; exec "$@"', "sh"))
    assert p.returncode == 0, p.stderr
    secret_names = ["node.key", "approver.key", "approver.pub", "audit.key", "audit.pub"]
    creates = []
    for line in log.read_text().splitlines():
        m = re.search(r'\bopen(?:at)?\((?:AT_FDCWD, |\d+, )?"([^"]+)", ([A-Z_|]+)(?:, (0\d+))?\)', line)
        if m and "O_CREAT" in m.group(2):
            path, flags, mode = m.groups()
            base = os.path.basename(path)
            # Relative names are opened against the secrets dir fd (atomic temp files).
            if str(env.secrets) in path or any(base.startswith(n) for n in secret_names + ["secrets-metadata"]):
                creates.append(base)
                assert "O_EXCL" in flags, line
                assert mode == "0600", line
        if re.search(r"\bmkdir(at)?\(", line) and str(env.secrets) + '"' in line:
            assert ", 0700)" in line, line
        # Nothing in the secrets dir is ever chmodded wider than 0600.
        m = re.search(r"\bchmod(?:at)?\(.*, (0\d+)\)", line)
        if m and str(env.secrets) in line:
            assert int(m.group(1), 8) & 0o077 == 0, line
    for f in secret_names:
        assert any(c.startswith(f) for c in creates), f"no creating open() seen for {f}"
    for f in env.secrets.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_start_doctor_stop_with_node(env):
    env.setup()
    p = env.run("start", "--timeout", "30", check=0)
    assert "ready" in p.stdout
    pid = int((env.tmp / "state" / "nucleus" / "run" / "nucleus-node.pid").read_text().splitlines()[0])
    assert os.path.exists(f"/proc/{pid}")
    # Second start: already running, still verified with a signed request.
    assert "already running" in env.run("start", check=0).stdout

    d = env.run("doctor", "--output", "json")
    doc = json.loads(d.stdout)
    c = checks(doc)
    assert c["node"]["status"] == "OK", c["node"]
    for name in ["config", "node config", "node.key", "approver.key", "audit.key", "vmm", "disk"]:
        assert c[name]["status"] == "OK", c[name]
    assert c["acceleration"]["status"] in ("OK", "WARN")
    if c["acceleration"]["status"] == "WARN":
        assert "TCG" in c["acceleration"]["message"]

    ps = env.run("ps", "--output", "json", check=0)
    assert json.loads(ps.stdout) == {"pods": []}
    assert "ID" in env.run("ps", check=0).stdout

    s = env.run("stop", check=0)
    assert "stopped" in s.stdout
    for _ in range(50):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}")
    assert "not running" in env.run("stop", check=0).stdout


def test_doctor_node_down_names_fix(env):
    env.setup()
    p = env.run("doctor")
    assert p.returncode == 1
    assert re.search(r"^\[ERR\] node: not reachable", p.stdout, re.M)
    assert "fix: nucleus start" in p.stdout
    doc = json.loads(env.run("doctor", "--output", "json").stdout)
    assert doc["ok"] is False and checks(doc)["node"]["fix"] == "nucleus start"


def test_not_set_up_names_fix(env):
    p = env.run("start")
    assert p.returncode == 1 and "nucleus setup" in p.stderr
    d = env.run("doctor")
    assert d.returncode == 1
    assert "[ERR] config" in d.stdout and "fix: nucleus setup" in d.stdout
    assert "[ERR] secrets" in d.stdout


def test_wrong_key_is_unauthorized_with_fix(env):
    env.setup()
    env.run("start", check=0)
    # The running node keeps the old key; the CLI now signs with a new one.
    env.run("secrets", "rotate", "node", check=0)
    d = env.run("doctor", "--output", "json")
    c = checks(json.loads(d.stdout))["node"]
    assert c["status"] == "ERR" and "rejected our signature" in c["message"]
    assert "node.key" in c["fix"]
    env.run("stop", check=0)
    # Restarting picks the new key up.
    env.run("start", check=0)
    assert checks(json.loads(env.run("doctor", "--output", "json").stdout))["node"]["status"] == "OK"


def test_url_and_listen_mismatch_is_reported(env):
    env.setup()
    cfg = env.config_dir / "config.toml"
    cfg.write_text(cfg.read_text().replace(f"127.0.0.1:{env.port}", "127.0.0.1:1"))
    d = env.run("doctor")
    assert d.returncode == 1
    assert f"[ERR] node address: the CLI uses http://127.0.0.1:1 but the node listens on 127.0.0.1:{env.port}" in d.stdout


def test_bad_secret_mode_is_reported(env):
    env.setup()
    (env.secrets / "node.key").chmod(0o644)
    d = env.run("doctor")
    assert d.returncode == 1
    assert "[ERR] node.key" in d.stdout and "chmod 600" in d.stdout
    assert env.run("start").returncode == 1


def test_start_without_node_binary_names_fix(env):
    env.setup()
    p = env.run("start", env={"NUCLEUS_NODE_BINARY": str(env.tmp / "missing")})
    assert p.returncode == 1
    assert "nucleus-node not found" in p.stderr and "NUCLEUS_NODE_BINARY" in p.stderr


def test_node_dying_at_startup_shows_log(env):
    env.setup()
    # Break the node config: the stand-in node cannot parse it and exits.
    (env.config_dir / "node.toml").write_text("[api\n")
    p = env.run("start", "--timeout", "20")
    assert p.returncode == 1
    assert "exited during startup" in p.stderr


def test_stop_force_kills_stubborn_node(env):
    env.setup()
    env.run("start", check=0, env={"FAKE_NODE_IGNORE_TERM": "1"})
    p = env.run("stop", "--force", timeout=60)
    assert p.returncode == 0 and "stopped" in p.stdout


def test_start_while_the_old_node_is_still_exiting(env):
    """A node that got SIGTERM (a `nucleus stop` that timed out) still runs for a while and no
    longer answers. `start` waits for it to go and starts a fresh one; it used to report that
    node's exit as "exited during startup", with the old node's log lines."""
    env.setup()
    with open(env.config_dir / "node.toml", "a") as f:
        f.write("\n[fake]\nlinger_after_term = 3\n")
    env.run("start", check=0)
    pidfile = env.tmp / "state" / "nucleus" / "run" / "nucleus-node.pid"
    old = int(pidfile.read_text().split()[0])
    os.kill(old, signal.SIGTERM)
    p = env.run("start", "--timeout", "60")
    assert p.returncode == 0, p.stderr
    assert "exited during startup" not in p.stderr
    assert "was shutting down" in p.stderr
    assert int(pidfile.read_text().split()[0]) != old
    env.stop_quietly()


def test_stop_names_the_live_pods_it_ends(env):
    """Stopping the node ends its live pods (and the runs on them): stop says which, before."""
    env.setup()
    with open(env.config_dir / "node.toml", "a") as f:
        f.write("\n[fake]\nlive_pod = \"run-proj\"\n")
    env.run("start", check=0)
    p = env.run("stop", check=0)
    assert "ending 1 live pod(s) with the node" in p.stderr, p.stderr
    assert "0f0f0f0f-0000-4000-8000-000000000001 (run-proj)" in p.stderr
    env.run("start", check=0)
    j = json.loads(env.run("stop", "--output", "json", check=0).stdout)
    assert [x["name"] for x in j["ended_pods"]] == ["run-proj"], j
    j = json.loads(env.run("stop", "--output", "json", check=0).stdout)
    assert j["ended_pods"] == [] and j["was_running"] is False


def test_json_output_is_only_json(env):
    env.setup()
    for args in (["doctor"], ["config"], ["secrets", "show-paths"], ["profiles"], ["stop"],
                 ["setup", "--skip-images", "--listen", f"127.0.0.1:{env.port}",
                  "--metrics-listen", f"127.0.0.1:{env.metrics_port}"]):
        p = env.run(*args, "--output", "json", env={"NUCLEUS_NODE_URL": f"http://127.0.0.1:{env.port}"})
        json.loads(p.stdout)  # exactly one document, nothing else
        assert p.stdout.count("\n{") == 0


def test_config_shows_sources(env):
    env.setup()
    doc = json.loads(env.run("config", "--output", "json", check=0).stdout)
    assert doc["node.url"]["value"] == f"http://127.0.0.1:{env.port}"
    assert doc["node.url"]["source"] == "file" and doc["node.url"]["line"] > 0
    # [budget] keys apply only when set in the file; unset they say what applies instead.
    assert doc["budget.max_cost_usd"] == {"value": None, "source": "unset: the profile's own budget"}
    assert doc["budget.timeout_seconds"]["value"] is None
    assert doc["default_profile"] == {"value": "restrictive", "source": "default"}
    assert "auth.use_keychain" not in doc
    doc = json.loads(env.run("config", "--output", "json", env={"NUCLEUS_NODE_URL": "http://127.0.0.1:1"}).stdout)
    assert doc["node.url"] == {"value": "http://127.0.0.1:1", "source": "NUCLEUS_NODE_URL"}
    paths = json.loads(env.run("secrets", "show-paths", "--output", "json", check=0).stdout)
    assert paths["secrets"]["node.key"] == str(env.secrets / "node.key")


def test_profiles(env):
    doc = json.loads(env.run("profiles", "--output", "json", check=0).stdout)
    names = {p["name"] for p in doc["profiles"]}
    assert {"restrictive", "read_only"} & names or {"restrictive", "read-only"} & names
    assert all("capabilities" in p for p in doc["profiles"])
    assert "restrictive" in env.run("profiles", check=0).stdout


def test_profiles_show_and_export_round_trip(env):
    """Issue 14: `profiles show` prints the whole policy (command rules included); `profiles
    export` writes a file that the loader of `nucleus run --config` reads back to the same
    policy, for every profile and both formats."""
    text = env.run("profiles", "show", "fix-issue", check=0).stdout
    for want in ("python3 -m unittest", "node --test", "blocked rules", "git_push     never", "**/.env", "time window"):
        assert want in text, (want, text)
    names = [p["name"] for p in json.loads(env.run("profiles", "--output", "json", check=0).stdout)["profiles"]]
    assert len(names) >= 10
    for name in names:
        want = json.loads(env.run("profiles", "show", name, "--output", "json", check=0).stdout)
        for fmt in ("toml", "json"):
            out = env.tmp / f"{name}.{fmt}"
            env.run("profiles", "export", name, "--format", fmt, "-o", str(out), check=0)
            if fmt == "toml":
                import tomllib
                tomllib.loads(out.read_text())  # real TOML, not only our parser's subset
            got = json.loads(env.run("profiles", "show", "--config", str(out), "--output", "json", check=0).stdout)
            assert got == want, (name, fmt)
    # An edited file is read as edited; a broken one is refused with the file named.
    f = env.tmp / "edited.toml"
    f.write_text(env.run("profiles", "export", "fix-issue", check=0).stdout.replace('"gradle test",', '"tox",'))
    got = json.loads(env.run("profiles", "show", "-c", str(f), "--output", "json", check=0).stdout)
    assert "tox" in got["commands"]["allowed"] and "gradle test" not in got["commands"]["allowed"]
    f.write_text("[capabilities]\nread_files = \"sometimes\"\n")
    p = env.run("profiles", "show", "-c", str(f), check=1)
    assert "edited.toml" in p.stderr, p.stderr
    assert env.run("profiles", "show", "nope", check=2).returncode == 2
    assert env.run("profiles", "export", "fix-issue", "--format", "yaml", check=2).returncode == 2


def test_run_allow_command_is_checked_first(env, tmp_path):
    """--allow-command takes a command's words: shell syntax is a usage error before anything."""
    for bad in ("make test; id", "echo $HOME", "", "a | b"):
        p = env.run("run", "task", "-d", str(tmp_path), "--allow-command", bad, check=2)
        assert "--allow-command" in p.stderr, p.stderr


def test_logs_ps_audit_against_node(env):
    writer = built("test-audit-writer")
    env.setup()
    log = env.tmp / "state" / "nucleus" / "node" / "pod-1.audit.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    if writer:
        subprocess.run([str(writer), str(log), "pod-1", str(env.secrets / "audit.key"), "5"], check=True)
    env.run("start", check=0)

    p = env.run("logs", "pod-1", check=0)
    assert p.stdout == "console line 1\nescape \\x1b[31m red\n"  # escapes from the guest are defused
    # --follow polls the (bounded) log until the pod ends, printing each new line once.
    p = env.run("logs", "pod-1", "--follow", check=0)
    assert p.stdout == "".join(f"line {i}\n" for i in range(1, 5)), p.stdout
    p = env.run("logs", "pod-1", "--events", check=0)
    # TIME EVENT JSON; records without a time of their own get the time they arrived.
    assert re.fullmatch(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ audit \{"op":"read"\}\n)'
                        r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ audit \{"op":"run","x":"\\x1b\[2J"\}\n', p.stdout), p.stdout
    assert env.run("logs", "pod-1", "--events", "--follow").returncode == 2
    p = env.run("logs", "nope")
    assert p.returncode == 1 and "no pod has the id, id prefix or name 'nope'" in p.stderr, p.stderr

    if not writer:
        pytest.skip("test-audit-writer not built (unit tests disabled)")
    r = env.run("audit", "verify", str(log), "--output", "json", check=0)
    doc = json.loads(r.stdout)
    assert doc["valid"] is True and doc["records"] == 5 and doc["sealed"] is True
    assert "valid (5 records, sealed" in env.run("audit", "verify", "pod-1", check=0).stdout
    lines = log.read_text().splitlines()
    lines[2] = lines[2].replace('"seq":3', '"seq":4')
    log.write_text("\n".join(lines) + "\n")
    bad = env.run("audit", "verify", str(log))
    assert bad.returncode == 1 and "INVALID" in bad.stdout
    bad = env.run("audit", "verify", "pod-1")
    assert bad.returncode == 1


def test_logs_and_audit_usage(env):
    assert env.run("logs").returncode == 2
    assert env.run("logs", "../etc").returncode == 2
    assert env.run("audit", "verify").returncode == 2


# ---- the real thing: images and the real node -------------------------------------------------


def built(name):
    try:
        return binary(name)
    except pytest.fail.Exception:
        return None


IMAGES_CACHE = os.environ.get("NUCLEUS_TEST_IMAGES", "/var/cache/nucleus-test/images")


def images_env(env):
    """Let setup build into (or reuse) the image cache shared with tests/helpers/images.py."""
    if os.geteuid() != 0:
        pytest.skip("building images needs root")
    if not (built("nucleus-guest-init") and built("nucleus-tool-proxy") and shutil.which("qemu-system-x86_64")):
        pytest.skip("guest programs or QEMU not available")
    os.makedirs(IMAGES_CACHE, exist_ok=True)
    env.env["NUCLEUS_IMAGES_DIR"] = IMAGES_CACHE
    # A state dir the VMM user can reach (doctor checks it; pytest's tmp dirs are 0700).
    env.env["NUCLEUS_STATE_DIR"] = str(vmm_reachable_dir(env) / "state")
    return open(os.path.join(IMAGES_CACHE, ".lock"), "w")


def vmm_reachable_dir(env):
    import tempfile
    d = pathlib.Path(tempfile.mkdtemp(prefix="nucleus-cli-test-", dir="/var/tmp"))
    d.chmod(0o711)
    env.cleanup.append(d)
    return d


def initramfs_names(path):
    """The member names of a gzip-compressed cpio (newc) archive."""
    import gzip
    data, names, off = gzip.decompress(path.read_bytes()), [], 0
    while data[off:off + 6] == b"070701":
        size, namesize = int(data[off + 54:off + 62], 16), int(data[off + 94:off + 102], 16)
        name = data[off + 110:off + 110 + namesize - 1].decode()
        if name == "TRAILER!!!":
            break
        names.append(name)
        off = (off + 110 + namesize + 3) & ~3
        off = (off + size + 3) & ~3
    return names


def full_setup(env, *extra):
    # --pool-size 0: no warm pool here (a pooled VM would boot in every test that starts this node).
    return env.run("setup", "--listen", f"127.0.0.1:{env.port}",
                   "--metrics-listen", f"127.0.0.1:{env.metrics_port}", "--output", "json", "--pool-size", "0",
                   *extra,
                   timeout=1800)


def test_setup_end_to_end_with_images(env):
    import fcntl
    with images_env(env) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the same lock tests/helpers/images.py takes
        first = full_setup(env)
        assert first.returncode == 0, first.stderr
        second = full_setup(env)
    assert second.returncode == 0, second.stderr
    doc = json.loads(second.stdout)
    assert doc["changed"] == 0, doc
    steps = {s["step"]: s for s in doc["steps"]}
    assert steps["images"]["result"] == "unchanged"
    assert doc["accel"] in ("kvm", "tcg") and doc["accel_reason"]
    node = (env.config_dir / "node.toml").read_text()
    assert f'accel = "{doc["accel"]}"' in node and f'images_dir = "{IMAGES_CACHE}"' in node
    # The images setup builds carry the web_fetch helper on the system disk, as `nucleus image
    # build` does; the initramfs holds only the init and the modules.
    if built("nucleus-web-fetch"):
        ls = subprocess.run(["debugfs", "-R", "ls /bin", str(pathlib.Path(IMAGES_CACHE) / "nucleus.ext4")],
                            capture_output=True, text=True, check=True).stdout
        assert "nucleus-web-fetch" in ls and "nucleus-tool-proxy" in ls, ls
    names = initramfs_names(pathlib.Path(IMAGES_CACHE) / "initramfs.cpio.gz")
    assert "init" in names and not any(n.startswith("nucleus/bin") for n in names), names

    d = json.loads(env.run("doctor", "--output", "json").stdout)
    c = checks(d)
    assert c["images"]["status"] == "OK", c["images"]
    assert c["acceleration"]["status"] == "OK" or "TCG" in c["acceleration"]["message"]
    # Everything but the (not started) node passes.
    bad = [x for x in d["checks"] if x["status"] == "ERR" and x["name"] != "node"]
    assert not bad, bad


def test_real_node_setup_start_doctor(env):
    """The issue's "done": setup && start && doctor ends with every check OK or an explained WARN."""
    node = built("nucleus-node")
    if not node:
        pytest.skip("nucleus-node is not built")
    import fcntl
    env.env["NUCLEUS_NODE_BINARY"] = str(node)
    with images_env(env) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        p = full_setup(env)
    assert p.returncode == 0, p.stderr
    s = env.run("start", "--timeout", "60")
    assert s.returncode == 0, s.stderr + (pathlib.Path(env.env["NUCLEUS_STATE_DIR"]) / "log/nucleus-node.log").read_text()[-3000:]
    d = env.run("doctor", "--output", "json")
    doc = json.loads(d.stdout)
    for c in doc["checks"]:
        assert c["status"] in ("OK", "WARN"), c
        if c["status"] == "WARN":
            assert c["message"] and c.get("fix"), c
    assert d.returncode == 0
    assert env.run("stop", check=0).stdout.startswith("nucleus-node stopped")


# ---- macOS / Lima against a stand-in limactl -------------------------------------------------


def lima_env(env, chip, version, platform="darwin-arm64"):
    shutil.copy(HELPERS / "fake_limactl", env.bindir / "limactl")
    linux_bins = env.tmp / "linux-bin"
    linux_bins.mkdir(exist_ok=True)
    for n in ["nucleus", "nucleus-node", "nucleus-guest-init", "nucleus-tool-proxy"]:
        (linux_bins / n).write_text("#!/bin/sh\n")
    return {
        "NUCLEUS_TEST_PLATFORM": platform,
        "NUCLEUS_TEST_MAC_CHIP": chip,
        "NUCLEUS_TEST_MAC_VERSION": version,
        "FAKE_LIMACTL_LOG": str(env.tmp / "limactl.log"),
        "FAKE_LIMACTL_STATE": str(env.tmp / "limactl-state.json"),
        "NUCLEUS_LINUX_BIN_DIR": str(linux_bins),
    }


def calls(env):
    return [json.loads(l) for l in (env.tmp / "limactl.log").read_text().splitlines()]


@pytest.mark.parametrize("chip,version,platform,vmtype,nested", [
    ("Apple M3 Pro", "15.1", "darwin-arm64", "vz", True),
    ("Apple M4", "15.0", "darwin-arm64", "vz", True),
    ("Apple M3", "14.6", "darwin-arm64", "vz", False),
    ("Apple M1 Max", "15.2", "darwin-arm64", "vz", False),
    ("Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz", "13.6", "darwin-x86_64", "qemu", False),
])
def test_lima_setup(env, chip, version, platform, vmtype, nested):
    le = lima_env(env, chip, version, platform)
    p = env.run("setup", env=le)
    assert p.returncode == 0, p.stderr

    tmpl = yaml.safe_load((env.config_dir / "lima.yaml").read_text())
    assert tmpl["vmType"] == vmtype
    assert tmpl["arch"] == ("aarch64" if platform == "darwin-arm64" else "x86_64")
    assert tmpl["nestedVirtualization"] is nested
    assert tmpl["cpus"] == 4 and tmpl["memory"] == "8GiB" and tmpl["disk"] == "50GiB"
    assert tmpl["mounts"] == [{"location": str(env.config_dir / "artifacts"),
                               "mountPoint": "/nucleus/artifacts", "writable": False}]
    assert not any(m["location"] in ("~", env.env["HOME"]) for m in tmpl["mounts"])
    ports = {(f["guestPort"], f["hostPort"], f["hostIP"]) for f in tmpl["portForwards"]}
    assert ports == {(8080, 8080, "127.0.0.1"), (9080, 9080, "127.0.0.1")}
    assert tmpl["images"][0]["arch"] == tmpl["arch"]

    cl = calls(env)
    argvs = [c["argv"] for c in cl]
    assert ["--version"] in argvs
    assert any(a[:3] == ["create", "--tty=false", "--name"] and a[3] == "nucleus" for a in argvs)
    assert any(a[0] == "start" and a[-1] == "nucleus" for a in argvs)
    assert any(a[:4] == ["shell", "nucleus", "--", "sudo"] and "install" in a for a in argvs)
    assert ["shell", "nucleus", "--", "sudo", "/usr/local/bin/nucleus", "setup", "--secrets-provided"] in argvs
    # Secrets went over stdin, byte for byte, and never appear in any argv.
    for f in ["node.key", "approver.pub", "audit.key", "audit.pub"]:
        data = (env.secrets / f).read_bytes()
        assert any(c["stdin_sha256"] == hashlib.sha256(data).hexdigest() for c in cl), f
        for c in cl:
            assert data.decode().strip() not in " ".join(c["argv"])
    assert not (env.secrets / "approver.key").read_bytes().decode().strip() in (env.tmp / "limactl.log").read_text()
    shell_scripts = [a[-1] for a in argvs if a[:2] == ["shell", "nucleus"] and "-c" in a]
    assert all("umask 077" in s for s in shell_scripts)

    cfg = (env.config_dir / "config.toml").read_text()
    assert 'url = "http://127.0.0.1:8080"' in cfg
    doc = json.loads(env.run("config", "--output", "json", env=le, check=0).stdout)
    assert doc["node.mode"]["value"] == "lima"

    d = json.loads(env.run("doctor", "--output", "json", env=le).stdout)
    assert checks(d)["lima"]["status"] == "OK" and "Running" in checks(d)["lima"]["message"]
    assert checks(d)["node.key"]["status"] == "OK"

    # Idempotent: the VM exists and runs; no create, no start.
    n = len(cl)
    env.run("setup", env=le, check=0)
    again = [c["argv"] for c in calls(env)[n:]]
    assert not any(a[0] in ("create", "delete", "start") for a in again)

    # start/stop go through limactl.
    n = len(calls(env))
    env.run("stop", "--stop-vm", env=le, check=0)
    later = [c["argv"] for c in calls(env)[n:]]
    assert ["shell", "nucleus", "--", "sudo", "systemctl", "stop", "nucleus-node.service"] in later
    assert ["stop", "nucleus"] in later
    p = env.run("start", "--no-wait", env=le, check=0)
    later = [c["argv"] for c in calls(env)[n:]]
    assert ["start", "--tty=false", "nucleus"] in later
    assert ["shell", "nucleus", "--", "sudo", "systemctl", "start", "nucleus-node.service"] in later


def test_lima_force_recreates_and_missing_limactl(env):
    le = lima_env(env, "Apple M3", "15.0")
    env.run("setup", env=le, check=0)
    n = len(calls(env))
    env.run("setup", "--force", env=le, check=0)
    again = [c["argv"] for c in calls(env)[n:]]
    assert ["delete", "--force", "nucleus"] in again
    assert any(a[0] == "create" for a in again)
    (env.bindir / "limactl").unlink()
    p = env.run("setup", env=le)
    assert p.returncode == 1 and "brew install lima" in p.stderr


# ---- shell completions ---------------------------------------------------------------------------

COMPLETIONS = pathlib.Path(__file__).resolve().parent.parent.parent / "packaging" / "completions"


def bash_complete(words):
    script = (f"source {COMPLETIONS / 'nucleus.bash'}\n"
              f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
              "_nucleus; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split()


def test_bash_completion_knows_every_flag(env):
    assert set(VERBS) <= set(bash_complete(["nucleus", ""]))
    assert bash_complete(["nucleus", "doctor", "--output", ""]) == ["text", "json"]
    zsh = (COMPLETIONS / "_nucleus").read_text()
    for v in VERBS:
        helptext = env.run(v, "--help", check=0).stdout
        flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", helptext))
        offered = set(bash_complete(["nucleus", v, "--"]))
        assert flags <= offered, (v, flags - offered)
        for f in flags:
            assert f in zsh, (v, f)


def test_pid_file_is_verified(env):
    """A pid file naming another process is stale: stop must not signal it, start must not
    believe a node runs."""
    env.setup()
    env.run("start", check=0)
    pidfile = env.tmp / "state" / "nucleus" / "run" / "nucleus-node.pid"
    pid, exe = pidfile.read_text().splitlines()
    assert os.path.realpath(exe) == os.path.realpath(env.env["NUCLEUS_NODE_BINARY"]) or exe == env.env["NUCLEUS_NODE_BINARY"]
    # Any node binary name works, as long as it is the one we started.
    env.run("stop", check=0)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        pidfile.write_text(f"{sleeper.pid}\n{exe}\n")
        assert "not running" in env.run("stop", check=0).stdout
        assert sleeper.poll() is None  # untouched
        assert not pidfile.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_non_root_user_defaults(env):
    """As an ordinary user with only HOME set: everything lands under ~/.config/nucleus and
    ~/.local/state/nucleus, owned by that user, secrets 0600 in a 0700 dir."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to switch to nobody")
    import tempfile
    # pytest's tmp dirs are 0700 root: nobody needs a home it can reach.
    home = pathlib.Path(tempfile.mkdtemp(prefix="nucleus-cli-nobody-"))
    os.chmod(home, 0o755)
    os.chown(home, 65534, 65534)
    try:
        _non_root(env, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _non_root(env, home):
    e = {"HOME": str(home), "XDG_CONFIG_HOME": "", "XDG_STATE_HOME": "", "NUCLEUS_IMAGES_DIR": ""}
    prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    p = env.run("setup", "--skip-images", "--listen", f"127.0.0.1:{env.port}", env=e, prefix=prefix)
    assert p.returncode == 0, p.stderr
    secrets = home / ".config" / "nucleus" / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700 and secrets.stat().st_uid == 65534
    for f in secrets.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600 and f.stat().st_uid == 65534, f
    node = (home / ".config" / "nucleus" / "node.toml").read_text()
    assert f'state_dir = "{home}/.local/state/nucleus/node"' in node
    paths = json.loads(env.run("secrets", "show-paths", "--output", "json", env=e, prefix=prefix, check=0).stdout)
    assert paths["images_dir"] == f"{home}/.local/state/nucleus/images"
    assert "Nothing changed" in env.run("setup", "--skip-images", "--listen", f"127.0.0.1:{env.port}",
                                        env=e, prefix=prefix, check=0).stdout


def test_explicit_config_must_exist(env):
    p = env.run("-c", str(env.tmp / "nope.toml"), "config")
    assert p.returncode == 1 and "nope.toml" in p.stderr
    bad = env.tmp / "bad.toml"
    bad.write_text("[node]\nurl = \"http://127.0.0.1:1\"\nbogus = 1\n")
    p = env.run("-c", str(bad), "doctor")
    assert p.returncode == 1 and "bad.toml:3" in p.stdout


class Squatter:
    """Something else on the node's port: an HTTP server that answers every request itself."""

    def __init__(self, port, status=404):
        import http.server
        import threading

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def handle_any(self):
                body = json.dumps({"error": "not here", "kind": "not_found"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            do_GET = do_POST = do_PUT = do_DELETE = handle_any

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def node_processes(env):
    needle = str(env.config_dir / "node.toml").encode()
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if needle in pathlib.Path(f"/proc/{d}/cmdline").read_bytes():
                    out.append(int(d))
            except OSError:
                pass
    return out


@pytest.mark.parametrize("status", [401, 404])
def test_start_reports_a_squatter(env, status):
    """A program on the node's port is named as such (not blamed on the keys), and no node is
    started behind it."""
    env.setup()
    sq = Squatter(env.port, status)
    try:
        p = env.run("start", "--timeout", "10")
    finally:
        sq.close()
    assert p.returncode == 1
    assert f"something else is listening on {env.port} and does not hold the node key" in p.stderr, p.stderr
    assert "rejected our signed request" not in p.stderr
    assert not (env.tmp / "state" / "nucleus" / "run" / "nucleus-node.pid").exists()
    assert node_processes(env) == []


def test_failed_start_stops_what_it_started(env):
    env.setup()
    other = env.tmp / "other.key"
    fd = os.open(other, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (os.urandom(32).hex() + "\n").encode())
    os.close(fd)
    # The CLI signs with a key the node does not hold: the start fails, and the node it began
    # is stopped again.
    p = env.run("start", "--timeout", "20", env={"NUCLEUS_NODE_KEY_FILE": str(other)})
    assert p.returncode == 1 and "rejected our signed request" in p.stderr, p.stderr
    assert "did not become ready" not in p.stderr  # found at once, not after the timeout
    for _ in range(100):
        if not node_processes(env):
            break
        time.sleep(0.1)
    assert node_processes(env) == []
    assert not (env.tmp / "state" / "nucleus" / "run" / "nucleus-node.pid").exists()


def test_setup_listen_on_an_existing_setup_moves_both_files(env):
    env.setup()
    node = env.config_dir / "node.toml"
    cfg = env.config_dir / "config.toml"
    node.write_text(node.read_text() + "# my node edit\n")
    cfg.write_text(cfg.read_text() + "# my cli edit\n")
    port, metrics = free_port(), free_port()
    p = env.run("setup", "--skip-images", "--listen", f"127.0.0.1:{port}", "--metrics-listen",
                f"127.0.0.1:{metrics}", check=0)
    n, c = node.read_text(), cfg.read_text()
    assert f'listen = "127.0.0.1:{port}"' in n and f'metrics_listen = "127.0.0.1:{metrics}"' in n
    assert f'url = "http://127.0.0.1:{port}"' in c
    assert "# my node edit" in n and "# my cli edit" in c  # the rest of each file is kept
    assert "set [node] listen" in p.stderr
    doc = json.loads(env.run("config", "--output", "json", check=0).stdout)
    assert doc["node.url"]["value"] == f"http://127.0.0.1:{port}"
    env.port, env.metrics_port = port, metrics
    s = env.run("start", "--timeout", "30", check=0)
    assert f"127.0.0.1:{port}" in s.stdout
    # A rerun without the flags keeps the new addresses.
    env.run("setup", "--skip-images", check=0)
    assert f'listen = "127.0.0.1:{port}"' in node.read_text()


def test_vm_keys_are_setups_defaults(env):
    le = lima_env(env, "Apple M3", "15.0")
    env.config_dir.mkdir(parents=True)
    (env.config_dir / "config.toml").write_text("[vm]\ncpus = 2\nmemory_gib = 6\ndisk_gib = 20\n")
    p = env.run("setup", env=le)
    assert p.returncode == 0, p.stderr
    tmpl = yaml.safe_load((env.config_dir / "lima.yaml").read_text())
    assert tmpl["cpus"] == 2 and tmpl["memory"] == "6GiB" and tmpl["disk"] == "20GiB"
    # [vm] auto_start = false: start does not bring a stopped VM up.
    env.run("stop", "--stop-vm", env=le, check=0)
    cfg = env.config_dir / "config.toml"
    cfg.write_text(cfg.read_text().replace("[vm]\n", "[vm]\nauto_start = false\n", 1))
    n = len(calls(env))
    p = env.run("start", "--no-wait", env=le)
    assert p.returncode == 1 and "auto_start is false" in p.stderr, p.stderr
    assert not any(c["argv"][0] == "start" for c in calls(env)[n:])


def test_vm_flags_update_config(env):
    env.setup()
    cfg = env.config_dir / "config.toml"
    env.setup("--vm-cpus", "3", "--vm-memory-gib", "5")
    text = cfg.read_text()
    assert "cpus = 3" in text and "memory_gib = 5" in text and "disk_gib = 50" in text
    doc = json.loads(env.run("config", "--output", "json", check=0).stdout)
    assert doc["vm.cpus"]["value"] == 3 and doc["vm.cpus"]["source"] == "file"
