# SPDX-License-Identifier: Apache-2.0
"""The approvals queue against a real nucleus-node (local driver): a call held as a pending
approval, decided by a token bound to the pending record's digest; expiry; a decision for the
wrong pod; two deciders racing; a caller that gave up; the pod's end and a node restart
refusing what is pending; the audit records of every request and decision; the
`nucleus approvals` verb deciding from the terminal."""
import json
import os
import subprocess
import threading
import time

import pytest

from conftest import binary, require_root
from helpers.nodeproc import NodeProc, spec_yaml

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")

COMMIT = {"argv": ["git", "commit", "--allow-empty", "-m", "held"]}


@pytest.fixture
def node(tmp_path):
    require_root()
    with NodeProc(tmp_path, driver="local") as n:
        yield n


def running_pod(c):
    r = c.create_pod(spec_yaml(policy="fix-issue"))
    assert r.status == 201, r
    pod = r.json()["id"]
    st = c.wait_state(pod, {"running", "failed", "exited"}, timeout=60)
    assert st["state"] == "running", st
    return pod


def hold(c, pod, args=COMMIT, op="run"):
    r = c.request("POST", f"/v1/pods/{pod}/tools/{op}?approval=hold", json.dumps(args),
                  {"Content-Type": "application/json"})
    assert r.status == 403, r
    body = r.json()
    assert body["kind"] == "approval_required"
    return body["approval"]


def decide(c, pod, aid, body):
    return c.request("POST", f"/v1/pods/{pod}/approvals/{aid}", json.dumps(body),
                     {"Content-Type": "application/json"})


def get(c, pod, aid, wait=None):
    q = f"?wait={wait}" if wait is not None else ""
    return c.request("GET", f"/v1/pods/{pod}/approvals/{aid}{q}", timeout=60)


def audit_ops(node, pod):
    return [json.loads(l) for l in node.audit_path(pod).read_text().splitlines() if l.strip()]


def _mint_with_digest(node, pending, uses=1, pod=None, op=None, args_sha256=None, exp=None):
    """A token bound like the console's: to the pending record's pod, capability and the
    proxy's digest of the exact arguments."""
    import base64
    import secrets as s
    payload = {"exp": exp if exp is not None else int(time.time()) + 300, "nonce": s.token_hex(16),
               "op": op or pending["operation"], "pod": pod or pending["pod"], "uses": uses, "v": 1,
               "args_sha256": args_sha256 or pending["args_sha256"]}
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    signed = ("nat1." + b64(body)).encode()
    return signed.decode() + "." + b64(node.approver_sk.sign(signed).signature)


def test_hold_approve_retry(node):
    c = node.client()
    pod = running_pod(c)
    # Without hold the answer is the plain refusal, as before.
    r = c.tool(pod, "run", COMMIT)
    assert r.status == 403 and r.json()["kind"] == "approval_required" and "approval" not in r.json()

    a = hold(c, pod)
    assert a["state"] == "pending" and a["operation"] == "git_commit" and a["tool"] == "run"
    assert a["args"] == COMMIT and len(a["digest"]) == 64 and a["scopes"] == ["once"]
    assert "git_commit" in a["reason"] or "approval" in a["reason"]
    lst = c.request("GET", f"/v1/pods/{pod}/approvals").json()
    assert [x["id"] for x in lst["approvals"]] == [a["id"]] and lst["approvers_attached"] is False
    assert [x["id"] for x in c.request("GET", "/v1/approvals").json()["approvals"]] == [a["id"]]

    # A waiter wakes when the decision lands.
    got = {}
    t = threading.Thread(target=lambda: got.update(r=get(c, pod, a["id"], wait=30)))
    t.start()
    time.sleep(0.5)
    # The digest must be the record's: a decision about other bytes is refused.
    bad = decide(c, pod, a["id"], {"decision": "approve", "digest": "0" * 64, "token": _mint_with_digest(node, a)})
    assert bad.status == 409 and bad.json()["kind"] == "approval_mismatch", bad
    # A token for other arguments is refused, and the record stays pending.
    other = decide(c, pod, a["id"], {"decision": "approve", "digest": a["digest"],
                                     "token": _mint_with_digest(node, a, args_sha256="1" * 64)})
    assert other.status == 403 and other.json()["kind"] == "approval_invalid", other
    ok = decide(c, pod, a["id"], {"decision": "approve", "digest": a["digest"], "token": _mint_with_digest(node, a)})
    assert ok.status == 200 and ok.json()["state"] == "approved" and ok.json()["scope"] == "once", ok
    t.join(60)
    assert got["r"].status == 200 and got["r"].json()["state"] == "approved"
    # The retried call goes through once (git fails: no repository; the policy allowed it).
    r = c.tool(pod, "run", COMMIT)
    assert r.status == 200 and "exit_code" in r.json(), r
    r = c.tool(pod, "run", COMMIT)
    assert r.status == 403 and r.json()["kind"] == "approval_required"
    # Deciding again is a conflict.
    again = decide(c, pod, a["id"], {"decision": "refuse", "digest": a["digest"]})
    assert again.status == 409 and again.json()["kind"] == "already_decided"
    ops = [x["op"] for x in audit_ops(node, pod)]
    assert "approval_request" in ops and "approval_decision" in ops


