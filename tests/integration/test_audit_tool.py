# SPDX-License-Identifier: Apache-2.0
"""nucleus-audit against logs written by the C library (test-audit-writer) and by an
independent Python writer (python3-nacl), plus tampering and usage errors."""
import hashlib
import json
import subprocess

import nacl.signing
import pytest

from conftest import binary


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def keypair(tmp_path):
    sk = nacl.signing.SigningKey.generate()
    skfile = tmp_path / "audit.key"
    # libsodium's 64-byte secret key = seed || public key, hex, newline
    skfile.write_text((bytes(sk) + bytes(sk.verify_key)).hex() + "\n")
    skfile.chmod(0o600)
    pub = bytes(sk.verify_key).hex()
    pubfile = tmp_path / "audit.pub"
    pubfile.write_text(pub + "\n")
    pubfile.chmod(0o600)
    return sk, skfile, pub, pubfile


def verify(log, *args):
    return subprocess.run([str(binary("nucleus-audit")), "verify", str(log), *args],
                          capture_output=True, text=True, timeout=60)


def write_with_library(tmp_path, skfile, n=7, seal=True):
    log = tmp_path / "audit.jsonl"
    cmd = [str(binary("test-audit-writer")), str(log), "pod-int", str(skfile), str(n)]
    if not seal:
        cmd.append("--no-seal")
    subprocess.run(cmd, check=True, timeout=60)
    return log


def test_library_log_verifies(tmp_path):
    sk, skfile, pub, pubfile = keypair(tmp_path)
    log = write_with_library(tmp_path, skfile)
    r = verify(log, "--public-key", pub)
    assert r.returncode == 0, r.stderr
    assert "7 records" in r.stdout
    r = verify(log, "--public-key-file", str(pubfile), "--output", "json")
    assert r.returncode == 0
    out = json.loads(r.stdout)
    assert out["valid"] is True and out["records"] == 7 and out["sealed"] is True
    assert out["pod"] == "pod-int"
    # Python checks the C output independently: chain, signatures, seal.
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b""
    prev = hashlib.sha256(b"nucleus-audit-genesis-v1\npod-int").hexdigest()
    vk = nacl.signing.VerifyKey(bytes.fromhex(pub))
    for i, line in enumerate(lines[:-1], start=1):
        rec = json.loads(line)
        assert canon(rec).encode() == line
        assert rec["seq"] == i and rec["prev"] == prev
        sig = bytes.fromhex(rec.pop("sig"))
        vk.verify(canon(rec).encode(), sig)
        prev = hashlib.sha256(line).hexdigest()
    assert json.loads(lines[-2])["op"] == "seal" and json.loads(lines[-2])["count"] == 7


def python_log(sk, pod, n):
    prev = hashlib.sha256(b"nucleus-audit-genesis-v1\n" + pod.encode()).hexdigest()
    out = []
    for i in range(1, n + 2):
        rec = {"seq": i, "time": "2026-11-29T20:00:00.000Z", "actor": "py", "pod": pod,
               "prev": prev, "decision": "allow", "op": "run_bash",
               "args_sha256": hashlib.sha256(b'["ls"]').hexdigest()}
        if i == n + 1:
            rec = {"seq": i, "time": rec["time"], "actor": "nucleus-node", "pod": pod,
                   "prev": prev, "decision": "info", "op": "seal", "count": n}
        rec["sig"] = sk.sign(canon(rec).encode()).signature.hex()
        line = canon(rec).encode()
        out.append(line)
        prev = hashlib.sha256(line).hexdigest()
    return b"\n".join(out) + b"\n"


def test_python_log_verifies(tmp_path):
    sk, _, pub, _ = keypair(tmp_path)
    log = tmp_path / "py.jsonl"
    log.write_bytes(python_log(sk, "pod-py", 4))
    r = verify(log, "--public-key", pub)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("how,line", [("edit", 3), ("reorder", 2), ("drop_tail", None),
                                      ("truncate", 9), ("swap_key", 1)])
def test_tampering_detected(tmp_path, how, line):
    sk, skfile, pub, _ = keypair(tmp_path)
    log = write_with_library(tmp_path, skfile, n=8)
    lines = log.read_bytes().split(b"\n")[:-1]
    if how == "edit":
        lines[2] = lines[2].replace(b'"test-writer"', b'"test-writer2"')
    elif how == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
    elif how == "drop_tail":
        lines = lines[:-2]
    data = b"\n".join(lines) + b"\n"
    if how == "truncate":
        data = data[:-15]
    log.write_bytes(data)
    key = pub
    if how == "swap_key":
        key = bytes(nacl.signing.SigningKey.generate().verify_key).hex()
    r = verify(log, "--public-key", key, "--output", "json")
    assert r.returncode == 1, r.stdout
    out = json.loads(r.stdout)
    assert out["valid"] is False
    if line is not None:
        assert out["bad_line"] == line, out
    else:
        assert "not sealed" in out["error"] and out["bad_seq"] == 7


def test_unsealed_and_usage(tmp_path):
    sk, skfile, pub, _ = keypair(tmp_path)
    log = write_with_library(tmp_path, skfile, n=3, seal=False)
    assert verify(log, "--public-key", pub).returncode == 1
    assert verify(log, "--public-key", pub, "--allow-unsealed").returncode == 0
    assert verify(log).returncode == 2
    assert verify(log, "--public-key", "abc").returncode == 2
    assert verify(log, "--public-key", pub, "--output", "yaml").returncode == 2
    r = subprocess.run([str(binary("nucleus-audit")), "frobnicate"], capture_output=True, timeout=30)
    assert r.returncode == 2
    assert verify(tmp_path / "missing.jsonl", "--public-key", pub).returncode == 1


def test_torn_tail_reported_as_repaired(tmp_path):
    """A torn final line fails verification until the writer reopens the log; then the cut is
    a signed repair record and nucleus-audit says "repaired" with its own exit status (3)."""
    sk, skfile, pub, pubfile = keypair(tmp_path)
    log = write_with_library(tmp_path, skfile, n=3, seal=False)
    with open(log, "ab") as f:
        f.write(b'{"actor":"nucleus-no')
    r = verify(log, "--public-key", pub, "--allow-unsealed")
    assert r.returncode == 1 and "truncated record" in r.stderr
    # the library resumes the log (repairing it), appends 3 more and seals
    write_with_library(tmp_path, skfile, n=3, seal=True)
    r = verify(log, "--public-key", pub)
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout.startswith("repaired:") and "20 bytes" in r.stdout
    out = json.loads(verify(log, "--public-key", pub, "--output", "json").stdout)
    assert out["valid"] is True and out["repaired"] is True and out["cut_bytes"] == 20
    # bytes after a seal are never repaired: the writer refuses and the log stays invalid
    with open(log, "ab") as f:
        f.write(b'{"seq":99')
    w = subprocess.run([str(binary("test-audit-writer")), str(log), "pod-int", str(skfile), "1"],
                       capture_output=True, timeout=60)
    assert w.returncode != 0
    assert verify(log, "--public-key", pub).returncode == 1
