"""A raw-socket HTTP/1.1 exchange for tests that must see what a library
would hide: interim (1xx) responses before the final one, and requests cut
off mid-body. Bytes go out exactly as given; responses are read one by one."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

READ_BYTES = 65536


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # names lowercased; repeated fields joined with ", "
    body: bytes = b""
    raw_head: bytes = b""


@dataclass
class Exchange:
    """Everything one request got back, interim responses first."""

    interim: list[Response] = field(default_factory=list)
    final: Response | None = None


class RawConnection:
    def __init__(self, host: str, port: int, timeout_s: float = 30) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> bool:
        data = self.sock.recv(READ_BYTES)
        self.buffer += data
        return bool(data)

    def read_response(self, method: str = "GET") -> Response:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError("connection closed before a response head")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, status, *reason = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        response = Response(int(status), reason[0] if reason else "", headers, raw_head=head)
        if response.status < 200 or response.status in (204, 304) or method == "HEAD":
            return response
        response.body = self._read_body(headers)
        return response

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buffer:
                    self._fill()
                size_line, self.buffer = self.buffer.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buffer) < size + 2:
                    self._fill()
                body, self.buffer = body + self.buffer[:size], self.buffer[size + 2:]
                if size == 0:
                    return body
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._fill():
                raise ConnectionError("connection closed mid-body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return body

    def read_exchange(self, method: str = "GET") -> Exchange:
        """Interim responses, then the final one."""
        result = Exchange()
        while True:
            response = self.read_response(method)
            if response.status >= 200:
                result.final = response
                return result
            result.interim.append(response)


def request_head(method: str, target: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
