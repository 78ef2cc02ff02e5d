# SPDX-License-Identifier: Apache-2.0
"""Adversarial group A1-A3 against a real nucleus-tool-proxy: approval tokens signed by the
wrong key, replayed or expired, or bound to another operation or other arguments. A refused
token never lets the side effect happen and is never consumed by a refused call."""
import os
import time

import pytest

from helpers.proxyrun import (Approver, agent_ids, approver, configure, err_kind,  # noqa: F401
                              fix_issue_policy, last_audit, proxy, proxy_bin)


@pytest.fixture
def gated(proxy_bin, agent_ids, proxy, approver):
    """A pod where every command (run_bash) needs an approval."""
    pol = fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["touch"])
    pol["obligations"] = {"approvals": sorted(set(pol["obligations"]["approvals"]) | {"run_bash"})}
    configure(proxy, policy=pol, approver=approver)
    return proxy


def run_touch(pp, name, token=None):
    args = {"argv": ["touch", name]}
    if token:
        args["approval"] = token
    return pp.ch.request("run", args)


def test_gate_works_with_the_right_token(gated, approver):
    assert err_kind(run_touch(gated, "f0")) == "approval_required"
    tok = approver.mint("pod-test", "run_bash", args=["touch", "f1"])
    assert run_touch(gated, "f1", tok)["exit_code"] == 0
    assert os.path.exists(os.path.join(gated.ws, "f1"))


def test_a1_token_signed_by_another_key(gated):
    rogue = Approver()
    tok = rogue.mint("pod-test", "run_bash", args=["touch", "x"])
    r = run_touch(gated, "x", tok)
    assert err_kind(r) == "approval_invalid" and r["detail"] == "bad_signature"
    r = gated.ch.request("approve", {"token": tok})
    assert err_kind(r) == "approval_invalid" and r["detail"] == "bad_signature"
    assert err_kind(run_touch(gated, "x")) == "approval_required"
    assert not os.path.exists(os.path.join(gated.ws, "x"))
    ev = last_audit(gated)
    assert ev["decision"] == "deny"


def test_a1_tampered_token(gated, approver):
    tok = approver.mint("pod-test", "run_bash", args=["touch", "x"], uses=1)
    head, payload, sig = tok.split(".")
    import base64
    import json
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["uses"] = 1000
    forged = ".".join([head, base64.urlsafe_b64encode(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
                       .rstrip(b"=").decode(), sig])
    assert err_kind(run_touch(gated, "x", forged)) == "approval_invalid"
    assert not os.path.exists(os.path.join(gated.ws, "x"))


def test_a2_replay_after_use(gated, approver):
    tok = approver.mint("pod-test", "run_bash", args=["touch", "once"], uses=1)
    assert run_touch(gated, "once", tok)["exit_code"] == 0
    os.unlink(os.path.join(gated.ws, "once"))
    r = run_touch(gated, "once", tok)
    assert err_kind(r) == "approval_invalid" and r["detail"] == "exhausted"
    assert not os.path.exists(os.path.join(gated.ws, "once"))
    # Through the approve op as well: the pool forgets a used-up token.
    r = gated.ch.request("approve", {"token": tok})
    assert "error" in r or err_kind(run_touch(gated, "once")) == "approval_required"
    assert not os.path.exists(os.path.join(gated.ws, "once"))


def test_a2_uses_count_is_honoured(gated, approver):
    tok = approver.mint("pod-test", "run_bash", args=["touch", "twice"], uses=2)
    assert gated.ch.request("approve", {"token": tok})["uses"] == 2
    assert run_touch(gated, "twice")["exit_code"] == 0
    assert run_touch(gated, "twice")["exit_code"] == 0
    assert err_kind(run_touch(gated, "twice")) == "approval_required"


def test_a2_expired_token(gated, approver):
    tok = approver.mint("pod-test", "run_bash", args=["touch", "late"], exp=int(time.time()) - 5)
    r = run_touch(gated, "late", tok)
    assert err_kind(r) == "approval_invalid" and r["detail"] == "expired"
    r = gated.ch.request("approve", {"token": tok})
    assert err_kind(r) == "approval_invalid" and r["detail"] == "expired"
    assert not os.path.exists(os.path.join(gated.ws, "late"))


def test_a3_token_for_other_operation(gated, approver):
    tok = approver.mint("pod-test", "git_push", args=["touch", "x"])
    r = run_touch(gated, "x", tok)
    assert err_kind(r) == "approval_invalid" and r["detail"] == "wrong_operation"
    # Pending through approve: a git_push token does not satisfy run_bash.
    assert gated.ch.request("approve", {"token": tok})["ok"] is True
    assert err_kind(run_touch(gated, "x")) == "approval_required"
    assert not os.path.exists(os.path.join(gated.ws, "x"))


def test_a3_token_bound_to_other_argv(gated, approver):
    tok = approver.mint("pod-test", "run_bash", args=["touch", "allowed"])
    r = run_touch(gated, "other", tok)
    assert err_kind(r) == "approval_invalid" and r["detail"] == "wrong_args"
    assert not os.path.exists(os.path.join(gated.ws, "other"))
    # The refused attempt did not consume it: the bound argv still works once.
    assert run_touch(gated, "allowed", tok)["exit_code"] == 0


def test_a3_token_for_other_pod(gated, approver):
    tok = approver.mint("pod-other", "run_bash", args=["touch", "x"])
    r = run_touch(gated, "x", tok)
    assert err_kind(r) == "approval_invalid" and r["detail"] == "wrong_pod"


def test_token_not_consumed_when_budget_refuses(gated, approver):
    tok = approver.mint("pod-test", "run_bash", args=["touch", "b"])
    left = gated.ch.request("status")["budget"]["left_usd_micros"]
    gated.ch.request("charge", {"usd_micros": left})
    assert err_kind(run_touch(gated, "b", tok)) == "budget_exhausted"
    assert not os.path.exists(os.path.join(gated.ws, "b"))


def test_unbound_token_approves_any_arguments_once(gated, approver):
    tok = approver.mint("pod-test", "run_bash", uses=1)  # the approver chose not to bind argv
    assert run_touch(gated, "any-name", tok)["exit_code"] == 0
    assert err_kind(run_touch(gated, "again", tok)) == "approval_invalid"


def test_file_op_approval_bound_to_its_arguments(proxy_bin, agent_ids, proxy, approver):
    from helpers.proxyrun import args_sha256
    pol = fix_issue_policy(proxy_bin, *agent_ids)
    pol["obligations"] = {"approvals": sorted(set(pol["obligations"]["approvals"]) | {"read_files"})}
    configure(proxy, policy=pol, approver=approver)
    proxy.put("a.txt", "A")
    proxy.put("b.txt", "B")
    r = proxy.ch.request("read", {"path": "a.txt"})
    assert err_kind(r) == "approval_required" and r["operation"] == "read_files"
    assert r["args_sha256"] == args_sha256({"path": "a.txt"})
    tok = approver.mint("pod-test", "read_files", args={"path": "a.txt"})
    r = proxy.ch.request("read", {"path": "b.txt", "approval": tok})
    assert err_kind(r) == "approval_invalid" and r["detail"] == "wrong_args"
    assert proxy.ch.request("read", {"path": "a.txt", "approval": tok})["content"] == "A"
