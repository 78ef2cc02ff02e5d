# SPDX-License-Identifier: Apache-2.0
"""Attacks that must be refused, about the confinement of
commands the proxy runs. Each failing case is xfail(strict=True) until the owner fixes it."""
import os
import time

import pytest

from helpers.proxyrun import (agent_ids, configure, fix_issue_policy, proxy, proxy_bin)  # noqa: F401

MARK = "/tmp/nucleus-review-survivor"

# A "test runner" that leaves a daemon behind: the child leaves the process group and the
# session the proxy kills (setsid), closes the output pipes, and keeps working afterwards.
DAEMON = f"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    for fd in (0, 1, 2):
        os.close(fd)
    time.sleep(3)
    open({MARK!r}, "w").write(str(os.getpid()))
    time.sleep(60)
    os._exit(0)
print("parent done")
"""


@pytest.fixture(autouse=True)
def no_marker():
    if os.path.exists(MARK):
        os.unlink(MARK)
    yield
    if os.path.exists(MARK):
        try:
            os.kill(int(open(MARK).read() or 0), 9)
        except (ValueError, ProcessLookupError):
            pass
        os.unlink(MARK)


def test_descendant_survives_run_via_setsid(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["python3"]))
    proxy.put("daemon.py", DAEMON)
    r = proxy.ch.request("run", {"argv": ["python3", "daemon.py"], "timeout_seconds": 1})
    assert "error" not in r and "parent done" in r.get("stdout", ""), r
    time.sleep(4.5)
    assert not os.path.exists(MARK), \
        "a process started by the finished command kept running and wrote a file 3 s after the run ended"
