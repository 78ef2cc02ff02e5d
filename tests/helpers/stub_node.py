# SPDX-License-Identifier: Apache-2.0
"""stub_node: a host-only stand-in for nucleus-node, for tests of the CLIENT side (`nucleus run`,
nucleus-mcp) that must run where no microVM can: it speaks the node API of the node issue
(signed requests per docs/api.md, /v1/pods, workspace tar and patch, tools/{op}, approvals,
audit), executes tool calls in a temporary directory with simple, strict rules, and records
everything it was asked. It is a TEST DOUBLE: the real node and proxy are tested through
microVMs elsewhere, and the e2e tests run against them when they are available.

Rules it enforces (enough to observe the client's behaviour):
  * every request but /v1/health must be signed with the node key (401 otherwise) or a
    credential it minted (POST /v1/pods/{id}/credentials): a pod credential for that pod's
    status, tools, lease and approval queue, a run credential for its budget routes (403);
  * paths: absolute or escaping the workspace -> 403 sandbox_escape;
  * web_fetch -> 403 network_denied (the pod has no network);
  * run ["git","push",...] -> 403 approval_required {"operation":"git_push"} unless an approval
    token (Ed25519, approver key) for this pod, operation and exact argv digest was submitted;
  * charge -> 402 budget_exhausted once the spent amount exceeds budget_micros;
  * budget reserve (run credential) -> 402 once spent + held + asked exceeds budget_micros;
    settle adds the actual cost to the spent amount.
"""
import base64
import hashlib
import hmac
import http.server
import io
import json
import os
import re
import secrets
import shutil
import socketserver
import subprocess
import tarfile
import tempfile
import threading
import time
import fnmatch

import nacl.exceptions
import nacl.signing

from .nodeclient import response_mac_header

