# SPDX-License-Identifier: Apache-2.0
"""Approval tokens minted in Python per docs/approvals.md are accepted by the C verifier,
and the A1-A3 refusals hold across the language boundary."""
import subprocess
import time

from conftest import binary
from helpers.approval import args_sha256, generate_keypair, mint

ARGV = ["git", "push", "origin", "main"]


def check(pub, pod, op, args, *tokens):
    r = subprocess.run([str(binary("test-approval-check")), pub, pod, op, args or "-", *tokens],
                       capture_output=True, text=True, timeout=30, check=True)
    return r.stdout.split()


def test_python_tokens():
    sk, _, pub = generate_keypair()
    other, _, _ = generate_keypair()
    h = args_sha256(ARGV)
    good = mint(sk, "pod-1", "git_push", ARGV)
    # valid once, then a replay
    assert check(pub, "pod-1", "git_push", h, good, good) == ["ok", "exhausted"]
    # signed by another key
    assert check(pub, "pod-1", "git_push", h, mint(other, "pod-1", "git_push", ARGV)) == ["bad_signature"]
    # expired
    assert check(pub, "pod-1", "git_push", h,
                 mint(sk, "pod-1", "git_push", ARGV, exp=int(time.time()) - 1)) == ["expired"]
    # another operation, another argv, another pod
    assert check(pub, "pod-1", "run_bash", h, good) == ["wrong_operation"]
    assert check(pub, "pod-1", "git_push", args_sha256(["git", "push", "--force"]), good) == ["wrong_args"]
    assert check(pub, "pod-2", "git_push", h, good) == ["wrong_pod"]
    # uses=2 is good twice
    two = mint(sk, "pod-1", "run_bash", uses=2)
    assert check(pub, "pod-1", "run_bash", None, two, two, two) == ["ok", "ok", "exhausted"]
    # tampering with any byte breaks it
    assert check(pub, "pod-1", "git_push", h, good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]) \
        in (["bad_signature"], ["malformed"])
