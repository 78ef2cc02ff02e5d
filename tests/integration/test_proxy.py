# SPDX-License-Identifier: Apache-2.0
"""nucleus-tool-proxy over a unix socket, as root, with a throwaway agent user: every op and
every error kind the proxy produces, plus audit events and channel robustness."""
import base64
import io
import os
import tarfile
import socket
import struct
import subprocess
import time

import pytest

from helpers.channel import (CANCEL, DATA, END, ERROR, REQUEST, Channel, ChannelClosed,
                             ChannelError, encode_frame)
from helpers.proxyrun import (ProxyProcess, Approver, agent_ids, approver, args_sha256, configure, err_kind,  # noqa: F401
                              fix_issue_policy, last_audit, make_tar, proxy, proxy_bin)


def policy(proxy_bin, agent_ids, **kw):
    return fix_issue_policy(proxy_bin, *agent_ids, **kw)


# ---------------------------------------------------------------- configure / status

def test_refuses_everything_before_configure(proxy):
    for op, args in [("read", {"path": "a"}), ("status", {}), ("run", {"argv": ["true"]}),
                     ("import", {}), ("export", {}), ("approve", {"token": "x"})]:
        assert err_kind(proxy.ch.request(op, args)) == "not_configured"
    ev = last_audit(proxy)
    assert ev["decision"] == "deny" and ev["kind"] == "not_configured"


def test_configure_once_and_hash(proxy):
    r = configure(proxy)
    assert len(r["policy_sha256"]) == 64
    assert r["pod_id"] == "pod-test"
    again = proxy.ch.request("configure", {"pod_id": "other", "profile": "permissive"})
    assert err_kind(again) == "conflict"
    st = proxy.ch.request("status")
    assert st["policy_sha256"] == r["policy_sha256"] and st["pod_id"] == "pod-test"
    assert st["budget"]["max_usd_micros"] > 0 and st["expired"] is False


def test_configure_same_policy_same_hash(proxy_bin, agent_ids, proxy):
    pol = policy(proxy_bin, agent_ids)
    a = configure(proxy, policy=pol)["policy_sha256"]
    from helpers.proxyrun import ProxyProcess
    other = ProxyProcess(proxy_bin, *agent_ids)
    try:
        b = configure(other, profile="fix-issue")["policy_sha256"]
    finally:
        other.stop()
    assert a == b


@pytest.mark.parametrize("cfg,needle", [
    ({"profile": "fix-issue"}, "pod_id"),
    ({"pod_id": "p", "profile": "nope"}, "profile"),
    ({"pod_id": "p"}, "exactly one"),
    ({"pod_id": "p", "profile": "fix-issue", "bogus": 1}, "unknown key"),
    ({"pod_id": "p", "profile": "fix-issue", "env": {"LD_PRELOAD": "/x.so"}}, "LD_PRELOAD"),
    ({"pod_id": "p", "profile": "fix-issue", "env": {"PATH": "/evil"}}, "PATH"),
    ({"pod_id": "p", "profile": "fix-issue", "approver_public_key": "zz"}, "approver_public_key"),
    ({"pod_id": "p", "profile": "fix-issue", "limits": {"max_read_bytes": 0}}, "max_read_bytes"),
    ({"pod_id": "p/../x", "profile": "fix-issue"}, "pod_id"),
])
def test_configure_rejects_bad_input_and_stays_unconfigured(proxy, cfg, needle):
    r = proxy.ch.request("configure", cfg)
    assert err_kind(r) == "invalid_request" and needle in r["error"]
    assert err_kind(proxy.ch.request("status")) == "not_configured"
    configure(proxy)  # a good one still works afterwards


# ---------------------------------------------------------------- files

def test_read_text_binary_offset(proxy):
    configure(proxy)
    proxy.put("t.txt", "hello world")
    proxy.put("b.bin", bytes(range(256)))
    r = proxy.ch.request("read", {"path": "t.txt"})
    assert r["content"] == "hello world" and r["size"] == 11 and r["eof"]
    r = proxy.ch.request("read", {"path": "t.txt", "offset": 6, "length": 3})
    assert r["content"] == "wor" and not r["eof"]
    r = proxy.ch.request("read", {"path": "b.bin"})
    assert base64.b64decode(r["content_base64"]) == bytes(range(256))
    r = proxy.ch.request("read", {"path": proxy.ws + "/t.txt"})
    assert r["content"] == "hello world"
    ev = last_audit(proxy, "read")
    assert ev["decision"] == "allow" and ev["kind"] is None and len(ev["result_sha256"]) == 64


def test_read_errors(proxy):
    configure(proxy)
    os.mkdir(os.path.join(proxy.ws, "d"))
    assert err_kind(proxy.ch.request("read", {"path": "missing"})) == "not_found"
    assert err_kind(proxy.ch.request("read", {"path": "d"})) == "invalid_request"
    assert err_kind(proxy.ch.request("read", {})) == "invalid_request"
    assert err_kind(proxy.ch.request("read", {"path": 5})) == "invalid_request"
    assert err_kind(proxy.ch.request("read", {"path": "x", "extra": 1})) == "invalid_request"
    assert err_kind(proxy.ch.request("read", {"path": "x", "length": 100 * 1024 * 1024})) == "too_large"
    os.mkfifo(os.path.join(proxy.ws, "fifo"))
    assert err_kind(proxy.ch.request("read", {"path": "fifo"})) == "path_denied"


