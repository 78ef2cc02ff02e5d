# SPDX-License-Identifier: Apache-2.0
"""Guest images and microVMs for tests.

`guest_images` (session fixture, root): builds the images once with `nucleus image build` into
a cache dir of this checkout (default /var/cache/nucleus-test/images-<hash of the checkout
path>, override NUCLEUS_TEST_IMAGES) and returns its path. Each checkout has its own dir, so
two checkouts with different guest binaries never swap each other's initramfs under a running
test; a new dir is seeded from the last one built (/var/cache/nucleus-test/images), and the
builder is content-addressed, so only artifacts whose inputs (kernel package, guest binaries,
package list) changed are rebuilt. A lock serialises concurrent builders.

`Vm`: boots one microVM with the argv from `nucleus image argv` (the same C builder the node
uses), a fresh sparse scratch disk, the channel socket and the console log in a private dir.
`disk_serials=False` drops the virtio-blk serials from that argv, the way Firecracker attaches
disks (no serial the guest can match), so the init must find them by ext4 volume label;
`extra_disks` attaches more raw images without a serial (ambiguity tests); `prepare_scratch`
(a callable taking the scratch path) may alter the fresh scratch disk before QEMU starts.
`stock_boot=True` boots the bzImage without the boot tuning (bench/boot's baseline);
`argv_extra` passes more options to `nucleus image argv` (bench/density: --tcg-tb-mib, --ksm);
`prefix` is put before QEMU's argv (a wrapper that execs it).
"""
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import binary

CACHE_ROOT = "/var/cache/nucleus-test"
SEED_CACHE = os.path.join(CACHE_ROOT, "images")
VM_MEMORY_MIB = 384


def images_cache_dir():
    if os.environ.get("NUCLEUS_TEST_IMAGES"):
        return os.environ["NUCLEUS_TEST_IMAGES"]
    import hashlib
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(CACHE_ROOT, "images-" + hashlib.sha256(root.encode()).hexdigest()[:12])


def _seed(images_dir):
    """A new per-checkout dir starts as a copy of the seed dir (reflinks where the filesystem
    has them), so the content-addressed builder reuses what did not change."""
    if os.path.exists(os.path.join(images_dir, "manifest.json")) or not os.path.isdir(SEED_CACHE) \
            or os.path.abspath(images_dir) == SEED_CACHE:
        return
    for name in os.listdir(SEED_CACHE):
        src = os.path.join(SEED_CACHE, name)
        if os.path.isfile(src) and not name.startswith("."):
            subprocess.run(["cp", "-a", "--reflink=auto", src, os.path.join(images_dir, name)], check=False)


