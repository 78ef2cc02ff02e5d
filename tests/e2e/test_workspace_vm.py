# SPDX-License-Identifier: Apache-2.0
"""Real workspaces through real microVMs (`nucleus run`, driver qemu): a 40 MB repository with
history uploads (streamed, with progress), the pod's scratch disk is sized from it, the
baseline lives on that disk (not in the guest's 16 MiB /run tmpfs), `git log` and `git status`
work inside the pod on a history built by construction (shallow by default), and the patch of
a one-line change is that one line. Also: a workspace over the node's upload cap is refused
before anything is sent, naming the node.toml key."""
import json
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from conftest import binary, require_root
from helpers.images import guest_images  # noqa: F401  (session fixture)
from helpers.model_server import ModelServer
from helpers.nodeproc import NodeProc
from test_run_vm import cli_env, nucleus_run, pods_gone

G = {"check": True, "capture_output": True}
GIT_ID = ["-c", "user.name=Ada Host", "-c", "user.email=ada@example.org"]


def git(cwd, *args):
    return subprocess.run(["git", *GIT_ID, *args], cwd=cwd, **G).stdout.decode()


@pytest.fixture
def node(tmp_path, guest_images):  # noqa: F811
    require_root()
    with NodeProc(tmp_path / "node", driver="qemu", images_dir=guest_images, accel="tcg") as n:
        yield n


@pytest.fixture
def bigproj():
    """A repository with three commits, a deleted secret in the first, 40 MB of incompressible
    data files, one source file and an uncommitted change."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="nucleus-ws-proj-")) / "big"
    d.mkdir()
    git(d, "init", "-q", "-b", "main")
    # The only configuration that reaches the pod: user.name/user.email. The rest never does.
    git(d, "config", "user.name", "Ada Host")
    git(d, "config", "user.email", "ada@example.org")
    git(d, "config", "core.fsmonitor", "/bin/false")
    git(d, "config", "remote.origin.url", "https://user:tok3n@example.org/x.git")
    (d / "secret.txt").write_text("hunter2\n")
    (d / "app.py").write_text("def answer():\n    return 41\n")
    git(d, "add", "-A")
    git(d, "commit", "-qm", "first: with a secret")
    (d / "secret.txt").unlink()
    data = d / "data"
    data.mkdir()
    for i in range(40):
        (data / f"blob{i:02d}.bin").write_bytes(os.urandom(1024 * 1024))
    git(d, "add", "-A")
    git(d, "commit", "-qm", "second: data")
    (d / "README.md").write_text("# big\n")
    git(d, "add", "-A")
    git(d, "commit", "-qm", "third: readme")
    (d / "README.md").write_text("# big\n\nuncommitted line\n")
    yield d
    shutil.rmtree(d.parent, ignore_errors=True)


PLAN = [
    {"tool_calls": [{"name": "run", "args": {"argv": ["git", "log", "--format=%s|%an"]}}]},
    {"tool_calls": [{"name": "run", "args": {"argv": ["git", "status", "--short"]}}]},
    {"tool_calls": [{"name": "run", "args": {"argv": ["git", "show", "--stat", "--format=%s", "HEAD"]}}]},
    {"tool_calls": [{"name": "edit", "args": {"path": "app.py", "old": "return 41", "new": "return 42"}}]},
    {"tool_calls": [{"name": "run", "args": {"argv": ["git", "diff", "--stat"]}}]},
    {"tool_calls": [{"name": "run", "args": {"argv": ["git", "commit", "-qam", "agent: fix answer"]}}]},
    {"tool_calls": [{"name": "run", "args": {"argv": ["git", "log", "-1", "--format=%s|%an|%ae"]}}]},
    {"tool_calls": [{"name": "run", "args": {"argv": ["git", "config", "--list", "--local"]}}]},
    {"text": "Done."},
]


def test_large_workspace_with_history(node, bigproj, tmp_path):
    with ModelServer(PLAN) as ms:
        r = nucleus_run(node, tmp_path, bigproj, ms, "Look around", "--profile", "local_dev", "--output", "json",
                        "--patch-out", str(tmp_path / "fix.patch"), "--history", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["stop"] == "done" and doc["denials"] == 0, doc
    # Streamed with progress, and the history summary names the branch.
    assert "[nucleus] uploading" in r.stderr and "MiB/s" in r.stderr, r.stderr[-2000:]
    assert "history: 2 commits of main (shallow" in r.stderr, r.stderr[-2000:]
    res = [t["content"] for t in ms.tool_results()]
    log = res[0]
    # --history 2: the two newest commits only; the one that held the secret never left.
    assert "third: readme|Ada Host" in log and "second: data|Ada Host" in log, log
    assert "first: with a secret" not in log, log
    # The uploaded working tree sits on top of the checked-out commit: the uncommitted change
    # shows, nothing else does.
    assert "M README.md" in res[1], res[1]
    assert "data/" not in res[1] and "app.py" not in res[1], res[1]
    assert "third: readme" in res[2] and "README.md" in res[2], res[2]
    assert "app.py    | 2 +-" in res[4], res[4]
    assert "agent: fix answer|Ada Host|ada@example.org" in res[6], res[6]
    assert "tok3n" not in res[7] and "fsmonitor" not in res[7] and "remote." not in res[7], res[7]
    assert "user.name=Ada Host" in res[7], res[7]
    # The export is the tree difference against the uploaded state: the agent's commit comes
    # back as exactly the one changed line (no .git, no README, no data).
    patch = (tmp_path / "fix.patch").read_text()
    changed = [ln for ln in patch.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert changed == ["-    return 41", "+    return 42"], patch
    assert doc["patch"]["changed"] == ["app.py"], doc["patch"]
    subprocess.run(["git", "apply", "--check", str(tmp_path / "fix.patch")], cwd=bigproj, check=True)
    assert pods_gone(node)


def test_upload_over_the_node_cap_is_refused_first(tmp_path, guest_images, bigproj):  # noqa: F811
    require_root()
    conf = tmp_path / "node.toml"
    conf.write_text("[node]\nmax_upload_bytes = 8388608\n")
    with NodeProc(tmp_path / "node", driver="qemu", images_dir=guest_images, accel="tcg",
                  extra_args=("--config", str(conf))) as n:
        with ModelServer([{"text": "never"}]) as ms:
            r = nucleus_run(n, tmp_path, bigproj, ms, "Look around", "--profile", "local_dev")
        assert r.returncode != 0
        assert "max_upload_bytes in node.toml" in r.stderr, r.stderr[-2000:]
        assert "[nucleus] uploading" not in r.stderr, r.stderr[-2000:]
        assert ms.requests == [], "the model was called although the upload was refused"
