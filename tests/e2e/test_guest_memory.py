# SPDX-License-Identifier: Apache-2.0
"""Dense pods (issue 17): memory a workload in the guest frees goes back to the host. The pod's
QEMU carries a virtio-balloon device with free-page reporting and the initramfs its driver, so
after the guest frees a large tmpfs file QEMU's resident memory falls back by about as much.
One real microVM under QEMU (TCG here). Needs root (image build) and QEMU."""
import time

from helpers.images import Vm, guest_images  # noqa: F401 (fixture)

POLICY = {
    "name": "guest-memory-test",
    "capabilities": {
        "create_pr": "never", "edit_files": "always", "git_commit": "never", "git_push": "never",
        "glob_search": "always", "grep_search": "always", "read_files": "always", "run_bash": "always",
        "web_fetch": "never", "web_search": "never", "write_files": "always",
    },
    "paths": {"unrestricted": True, "allowed": [], "blocked": []},
    "commands": {"unrestricted": False, "allowed": ["dd", "rm", "cat"],
                 "blocked": [], "allowed_rules": [], "blocked_rules": []},
    "budget": {"max_usd_micros": 1000000, "max_input_tokens": 1000, "max_output_tokens": 1000},
    "time": {"max_duration_seconds": 600},
    "trifecta_constraint": False,
}

MIB = 1024 * 1024


def rss_bytes(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Rss in smaps_rollup")


def run(ch, *argv):
    r = ch.request("run", {"argv": list(argv)}, timeout=600)
    assert r.get("exit_code") == 0, (argv, r.get("exit_code"), r.get("stderr"))
    return r


def test_freed_guest_memory_returns_to_the_host(guest_images):  # noqa: F811
    with Vm(guest_images) as vm:
        ch = vm.connect(timeout=300)
        assert ch.read_frame(timeout=300).json()["type"] == "boot"
        ch.configure({"pod_id": "pod-guest-memory", "policy": POLICY}, timeout=120)
        assert "virtio_balloon" in run(ch, "cat", "/proc/modules")["stdout"]
        pid = vm.proc.pid
        # 64 MiB in the guest's /tmp (tmpfs: guest RAM, a quarter of it at most), then freed.
        run(ch, "dd", "if=/dev/zero", "of=/tmp/fill", "bs=1M", "count=64")
        filled = rss_bytes(pid)
        run(ch, "rm", "/tmp/fill")
        # The guest reports free 2 MiB blocks about two seconds after they gather; QEMU drops
        # them from its RSS. Poll with a generous bound (a loaded host slows the guest).
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            now = rss_bytes(pid)
            if filled - now >= 40 * MIB:
                break
            time.sleep(1)
        assert filled - now >= 40 * MIB, (
            f"QEMU RSS {filled // MIB} MiB with the file, still {now // MIB} MiB after rm")
