# SPDX-License-Identifier: Apache-2.0
"""Scripted model server: a TEST FIXTURE speaking the OpenAI chat-completions API
(POST .../chat/completions), OpenAI's Responses API (POST .../responses) and Anthropic's
Messages API (POST .../v1/messages), streamed
(SSE, split into small chunks the way real servers do) or whole, with tool calls. It replays
a script of turns; it is never shipped as a feature.

A script is a list of turns, or a callable(request_body, turn_index) -> turn. A turn is
    {"text": "...",                                   # assistant text (optional)
     "tool_calls": [{"name": "read", "args": {...}}], # optional
     "usage": {"input": 100, "output": 20},           # optional, default derived from sizes
     "status": 500, "error": "overloaded"}            # optional: answer with an HTTP error
Fault cases (optional keys of a turn):
     "retry_after": 2          # with "status": also send a Retry-After header (seconds)
     "stream_error": "overloaded_error"   # streamed: an error event instead of an answer
     "cut": True               # streamed: stop before the terminal event ([DONE] /
                               #   message_stop) after sending everything else
     "hang": 30                # send nothing for that many seconds (before the headers)
     "tool_calls": [{"name": "read", "raw_args": "{not json"}]  # arguments sent verbatim
After the script ends the server answers "Script exhausted." with no tool calls.

Every request is recorded (.requests: list of {"path", "headers", "body"}) so tests can check
what the client sent: the tool results given back, the API key header, the tools offered.

    with ModelServer([{"tool_calls": [{"name": "read", "args": {"path": "a"}}]},
                      {"text": "done"}]) as ms:
        ms.base_url            # "http://127.0.0.1:PORT/v1"
        ms.anthropic_base_url  # "http://127.0.0.1:PORT"

Run standalone: python3 model_server.py SCRIPT.json [--port N]
"""
import http.server
import json
import socketserver
import sys
import threading
import time

