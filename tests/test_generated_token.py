"""SPEC "Access": with no --token and no --no-auth the server is never open.

It generates a random token, prints it with a ready-to-paste curl line, and
refuses requests without it. `--no-auth` is the one explicit way to run open.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import need_tool, write_file
from serverproc import ServerProc, start_cli

_TOKEN_LINE = re.compile(r"generated access token: (\S+)")
_CURL_LINE = re.compile(r"^try: (curl .*)$", re.M)


def banner_token(server: ServerProc) -> str:
    match = _TOKEN_LINE.search("".join(server.output))
    assert match, "".join(server.output)
    return match.group(1)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    root = tmp_path_factory.mktemp("gen")
    write_file(root, "hello.txt", b"hello")
    srv = start_cli(root, token=None)
    try:
        srv.token = banner_token(srv)
        yield srv
    finally:
        srv.stop()


def test_banner_prints_a_generated_token(generated: ServerProc) -> None:
    assert generated.token is not None
    assert len(generated.token) >= 16  # enough entropy not to be guessed
    assert generated.token not in ("", "None", "test-token-0123456789")


def test_banner_curl_line_works_as_pasted(generated: ServerProc) -> None:
    match = _CURL_LINE.search("".join(generated.output))
    assert match, "".join(generated.output)
    argv = shlex.split(match.group(1))
    assert argv[0] == "curl" and generated.token in match.group(1)
    done = subprocess.run([need_tool("curl"), "-sSf", *argv[1:]], capture_output=True, check=True, timeout=30)
    names = [e["name"] for e in json.loads(done.stdout)["entries"]]
    assert names == ["hello.txt"]


def test_requests_without_the_generated_token_get_401(generated: ServerProc) -> None:
    status, headers, body = generated.request("GET", "/files/hello.txt", auth=False)
    assert status == 401
    assert headers["www-authenticate"].split()[0] == "Bearer"
    assert json.loads(body)["error"]["code"]
    status, _, _ = generated.request("GET", "/files/hello.txt", {"Authorization": "Bearer guess"}, auth=False)
    assert status == 401


def test_requests_with_the_generated_token_get_200(generated: ServerProc) -> None:
    status, _, body = generated.request("GET", "/files/hello.txt")
    assert (status, body) == (200, b"hello")


def test_each_start_generates_a_different_token(generated: ServerProc, tmp_path: Path) -> None:
    other = start_cli(tmp_path / "root", token=None)
    try:
        assert banner_token(other) != generated.token
    finally:
        other.stop()


def test_no_auth_serves_without_a_token(tmp_path: Path) -> None:
    write_file(tmp_path / "root", "open.txt", b"open")
    srv = start_cli(tmp_path / "root", "--no-auth", token=None)
    try:
        status, _, body = srv.request("GET", "/files/open.txt", auth=False)
        assert (status, body) == (200, b"open")
        status, _, _ = srv.request("GET", "/metrics", auth=False)
        assert status == 200
        assert not _TOKEN_LINE.search("".join(srv.output))
        assert "no-auth" in "".join(srv.output)  # the banner warns
    finally:
        srv.stop()