def test_refuse_with_reason_and_wrong_pod(node):
    c = node.client()
    pod, other = running_pod(c), running_pod(c)
    a = hold(c, pod)
    # A decision addressed through another pod's path finds nothing.
    r = decide(c, other, a["id"], {"decision": "refuse", "digest": a["digest"]})
    assert r.status == 404, r
    # A token minted for another pod is refused even on the right path.
    r = decide(c, pod, a["id"], {"decision": "approve", "digest": a["digest"],
                                 "token": _mint_with_digest(node, a, pod=other)})
    assert r.status == 403 and r.json()["kind"] == "approval_invalid", r
    r = decide(c, pod, a["id"], {"decision": "refuse", "digest": a["digest"], "reason": "not today"})
    assert r.status == 200 and r.json()["state"] == "refused" and r.json()["decision_reason"] == "not today"
    recs = [x for x in audit_ops(node, pod) if x["op"] == "approval_decision"]
    assert recs and recs[-1]["decision"] == "deny"


def test_racing_deciders_one_wins(node):
    c = node.client()
    pod = running_pod(c)
    a = hold(c, pod)
    results = []

    def one(i):
        body = {"decision": "approve", "digest": a["digest"], "token": _mint_with_digest(node, a)} if i % 2 else \
            {"decision": "refuse", "digest": a["digest"], "reason": f"r{i}"}
        results.append(decide(node.client(), pod, a["id"], body).status)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert results.count(200) == 1, results
    assert all(s == 409 for s in results if s != 200), results


def test_caller_gives_up_and_cap(node):
    c = node.client()
    pod = running_pod(c)
    a = hold(c, pod)
    r = c.request("DELETE", f"/v1/pods/{pod}/approvals/{a['id']}")
    assert r.status == 200 and r.json()["state"] == "withdrawn"
    r = decide(c, pod, a["id"], {"decision": "refuse", "digest": a["digest"]})
    assert r.status == 409
    # At most 16 pending per pod.
    for i in range(16):
        hold(c, pod, {"argv": ["git", "commit", "-m", f"m{i}"]})
    r = c.request("POST", f"/v1/pods/{pod}/tools/run?approval=hold", json.dumps(COMMIT),
                  {"Content-Type": "application/json"})
    assert r.status == 429 and r.json()["kind"] == "too_many_pending", r


def test_expiry(node):
    c = node.client()
    pod = running_pod(c)
    r = c.request("POST", f"/v1/pods/{pod}/tools/run?approval=hold&approval_ttl=1", json.dumps(COMMIT),
                  {"Content-Type": "application/json"})
    a = r.json()["approval"]
    st = get(c, pod, a["id"], wait=20).json()
    assert st["state"] == "expired", st
    r = decide(c, pod, a["id"], {"decision": "approve", "digest": a["digest"], "token": _mint_with_digest(node, a)})
    assert r.status == 409 and r.json()["kind"] == "approval_expired", r


def test_pod_end_and_node_restart_refuse_pending(node):
    c = node.client()
    pod = running_pod(c)
    a = hold(c, pod)
    assert c.delete_pod(pod).status == 200
    st = get(c, pod, a["id"]).json()
    assert st["state"] == "refused" and "ended" in st["decision_reason"], st

    pod2 = running_pod(c)
    hold(c, pod2)
    node.restart()
    c = node.client()
    assert c.request("GET", "/v1/approvals").json()["approvals"] == []


def test_approvers_heartbeat(node):
    c = node.client()
    pod = running_pod(c)
    r = c.request("POST", "/v1/approvers", json.dumps({"name": "test", "ttl_seconds": 30}),
                  {"Content-Type": "application/json"})
    assert r.status == 200, r
    assert c.request("GET", f"/v1/pods/{pod}/approvals").json()["approvers_attached"] is True
    r = c.request("POST", "/v1/approvers", json.dumps({"name": "test", "ttl_seconds": 0}),
                  {"Content-Type": "application/json"})
    assert r.status == 200
    assert c.request("GET", f"/v1/pods/{pod}/approvals").json()["approvers_attached"] is False


def cli_env(node, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[node]\nurl = "http://127.0.0.1:{node.port}"\n[auth]\nsecrets_dir = "{node.secrets}"\n')
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "NUCLEUS_CONFIG": str(cfg)}
    return env, cfg


def test_cli_approvals_verb(node, tmp_path):
    c = node.client()
    pod = running_pod(c)
    a = hold(c, pod)
    env, cfg = cli_env(node, tmp_path)
    nucleus = str(binary("nucleus"))
    r = subprocess.run([nucleus, "-c", str(cfg), "approvals", "--output", "json"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert [x["id"] for x in json.loads(r.stdout)["approvals"]] == [a["id"]]
    r = subprocess.run([nucleus, "-c", str(cfg), "approvals", "approve", a["id"][:8], "--for-pod"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "approve it once" in r.stderr, r.stderr
    r = subprocess.run([nucleus, "-c", str(cfg), "approvals", "approve", a["id"][:8]], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert get(c, pod, a["id"]).json()["state"] == "approved"
    r = subprocess.run([nucleus, "-c", str(cfg), "approvals", "frobnicate"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2
