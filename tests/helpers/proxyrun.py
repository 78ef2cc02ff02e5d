# SPDX-License-Identifier: Apache-2.0
"""Start a real nucleus-tool-proxy over a unix socket for tests (root), with a temporary
workspace owned by a throwaway agent user, and mint approval tokens (docs/approvals.md)."""
import base64
import copy
import hashlib
import io
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time

from helpers.channel import Channel

AGENT_USER = "nucleus-test-agent"


def ensure_agent_user():
    """Create the throwaway agent user if missing; returns (uid, gid)."""
    try:
        pw = pwd.getpwnam(AGENT_USER)
    except KeyError:
        r = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", "--user-group", AGENT_USER],
            capture_output=True, text=True)
        if r.returncode not in (0, 9):  # 9: created concurrently
            raise RuntimeError(f"useradd failed: {r.stderr}")
        pw = pwd.getpwnam(AGENT_USER)
    return pw.pw_uid, pw.pw_gid


class ProxyProcess:
    """One proxy process: .ch (Channel), .ws (workspace path), .state, .proc."""

    def __init__(self, binary, uid, gid, extra_args=(), wrapper=()):
        # Not under pytest's 0700 tmp dirs: the agent user must be able to reach the workspace.
        self.base = tempfile.mkdtemp(prefix="nucleus-x-", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.ws = os.path.join(self.base, "ws")
        os.mkdir(self.ws, 0o755)
        os.chown(self.ws, uid, gid)
        self.state = os.path.join(self.base, "state")
        self.sock = os.path.join(self.base, "ch.sock")
        self.uid, self.gid = uid, gid
        self.log = open(os.path.join(self.base, "proxy.log"), "w+")
        self.proc = subprocess.Popen(
            [*wrapper, str(binary), "--unix", self.sock, "--workspace", self.ws, "--agent-user", AGENT_USER,
             "--state-dir", self.state, "--log-level", "debug", *extra_args],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env={"PATH": "/usr/bin:/bin",
                                                                              "NUCLEUS_SECRET_CANARY": "canary-7f3a"})
        self.ch = self.connect()

    def connect(self, timeout=15.0):
        return Channel.connect_unix(self.sock, timeout=timeout, retry_for=10.0)

    def alive(self):
        return self.proc.poll() is None

    def logs(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        try:
            self.ch.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- workspace helpers (as the agent would leave things) --
    def put(self, rel, data=b"", mode=0o644):
        path = os.path.join(self.ws, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        os.chmod(path, mode)
        d = os.path.dirname(path)
        while d.startswith(self.ws):
            os.chown(d, self.uid, self.gid)
            d = os.path.dirname(d)
        os.chown(path, self.uid, self.gid)
        return path


# -- approval tokens (format: src/lib/auth/approval.h) --

def _b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def args_sha256(args):
    return hashlib.sha256(json.dumps(args, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Approver:
    def __init__(self):
        import nacl.signing
        self.key = nacl.signing.SigningKey.generate()

    @property
    def public_hex(self):
        return bytes(self.key.verify_key).hex()

    def mint(self, pod, op, args=None, uses=1, ttl=300, exp=None, nonce=None):
        payload = {"exp": int(exp if exp is not None else time.time() + ttl),
                   "nonce": nonce or secrets.token_hex(16), "op": op, "pod": pod,
                   "uses": uses, "v": 1}
        if args is not None:
            payload["args_sha256"] = args if isinstance(args, str) else args_sha256(args)
        head = "nat1." + _b64url(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
        sig = self.key.sign(head.encode()).signature
        return head + "." + _b64url(sig)


# -- tar building --

def make_tar(entries):
    """entries: list of (name, kind, data_or_target[, mode]); kind in file/dir/symlink/hardlink/fifo/chr."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            name, kind, val = e[0], e[1], e[2]
            mode = e[3] if len(e) > 3 else None
            ti = tarfile.TarInfo(name)
            if kind == "file":
                data = val if isinstance(val, bytes) else val.encode()
                ti.size = len(data)
                ti.mode = mode or 0o644
                tf.addfile(ti, io.BytesIO(data))
                continue
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, mode or 0o755
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, val
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, val
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
            tf.addfile(ti)
    return bio.getvalue()


_BASE_POLICY = {}


def fix_issue_policy(proxy_binary, uid, gid, **changes):
    """The fix-issue profile as JSON (fetched once from a proxy), with changes applied:
    extra_allowed=[...] appends to commands.allowed; other keys replace top-level fields."""
    if "p" not in _BASE_POLICY:
        pp = ProxyProcess(proxy_binary, uid, gid)
        try:
            pp.ch.configure({"pod_id": "probe", "profile": "fix-issue"})
            _BASE_POLICY["p"] = pp.ch.request("status")["policy"]
        finally:
            pp.stop()
    pol = copy.deepcopy(_BASE_POLICY["p"])
    extra = changes.pop("extra_allowed", [])
    pol["commands"]["allowed"] = sorted(set(pol["commands"].get("allowed", [])) | set(extra))
    pol.update(changes)
    return pol


# -- pytest fixtures: `from helpers.proxyrun import agent_ids, proxy_bin, proxy, approver` --
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def agent_ids():
    from conftest import require_root
    require_root()
    return ensure_agent_user()


@pytest.fixture(scope="session")
def proxy_bin():
    from conftest import binary
    return binary("nucleus-tool-proxy")


@pytest.fixture
def proxy(proxy_bin, agent_ids):
    pp = ProxyProcess(proxy_bin, *agent_ids)
    yield pp
    alive = pp.alive()
    logs = pp.logs()
    pp.stop()
    assert alive, "the proxy died during the test:\n" + logs[-4000:]


@pytest.fixture
def approver():
    return Approver()


def configure(pp, policy=None, profile=None, approver=None, pod="pod-test", **extra):
    cfg = {"pod_id": pod}
    if policy is not None:
        cfg["policy"] = policy
    else:
        cfg["profile"] = profile or "fix-issue"
    if approver is not None:
        cfg["approver_public_key"] = approver.public_hex
    cfg.update(extra)
    return pp.ch.configure(cfg)


def err_kind(resp):
    assert "error" in resp, f"expected an error, got {resp}"
    return resp["kind"]


def last_audit(pp, op=None):
    pp.ch.drain_events(0.1)
    ev = pp.ch.audit_events(op)
    assert ev, "no audit event"
    return ev[-1]
