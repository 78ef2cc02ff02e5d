# SPDX-License-Identifier: Apache-2.0
"""A flagged-path rule applies at every depth (each suffix of the path starting
at a component boundary), not only at the workspace root."""
import os

import pytest

from helpers.proxyrun import agent_ids, configure, make_tar, proxy, proxy_bin  # noqa: F401


def flagged(resp):
    return {f["path"]: f["reason"] for f in resp["flagged"]}


# Reasons are the catalogue's groups (src/lib/patch/flagged-paths.txt).
NESTED = [("crates/a/.cargo/config.toml", "rust and go"), ("pkg/.envrc", "nix and environment managers"),
          ("web/.npmrc", "javascript"), ("tools/x/.vscode/settings.json", "editors and ides"),
          ("a/.idea/workspace.xml", "editors and ides"), ("svc/.devcontainer/devcontainer.json", "containers"),
          ("m/.pre-commit-config.yaml", "git hook managers"), ("lib/.gitattributes", "git"), ("lib/.gitmodules", "git"),
          ("p/.mcp.json", "coding agents"), ("p/.claude/settings.json", "coding agents"),
          ("p/.cursor/rules", "coding agents"), ("deep/er/Makefile", "make and autotools"),
          ("deep/rules.mk", "make and autotools"), ("tests/unit/conftest.py", "python"),
          ("py/sub/pyproject.toml", "python"), ("r/rust-toolchain.toml", "rust and go")]


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
