# SPDX-License-Identifier: Apache-2.0
"""One grep is bounded (PCRE2 match/depth/heap limits per line, a wall-clock
budget per op) so the single-threaded proxy keeps answering; the answer says when it is
partial."""
import time

from helpers.proxyrun import configure, proxy, proxy_bin, agent_ids  # noqa: F401


def test_catastrophic_pattern_over_a_large_file_is_cut_off(proxy):
    configure(proxy)
    # ~6 MiB of lines the pattern backtracks on exponentially (below max_grep_file_bytes).
    proxy.put("big.txt", ("a" * 40 + "!\n") * 150000)
    t0 = time.monotonic()
    sid = proxy.ch.start("grep", {"pattern": "^(a|aa)+$", "path": "big.txt"})
    r = proxy.ch.wait(sid, timeout=30)
    took = time.monotonic() - t0
    assert "error" not in r, r
    assert took < 3, f"grep held the proxy {took:.1f} s"
    assert r["truncated"] and r["time_budget_exceeded"] and r["matches"] == [], r
    assert r["lines_skipped"] > 0
    assert "error" not in proxy.ch.request("status", timeout=3)


def test_status_answered_while_a_tree_grep_runs(proxy):
    configure(proxy)
    for i in range(20):
        proxy.put(f"d{i}/f.txt", ("a" * 30 + "!\n") * 2000)
    sid = proxy.ch.start("grep", {"pattern": "^(a|aa)+$", "path": "."})
    t0 = time.monotonic()
    st = proxy.ch.request("status", timeout=5)
    assert "error" not in st and time.monotonic() - t0 < 3
    r = proxy.ch.wait(sid, timeout=30)
    assert "error" not in r and r["time_budget_exceeded"], r


def test_ordinary_grep_is_complete(proxy):
    configure(proxy)
    proxy.put("src/a.c", "int main(void) {\n  return 0;\n}\n")
    r = proxy.ch.request("grep", {"pattern": r"return\s+\d", "path": "."})
    assert r["matches"] and r["matches"][0]["line"] == 2, r
    assert r["time_budget_exceeded"] is False and r["lines_skipped"] == 0 and not r["truncated"]


def test_control_ops_do_not_queue_behind_tool_work(proxy):
    """Control operations have their own lane: with eight slow greps (each using its whole time
    budget) already sent, a status sent after them is answered before all but at most one of
    them (the one the proxy may be running when status arrives). Judged by the order of the
    answers, not by time."""
    from helpers.channel import RESPONSE
    configure(proxy)
    proxy.put("big.txt", ("a" * 40 + "!\n") * 150000)
    greps = [proxy.ch.start("grep", {"pattern": "^(a|aa)+$", "path": "big.txt"}) for _ in range(8)]
    status = proxy.ch.start("status")
    order = []
    while len(order) < 9:
        f = proxy.ch.read_frame(timeout=120)
        if f.type == RESPONSE:
            order.append(f.stream)
            assert "error" not in f.json(), f.json()
    assert sorted(order) == sorted(greps + [status])
    assert order.index(status) <= 1, order
    # The tool work itself still runs in the order it was sent.
    assert [s for s in order if s != status] == greps
