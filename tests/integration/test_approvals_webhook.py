# SPDX-License-Identifier: Apache-2.0
"""Webhook approvers: with `[approvals] webhook` in config.toml, `nucleus console` posts each
pending approval, signed with the webhook key and without the agent-controlled arguments, to a
test approver server; the approver decides one in its answer and another later through the
console's /hooks/decision. Replayed, unsigned and mis-bound decisions are refused."""
import hashlib
import hmac
import http.client
import http.server
import json
import os
import secrets
import subprocess
import threading
import time

import pytest

from conftest import binary, require_root
from helpers.nodeproc import NodeProc, free_port

from test_approvals_queue import COMMIT, get, hold, running_pod

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")


def sign(key, body):
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


class Approver(http.server.BaseHTTPRequestHandler):
    """Answers the first posted approval with a signed 'once' decision; keeps the others for
    the test to decide later."""
    posted = []
    key_file = None
    answered = False

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        key = bytes.fromhex(open(self.key_file).read().strip())
        ok = hmac.compare_digest(self.headers.get("X-Nucleus-Webhook-Signature", ""), sign(key, body))
        doc = json.loads(body)
        Approver.posted.append((ok, doc))
        if ok and not Approver.answered:
            Approver.answered = True
            d = json.dumps({"id": doc["id"], "pod": doc["pod"], "digest": doc["digest"], "decision": "once",
                            "nonce": secrets.token_hex(16), "timestamp": int(time.time())}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Nucleus-Webhook-Signature", sign(key, d))
            self.send_header("Content-Length", str(len(d)))
            self.end_headers()
            self.wfile.write(d)
            return
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def post_decision(base, body, signature):
    host, port = base.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    c.request("POST", "/hooks/decision", body=body,
              headers={"Content-Type": "application/json", "X-Nucleus-Webhook-Signature": signature})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def test_webhook_approver(tmp_path):
    require_root()
    with NodeProc(tmp_path, driver="local") as node:
        port = free_port()
        Approver.key_file = str(node.secrets / "webhook.key")
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Approver)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        cfg = tmp_path / "config.toml"
        cfg.write_text(f'[node]\nurl = "http://127.0.0.1:{node.port}"\n[auth]\nsecrets_dir = "{node.secrets}"\n'
                       f'[approvals]\nwebhook = "http://127.0.0.1:{port}/hook"\n')
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "NUCLEUS_CONFIG": str(cfg)}
        console = subprocess.Popen([str(binary("nucleus")), "console", "--listen", "127.0.0.1:0"], env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            base = console.stdout.readline().strip().split("/?token=")[0]
            assert base.startswith("http://127.0.0.1:"), console.stderr.read()
            c = node.client()
            pod = running_pod(c)
            first = hold(c, pod)
            assert get(c, pod, first["id"], wait=30).json()["state"] == "approved"
            ok, doc = Approver.posted[0]
            assert ok and doc["id"] == first["id"] and doc["digest"] == first["digest"]
            assert doc["type"] == "nucleus.approval.pending" and doc["console_url"].startswith(base)
            # The agent-controlled arguments and reason never leave the machine.
            assert "args" not in doc and "reason" not in doc and "--allow-empty" not in json.dumps(doc)
            r = c.tool(pod, "run", COMMIT)
            assert r.status == 200, r

            second = hold(c, pod, {"argv": ["git", "commit", "-m", "two"]})
            deadline = time.monotonic() + 30
            while len(Approver.posted) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert Approver.posted[1][1]["id"] == second["id"]
            key = bytes.fromhex((node.secrets / "webhook.key").read_text().strip())
            d = json.dumps({"id": second["id"], "pod": pod, "digest": second["digest"], "decision": "refuse",
                            "reason": "ticket closed", "nonce": secrets.token_hex(16),
                            "timestamp": int(time.time())}).encode()
            # Unsigned or signed with another key: refused, nothing decided.
            assert post_decision(base, d, sign(os.urandom(32), d))[0] == 401
            assert get(c, pod, second["id"]).json()["state"] == "pending"
            # Bound to another digest: refused.
            other = json.loads(d)
            other["digest"] = "0" * 64
            other["nonce"] = secrets.token_hex(16)
            ob = json.dumps(other).encode()
            assert post_decision(base, ob, sign(key, ob))[0] == 409
            # The real one decides; replaying it is refused.
            st, body = post_decision(base, d, sign(key, d))
            assert st == 200, body
            rec = get(c, pod, second["id"]).json()
            assert rec["state"] == "refused" and rec["decision_reason"] == "ticket closed"
            assert post_decision(base, d, sign(key, d))[0] == 409
            assert (node.secrets / "webhook.key").stat().st_mode & 0o777 == 0o600
        finally:
            console.terminate()
            console.wait(30)
            srv.shutdown()
