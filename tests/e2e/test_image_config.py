# SPDX-License-Identifier: Apache-2.0
"""[images.NAME] tables in config.toml: `nucleus image build --all` and `--name NAME` take a named
image's package list from its table, `nucleus image ls` says where the list came from, and a bad
table is refused (file, line, table and key named) before anything is built. Uses the shared
toolchain image with the very same list, so the builder's cache makes the builds cost nothing."""
import json
import subprocess

from conftest import binary
from helpers.images import TOOLCHAIN_PACKAGES, guest_images, toolchain_image  # noqa: F401  (fixtures)


def _nucleus(images_dir, cfg_home, *args):
    argv = [str(binary("nucleus")), "image", *args, "--images-dir", images_dir]
    if args[0] == "build":
        argv += ["--init", str(binary("nucleus-guest-init")), "--proxy", str(binary("nucleus-tool-proxy"))]
    return subprocess.run(argv, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(cfg_home), "HOME": str(cfg_home)})


def _ls(images_dir, cfg_home):
    r = _nucleus(images_dir, cfg_home, "ls", "--output", "json")
    assert r.returncode == 0, r.stderr
    return {i["name"]: i for i in json.loads(r.stdout)["images"]}


def test_image_tables_in_config(toolchain_image, tmp_path):  # noqa: F811
    images_dir, name = toolchain_image
    cfg = tmp_path / "nucleus" / "config.toml"
    cfg.parent.mkdir()
    pk = ", ".join(f'"{p}"' for p in TOOLCHAIN_PACKAGES.split(","))

    # A bad table: refused with the file, line, table and key, and nothing is built.
    cfg.write_text(f"[images.{name}]\npackages = [{pk}]\nsuite = \"trixie\"\n")
    r = _nucleus(images_dir, tmp_path, "build", "--all")
    assert r.returncode == 1, r.stderr
    assert f"{cfg}:3:1: images.{name}.suite: unknown key 'suite'" in r.stderr, r.stderr
    assert "kernel:" not in r.stderr, r.stderr
    cfg.write_text(f"[images.{name}]\npackages = [{pk}, \"--allow-unauthenticated\"]\n")
    r = _nucleus(images_dir, tmp_path, "build", "--name", name)
    assert r.returncode == 1 and "is not a Debian package name" in r.stderr, r.stderr

    # --all builds every table (the same list as the toolchain image: cached, nothing rebuilt).
    cfg.write_text(f"# named images\n[images.{name}]\npackages = [{pk}]\n")
    r = _nucleus(images_dir, tmp_path, "build", "--all", "--output", "json")
    assert r.returncode == 0, r.stderr
    assert "rootfs: unchanged (cached)" in r.stderr, r.stderr
    built = json.loads(r.stdout)["images"]
    assert [b["image"] for b in built] == [name]
    assert built[0]["rootfs"]["packages_from"] == f"config.toml [images.{name}] ({cfg}:2)"
    img = _ls(images_dir, tmp_path)[name]
    assert img["packages_from"].startswith(f"config.toml [images.{name}]"), img
    assert set(TOOLCHAIN_PACKAGES.split(",")) <= set(img["packages"])

    # --name NAME with no --packages takes the table too; --packages still wins over it.
    r = _nucleus(images_dir, tmp_path, "build", "--name", name, "--output", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rootfs"]["packages_from"].startswith(f"config.toml [images.{name}]")
    r = _nucleus(images_dir, tmp_path, "build", "--name", name, "--packages", TOOLCHAIN_PACKAGES)
    assert r.returncode == 0, r.stderr
    assert _ls(images_dir, tmp_path)[name]["packages_from"] == "--packages"
    r = _nucleus(images_dir, tmp_path, "ls")
    assert f"{name}" in r.stdout and "(--packages)" in r.stdout, r.stdout
