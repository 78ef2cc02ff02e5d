# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of the guest image and init: real microVMs under QEMU (TCG here), the real
static init and proxy, talking over virtio-serial. Needs root (image build) and QEMU."""
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import binary
from helpers.channel import DATA, END
from helpers.images import Vm, build_images, guest_images  # noqa: F401 (fixture)

CAPS = {
    "create_pr": "never", "edit_files": "always", "git_commit": "always", "git_push": "never",
    "glob_search": "always", "grep_search": "always", "read_files": "always", "run_bash": "always",
    "web_fetch": "never", "web_search": "never", "write_files": "always",
}
POLICY = {
    "name": "guest-test",
    "capabilities": CAPS,
    "paths": {"unrestricted": True, "allowed": [], "blocked": []},
    "commands": {"unrestricted": False,
                 "allowed": ["id", "touch", "cat", "ls", "stat", "readlink", "sh", "mount", "uname", "git"],
                 "blocked": [], "allowed_rules": [], "blocked_rules": []},
    "budget": {"max_usd_micros": 1000000, "max_input_tokens": 1000, "max_output_tokens": 1000},
    "time": {"max_duration_seconds": 600},
    "trifecta_constraint": False,
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(ch, *argv):
    r = ch.request("run", {"argv": list(argv)}, timeout=120)
    assert "error" not in r, r
    return r


@pytest.fixture(scope="module")
def vm(guest_images):  # noqa: F811
    """One booted, configured VM shared by the read-only checks below."""
    v = Vm(guest_images)
    try:
        ch = v.connect()
        boot = ch.read_frame(timeout=120)
        v.boot_event = boot.json()
        v.configure_answer = ch.configure({"pod_id": "pod-guest-test", "policy": POLICY}, timeout=60)
        v.ch = ch
        yield v
    finally:
        v.close()


def test_images_are_cached(guest_images):  # noqa: F811
    """A second build reuses every artifact and gives a byte-identical manifest."""
    manifest_path = os.path.join(guest_images, "manifest.json")
    before = open(manifest_path).read()
    t = time.monotonic()
    _, m = build_images(guest_images)
    assert time.monotonic() - t < 120, "a cached build should not rebuild anything"
    assert open(manifest_path).read() == before
    for name in ("vmlinuz", "vmlinux", "initramfs.cpio.gz", "nucleus.ext4", "rootfs.ext4"):
        art = m["artifacts"][name]
        p = os.path.join(guest_images, name)
        assert os.path.getsize(p) == art["size"]
    # Hash check on the small artifacts (the rootfs is large; its size is checked above).
    for name in ("vmlinuz", "initramfs.cpio.gz"):
        assert sha256(os.path.join(guest_images, name)) == m["artifacts"][name]["sha256"]
    with open(os.path.join(guest_images, "vmlinux"), "rb") as f:
        assert f.read(4) == b"\x7fELF"
    assert m["kernel"]["release"].endswith("-cloud-amd64")
    assert "virtio_blk.ko" in m["kernel"]["modules"]
    assert m["init_sha256"] == sha256(str(binary("nucleus-guest-init")))
    assert m["proxy_sha256"] == sha256(str(binary("nucleus-tool-proxy")))


def test_vm_boots_and_proxy_answers(vm):
    ev = vm.boot_event
    assert ev["type"] == "boot"
    assert ev["kernel"].endswith("-cloud-amd64")
    assert ev["nic"] is False and ev["net"] is None
    assert 0 < ev["ready_ms"] < 120000
    targets = {m["target"]: m for m in ev["mounts"]}
    assert targets["/"]["options"].startswith("ro")
    assert targets["/workspace"]["options"].startswith("rw")
    # QEMU sets the virtio-blk serials, so both disks are found by serial (label path:
    # test_guest_disks.py).
    assert all(ev["disks"][r]["by"] == "serial" for r in ("rootfs", "scratch", "system")), ev
    assert len(vm.configure_answer["policy_sha256"]) == 64
    st = vm.ch.request("status", {})
    assert st["pod_id"] == "pod-guest-test"
    assert "error" not in st


def test_command_runs_as_agent(vm):
    r = run(vm.ch, "id", "-u")
    assert r["exit_code"] == 0 and r["stdout"].strip() == "1000"
    r = run(vm.ch, "id", "-g")
    assert r["stdout"].strip() == "1000"


def test_rootfs_is_read_only(vm):
    r = run(vm.ch, "touch", "/usr/nucleus-write-test")
    assert r["exit_code"] != 0
    assert "Read-only file system" in r["stderr"] or "Permission denied" in r["stderr"]
    r = run(vm.ch, "sh", "-c", "cat /proc/mounts")
    root = [line for line in r["stdout"].splitlines() if line.split()[1] == "/"]
    assert root and root[-1].split()[3].split(",")[0] == "ro", r["stdout"]
    nucleus = [line for line in r["stdout"].splitlines() if line.split()[1] == "/nucleus"]
    assert nucleus and nucleus[-1].split()[3].split(",")[0] == "ro"


def test_nucleus_is_the_shared_read_only_system_disk(vm, guest_images):  # noqa: F811
    """/nucleus (the proxy, its helpers) is the image's system disk, shared by every pod: found
    by its serial, mounted read-only, nosuid, nodev, and the agent's writes fail. The host file
    is root's and writable by no one else; the initramfs no longer carries the proxy."""
    dev = vm.boot_event["disks"]["system"]["device"]
    r = run(vm.ch, "sh", "-c", "grep ' /nucleus ' /proc/mounts; cat /sys/block/%s/ro" % dev)
    mount, ro = r["stdout"].splitlines()
    src, _, fstype, opts = mount.split()[:4]
    assert src == "/dev/" + dev and fstype == "ext4", mount
    assert {"ro", "nosuid", "nodev"} <= set(opts.split(",")), mount
    assert ro == "1", r  # QEMU attached it read-only: not even the guest's root could write it
    r = run(vm.ch, "sh", "-c", "echo x > /nucleus/bin/nucleus-tool-proxy")
    assert r["exit_code"] != 0
    assert "Read-only file system" in r["stderr"] or "Permission denied" in r["stderr"], r
    r = run(vm.ch, "touch", "/nucleus/new-file")
    assert r["exit_code"] != 0 and "Read-only file system" in r["stderr"], r
    r = run(vm.ch, "sh", "-c", "test -x /nucleus/bin/nucleus-tool-proxy && echo ok")
    assert r["stdout"].strip() == "ok", r
    st = os.stat(os.path.join(guest_images, "nucleus.ext4"))
    assert st.st_uid == 0 and st.st_mode & 0o022 == 0, oct(st.st_mode)


