# SPDX-License-Identifier: Apache-2.0
"""The pod verbs of `nucleus` (create, wait, upload, tool, approve, patch, delete/cancel)
against a real nucleus-node with the local driver (bubblewrap): a whole session, bad specs,
unknown pods, denials (exit 1 with the kind on stderr), the JSON-only stdout rule, and the
shell completions offering the new verbs and flags. Each test runs its own node on free ports."""
import json
import os
import pathlib
import re
import subprocess

import pytest

from conftest import binary, require_root
from helpers.nodeproc import NodeProc, spec_yaml

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")

POD_VERBS = ["create", "wait", "upload", "tool", "approve", "patch", "delete", "cancel"]
COMPLETIONS = pathlib.Path(__file__).resolve().parent.parent.parent / "packaging" / "completions"


class Cli:
    def __init__(self, tmp, node=None):
        self.nucleus = str(binary("nucleus"))
        (tmp / "home").mkdir(exist_ok=True)
        self.env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(tmp / "home"),
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "XDG_STATE_HOME": str(tmp / "state"),
            "LANG": "C.UTF-8",
        }
        if node:
            self.env["NUCLEUS_NODE_URL"] = f"http://127.0.0.1:{node.port}"
            self.env["NUCLEUS_NODE_KEY_FILE"] = str(node.secrets / "node.key")

    def run(self, *args, check=None, input=None, cwd=None):
        p = subprocess.run([self.nucleus, *args], env=self.env, capture_output=True, text=True,
                           input=input, cwd=cwd, timeout=120)
        if check is not None:
            assert p.returncode == check, f"{args}: rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        return p

    def json(self, *args, check=0, **kw):
        p = self.run(*args, "--output", "json", check=check, **kw)
        return json.loads(p.stdout), p  # exactly one JSON document, or this raises


@pytest.fixture
def node(tmp_path):
    require_root()
    with NodeProc(tmp_path, driver="local") as n:
        yield n


@pytest.fixture
def cli(tmp_path, node):
    return Cli(tmp_path, node)


def git_workspace(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "README.md").write_text("hello\n")
    (ws / "src").mkdir()
    (ws / "src" / "main.c").write_text("int main(void){return 0;}\n")
    (ws / ".gitignore").write_text("ignored.txt\n")
    (ws / "ignored.txt").write_text("must not be uploaded\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@e", "-C", str(ws)]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "README.md", "src/main.c", ".gitignore"], check=True)
    (ws / "untracked.txt").write_text("untracked but not ignored\n")
    return ws


