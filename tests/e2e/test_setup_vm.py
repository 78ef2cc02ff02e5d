# SPDX-License-Identifier: Apache-2.0
"""Dependencies through the setup step, with real microVMs (QEMU, TCG).

A lab host in a test namespace (tests/helpers/netlab.py) serves a PEP 503 simple index with one
pure-Python wheel written at test time. A Python project whose test imports that package:
- without a setup step, its test fails in the pod (the package is not there);
- with `nucleus run --setup 'python3 -m pip install ... -r requirements.txt' --setup-host
  www.lab.test`, the node opens the pod's egress to that name only while pip runs, the test
  passes in the pod, the audit log holds the setup records (command, exit status, duration,
  hosts; no output), the index is unreachable again afterwards (by name and by address), and
  what pip wrote into the workspace is not in the exported patch (the baseline was recorded
  again after setup);
- a failing setup command fails the run with its output on stderr and no agent step;
- bad input (an invalid host, shell syntax) is refused before anything starts.
All pods use the one shared toolchain image (tests/helpers/images.py, python3-pip included).
"""
import base64
import hashlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import pytest

from conftest import binary, require_root
from helpers.images import guest_images, toolchain_image  # noqa: F401  (session fixtures)
from helpers.netlab import NetLab
from helpers.nodeproc import NodeProc
from test_network_vm import _free_pool
from test_run_vm import cli_env, pods_gone

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("qemu-system-x86_64"), reason="needs qemu-system-x86_64"),
    pytest.mark.skipif(not shutil.which("dnsmasq"), reason="needs dnsmasq"),
]

PKG = "labpkg"
TEST = ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"]


def _wheel():
    """A pure-Python wheel by hand: a zip with the module, METADATA, WHEEL and RECORD."""
    files = {
        f"{PKG}/__init__.py": b"def answer():\n    return 42\n",
        f"{PKG}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {PKG}\nVersion: 1.0\n".encode(),
        f"{PKG}-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: nucleus-test\nRoot-Is-Purelib: true\n"
                                      b"Tag: py3-none-any\n",
    }
    record = ""
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\n"
    record += f"{PKG}-1.0.dist-info/RECORD,,\n"
    files[f"{PKG}-1.0.dist-info/RECORD"] = record.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _index(root):
    """root/simple/<pkg>/index.html (PEP 503) pointing at root/packages/<wheel>."""
    whl = _wheel()
    name = f"{PKG}-1.0-py3-none-any.whl"
    (root / "packages").mkdir(parents=True)
    (root / "packages" / name).write_bytes(whl)
    (root / "simple" / PKG).mkdir(parents=True)
    (root / "simple" / "index.html").write_text(f'<html><body><a href="{PKG}/">{PKG}</a></body></html>\n')
    sha = hashlib.sha256(whl).hexdigest()
    (root / "simple" / PKG / "index.html").write_text(
        f'<html><body><a href="../../packages/{name}#sha256={sha}">{name}</a></body></html>\n')