def test_workspace_is_writable(vm):
    r = run(vm.ch, "sh", "-c", "echo hello > /workspace/guest-file && cat /workspace/guest-file && stat -c %u /workspace")
    assert r["exit_code"] == 0, r
    assert r["stdout"].split() == ["hello", "1000"]
    r = run(vm.ch, "sh", "-c", "grep ' /workspace ' /proc/mounts")
    opts = r["stdout"].split()[3].split(",")
    assert "rw" in opts and "nosuid" in opts and "nodev" in opts
    r = run(vm.ch, "sh", "-c", "echo x > /tmp/t && cat /tmp/t && stat -c %a:%u /home/agent")
    assert r["stdout"].split() == ["x", "700:1000"], r
    r = run(vm.ch, "sh", "-c", "grep -E ' /(tmp|home/agent) ' /proc/mounts")
    assert [line.split()[2] for line in r["stdout"].splitlines()] == ["tmpfs", "tmpfs"], r


def test_write_larger_than_a_frame(vm):
    """A write whose content does not fit one channel frame arrives as data frames (what the
    node sends, docs/proxy.md "Size") over virtio-serial, and reads back whole."""
    data = os.urandom(3 * 1024 * 1024)
    sid = vm.ch.start("write", {"path": "big-write.bin", "content_bytes": len(data),
                                "content_sha256": hashlib.sha256(data).hexdigest()})
    for i in range(0, len(data), 1024 * 1024):
        vm.ch.send(DATA, sid, data[i:i + 1024 * 1024])
    vm.ch.send(END, sid)
    r = vm.ch.wait(sid, timeout=300)
    assert r.get("bytes") == len(data) and r["sha256"] == hashlib.sha256(data).hexdigest(), r
    r = run(vm.ch, "sh", "-c", "stat -c %s:%u /workspace/big-write.bin")
    assert r["stdout"].split() == [f"{len(data)}:1000"], r


def test_scratch_root_is_root_only(vm):
    """The scratch disk's filesystem root (mounted at /run/nucleus, the proxy's state: the
    baseline) is root's and out of the agent's reach; only its "workspace" directory is bound at
    /workspace. The fs.protected_* sysctls are on."""
    r = run(vm.ch, "sh", "-c", "grep -E ' (/workspace|/run/nucleus) ' /proc/mounts")
    devs = {line.split()[1]: line.split()[0] for line in r["stdout"].splitlines()}
    assert devs["/workspace"] == devs["/run/nucleus"], r
    r = run(vm.ch, "sh", "-c", "ls /run/nucleus; echo rc=$?; mv /workspace /tmp/w; echo mv=$?")
    assert "rc=2" in r["stdout"] or "rc=1" in r["stdout"], r
    assert "Permission denied" in r["stderr"], r
    assert "mv=0" not in r["stdout"], r
    r = run(vm.ch, "sh", "-c", "stat -c %u:%a /run/nucleus 2>&1; cat /proc/sys/fs/protected_symlinks "
                               "/proc/sys/fs/protected_hardlinks /proc/sys/fs/protected_fifos "
                               "/proc/sys/fs/protected_regular")
    assert r["stdout"].split()[-4:] == ["1", "1", "2", "2"], r


def test_no_nic_without_network(vm):
    r = run(vm.ch, "ls", "/sys/class/net")
    assert r["stdout"].split() == ["lo"]


