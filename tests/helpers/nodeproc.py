# SPDX-License-Identifier: Apache-2.0
"""Fixture helper: run a real nucleus-node on free ports with a temp state dir and secrets.

    with NodeProc(tmp_path, driver="local") as node:
        c = node.client()
        ...
    # leaving the block stops the node with SIGTERM and asserts nothing was left behind

NodeProc writes fresh secrets (node.key, audit.key/.pub, approver.key/.pub; 0600 files in a
0700 dir), starts `nucleus-node` with flags only (no config file), waits for /v1/health, and on
stop checks: exit status 0, no process still mentions the state dir, and every pod dir holds
only audit.jsonl, console.log and state.json. Helpers mint approval tokens (python3-nacl),
scrape metrics and verify audit logs with `nucleus-audit`.
"""
import base64
import hashlib
import json
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import time

from conftest import binary

from .nodeclient import NodeClient

KEPT_FILES = {"audit.jsonl", "console.log", "node.log", "state.json"}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_secret(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class NodeProc:
    def __init__(self, tmp_path, driver="local", images_dir=None, max_pods=8, accel="tcg", extra_args=(),
                 proxy_path=None):
        import nacl.signing  # python3-nacl

        self.base = pathlib.Path(tmp_path)
        # The state dir lives outside pytest's 0700 tmp tree: a VMM running as the dedicated
        # nucleus-vmm user must be able to traverse down to its pod's dir.
        import tempfile
        self.state_root = pathlib.Path(tempfile.mkdtemp(prefix="nucleus-node-test-", dir="/var/tmp"))
        os.chmod(self.state_root, 0o711)
        self.state_dir = self.state_root / "state"
        self.secrets = self.base / "secrets"
        self.secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.node_key = os.urandom(32)
        _write_secret(self.secrets / "node.key", self.node_key.hex())
        self.audit_sk = nacl.signing.SigningKey.generate()
        _write_secret(self.secrets / "audit.key", (bytes(self.audit_sk) + bytes(self.audit_sk.verify_key)).hex())
        _write_secret(self.secrets / "audit.pub", bytes(self.audit_sk.verify_key).hex())
        self.approver_sk = nacl.signing.SigningKey.generate()
        _write_secret(self.secrets / "approver.key",
                      (bytes(self.approver_sk) + bytes(self.approver_sk.verify_key)).hex())
        _write_secret(self.secrets / "approver.pub", bytes(self.approver_sk.verify_key).hex())
        self.driver = driver
        self.images_dir = images_dir
        self.max_pods = max_pods
        self.accel = accel
        self.extra_args = list(extra_args)
        self.proxy_path = proxy_path
        self.port = None
        self.metrics_port = None
        self.proc = None
        self.log_path = self.base / "node.log"

    # ---- process ---------------------------------------------------------------------------
    def argv(self):
        a = [str(binary("nucleus-node")),
             "--listen", f"127.0.0.1:{self.port}",
             "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
             "--state-dir", str(self.state_dir),
             "--driver", self.driver,
             "--accel", self.accel,
             "--max-pods", str(self.max_pods),
             "--node-key", str(self.secrets / "node.key"),
             "--audit-key", str(self.secrets / "audit.key"),
             "--approver-pub", str(self.secrets / "approver.pub"),
             "--proxy-path", str(self.proxy_path or binary("nucleus-tool-proxy")),
             "--log-level", "debug"]
        if self.images_dir:
            a += ["--images-dir", str(self.images_dir)]
        return a + self.extra_args

    def start(self, timeout=30):
        if self.port is None:
            self.port = free_port()
            self.metrics_port = free_port()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        log.close()
        deadline = time.monotonic() + timeout
        c = self.client()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nucleus-node exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if c.health().status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"nucleus-node did not answer /v1/health in {timeout}s:\n{self.log()}")

    def stop(self, sig=signal.SIGTERM, timeout=60, check_clean=True):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"nucleus-node did not stop within {timeout}s:\n{self.log()}")
        self.proc = None
        if check_clean:
            assert rc == 0, f"nucleus-node exited {rc}:\n{self.log()}"
            self.assert_clean()
        return rc

    def remove_state(self):
        """Delete the state dir (after the last stop; tests may still read it before)."""
        import shutil
        shutil.rmtree(self.state_root, ignore_errors=True)

    def kill9(self):
        """SIGKILL the node itself (its VMMs stay behind: a restart must clean them)."""
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self, timeout=30):
        if self.proc is not None:
            self.stop()
        return self.start(timeout)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is not None:
            self.stop(check_clean=exc[0] is None)
        if exc[0] is None and not os.environ.get("NUCLEUS_KEEP_STATE"):
            self.remove_state()

    # ---- checks ----------------------------------------------------------------------------
    def processes_mentioning_state(self):
        """PIDs of live processes whose command line names this node's state dir (VMMs, bwrap)."""
        needle = str(self.state_dir).encode()
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if needle in cmd and (self.proc is None or int(d) != self.proc.pid):
                out.append(int(d))
        return out

    def leftovers(self):
        """Files in pod dirs that should be gone once pods ended."""
        bad = []
        pods = self.state_dir / "pods"
        if pods.is_dir():
            for p in pods.iterdir():
                for f in p.iterdir():
                    if f.name not in KEPT_FILES:
                        bad.append(str(f))
        return bad

    def assert_clean(self, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            procs = self.processes_mentioning_state()
            files = self.leftovers()
            if not procs and not files:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"left behind: processes {procs}, files {files}\n{self.log()}")
            time.sleep(0.1)

    # ---- helpers ---------------------------------------------------------------------------
    def client(self, actor="test"):
        return NodeClient(f"http://127.0.0.1:{self.port}", key=self.node_key, actor=actor)

    def metrics(self):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def metric(self, name, **labels):
        """Value of one sample (0.0 when absent)."""
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            key, _, val = line.rpartition(" ")
            if key == want:
                return float(val)
        return 0.0

    def audit_path(self, pod):
        return self.state_dir / "pods" / pod / "audit.jsonl"

    def verify_audit(self, pod, allow_unsealed=False):
        cmd = [str(binary("nucleus-audit")), "verify", str(self.audit_path(pod)),
               "--public-key-file", str(self.secrets / "audit.pub"), "--output", "json"]
        if allow_unsealed:
            cmd.append("--allow-unsealed")
        return subprocess.run(cmd, capture_output=True, text=True)

    def mint_approval(self, pod, op, args=None, uses=1, ttl=300, exp=None, key=None):
        """An approval token in the docs/approvals.md text form, signed by the approver key
        (or `key`, a nacl SigningKey)."""
        payload = {"exp": exp if exp is not None else int(time.time()) + ttl, "nonce": secrets.token_hex(16),
                   "op": op, "pod": pod, "uses": uses, "v": 1}
        if args is not None:
            canon = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            payload["args_sha256"] = hashlib.sha256(canon.encode()).hexdigest()
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        signed = ("nat1." + _b64url(body)).encode()
        sig = (key or self.approver_sk).sign(signed).signature
        return signed.decode() + "." + _b64url(sig)


def spec_yaml(driver="local", policy="fix-issue", timeout=300, extra=""):
    return (f"apiVersion: nucleus/v1\nkind: Pod\nspec:\n  policy: {policy}\n"
            f"  timeout_seconds: {timeout}\n  driver: {driver}\n{extra}")


def tar_bytes(files):
    """A tar archive (bytes) from {name: bytes|str}."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in files.items():
            if isinstance(data, str):
                data = data.encode()
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()
