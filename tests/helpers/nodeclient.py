# SPDX-License-Identifier: Apache-2.0
"""Signed Python client for the nucleus-node HTTP API (tests and tools).

Signing follows docs/api.md "Signing" / DESIGN.md §4: the string to sign is the "\n"-join of
"nucleus-v1", METHOD, path-with-query exactly as sent, timestamp, nonce, actor and
hex(SHA-256(body)); the signature is hex HMAC-SHA256 under the 32-byte node secret.

Usage:
    c = NodeClient("http://127.0.0.1:8080", key_file="/path/node.key")
    r = c.create_pod({"apiVersion": "nucleus/v1", "kind": "Pod", "spec": {...}})
    pod = r.json()["id"]; c.wait_state(pod, {"running"})
    c.tool(pod, "read", {"path": "README"}).json()

Every method returns a Response (status, headers, body bytes, .json()); nothing raises on
HTTP errors, so tests can assert on 4xx answers. Low-level knobs (timestamp, nonce, extra
headers, sign=False, raw path) exist so adversarial tests can build bad requests.
"""
import hashlib
import hmac
import http.client
import json
import os
import secrets
import time
import urllib.parse

__all__ = ["NodeClient", "Response", "sign_headers", "string_to_sign", "load_key"]


def load_key(key_file):
    """Read a node secret file (64 hex chars + newline) and return the 32 raw bytes."""
    with open(key_file, "r", encoding="ascii") as f:
        text = f.read().strip()
    key = bytes.fromhex(text)
    if len(key) != 32:
        raise ValueError(f"{key_file}: expected 64 hex characters, got {len(text)}")
    return key


def string_to_sign(method, path, timestamp, nonce, actor, body, key_id=None):
    lines = [
        "nucleus-v1",
        method,
        path,
        str(timestamp),
        nonce,
        actor,
        hashlib.sha256(body).hexdigest(),
    ]
    if key_id is not None:  # a scoped credential's id is the eighth signed line
        lines.append(key_id)
    return "\n".join(lines).encode()