def test_write_create_replace_dirs(proxy):
    configure(proxy)
    r = proxy.ch.request("write", {"path": "new.txt", "content": "abc"})
    assert r["created"] is True and r["bytes"] == 3
    st = os.stat(os.path.join(proxy.ws, "new.txt"))
    assert (st.st_uid, st.st_gid) == (proxy.uid, proxy.gid)
    r = proxy.ch.request("write", {"path": "new.txt", "content": "xy"})
    assert r["created"] is False
    assert open(os.path.join(proxy.ws, "new.txt")).read() == "xy"
    r = proxy.ch.request("write", {"path": "a/b/c.bin", "content_base64": base64.b64encode(b"\0\1").decode(),
                                   "create_dirs": True})
    assert open(os.path.join(proxy.ws, "a/b/c.bin"), "rb").read() == b"\0\1"
    assert err_kind(proxy.ch.request("write", {"path": "q/r.txt", "content": "x"})) == "not_found"
    assert err_kind(proxy.ch.request("write", {"path": "a", "content": "x"})) == "invalid_request"
    assert err_kind(proxy.ch.request("write", {"path": "z", "content": "x", "content_base64": "eA=="})) == "invalid_request"


def streamed_write(proxy, path, data, announce=None, sha=None, chunk=1024 * 1024, **extra):
    """A write with its content as data frames (what the node sends for a large write)."""
    import hashlib
    args = {"path": path, "content_bytes": len(data) if announce is None else announce,
            "content_sha256": sha or hashlib.sha256(data).hexdigest(), **extra}
    return proxy.ch.request_stream_in("write", args, data, chunk=chunk)


def proxy_holds(proxy, path):
    fd_dir = f"/proc/{proxy.proc.pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(os.path.join(fd_dir, fd)) == path:
                return True
        except OSError:
            pass
    return False


def test_write_streamed_content(proxy):
    """docs/proxy.md "Size": the path is judged before any content is accepted; the content
    reaches the file only when all of it arrived and matches its digest; a refused write
    swallows the rest of its stream (no error frames) and writes nothing."""
    import hashlib
    configure(proxy)
    blob = os.urandom(3 * 1024 * 1024 + 5)
    r = streamed_write(proxy, "s/big.bin", blob, create_dirs=True)
    assert r["bytes"] == len(blob) and r["created"] is True and r["sha256"] == hashlib.sha256(blob).hexdigest(), r
    assert open(os.path.join(proxy.ws, "s/big.bin"), "rb").read() == blob
    st = os.stat(os.path.join(proxy.ws, "s/big.bin"))
    assert (st.st_uid, st.st_gid) == (proxy.uid, proxy.gid)
    ev = last_audit(proxy)
    assert ev["op"] == "write" and ev["decision"] == "allow"
    # Replacing keeps the inode; empty content works too.
    ino = st.st_ino
    assert streamed_write(proxy, "s/big.bin", b"")["created"] is False
    assert os.stat(os.path.join(proxy.ws, "s/big.bin")).st_ino == ino
    assert os.path.getsize(os.path.join(proxy.ws, "s/big.bin")) == 0

    # Refusals, none of which writes anything or leaves the stream unread.
    big = os.path.join(proxy.ws, "s/no.bin")
    cases = [
        (dict(announce=16 * 1024 * 1024 + 1), "too_large"),  # over max_file_bytes: before any content
        (dict(announce=10), "invalid_request"),              # more content than announced
        (dict(announce=10 ** 7), "invalid_request"),         # less content than announced
        (dict(sha="0" * 64), "invalid_request"),             # digest mismatch
        (dict(sha="XYZ"), "invalid_request"),
    ]
    for kw, kind in cases:
        r = streamed_write(proxy, "s/no.bin", b"q" * (2 * 1024 * 1024), **kw)
        assert err_kind(r) == kind, (kw, r)
        assert "nothing was written" in r["error"] or kind == "invalid_request", r
        assert not os.path.exists(big)
    r = streamed_write(proxy, ".git/config", b"x" * (2 * 1024 * 1024))
    assert err_kind(r) == "path_denied", r
    r = streamed_write(proxy, "s/no.bin", b"x", mode="bad")
    assert err_kind(r) == "invalid_request", r
    assert err_kind(proxy.ch.request("write", {"path": "s/no.bin", "content": "x", "content_bytes": 1})) \
        == "invalid_request"
    assert not os.path.exists(big)

    # What was judged must still be there when the content has arrived (an agent command runs
    # meanwhile): a renamed directory or a replaced file is a conflict, and nothing is written.
    import hashlib
    os.makedirs(os.path.join(proxy.ws, "m"))
    data = b"m" * (2 * 1024 * 1024)
    sid = proxy.ch.start("write", {"path": "m/f.txt", "content_bytes": len(data),
                                   "content_sha256": hashlib.sha256(data).hexdigest()})
    proxy.ch.send(DATA, sid, data[:1024 * 1024])
    deadline = time.monotonic() + 60
    while not proxy_holds(proxy, os.path.join(proxy.ws, "m")):  # the directory it judged
        assert time.monotonic() < deadline, "the streamed write never opened its directory"
        time.sleep(0.02)
    os.rename(os.path.join(proxy.ws, "m"), os.path.join(proxy.ws, "m2"))
    proxy.ch.send(DATA, sid, data[1024 * 1024:])
    proxy.ch.send(END, sid)
    r = proxy.ch.wait(sid)
    assert err_kind(r) == "conflict" and "moved" in r["error"], r
    assert os.listdir(os.path.join(proxy.ws, "m2")) == []
    with open(os.path.join(proxy.ws, "m2/e.txt"), "w") as f:
        f.write("old")
    sid = proxy.ch.start("write", {"path": "m2/e.txt", "content_bytes": len(data),
                                   "content_sha256": hashlib.sha256(data).hexdigest()})
    # The write's request is handled on its own thread: a status answer does not prove it has
    # opened the file yet. It has once the proxy holds a descriptor of it.
    held = os.path.join(proxy.ws, "m2/e.txt")
    deadline = time.monotonic() + 60
    while not proxy_holds(proxy, held):
        assert time.monotonic() < deadline, "the streamed write never opened the file it judged"
        time.sleep(0.02)
    os.unlink(os.path.join(proxy.ws, "m2/e.txt"))
    with open(os.path.join(proxy.ws, "m2/e.txt"), "w") as f:
        f.write("new")
    proxy.ch.send(DATA, sid, data[:1024 * 1024])
    proxy.ch.send(DATA, sid, data[1024 * 1024:])
    proxy.ch.send(END, sid)
    r = proxy.ch.wait(sid)
    assert err_kind(r) == "conflict" and "replaced" in r["error"], r
    assert open(os.path.join(proxy.ws, "m2/e.txt")).read() == "new"

    # A cancelled write answers and writes nothing; the channel still works.
    sid = proxy.ch.start("write", {"path": "s/c.bin", "content_bytes": 4, "content_sha256": "0" * 64})
    proxy.ch.send(DATA, sid, b"ab")
    proxy.ch.cancel(sid)
    assert err_kind(proxy.ch.wait(sid)) == "invalid_request"
    assert not os.path.exists(os.path.join(proxy.ws, "s/c.bin"))
    assert proxy.ch.request("write", {"path": "s/ok.txt", "content": "ok"})["bytes"] == 2
    # Whatever the stream did, nothing but the answer came back on it.
    stray = [f for q in proxy.ch.pending.values() for f in q if f.type == ERROR]
    assert not stray, stray


