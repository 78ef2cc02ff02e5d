# SPDX-License-Identifier: Apache-2.0
"""Attacks that must be refused, against a real
nucleus-tool-proxy: command-policy bypasses that run a shell or write policy-blocked files
although no shell is granted. Each test is xfail(strict=True) until the owner fixes it."""
import os
import subprocess

import pytest

from helpers.proxyrun import (agent_ids, configure, fix_issue_policy, proxy, proxy_bin)  # noqa: F401

MARK = "/tmp/nucleus-review-pwned"


@pytest.fixture(autouse=True)
def no_marker():
    if os.path.exists(MARK):
        os.unlink(MARK)
    yield
    if os.path.exists(MARK):
        os.unlink(MARK)


def run(pp, args):
    return pp.ch.request("run", args)


def write(pp, path, content, mode=None):
    args = {"path": path, "content": content, "create_dirs": True}
    if mode is not None:
        args["mode"] = mode
    r = pp.ch.request("write", args)
    assert "error" not in r, r
    return r


def git_repo(pp):
    """A committed git repository in the workspace, owned by the agent (as an import leaves it)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": pp.base, "GIT_CONFIG_NOSYSTEM": "1"}
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "--allow-empty", "-m", "init"]):
        cmd = cmd[:1] + ["-c", "safe.directory=*"] + cmd[1:]
        subprocess.run(cmd, cwd=pp.ws, env=env, check=True, capture_output=True)
    subprocess.run(["chown", "-R", f"{pp.uid}:{pp.gid}", pp.ws], check=True)


def test_git_config_through_gitdir_file_runs_a_shell(proxy):
    # fix-issue: no shell is granted; only `git status/diff/log/add/commit` and cargo run.
    configure(proxy)
    assert "error" in run(proxy, {"argv": ["sh", "-c", f"touch {MARK}"]})
    # The agent cannot plant a gitdir pointer or repository internals through the file ops ...
    for path in ("w/.git", "w/.GIT", "g/.git/config", "sub/.git/hooks/pre-commit"):
        r = proxy.ch.request("write", {"path": path, "content": "gitdir: ../g\n", "create_dirs": True})
        assert r.get("kind") == "path_denied", (path, r)
    # ... and where such files exist anyway (planted on the filesystem directly here), git run
    # through the proxy ignores the repository's program-running settings (hardened git env).
    proxy.put("w/.git", "gitdir: ../g\n")
    proxy.put("g/HEAD", "ref: refs/heads/main\n")
    proxy.put("g/objects/.keep", "")
    proxy.put("g/refs/heads/.keep", "")
    proxy.put("g/config", f"[core]\n\trepositoryformatversion = 0\n\tfsmonitor = touch {MARK}; true\n")
    subprocess.run(["chown", "-R", f"{proxy.uid}:{proxy.gid}", proxy.ws], check=True)
    r = run(proxy, {"argv": ["git", "status"], "cwd": "w"})
    assert not os.path.exists(MARK), \
        f"git status ran core.fsmonitor from agent-written config (a shell without run_bash): {r}"


def test_git_log_output_writes_blocked_git_config_then_runs(proxy):
    git_repo(proxy)
    configure(proxy)
    # The path policy refuses .git/config to the file ops ...
    r = proxy.ch.request("write", {"path": ".git/config", "content": "[core]\n"})
    assert r.get("kind") == "path_denied", r
    before = open(os.path.join(proxy.ws, ".git/config")).read()
    # ... but the allowlisted `git log` writes it with content chosen by the agent.
    fmt = f"--format=[core]%n\trepositoryformatversion = 0%n\tfsmonitor = touch {MARK}; true"
    r = run(proxy, {"argv": ["git", "log", "-1", fmt, "--output=.git/config"]})
    after = open(os.path.join(proxy.ws, ".git/config")).read()
    run(proxy, {"argv": ["git", "status"]})
    assert after == before and not os.path.exists(MARK), \
        f"git log --output rewrote .git/config ({after!r}) and git status ran it: {r}"


def test_env_split_string_abbreviation(proxy_bin, agent_ids, proxy):
    # The configuration of the shell tests in test_proxy_commands.py: the wrapper itself is allowlisted, shells are not.
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["env"]))
    assert "error" in run(proxy, {"argv": ["env", "-S", f"sh -c 'touch {MARK}'"]})
    r = run(proxy, {"argv": ["env", f"--sp=sh -c 'touch {MARK}'"]})
    assert "error" in r and not os.path.exists(MARK), f"env --sp ran a shell: {r}"


@pytest.mark.parametrize("argv", [["nice", "--adj", "5", "sh", "-c", f"touch {MARK}"],
                                  ["timeout", "--k", "1", "5", "sh", "-c", f"touch {MARK}"],
                                  ["env", "--ch", ".", "sh", "-c", f"touch {MARK}"]])
def test_wrapper_abbreviated_option_with_argument(proxy, argv):
    # local-dev: commands unrestricted except the default blocks, which include `sh -c`.
    configure(proxy, profile="local-dev")
    assert "error" in run(proxy, {"argv": ["sh", "-c", f"touch {MARK}"]})
    plain = {"nice": ["nice", "-n", "5"], "timeout": ["timeout", "5"], "env": ["env", "--chdir=."]}[argv[0]]
    assert "error" in run(proxy, {"argv": plain + ["sh", "-c", f"touch {MARK}"]})
    r = run(proxy, {"argv": argv})
    assert "error" in r and not os.path.exists(MARK), f"{argv[0]} with an abbreviated option ran sh -c: {r}"


def test_sed_e_runs_a_shell(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["sed"]))
    write(proxy, "f.txt", "x\n")
    r = run(proxy, {"argv": ["sed", "-n", f"1e touch {MARK}", "f.txt"]})
    assert "error" in r and not os.path.exists(MARK), f"sed e ran a shell: {r}"


@pytest.mark.parametrize("opt", [["-E", f"$(shell touch {MARK})"], [f"--ev=$(shell touch {MARK})"]])
def test_make_eval_short_and_abbreviated(proxy_bin, agent_ids, proxy, opt):
    if not os.path.exists("/usr/bin/make"):
        pytest.skip("make not installed")
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["make"]))
    assert "error" in run(proxy, {"argv": ["make", f"--eval=$(shell touch {MARK})"]})
    r = run(proxy, {"argv": ["make"] + opt})
    assert "error" in r and not os.path.exists(MARK), f"make {opt[0]} ran $(shell): {r}"


PMARK = "/tmp/nx-rv-pwn"  # no 'e'/'E' in the perl case: the analyzer would flag -M...e... by accident


@pytest.mark.parametrize("argv", [
    ["python3", "-m", "timeit", "-n1", "-r1", f"open({PMARK!r}, 'w')"],
    ["perl", f"-Mstrict;`touch {PMARK}`", "s.pl"],
    ["node", "--import", "data:text/javascript,import('fs').then(f=>f.writeFileSync('" + PMARK + "','x'))", "s.js"],
])
def test_interpreter_code_in_arguments(proxy_bin, agent_ids, proxy, argv):
    if not os.path.exists("/usr/bin/" + argv[0]):
        pytest.skip(argv[0] + " not installed")
    if os.path.exists(PMARK):
        os.unlink(PMARK)
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["python3", "perl", "node"]))
    write(proxy, "s.pl", "1;\n")
    write(proxy, "s.js", "\n")
    # The plain inline forms are refused ...
    assert "error" in run(proxy, {"argv": [argv[0], {"python3": "-c", "perl": "-e", "node": "-e"}[argv[0]], "1"]})
    # ... these are not.
    r = run(proxy, {"argv": argv})
    ran = os.path.exists(PMARK)
    if ran:
        os.unlink(PMARK)
    assert "error" in r and not ran, f"{argv[0]} ran code from its arguments: {r}"


def test_blocked_secret_read_through_allowlisted_git(proxy):
    secret = "API_KEY=sk-review-5ec12e7\n"
    proxy.put(".env", secret)
    configure(proxy)
    r = proxy.ch.request("read", {"path": ".env"})
    assert r.get("kind") == "path_denied", r
    r = run(proxy, {"argv": ["git", "diff", "--no-index", "--", "/dev/null", ".env"]})
    assert "sk-review-5ec12e7" not in (r.get("stdout") or "") + str(r), \
        f"the blocked .env reached the agent through `git diff --no-index`: {r}"


def repo_with_local_remote(pp):
    """A committed repo whose `origin` is a bare repo inside the workspace (no network)."""
    git_repo(pp)
    env = {"PATH": "/usr/bin:/bin", "HOME": pp.base, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "-c", "safe.directory=*", "init", "-q", "--bare", "remote.git"], cwd=pp.ws, env=env,
                   check=True, capture_output=True)
    subprocess.run(["git", "-c", "safe.directory=*", "remote", "add", "origin", "./remote.git"], cwd=pp.ws, env=env,
                   check=True, capture_output=True)
    subprocess.run(["chown", "-R", f"{pp.uid}:{pp.gid}", pp.ws], check=True)
    return os.path.join(pp.ws, "remote.git", "refs", "heads", "main")


@pytest.mark.parametrize("case", ["fix-issue+env", "local-dev"])
def test_git_push_capability_bypass(proxy_bin, agent_ids, proxy, case):
    ref = repo_with_local_remote(proxy)
    if case == "fix-issue+env":
        configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["env"]))
        argv = ["env", "--sp=git push origin main"]
    else:
        configure(proxy, profile="local-dev")
        argv = ["nice", "--adj", "5", "git", "push", "origin", "main"]
    r = run(proxy, {"argv": ["git", "push", "origin", "main"]})
    assert r.get("kind") == "insufficient_capability", r
    r = run(proxy, {"argv": argv})
    assert "error" in r and not os.path.exists(ref), f"git push ran although git_push is Never: {r}"


def test_git_clone_attached_upload_pack(proxy_bin, agent_ids, proxy):
    git_repo(proxy)
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["git clone"]))
    r = run(proxy, {"argv": ["git", "clone", "-u", f"touch {MARK}; git-upload-pack", ".", "d1"]})
    assert r.get("kind") == "command_denied", r
    r = run(proxy, {"argv": ["git", "clone", f"-utouch {MARK}; git-upload-pack", ".", "d2"]})
    assert "error" in r and not os.path.exists(MARK), f"git clone -u<cmd> ran a shell: {r}"


def test_database_client_shell_escape(proxy):
    if not os.path.exists("/usr/bin/sqlite3"):
        pytest.skip("sqlite3 not installed")
    configure(proxy, profile="database-client")
    assert "error" in run(proxy, {"argv": ["sh", "-c", f"touch {MARK}"]})
    r = run(proxy, {"argv": ["sqlite3", ":memory:", f".shell touch {MARK}"]})
    assert "error" in r and not os.path.exists(MARK), f"sqlite3 .shell ran a shell: {r}"


@pytest.mark.parametrize("script", ["/dev/stdin", "/proc/self/fd/0"])
def test_interpreter_script_from_stdin_path(proxy_bin, agent_ids, proxy, script):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["python3"]))
    code = f"open({MARK!r}, 'w')\n"
    assert "error" in run(proxy, {"argv": ["python3", "-"], "stdin": code})
    r = run(proxy, {"argv": ["python3", script], "stdin": code})
    assert "error" in r and not os.path.exists(MARK), f"python3 {script} ran code from the request: {r}"