def sign_headers(key, method, path, body=b"", actor="test", timestamp=None, nonce=None,
                 declare_sha256=True, key_id=None):
    """The X-Nucleus-* headers for one request. declare_sha256 adds X-Nucleus-Content-SHA256
    (the body digest that is also the signed string's last line), which lets the node check the
    signature before it reads the body; without it the node caps the body at 1 MiB."""
    if timestamp is None:
        timestamp = int(time.time())
    if nonce is None:
        nonce = secrets.token_hex(16)
    sig = hmac.new(key, string_to_sign(method, path, timestamp, nonce, actor, body, key_id),
                   hashlib.sha256).hexdigest()
    h = {
        "X-Nucleus-Timestamp": str(timestamp),
        "X-Nucleus-Nonce": nonce,
        "X-Nucleus-Actor": actor,
        "X-Nucleus-Signature": sig,
    }
    if declare_sha256:
        h["X-Nucleus-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    if key_id is not None:
        h["X-Nucleus-Key-Id"] = key_id
    return h


STREAM = object()  # response_mac(..., body=STREAM): a streamed answer (events, followed logs)


def response_mac(key, nonce, status, body):
    """X-Nucleus-Response-MAC (docs/api.md): HMAC-SHA256 with the node key over
    "nucleus-v1-response\nNONCE\nSTATUS\nhex(sha256(body))", or "stream" for streamed answers."""
    last = "stream" if body is STREAM else hashlib.sha256(body).hexdigest()
    msg = "\n".join(["nucleus-v1-response", nonce, str(status), last]).encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def response_mac_header(key, request_headers, status, body):
    """The header a node (or a test stand-in holding the key) adds to its answer to a request
    whose X-Nucleus-Nonce is well formed; {} otherwise."""
    nonce = request_headers.get("X-Nucleus-Nonce") or ""
    if not (32 <= len(nonce) <= 128 and len(nonce) % 2 == 0) or any(c not in "0123456789abcdefABCDEF" for c in nonce):
        return {}
    return {"X-Nucleus-Response-MAC": response_mac(key, nonce, status, body)}


class Response:
    def __init__(self, status, headers, body, sent_headers=None):
        self.status = status
        self.headers = headers          # dict, lower-case names
        self.body = body                # bytes
        self.sent_headers = sent_headers or {}

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


class NodeClient:
    def __init__(self, base_url, key=None, key_file=None, actor="test", timeout=60, key_id=None):
        """key_id: sign with a scoped credential (docs/api.md "Scoped credentials"); key is then
        its 32-byte secret."""
        u = urllib.parse.urlsplit(base_url)
        if u.scheme != "http":
            raise ValueError("only http:// node URLs are supported")
        self.host = u.hostname
        self.port = u.port or 80
        self.key = key if key is not None else (load_key(key_file) if key_file else None)
        self.actor = actor
        self.timeout = timeout
        self.key_id = key_id

    @classmethod
    def scoped(cls, base_url, credential, **kw):
        """A client signing with a credential as minted (POST /v1/pods/{id}/credentials)."""
        return cls(base_url, key=bytes.fromhex(credential["secret"]), key_id=credential["key_id"], **kw)

    # ---- low level -------------------------------------------------------------------
    def _conn(self, timeout=None):
        return http.client.HTTPConnection(self.host, self.port,
                                          timeout=timeout or self.timeout)

    def request(self, method, path, body=b"", headers=None, *, sign=True, timestamp=None,
                nonce=None, actor=None, signed_headers=None, timeout=None, declare_sha256=True):
        """Send one request. signed_headers: use exactly these X-Nucleus-* headers (replay)."""
        if isinstance(body, str):
            body = body.encode()
        if body is None:
            body = b""
        h = {}
        if sign:
            if signed_headers is not None:
                h.update(signed_headers)
            else:
                h.update(sign_headers(self.key, method, path, body,
                                      actor if actor is not None else self.actor,
                                      timestamp, nonce, declare_sha256, self.key_id))
        if headers:
            h.update(headers)
        c = self._conn(timeout)
        try:
            c.putrequest(method, path, skip_accept_encoding=True)
            for k, v in h.items():
                c.putheader(k, v)
            if body or method in ("POST", "PUT", "PATCH"):
                c.putheader("Content-Length", str(len(body)))
            c.endheaders()
            if body:
                try:
                    c.send(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server answered early (413, 401) and closed: read that answer
            r = c.getresponse()
            data = r.read()
            resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data, h)
            nonce = h.get("X-Nucleus-Nonce")
            mac = resp.headers.get("x-nucleus-response-mac")
            # Whether the answer is authenticated by the node key (docs/api.md), for tests.
            resp.mac_ok = bool(nonce and mac and self.key is not None and hmac.compare_digest(
                mac, response_mac(self.key, nonce, r.status, data)))
            return resp
        finally:
            c.close()

    def stream(self, method, path, body=b"", headers=None, timeout=None):
        """Send a signed request and return (connection, HTTPResponse) for reading a stream
        (server-sent events). The caller closes the connection."""
        if isinstance(body, str):
            body = body.encode()
        h = sign_headers(self.key, method, path, body, self.actor, key_id=self.key_id)
        if headers:
            h.update(headers)
        c = self._conn(timeout)
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in h.items():
            c.putheader(k, v)
        if body or method in ("POST", "PUT"):
            c.putheader("Content-Length", str(len(body)))
        c.endheaders()
        if body:
            c.send(body)
        return c, c.getresponse()

    @staticmethod
    def sse_events(resp, limit=None):
        """Yield (event, data) pairs from an SSE HTTPResponse until EOF or limit events."""
        event, data, n = None, [], 0
        while True:
            line = resp.readline()
            if not line:
                return
            line = line.decode("utf-8").rstrip("\r\n")
            if line == "":
                if data or event:
                    yield event or "message", "\n".join(data)
                    n += 1
                    if limit is not None and n >= limit:
                        return
                event, data = None, []
            elif line.startswith(":"):
                continue
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))

    # ---- API -------------------------------------------------------------------------
    def health(self):
        return self.request("GET", "/v1/health", sign=False)

    def create_pod(self, spec, content_type=None):
        """spec: dict (sent as JSON) or str/bytes (sent as is, e.g. YAML)."""
        if isinstance(spec, dict):
            body = json.dumps(spec).encode()
            content_type = content_type or "application/json"
        else:
            body = spec.encode() if isinstance(spec, str) else spec
            content_type = content_type or "application/yaml"
        return self.request("POST", "/v1/pods", body, {"Content-Type": content_type})

    def list_pods(self):
        return self.request("GET", "/v1/pods")

    def get_pod(self, pod):
        return self.request("GET", f"/v1/pods/{pod}")

    def delete_pod(self, pod):
        return self.request("DELETE", f"/v1/pods/{pod}")

    def cancel_pod(self, pod):
        return self.request("POST", f"/v1/pods/{pod}/cancel")

    def logs(self, pod, tail=None):
        q = f"?tail={tail}" if tail is not None else ""
        return self.request("GET", f"/v1/pods/{pod}/logs{q}")

    def upload_workspace(self, pod, tar_bytes):
        return self.request("PUT", f"/v1/pods/{pod}/workspace", tar_bytes,
                            {"Content-Type": "application/x-tar"})

    def patch(self, pod):
        return self.request("GET", f"/v1/pods/{pod}/workspace/patch")

    def tool(self, pod, op, args=None, timeout=None):
        body = json.dumps(args if args is not None else {}).encode()
        return self.request("POST", f"/v1/pods/{pod}/tools/{op}", body,
                            {"Content-Type": "application/json"}, timeout=timeout)

    def approve(self, pod, token):
        body = token if isinstance(token, (bytes, str)) else json.dumps(token)
        return self.request("POST", f"/v1/pods/{pod}/approvals", body,
                            {"Content-Type": "application/json"})

    def audit(self, pod):
        return self.request("GET", f"/v1/pods/{pod}/audit")

    def mint_credential(self, pod, scope=None):
        """POST /v1/pods/{id}/credentials (node key): {"key_id","secret","scope","pod"}."""
        body = json.dumps({"scope": scope}).encode() if scope else b""
        return self.request("POST", f"/v1/pods/{pod}/credentials", body,
                            {"Content-Type": "application/json"})

    def wait_state(self, pod, states, timeout=120.0, interval=0.2):
        """Poll GET /v1/pods/{id} until its state is in states (a set); returns the last
        JSON body. Raises TimeoutError with the last body when it never gets there."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            r = self.get_pod(pod)
            if r.status == 200:
                last = r.json()
                if last.get("state") in states:
                    return last
            else:
                last = {"status": r.status, "body": r.text}
            time.sleep(interval)
        raise TimeoutError(f"pod {pod} not in {states} after {timeout}s: {last}")


def new_key_file(path):
    """Write a fresh node secret file (0600, 64 hex + newline); returns the raw key."""
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key
