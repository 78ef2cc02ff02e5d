# SPDX-License-Identifier: Apache-2.0
"""`nucleus run --agent claude|codex` with the REAL programs from npm (pinned, installed by
scripts/install-test-agents into a cache outside the tree) against the scripted model server
and a real nucleus-node with the local driver: the model is offered only the pod's tools; a
read, an edit, a run and a denied escape go through the pod; the patch; the summary's counts
match the node's audit log; the provider key never reaches the agent (the model server only
ever sees the gateway's key, never the run's token); the budget stops it mid-run.
Skips, saying why, when the agents are not installed (npm registry unreachable).
"""
import json
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from conftest import binary
from helpers.model_server import ModelServer
from helpers.nodeproc import NodeProc

CACHE = pathlib.Path(os.environ.get("NUCLEUS_AGENT_CACHE", "/var/cache/nucleus-test/npm"))
BUGGY = "add() {\n    echo $(($1 - $2))\n}\n"
TEST = ". ./calc.sh\n[ \"$(add 2 3)\" = 5 ] || { echo 'add is broken'; exit 1; }\necho 'tests passed'\n"
PROVIDER_KEY = "sk-real-agent-provider-key"


def agent_path(name):
    p = CACHE / "node_modules" / ".bin" / name
    if not (p.exists() and os.access(p, os.X_OK)):
        pytest.skip(f"{name} is not installed in {CACHE} (scripts/install-test-agents; npm registry unreachable?)")
    return p


@pytest.fixture
def node(tmp_path):
    with NodeProc(tmp_path / "node", driver="local") as n:
        yield n


@pytest.fixture
def proj():
    d = pathlib.Path(tempfile.mkdtemp(prefix="nucleus-real-agent-proj-")) / "calc"
    d.mkdir()
    (d / "calc.sh").write_text(BUGGY)
    (d / "test_calc.sh").write_text(TEST)
    (d / "README.md").write_text("# calc\n")
    g = {"cwd": d, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **g)
    subprocess.run(["git", "add", "-A"], **g)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], **g)
    yield d
    shutil.rmtree(d.parent, ignore_errors=True)


def call(kind, tool, args):
    # Claude Code names MCP tools mcp__<server>__<tool>; Codex offers them inside a namespace
    # tool "mcp__<server>" and expects calls by name within it.
    if kind == "codex":
        return {"name": tool, "namespace": "mcp__nucleus", "args": args}
    return {"name": f"mcp__nucleus__{tool}", "args": args}


def plan(kind):
    return [
        {"text": "Reading.", "tool_calls": [call(kind, "read", {"path": "calc.sh"})]},
        {"tool_calls": [call(kind, "run", {"argv": ["sh", "test_calc.sh"]})]},
        {"tool_calls": [call(kind, "edit", {"path": "calc.sh", "old": "$1 - $2", "new": "$1 + $2"})]},
        {"tool_calls": [call(kind, "read", {"path": "/etc/shadow"})]},
        {"text": "Fixed add().", "usage": {"input": 900, "output": 20}},
    ]


def tool_names(body):
    names = []
    for t in body.get("tools") or []:
        if t.get("type") == "namespace":
            names += [f"{t['name']}__{f['name']}" for f in t.get("tools", [])]
        else:
            names.append(t.get("name") or t.get("function", {}).get("name"))
    return sorted(names)


def scripted(steps, prefix):
    """The agent's own turns follow the plan (by how many answers it already got); its side
    calls (titles, summaries: no pod tools offered) get a short text and do not count."""
    def script(body, i):
        if f"{prefix}read" not in tool_names(body):
            return {"text": "ok", "usage": {"input": 10, "output": 1}}
        # Each step makes one tool call: the step is the number of tool results so far.
        items = body.get("messages") or body.get("input") or []
        done = 0
        for m in items:
            if not isinstance(m, dict):
                continue
            if m.get("type") == "function_call_output":
                done += 1
            if isinstance(m.get("content"), list):
                done += sum(1 for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result")
        return steps[done] if done < len(steps) else {"text": "Done."}
    return script


def run(node, tmp_path, proj, ms, kind, provider, *extra):
    base = ms.base_url if provider == "openai" else ms.anthropic_base_url
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "NUCLEUS_CONFIG_DIR": str(node.base), "NUCLEUS_STATE_DIR": str(tmp_path / "state"),
           "NUCLEUS_NODE_URL": f"http://127.0.0.1:{node.port}", "TEST_MODEL_KEY": PROVIDER_KEY,
           f"NUCLEUS_{kind.upper()}_PATH": str(agent_path(kind))}
    argv = [str(binary("nucleus")), "run", "Fix the failing test in calc.sh", "-d", str(proj), "--profile",
            "local_dev", "--agent", kind, "--provider", provider, "--base-url", base, "--model", "test-model",
            "--api-key-env", "TEST_MODEL_KEY", "--price-in", "3", "--price-out", "15", "--output", "json",
            "--audit-out", str(tmp_path / "audit.jsonl"), "--patch-out", str(tmp_path / "fix.patch"),
            *(extra or ("--max-cost", "10"))]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)


