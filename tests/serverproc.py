"""Running the real server for end-to-end tests: a subprocess on 127.0.0.1.

`start_cli` runs `asgi-xfer serve ROOT --port 0` and reads the real port from
its banner; `start_command` runs any ASGI server command (hypercorn, granian)
on a port picked here. Both wait for `/healthz`, and `stop` kills the whole
process group, so no test leaves a server behind.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TOKEN = "test-token-0123456789"
STARTUP_TIMEOUT_S = 30
_BANNER = re.compile(r"serving .* at http://([\d.]+|\[[0-9a-f:]+\]):(\d+)/")


@dataclass
class ServerProc:
    proc: subprocess.Popen[str]
    host: str
    port: int
    root: Path
    token: str | None = TOKEN
    output: list[str] = field(default_factory=list)
    drainer: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None, auth: bool = True, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        """One request with stdlib http.client; headers returned lowercased."""
        conn = http.client.HTTPConnection(self.host.strip("[]"), self.port, timeout=timeout)
        try:
            hdrs = {**(self.auth if auth else {}), **(headers or {})}
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def rss_bytes(self) -> int:
        """Resident memory of the server and its children (workers)."""
        total = 0
        for pid in _process_tree(self.proc.pid):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.drainer is not None:
            self.drainer.join(timeout=10)


def _process_tree(pid: int) -> list[int]:
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        pids += _process_tree(int(child))
    return pids


def _drain(proc: subprocess.Popen[str], sink: list[str], ready: threading.Event, found: list[tuple[str, int]]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sink.append(line)
        match = _BANNER.search(line)
        if match and not found:
            found.append((match.group(1), int(match.group(2))))
            ready.set()
    proc.stdout.close()
    ready.set()


def _wait_healthy(server: ServerProc, health_path: str = "/healthz") -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError("server exited:\n" + "".join(server.output))
        try:
            status, _, _ = server.request("GET", health_path, auth=False, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError("server did not become healthy:\n" + "".join(server.output))


def _spawn(cmd: list[str], env: dict[str, str] | None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})}, start_new_session=True,
    )


def start_cli(root: Path, *args: str, token: str | None = TOKEN, host: str = "127.0.0.1") -> ServerProc:
    """`asgi-xfer serve ROOT --port 0 [args]`, as a user would start it."""
    cmd = [sys.executable, "-m", "asgi_xfer", "serve", str(root), "--host", host, "--port", "0", *args]
    if token:
        cmd += ["--token", token]
    proc = _spawn(cmd, None)
    output: list[str] = []
    ready, found = threading.Event(), []
    drainer = threading.Thread(target=_drain, args=(proc, output, ready, found), daemon=True)
    drainer.start()
    if not ready.wait(STARTUP_TIMEOUT_S) or not found:
        proc.kill()
        proc.wait()
        drainer.join(timeout=10)
        raise RuntimeError("no banner from asgi-xfer serve:\n" + "".join(output))
    server = ServerProc(proc, found[0][0], found[0][1], root, token, output, drainer)
    _wait_healthy(server)
    return server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_command(cmd: list[str], root: Path, port: int, env: dict[str, str] | None = None,
                  token: str | None = TOKEN, health_path: str = "/healthz") -> ServerProc:
    """Any server command already told to listen on 127.0.0.1:`port`."""
    proc = _spawn(cmd, env)
    output: list[str] = []
    drainer = threading.Thread(target=_drain, args=(proc, output, threading.Event(), []), daemon=True)
    drainer.start()
    server = ServerProc(proc, "127.0.0.1", port, root, token, output, drainer)
    _wait_healthy(server, health_path)
    return server


def worker_pids(server: ServerProc, probes: int = 40) -> set[str]:
    """The worker processes that answered `probes` fresh connections."""
    pids: set[str] = set()
    for _ in range(probes):
        body = server.request("GET", "/metrics")[2].decode()
        pids |= {line.split('pid="')[1].split('"')[0] for line in body.splitlines() if line.startswith("xfer_bytes_in_total")}
    return pids


def wait_for_workers(server: ServerProc, count: int, timeout_s: float = 30) -> None:
    """Until `count` worker processes take connections: uvicorn starts them
    one after another, and a test of cross-worker behaviour needs them all."""
    deadline = time.monotonic() + timeout_s
    while len(worker_pids(server)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} workers answered within {timeout_s} s")
