# SPDX-License-Identifier: Apache-2.0
"""nucleus-gateway, the model gateway of a run, against the scripted model server: the three
wire formats streamed and whole with usage accounting, the per-run token (the provider key
never reaches the agent, the token never reaches the provider), the allow lists, a cut
stream settling at its reservation, a 429 with Retry-After passed through uncharged, the
deadline, and budget exhaustion under 8 concurrent requests (never overspent).
"""
import http.client
import json
import os
import subprocess
import threading

import pytest

from conftest import binary
from helpers.model_server import ModelServer

TOKEN = "nrt-" + "a1" * 20
PROVIDER_KEY = "sk-provider-secret-0123456789"
PRICE_IN, PRICE_OUT = 3_000_000, 15_000_000  # micro-USD per Mtok ($3 / $15)


class Gateway:
    def __init__(self, tmp, upstream, provider, max_usd_micros=5_000_000, max_output_tokens=1000, **extra):
        self.audit = tmp / f"gateway-{provider}.jsonl"
        cfg = {"provider": provider, "upstream": upstream, "api_key": PROVIDER_KEY, "token": TOKEN,
               "prices": {"test-model": [PRICE_IN, PRICE_OUT]}, "max_usd_micros": max_usd_micros,
               "max_output_tokens": max_output_tokens, "audit": str(self.audit), **extra}
        self.proc = subprocess.Popen([str(binary("nucleus-gateway"))], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
        self.proc.stdin.write(json.dumps(cfg).encode())
        self.proc.stdin.close()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("gateway did not start: " + self.proc.stderr.read().decode())
        host, port = json.loads(line)["listen"].split(":")
        self.port = int(port)

    def close(self):
        if self.proc.returncode is not None:
            return
        self.proc.terminate()
        self.proc.wait(timeout=30)
        err = self.proc.stderr.read().decode(errors="replace")
        # Under a sanitizer build, any report fails the test.
        assert "Sanitizer" not in err and "runtime error" not in err, err

    def records(self):
        if not self.audit.exists():
            return []
        return [json.loads(line) for line in self.audit.read_text().splitlines()]

    def post(self, path, body, token=TOKEN, anthropic=True, raw=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = {"Content-Type": "application/json"}
        if token is not None:
            h.update({"x-api-key": token} if anthropic else {"Authorization": f"Bearer {token}"})
        h.update(headers or {})
        c.request("POST", path, body=raw if raw is not None else json.dumps(body), headers=h)
        r = c.getresponse()
        try:
            data = r.read()
            cut = False
        except http.client.IncompleteRead as e:
            data, cut = e.partial, True
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data, cut


@pytest.fixture
def gw_factory(tmp_path):
    made = []

    def make(*a, **kw):
        g = Gateway(tmp_path, *a, **kw)
        made.append(g)
        return g
    yield make
    for g in made:
        g.close()


def anthropic_body(stream=True, max_tokens=500):
    return {"model": "test-model", "max_tokens": max_tokens, "stream": stream,
            "messages": [{"role": "user", "content": "hello"}],
            "tools": [{"name": "read", "description": "r", "input_schema": {"type": "object"}}]}


def chat_body(stream=True):
    return {"model": "test-model", "stream": stream, "messages": [{"role": "user", "content": "hello"}]}


def responses_body(stream=True):
    return {"model": "test-model", "stream": stream, "store": False,
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}]}