def test_edit_unique_replace(proxy):
    configure(proxy)
    proxy.put("e.txt", "one two two three")
    r = proxy.ch.request("edit", {"path": "e.txt", "old": "one", "new": "1"})
    assert r["replacements"] == 1
    assert open(os.path.join(proxy.ws, "e.txt")).read() == "1 two two three"
    assert err_kind(proxy.ch.request("edit", {"path": "e.txt", "old": "two", "new": "2"})) == "not_unique"
    assert err_kind(proxy.ch.request("edit", {"path": "e.txt", "old": "four", "new": "4"})) == "not_found"
    assert err_kind(proxy.ch.request("edit", {"path": "e.txt", "old": "", "new": "4"})) == "invalid_request"
    assert err_kind(proxy.ch.request("edit", {"path": "nope", "old": "a", "new": "b"})) == "not_found"


def test_list_glob_grep(proxy):
    configure(proxy)
    proxy.put("src/main.c", "int main(void) {\n  return 0;\n}\n")
    proxy.put("src/util.c", "static int helper;\nint MAIN_LIKE;\n")
    proxy.put("README", "read me\n")
    proxy.put(".env", "SECRET=1\n")
    r = proxy.ch.request("list", {})
    names = {e["name"]: e["type"] for e in r["entries"]}
    assert names["src"] == "dir" and names["README"] == "file" and ".env" not in names
    r = proxy.ch.request("glob", {"pattern": "src/*.c"})
    assert sorted(r["matches"]) == ["src/main.c", "src/util.c"]
    r = proxy.ch.request("glob", {"pattern": "**"})
    assert ".env" not in r["matches"]
    r = proxy.ch.request("grep", {"pattern": "main"})
    assert [(m["path"], m["line"]) for m in r["matches"]] == [("src/main.c", 1)]
    r = proxy.ch.request("grep", {"pattern": "main", "ignore_case": True})
    assert {m["path"] for m in r["matches"]} == {"src/main.c", "src/util.c"}
    r = proxy.ch.request("grep", {"pattern": "SECRET"})
    assert r["matches"] == []
    r = proxy.ch.request("grep", {"pattern": "int", "max_matches": 1})
    assert len(r["matches"]) == 1 and r["truncated"] is True
    assert err_kind(proxy.ch.request("grep", {"pattern": "("})) == "invalid_request"
    r = proxy.ch.request("grep", {"pattern": "return", "path": "src/main.c"})
    assert r["matches"][0]["line"] == 2


# ---------------------------------------------------------------- run

def test_run_argv_output_exit(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=policy(proxy_bin, agent_ids, extra_allowed=["id", "printf", "cat", "false", "pwd"]))
    r = proxy.ch.request("run", {"argv": ["id", "-u"]})
    assert r["exit_code"] == 0 and r["stdout"].strip() == str(agent_ids[0]) and r["success"]
    r = proxy.ch.request("run", {"argv": ["id", "-G"]})
    assert r["stdout"].split() == [str(agent_ids[1])]  # supplementary groups dropped
    r = proxy.ch.request("run", {"argv": ["false"]})
    assert r["exit_code"] == 1 and r["success"] is False
    r = proxy.ch.request("run", {"argv": ["cat"], "stdin": "piped in"})
    assert r["stdout"] == "piped in"
    os.mkdir(os.path.join(proxy.ws, "sub"))
    r = proxy.ch.request("run", {"argv": ["pwd"], "cwd": "sub"})
    assert r["stdout"].strip() == os.path.join(proxy.ws, "sub")
    r = proxy.ch.request("run", {"argv": ["printf", "\\377\\376"]})
    assert base64.b64decode(r["stdout_base64"]) == b"\xff\xfe"
    assert err_kind(proxy.ch.request("run", {"argv": ["id"], "cwd": "../.."})) == "sandbox_escape"
    assert err_kind(proxy.ch.request("run", {"argv": []})) == "invalid_request"
    assert err_kind(proxy.ch.request("run", {"argv": ["id"], "command": "id"})) == "invalid_request"


