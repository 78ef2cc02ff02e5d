# SPDX-License-Identifier: Apache-2.0
"""The main job on real projects, through real microVMs: for a Python project (pytest), a C
project (make test) and a Node project (node --test), each a git repository with history and a
failing test, `nucleus run --script --image nucleus-test-tools --profile fix-issue` reads the
code, runs the tests inside the pod (they fail), edits the bug, runs them again (they pass) and
applies the patch with --apply; then the project's tests pass on the host. All three use the
one shared toolchain image (tests/helpers/images.py), built once through `nucleus image build
--name` and cached by its input hash."""
import json
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from conftest import binary, require_root
from helpers.images import guest_images, toolchain_image  # noqa: F401  (session fixtures)
from helpers.nodeproc import NodeProc
from test_run_vm import cli_env, pods_gone

PROJECTS = {
    "python": {
        "files": {
            "calc.py": "def add(a, b):\n    return a - b\n",
            "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        },
        "test": ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        "host_test": ["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        "file": "calc.py", "old": "a - b", "new": "a + b",
    },
    "c": {
        "files": {
            "calc.c": "int add(int a, int b) { return a - b; }\n",
            "test_calc.c": "#include <stdio.h>\nint add(int, int);\n"
                           "int main(void) { if (add(2, 3) != 5) { puts(\"add is broken\"); return 1; }"
                           " puts(\"tests passed\"); return 0; }\n",
            "Makefile": "test: test_calc\n\t./test_calc\n\ntest_calc: calc.c test_calc.c\n"
                        "\t$(CC) -o $@ calc.c test_calc.c\n\n.PHONY: test\n",
            ".gitignore": "test_calc\n",
        },
        "test": ["make", "test"],
        "host_test": ["make", "test"],
        "file": "calc.c", "old": "a - b", "new": "a + b",
    },
    "node": {
        "files": {
            "calc.js": "exports.add = (a, b) => a - b;\n",
            "test/calc.test.js": "const test = require('node:test');\nconst assert = require('node:assert');\n"
                                 "const { add } = require('../calc.js');\n"
                                 "test('add', () => { assert.strictEqual(add(2, 3), 5); });\n",
        },
        "test": ["node", "--test"],
        "host_test": ["node", "--test"],
        "file": "calc.js", "old": "a - b", "new": "a + b",
    },
}


@pytest.fixture(scope="module")
def node(tmp_path_factory, toolchain_image):  # noqa: F811
    require_root()
    images_dir, _ = toolchain_image
    with NodeProc(tmp_path_factory.mktemp("node"), driver="qemu", images_dir=images_dir, accel="tcg") as n:
        yield n


def make_project(kind):
    spec = PROJECTS[kind]
    d = pathlib.Path(tempfile.mkdtemp(prefix=f"nucleus-proj-{kind}-")) / kind
    d.mkdir()
    g = {"cwd": d, "check": True, "capture_output": True}
    ident = ["-c", "user.name=Dev", "-c", "user.email=dev@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "main"], **g)
    (d / "README.md").write_text(f"# {kind} project\n")
    subprocess.run(["git", "add", "-A"], **g)
    subprocess.run(["git", *ident, "commit", "-qm", "start"], **g)
    for name, text in spec["files"].items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)
    subprocess.run(["git", "add", "-A"], **g)
    subprocess.run(["git", *ident, "commit", "-qm", "add calc with a test"], **g)
    return d


@pytest.mark.parametrize("kind", ["python", "c", "node"])
def test_project_fixed_in_the_pod_and_applied(node, toolchain_image, kind, tmp_path):  # noqa: F811
    _, image = toolchain_image
    spec = PROJECTS[kind]
    proj = make_project(kind)
    try:
        # The tests fail on the host first: the bug is real.
        assert subprocess.run(spec["host_test"], cwd=proj, capture_output=True).returncode != 0
        plan = {"steps": [
            {"tool": "read", "args": {"path": spec["file"]}},
            {"tool": "run", "args": {"argv": ["git", "log", "--oneline"]}},
            {"tool": "run", "args": {"argv": spec["test"]}},
            {"tool": "edit", "args": {"path": spec["file"], "old": spec["old"], "new": spec["new"]}},
            {"tool": "run", "args": {"argv": spec["test"]}},
        ]}
        (tmp_path / "plan.json").write_text(json.dumps(plan))
        argv = [str(binary("nucleus")), "run", "Fix the failing test", "-d", str(proj), "--profile", "fix-issue",
                "--image", image, "--script", str(tmp_path / "plan.json"), "--apply", "--output", "json",
                "--audit-out", str(tmp_path / "audit.jsonl")]
        r = subprocess.run(argv, env=cli_env(node, tmp_path), capture_output=True, text=True, timeout=1200,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr[-3000:]
        doc = json.loads(r.stdout)
        calls = doc["calls"]
        assert [c["outcome"] for c in calls] == ["ok"] * 5, calls
        assert "add calc with a test" in calls[1].get("stdout_head", ""), calls[1]
        assert calls[2]["exit_code"] != 0, calls[2]      # the tests fail inside the pod
        assert calls[4]["exit_code"] == 0, calls[4]      # and pass after the edit
        assert doc["patch"]["changed"] == [spec["file"]], doc["patch"]
        # --apply put the fix on the host, and the project's own tests pass there now.
        h = subprocess.run(spec["host_test"], cwd=proj, capture_output=True, text=True)
        assert h.returncode == 0, h.stdout + h.stderr
        assert spec["new"] in (proj / spec["file"]).read_text()
        assert pods_gone(node)
    finally:
        shutil.rmtree(proj.parent, ignore_errors=True)


def test_missing_image_is_refused_at_create(node):
    """A pod naming an image that is not built is refused when it is created, with the command
    that builds it, instead of failing later at boot."""
    spec = {"apiVersion": "nucleus/v1", "kind": "Pod",
            "spec": {"policy": {"profile": "fix-issue"}, "image": "no-such-image"}}
    r = node.client().create_pod(spec)
    assert r.status == 400, r.json()
    assert "nucleus image build --name no-such-image" in r.json()["error"], r.json()


def test_image_ls_shows_the_toolchain_image(toolchain_image):  # noqa: F811
    images_dir, image = toolchain_image
    r = subprocess.run([str(binary("nucleus")), "image", "ls", "--images-dir", images_dir, "--output", "json"],
                       capture_output=True, text=True, check=True)
    images = {i["name"]: i for i in json.loads(r.stdout)["images"]}
    assert "default" in images and image in images, images
    assert {"python3", "python3-pytest", "gcc", "nodejs", "git"} <= set(images[image]["packages"])
    assert images[image]["rootfs_bytes"] > 0
    r = subprocess.run([str(binary("nucleus")), "image", "build", "--name", "no-recipe-x", "--images-dir",
                        images_dir], capture_output=True, text=True)
    assert r.returncode == 2 and "no recipe for 'no-recipe-x'" in r.stderr, r.stderr
