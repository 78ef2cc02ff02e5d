# SPDX-License-Identifier: Apache-2.0
"""Attacks that must be refused, against a real nucleus-node.
xfail(strict=True) until the owner fixes them."""
import os
import socket
import time
import uuid

import pytest

from helpers.nodeproc import NodeProc


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_unauthenticated_body_is_buffered_before_auth(tmp_path):
    from conftest import require_root
    require_root()
    with NodeProc(tmp_path, driver="local") as node:
        pid = node.proc.pid
        before = rss_kib(pid)
        body_len = 200 * 1024 * 1024
        sent = 0
        chunk = b"\0" * (1024 * 1024)
        s = socket.create_connection(("127.0.0.1", node.port))
        try:
            head = (f"PUT /v1/pods/{uuid.uuid4()}/workspace HTTP/1.1\r\nHost: x\r\n"
                    f"Content-Length: {body_len}\r\n"
                    f"X-Nucleus-Timestamp: {int(time.time())}\r\n"
                    f"X-Nucleus-Nonce: {'ab' * 16}\r\nX-Nucleus-Actor: nobody\r\n"
                    f"X-Nucleus-Signature: {'00' * 32}\r\n\r\n").encode()
            s.sendall(head)
            s.settimeout(5)
            # Nothing in this request is authentic; a node that refuses before buffering stops
            # reading (or answers 401) long before 150 MiB are in.
            try:
                while sent < 150 * 1024 * 1024:
                    s.sendall(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                pass
            time.sleep(0.5)
            grown_mib = (rss_kib(pid) - before) / 1024
        finally:
            s.close()
        assert grown_mib < 32, \
            f"the node holds {grown_mib:.0f} MiB of an unauthenticated body ({sent >> 20} MiB sent)"


def _raw_headers(method, path, body_len, extra):
    lines = [f"{method} {path} HTTP/1.1", "Host: x", f"Content-Length: {body_len}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_answer(s, timeout=5):
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head else 0
    return status, head, rest


def test_bad_signature_refused_before_any_body_byte(tmp_path):
    """Headers declaring a 200 MiB body and its digest, with a bad MAC: the 401 arrives while the
    client has sent no body byte at all (the node never waits for it)."""
    from conftest import require_root
    from helpers.nodeclient import sign_headers
    require_root()
    with NodeProc(tmp_path, driver="local") as node:
        path = f"/v1/pods/{uuid.uuid4()}/workspace"
        h = sign_headers(os.urandom(32), "PUT", path, b"x")      # wrong key
        h["X-Nucleus-Content-SHA256"] = "ab" * 32
        s = socket.create_connection(("127.0.0.1", node.port))
        try:
            s.sendall(_raw_headers("PUT", path, 200 * 1024 * 1024, h))
            status, head, rest = _read_answer(s)
            assert status == 401, head
            assert b'"detail":"bad_signature"' in rest or b"bad_signature" in s.recv(65536)
        finally:
            s.close()
        # Unsigned-digest requests (no X-Nucleus-Content-SHA256) get 1 MiB before auth: 413
        # from the headers alone, again without a body byte.
        h = sign_headers(os.urandom(32), "PUT", path, b"x", declare_sha256=False)
        s = socket.create_connection(("127.0.0.1", node.port))
        try:
            s.sendall(_raw_headers("PUT", path, 2 * 1024 * 1024, h))
            status, head, _ = _read_answer(s)
            assert status == 413, head
        finally:
            s.close()
        assert node.client().health().status == 200


def test_unauthenticated_connections_are_capped(tmp_path):
    """Idle connections that never authenticate hold at most API_UNAUTH_CONNECTIONS_MAX (32)
    slots; a signed client still gets through once they time out or close."""
    from conftest import require_root
    require_root()
    with NodeProc(tmp_path, driver="local") as node:
        idle = []
        try:
            for _ in range(40):
                idle.append(socket.create_connection(("127.0.0.1", node.port)))
            time.sleep(0.5)
            # Past the cap the node refuses (closes) new connections right away.
            s = idle[-1]
            s.settimeout(3)
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                got = s.recv(100)
            except (ConnectionResetError, socket.timeout):
                got = b""
            assert got == b"", got
        finally:
            for s in idle:
                s.close()
        time.sleep(1)
        assert node.client().list_pods().status == 200


def _running_pod(c):
    from helpers.nodeproc import spec_yaml
    r = c.create_pod(spec_yaml())
    assert r.status == 201, r
    st = c.wait_state(r.json()["id"], {"running", "failed", "exited"}, timeout=60)
    assert st["state"] == "running", st
    return r.json()["id"]


def test_declared_digest_mismatch_has_no_side_effect_and_large_upload_works(tmp_path):
    from conftest import require_root
    from helpers.nodeclient import sign_headers
    from helpers.nodeproc import tar_bytes
    require_root()
    with NodeProc(tmp_path, driver="local") as node:
        c = node.client()
        pod = _running_pod(c)
        path = f"/v1/pods/{pod}/workspace"
        good = tar_bytes({"a.txt": "signed\n"})
        evil = tar_bytes({"a.txt": "evil!!\n"})
        h = sign_headers(c.key, "PUT", path, good, "test")
        r = c.request("PUT", path, evil, signed_headers=h)
        assert r.status == 401 and r.json()["detail"] == "content_mismatch", r
        assert c.tool(pod, "read", {"path": "a.txt"}).json().get("kind") == "not_found"
        audit = c.request("GET", f"/v1/pods/{pod}/audit").text
        assert "workspace_import" not in audit
        assert node.metric("nucleus_auth_failures_total", detail="content_mismatch") == 1

        # A legitimate 50 MiB upload streams through (temp file, digest checked at the end).
        rss0 = rss_kib(node.proc.pid)
        big = tar_bytes({"big.bin": os.urandom(25 * 1024 * 1024).hex()[:50 * 1024 * 1024]})
        assert len(big) > 50 * 1024 * 1024
        r = c.upload_workspace(pod, big)
        assert r.status == 200, r
        assert r.json()["files"] == 1
        st = c.tool(pod, "list", {"path": "."}).text
        assert "big.bin" in st
        del big
        assert (rss_kib(node.proc.pid) - rss0) / 1024 < 200
        c.delete_pod(pod)
        assert node.verify_audit(pod).returncode == 0
