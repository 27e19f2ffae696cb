from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from serverproc import ServerProc, start_cli


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """The CLI server over a fresh root, shared by one test module."""
    root = tmp_path_factory.mktemp("root")
    srv = start_cli(root)
    try:
        yield srv
    finally:
        srv.stop()


def need_tool(name: str) -> str:
    """The path of a command-line tool the test drives; `.ci/run` installs it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (run .ci/install-tools.sh)")
    return path


def write_file(root: Path, rel: str, data: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
