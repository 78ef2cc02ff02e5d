# SPDX-License-Identifier: Apache-2.0
"""Execution side, as a class: (1) the file ops never write a path with a ".git"
component (any depth, any case, every profile, approvals or not); (2) import materializes
only the top-level ".git" directory, nested repositories/pointers are skipped; (3) every
command gets the policy's git hardening environment, so config reached through a gitdir
pointer or repository config cannot make git run a program."""
import os

import pytest

from helpers.proxyrun import (agent_ids, configure, fix_issue_policy, make_tar, proxy, proxy_bin)  # noqa: F401

MARK = "/tmp/nucleus-xfix-gitdir-pwned"


@pytest.fixture(autouse=True)
def no_marker():
    if os.path.exists(MARK):
        os.unlink(MARK)
    yield
    if os.path.exists(MARK):
        os.unlink(MARK)


@pytest.mark.parametrize("profile", ["fix-issue", "local-dev"])
@pytest.mark.parametrize("path", ["w/.git", ".git", ".git/config", "a/b/.git/hooks/pre-commit", "x/.GIT/config",
                                  ".git/commondir", "sub/.Git"])
def test_write_and_edit_refuse_git_components(proxy, profile, path):
    configure(proxy, profile=profile)
    r = proxy.ch.request("write", {"path": path, "content": "gitdir: ../g\n", "create_dirs": True})
    assert r.get("kind") == "path_denied", r
    assert not os.path.lexists(os.path.join(proxy.ws, path))


def test_edit_refuses_an_existing_git_file(proxy):
    configure(proxy, profile="local-dev")
    os.makedirs(os.path.join(proxy.ws, "s"))
    with open(os.path.join(proxy.ws, "s/.git"), "w") as f:
        f.write("gitdir: ../real\n")
    r = proxy.ch.request("edit", {"path": "s/.git", "old": "real", "new": "evil"})
    assert r.get("kind") == "path_denied", r
    assert open(os.path.join(proxy.ws, "s/.git")).read() == "gitdir: ../real\n"


def test_write_allows_git_lookalikes(proxy):
    configure(proxy)
    for path in (".gitignore", "docs/.github-notes.md", "a.git/x"):
        r = proxy.ch.request("write", {"path": path, "content": "x\n", "create_dirs": True})
        assert "error" not in r, (path, r)


def test_import_skips_nested_git_entries(proxy):
    configure(proxy)
    tar = make_tar([(".git/HEAD", "file", "ref: refs/heads/main\n"),
                    (".git/modules/sub/config", "file", "[core]\n"),
                    ("sub/.git", "file", "gitdir: ../.git/modules/sub\n"),
                    ("vendor/x/.git/config", "file", "[core]\n\tfsmonitor = touch /tmp/x\n"),
                    ("vendor/x/.git/hooks/pre-commit", "file", "#!/bin/sh\n"),
                    ("sub/a.txt", "file", "a\n")])
    r = proxy.ch.request_stream_in("import", {}, tar)
    assert "error" not in r, r
    assert r["skipped_git"] == 3, r
    ws = proxy.ws
    assert os.path.exists(os.path.join(ws, ".git/HEAD")) and os.path.exists(os.path.join(ws, ".git/modules/sub/config"))
    assert os.path.exists(os.path.join(ws, "sub/a.txt"))
    assert not os.path.lexists(os.path.join(ws, "sub/.git"))
    assert not os.path.lexists(os.path.join(ws, "vendor/x/.git"))


def test_git_hardening_env_reaches_commands(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["env"]))
    r = proxy.ch.request("run", {"argv": ["env"]})
    assert r.get("exit_code") == 0, r
    env = dict(line.split("=", 1) for line in r["stdout"].splitlines() if "=" in line)
    assert env.get("GIT_CONFIG_NOSYSTEM") == "1" and env.get("GIT_CONFIG_GLOBAL") == "/dev/null"
    keys = {env[k]: env.get("GIT_CONFIG_VALUE_" + k.rsplit("_", 1)[1]) for k in env if k.startswith("GIT_CONFIG_KEY_")}
    assert keys.get("core.fsmonitor") == "false" and keys.get("core.hooksPath") == "/dev/null", keys
    assert env.get("GIT_CEILING_DIRECTORIES") == os.path.dirname(os.path.realpath(proxy.ws))


def test_repository_config_cannot_run_fsmonitor(proxy):
    """Host-made repository config (as if planted by a command git ran) with core.fsmonitor:
    git status is refused (the key is outside the git configuration allow list, see
    test_proxy_git_config.py) and runs nothing."""
    import subprocess
    env = {"PATH": "/usr/bin:/bin", "HOME": proxy.base, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", proxy.ws], env=env, check=True)
    with open(os.path.join(proxy.ws, ".git/config"), "a") as f:
        f.write(f"[core]\n\tfsmonitor = touch {MARK}; true\n")
    subprocess.run(["chown", "-R", f"{proxy.uid}:{proxy.gid}", proxy.ws], check=True)
    configure(proxy)
    r = proxy.ch.request("run", {"argv": ["git", "status"]})
    assert r.get("kind") == "command_denied" and "core.fsmonitor" in r["error"], r
    assert not os.path.exists(MARK), f"git status ran core.fsmonitor: {r}"


def test_import_hardlink_source_with_other_names_is_refused(proxy):
    """A tar hard-link entry copies only from a file import itself made (nlink 1)."""
    configure(proxy)
    outside = os.path.join(proxy.base, "outside-secret")
    with open(outside, "w") as f:
        f.write("host secret\n")
    os.link(outside, os.path.join(proxy.ws, "planted"))  # as a command with a shared fs could
    r = proxy.ch.request_stream_in("import", {}, make_tar([("copy", "hardlink", "planted")]))
    assert r.get("kind") == "invalid_request", r
    assert not os.path.exists(os.path.join(proxy.ws, "copy"))
