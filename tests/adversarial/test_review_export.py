# SPDX-License-Identifier: Apache-2.0
"""Attacks that must be refused, about the exported patch's
flagged paths (files a host later executes or parses). xfail(strict=True) until fixed."""
import pytest

from helpers.proxyrun import agent_ids, configure, make_tar, proxy, proxy_bin  # noqa: F401


def flagged(resp):
    return {f["path"]: f["reason"] for f in resp["flagged"]}


@pytest.mark.parametrize("path", ["crates/a/.cargo/config.toml", "crates/a/.cargo/config"])
def test_nested_cargo_config_not_flagged(proxy, path):
    configure(proxy)
    tar = make_tar([("Cargo.toml", "file", "[workspace]\nmembers = [\"crates/a\"]\n"),
                    ("crates/a/Cargo.toml", "file", "[package]\nname = \"a\"\n"),
                    ("crates/a/src/lib.rs", "file", "\n")])
    assert "error" not in proxy.ch.request_stream_in("import", {}, tar)
    proxy.put(".cargo/config.toml", "[build]\n")  # control: the root one is flagged
    proxy.put(path, "[build]\nrustc-wrapper = \"/tmp/evil\"\n")
    resp, patch, _ = proxy.ch.request_stream_out("export", {})
    f = flagged(resp)
    assert f.get(".cargo/config.toml") == "rust and go", f
    assert path in resp["changed"] and path.encode() in patch
    assert f.get(path) == "rust and go", f"{path} reaches the host in the patch without a flag: {f}"