def test_run_output_cap_truncated(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=policy(proxy_bin, agent_ids, extra_allowed=["head"]),
              limits={"max_output_bytes": 1000})
    r = proxy.ch.request("run", {"argv": ["head", "-c", "100000", "/dev/zero"]})
    assert r["truncated"] is True and r["stdout_bytes"] == 100000
    assert len(base64.b64decode(r["stdout_base64"])) == 1000 if "stdout_base64" in r else len(r["stdout"]) == 1000


def test_run_timeout_kills_process_group(proxy_bin, agent_ids, proxy):
    pol = policy(proxy_bin, agent_ids, extra_allowed=["sleep"])
    configure(proxy, policy=pol)
    t = time.monotonic()
    r = proxy.ch.request("run", {"argv": ["sleep", "30"], "timeout_seconds": 1}, timeout=20)
    assert time.monotonic() - t < 10
    assert r["timed_out"] is True and r["signal"] == 9 and r["success"] is False


def test_run_does_not_block_other_requests(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=policy(proxy_bin, agent_ids, extra_allowed=["sleep"]))
    proxy.put("f.txt", "x")
    slow = proxy.ch.start("run", {"argv": ["sleep", "3"]})
    t = time.monotonic()
    r = proxy.ch.request("read", {"path": "f.txt"})
    assert r["content"] == "x" and time.monotonic() - t < 2
    r = proxy.ch.wait(slow, timeout=20)
    assert r["exit_code"] == 0


def test_run_stream_and_cancel(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=policy(proxy_bin, agent_ids, extra_allowed=["echo", "sleep"]))
    resp, data, end = proxy.ch.request_stream_out("run", {"argv": ["echo", "streamed"], "stream": True})
    assert resp["exit_code"] == 0 and data == b"\x01streamed\n"
    sid = proxy.ch.start("run", {"argv": ["sleep", "30"]})
    time.sleep(0.3)
    proxy.ch.cancel(sid)
    r = proxy.ch.wait(sid, timeout=10)
    assert r["cancelled"] is True and r["success"] is False


def test_run_not_found_program(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=policy(proxy_bin, agent_ids, extra_allowed=["no-such-program-x"]))
    assert err_kind(proxy.ch.request("run", {"argv": ["no-such-program-x"]})) == "not_found"


def test_run_command_string_without_shell_is_split(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=policy(proxy_bin, agent_ids, extra_allowed=["echo"]))
    r = proxy.ch.request("run", {"command": "echo 'a b' c"})
    assert r["stdout"] == "a b c\n"


def test_run_command_string_with_shell(proxy_bin, agent_ids, proxy):
    pol = policy(proxy_bin, agent_ids)
    pol["commands"] = {"unrestricted": True, "allowed": [], "blocked": [], "allowed_rules": [], "blocked_rules": []}
    configure(proxy, policy=pol)
    r = proxy.ch.request("run", {"command": "echo one && echo two | tr a-z A-Z"})
    assert r["stdout"] == "one\nTWO\n", r


# ---------------------------------------------------------------- approvals, budget, charge

def test_approval_required_then_approved(proxy_bin, agent_ids, proxy, approver):
    # fix-issue: git_commit needs an approval (obligation).
    configure(proxy, approver=approver)
    subprocess.run(["git", "init", "-q", proxy.ws], check=True)
    subprocess.run(["chown", "-R", f"{agent_ids[0]}:{agent_ids[1]}", proxy.ws], check=True)
    argv = ["git", "commit", "--allow-empty", "-m", "x"]
    r = proxy.ch.request("run", {"argv": argv})
    assert err_kind(r) == "approval_required"
    assert r["operation"] == "git_commit" and r["args_sha256"] == args_sha256(argv)
    tok = approver.mint("pod-test", "git_commit", args=argv)
    a = proxy.ch.request("approve", {"token": tok})
    assert a["ok"] is True and a["operation"] == "git_commit"
    r = proxy.ch.request("run", {"argv": argv})
    assert "error" not in r, r  # git itself may fail (no identity); the call was allowed
    assert err_kind(proxy.ch.request("run", {"argv": argv})) == "approval_required"  # single use


