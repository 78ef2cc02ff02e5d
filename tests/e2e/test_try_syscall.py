# SPDX-License-Identifier: Apache-2.0
"""Sandbox regression probe (STYLE.md rule 42): tests/try-syscall/try-syscall attempts every
syscall the proxy's seccomp deny-list must refuse, with arguments that fail harmlessly on an
unfiltered kernel. Inside a real microVM (QEMU, TCG here), run through the proxy's `run` op as
the agent, every one must come back EPERM (clone3: ENOSYS, the filter's answer for it). Controls
on the host, outside any sandbox, show the same binary gets other answers there, as root and as
an unprivileged user, so the in-VM EPERMs come from the filter, not from missing privilege, and
the test can fail."""
import io
import os
import subprocess
import tarfile

import pytest

from conftest import binary, require_root
from helpers.images import Vm, guest_images  # noqa: F401 (fixture)

# name -> the filter's errno (src/guest/proxy/sandbox.c, docs/proxy.md "Commands").
DENIED = {name: "EPERM" for name in (
    "mount", "umount2", "pivot_root", "ptrace", "kexec_load", "bpf", "keyctl", "add_key",
    "io_uring_setup", "perf_event_open", "unshare", "clone_ns", "setns", "reboot", "swapon",
    "init_module", "finit_module", "delete_module", "ioctl_tiocsti")}
DENIED["clone3"] = "ENOSYS"
# Calls whose unfiltered answer does not depend on privilege (argument checks come before any
# capability check): an unprivileged process outside the sandbox never gets EPERM for them.
PRIVILEGE_INDEPENDENT = ("mount", "umount2", "ptrace", "keyctl", "add_key", "unshare", "clone_ns",
                         "clone3", "setns", "swapon", "ioctl_tiocsti")
CONTROL = {"close": "EBADF"}  # not on the deny-list: the filter must leave it alone

POLICY = {
    "name": "try-syscall",
    "capabilities": {
        "create_pr": "never", "edit_files": "always", "git_commit": "never", "git_push": "never",
        "glob_search": "always", "grep_search": "always", "read_files": "always",
        "run_bash": "always", "web_fetch": "never", "web_search": "never",
        "write_files": "always",
    },
    "paths": {"unrestricted": True, "allowed": [], "blocked": []},
    # Unrestricted: the probe is a workspace binary, which allowlists never admit. The seccomp
    # filter applies to every command whatever the policy says.
    "commands": {"unrestricted": True, "allowed": [], "blocked": [], "allowed_rules": [],
                 "blocked_rules": []},
    "budget": {"max_usd_micros": 1000000, "max_input_tokens": 1000, "max_output_tokens": 1000},
    "time": {"max_duration_seconds": 600},
    "trifecta_constraint": False,
}


def parse(out):
    """{"mount": "EPERM", ...} from try-syscall's "<name> <ERRNO> <n>" lines."""
    res = {}
    for line in out.splitlines():
        name, err, _num = line.split()
        assert name not in res, f"duplicate line for {name}: {out}"
        res[name] = err
    return res


@pytest.fixture(scope="module")
def probe():
    p = str(binary("try-syscall"))
    hdrs = subprocess.run(["readelf", "-lW", p], capture_output=True, text=True, check=True).stdout
    assert "INTERP" not in hdrs, "try-syscall must be static to run inside the guest rootfs"
    names = subprocess.run([p, "list"], capture_output=True, text=True, check=True).stdout.split()
    assert sorted(names) == sorted(list(DENIED) + list(CONTROL)), names
    return p


def host_seccomp_free():
    with open("/proc/self/status") as f:
        return any(line.split() == ["Seccomp:", "0"] for line in f)


def test_host_control_root(probe):
    """Outside the sandbox, as root: none of the calls is refused with the filter's answer."""
    require_root()
    if not host_seccomp_free():
        pytest.skip("the test runner itself is under a seccomp filter")
    res = parse(subprocess.run([probe], capture_output=True, text=True, check=True).stdout)
    refused = [n for n, want in DENIED.items() if res[n] == want]
    assert not refused, f"refused on the host as root (is the host filtered?): {refused}; all: {res}"
    assert res["close"] == "EBADF"


def test_host_control_unprivileged(probe):
    """Outside the sandbox, without privileges: the privilege-independent calls fail for their
    bad arguments, not with EPERM. So EPERM for them in the VM can only be the filter."""
    require_root()
    if not host_seccomp_free():
        pytest.skip("the test runner itself is under a seccomp filter")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "--inh-caps=-all", probe], capture_output=True, text=True, check=True)
    res = parse(r.stdout)
    for n in PRIVILEGE_INDEPENDENT:
        assert res[n] != DENIED[n], f"{n}: {res[n]} outside the sandbox as nobody; all: {res}"


def test_denied_syscalls_in_microvm(guest_images, probe):  # noqa: F811
    """In a microVM, through the proxy's run op as the agent (uid 1000): every deny-listed call
    gets the filter's errno, the control call does not."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = t.gettarinfo(probe, arcname="try-syscall")
        info.mode, info.uid, info.gid, info.uname, info.gname = 0o755, 1000, 1000, "", ""
        with open(probe, "rb") as f:
            t.addfile(info, f)
    with Vm(guest_images) as v:
        ch = v.connect()
        ch.read_frame(timeout=180)  # boot report
        ch.configure({"pod_id": "pod-try-syscall", "policy": POLICY}, timeout=60)
        r = ch.request_stream_in("import", {}, buf.getvalue(), timeout=120)
        assert "error" not in r, r

        r = ch.request("run", {"argv": ["sh", "-c", "id -u; grep ' /workspace ' /proc/mounts"]}, timeout=120)
        assert "error" not in r and r["exit_code"] == 0, r
        uid, mount = r["stdout"].split("\n", 1)
        assert uid == "1000"
        opts = mount.split()[3].split(",")
        # Executing from the workspace needs it without noexec (it is nosuid, nodev).
        assert "noexec" not in opts and "nosuid" in opts, mount

        r = ch.request("run", {"argv": ["/workspace/try-syscall"], "cwd": "/workspace"}, timeout=120)
        assert "error" not in r, r
        assert r["exit_code"] == 0, r
        res = parse(r["stdout"])
        wrong = {n: res.get(n) for n, want in {**DENIED, **CONTROL}.items() if res.get(n) != want}
        assert not wrong, f"not refused as expected inside the sandbox: {wrong}; all: {res}"
        ch.close()
        assert v.wait_exit(60) == 0