__all__ = ["StubNode"]


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def canonical(obj):
    """Canonical JSON as src/lib/util json_dump_canonical writes it (jansson): sorted keys,
    compact, UTF-8 kept, control characters as \\uXXXX with UPPERCASE hex."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return re.sub(r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(), text)


class Pod:
    def __init__(self, pid, spec, root):
        self.id = pid
        self.spec = spec
        self.dir = os.path.join(root, pid, "workspace")
        self.gitdir = os.path.join(root, pid, "baseline.git")
        os.makedirs(self.dir)
        self.state = "booting"
        self.polls = 0
        self.tokens = []
        self.spent = 0
        self.reservations = {}  # id -> usd_micros held (POST .../budget/reserve)
        self.audit = []
        self.deleted = False


class StubNode:
    def __init__(self, key, approver_pub=None, budget_micros=5_000_000, boot_polls=1, max_upload_bytes=None):
        self.key = key
        self.approver_pub = approver_pub
        self.budget_micros = budget_micros
        self.boot_polls = boot_polls
        self.max_upload_bytes = max_upload_bytes  # announced in the create answer when set
        self.root = tempfile.mkdtemp(prefix="fake-node-")
        self.pods = {}
        self.log = []  # (method, path, status)
        self.tool_calls = []  # (pod, op, args, answer)
        self.credentials = {}  # key_id -> minted credential (POST /v1/pods/{id}/credentials)
        self.scoped_calls = []  # (method, path, key_id) signed with a credential
        self.settled = []  # (pod, usd_micros) settled through POST .../budget/settle
        self._httpd = None

    # -- lifecycle --
    def start(self):
        node = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                node._handle(self, "GET")

            def do_POST(self):
                node._handle(self, "POST")

            def do_PUT(self):
                node._handle(self, "PUT")

            def do_DELETE(self):
                node._handle(self, "DELETE")

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    @property
    def url(self):
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def add_running_pod(self, spec=None):
        """A pod created outside the CLI (for nucleus-mcp tests)."""
        pid = "pod-" + secrets.token_hex(6)
        p = Pod(pid, spec or {"spec": {"policy": "demo"}}, self.root)
        p.state = "running"
        self._baseline(p)
        self.pods[pid] = p
        return p

    # -- plumbing --
    def _reply(self, h, status, doc, ctype="application/json"):
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        h.send_response(status)
        # It holds the node key, so it signs its answers like the node (docs/api.md).
        # An answer to a request signed with a pod credential: MAC'd with its secret.
        key = getattr(h, "nucleus_answer_key", self.key)
        for k, v in response_mac_header(key, h.headers, status, data).items():
            h.send_header(k, v)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        self.log.append((h.command, h.path, status))

    def _err(self, h, status, kind, msg, **extra):
        d = {"error": msg, "kind": kind}
        d.update(extra)
        self._reply(h, status, d)

    def _verify(self, h, method, body):
        ts, nonce = h.headers.get("X-Nucleus-Timestamp"), h.headers.get("X-Nucleus-Nonce")
        actor, sig = h.headers.get("X-Nucleus-Actor", ""), h.headers.get("X-Nucleus-Signature")
        kid = h.headers.get("X-Nucleus-Key-Id")
        h.nucleus_answer_key, h.nucleus_credential = self.key, None
        if not (ts and nonce and sig) or len(nonce) < 32 or abs(time.time() - int(ts)) > 60:
            return False
        key, lines = self.key, ["nucleus-v1", method, h.path, ts, nonce, actor, hashlib.sha256(body).hexdigest()]
        if kid is not None:  # a pod credential (docs/api.md "Scoped credentials")
            cred = self.credentials.get(kid)
            if not cred:
                return False
            key = h.nucleus_answer_key = bytes.fromhex(cred["secret"])
            h.nucleus_credential = cred
            lines.append(kid)
        want = hmac.new(key, "\n".join(lines).encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, sig)

    def _handle(self, h, method):
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else b""
        if h.path == "/v1/health":
            return self._reply(h, 200, {"status": "ok"})
        if not self._verify(h, method, body):
            return self._err(h, 401, "unauthorized", "bad or missing signature")
        parts = h.path.split("?")[0].strip("/").split("/")
        cred = getattr(h, "nucleus_credential", None)
        budget_route = len(parts) == 5 and parts[:2] == ["v1", "pods"] and parts[3] == "budget"
        if budget_route and (cred is None or cred["scope"] != "run"):
            return self._err(h, 403, "insufficient_capability", "only the run credential",
                             detail="run_credential_required")
        if cred is not None:
            # A pod credential: its own pod's status, tools, lease and approval queue; a run
            # credential: its pod's budget reserve and settle. Nothing else.
            own = len(parts) >= 3 and parts[:2] == ["v1", "pods"] and parts[2] == cred["pod"]
            rest = parts[3:] if own else None
            if cred["scope"] == "run":
                allowed = own and budget_route
            else:
                allowed = own and (rest == [] and method == "GET" or rest == ["lease"]
                                   or (len(rest) == 2 and rest[0] == "tools" and rest[1] != "charge")
                                   or (rest and rest[0] == "approvals" and method in ("GET", "DELETE")))
            if not allowed:
                return self._err(h, 403, "insufficient_capability", "outside the credential's scope",
                                 detail="node_key_required" if own else "other_pod")
            self.scoped_calls.append((method, h.path, cred["key_id"]))
        try:
            if parts == ["v1", "pods"] and method == "POST":
                return self._create(h, body)
            if len(parts) >= 3 and parts[:2] == ["v1", "pods"]:
                p = self.pods.get(parts[2])
                if not p:
                    return self._err(h, 404, "not_found", "no such pod")
                rest = parts[3:]
                if not rest and method == "GET":
                    return self._get(h, p)
                if not rest and method == "DELETE":
                    p.deleted = True
                    p.state = "exited"
                    p.audit.append({"seq": len(p.audit), "op": "seal", "records": len(p.audit)})
                    return self._reply(h, 200, {"id": p.id, "state": p.state})
                if p.deleted and rest != ["audit"]:
                    return self._err(h, 409, "pod_not_running", "pod is gone")
                if rest == ["workspace"] and method == "PUT":
                    return self._import(h, p, body)
                if rest == ["workspace", "patch"] and method == "GET":
                    return self._patch(h, p)
                if rest == ["audit"] and method == "GET":
                    text = "".join(json.dumps(r) + "\n" for r in p.audit).encode()
                    return self._reply(h, 200, text, "application/x-ndjson")
                if rest == ["approvals"] and method == "POST":
                    return self._approval(h, p, body)
                if len(rest) == 2 and rest[0] == "tools" and method == "POST":
                    return self._tool(h, p, rest[1], body)
                if rest == ["budget", "reserve"] and method == "POST":
                    a = json.loads(body)
                    held = sum(p.reservations.values())
                    if p.spent + held + a["usd_micros"] > self.budget_micros:
                        return self._err(h, 402, "budget_exhausted", "does not fit")
                    rid = secrets.token_hex(16)
                    p.reservations[rid] = a["usd_micros"]
                    return self._reply(h, 200, {"reservation": rid, "usd_micros": a["usd_micros"]})
                if rest == ["budget", "settle"] and method == "POST":
                    a = json.loads(body)
                    if p.reservations.pop(a["reservation"], None) is None:
                        return self._err(h, 404, "not_found", "no such reservation")
                    p.spent += a["usd_micros"]
                    self.settled.append((p.id, a["usd_micros"]))
                    return self._reply(h, 200, {"reservation": a["reservation"], "charged_usd_micros": a["usd_micros"],
                                                "exhausted": p.spent >= self.budget_micros})
                if rest == ["credentials"] and method == "POST":
                    scope = (json.loads(body) if body else {}).get("scope", "pod")
                    c = {"key_id": f"{scope}-{p.id}-{secrets.token_hex(8)}", "secret": secrets.token_hex(32),
                         "scope": scope, "pod": p.id}
                    self.credentials[c["key_id"]] = c
                    return self._reply(h, 201, c)
            return self._err(h, 404, "not_found", f"no route {method} {h.path}")
        except Exception as e:  # a bug in the double must be loud in the test
            return self._err(h, 500, "internal", f"fake node: {type(e).__name__}: {e}")

    # -- routes --
    def _create(self, h, body):
        spec = json.loads(body)
        if spec.get("apiVersion") != "nucleus/v1" or spec.get("kind") != "Pod" or "policy" not in spec.get("spec", {}):
            return self._err(h, 400, "invalid_request", "not a pod spec")
        pid = "pod-" + secrets.token_hex(6)
        self.pods[pid] = Pod(pid, spec, self.root)
        answer = {"id": pid, "state": "booting"}
        if self.max_upload_bytes is not None:
            answer["max_upload_bytes"] = self.max_upload_bytes
        return self._reply(h, 201, answer)

    def _get(self, h, p):
        p.polls += 1
        if p.state == "booting" and p.polls > self.boot_polls:
            p.state = "running"
        return self._reply(h, 200, {"id": p.id, "state": p.state, "policy": p.spec["spec"]["policy"]})

    def _git(self, p, *args):
        env = {"PATH": "/usr/bin:/bin", "GIT_DIR": p.gitdir, "GIT_WORK_TREE": p.dir, "HOME": self.root,
               "GIT_AUTHOR_NAME": "n", "GIT_AUTHOR_EMAIL": "n@n", "GIT_COMMITTER_NAME": "n",
               "GIT_COMMITTER_EMAIL": "n@n"}
        return subprocess.run(["git", *args], env=env, cwd=p.dir, capture_output=True, check=True).stdout

    def _baseline(self, p):
        self._git(p, "init", "-q")
        self._git(p, "add", "-A")
        self._git(p, "commit", "-q", "--allow-empty", "-m", "baseline")

    def _import(self, h, p, body):
        with tarfile.open(fileobj=io.BytesIO(body)) as t:
            members = t.getmembers()
            for m in members:  # what the real proxy refuses, refused here too
                if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir() or m.issym()):
                    return self._err(h, 400, "invalid_request", f"tar entry {m.name!r} refused")
            t.extractall(p.dir, members=members)
        self._baseline(p)
        p.audit.append({"seq": len(p.audit), "op": "import", "bytes": len(body)})
        return self._reply(h, 200, {"ok": True, "bytes": len(body)})

    def _patch(self, h, p):
        self._git(p, "add", "-A")
        diff = self._git(p, "diff", "--cached", "--binary", "HEAD").decode()
        changed = [ln for ln in self._git(p, "diff", "--cached", "--name-only", "HEAD").decode().splitlines() if ln]
        flagged = [{"path": c, "reason": "ci"} for c in changed if c.startswith(".github/")]
        return self._reply(h, 200, {"patch": diff, "changed": changed, "flagged": flagged})

    def _approval(self, h, p, body):
        tok = json.loads(body).get("token", "")
        try:
            prefix, payload_b64, sig_b64 = tok.split(".")
            assert prefix == "nat1"
            nacl.signing.VerifyKey(self.approver_pub).verify(f"nat1.{payload_b64}".encode(), _b64d(sig_b64))
            payload = json.loads(_b64d(payload_b64))
        except (ValueError, AssertionError, nacl.exceptions.BadSignatureError, TypeError) as e:
            return self._err(h, 403, "approval_invalid", f"token rejected: {e}")
        if payload.get("pod") != p.id or payload.get("exp", 0) <= time.time():
            return self._err(h, 403, "approval_invalid", "token for another pod or expired")
        p.tokens.append(payload)
        p.audit.append({"seq": len(p.audit), "op": "approve", "operation": payload.get("op")})
        return self._reply(h, 200, {"ok": True})

    def _resolve(self, p, rel):
        if rel is None or rel.startswith("/"):
            return None
        full = os.path.realpath(os.path.join(p.dir, rel))
        if full != os.path.realpath(p.dir) and not full.startswith(os.path.realpath(p.dir) + "/"):
            return None
        return full

    def _tool(self, h, p, op, body):
        args = json.loads(body or b"{}")
        status, answer = self._do_tool(p, op, args)
        self.tool_calls.append((p.id, op, args, answer))
        p.audit.append({"seq": len(p.audit), "op": op, "args_sha256": hashlib.sha256(body).hexdigest(),
                        "decision": "deny" if "error" in answer else "allow", "kind": answer.get("kind")})
        return self._reply(h, status, answer)

    def _do_tool(self, p, op, a):
        def esc(path):
            return 403, {"error": f"sandbox escape: path '{path}' resolves outside the workspace",
                         "kind": "sandbox_escape"}
        if op in ("read", "write", "edit", "list"):
            path = a.get("path", ".")
            full = self._resolve(p, path)
            if full is None:
                return esc(path)
            if op == "read":
                if not os.path.isfile(full):
                    return 404, {"error": f"{path}: not found", "kind": "not_found"}
                data = open(full, "rb").read()
                off, ln = a.get("offset", 0), a.get("length", len(data))
                return 200, {"path": path, "content": data[off:off + ln].decode(errors="replace"), "size": len(data)}
            if op == "write":
                os.makedirs(os.path.dirname(full), exist_ok=True)
                data = base64.b64decode(a["content_base64"]) if "content_base64" in a else a["content"].encode()
                with open(full, "wb") as f:
                    f.write(data)
                return 200, {"path": path, "bytes": len(data)}
            if op == "edit":
                text = open(full).read()
                n = text.count(a["old"])
                if n != 1:
                    return 409 if n else 404, {"error": f"old text found {n} times",
                                               "kind": "not_unique" if n else "not_found"}
                with open(full, "w") as f:
                    f.write(text.replace(a["old"], a["new"]))
                return 200, {"path": path, "replaced": 1}
            return 200, {"path": path, "entries": sorted(os.listdir(full))}
        if op == "glob":
            out = []
            for d, _, fs in os.walk(p.dir):
                for f in fs:
                    rel = os.path.relpath(os.path.join(d, f), p.dir)
                    if fnmatch.fnmatch(rel, a["pattern"]):
                        out.append(rel)
            return 200, {"matches": sorted(out)}
        if op == "grep":
            rx, out = re.compile(a["pattern"]), []
            for d, _, fs in os.walk(p.dir):
                for f in fs:
                    rel = os.path.relpath(os.path.join(d, f), p.dir)
                    for i, line in enumerate(open(os.path.join(d, f), errors="replace"), 1):
                        if rx.search(line):
                            out.append({"path": rel, "line": i, "text": line.rstrip("\n")})
            return 200, {"matches": out}
        if op == "web_fetch":
            return 403, {"error": "network denied: this pod has no network policy", "kind": "network_denied"}
        if op == "run":
            argv = a.get("argv") or []
            if not argv:
                return 400, {"error": "run: argv required", "kind": "invalid_request"}
            if argv[:2] == ["git", "push"]:
                digest = hashlib.sha256(canonical(argv).encode()).hexdigest()
                ok = [t for t in p.tokens if t.get("op") == "git_push" and t.get("args_sha256") == digest]
                if not ok:
                    return 403, {"error": "approval required: 'git_push' requires human approval",
                                 "kind": "approval_required", "operation": "git_push"}
                p.tokens.remove(ok[0])
                return 200, {"exit_status": 0, "stdout": "pushed (fake node: nothing was sent)\n", "stderr": ""}
            cwd = self._resolve(p, a.get("cwd", "."))
            r = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=a.get("timeout_seconds", 60),
                               env={"PATH": "/usr/bin:/bin", "HOME": p.dir, "LANG": "C.UTF-8",
                                    "PYTHONDONTWRITEBYTECODE": "1"})
            return 200, {"exit_status": r.returncode, "stdout": r.stdout.decode(errors="replace"),
                         "stderr": r.stderr.decode(errors="replace")}
        if op == "charge":
            p.spent += int(a.get("usd_micros", 0))
            if p.spent > self.budget_micros:
                return 402, {"error": f"budget exhausted: spent {p.spent} of {self.budget_micros} micro-USD",
                             "kind": "budget_exhausted"}
            return 200, {"spent_usd_micros": p.spent, "left_usd_micros": self.budget_micros - p.spent}
        if op == "status":
            return 200, {"spent_usd_micros": p.spent, "max_usd_micros": self.budget_micros,
                         "budget": {"max_usd_micros": self.budget_micros, "used_usd_micros": p.spent,
                                    "reserved_usd_micros": 0}}
        return 400, {"error": f"unknown operation {op}", "kind": "invalid_request"}