def test_streamed_writes_at_once_are_bounded(proxy):
    """At most 4 streamed writes receive content at once, announcing 64 MiB together (guest
    memory); beyond: capacity, at once, and the stream is swallowed. A cancel frees the room."""
    M = 1024 * 1024
    configure(proxy, limits={"max_file_bytes": 32 * M})

    def start(path, n):
        return proxy.ch.start("write", {"path": path, "content_bytes": n, "content_sha256": "0" * 64})

    sids = [start("w0", 32 * M), start("w1", 32 * M)]
    assert proxy.ch.request("status")
    r = proxy.ch.request_stream_in("write", {"path": "x", "content_bytes": 1, "content_sha256": "0" * 64}, b"")
    assert err_kind(r) == "capacity" and "67108864 bytes" in r["error"], r
    for sid in sids:
        proxy.ch.cancel(sid)
        assert err_kind(proxy.ch.wait(sid)) == "invalid_request"
    sids = [start(f"v{i}", 1) for i in range(4)]
    assert proxy.ch.request("status")
    r = proxy.ch.request_stream_in("write", {"path": "y", "content_bytes": 1, "content_sha256": "0" * 64}, b"")
    assert err_kind(r) == "capacity" and "4 large writes" in r["error"], r
    for sid in sids:
        proxy.ch.cancel(sid)
        assert err_kind(proxy.ch.wait(sid)) == "invalid_request"
    data = b"z" * (32 * M)
    assert streamed_write(proxy, "after.bin", data)["bytes"] == len(data)  # a lone write: max_file_bytes


def test_streamed_write_approval(proxy_bin, agent_ids, proxy, approver):
    """A streamed write that needs an approval: the token binds to the wire arguments, whose
    content_sha256 stands for the content, so the same write sent again goes through and other
    content under the same token does not."""
    import hashlib
    pol = policy(proxy_bin, agent_ids)
    pol["obligations"] = {"approvals": sorted(set(pol.get("obligations", {}).get("approvals", [])) | {"write_files"})}
    configure(proxy, policy=pol, approver=approver)
    data = b"w" * (2 * 1024 * 1024)
    args = {"path": "ap.bin", "content_bytes": len(data), "content_sha256": hashlib.sha256(data).hexdigest()}
    r = proxy.ch.request_stream_in("write", args, data, chunk=1024 * 1024)
    assert err_kind(r) == "approval_required" and r["args_sha256"] == args_sha256(args), r
    assert not os.path.exists(os.path.join(proxy.ws, "ap.bin"))
    tok = approver.mint("pod-test", "write_files", args=args)
    other = b"v" * len(data)
    r = proxy.ch.request_stream_in("write", {**args, "content_sha256": hashlib.sha256(other).hexdigest(),
                                             "approval": tok}, other, chunk=1024 * 1024)
    assert err_kind(r) == "approval_invalid", r
    r = proxy.ch.request_stream_in("write", {**args, "approval": tok}, data, chunk=1024 * 1024)
    assert r.get("bytes") == len(data), r
    assert open(os.path.join(proxy.ws, "ap.bin"), "rb").read() == data


def test_approve_errors(proxy, approver):
    configure(proxy, approver=approver)
    assert err_kind(proxy.ch.request("approve", {"token": "nat1.garbage"})) == "approval_invalid"
    assert err_kind(proxy.ch.request("approve", {})) == "invalid_request"
    wrong_pod = approver.mint("other-pod", "git_commit")
    r = proxy.ch.request("approve", {"token": wrong_pod})
    assert err_kind(r) == "approval_invalid" and r["detail"] == "wrong_pod"


def test_approve_without_configured_key(proxy, approver):
    configure(proxy)
    assert err_kind(proxy.ch.request("approve", {"token": approver.mint("pod-test", "git_commit")})) == "approval_invalid"


def test_charge_and_budget_exhausted(proxy):
    configure(proxy)
    st = proxy.ch.request("status")
    left = st["budget"]["left_usd_micros"]
    r = proxy.ch.request("charge", {"usd_micros": 10, "input_tokens": 5, "output_tokens": 7})
    assert r["ok"] is True and r["budget"]["input_tokens"] == 5
    r = proxy.ch.request("charge", {"usd": "0.000010"})
    assert r["ok"] is True
    assert err_kind(proxy.ch.request("charge", {"usd": "abc"})) == "invalid_request"
    assert err_kind(proxy.ch.request("charge", {"usd_micros": -1})) == "invalid_request"
    assert err_kind(proxy.ch.request("charge", {"usd_micros": left * 2})) == "budget_exhausted"
    proxy.put("x", "1")
    assert err_kind(proxy.ch.request("read", {"path": "x"})) == "budget_exhausted"
    assert proxy.ch.request("status")["budget"]["exhausted"] is True


def test_deadline_time_violation(proxy):
    configure(proxy, time_remaining_ms=1000)
    proxy.put("x", "1")
    time.sleep(1.3)
    assert err_kind(proxy.ch.request("read", {"path": "x"})) == "time_violation"
    assert proxy.ch.request("status")["expired"] is True


def test_unknown_op_and_bad_json(proxy):
    configure(proxy)
    assert err_kind(proxy.ch.request("frobnicate", {})) == "unsupported"
    sid = proxy.ch.new_stream()
    proxy.ch.send(REQUEST, sid, b"{not json")
    assert err_kind(proxy.ch.wait(sid)) == "invalid_request"
    sid = proxy.ch.new_stream()
    proxy.ch.send(REQUEST, sid, b'{"op":"read","op":"write"}')
    assert err_kind(proxy.ch.wait(sid)) == "invalid_request"


def test_web_fetch_denied_without_capability(proxy):
    configure(proxy, dns_allow=["example.com"])
    r = proxy.ch.request("web_fetch", {"url": "https://example.com/"})
    assert err_kind(r) == "insufficient_capability"


