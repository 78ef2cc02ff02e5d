# SPDX-License-Identifier: Apache-2.0
"""configure answers configure_sha256 next to policy_sha256; it changes with anything
configure decided (limits, env, dns_allow, approver key, time left, network, pod id) and is
stable for the same configuration; the wall clock and the entropy seed do not change it."""
import re
import time

import pytest

from helpers.proxyrun import Approver, ProxyProcess, agent_ids, proxy_bin  # noqa: F401

BASE = {"pod_id": "pod-digest", "profile": "fix-issue", "time_remaining_ms": 600000,
        "limits": {"max_read_bytes": 4096}, "env": {"RUST_LOG": "info"}, "dns_allow": ["example.com"]}


def answer(proxy_bin, agent_ids, cfg):
    pp = ProxyProcess(proxy_bin, *agent_ids)
    try:
        return pp.ch.configure(cfg)
    finally:
        pp.stop()


@pytest.fixture(scope="module")
def base_answer(proxy_bin, agent_ids):
    return answer(proxy_bin, agent_ids, BASE)


def test_digest_present_and_stable(proxy_bin, agent_ids, base_answer):
    assert re.fullmatch(r"[0-9a-f]{64}", base_answer["configure_sha256"])
    assert base_answer["configure_sha256"] != base_answer["policy_sha256"]
    again = answer(proxy_bin, agent_ids, dict(BASE))
    assert again["configure_sha256"] == base_answer["configure_sha256"]


@pytest.mark.parametrize("change", [
    {"dns_allow": ["example.org"]}, {"env": {"RUST_LOG": "debug"}}, {"limits": {"max_read_bytes": 8192}},
    {"time_remaining_ms": 601000}, {"network": {"address": "10.201.0.6/30", "gateway": "10.201.0.5", "dns": "10.201.0.5"}}, {"pod_id": "pod-other"}, {"costs": {"base_usd_micros": 7}}, "approver"])
def test_digest_covers_each_setting(proxy_bin, agent_ids, base_answer, change):
    cfg = dict(BASE)
    if change == "approver":
        cfg["approver_public_key"] = Approver().public_hex
    else:
        cfg.update(change)
    r = answer(proxy_bin, agent_ids, cfg)
    assert r["policy_sha256"] == base_answer["policy_sha256"]
    assert r["configure_sha256"] != base_answer["configure_sha256"], change


def test_digest_ignores_clock_and_seed(proxy_bin, agent_ids, base_answer):
    # A clock a year off. This proxy runs on the host (a unix socket, as under the local driver):
    # it must leave the host's clock alone (it once set it, to this value, for every process).
    before = time.time()
    cfg = dict(BASE, wall_clock_unix_ms=int(before * 1000) - 365 * 86400 * 1000, entropy_seed="ab" * 32)
    r = answer(proxy_bin, agent_ids, cfg)
    assert r["configure_sha256"] == base_answer["configure_sha256"]
    assert time.time() >= before, "the proxy set the host's clock"
    assert r["clock_set"] is False, r


def test_old_timeout_key_refused(proxy_bin, agent_ids):
    """The deadline is the time left (time_remaining_ms); a duration is not accepted."""
    pp = ProxyProcess(proxy_bin, *agent_ids)
    try:
        r = pp.ch.request("configure", dict(BASE, timeout_seconds=600))
        assert r["kind"] == "invalid_request" and "$.timeout_seconds: unknown key" in r["error"], r
        assert pp.ch.configure(BASE)["pod_id"] == "pod-digest"  # nothing half-applied
    finally:
        pp.stop()


def _host_system_state():
    import subprocess
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    with open("/etc/resolv.conf", "rb") as f:
        resolv = f.read()
    return {
        "addresses": subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout,
        "routes": subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True, text=True).stdout,
        "links": subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout,
        "resolv.conf": resolv,
        "resolv.conf mounted": "/etc/resolv.conf" in mounts,
        "/run/nucleus-net": __import__("os").path.exists("/run/nucleus-net"),
    }


def test_host_proxy_leaves_the_hosts_system_alone(proxy_bin, agent_ids):
    """A proxy on the host (the local driver, these tests) is not its system's owner: a
    configure with a network, a seed and a clock leaves the host's NICs, routes, resolver and
    random pool alone. It once addressed the host's first NIC, added a default route and bound
    its resolv.conf over the host's, which cut the machine's DNS."""
    before = _host_system_state()
    cfg = dict(BASE, network={"address": "10.201.0.6/30", "gateway": "10.201.0.5", "dns": "10.201.0.5"},
               entropy_seed="cd" * 32, wall_clock_unix_ms=int(time.time() * 1000) - 86400 * 1000)
    r = answer(proxy_bin, agent_ids, cfg)
    assert r["pod_id"] == "pod-digest", r
    assert r["crng_reseeded"] is False and r["clock_set"] is False, r
    assert _host_system_state() == before
