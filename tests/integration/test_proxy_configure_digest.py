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