def cost(i, o):
    return -(-(i * PRICE_IN + o * PRICE_OUT) // 1_000_000)


@pytest.mark.parametrize("fmt", ["anthropic", "chat", "responses"])
@pytest.mark.parametrize("stream", [True, False])
def test_usage_is_accounted_and_credentials_swapped(gw_factory, fmt, stream):
    script = [{"text": "Hi there, a streamed answer.", "tool_calls": [{"name": "read", "args": {"path": "a"}}],
               "usage": {"input": 120, "output": 30}}]
    with ModelServer(script) as ms:
        anthropic = fmt == "anthropic"
        g = gw_factory(ms.anthropic_base_url if anthropic else ms.base_url, "anthropic" if anthropic else "openai")
        path, body = {"anthropic": ("/v1/messages?beta=true", anthropic_body(stream)),
                      "chat": ("/v1/chat/completions", chat_body(stream)),
                      "responses": ("/v1/responses", responses_body(stream))}[fmt]
        status, headers, data, cut = g.post(path, body, anthropic=anthropic)
        assert status == 200 and not cut, data
        text = data.decode()
        if stream:
            assert headers["content-type"].startswith("text/event-stream")
            assert {"anthropic": "message_stop", "chat": "[DONE]", "responses": "response.completed"}[fmt] in text
        else:
            json.loads(text)
        assert "Hi there" in text or "Hi ther" in text
        req = ms.requests[0]
        # The provider got the real key, never the run's token; the agent never sees the key.
        auth = req["headers"].get("x-api-key") if anthropic else req["headers"].get("authorization")
        assert auth.endswith(PROVIDER_KEY) and TOKEN not in json.dumps(req["headers"])
        assert PROVIDER_KEY not in text and PROVIDER_KEY not in json.dumps(headers)
        if fmt == "chat" and stream:
            assert req["body"]["stream_options"] == {"include_usage": True}
        if anthropic:
            assert req["path"] == "/v1/messages?beta=true"
    g.close()
    recs = g.records()
    assert len(recs) == 1
    r = recs[0]
    assert r["outcome"] == "ok" and r["model"] == "test-model" and r["stream"] == stream
    assert (r["input_tokens"], r["output_tokens"]) == (120, 30)
    assert r["cost_micros"] == cost(120, 30)
    assert r["reserved_micros"] >= r["cost_micros"]
    # Never the prompt or a credential in the audit record.
    line = g.audit.read_text()
    assert "hello" not in line and PROVIDER_KEY not in line and TOKEN not in line


def test_wrong_token_and_endpoints_refused_before_the_provider(gw_factory):
    with ModelServer([]) as ms:
        g = gw_factory(ms.anthropic_base_url, "anthropic")
        for tok in (None, "wrong", PROVIDER_KEY, TOKEN[:-1], TOKEN + "x"):
            status, _, data, _ = g.post("/v1/messages", anthropic_body(), token=tok)
            assert status == 401, (tok, data)
            assert json.loads(data)["error"]["type"] == "authentication_error"
        # The records say which request it was (an agent's side call without the token).
        assert all("POST /v1/messages" in r["detail"] for r in g.records() if r["reason"] == "auth"), g.records()
        for path in ("/v1/files", "/v1/messages/batches", "/v1/chat/completions", "/v1/responses", "/v1/models"):
            status, _, data, _ = g.post(path, {})
            assert status == 404, (path, data)
        status, _, data, _ = g.post("/v1/messages?debug=1", anthropic_body())
        assert status == 400
        assert ms.requests == []


@pytest.mark.parametrize("body,needle", [
    (dict(anthropic_body(), tools=[{"type": "web_search_20250305", "name": "web_search"}]), "runs at the provider"),
    (dict(anthropic_body(), mcp_servers=[{"type": "url", "url": "https://evil.example/mcp", "name": "x"}]),
     "mcp_servers"),
    (dict(anthropic_body(), messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://evil.example/?d=secret"}}]}]), "source type"),
    (dict(anthropic_body(), model="unpriced-model"), "no price"),
])
def test_allow_list_refusals(gw_factory, body, needle):
    with ModelServer([]) as ms:
        g = gw_factory(ms.anthropic_base_url, "anthropic")
        status, _, data, _ = g.post("/v1/messages", body)
        assert status == 400
        err = json.loads(data)
        assert err["type"] == "error" and needle in err["error"]["message"]
        assert ms.requests == []
    g.close()
    assert [r["outcome"] for r in g.records()] == ["refused"]


def test_openai_allow_list_refusals(gw_factory):
    with ModelServer([]) as ms:
        g = gw_factory(ms.base_url, "openai")
        for path, body in (("/v1/responses", dict(responses_body(), tools=[{"type": "web_search"}])),
                           ("/v1/responses", dict(responses_body(), previous_response_id="resp_1")),
                           ("/v1/chat/completions", dict(chat_body(), web_search_options={}))):
            status, _, data, _ = g.post(path, body, anthropic=False)
            assert status == 400, data
            assert "error" in json.loads(data)
        assert ms.requests == []


@pytest.mark.parametrize("fmt", ["anthropic", "chat", "responses"])
def test_cut_stream_settles_at_the_reservation(gw_factory, fmt):
    with ModelServer([{"text": "partial answer", "usage": {"input": 10, "output": 5}, "cut": True}]) as ms:
        anthropic = fmt == "anthropic"
        g = gw_factory(ms.anthropic_base_url if anthropic else ms.base_url, "anthropic" if anthropic else "openai")
        path, body = {"anthropic": ("/v1/messages", anthropic_body()),
                      "chat": ("/v1/chat/completions", chat_body()),
                      "responses": ("/v1/responses", responses_body())}[fmt]
        status, _, data, _ = g.post(path, body, anthropic=anthropic)
        assert status == 200
    g.close()
    (r,) = g.records()
    assert r["outcome"] == "cut"
    assert r["cost_micros"] == r["reserved_micros"] > cost(10, 5)


def test_429_with_retry_after_is_passed_through_uncharged(gw_factory):
    with ModelServer([{"status": 429, "error": "slow down", "retry_after": 7}]) as ms:
        g = gw_factory(ms.anthropic_base_url, "anthropic")
        status, headers, data, _ = g.post("/v1/messages", anthropic_body())
        assert status == 429 and headers.get("retry-after") == "7"
        assert "slow down" in data.decode()
    g.close()
    (r,) = g.records()
    assert r["outcome"] == "upstream_error" and r["status"] == 429 and r["cost_micros"] == 0


def test_deadline_refuses_further_calls(gw_factory):
    import time
    with ModelServer([{"text": "ok"}]) as ms:
        g = gw_factory(ms.base_url, "openai", timeout_seconds=1)
        time.sleep(1.5)
        status, _, data, _ = g.post("/v1/chat/completions", chat_body(), anthropic=False)
        assert status == 400
        assert json.loads(data)["error"]["code"] == "run_deadline_passed"
        assert ms.requests == []


def test_budget_exhaustion_under_8_concurrent_requests_never_overspends(gw_factory):
    # Every answer is cut, so each forwarded call settles at its full reservation: at most
    # floor(budget / bound) calls can ever be forwarded, whatever the interleaving.
    body = anthropic_body(max_tokens=1000)
    size = len(json.dumps(body))
    bound = -(-((size + 4096) * (PRICE_IN + PRICE_IN // 4)) // 1_000_000) + 1000 * PRICE_OUT // 1_000_000
    budget = 3 * bound + bound // 2
    with ModelServer([{"text": "partial", "cut": True}] * 8, delay=0.5) as ms:
        g = gw_factory(ms.anthropic_base_url, "anthropic", max_usd_micros=budget)
        results = [None] * 8

        def one(i):
            results[i] = g.post("/v1/messages", body)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        forwarded = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] != 200]
        assert 1 <= len(forwarded) <= 3
        assert len(refused) == 8 - len(forwarded)
        for status, _, data, _ in refused:
            assert status == 400 and "budget is exhausted" in json.loads(data)["error"]["message"]
        assert len(ms.requests) == len(forwarded)
    g.close()
    recs = g.records()
    spent = sum(r.get("cost_micros", 0) for r in recs)
    assert spent <= budget
    assert all(r["reserved_micros"] == bound for r in recs if r["outcome"] == "cut")
    assert sum(1 for r in recs if r["outcome"] == "refused") == len(refused)


def test_config_errors_are_clear():
    for cfg, needle in (({}, "provider"),
                        ({"provider": "anthropic", "upstream": "http://127.0.0.1:9", "token": "short"}, "token"),
                        ({"provider": "anthropic", "upstream": "http://127.0.0.1:9", "token": TOKEN,
                          "prices": {"m": [1, 2]}, "surprise": 1}, "unknown key"),
                        ({"provider": "anthropic", "upstream": "http://127.0.0.1:9", "token": TOKEN,
                          "prices": {"m": [1, 2]}}, "max_usd_micros")):
        p = subprocess.run([str(binary("nucleus-gateway"))], input=json.dumps(cfg).encode(), capture_output=True,
                           timeout=30, env={"PATH": "/usr/bin:/bin"})
        assert p.returncode == 1 and needle in p.stderr.decode(), p.stderr


def test_sequential_calls_see_the_previous_call_settled(gw_factory):
    # Room for one reservation at a time: each call must find the previous one settled (the
    # answer ends only after settling), or it would be refused for a reservation about to
    # be given back.
    body = anthropic_body(max_tokens=1000)
    size = len(json.dumps(body))
    bound = -(-((size + 4096) * (PRICE_IN + PRICE_IN // 4)) // 1_000_000) + 1000 * PRICE_OUT // 1_000_000
    with ModelServer([{"text": "short", "usage": {"input": 10, "output": 2}}] * 6) as ms:
        g = gw_factory(ms.anthropic_base_url, "anthropic", max_usd_micros=bound + bound // 2)
        for _ in range(6):
            status, _, data, _ = g.post("/v1/messages", body)
            assert status == 200, data
    g.close()
    assert [r["outcome"] for r in g.records()] == ["ok"] * 6