def build_images(images_dir=None, extra_args=(), timeout=1800):
    """Build (or refresh) the images into images_dir; returns (dir, manifest dict)."""
    images_dir = images_dir or images_cache_dir()
    os.makedirs(images_dir, exist_ok=True)
    nucleus = binary("nucleus")
    init = binary("nucleus-guest-init")
    proxy = binary("nucleus-tool-proxy")
    with open(os.path.join(images_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _seed(images_dir)
        r = subprocess.run(
            [str(nucleus), "image", "build", "--images-dir", images_dir, "--init", str(init),
             "--proxy", str(proxy), "--output", "json", *extra_args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"nucleus image build failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return images_dir, json.loads(r.stdout)


# The ONE shared image for end-to-end tests of real projects (Python with pytest, C with make
# and gcc, Node with node --test): built through the product's own `nucleus image build --name`
# into the test image cache, beside the default image, and cached by the builder's input hash
# (suite + package list), so CI builds it once and every later session reuses it.
TOOLCHAIN_IMAGE = "nucleus-test-tools"
TOOLCHAIN_PACKAGES = "python3,python3-pytest,python3-pip,make,gcc,libc6-dev,nodejs,git"


def _seed_named(images_dir, name):
    """A named image dir of a new checkout starts as a copy of the seed's (rootfs included)."""
    src_dir, dst_dir = os.path.join(SEED_CACHE, name), os.path.join(images_dir, name)
    if os.path.exists(os.path.join(dst_dir, "manifest.json")) or not os.path.isdir(src_dir) \
            or os.path.abspath(images_dir) == SEED_CACHE:
        return
    os.makedirs(dst_dir, exist_ok=True)
    for f in os.listdir(src_dir):
        if os.path.isfile(os.path.join(src_dir, f)) and not f.startswith("."):
            subprocess.run(["cp", "-a", "--reflink=auto", os.path.join(src_dir, f), os.path.join(dst_dir, f)],
                           check=False)


@pytest.fixture(scope="session")
def toolchain_image(guest_images):
    """(images dir, image name) of the shared toolchain image, built on first use."""
    with open(os.path.join(guest_images, ".lock-" + TOOLCHAIN_IMAGE), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _seed_named(guest_images, TOOLCHAIN_IMAGE)
    build_images(guest_images, extra_args=("--name", TOOLCHAIN_IMAGE, "--packages", TOOLCHAIN_PACKAGES),
                 timeout=3600)
    return guest_images, TOOLCHAIN_IMAGE


@pytest.fixture(scope="session")
def guest_images():
    """Path of a built image dir (vmlinuz, vmlinux, initramfs.cpio.gz, nucleus.ext4, rootfs.ext4,
    manifest.json)."""
    if os.geteuid() != 0:
        pytest.skip("building guest images needs root (mmdebstrap)")
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 is not installed")
    d, _ = build_images()
    return d


def make_scratch(path, size_mib=256):
    """A sparse ext4 scratch disk (its root is root's; the init makes the agent's workspace in
    it), made by image_scratch_create() (the node's function) through `nucleus image scratch`."""
    subprocess.run([str(binary("nucleus")), "image", "scratch", path, str(size_mib)], check=True)


def strip_disk_serials(argv):
    """The same argv with ',serial=...' removed from every virtio-blk device; fails if there
    was none to remove (so a change in the argv builder cannot turn the label test into a
    serial test silently)."""
    out, stripped = [], 0
    for a in argv:
        if a.startswith("virtio-blk-device,"):
            parts = a.split(",")
            kept = [p for p in parts if not p.startswith("serial=")]
            stripped += len(parts) - len(kept)
            a = ",".join(kept)
        out.append(a)
    if stripped != 3:
        raise AssertionError(f"expected three disk serials (rootfs, scratch, system) to strip, found {stripped}: {argv}")
    return out


class Vm:
    """One microVM. Use as a context manager; .console() reads the serial log."""

    def __init__(self, images_dir, memory=VM_MEMORY_MIB, channel=True, disks=True,
                 initramfs=None, cmdline_extra=None, workdir=None, netns=None, tap=None,
                 mac=None, net=None, disk_serials=True, extra_disks=(), prepare_scratch=None,
                 stock_boot=False, argv_extra=(), prefix=()):
        self.dir = workdir or tempfile.mkdtemp(prefix="nucleus-vm-", dir="/tmp")
        os.chmod(self.dir, 0o700)
        self.console_path = os.path.join(self.dir, "console.log")
        self.sock = os.path.join(self.dir, "channel.sock") if channel else None
        self.scratch = os.path.join(self.dir, "scratch.ext4") if disks else None
        if self.scratch:
            make_scratch(self.scratch)
            if prepare_scratch:
                prepare_scratch(self.scratch)
        args = [str(binary("nucleus")), "image", "argv", "--images-dir", images_dir,
                "--console", self.console_path, "--memory", str(memory)]
        if disks:
            args += ["--scratch", self.scratch]
        else:
            args += ["--no-disks"]
        if self.sock:
            args += ["--channel", self.sock]
        if initramfs:
            args += ["--initramfs", initramfs]
        if cmdline_extra:
            args += ["--cmdline-extra", cmdline_extra]
        if tap:
            args += ["--tap", tap, "--mac", mac, "--net", net]
        if stock_boot:
            args += ["--stock-boot"]
        args += list(argv_extra)
        self.argv = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
        if not disk_serials:
            self.argv = strip_disk_serials(self.argv)
        for i, path in enumerate(extra_disks):
            self.argv += ["-drive", f"id=extra{i},file={path},format=raw,if=none,readonly=on",
                          "-device", f"virtio-blk-device,drive=extra{i}"]
        if netns:
            # QEMU opens the tap inside the pod's network namespace (as the node does).
            self.argv = ["ip", "netns", "exec", netns] + self.argv
        self.argv = list(prefix) + self.argv
        self.stderr = open(os.path.join(self.dir, "qemu.stderr"), "w+")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.stderr,
                                     stderr=self.stderr)

    def console(self):
        try:
            with open(self.console_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_console(self, text, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.console():
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"console never showed {text!r}; console:\n{self.console()[-3000:]}")

    def cpu_seconds(self):
        """CPU time QEMU has used so far (user + system): the emulation work, which a loaded
        host stretches far less than the wall clock."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_exit(self, timeout=60.0):
        """QEMU's exit code, or raises (the VM is killed) after timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"VM did not power off within {timeout}s; console:\n{self.console()[-3000:]}")

    def connect(self, timeout=60.0):
        from helpers.channel import Channel
        return Channel.connect_unix(self.sock, timeout=timeout, retry_for=20.0)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
