# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of how the guest init finds its disks (src/guest/init/init-disk.c): by
virtio-blk serial when the VMM sets one (QEMU), else by ext4 volume label (Firecracker, whose
GET_ID answer is derived from the backing file, never our drive id). Real microVMs under QEMU
with the serials stripped from the argv; needs root (image build) and QEMU."""
import os
import subprocess

from helpers.images import Vm, guest_images, make_scratch  # noqa: F401 (fixture)

POLICY = {
    "name": "guest-disks",
    "capabilities": {
        "create_pr": "never", "edit_files": "always", "git_commit": "never", "git_push": "never",
        "glob_search": "always", "grep_search": "always", "read_files": "always",
        "run_bash": "always", "web_fetch": "never", "web_search": "never",
        "write_files": "always",
    },
    "paths": {"unrestricted": True, "allowed": [], "blocked": []},
    "commands": {"unrestricted": False, "allowed": ["sh", "cat", "stat"], "blocked": [],
                 "allowed_rules": [], "blocked_rules": []},
    "budget": {"max_usd_micros": 1000000, "max_input_tokens": 1000, "max_output_tokens": 1000},
    "time": {"max_duration_seconds": 600},
    "trifecta_constraint": False,
}


def run(ch, *argv):
    r = ch.request("run", {"argv": list(argv)}, timeout=120)
    assert "error" not in r, r
    return r


def test_disks_found_by_label_without_serials(guest_images):  # noqa: F811
    """No serial on any disk (the Firecracker case): the init picks all three by ext4 label,
    says so on the console and in the boot report, and the VM works as usual."""
    with Vm(guest_images, disk_serials=False) as v:
        blk = [a for a in v.argv if a.startswith("virtio-blk-device,")]
        assert len(blk) == 3 and not any("serial=" in a for a in blk), v.argv
        ch = v.connect()
        boot = ch.read_frame(timeout=180).json()
        assert boot["type"] == "boot"
        assert boot["disks"]["rootfs"]["by"] == "label", boot
        assert boot["disks"]["scratch"]["by"] == "label", boot
        assert boot["disks"]["system"]["by"] == "label", boot
        assert len({boot["disks"][r]["device"] for r in ("rootfs", "scratch", "system")}) == 3, boot
        con = v.console()
        assert f"rootfs disk /dev/{boot['disks']['rootfs']['device']} (by label)" in con, con[-2000:]
        assert f"scratch disk /dev/{boot['disks']['scratch']['device']} (by label)" in con

        ch.configure({"pod_id": "pod-guest-disks", "policy": POLICY}, timeout=60)
        # The guest really sees no serial (else this test would prove nothing).
        r = run(ch, "sh", "-c", "for d in /sys/block/vd*; do printf '%s=[%s]\\n' ${d##*/} \"$(cat $d/serial)\"; done")
        lines = r["stdout"].split()
        assert len(lines) == 3 and all(line.endswith("=[]") for line in lines), r
        # The right disk went to the right place: rootfs read-only at /, scratch rw at
        # /workspace, the system disk read-only at /nucleus.
        r = run(ch, "sh", "-c", "grep -E '^/dev/vd. (/|/workspace|/nucleus) ' /proc/mounts")
        mounts = {line.split()[1]: line.split() for line in r["stdout"].splitlines()}
        assert mounts["/"][0] == "/dev/" + boot["disks"]["rootfs"]["device"], r
        assert mounts["/"][3].split(",")[0] == "ro"
        assert mounts["/workspace"][0] == "/dev/" + boot["disks"]["scratch"]["device"], r
        assert mounts["/workspace"][3].split(",")[0] == "rw"
        assert mounts["/nucleus"][0] == "/dev/" + boot["disks"]["system"]["device"], r
        assert mounts["/nucleus"][3].split(",")[0] == "ro"
        r = run(ch, "sh", "-c", "echo ok > /workspace/f && cat /workspace/f && stat -c %u /workspace")
        assert r["stdout"].split() == ["ok", "1000"], r
        ch.close()
        assert v.wait_exit(60) == 0


def test_two_scratch_labels_refused(guest_images, tmp_path):  # noqa: F811
    """Two serial-less disks labelled nucleus-scratch: the init refuses to guess and powers off
    with one FATAL line naming the ambiguity."""
    second = str(tmp_path / "second-scratch.ext4")
    make_scratch(second, size_mib=32)
    with Vm(guest_images, disk_serials=False, extra_disks=[second]) as v:
        assert v.wait_exit(180) == 0
        con = v.console()
        assert "FATAL: scratch disk is ambiguous: two or more disks carry the volume label" in con, con[-2000:]
        assert "powering off" in con
        assert "nucleus-guest-init: ready" not in con


def test_unlabelled_scratch_without_serial_powers_off(guest_images):  # noqa: F811
    """No serial and no label on the scratch disk: nothing identifies it, so the init gives up
    after its bounded wait with one FATAL line listing what it saw, and powers off."""
    def unlabel(path):
        subprocess.run(["/sbin/e2label", path, ""], check=True)

    with Vm(guest_images, disk_serials=False, prepare_scratch=unlabel) as v:
        assert v.wait_exit(180) == 0
        con = v.console()
        line = [ln for ln in con.splitlines() if "FATAL:" in ln]
        assert len(line) == 1, con[-2000:]
        assert "rootfs/scratch/system disks (serial nucleus-rootfs/nucleus-scratch/nucleus-system, or " \
               "ext4 label nucleus-root/nucleus-scratch/nucleus-system) not found within 15s" in line[0], line
        assert "(serial='',label='nucleus-root')" in line[0] and "(serial='',label='')" in line[0], line
        assert "nucleus-guest-init: ready" not in con


def test_serial_settles_a_duplicate_label(guest_images, tmp_path):  # noqa: F811
    """With serials (QEMU), an extra serial-less disk that carries the scratch label changes
    nothing: the serial names the scratch disk."""
    extra = str(tmp_path / "extra.ext4")
    make_scratch(extra, size_mib=32)
    with Vm(guest_images, extra_disks=[extra]) as v:
        ch = v.connect()
        boot = ch.read_frame(timeout=180).json()
        assert boot["disks"]["rootfs"]["by"] == "serial", boot
        assert boot["disks"]["scratch"]["by"] == "serial", boot
        ch.close()
        assert v.wait_exit(60) == 0
        assert os.path.exists(extra)
