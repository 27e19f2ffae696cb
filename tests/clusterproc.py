"""Cluster test helpers: nodes as `asgi-xfer serve` processes, and fake peers.

`start_nodes` picks free ports first so every node can be started with its
peers' URLs. `HangingPeer` accepts connections and never answers;
`FailingPeer` answers every request with a 500. Both run in a thread of the
test process on 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from pathlib import Path

from serverproc import ServerProc, free_port, start_cli

# Small, so the timeout tests are quick; a healthy local peer answers in ms.
TEST_CLUSTER_TIMEOUT_S = 1.5


def start_node(root: Path, name: str, port: int, peers: Sequence[str], *args: str,
               timeout_s: float = TEST_CLUSTER_TIMEOUT_S, **kwargs: object) -> ServerProc:
    peer_args = [a for url in peers for a in ("--peer", url)]
    return start_cli(root, "--port", str(port), "--node-name", name, "--cluster-timeout", str(timeout_s),
                     *peer_args, *args, **kwargs)  # type: ignore[arg-type]


def start_nodes(base: Path, names: Sequence[str], extra_peers: Sequence[str] = ()) -> dict[str, ServerProc]:
    """One node per name, each with every other node as a peer (in `names` order)."""
    ports = {name: free_port() for name in names}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    nodes: dict[str, ServerProc] = {}
    try:
        for name in names:
            peers = [urls[other] for other in names if other != name] + list(extra_peers)
            nodes[name] = start_node(base / name, name, ports[name], peers)
    except BaseException:
        for node in nodes.values():
            node.stop()
        raise
    return nodes


class _FakePeer:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections: list[socket.socket] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stopped = True
        self.sock.close()
        for conn in self.connections:
            conn.close()


class HangingPeer(_FakePeer):
    """Accepts, reads the request, never answers."""

    def handle(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass


class FailingPeer(_FakePeer):
    """Answers every request with a 500 (and closes)."""

    def handle(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            body = b'{"error":{"code":"internal_error","message":"boom"}}'
            conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            conn.close()
        except OSError:
            pass
