# SPDX-License-Identifier: Apache-2.0
"""Shared pytest fixtures: where the built binaries are, and root/KVM gating."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("NUCLEUS_BUILD_DIR", ROOT / "build"))


def binary(name):
    """Path to a built program, searched in the build tree."""
    for p in BUILD.rglob(name):
        if p.is_file() and os.access(p, os.X_OK):
            return p
    pytest.fail(f"{name} is not built in {BUILD}")


@pytest.fixture(scope="session")
def build_dir():
    return BUILD


@pytest.fixture(scope="session")
def source_dir():
    return ROOT


def require_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")

import sys  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
