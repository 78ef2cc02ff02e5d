# SPDX-License-Identifier: Apache-2.0
"""RF-8 class: a flagged-path rule applies at every depth (each suffix of the path starting
at a component boundary), not only at the workspace root."""
import os

import pytest

from helpers.proxyrun import agent_ids, configure, make_tar, proxy, proxy_bin  # noqa: F401


def flagged(resp):
    return {f["path"]: f["reason"] for f in resp["flagged"]}


NESTED = [("crates/a/.cargo/config.toml", "build"), ("pkg/.envrc", "shell-rc"), ("web/.npmrc", "build"),
          ("tools/x/.vscode/settings.json", "agent-config"), ("a/.idea/workspace.xml", "agent-config"),
          ("svc/.devcontainer/devcontainer.json", "agent-config"), ("m/.pre-commit-config.yaml", "build"),
          ("lib/.gitattributes", "git-config"), ("lib/.gitmodules", "git-config"), ("p/.mcp.json", "agent-config"),
          ("p/.claude/settings.json", "agent-config"), ("p/.cursor/rules", "agent-config"),
          ("deep/er/Makefile", "build"), ("deep/rules.mk", "build"), ("tests/unit/conftest.py", "build"),
          ("py/sub/pyproject.toml", "build"), ("r/rust-toolchain.toml", "build")]


def test_nested_config_files_are_flagged(proxy):
    configure(proxy, profile="local-dev")
    tar = make_tar([("README", "file", "x\n")])
    assert "error" not in proxy.ch.request_stream_in("import", {}, tar)
    for path, _ in NESTED:  # as a command would leave them (some are write-blocked for the file ops)
        full = os.path.join(proxy.ws, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as fh:
            fh.write("x = 1\n")
    proxy.ch.request("write", {"path": "src/main.c", "content": "int x;\n", "create_dirs": True})
    resp, patch, _ = proxy.ch.request_stream_out("export", {})
    f = flagged(resp)
    for path, reason in NESTED:
        assert f.get(path) == reason, (path, f)
    assert "src/main.c" not in f and "src/main.c" in resp["changed"]


@pytest.mark.parametrize("path", ["crates/a/.cargo/config", "x/y/z/.bashrc"])
def test_rule_priority_is_kept_at_depth(proxy, path):
    configure(proxy, profile="local-dev")
    assert "error" not in proxy.ch.request_stream_in("import", {}, make_tar([("README", "file", "x\n")]))
    assert "error" not in proxy.ch.request("write", {"path": path, "content": "x\n", "create_dirs": True})
    resp, _, _ = proxy.ch.request_stream_out("export", {})
    assert path in flagged(resp)