@pytest.fixture
def http_server():
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/redirect-out"):
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{self.server.server_port}/secret")
                self.end_headers()
                return
            if self.path.startswith("/redirect-in"):
                self.send_response(302)
                self.send_header("Location", "/hello")
                self.end_headers()
                return
            body = b"hello from test" if self.path == "/hello" else b"x" * 5000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Test", "yes")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_port
    srv.shutdown()


@pytest.fixture
def fetch_proxy(proxy_bin, agent_ids):
    from conftest import binary
    from helpers.proxyrun import ProxyProcess
    pp = ProxyProcess(proxy_bin, *agent_ids, extra_args=["--fetch-helper", str(binary("nucleus-web-fetch"))])
    yield pp
    alive = pp.alive()
    pp.stop()
    assert alive


def web_policy(proxy_bin, agent_ids):
    pol = policy(proxy_bin, agent_ids)
    pol["capabilities"]["web_fetch"] = "low_risk"
    return pol


def test_web_fetch_allowed_host_and_redirect_checks(proxy_bin, agent_ids, fetch_proxy, http_server):
    port = http_server
    configure(fetch_proxy, policy=web_policy(proxy_bin, agent_ids), dns_allow=[f"127.0.0.1:{port}"])
    r = fetch_proxy.ch.request("web_fetch", {"url": f"http://127.0.0.1:{port}/hello"})
    assert r["status"] == 200 and r["body"] == "hello from test" and r["headers"]["x-test"] == "yes", r
    r = fetch_proxy.ch.request("web_fetch", {"url": f"http://127.0.0.1:{port}/redirect-in"})
    assert r["status"] == 200 and r["redirects"] == 1 and r["body"] == "hello from test"
    # A redirect to a host that is not allowed is refused, not followed.
    r = fetch_proxy.ch.request("web_fetch", {"url": f"http://127.0.0.1:{port}/redirect-out"})
    assert err_kind(r) == "network_denied" and "localhost" in r["error"]
    r = fetch_proxy.ch.request("web_fetch", {"url": f"http://localhost:{port}/hello"})
    assert err_kind(r) == "network_denied"
    r = fetch_proxy.ch.request("web_fetch", {"url": f"http://127.0.0.1:{port + 1 if port < 65535 else 1}/hello"})
    assert err_kind(r) == "network_denied"
    r = fetch_proxy.ch.request("web_fetch", {"url": f"http://127.0.0.1:{port}/big", "max_bytes": 100})
    assert r["truncated"] is True and len(r["body"]) == 100
    assert err_kind(fetch_proxy.ch.request("web_fetch", {"url": "file:///etc/passwd"})) == "invalid_request"
    assert err_kind(fetch_proxy.ch.request("web_fetch", {"url": "http://x/", "method": "TRACE"})) == "invalid_request"


def test_web_fetch_without_dns_allow(proxy_bin, agent_ids, fetch_proxy):
    configure(fetch_proxy, policy=web_policy(proxy_bin, agent_ids))
    assert err_kind(fetch_proxy.ch.request("web_fetch", {"url": "https://example.com/"})) == "network_denied"


def test_web_fetch_without_helper(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=web_policy(proxy_bin, agent_ids), dns_allow=["example.com"])
    assert err_kind(proxy.ch.request("web_fetch", {"url": "https://example.com/"})) == "unsupported"


# ---------------------------------------------------------------- import / export

def test_import_export_roundtrip(proxy):
    configure(proxy)
    tar = make_tar([("src", "dir", None), ("src/a.txt", "file", "alpha\n"), ("run.sh", "file", "#!/bin/sh\n", 0o4755),
                    ("link", "symlink", "src/a.txt"), ("hl", "hardlink", "src/a.txt")])
    r = proxy.ch.request_stream_in("import", {}, tar)
    assert r["files"] == 2 and r["dirs"] == 1 and len(r["baseline"]) == 40, r
    st = os.stat(os.path.join(proxy.ws, "run.sh"))
    assert st.st_mode & 0o7777 == 0o755 and st.st_uid == proxy.uid  # setuid stripped
    assert os.readlink(os.path.join(proxy.ws, "link")) == "src/a.txt"
    assert os.stat(os.path.join(proxy.ws, "hl")).st_nlink == 1
    proxy.ch.request("write", {"path": "src/a.txt", "content": "beta\n"})
    proxy.ch.request("write", {"path": "new.bin", "content_base64": base64.b64encode(b"\0\xff").decode()})
    resp, patch, end = proxy.ch.request_stream_out("export", {})
    assert set(resp["changed"]) == {"src/a.txt", "new.bin"}
    assert b"-alpha\n+beta\n" in patch and b"GIT binary patch" in patch
    assert resp["patch_bytes"] == len(patch)
    assert resp["flagged"] == []


