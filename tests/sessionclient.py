"""A minimal /uploads client for the tests: plain http.client, no retries,
so each test sees exactly what the server answered."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from serverproc import ServerProc


def create(srv: ServerProc, path: str, data: bytes, chunk_size: int | None = None, sha256: bool = True) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"path": path, "size": len(data)}
    if chunk_size is not None:
        body["chunk_size"] = chunk_size
    if sha256:
        body["sha256"] = hashlib.sha256(data).hexdigest()
    status, headers, raw = srv.request("POST", "/uploads", {"Content-Type": "application/json"}, json.dumps(body).encode())
    payload = json.loads(raw)
    if status == 201:
        assert headers["location"].endswith(f"/uploads/{payload['id']}")
    return status, payload


def chunk_of(data: bytes, chunk_size: int, index: int) -> bytes:
    return data[index * chunk_size:(index + 1) * chunk_size]


def put_chunk(srv: ServerProc, sid: str, index: int, chunk: bytes, digest: bool = True) -> tuple[int, dict[str, Any]]:
    headers = {}
    if digest:
        headers["Content-Digest"] = "sha-256=:" + base64.b64encode(hashlib.sha256(chunk).digest()).decode() + ":"
    status, _, raw = srv.request("PUT", f"/uploads/{sid}/chunks/{index}", headers, chunk)
    return status, json.loads(raw)


def show(srv: ServerProc, sid: str) -> tuple[int, dict[str, Any]]:
    status, _, raw = srv.request("GET", f"/uploads/{sid}")
    return status, json.loads(raw)


def complete(srv: ServerProc, sid: str, sha256: str | None = None) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"sha256": sha256}).encode() if sha256 else b""
    status, _, raw = srv.request("POST", f"/uploads/{sid}/complete", {"Content-Type": "application/json"}, body)
    return status, json.loads(raw)
