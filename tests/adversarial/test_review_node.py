# SPDX-License-Identifier: Apache-2.0
"""Security review findings (see /work/coord/review-findings.md) against a real nucleus-node.
xfail(strict=True) until the owner fixes them."""
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


@pytest.mark.xfail(strict=True, reason="review finding RF-10: an unauthenticated peer makes the node buffer "
                   "a request body up to max_workspace_bytes (256 MiB, per connection, 128 connections) "
                   "before the signature is checked; only the presence of the headers is checked first")
def test_rf10_unauthenticated_body_is_buffered_before_auth(tmp_path):
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
