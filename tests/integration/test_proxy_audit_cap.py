# SPDX-License-Identifier: Apache-2.0
"""Audit events are bounded: each one's size (a huge unknown op name is cut), and their rate
(token bucket: 1000 burst, 200/s); dropped events are reported by count in an
audit_dropped event, and every request still gets its response."""
import json
import time

from helpers.proxyrun import agent_ids, configure, proxy, proxy_bin  # noqa: F401


def test_huge_requests_give_small_audit_events(proxy):
    configure(proxy)
    assert "error" in proxy.ch.request("x" * 500000)
    assert "error" in proxy.ch.request("read", {"path": "y" * 400000})
    proxy.ch.drain_events(0.2)
    ev = [e for e in proxy.ch.events if e.get("type") == "audit"]
    assert len(ev) >= 2
    assert all(len(json.dumps(e)) < 1024 and len(e["op"]) <= 64 for e in ev), ev


def test_flood_is_capped_and_counted(proxy):
    configure(proxy)
    n = 2500
    t0 = time.monotonic()
    sids = [proxy.ch.start("status") for _ in range(n)]
    for sid in sids:
        assert "error" not in proxy.ch.wait(sid, timeout=60)
    took = time.monotonic() - t0
    # One more request after a pause refills a token and carries the drop summary out.
    time.sleep(0.1)
    proxy.ch.request("status")
    proxy.ch.drain_events(0.3)
    audits = [e for e in proxy.ch.events if e.get("type") == "audit"]
    dropped = sum(e["count"] for e in proxy.ch.events if e.get("type") == "audit_dropped")
    allowed = 1000 + 200 * (took + 1.0) + 2
    assert len(audits) <= allowed, (len(audits), took)
    assert dropped > 0 and len(audits) + dropped >= n + 1, (len(audits), dropped)
