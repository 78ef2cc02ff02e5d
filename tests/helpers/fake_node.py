#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A stand-in nucleus-node for CLI tests: `fake_node.py --config node.toml`.

Reads the node config that `nucleus setup` writes ([node] listen, [secrets] node_secret_file),
GET /v1/health without auth and every other route only with a valid DESIGN.md §4 signature
(checked independently of the C client with nodeclient.string_to_sign), answering like the
node: GET /v1/pods -> {"pods": []}, unknown routes 404, bad signatures 401 {"error","kind"}.
With [pool.images] in node.toml, GET /v1/pool answers its first few polls with every pooled pod
still booting and then with all of them ready, as a node filling its warm pool does.
SIGTERM exits cleanly. FAKE_NODE_IGNORE_TERM=1 ignores SIGTERM (tests `stop --force`); with
`[fake] linger_after_term = S` in node.toml it stops answering at SIGTERM and exits S seconds
later, like a node ending its pods.
"""
import hashlib
import hmac
import http.server
import json
import os
import signal
import sys
import time
import tomllib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
from helpers.nodeclient import load_key, response_mac_header, string_to_sign  # noqa: E402

SEEN = set()
# pod-1's console grows by one line per logs request; the pod exits after a few polls.
POD = {"polls": 0, "state_calls": 0}
POOL = {"polls": 0}
POOL_BOOTING_POLLS = 3


def main():
    args = sys.argv[1:]
    if len(args) != 2 or args[0] != "--config":
        print("usage: nucleus-node --config FILE", file=sys.stderr)
        return 2
    with open(args[1], "rb") as f:
        cfg = tomllib.load(f)
    host, port = cfg["node"]["listen"].rsplit(":", 1)
    key = load_key(cfg["secrets"]["node_secret_file"])

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            sys.stderr.write("fake-node: " + (fmt % a) + "\n")

        def answer(self, code, doc):
            body = json.dumps(doc).encode()
            self.send_response(code)
            # It holds the node key, so it signs its answers like the node (docs/api.md).
            for k, v in response_mac_header(key, self.headers, code, body).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def raw(self, code, ctype, body):
            self.send_response(code)
            for k, v in response_mac_header(key, self.headers, code, body).items():
                self.send_header(k, v)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def verify(self, body):
            h = self.headers
            ts, nonce = h.get("X-Nucleus-Timestamp"), h.get("X-Nucleus-Nonce")
            actor, sig = h.get("X-Nucleus-Actor"), h.get("X-Nucleus-Signature")
            if None in (ts, nonce, actor, sig):
                return "missing_header"
            if abs(int(ts) - time.time()) > 60:
                return "skew"
            want = hmac.new(key, string_to_sign(self.command, self.path, ts, nonce, actor, body),
                            hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, sig):
                return "bad_signature"
            if nonce in SEEN:
                return "replay"
            SEEN.add(nonce)
            return None

        def handle_any(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            if self.command == "GET" and self.path == "/v1/health":
                return self.answer(200, {"status": "ok"})
            bad = self.verify(body)
            if bad:
                return self.answer(401, {"error": "signature check failed", "kind": "unauthorized",
                                         "detail": bad})
            if self.command == "GET" and self.path == "/v1/pods":
                # [fake] live_pod = "NAME" in node.toml: one running pod of that name.
                live = cfg.get("fake", {}).get("live_pod")
                return self.answer(200, {"pods": [{"id": "0f0f0f0f-0000-4000-8000-000000000001", "name": live,
                                                   "state": "running"}] if live else []})
            pool_images = cfg.get("pool", {}).get("images", {})
            if self.command == "GET" and self.path == "/v1/pool" and pool_images:
                POOL["polls"] += 1
                full = POOL["polls"] > POOL_BOOTING_POLLS
                return self.answer(200, {"images": [
                    {"image": k, "size": v, "ready": v if full else 0, "booting": 0 if full else v}
                    for k, v in pool_images.items()], "polls": POOL["polls"]})
            parts = self.path.split("?")[0].split("/")
            if self.command == "GET" and len(parts) == 4 and parts[1:3] == ["v1", "pods"]:
                if parts[3] != "pod-1":
                    return self.answer(404, {"error": f"no pod {parts[3]}", "kind": "not_found"})
                POD["state_calls"] += 1
                return self.answer(200, {"id": "pod-1", "state": "running" if POD["state_calls"] < 4 else "exited"})
            if self.command == "GET" and len(parts) == 5 and parts[1:3] == ["v1", "pods"]:
                pod, what = parts[3], parts[4]
                if pod != "pod-1":
                    return self.answer(404, {"error": f"no pod {pod}", "kind": "not_found"})
                if what == "logs" and "?" in self.path and not self.path.split("?", 1)[1].startswith("tail="):
                    return self.answer(400, {"error": "query: only tail=N", "kind": "invalid_request"})
                if what == "logs":
                    if POD["state_calls"] == 0:
                        return self.raw(200, "text/plain", b"console line 1\nescape \x1b[31m red\n")
                    POD["polls"] += 1
                    text = "".join(f"line {i}\n" for i in range(1, POD["polls"] + 1))
                    return self.raw(200, "text/plain", text.encode())
                if what == "events":
                    return self.raw(200, "text/event-stream",
                                    b": nucleus-node audit events\n\nevent: audit\ndata: {\"op\":\"read\"}\n\n"
                                    b": keep-alive\n\ndata: {\"op\":\"run\",\"x\":\"\x1b[2J\"}\n\n")
                if what == "audit":
                    # nucleus start gives the node a clean environment: the test puts the log here.
                    with open(os.path.join(cfg["node"]["state_dir"], "pod-1.audit.jsonl"), "rb") as f:
                        return self.raw(200, "application/jsonl", f.read())
            return self.answer(404, {"error": f"no route {self.path}", "kind": "not_found"})

        do_GET = do_POST = do_DELETE = do_PUT = handle_any

    srv = http.server.ThreadingHTTPServer((host, int(port)), H)
    linger = cfg.get("fake", {}).get("linger_after_term", 0)
    if os.environ.get("FAKE_NODE_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif linger:
        def on_term(*a):  # a node still ending its pods: no longer answering, not yet gone
            srv.socket.close()
            time.sleep(linger)
            os._exit(0)
        signal.signal(signal.SIGTERM, on_term)
    else:
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print(f"fake-node: listening on {host}:{port}", file=sys.stderr, flush=True)
    srv.serve_forever()
    return 0


sys.exit(main())
