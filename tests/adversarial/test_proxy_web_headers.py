# SPDX-License-Identifier: Apache-2.0
"""Web_fetch request headers are an allowlist. Host, hop-by-hop/framing headers,
Proxy-* and credentials are refused (case-insensitively) before anything is sent; allowed
headers reach the server, and the Host is always the URL's."""
import http.server
import threading

import pytest

from helpers.proxyrun import ProxyProcess, agent_ids, configure, fix_issue_policy, proxy_bin  # noqa: F401


@pytest.fixture
def echo_server():
    seen = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_port, seen
    srv.shutdown()


@pytest.fixture
def fetch_proxy(proxy_bin, agent_ids, echo_server):
    from conftest import binary
    port, _ = echo_server
    pp = ProxyProcess(proxy_bin, *agent_ids, extra_args=["--fetch-helper", str(binary("nucleus-web-fetch"))])
    pol = fix_issue_policy(proxy_bin, *agent_ids)
    pol["capabilities"]["web_fetch"] = "low_risk"
    configure(pp, policy=pol, dns_allow=[f"127.0.0.1:{port}"])
    yield pp
    pp.stop()


@pytest.mark.parametrize("name", ["Host", "host", "HOST", "Connection", "Transfer-Encoding", "Content-Length",
                                  "Proxy-Authorization", "Proxy-Connection", "TE", "Upgrade", "Expect",
                                  "Authorization", "Cookie", "X-Forwarded-Host", "Forwarded"])
def test_forbidden_header_refused_and_nothing_sent(fetch_proxy, echo_server, name):
    port, seen = echo_server
    r = fetch_proxy.ch.request("web_fetch", {"url": f"http://127.0.0.1:{port}/", "headers": {name: "x.example"}})
    assert r.get("kind") == "invalid_request" and name in r["error"], r
    assert seen == []


def test_allowed_headers_pass_and_host_is_the_urls(fetch_proxy, echo_server):
    port, seen = echo_server
    r = fetch_proxy.ch.request("web_fetch", {"url": f"http://127.0.0.1:{port}/",
                                             "headers": {"accept": "text/plain", "User-Agent": "nucleus-test"}})
    assert r.get("status") == 200, r
    assert seen and seen[0]["Host"] == f"127.0.0.1:{port}"
    assert seen[0]["accept"] == "text/plain" and seen[0]["User-Agent"] == "nucleus-test"