@pytest.fixture(scope="module")
def env(tmp_path_factory, toolchain_image):  # noqa: F811
    require_root()
    images_dir, image = toolchain_image
    base = tmp_path_factory.mktemp("setupvm")
    pool = _free_pool()
    lab = NetLab(base, pool)
    www = base / "www"
    _index(www)
    srv = subprocess.Popen(["ip", "netns", "exec", lab.ns, sys.executable, "-m", "http.server", "80", "--bind",
                            lab.web, "--directory", str(www)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cfg = base / "node.toml"
    cfg.write_text(f'[net]\npool = "{pool}"\ndns_upstream = "{lab.dns_addr}"\n')
    node = NodeProc(base, driver="qemu", images_dir=images_dir, accel="tcg", extra_args=["--config", str(cfg)])
    try:
        probe = f"import socket; socket.create_connection(('{lab.web}', 80), timeout=2).close()"
        deadline = time.monotonic() + 60
        while subprocess.run(["ip", "netns", "exec", lab.ns, sys.executable, "-c", probe],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            assert time.monotonic() < deadline and srv.poll() is None, "the lab web server did not start"
            time.sleep(0.2)
        node.start()
        yield node, lab, image
    finally:
        try:
            node.stop()
        finally:
            srv.kill()
            srv.wait()
            lab.close()


def _project(lab):
    """A git repository whose test needs labpkg (installed by setup into .deps, which its
    conftest puts on sys.path) and checks that the package index is unreachable from the
    tests, by name and by address."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="nucleus-setup-proj-")) / "proj"
    d.mkdir()
    files = {
        "requirements.txt": f"{PKG}==1.0\n",
        "conftest.py": "import pathlib, sys\n"
                       "sys.path.insert(0, str(pathlib.Path(__file__).parent / '.deps'))\n",
        "test_app.py": f"import socket\nimport urllib.request\n\nimport {PKG}\n\n\n"
                       f"def test_answer():\n    assert {PKG}.answer() == 42\n\n\n"
                       "def test_index_closed_after_setup():\n"
                       "    for attempt in (lambda: urllib.request.urlopen('http://www.lab.test/simple/', timeout=10),\n"
                       f"                    lambda: socket.create_connection(('{lab.web}', 80), timeout=10)):\n"
                       "        try:\n"
                       "            attempt()\n"
                       "        except OSError:\n"
                       "            continue\n"
                       "        raise AssertionError('the package index is reachable after setup')\n",
        "README.md": "# app\n",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    g = {"cwd": d, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q", "-b", "main"], **g)
    subprocess.run(["git", "add", "-A"], **g)
    subprocess.run(["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.org", "commit", "-qm", "app"], **g)
    return d


PIP = ("python3 -m pip install --no-cache-dir --disable-pip-version-check --target .deps "
       "--index-url http://www.lab.test/simple --trusted-host www.lab.test -r requirements.txt")


def _policy_file(tmp_path, setup_toml):
    """fix-issue exported as a policy file, with a [setup] table appended."""
    r = subprocess.run([str(binary("nucleus")), "profiles", "export", "fix-issue", "--format", "toml"],
                       capture_output=True, text=True, check=True)
    f = tmp_path / "policy.toml"
    f.write_text(r.stdout + "\n[setup]\n" + setup_toml)
    return f


def _run(node, tmp_path, proj, image, plan, *extra, policy=("--profile", "fix-issue")):
    (tmp_path / "plan.json").write_text(json.dumps({"steps": plan}))
    argv = [str(binary("nucleus")), "run", "Fix the failing test", "-d", str(proj), *policy,
            "--image", image, "--script", str(tmp_path / "plan.json"), "--output", "json",
            "--audit-out", str(tmp_path / "audit.jsonl"), *extra]
    return subprocess.run(argv, env=cli_env(node, tmp_path), capture_output=True, text=True, timeout=1500,
                          stdin=subprocess.DEVNULL)


def test_setup_installs_the_dependency_then_closes_the_network(env, tmp_path):
    node, lab, image = env
    proj = _project(lab)
    try:
        plan = [{"tool": "run", "args": {"argv": TEST}},
                {"tool": "edit", "args": {"path": "README.md", "old": "# app", "new": "# the app"}}]
        # Without setup the package is missing: the test fails in the pod.
        r = _run(node, tmp_path, proj, image, plan[:1])
        assert r.returncode == 0, r.stderr[-3000:]
        calls = json.loads(r.stdout)["calls"]
        assert calls[0]["exit_code"] != 0 and PKG in calls[0].get("stdout_head", ""), calls

        # With it: installed from the lab's index while the network is open to that name only.
        r = _run(node, tmp_path, proj, image, plan, "--setup", PIP, "--setup-host", "www.lab.test")
        assert r.returncode == 0, r.stderr[-3000:]
        assert "[nucleus] setup:" in r.stderr and "network open only to www.lab.test" in r.stderr, r.stderr
        doc = json.loads(r.stdout)
        calls = doc["calls"]
        assert [c["outcome"] for c in calls] == ["ok", "ok"], calls
        assert calls[0]["exit_code"] == 0, calls[0]   # both tests pass: labpkg imports, the index is closed
        assert "2 passed" in calls[0].get("stdout_head", ""), calls[0]
        assert "www.lab.test" in lab.dns_queries()    # pip really went through the pod's DNS
        # What pip wrote into the workspace is part of the baseline, not of the patch.
        assert doc["patch"]["changed"] == ["README.md"], doc["patch"]

        records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
        setup = [x for x in records if x.get("op") == "setup_command"]
        assert len(setup) == 1, setup
        d = setup[0]["detail"]
        assert d["exit_code"] == 0 and d["hosts"] == ["www.lab.test"] and d["duration_ms"] >= 0, d
        assert d["argv"][:4] == ["python3", "-m", "pip", "install"], d
        assert setup[0]["decision"] == "allow"
        assert not any(k in json.dumps(setup[0]) for k in ("Successfully installed", "stdout")), setup[0]
        net = [x["detail"]["network"] for x in records if x.get("op") == "setup_network"]
        assert net == ["open", "closed"], net
        seqs = {x.get("op"): x["seq"] for x in records}
        assert seqs["setup_network"] < seqs["setup_done"], seqs
        # All of it before the agent's first step.
        first_tool = min(x["seq"] for x in records if x.get("op") == "run")
        assert max(x["seq"] for x in records if x.get("op") in ("setup_command", "setup_network")) < first_tool
        assert pods_gone(node)
    finally:
        shutil.rmtree(proj.parent, ignore_errors=True)


def test_failing_setup_fails_the_run_before_the_agent(env, tmp_path):
    """Through a policy file's [setup] table this time (commands, hosts, timeout_seconds)."""
    node, lab, image = env
    proj = _project(lab)
    (proj / "requirements.txt").write_text("no-such-package-here==9.9\n")
    policy = _policy_file(tmp_path, f'commands = ["{PIP}"]\nhosts = ["www.lab.test"]\ntimeout_seconds = 600\n')
    try:
        plan = [{"tool": "run", "args": {"argv": TEST}}]
        r = _run(node, tmp_path, proj, image, plan, policy=("--config", str(policy)))
        assert r.returncode != 0, r.stderr[-3000:]
        assert "exit status" in r.stderr and "no-such-package-here" in r.stderr, r.stderr[-3000:]
        records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert [x["decision"] for x in records if x.get("op") == "setup_command"] == ["error"], records
        assert not any(x.get("op") == "run" for x in records), "an agent step ran after a failed setup"
        assert [x["detail"]["network"] for x in records if x.get("op") == "setup_network"] == ["open", "closed"]
        assert pods_gone(node)
    finally:
        shutil.rmtree(proj.parent, ignore_errors=True)


@pytest.mark.parametrize("extra, message", [
    (("--setup", "pip install -r requirements.txt", "--setup-host", "not a host"), "--setup-host 'not a host'"),
    (("--setup", "pip install -r requirements.txt && rm -rf /"), "without a shell"),
    (("--setup-host", "pypi.org"), "no setup command"),
    (("policy-file",), 'setup: unknown key "hostz"'),
])
def test_bad_setup_input_is_refused_before_anything_starts(env, tmp_path, extra, message):
    node, lab, image = env
    proj = _project(lab)
    policy = ("--profile", "fix-issue")
    if extra == ("policy-file",):
        policy, extra = ("--config", str(_policy_file(tmp_path, 'commands = ["true"]\nhostz = ["pypi.org"]\n'))), ()
    try:
        before = node.client().list_pods().json().get("pods", [])
        r = _run(node, tmp_path, proj, image, [{"tool": "run", "args": {"argv": TEST}}], *extra, policy=policy)
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert message in r.stderr, r.stderr
        assert node.client().list_pods().json().get("pods", []) == before
    finally:
        shutil.rmtree(proj.parent, ignore_errors=True)