def test_no_channel_device_for_agent(vm):
    # The port exists (sysfs) but no /dev node for it, and the agent holds no channel fd.
    r = run(vm.ch, "sh", "-c", "cat /sys/class/virtio-ports/*/name")
    assert "org.nucleus.channel.0" in r["stdout"]
    r = run(vm.ch, "sh", "-c", "ls -a /dev; for f in /dev/vport* /dev/hvc* /dev/virtio-ports/*; do "
                               "[ -e \"$f\" ] && (exec 3<>\"$f\") 2>/dev/null && echo OPENED $f; done; true")
    assert "vport" not in r["stdout"] and "OPENED" not in r["stdout"], r["stdout"]
    r = run(vm.ch, "sh", "-c", "for f in /proc/$$/fd/*; do readlink $f; done")
    assert "vport" not in r["stdout"], r["stdout"]
    assert "socket:" not in r["stdout"], r["stdout"]


def test_agent_environment_and_dns_file(vm):
    r = run(vm.ch, "readlink", "/etc/resolv.conf")
    assert r["stdout"].strip() == "../run/nucleus-net/resolv.conf"
    r = run(vm.ch, "sh", "-c", "cat /etc/machine-id; ls /etc/ssh 2>/dev/null | grep -c host_ || true")
    assert r["stdout"].split() == ["0"]


def test_clean_power_off_when_channel_closes(guest_images):  # noqa: F811
    with Vm(guest_images) as v:
        ch = v.connect()
        ch.read_frame(timeout=120)
        ch.configure({"pod_id": "pod-poweroff", "policy": POLICY}, timeout=60)
        ch.close()  # the node going away is the shutdown request for an inherited-fd proxy
        assert v.wait_exit(60) == 0
        con = v.console()
        assert "proxy exited with status 0; powering off" in con
        assert "Power down" in con


def test_missing_channel_powers_off(guest_images):  # noqa: F811
    with Vm(guest_images, channel=False) as v:
        rc = v.wait_exit(90)
        con = v.console()
        assert rc == 0
        assert "FATAL: channel port with name 'org.nucleus.channel.0' did not appear" in con, con[-2000:]
        assert "powering off" in con


def test_missing_module_powers_off(guest_images, tmp_path):  # noqa: F811
    """An initramfs whose module list names a module it does not carry stops with a reason."""
    src = os.path.join(guest_images, "initramfs.cpio.gz")
    root = tmp_path / "root"
    root.mkdir()
    with gzip.open(src, "rb") as f:
        subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=f.read(), cwd=root, check=True)
    os.unlink(root / "nucleus" / "modules" / "virtio_blk.ko")
    names = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
    data = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=names, cwd=root,
                          capture_output=True, check=True).stdout
    broken = tmp_path / "broken.cpio.gz"
    broken.write_bytes(gzip.compress(data))
    with Vm(guest_images, initramfs=str(broken)) as v:
        rc = v.wait_exit(90)
        con = v.console()
        assert rc == 0
        assert "FATAL: module virtio_blk: cannot open /nucleus/modules/virtio_blk.ko" in con, con[-2000:]


def test_bad_cmdline_powers_off(guest_images):  # noqa: F811
    with Vm(guest_images, cmdline_extra="nucleus.net=10.0.0.2/99,x,y") as v:
        assert v.wait_exit(90) == 0
        assert "FATAL: bad kernel command line: nucleus.net=" in v.console()


def test_accel_probe_falls_back_to_tcg(guest_images):  # noqa: F811
    t = time.monotonic()
    r = subprocess.run([str(binary("nucleus")), "image", "probe", "--images-dir", guest_images],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert time.monotonic() - t < 30
    if not os.path.exists("/dev/kvm"):
        assert j["accel"] == "tcg" and "/dev/kvm" in j["reason"]
    else:
        assert j["accel"] in ("tcg", "kvm") and j["reason"]


def test_probe_boot_reaches_init(guest_images):  # noqa: F811
    """The bare boot bench/boot measures: kernel + initramfs to the PID 1 marker, then power-off."""
    with Vm(guest_images, channel=False, disks=False, cmdline_extra="nucleus.probe=1") as v:
        v.wait_console("nucleus-guest-init: started", timeout=60)
        assert v.wait_exit(30) == 0
        assert "nucleus-guest-init: probe ok" in v.console()


def test_init_reaps_orphans(vm):
    """A command that leaves a background child behind: the proxy kills the command's session
    when it ends, the orphan is re-parented to PID 1, and PID 1 must reap it (no zombies)."""
    r = run(vm.ch, "sh", "-c", "sleep 30 & sleep 30 & echo started")
    assert r["stdout"].strip() == "started"
    deadline = time.monotonic() + 20
    while True:
        r = run(vm.ch, "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null")
        states = [line.rsplit(")", 1)[1].split()[0] for line in r["stdout"].splitlines() if ")" in line]
        names = [line.split("(", 1)[1].split(")", 1)[0] for line in r["stdout"].splitlines() if "(" in line]
        if "Z" not in states and "sleep" not in names:
            break
        assert time.monotonic() < deadline, f"zombies or leftovers: {list(zip(names, states))}"
        time.sleep(0.5)

