# SPDX-License-Identifier: Apache-2.0
"""Issue 14 item 5: a program that is not installed in the image is `not_found` (audited as an
error, not a denial) with a message that says how to get it; an installed program the policy
refuses is still `command_denied`."""
import shutil

from helpers.proxyrun import agent_ids, configure, last_audit, proxy, proxy_bin  # noqa: F401


def test_missing_program_is_not_found_not_denied(proxy):
    configure(proxy, profile="fix-issue")
    for args in ({"argv": ["nucleus-no-such-program", "-x"]}, {"command": "nucleus-no-such-program --help"},
                 {"argv": ["/usr/bin/nucleus-no-such-program"]}):
        r = proxy.ch.request("run", args)
        assert r.get("kind") == "not_found", r
        assert "not installed" in r["error"] and "image build" in r["error"], r
        ev = last_audit(proxy, "run")
        assert ev["decision"] == "error" and ev["kind"] == "not_found", ev
    # A common toolchain's program names the shipped recipe that has it.
    proxy_path = "/usr/local/bin:/usr/bin:/bin"
    if not shutil.which("go", path=proxy_path):
        r = proxy.ch.request("run", {"argv": ["go", "test", "./..."]})
        assert r.get("kind") == "not_found", r
        assert "nucleus image build --name go" in r["error"] and "--image go" in r["error"], r
    # Installed, but not allowed: a denial as before.
    r = proxy.ch.request("run", {"argv": ["ls", "-la"]})
    assert r.get("kind") == "command_denied", r
    assert last_audit(proxy, "run")["decision"] == "deny"
    # Installed and allowed: runs.
    r = proxy.ch.request("run", {"argv": ["git", "status"]})
    assert r.get("kind") != "not_found", r
