# SPDX-License-Identifier: Apache-2.0
"""Filesystem part, as a class: files the policy's paths.blocked matches are imported
root-owned and 0600 (directories 0700), so no command (agent uid) can read them, whatever
program and however the path is spelled; the proxy (root) still exports them unchanged."""
import os
import stat

from helpers.proxyrun import agent_ids, configure, fix_issue_policy, make_tar, proxy, proxy_bin  # noqa: F401

SECRET = "API_TOKEN=s3cr3t-xfix\n"

# Reads the secret through names no argument check can connect to '.env'.
READER = """
import os, sys
for p in ("." + "env", "sub/../." + "env", "keys/" + "id_" + "rsa"):
    try:
        print(p, open(p).read().strip())
    except OSError as e:
        print(p, "ERR", e.errno)
"""


def import_tree(proxy):
    tar = make_tar([(".env", "file", SECRET), ("keys/id_rsa", "file", "PRIVATE\n"), ("sub/ok.txt", "file", "ok\n"),
                    ("src/main.c", "file", "int x;\n")])
    r = proxy.ch.request_stream_in("import", {}, tar)
    assert "error" not in r, r
    return r


def test_blocked_files_are_root_only_and_unreadable_by_commands(proxy_bin, agent_ids, proxy):
    pol = fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["python3 reader.py", "cat src/main.c"])
    pol["paths"]["blocked"] = sorted(set(pol["paths"]["blocked"]) | {"**/.env", "keys/**"})
    configure(proxy, policy=pol)
    r = import_tree(proxy)
    assert r["protected"] >= 2, r
    st = os.stat(os.path.join(proxy.ws, ".env"))
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    st = os.stat(os.path.join(proxy.ws, "keys/id_rsa"))
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    assert os.stat(os.path.join(proxy.ws, "src/main.c")).st_uid == agent_ids[0]
    os.makedirs(os.path.join(proxy.ws, "tmp"), exist_ok=True)
    with open(os.path.join(proxy.ws, "reader.py"), "w") as f:
        f.write(READER)
    r = proxy.ch.request("run", {"argv": ["python3", "reader.py"]})
    assert "s3cr3t" not in r.get("stdout", "") and "PRIVATE" not in r.get("stdout", ""), r
    assert r["stdout"].count("ERR 13") == 3, r
    # Ordinary files stay readable by commands.
    r = proxy.ch.request("run", {"argv": ["cat", "src/main.c"]})
    assert r.get("stdout") == "int x;\n", r
    # The proxy (root) still exports the workspace: an edit next to the secret shows up, the
    # secret itself is unchanged, so it is not in the patch.
    proxy.ch.request("write", {"path": "src/main.c", "content": "int y;\n"})
    resp, patch, _ = proxy.ch.request_stream_out("export", {})
    assert ".env" not in resp["changed"] and "src/main.c" in resp["changed"] and b"s3cr3t" not in patch, resp


def test_git_diff_no_index_cannot_read_the_secret(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids,
                                             extra_allowed=["git diff --no-index /dev/null .env"]))
    import_tree(proxy)
    r = proxy.ch.request("run", {"argv": ["git", "diff", "--no-index", "/dev/null", ".env"]})
    assert "s3cr3t" not in r.get("stdout", "") + r.get("stderr", ""), r
