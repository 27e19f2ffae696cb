"""The servers under test, as a table of specs, and starting/stopping them.

Every server serves the same ROOT at ``/files/{path}`` on 127.0.0.1. Each
``ServerSpec`` says how to build its command line, which executable it needs
and which path answers when it is ready. ``run_server`` is the only place
that starts a server; it always stops the whole process group on exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import string
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PEERS_DIR = BENCH_DIR / "peers"
VENV_BIN = BENCH_DIR.parent / ".venv" / "bin"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0
READY_POLL_INTERVAL_S = 0.1
STOP_GRACE_S = 5.0

# Same uvicorn settings for both Python peers as `asgi-xfer serve` uses:
# uvloop + httptools, one worker, no access log.
UVICORN_FLAGS = [
    "--loop", "uvloop", "--http", "httptools", "--workers", "1",
    "--log-level", "warning", "--no-access-log",
]


@dataclass(frozen=True)
class Launch:
    """What a spec needs to build a command line."""

    root: Path
    port: int
    workdir: Path
    ready_file: str  # a file under root; peers have no /healthz


@dataclass(frozen=True)
class ServerSpec:
    name: str
    executable: Path
    build_argv: Callable[[Launch], list[str]]
    ready_path: Callable[[Launch], str]


def build_ours_argv(launch: Launch) -> list[str]:
    return [
        str(VENV_BIN / "asgi-xfer"), "serve", str(launch.root),
        "--host", HOST, "--port", str(launch.port), "--no-auth",
    ]


def build_uvicorn_argv(app: str) -> Callable[[Launch], list[str]]:
    def build(launch: Launch) -> list[str]:
        return [
            str(VENV_BIN / "uvicorn"), "--app-dir", str(PEERS_DIR), app,
            "--host", HOST, "--port", str(launch.port), *UVICORN_FLAGS,
        ]
    return build


def build_nginx_argv_from(template_name: str) -> Callable[[Launch], list[str]]:
    """nginx with the config ``peers/<template_name>`` filled in for ``launch``."""
    def build(launch: Launch) -> list[str]:
        template = string.Template((PEERS_DIR / template_name).read_text())
        conf = launch.workdir / "nginx.conf"
        conf.write_text(template.substitute(
            root=launch.root, port=launch.port, workdir=launch.workdir,
            # As root, workers would otherwise drop to "nobody" and lose the files.
            user_line="user root;" if os.geteuid() == 0 else "",
        ))
        # -e: the startup error log, too, stays in the temp dir.
        return ["/usr/sbin/nginx", "-p", str(launch.workdir), "-e",
                str(launch.workdir / "error.log"), "-c", str(conf)]
    return build


build_nginx_argv = build_nginx_argv_from("nginx.conf.template")


def build_python_argv(script: str) -> Callable[[Launch], list[str]]:
    """A stand-alone peer script under peers/, run by the venv's Python."""
    def build(launch: Launch) -> list[str]:
        return [str(VENV_BIN / "python"), str(PEERS_DIR / script),
                "--host", HOST, "--port", str(launch.port)]
    return build


def path_healthz(launch: Launch) -> str:
    return "/healthz"


def path_ready_file(launch: Launch) -> str:
    return f"/files/{launch.ready_file}"


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in [
        ServerSpec("ours", VENV_BIN / "asgi-xfer", build_ours_argv, path_healthz),
        ServerSpec("starlette", VENV_BIN / "uvicorn",
                   build_uvicorn_argv("starlette_app:app"), path_ready_file),
        ServerSpec("naive", VENV_BIN / "uvicorn",
                   build_uvicorn_argv("fastapi_naive_app:app"), path_ready_file),
        ServerSpec("nginx", Path("/usr/sbin/nginx"), build_nginx_argv, path_ready_file),
    ]
}


# The upload benchmark's servers (bench/run_uploads.py). A separate table so
# the download run's default server list stays as it was.
UPLOAD_SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in [
        ServerSpec("ours", VENV_BIN / "asgi-xfer", build_ours_argv, path_healthz),
        ServerSpec("nginx_dav", Path("/usr/sbin/nginx"),
                   build_nginx_argv_from("nginx_dav.conf.template"), path_ready_file),
        ServerSpec("fastapi", VENV_BIN / "uvicorn",
                   build_uvicorn_argv("fastapi_upload_app:app"), path_healthz),
        ServerSpec("discard", VENV_BIN / "python",
                   build_python_argv("discard_server.py"), path_healthz),
    ]
}


class ServerFailed(Exception):
    """A server did not start or died; the message says why."""


@dataclass(frozen=True)
class RunningServer:
    name: str
    pid: int
    base_url: str


def find_missing_executable(spec: ServerSpec) -> str | None:
    """Why ``spec`` cannot run here, or None."""
    if not (spec.executable.exists() and os.access(spec.executable, os.X_OK)):
        return f"{spec.executable} not found"
    return None


def pick_free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(f"exited with {proc.returncode}: {read_log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(READY_POLL_INTERVAL_S)
    raise ServerFailed(f"no answer at {url} within {READY_TIMEOUT_S:.0f} s")


def read_log_tail(log: Path, limit_chars: int = 300) -> str:
    text = log.read_text(errors="replace").strip() if log.exists() else ""
    return " ".join(text[-limit_chars:].split()) or "(no output)"


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=STOP_GRACE_S)
            # The leader is gone; make sure no straggler kept the group alive.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def run_server(spec: ServerSpec, root: Path, ready_file: str) -> Iterator[RunningServer]:
    """Start ``spec`` in its own session on a free port; stop it on exit."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{spec.name}-") as tmp:
        workdir = Path(tmp)
        launch = Launch(root, pick_free_port(), workdir, ready_file)
        log = workdir / "server.log"
        env = {**os.environ, "BENCH_ROOT": str(root)}
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(
                spec.build_argv(launch), stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        try:
            base_url = f"http://{HOST}:{launch.port}"
            wait_until_ready(proc, base_url + spec.ready_path(launch), log)
            yield RunningServer(spec.name, proc.pid, base_url)
            if proc.poll() is not None:
                raise ServerFailed(f"died during the run: {read_log_tail(log)}")
        finally:
            stop_process_group(proc)