def test_export_leaves_out_self_ignoring_tool_caches(proxy):
    """The caches test tools write into the project (.pytest_cache, .mypy_cache, .ruff_cache)
    carry their own `.gitignore` with `*`, so a host's git never shows them; the export, which
    reads no ignore file the agent wrote, used to put them into every Python fix's patch. New
    files there stay out; a tracked file under such a name and everything else still count."""
    configure(proxy)
    tar = make_tar([("calc.py", "file", "x = 1\n"), ("keep", "dir", None),
                    ("keep/.pytest_cache", "file", "tracked on purpose\n")])
    assert "error" not in proxy.ch.request_stream_in("import", {}, tar)
    proxy.ch.request("write", {"path": "calc.py", "content": "x = 2\n"})
    def put(rel, text):  # what pytest, mypy and ruff do in the pod
        path = os.path.join(proxy.ws, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    for d in (".pytest_cache", "sub/.mypy_cache", ".ruff_cache"):
        put(f"{d}/.gitignore", "# Created by the tool.\n*\n")
        put(f"{d}/v/cache/lastfailed", "{}\n")
    put("keep/.pytest_cache", "changed\n")
    put("notes/.pytest_cache.txt", "a note\n")
    resp, patch, end = proxy.ch.request_stream_out("export", {})
    assert "error" not in resp, resp
    assert set(resp["changed"]) == {"calc.py", "keep/.pytest_cache", "notes/.pytest_cache.txt"}, resp


def test_import_names_are_bytes(proxy):
    """A workspace name that is not valid UTF-8 (or not valid in any locale) travels as bytes:
    pax hdrcharset=BINARY (what the CLI writes) is imported byte for byte, listed, read and
    exported without error."""
    configure(proxy)
    raw = [b"caf\xe9.txt", b"bad-\xff\xfe", b"d\xe9/in\x80.c", "ünï.txt".encode()]
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tf:
        for n in raw:
            data = b"x" + n
            ti = tarfile.TarInfo(os.fsdecode(n))
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    tar = bio.getvalue()
    assert b"hdrcharset=BINARY" in tar  # the form under test
    r = proxy.ch.request_stream_in("import", {}, tar)
    assert "error" not in r and r["files"] == len(raw), r
    for n in raw:
        with open(os.path.join(os.fsencode(proxy.ws), n), "rb") as f:
            assert f.read() == b"x" + n
    lst = proxy.ch.request("list", {"path": "."})
    assert "error" not in lst, lst
    ok = proxy.ch.request("read", {"path": "ünï.txt"})
    assert ok.get("content") == "x" + "ünï.txt", ok
    with open(os.path.join(os.fsencode(proxy.ws), b"caf\xe9.txt"), "ab") as f:
        f.write(b"changed\n")
    resp, patch, end = proxy.ch.request_stream_out("export", {})
    assert "error" not in resp, resp
    assert b"caf" in patch


def test_baseline_is_one_pack(proxy):
    """The baseline holds no loose objects (30,000 of them could exhaust the scratch disk's
    inodes): blobs go straight into a pack, the repack folds in trees and the commit."""
    configure(proxy)
    entries = [("d%d" % i, "dir", None) for i in range(20)]
    entries += [("d%d/f%d.txt" % (i % 20, i), "file", "line %d\n" % i) for i in range(400)]
    r = proxy.ch.request_stream_in("import", {}, make_tar(entries))
    assert r["files"] == 400, r
    objects = os.path.join(proxy.state, "baseline.git", "objects")
    loose = [d for d in os.listdir(objects) if len(d) == 2 and os.listdir(os.path.join(objects, d))]
    assert loose == [], loose
    packs = [f for f in os.listdir(os.path.join(objects, "pack")) if f.endswith(".pack")]
    assert len(packs) == 1, packs


def test_import_disk_full_names_the_cause(proxy_bin, agent_ids):
    """A full disk under the state dir reaches the caller as "No space left on device" with the
    knob that makes the disk larger, never as a bare I/O error."""
    pp = ProxyProcess(proxy_bin, *agent_ids)
    try:
        os.makedirs(pp.state, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", pp.state], check=True)
        try:
            configure(pp)
            big = os.urandom(2 * 1024 * 1024)  # incompressible: the baseline pack cannot fit 1 MiB
            resp = pp.ch.request_stream_in("import", {}, make_tar([("blob.bin", "file", big)]))
            assert err_kind(resp) == "too_large", resp
            msg = resp["error"]
            assert "No space left on device" in msg and "scratch_mib" in msg, resp
        finally:
            subprocess.run(["umount", "-l", pp.state])
    finally:
        pp.stop()


def test_import_errors(proxy):
    configure(proxy)
    assert err_kind(proxy.ch.request_stream_in("import", {}, b"x" * 1024)) == "invalid_request"
    assert err_kind(proxy.ch.request_stream_in("import", {}, make_tar([("/abs", "file", "x")]))) == "sandbox_escape"
    assert err_kind(proxy.ch.request_stream_in("import", {}, make_tar([("fifo", "fifo", None)]))) == "invalid_request"
    proxy.ch.drain_events(0.2)
    assert proxy.ch.request("status")["jobs"] == 0


def test_export_without_baseline(proxy):
    configure(proxy)
    assert err_kind(proxy.ch.request("export", {})) == "not_found"


def test_chardev_transport(proxy_bin, agent_ids):
    """--channel-dev with a character device (a raw pty stands in for the virtio-serial port)."""
    import pty
    import tty
    import tempfile
    master, slave = pty.openpty()
    tty.setraw(slave)
    ws = tempfile.mkdtemp(prefix="nucleus-x-cd-", dir="/tmp")
    os.chown(ws, *agent_ids)
    st = tempfile.mkdtemp(prefix="nucleus-x-st-", dir="/tmp")
    proc = subprocess.Popen([str(proxy_bin), "--channel-dev", os.ttyname(slave), "--workspace", ws, "--agent-user",
                             "nucleus-test-agent", "--state-dir", st + "/s"], stderr=subprocess.DEVNULL)
    ch = Channel.from_fd(master, timeout=10)
    try:
        boot = ch.wait_event(lambda e: e.get("type") == "boot")
        assert boot["component"] == "nucleus-tool-proxy"
        assert ch.configure({"pod_id": "cd", "profile": "fix-issue"})["pod_id"] == "cd"
        assert ch.request("list", {})["entries"] == []
    finally:
        proc.terminate()
        proc.wait(5)
        ch.close()
        os.close(slave)
        import shutil
        shutil.rmtree(ws, ignore_errors=True)
        shutil.rmtree(st, ignore_errors=True)


def test_without_procfs_symlinks_are_never_followed(proxy_bin, agent_ids):
    from helpers.proxyrun import ProxyProcess
    hide = ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount -t tmpfs none /proc && exec "$@"', "sh"]
    pp = ProxyProcess(proxy_bin, *agent_ids, wrapper=hide)
    try:
        configure(pp)
        pp.put("real.txt", "R")
        os.symlink("real.txt", os.path.join(pp.ws, "alias"))
        assert pp.ch.request("read", {"path": "real.txt"})["content"] == "R"
        assert err_kind(pp.ch.request("read", {"path": "alias"})) == "sandbox_escape"
        assert pp.ch.request("write", {"path": "d/n.txt", "content": "x", "create_dirs": True})["created"]
        assert "/proc is not mounted" in pp.logs()
        assert pp.alive()
    finally:
        pp.stop()


# ---------------------------------------------------------------- channel robustness

def test_garbage_frames_drop_peer_proxy_survives(proxy):
    configure(proxy)
    ch = proxy.ch
    try:
        ch.send_raw(b"\x00garbage" * 10)
        for _ in range(10):
            ch.send_raw(encode_frame(99, 1, b"zz"))
    except (BrokenPipeError, ConnectionResetError):
        pass  # dropped before we finished: that is the point
    with pytest.raises((ChannelClosed, ChannelError, OSError)):
        for _ in range(100):
            ch.read_frame(timeout=5)
    assert any(f.type == ERROR for f in ch.errors)
    ch.close()
    # A new peer can connect and the configuration persisted.
    proxy.ch = proxy.connect()
    assert len(proxy.ch.request("status")["policy_sha256"]) == 64


def test_oversized_frame_is_refused_without_allocation(proxy):
    configure(proxy)
    hdr = struct.pack(">2sBBIII", b"NU", 1, REQUEST, 7, 0xFFFFFFF0, 0)
    proxy.ch.send_raw(hdr)
    f = proxy.ch.read_frame(timeout=5)
    while f.type != ERROR:
        f = proxy.ch.read_frame(timeout=5)
    assert f.json()["kind"] == "too_large" and f.stream == 7
    assert proxy.alive()


def test_second_peer_refused(proxy):
    configure(proxy)
    other = proxy.connect()
    f = other.read_frame(timeout=5)
    assert f.type == ERROR and f.json()["kind"] == "conflict"
    other.close()
    assert proxy.ch.request("status")["pod_id"] == "pod-test"


def test_data_for_unknown_stream(proxy):
    configure(proxy)
    proxy.ch.send(DATA, 41, b"abc")
    f = proxy.ch.read_frame(timeout=5)
    while f.type != ERROR:
        f = proxy.ch.read_frame(timeout=5)
    assert f.stream == 41
    proxy.ch.send(CANCEL, 43)  # harmless
    assert proxy.ch.request("status")["jobs"] == 0


# ---------------------------------------------------------------- reconfigure (a forked pod's handshake)
# Only refusals run here: an accepted reconfigure sets the clock, and this proxy runs on the host
# (tests/e2e/test_fork_vm.py covers the accepted handshake inside a VM).

def test_reconfigure_refuses_a_looser_policy(proxy_bin, agent_ids, proxy):
    import json
    from helpers.proxyrun import ProxyProcess
    configure(proxy)
    st = proxy.ch.request("status")
    cur = st["policy"]
    base = {"pod_id": "pod-child", "time_remaining_ms": 60000,
            "wall_clock_unix_ms": 1765000000000, "entropy_seed": "ab" * 32}
    # A permissive policy, as another proxy configured with that profile reports it.
    other = ProxyProcess(proxy_bin, *agent_ids)
    try:
        configure(other, profile="permissive")
        permissive = other.ch.request("status")["policy"]
    finally:
        other.stop()

    r = proxy.ch.request("reconfigure", dict(base, policy=permissive))
    assert err_kind(r) == "insufficient_capability" and "looser" in r["error"], r
    richer = json.loads(json.dumps(cur))
    richer["budget"]["max_usd_micros"] = cur["budget"]["max_usd_micros"] + 1
    r = proxy.ch.request("reconfigure", dict(base, policy=richer))
    assert err_kind(r) == "insufficient_capability" and "budget" in r["error"], r
    # The fresh fields are required; anything else is refused.
    for drop in ("wall_clock_unix_ms", "entropy_seed"):
        args = dict(base, policy=cur)
        del args[drop]
        r = proxy.ch.request("reconfigure", args)
        assert err_kind(r) == "invalid_request" and drop in r["error"], r
    r = proxy.ch.request("reconfigure", dict(base, policy=cur, limits={"max_read_bytes": 1}))
    assert err_kind(r) == "invalid_request" and "limits" in r["error"], r
    # Nothing changed.
    st2 = proxy.ch.request("status")
    assert st2["pod_id"] == "pod-test" and st2["policy_sha256"] == st["policy_sha256"]
