# SPDX-License-Identifier: Apache-2.0
"""Adversarial groups B1/B2 against a real nucleus-tool-proxy: after the budget is spent or
the deadline passed, every further side effect is refused (402 budget_exhausted / 408
time_violation) and does not happen."""
import os
import time

from helpers.proxyrun import (agent_ids, configure, err_kind, fix_issue_policy, last_audit,  # noqa: F401
                              make_tar, proxy, proxy_bin)


def side_effects(pp):
    return [("write", {"path": "new.txt", "content": "x"}),
            ("edit", {"path": "old.txt", "old": "a", "new": "b"}),
            ("run", {"argv": ["touch", "ran"]}),
            ("read", {"path": "old.txt"}),
            ("grep", {"pattern": "a"})]


def test_b1_budget_exhausted(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["touch"]))
    proxy.put("old.txt", "a")
    assert proxy.ch.request("run", {"argv": ["touch", "before"]})["exit_code"] == 0
    left = proxy.ch.request("status")["budget"]["left_usd_micros"]
    r = proxy.ch.request("charge", {"usd_micros": left + 1000})
    assert err_kind(r) == "budget_exhausted"
    for op, args in side_effects(proxy):
        r = proxy.ch.request(op, args)
        assert err_kind(r) == "budget_exhausted", (op, r)
        ev = last_audit(proxy, op)
        assert ev["decision"] == "deny" and ev["kind"] == "budget_exhausted"
    assert not os.path.exists(os.path.join(proxy.ws, "new.txt"))
    assert not os.path.exists(os.path.join(proxy.ws, "ran"))
    assert open(os.path.join(proxy.ws, "old.txt")).read() == "a"
    assert proxy.ch.request("status")["budget"]["exhausted"] is True


def test_b1_run_reserves_for_its_timeout(proxy_bin, agent_ids, proxy):
    # 100 micro-USD per second reserved up front: a long timeout does not fit a small budget.
    pol = fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["touch"])
    pol["budget"]["max_usd_micros"] = 1000
    pol["budget"].pop("max_cost_usd", None)
    configure(proxy, policy=pol)
    r = proxy.ch.request("run", {"argv": ["touch", "t"], "timeout_seconds": 60})
    assert err_kind(r) == "budget_exhausted"
    assert not os.path.exists(os.path.join(proxy.ws, "t"))
    r = proxy.ch.request("run", {"argv": ["touch", "t"], "timeout_seconds": 5})
    assert r["exit_code"] == 0
    st = proxy.ch.request("status")["budget"]
    assert st["reserved_usd_micros"] == 0 and 0 < st["used_usd_micros"] <= 1000


def test_b2_deadline(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["touch", "sleep"]), time_remaining_ms=2000)
    proxy.put("old.txt", "a")
    # A command running into the deadline is killed at it.
    r = proxy.ch.request("run", {"argv": ["sleep", "30"], "timeout_seconds": 60}, timeout=20)
    assert r["timed_out"] is True
    time.sleep(0.2)
    for op, args in side_effects(proxy):
        r = proxy.ch.request(op, args)
        assert err_kind(r) == "time_violation", (op, r)
    assert err_kind(proxy.ch.request_stream_in("import", {}, make_tar([("x", "file", "x")]))) == "time_violation"
    assert not os.path.exists(os.path.join(proxy.ws, "new.txt"))
    assert not os.path.exists(os.path.join(proxy.ws, "ran"))
    assert not os.path.exists(os.path.join(proxy.ws, "x"))
    st = proxy.ch.request("status")
    assert st["expired"] is True and st["deadline_remaining_ms"] == 0
