# SPDX-License-Identifier: Apache-2.0
"""Issue 13 class 2, at the execution layer: a repository configuration the agent wrote (with
any program it may run) that holds a key outside the git configuration allow list makes the
next git command refused, for the workspace's repository, nested repositories, gitdir pointers
and linked worktrees; includes and symlinked config are refused; a clean repository works."""
import os
import subprocess

import pytest

from helpers.proxyrun import agent_ids, configure, proxy, proxy_bin  # noqa: F401

MARK = "/tmp/nucleus-gitcfg-pwned"


@pytest.fixture(autouse=True)
def no_marker():
    if os.path.exists(MARK):
        os.unlink(MARK)
    yield
    if os.path.exists(MARK):
        os.unlink(MARK)


def chown_tree(path, uid, gid):
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for n in dirs + files:
            os.lchown(os.path.join(root, n), uid, gid)


def git_init(pp, rel="."):
    d = os.path.join(pp.ws, rel)
    os.makedirs(d, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", d], check=True,
                   env={"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"})
    with open(os.path.join(d, "a.txt"), "w") as f:
        f.write("a\n")
    chown_tree(pp.ws, pp.uid, pp.gid)


def append(pp, rel, text):
    path = os.path.join(pp.ws, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        f.write(text)
    chown_tree(pp.ws, pp.uid, pp.gid)


def git_status(pp, cwd=None):
    args = {"argv": ["git", "status", "--short"]}
    if cwd:
        args["cwd"] = cwd
    return pp.ch.request("run", args)


BAD = {
    "fsmonitor": "[core]\n\tfsmonitor = touch " + MARK + "\n",
    "filter": "[filter \"x\"]\n\tclean = touch " + MARK + "\n\tsmudge = cat\n",
    "alias": "[alias]\n\tst = !touch " + MARK + "\n",
    "include": "[include]\n\tpath = ../cfg\n",
    "pager-same-line": "[core] pager = touch " + MARK + "\n",
    "old-subsection": "[diff.x]\n\ttextconv = touch " + MARK + "\n",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_agent_written_config_refuses_next_git_command(proxy, kind):
    configure(proxy, profile="fix-issue")
    git_init(proxy)
    r = git_status(proxy)
    assert r.get("exit_code") == 0, r
    append(proxy, ".git/config", BAD[kind])
    if kind == "filter":
        append(proxy, ".gitattributes", "*.txt filter=x\n")
    r = git_status(proxy)
    assert r.get("kind") == "command_denied", r
    assert ".git/config" in r["error"] and "allow list" in r["error"], r
    assert not os.path.exists(MARK)


@pytest.mark.parametrize("layout", ["nested", "gitfile", "worktree-config", "deep-cwd"])
def test_every_repository_git_may_use_is_checked(proxy, layout):
    configure(proxy, profile="fix-issue")
    git_init(proxy)
    if layout == "nested":
        git_init(proxy, "vendor/lib")
        append(proxy, "vendor/lib/.git/config", BAD["fsmonitor"])
    elif layout == "gitfile":
        git_init(proxy, "gd-src")
        os.rename(os.path.join(proxy.ws, "gd-src/.git"), os.path.join(proxy.ws, "hidden-gd"))
        append(proxy, "gd-src/.git", "gitdir: ../hidden-gd\n")
        append(proxy, "hidden-gd/config", BAD["alias"])
    elif layout == "worktree-config":
        append(proxy, ".git/config.worktree", BAD["fsmonitor"])
    else:
        git_init(proxy, "a/b/c")
        append(proxy, "a/b/c/.git/config", BAD["filter"])
    r = git_status(proxy, cwd="a" if layout == "deep-cwd" else None)
    assert r.get("kind") == "command_denied", r
    assert "allow list" in r["error"], r
    assert not os.path.exists(MARK)


def test_symlinked_git_and_config_are_refused(proxy):
    configure(proxy, profile="fix-issue")
    git_init(proxy)
    os.makedirs(os.path.join(proxy.ws, "s"))
    os.symlink("/tmp", os.path.join(proxy.ws, "s/.git"))
    r = git_status(proxy)
    assert r.get("kind") == "command_denied" and "symlink" in r["error"], r
    os.unlink(os.path.join(proxy.ws, "s/.git"))
    cfg = os.path.join(proxy.ws, ".git/config")
    os.rename(cfg, os.path.join(proxy.ws, "cfg"))
    os.symlink("../cfg", cfg)
    r = git_status(proxy)
    assert r.get("kind") == "command_denied" and "symlink" in r["error"], r


def test_clean_config_and_other_commands_are_not_affected(proxy):
    configure(proxy, profile="fix-issue", policy=None)
    git_init(proxy)
    append(proxy, ".git/config", "[user]\n\tname = Agent\n\temail = a@example.com\n"
           "[remote \"origin\"]\n\turl = /src\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n"
           "[branch \"main\"]\n\tremote = origin\n\tmerge = refs/heads/main\n")
    r = git_status(proxy)
    assert r.get("exit_code") == 0, r
    # The allow list is what the agent may set through git itself.
    r = proxy.ch.request("run", {"argv": ["git", "log", "-1"]})
    assert "error" not in r or r.get("kind") != "command_denied", r
    append(proxy, ".git/config", BAD["fsmonitor"])
    # A command that is not git does not read git configuration: not refused for it.
    r = proxy.ch.request("run", {"argv": ["cargo", "test", "--help"]})
    assert r.get("kind") != "command_denied" or "git configuration" not in r.get("error", ""), r