def audit_tool_records(path):
    ops = {"read", "list", "write", "edit", "glob", "grep", "run", "web_fetch"}
    recs = [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]
    return [r for r in recs if r.get("op") in ops and r.get("decision") in ("allow", "deny", "error")]


@pytest.mark.parametrize("kind,provider", [("claude", "anthropic"), ("codex", "openai")])
def test_real_agent_fixes_the_bug_through_the_pod(node, proj, tmp_path, kind, provider):
    prefix = "mcp__nucleus__"
    with ModelServer(scripted(plan(kind), prefix)) as ms:
        r = run(node, tmp_path, proj, ms, kind, provider)
        requests = list(ms.requests)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    doc = json.loads(r.stdout)
    main = [q for q in requests if f"{prefix}read" in tool_names(q["body"])]
    assert main, [q["path"] for q in requests]
    # Offered only the pod's tools: no built-in tool of the agent that acts on the host.
    # Codex 0.171.0 registers its three MCP resource tools whenever an MCP server is configured
    # (no setting turns them off); they reach only that server, the pod's nucleus-mcp, which
    # offers no resources. request_user_input is off.
    harmless = ({"list_mcp_resources", "list_mcp_resource_templates", "read_mcp_resource"}
                if kind == "codex" else set())
    for q in main:
        names = tool_names(q["body"])
        assert {n for n in names if not n.startswith(prefix)} <= harmless, names
        assert {f"{prefix}{t}" for t in ("read", "write", "edit", "run")} <= set(names)
    # The calls went through the pod and the node recorded them; the summary agrees.
    recs = audit_tool_records(tmp_path / "audit.jsonl")
    assert [x["op"] for x in recs][:4] == ["read", "run", "edit", "read"]
    assert recs[3]["decision"] == "deny"
    assert doc["tool_calls"] == len(recs) and doc["denials"] == sum(1 for x in recs if x["decision"] != "allow")
    patch = (tmp_path / "fix.patch").read_text()
    assert "+    echo $(($1 + $2))" in patch
    # Every request reached the provider with the provider key, none with the run's token.
    hdr = "x-api-key" if provider == "anthropic" else "authorization"
    for q in requests:
        assert q["headers"][hdr].endswith(PROVIDER_KEY)
        assert "nrt-" not in json.dumps(q["headers"])
    assert doc["cost_micros"] == sum(c.get("cost_micros", 0) for c in doc["model_calls"]) > 0
    # The model calls were reserved and settled on the node with the run's own credential
    # (scope run), and settled at what the gateway reports; the agent's tool calls were signed
    # with a credential scoped to the pod, never the node key.
    every = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    settles = [x for x in every if x.get("op") == "budget_settle"]
    forwarded = [c for c in doc["model_calls"] if c["outcome"] != "refused"]
    assert len(settles) == len(forwarded) > 0, settles
    assert all("(credential run-" in x["actor"] for x in settles)
    assert sum(x["detail"]["charged_usd_micros"] for x in settles) == doc["cost_micros"]
    assert all("(credential pod-" in x["actor"] for x in recs), [x["actor"] for x in recs]


def test_real_claude_is_stopped_by_the_budget(node, proj, tmp_path):
    prefix = "mcp__nucleus__"
    turn = {"tool_calls": [call("claude", "read", {"path": "README.md"})],
            "usage": {"input": 10000, "output": 20000}}
    with ModelServer(scripted([turn] * 30, prefix)) as ms:
        r = run(node, tmp_path, proj, ms, "claude", "anthropic", "--max-cost", "1.2")
    doc = json.loads(r.stdout)
    assert r.returncode == 1
    outcomes = [c["outcome"] for c in doc["model_calls"]]
    assert "refused" in outcomes and outcomes[-1] == "refused"
    assert doc["model_calls"][-1]["reason"] == "budget"
    assert doc["cost_micros"] <= 1_200_000
