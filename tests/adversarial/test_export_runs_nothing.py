# SPDX-License-Identifier: Apache-2.0
"""Class: the export executes nothing the agent controls (issue class 1). Against a real
nucleus-tool-proxy running as root: a nested repository and the workspace's own .git carry
every way git runs a program (clean/smudge/process filters, fsmonitor, hooks, textconv,
external diff, diff command, includes, attribute files); after `export` a marker proves none
ran, the nested repository is left out of the patch and flagged, and the rest of the patch is
intact. Also: `git init` in an empty directory no longer breaks the export, and the agent's
processes are running again (not left stopped) after the freeze."""
import os
import pathlib
import stat
import subprocess
import time

from helpers.proxyrun import agent_ids, configure, fix_issue_policy, make_tar, proxy, proxy_bin  # noqa: F401


def evil_config(marker):
    run = lambda what: f"sh -c 'touch {marker}/{what}; cat'"  # noqa: E731
    return (f"[core]\n\tfsmonitor = sh -c 'touch {marker}/fsmonitor'\n\thooksPath = hooks\n"
            f"\tattributesFile = {marker}/attrs\n\tpager = sh -c 'touch {marker}/pager'\n"
            f"[filter \"evil\"]\n\tclean = {run('clean')}\n\tsmudge = {run('smudge')}\n"
            f"\tprocess = sh -c 'touch {marker}/process'\n\trequired = true\n"
            f"[diff \"evil\"]\n\ttextconv = {run('textconv')}\n\tcommand = sh -c 'touch {marker}/diffcmd'\n"
            f"[diff]\n\texternal = sh -c 'touch {marker}/external'\n"
            f"[include]\n\tpath = {marker}/included\n")


HOOKS = ["pre-commit", "post-checkout", "post-index-change", "reference-transaction", "fsmonitor-watchman",
         "pre-auto-gc", "post-commit"]


def plant_repo(gitdir, marker):
    """A repository directory whose every program hook touches a marker."""
    os.makedirs(os.path.join(gitdir, "hooks"), exist_ok=True)
    with open(os.path.join(gitdir, "config"), "a") as f:
        f.write(evil_config(marker))
    for h in HOOKS:
        p = os.path.join(gitdir, "hooks", h)
        with open(p, "w") as f:
            f.write(f"#!/bin/sh\ntouch {marker}/hook-{h}\n")
        os.chmod(p, 0o755)


def test_export_runs_nothing_from_the_workspace(proxy, tmp_path):
    marker = tmp_path / "markers"
    marker.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(marker, 0o777)  # anything that runs, as any uid, can leave its mark
    (marker / "included").write_text(f"[core]\n\tfsmonitor = sh -c 'touch {marker}/included-fsmonitor'\n")
    (marker / "attrs").write_text("* filter=evil diff=evil\n")
    configure(proxy)
    tar = make_tar([(".git", "dir", None), (".git/config", "file", "[core]\n\tbare = false\n"),
                    ("README", "file", "hello\n"), ("vendor", "dir", None),
                    ("vendor/lib", "dir", None), ("vendor/lib/code.c", "file", "int a;\n")])
    assert "error" not in proxy.ch.request_stream_in("import", {}, tar)

    # What the agent leaves with any allowed command: a nested repository (real git init),
    # the top-level .git armed the same way, attributes everywhere.
    ws = pathlib.Path(proxy.ws)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", str(ws / "vendor/lib")], check=True, env=env)
    plant_repo(str(ws / "vendor/lib/.git"), marker)
    plant_repo(str(ws / ".git"), marker)
    for d in (ws, ws / "vendor/lib"):
        (d / ".gitattributes").write_text("* filter=evil diff=evil\n")
    (ws / "vendor/lib/code.c").write_text("int b;\n")
    (ws / "README").write_text("bye\n")
    (ws / "vendor/lib/new.c").write_text("int c;\n")

    resp, patch, _ = proxy.ch.request_stream_out("export", {})
    assert "error" not in resp, resp
    assert sorted(os.listdir(marker)) == ["attrs", "included"], "git ran a program of the workspace"
    flags = {f["path"]: f["reason"] for f in resp["flagged"]}
    assert flags.get("vendor/lib") == "nested repository", flags
    assert b"vendor/lib" not in patch and "vendor/lib/code.c" not in resp["changed"]
    assert b"-hello\n+bye\n" in patch and ".gitattributes" in resp["changed"]
    assert flags.get(".git/config") == "git" and flags.get(".git/hooks/pre-commit") == "git"
    # The export leaves no state in the workspace and its scratch directory behind.
    assert not [n for n in os.listdir(proxy.state) if n.startswith("export-")]


def test_git_init_in_an_empty_directory(proxy):
    """Class 6, first item: `git init` in an empty directory (no commit) used to fail the whole
    export with 'git failed (Input/output error)'."""
    configure(proxy)
    assert "error" not in proxy.ch.request_stream_in("import", {}, make_tar([("a.txt", "file", "a\n")]))
    os.makedirs(os.path.join(proxy.ws, "empty"))
    subprocess.run(["git", "init", "-q", os.path.join(proxy.ws, "empty")], check=True,
                   env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1"})
    proxy.put("b.txt", "b\n")
    resp, patch, _ = proxy.ch.request_stream_out("export", {})
    assert "error" not in resp, resp
    assert resp["changed"] == ["b.txt"] and b"+b\n" in patch
    assert {f["path"]: f["reason"] for f in resp["flagged"]} == {"empty": "nested repository"}


def test_ignored_files_follow_the_projects_rules(proxy):
    """New files are judged by the baseline's .gitignore files, never by ones the agent wrote."""
    configure(proxy)
    tar = make_tar([(".gitignore", "file", "build/\n*.o\n"), ("src", "dir", None), ("src/a.c", "file", "int a;\n")])
    assert "error" not in proxy.ch.request_stream_in("import", {}, tar)
    proxy.put("build/app", "\x7fELF")
    proxy.put("src/a.o", "obj")
    proxy.put("src/.gitignore", "secret.c\n")  # the agent's own rule hides nothing
    proxy.put("src/secret.c", "int s;\n")
    resp, patch, _ = proxy.ch.request_stream_out("export", {})
    assert sorted(resp["changed"]) == ["src/.gitignore", "src/secret.c"], resp["changed"]


def test_agent_processes_run_again_after_export(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["sleep"]))
    assert "error" not in proxy.ch.request_stream_in("import", {}, make_tar([("a.txt", "file", "a\n")]))
    sid = proxy.ch.start("run", {"argv": ["sleep", "5"]})
    deadline = time.monotonic() + 30
    pid = None
    while pid is None and time.monotonic() < deadline:
        for d in os.listdir("/proc"):
            try:
                if d.isdigit() and os.stat(f"/proc/{d}").st_uid == agent_ids[0] and \
                        open(f"/proc/{d}/comm").read().strip() == "sleep" and \
                        str(proxy.proc.pid) in _ancestors(int(d)):
                    pid = int(d)
            except OSError:
                pass
        time.sleep(0.05)
    assert pid, "the command did not start"
    resp, _, _ = proxy.ch.request_stream_out("export", {})
    assert "error" not in resp, resp
    state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    assert state not in ("T", "t"), "the agent's command was left stopped"
    r = proxy.ch.wait(sid, timeout=60)
    assert r["exit_code"] == 0, r


def _ancestors(pid):
    out = []
    for _ in range(64):
        try:
            pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
        out.append(str(pid))
        if pid <= 1:
            break
    return out
