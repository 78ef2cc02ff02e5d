# SPDX-License-Identifier: Apache-2.0
"""Attacks that must be refused, about web_fetch.
xfail(strict=True) until the owner fixes them."""
import http.server
import threading

import pytest

from helpers.proxyrun import ProxyProcess, agent_ids, configure, fix_issue_policy, proxy_bin  # noqa: F401


@pytest.fixture
def host_echo_server():
    seen = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Host"))
            body = b"vhost " + (self.headers.get("Host") or "").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_port, seen
    srv.shutdown()


def test_host_header_override(proxy_bin, agent_ids, host_echo_server):
    from conftest import binary
    port, seen = host_echo_server
    pp = ProxyProcess(proxy_bin, *agent_ids, extra_args=["--fetch-helper", str(binary("nucleus-web-fetch"))])
    try:
        pol = fix_issue_policy(proxy_bin, *agent_ids)
        pol["capabilities"]["web_fetch"] = "low_risk"
        configure(pp, policy=pol, dns_allow=[f"127.0.0.1:{port}"])
        r = pp.ch.request("web_fetch", {"url": f"http://127.0.0.1:{port}/",
                                        "headers": {"Host": "exfil.attacker.example"}})
        assert "error" in r or seen == [f"127.0.0.1:{port}"], \
            f"the allowed address was asked for virtual host {seen}: {r}"
    finally:
        pp.stop()