__all__ = ["ModelServer"]


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class ModelServer:
    def __init__(self, script, stream_chunk=7, delay=0.0):
        self.script = script
        self.stream_chunk = stream_chunk
        self.delay = delay
        self.requests = []
        self.turn = 0
        self._lock = threading.Lock()
        self._httpd = None
        self._thread = None

    # -- lifecycle --
    def start(self, port=0):
        fixture = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                fixture._handle(self)

        self._httpd = _Server(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._httpd.server_address[1]

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self):
        return f"http://127.0.0.1:{self.port}"

    # -- helpers for tests --
    def tool_results(self):
        """Tool results the client sent back, in order, provider-neutral:
        [{"id", "content", "is_error"}] from every request's last message(s)."""
        out = []
        for r in self.requests:
            for m in r["body"].get("messages", []):
                if m.get("role") == "tool":
                    out.append({"id": m.get("tool_call_id"), "content": m.get("content"), "is_error": None})
                if m.get("role") == "user" and isinstance(m.get("content"), list):
                    for b in m["content"]:
                        if b.get("type") == "tool_result":
                            out.append({"id": b.get("tool_use_id"), "content": b.get("content"),
                                        "is_error": b.get("is_error")})
        # de-duplicate: each request repeats the history
        seen, uniq = set(), []
        for t in out:
            if t["id"] not in seen:
                seen.add(t["id"])
                uniq.append(t)
        return uniq

    # -- serving --
    def _next_turn(self, body):
        with self._lock:
            i = self.turn
            self.turn += 1
        if callable(self.script):
            t = self.script(body, i)
        elif i < len(self.script):
            t = self.script[i]
        else:
            t = None
        return i, (t if t is not None else {"text": "Script exhausted."})

    def _handle(self, h):
        n = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(n) if n else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._send(h, 400, {"error": {"message": "bad json"}})
        self.requests.append({"path": h.path, "headers": {k.lower(): v for k, v in h.headers.items()}, "body": body,
                              "time": time.monotonic()})
        path = h.path.split("?")[0]
        if path.endswith("/chat/completions"):
            provider = "openai"
        elif path.endswith("/responses"):
            provider = "responses"
        elif path.endswith("/messages"):
            provider = "anthropic"
        else:
            return self._send(h, 404, {"error": {"message": f"no route {h.path}"}})
        idx, turn = self._next_turn(body)
        if turn.get("hang"):
            time.sleep(turn["hang"])
        if turn.get("status"):
            extra = {"Retry-After": str(turn["retry_after"])} if "retry_after" in turn else {}
            return self._send(h, turn["status"], {"error": {"message": turn.get("error", "scripted error"),
                                                            "type": "scripted"}}, extra)
        if self.delay:
            time.sleep(self.delay)
        stream = bool(body.get("stream"))
        if turn.get("stream_error") and stream:
            err = {"type": "error", "error": {"type": turn["stream_error"], "message": "Overloaded"}}
            return self._sse(h, [("error", err)], named=provider == "anthropic")
        text = turn.get("text", "")
        calls = [{"id": c.get("id", f"call_{idx}_{k}"), "name": c["name"], "args": c.get("args", {}),
                  "raw": c.get("raw_args"), "namespace": c.get("namespace")}
                 for k, c in enumerate(turn.get("tool_calls", []))]
        usage = turn.get("usage") or {"input": 10 + len(raw) // 4, "output": 5 + len(text) // 4 + 10 * len(calls)}
        if provider == "responses":
            if stream:
                ev = self._responses_events(body, text, calls, usage)
                return self._sse(h, ev[:-1] if turn.get("cut") else ev, named=True)
            return self._send(h, 200, self._responses_whole(body, text, calls, usage))
        if provider == "openai":
            if stream:
                ev = self._openai_events(body, text, calls, usage)
                return self._sse(h, ev[:-1] if turn.get("cut") else ev, named=False)
            return self._send(h, 200, self._openai_whole(body, text, calls, usage))
        if stream:
            ev = self._anthropic_events(body, text, calls, usage)
            return self._sse(h, ev[:-1] if turn.get("cut") else ev, named=True)
        return self._send(h, 200, self._anthropic_whole(body, text, calls, usage))

    @staticmethod
    def _args(c):
        return c["raw"] if c.get("raw") is not None else json.dumps(c["args"])

    def _send(self, h, status, doc, headers=None):
        data = json.dumps(doc).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _sse(self, h, events, named):
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        text = ""
        for name, data in events:
            payload = data if isinstance(data, str) else json.dumps(data)
            text += (f"event: {name}\n" if named else "") + f"data: {payload}\n\n"
        # Deliver in small chunks so the client's parser sees splits everywhere.
        b = text.encode()
        step = max(1, self.stream_chunk * 13)
        for i in range(0, len(b), step):
            part = b[i:i + step]
            h.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            h.wfile.flush()
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    def _pieces(self, s):
        k = self.stream_chunk
        return [s[i:i + k] for i in range(0, len(s), k)] or []

    # OpenAI
    def _openai_events(self, body, text, calls, usage):
        model = body.get("model", "scripted")
        base = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model}
        ev = [("message", dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}}]))]
        for p in self._pieces(text):
            ev.append(("message", dict(base, choices=[{"index": 0, "delta": {"content": p}}])))
        for i, c in enumerate(calls):
            args = self._args(c)
            ev.append(("message", dict(base, choices=[{"index": 0, "delta": {"tool_calls": [
                {"index": i, "id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": ""}}]}}])))
            for p in self._pieces(args):
                ev.append(("message", dict(base, choices=[{"index": 0, "delta": {"tool_calls": [
                    {"index": i, "function": {"arguments": p}}]}}])))
        ev.append(("message", dict(base, choices=[{"index": 0, "delta": {},
                                                   "finish_reason": "tool_calls" if calls else "stop"}])))
        if (body.get("stream_options") or {}).get("include_usage"):
            ev.append(("message", dict(base, choices=[], usage={
                "prompt_tokens": usage["input"], "completion_tokens": usage["output"],
                "total_tokens": usage["input"] + usage["output"]})))
        ev.append(("message", "[DONE]"))
        return ev

    def _openai_whole(self, body, text, calls, usage):
        msg = {"role": "assistant", "content": text or None}
        if calls:
            msg["tool_calls"] = [{"id": c["id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": self._args(c)}} for c in calls]
        return {"id": "chatcmpl-scripted", "object": "chat.completion", "model": body.get("model"),
                "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": {"prompt_tokens": usage["input"], "completion_tokens": usage["output"]}}

    # OpenAI Responses
    def _responses_output(self, text, calls):
        out = []
        if text:
            out.append({"type": "message", "id": "msg_scripted", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]})
        for c in calls:
            item = {"type": "function_call", "id": "fc_" + c["id"], "call_id": c["id"], "name": c["name"],
                    "arguments": self._args(c), "status": "completed"}
            if c.get("namespace"):
                item["namespace"] = c["namespace"]  # a tool offered inside a namespace tool
            out.append(item)
        return out

    def _responses_whole(self, body, text, calls, usage):
        return {"id": "resp_scripted", "object": "response", "status": "completed", "model": body.get("model"),
                "output": self._responses_output(text, calls),
                "usage": {"input_tokens": usage["input"], "output_tokens": usage["output"],
                          "total_tokens": usage["input"] + usage["output"]}}

    def _responses_events(self, body, text, calls, usage):
        base = {"id": "resp_scripted", "object": "response", "model": body.get("model"), "output": []}
        ev = [("response.created", {"type": "response.created", "response": dict(base, status="in_progress")})]
        if text:
            ev.append(("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                                      "item": {"type": "message", "id": "msg_scripted",
                                                               "role": "assistant", "content": []}}))
            for p in self._pieces(text):
                ev.append(("response.output_text.delta", {"type": "response.output_text.delta",
                                                          "item_id": "msg_scripted", "output_index": 0,
                                                          "content_index": 0, "delta": p}))
        for i, item in enumerate(self._responses_output(text, calls)):
            if item["type"] == "function_call":
                for p in self._pieces(item["arguments"]):
                    ev.append(("response.function_call_arguments.delta", {
                        "type": "response.function_call_arguments.delta", "item_id": item["id"],
                        "output_index": i, "delta": p}))
            ev.append(("response.output_item.done", {"type": "response.output_item.done", "output_index": i,
                                                     "item": item}))
        done = dict(base, status="completed", output=self._responses_output(text, calls),
                    usage={"input_tokens": usage["input"], "output_tokens": usage["output"],
                           "total_tokens": usage["input"] + usage["output"]})
        ev.append(("response.completed", {"type": "response.completed", "response": done}))
        return ev

    # Anthropic
    def _anthropic_events(self, body, text, calls, usage):
        ev = [("message_start", {"type": "message_start", "message": {
            "id": "msg_scripted", "type": "message", "role": "assistant", "model": body.get("model"),
            "content": [], "stop_reason": None, "usage": {"input_tokens": usage["input"], "output_tokens": 1}}})]
        idx = 0
        if text:
            ev.append(("content_block_start", {"type": "content_block_start", "index": idx,
                                               "content_block": {"type": "text", "text": ""}}))
            ev.append(("ping", {"type": "ping"}))
            for p in self._pieces(text):
                ev.append(("content_block_delta", {"type": "content_block_delta", "index": idx,
                                                   "delta": {"type": "text_delta", "text": p}}))
            ev.append(("content_block_stop", {"type": "content_block_stop", "index": idx}))
            idx += 1
        for c in calls:
            ev.append(("content_block_start", {"type": "content_block_start", "index": idx, "content_block": {
                "type": "tool_use", "id": c["id"], "name": c["name"], "input": {}}}))
            for p in self._pieces(self._args(c)):
                ev.append(("content_block_delta", {"type": "content_block_delta", "index": idx,
                                                   "delta": {"type": "input_json_delta", "partial_json": p}}))
            ev.append(("content_block_stop", {"type": "content_block_stop", "index": idx}))
            idx += 1
        ev.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": "tool_use" if calls else "end_turn"},
                                     "usage": {"output_tokens": usage["output"]}}))
        ev.append(("message_stop", {"type": "message_stop"}))
        return ev

    def _anthropic_whole(self, body, text, calls, usage):
        content = ([{"type": "text", "text": text}] if text else []) + [
            {"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["args"]} for c in calls]
        return {"id": "msg_scripted", "type": "message", "role": "assistant", "model": body.get("model"),
                "content": content, "stop_reason": "tool_use" if calls else "end_turn",
                "usage": {"input_tokens": usage["input"], "output_tokens": usage["output"]}}


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="Scripted model server (test fixture)")
    ap.add_argument("script")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args(argv)
    with open(a.script) as f:
        script = json.load(f)
    ms = ModelServer(script)
    ms.start(a.port)
    print(f"OpenAI base URL: {ms.base_url}\nAnthropic base URL: {ms.anthropic_base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        ms.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
