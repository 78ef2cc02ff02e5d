# SPDX-License-Identifier: Apache-2.0
"""An OCI image archive as a pod's rootfs, end to end: a `docker save`-format archive made here
from files (manifest.json, a config named by its digest, two layer tars; no Docker needed) with
only a static busybox and a script, no git, no libc. `nucleus image import` turns it into a
named image (the proxy's git comes from the initramfs), `nucleus image ls` lists it, and one
microVM boots from it: the workspace upload (a git baseline), a command that exists only in
the archive, and the export all work. The second layer's whiteout, setuid bit and device node
do not survive the import."""
import hashlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import tarfile

import pytest

from conftest import binary, require_root
from helpers.images import guest_images  # noqa: F401  (session fixture)
from helpers.nodeproc import NodeProc
from test_run_vm import cli_env, pods_gone

IMAGE = "nucleus-test-oci-hello"
HELLO = "#!/bin/sh\necho \"hello from the archive ($(cat /etc/layer))\"\n"


def _layer(entries):
    """An uncompressed layer tar from (name, kind, data, mode) tuples."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.mtime = mode, 1700000000
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "link":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                t.addfile(ti)
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def make_docker_save(path):
    busybox = pathlib.Path("/bin/busybox").read_bytes()
    l1 = _layer([
        ("bin", "dir", None, 0o755),
        ("bin/busybox", "file", busybox, 0o755),
        ("bin/sh", "link", "busybox", 0o777),
        ("bin/cat", "link", "busybox", 0o777),
        ("bin/ls", "link", "busybox", 0o777),
        ("etc", "dir", None, 0o755),
        ("etc/layer", "file", b"one", 0o644),
        ("etc/removed", "file", b"gone in layer two", 0o644),
    ])
    l2 = _layer([
        ("usr/local/bin/hello", "file", HELLO.encode(), 0o755),
        ("usr/local/bin/suid", "file", b"#!/bin/sh\n", 0o4755),
        ("etc/layer", "file", b"two", 0o644),
        ("etc/.wh.removed", "file", b"", 0o644),
        ("etc/console", "chr", None, 0o600),
    ])
    diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in (l1, l2)]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/usr/local/bin/hello"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cname = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cname, "RepoTags": ["hello:test"],
                            "Layers": ["l1/layer.tar", "l2/layer.tar"]}]).encode()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for name, data in (("l1/layer.tar", l1), ("l2/layer.tar", l2), (cname, config),
                           ("manifest.json", manifest)):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            t.addfile(ti, io.BytesIO(data))


def test_docker_save_archive_boots_a_pod(guest_images, tmp_path):  # noqa: F811
    require_root()
    archive = tmp_path / "hello.tar"
    make_docker_save(archive)
    # The import needs a name (it never replaces the default image).
    r = subprocess.run([str(binary("nucleus")), "image", "import", str(archive), "--images-dir", guest_images],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "pass --name NAME" in r.stderr, r.stderr
    r = subprocess.run([str(binary("nucleus")), "image", "import", "--name", IMAGE, str(archive), "--images-dir",
                        guest_images, "--init", str(binary("nucleus-guest-init")), "--proxy",
                        str(binary("nucleus-tool-proxy")), "--output", "json"],
                       capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads(r.stdout)
    assert m["rootfs"]["source"] == "oci", m["rootfs"]
    assert m["rootfs"]["oci"]["format"] == "docker-save"
    assert m["rootfs"]["oci"]["setid_stripped"] == 1 and m["rootfs"]["oci"]["dropped_entries"] == 1

    r = subprocess.run([str(binary("nucleus")), "image", "ls", "--images-dir", guest_images, "--output", "json"],
                       capture_output=True, text=True, check=True)
    images = {i["name"]: i for i in json.loads(r.stdout)["images"]}
    assert images[IMAGE]["source"] == "oci" and images[IMAGE]["oci"]["tags"] == ["hello:test"], images[IMAGE]
    r = subprocess.run([str(binary("nucleus")), "image", "ls", "--images-dir", guest_images],
                       capture_output=True, text=True, check=True)
    assert "docker-save image hello:test (2 layers)" in r.stdout, r.stdout

    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "notes.txt").write_text("a workspace for an imported image\n")
    plan = {"steps": [
        {"tool": "run", "args": {"argv": ["hello"]}},
        {"tool": "run", "args": {"argv": ["ls", "-l", "/usr/local/bin/suid", "/etc"]}},
        {"tool": "write", "args": {"path": "out.txt", "content": "written in the pod\n"}},
    ]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    with NodeProc(tmp_path / "node", driver="qemu", images_dir=guest_images, accel="tcg") as node:
        argv = [str(binary("nucleus")), "run", "Say hello", "-d", str(proj), "--profile", "fix-issue",
                "--image", IMAGE, "--allow-command", "hello", "--allow-command", "ls",
                "--script", str(tmp_path / "plan.json"), "--output", "json"]
        r = subprocess.run(argv, env=cli_env(node, tmp_path), capture_output=True, text=True, timeout=1200,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr[-3000:]
        doc = json.loads(r.stdout)
        calls = doc["calls"]
        assert [c["outcome"] for c in calls] == ["ok"] * 3, calls
        # The command exists only in the archive; the second layer's file replaced the first's.
        assert "hello from the archive (two)" in calls[0].get("stdout_head", ""), calls[0]
        listing = calls[1].get("stdout_head", "")
        assert "removed" not in listing and "console" not in listing, listing   # whiteout, device
        suid = [ln for ln in listing.splitlines() if ln.endswith("/usr/local/bin/suid")]
        assert suid and suid[0].startswith("-rwxr-xr-x"), listing                 # setuid stripped
        # The export (git from the initramfs) sees the file the pod wrote.
        assert doc["patch"]["changed"] == ["out.txt"], doc["patch"]
        assert pods_gone(node)
    shutil.rmtree(os.path.join(guest_images, IMAGE), ignore_errors=True)