def test_session(cli, node, tmp_path):
    spec = tmp_path / "pod.yaml"
    spec.write_text(spec_yaml())
    p = cli.run("create", "-f", str(spec), check=0)
    pod = p.stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", pod), p.stdout
    assert pod in p.stderr and "weaker isolation" in p.stderr  # state and the local warning
    w = cli.run("wait", pod, "--timeout", "60", check=0)
    assert w.stdout == f"{pod} running\n"

    ws = git_workspace(tmp_path)
    up, _ = cli.json("upload", pod, "-d", str(ws))
    assert up["files"] == 4, up  # README.md, src/main.c, .gitignore, untracked.txt
    assert "uploaded 4 files" in cli.run("upload", pod, "-d", str(ws), check=0).stdout

    # read: the proxy's answer on stdout.
    r = json.loads(cli.run("tool", pod, "read", '{"path": "README.md"}', check=0).stdout)
    assert r["content"] == "hello\n"
    r = json.loads(cli.run("tool", pod, "read", "--arg", "path=untracked.txt", check=0).stdout)
    assert "untracked" in r["content"]
    # .gitignore was respected: not an upload of everything.
    miss = cli.run("tool", pod, "read", "--arg", "path=ignored.txt")
    assert miss.returncode == 1 and "not_found" in miss.stderr and miss.stdout == ""
    # write (args from stdin), edit, run.
    cli.run("tool", pod, "write", "-", input='{"path": "new.txt", "content": "x\\n"}', check=0)
    cli.run("tool", pod, "edit", "--arg", "path=README.md", "--arg", "old=hello", "--arg", "new=bye", check=0)
    # The workspace is the uploaded tree (no .git): show the new file through an allowed command.
    r, rp = cli.json("tool", pod, "run", "--arg-json",
                     'argv=["git", "diff", "--no-index", "--stat", "/dev/null", "new.txt"]', check=None)
    assert rp.returncode == 0 and r["exit_code"] == 1 and "new.txt" in r["stdout"], (r, rp.stderr)

    # Denials: exit 1, "denied: KIND: message" on stderr, nothing on stdout (text mode).
    d = cli.run("tool", pod, "run", "--arg-json", 'argv=["ls", "-la"]')
    assert d.returncode == 1 and d.stdout == ""
    assert re.search(r"^denied: command_denied: .+", d.stderr, re.M), d.stderr
    d = cli.run("tool", pod, "read", "--arg", "path=../../etc/shadow")
    assert d.returncode == 1 and "denied: sandbox_escape: " in d.stderr
    doc, d = cli.json("tool", pod, "read", "--arg", "path=../../etc/shadow", check=1)
    assert doc["kind"] == "sandbox_escape" and doc["ok"] is False

    # A wrong approval token is refused by the node with its kind.
    doc, _ = cli.json("approve", pod, "nat1.bogus.token", check=1)
    assert doc["kind"] == "approval_invalid", doc
    tok = node.mint_approval(pod, "run", args=["ls", "-la"])
    ok, _ = cli.json("approve", pod, "-", input=tok + "\n")
    assert ok["operation"] == "run", ok

    # patch: stdout is the raw patch; -o saves it; flagged paths on stderr.
    cli.run("tool", pod, "write", "--arg", "path=.github/workflows/ci.yml", "--arg", "content=on: push\n",
            "--arg-json", "create_dirs=true", check=0)
    p = cli.run("patch", pod, check=0)
    assert "+bye" in p.stdout and "new.txt" in p.stdout
    assert "FLAGGED: .github/workflows/ci.yml" in p.stderr, p.stderr
    out = tmp_path / "out.patch"
    cli.run("patch", pod, "-o", str(out), check=0)
    assert out.read_text() == p.stdout and (out.stat().st_mode & 0o777) == 0o600
    doc, _ = cli.json("patch", pod)
    assert "README.md" in doc["changed"] and "+bye" in doc["patch"]
    # The patch applies to the original tree.
    subprocess.run(["git", "-C", str(ws), "apply", str(out)], check=True)
    assert (ws / "README.md").read_text() == "bye\n"

    doc, _ = cli.json("delete", pod)
    assert doc["state"] == "exited" and doc["reason"] == "deleted by the API"
    assert cli.run("cancel", pod, check=0).stdout == f"{pod} exited\n"  # idempotent alias
    gone = cli.run("tool", pod, "read", "--arg", "path=README.md")
    assert gone.returncode == 1 and "pod_not_running" in gone.stderr and "denied" not in gone.stderr
    w = cli.run("wait", pod, "--state", "running", "--timeout", "5")
    assert w.returncode == 1 and "ended" in w.stderr


def test_create_wait_flag_and_json(cli, tmp_path):
    spec = tmp_path / "pod.json"
    spec.write_text(json.dumps({"apiVersion": "nucleus/v1", "kind": "Pod",
                                "spec": {"policy": "fix-issue", "driver": "local", "timeout_seconds": 120}}))
    doc, p = cli.json("create", "-f", str(spec), "--wait", "--timeout", "60")
    assert doc["state"] == "running" and "weaker isolation" in doc["warning"], doc
    pod = doc["id"]
    doc, _ = cli.json("wait", pod)
    assert doc["id"] == pod
    doc, _ = cli.json("tool", pod, "status")
    assert "policy_sha256" in doc
    cli.run("delete", pod, check=0)


