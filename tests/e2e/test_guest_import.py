# SPDX-License-Identifier: Apache-2.0
"""Guest e2e, second part: a rootfs imported from an arbitrary tar boots and runs commands, and
a VM given nucleus.net= and a NIC configures it (inside a private network namespace; no
traffic leaves it)."""
import io
import json
import os
import shutil
import subprocess
import tarfile
import uuid

import pytest

from helpers.images import Vm, build_images, guest_images  # noqa: F401 (fixture)
from test_guest import POLICY, run


def is_static_elf(path):
    """True for a 64-bit ELF without a PT_INTERP program header."""
    with open(path, "rb") as f:
        eh = f.read(64)
        if eh[:4] != b"\x7fELF" or eh[4] != 2:
            return False
        phoff = int.from_bytes(eh[32:40], "little")
        phentsize = int.from_bytes(eh[54:56], "little")
        phnum = int.from_bytes(eh[56:58], "little")
        f.seek(phoff)
        for _ in range(phnum):
            ph = f.read(phentsize)
            if int.from_bytes(ph[0:4], "little") == 3:  # PT_INTERP
                return False
    return True


def make_busybox_tar(path):
    """A minimal rootfs: static busybox with applet links, root in passwd. No agent user: the
    builder must add it."""
    bb = shutil.which("busybox")
    if not bb or not is_static_elf(os.path.realpath(bb)):
        pytest.skip("needs a static busybox (Debian busybox-static)")
    with tarfile.open(path, "w:gz") as t:
        def add_dir(name, mode=0o755):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode = tarfile.DIRTYPE, mode
            t.addfile(ti)

        def add_file(name, data, mode=0o644):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), mode
            t.addfile(ti, io.BytesIO(data))

        for d in ("bin", "etc", "usr", "usr/bin", "var"):
            add_dir(d)
        add_file("bin/busybox", open(bb, "rb").read(), 0o755)
        for applet in ("sh", "id", "ls", "cat", "touch", "stat", "readlink", "mount", "uname"):
            ti = tarfile.TarInfo("bin/" + applet)
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(ti)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        add_file("etc/group", b"root:x:0:\n")
        add_file("etc/resolv.conf", b"nameserver 192.0.2.1\n")  # replaced by the builder
        # Hostile entries the importer must not follow out of the tree.
        ti = tarfile.TarInfo("../escape")
        ti.size = 1
        t.addfile(ti, io.BytesIO(b"x"))


@pytest.fixture(scope="module")
def imported_images(guest_images, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("imported")
    tar = d / "rootfs.tar.gz"
    make_busybox_tar(str(tar))
    m = json.load(open(os.path.join(guest_images, "manifest.json")))
    deb = os.path.join(guest_images, "cache", "kernel", m["kernel"]["package"])
    out = d / "images"
    _, manifest = build_images(str(out), ["--rootfs-tar", str(tar), "--kernel-deb", deb,
                                          "--kernel-sha256", m["kernel"]["package_sha256"]])
    assert manifest["rootfs"]["source"] == "tar"
    assert not os.path.exists(d / "escape") and not os.path.exists(out / "escape")
    return str(out)


def test_bad_kernel_sha_is_refused(guest_images, tmp_path):  # noqa: F811
    m = json.load(open(os.path.join(guest_images, "manifest.json")))
    deb = os.path.join(guest_images, "cache", "kernel", m["kernel"]["package"])
    with pytest.raises(RuntimeError, match="expected"):
        build_images(str(tmp_path / "x"), ["--kernel-deb", deb, "--kernel-sha256", "0" * 64])


def test_imported_rootfs_boots(imported_images):
    with Vm(imported_images) as v:
        ch = v.connect()
        assert ch.read_frame(timeout=120).json()["type"] == "boot"
        ch.configure({"pod_id": "pod-import", "policy": POLICY}, timeout=60)
        r = run(ch, "id", "-u")
        assert r["stdout"].strip() == "1000"
        r = run(ch, "readlink", "/etc/resolv.conf")
        assert r["stdout"].strip() == "../run/nucleus-net/resolv.conf"
        r = run(ch, "touch", "/bin/x")
        assert r["exit_code"] != 0
        ch.close()
        assert v.wait_exit(60) == 0


@pytest.fixture
def netns():
    if shutil.which("ip") is None:
        pytest.skip("iproute2 missing")
    name = "nucg-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "tuntap", "add", "dev", "tapg0", "mode", "tap"], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "tapg0", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", "10.253.7.1/30", "dev", "tapg0"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name])


def test_network_from_cmdline(guest_images, netns):  # noqa: F811
    with Vm(guest_images, netns=netns, tap="tapg0", mac="06:00:0a:fd:07:02",
            net="10.253.7.2/30,10.253.7.1,10.253.7.1") as v:
        ch = v.connect()
        boot = ch.read_frame(timeout=120).json()
        assert boot["nic"] is True and boot["net"] == "10.253.7.2/30"
        ch.configure({"pod_id": "pod-net", "policy": POLICY}, timeout=60)
        r = run(ch, "cat", "/etc/resolv.conf")
        assert r["stdout"] == "nameserver 10.253.7.1\n"
        r = run(ch, "ls", "/sys/class/net")
        assert sorted(r["stdout"].split()) == ["eth0", "lo"]
        r = run(ch, "cat", "/proc/net/route")
        # Default route (destination 0) via 10.253.7.1 (little-endian hex 0107FD0A).
        assert any(line.split()[1] == "00000000" and line.split()[2] == "0107FD0A"
                   for line in r["stdout"].splitlines()[1:]), r["stdout"]
        r = run(ch, "cat", "/sys/class/net/eth0/address")
        assert r["stdout"].strip() == "06:00:0a:fd:07:02"
        ch.close()
        assert v.wait_exit(60) == 0


def test_network_requested_without_nic_is_loopback_only(guest_images):  # noqa: F811
    with Vm(guest_images, cmdline_extra="nucleus.net=10.253.8.2/30,10.253.8.1,10.253.8.1") as v:
        ch = v.connect()
        boot = ch.read_frame(timeout=120).json()
        assert boot["nic"] is False and boot["net"] is None
        ch.close()
        assert v.wait_exit(60) == 0
