# SPDX-License-Identifier: Apache-2.0
"""Adversarial group P1 against a real nucleus-tool-proxy: changes to files a host would later
execute or parse (git hooks and config, shell rc files, CI and agent config) are flagged in the
exported patch, including changes under .git/ that git itself never shows."""
import os
import stat

from helpers.proxyrun import agent_ids, configure, make_tar, proxy, proxy_bin  # noqa: F401


def flagged(resp):
    return {f["path"]: f["reason"] for f in resp["flagged"]}


def test_p1_git_hooks_and_config_flagged(proxy):
    configure(proxy)
    tar = make_tar([(".git", "dir", None), (".git/config", "file", "[core]\n\tbare = false\n"),
                    (".git/hooks", "dir", None), (".git/hooks/pre-commit.sample", "file", "#!/bin/sh\n"),
                    ("README", "file", "hi\n")])
    assert "error" not in proxy.ch.request_stream_in("import", {}, tar)
    resp, patch, _ = proxy.ch.request_stream_out("export", {})
    assert resp["flagged"] == [] and resp["changed"] == []
    # What an agent can do with any allowed command (the proxy's own write op refuses these
    # paths under fix-issue): add a hook, make it executable, point git at a monitor.
    hook = proxy.put(".git/hooks/pre-commit", "#!/bin/sh\ntouch /tmp/pwn\n", 0o755)
    os.chmod(hook, 0o755)
    with open(os.path.join(proxy.ws, ".git/config"), "a") as f:
        f.write("\tfsmonitor = touch /tmp/pwn\n\thooksPath = .githooks\n")
    os.chmod(os.path.join(proxy.ws, ".git/hooks/pre-commit.sample"), 0o755)
    resp, patch, _ = proxy.ch.request_stream_out("export", {})
    f = flagged(resp)
    assert f[".git/hooks/pre-commit"] == "git"
    assert f[".git/config"] == "git"
    assert f[".git/hooks/pre-commit.sample"] == "git"  # mode change counts
    changes = {x["path"]: x.get("change") for x in resp["flagged"]}
    assert changes[".git/hooks/pre-commit"] == "added" and changes[".git/config"] == "modified"


def test_p1_host_executed_files_flagged(proxy):
    configure(proxy)
    assert "error" not in proxy.ch.request_stream_in("import", {}, make_tar([("src/x.c", "file", "int x;\n")]))
    files = {".github/workflows/ci.yml": "ci", ".gitlab-ci.yml": "ci", ".bashrc": "shells", "sub/.profile": "shells",
             ".zshrc": "shells", ".claude/settings.json": "coding agents", ".mcp.json": "coding agents",
             "AGENTS.md": "coding agents", ".cursor/rules": "coding agents", "Makefile": "make and autotools",
             "package.json": "javascript", ".gitmodules": "git", ".vscode/tasks.json": "editors and ides"}
    for p in files:
        proxy.put(p, "x\n")
    proxy.put("src/x.c", "int y;\n")
    resp, patch, _ = proxy.ch.request_stream_out("export", {})
    f = flagged(resp)
    for p, why in files.items():
        assert f.get(p) == why, (p, f)
    assert "src/x.c" not in f and "src/x.c" in resp["changed"]
    assert b".github/workflows/ci.yml" in patch


def test_p1_deleting_a_hook_is_flagged(proxy):
    configure(proxy)
    tar = make_tar([(".git", "dir", None), (".git/hooks", "dir", None), (".git/hooks/post-checkout", "file", "#!/bin/sh\n", 0o755)])
    assert "error" not in proxy.ch.request_stream_in("import", {}, tar)
    os.unlink(os.path.join(proxy.ws, ".git/hooks/post-checkout"))
    resp, _, _ = proxy.ch.request_stream_out("export", {})
    assert {(x["path"], x.get("change")) for x in resp["flagged"]} == {(".git/hooks/post-checkout", "deleted")}