def test_bad_spec_and_files(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: nucleus/v1\nkind: Pod\nspec:\n  policy: fix-issue\n  netwrok: {}\n")
    p = cli.run("create", "-f", str(bad))
    assert p.returncode == 1 and p.stdout == ""
    assert "invalid spec" in p.stderr and "netwrok" in p.stderr, p.stderr
    # Checked before the node is asked: the error names the file and line, not the node's
    # "request body" (JSON below: kind invalid_request, as the node's answer had).
    assert f"{bad}:5" in p.stderr and "request body" not in p.stderr, p.stderr
    doc, _ = cli.json("create", "-f", str(bad), check=1)
    assert doc["kind"] == "invalid_request" and "netwrok" in doc["error"] and doc["ok"] is False
    p = cli.run("create", "-f", str(tmp_path / "missing.yaml"))
    assert p.returncode == 1 and "missing.yaml" in p.stderr
    doc, _ = cli.json("create", "-f", str(tmp_path / "missing.yaml"), check=1)
    assert doc["kind"] == "io_error"
    # Usage errors: exit 2, nothing on stdout.
    for args in (["create"], ["create", "-f", str(bad), "extra"], ["delete"], ["delete", "../x"],
                 ["tool", "p"], ["tool", "p", "Bad-Op"], ["tool", "p", "read", "[1]"],
                 ["tool", "p", "read", "--arg", "novalue"], ["tool", "p", "read", "--arg-json", "a={"],
                 ["tool", "p", "read", '{"path":"a"}', "--arg", "path=b"],
                 ["wait", "p", "--state", "sleeping"], ["wait", "p", "--timeout", "0"],
                 ["approve", "p"], ["patch"], ["upload"], ["create", "-f", str(bad), "--output", "yaml"]):
        q = cli.run(*args)
        assert q.returncode == 2 and q.stdout == "" and "--help" in q.stderr, (args, q.stderr)


def test_unknown_pod(cli, tmp_path):
    unknown = "00000000-0000-4000-8000-000000000000"
    for args in (["delete", unknown], ["wait", unknown], ["patch", unknown], ["upload", unknown, "-d", str(tmp_path)],
                 ["tool", unknown, "read", "--arg", "path=x"], ["approve", unknown, "nat1.x.y"]):
        p = cli.run(*args)
        assert p.returncode == 1 and p.stdout == "" and "not_found" in p.stderr, (args, p.stderr)
        assert "denied" not in p.stderr
        doc, _ = cli.json(*args, check=1)
        assert doc["kind"] == "not_found" and doc["ok"] is False, (args, doc)
    # A short reference (a name or a prefix) that matches no pod is named as such by the CLI.
    for args in (["delete", "nosuchpod"], ["snapshot", "nosuchpod"], ["fork", "nosuchpod"],
                 ["credential", "nosuchpod", "--out", str(tmp_path / "cred")]):
        p = cli.run(*args)
        assert p.returncode == 1 and "no pod has the id, id prefix or name 'nosuchpod'" in p.stderr, (args, p.stderr)
        assert not (tmp_path / "cred").exists()


def test_node_down_and_help(tmp_path):
    cli = Cli(tmp_path)
    cli.env["NUCLEUS_NODE_URL"] = "http://127.0.0.1:9"  # nothing listens on discard
    key = tmp_path / "node.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (os.urandom(32).hex() + "\n").encode())
    os.close(fd)
    cli.env["NUCLEUS_NODE_KEY_FILE"] = str(key)
    doc, p = cli.json("delete", "somepod", check=1)
    assert doc["ok"] is False and doc["kind"] == "io_error" and p.stderr
    top = cli.run("--help", check=0).stdout
    for v in POD_VERBS:
        assert re.search(rf"^  {v} ", top, re.M), v
        h = cli.run(v, "--help", check=0)
        assert h.stdout.startswith("Usage: nucleus") and h.stderr == "", v


def bash_complete(words):
    script = (f"source {COMPLETIONS / 'nucleus.bash'}\n"
              f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
              "_nucleus; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split()


def test_completions_offer_pod_verbs(tmp_path):
    cli = Cli(tmp_path)
    assert set(POD_VERBS) <= set(bash_complete(["nucleus", ""]))
    zsh = (COMPLETIONS / "_nucleus").read_text()
    for v in POD_VERBS:
        assert f"'{v}:" in zsh, v
        flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", cli.run(v, "--help", check=0).stdout))
        offered = set(bash_complete(["nucleus", v, "--"]))
        assert flags and flags <= offered, (v, flags - offered)
        for f in flags:
            assert f in zsh, (v, f)
    assert bash_complete(["nucleus", "wait", "p", "--state", "r"]) == ["running"]
    assert "--output" in bash_complete(["nucleus", "tool", "--o"])
