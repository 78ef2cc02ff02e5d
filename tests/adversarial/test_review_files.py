# SPDX-License-Identifier: Apache-2.0
"""Attacks that must be refused, about the proxy's file ops.
xfail(strict=True) until the owner fixes them."""
import time

import pytest

from helpers.proxyrun import agent_ids, configure, proxy, proxy_bin  # noqa: F401


def test_grep_backtracking_stalls_the_proxy(proxy):
    configure(proxy)
    # 300 lines of 29 bytes: 9 KB, far below max_grep_file_bytes (8 MiB).
    r = proxy.ch.request("write", {"path": "big.txt", "content": ("a" * 28 + "!\n") * 300})
    assert "error" not in r, r
    t0 = time.monotonic()
    sid = proxy.ch.start("grep", {"pattern": "^(a|aa)+$", "path": "big.txt"})
    time.sleep(0.2)
    status = None
    try:
        status = proxy.ch.request("status", timeout=3)
    except Exception:  # noqa: BLE001 - a timeout is the finding
        pass
    proxy.ch.wait(sid, timeout=120)
    took = time.monotonic() - t0
    assert status is not None and took < 3, \
        f"the proxy answered nothing for {took:.1f} s while one grep ran (status answered: {status is not None})"
