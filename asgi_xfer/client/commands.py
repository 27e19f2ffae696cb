"""`asgi-xfer get` and `asgi-xfer put`: the client commands behind the CLI.

Owns: the subcommands' arguments, running `download`/`upload` on an event
loop (uvloop when installed), the progress bar, and turning every failure
into one line on stderr and an exit code. Must not: transfer anything itself.

    asgi-xfer get URL [-o FILE] [-j N] [--sha256 HEX] [--token T]
        FILE defaults to the last segment of the URL's path. Rerunning the
        same command resumes a partial FILE.part (+ FILE.part.json).
    asgi-xfer put FILE URL [-j N] [--chunk-size S] [--tus | --ietf] [--token T]
        URL is the server's base URL plus the target path under /files/,
        e.g. http://host:8000/files/dir/name.bin; ending it with a slash
        (…/files/dir/) keeps FILE's own name. Rerunning resumes.

    The token may also come from the XFER_TOKEN environment variable.

Exit codes:
    0  success
    1  unexpected error (a bug: the traceback is printed)
    2  usage error (bad arguments, bad URL)
    3  network, timeout or protocol error, after retries
    4  the server answered with an error status (401, 404, 507, ...)
    5  integrity: length or checksum mismatch, nothing was left at FILE
    6  local file error (cannot read FILE or write the output)
    7  the file kept changing on the server while downloading
    130 interrupted (Ctrl-C); rerun to resume
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .download import download
from .errors import (
    ClientError,
    HTTPStatusError,
    IntegrityError,
    InvalidURL,
    NetworkError,
    ProtocolError,
    RepresentationChanged,
    TimeoutError,
)
from .progress import ProgressBar
from .upload import DEFAULT_CHUNK_SIZE_BYTES, upload

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_NETWORK, EXIT_HTTP, EXIT_INTEGRITY, EXIT_LOCAL, EXIT_CHANGED = range(8)
EXIT_INTERRUPTED = 130
TOKEN_ENV = "XFER_TOKEN"
# The most connections one command opens: aria2's -x cap.
MAX_PARALLEL = 16


def add_get_parser(sub: Any, parse_size: Callable[[str], int]) -> None:
    get = sub.add_parser("get", help="download a file (resumable, parallel, verified)")
    get.add_argument("url", help="http[s]://HOST[:PORT]/files/PATH")
    get.add_argument("-o", "--output", help="where to write it (default: the URL's file name)")
    get.add_argument("-j", "--segments", type=_parallel, default=1, metavar="N", help="parallel connections (1-16)")
    get.add_argument("--sha256", help="expected SHA-256 (hex); mismatch → exit 5, no file")
    get.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV})")


def add_put_parser(sub: Any, parse_size: Callable[[str], int]) -> None:
    put = sub.add_parser("put", help="upload a file (resumable, parallel chunks)")
    put.add_argument("file", help="local file to upload")
    put.add_argument("url", help="http[s]://HOST[:PORT]/files/PATH (…/files/DIR/ keeps the file's name)")
    put.add_argument("-j", "--parallel", type=_parallel, default=4, metavar="N", help="chunks in flight (1-16)")
    put.add_argument("--chunk-size", type=parse_size, default=DEFAULT_CHUNK_SIZE_BYTES, metavar="S",
                     help="chunk size, e.g. 8M (the server may choose another)")
    put.add_argument("--tus", action="store_true", help="use the tus 1.0 endpoint /tus/ instead of /uploads")
    put.add_argument("--ietf", action="store_true",
                     help="use IETF resumable uploads (draft -12) at /resumable/ instead of /uploads")
    put.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV})")


def _parallel(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_PARALLEL:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_PARALLEL}")
    return value


def resolve_output_path(url: str, output: str | None) -> Path:
    """`-o FILE`, else the URL path's last segment (decoded), like curl -O / wget."""
    if output:
        return Path(output)
    name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    if not name or name in (".", "..") or "\0" in name:
        raise InvalidURL(f"{url!r}: no file name in the URL; use -o FILE")
    return Path(name)


def run_get(args: argparse.Namespace) -> int:
    def work(bar: ProgressBar) -> Coroutine[Any, Any, str]:
        async def go() -> str:
            path = resolve_output_path(args.url, args.output)
            result = await download(args.url, path, segments=args.segments, sha256=args.sha256,
                                    token=_token(args), progress=bar)
            verified = f", {'+'.join(result.verified)} verified" if result.verified else ""
            resumed = f", resumed at {result.resumed_bytes} bytes" if result.resumed_bytes else ""
            return f"{result.path}: {result.size} bytes{verified}{resumed}"
        return go()
    return _run(work, label=Path(urlsplit(args.url).path).name or "download")


def run_put(args: argparse.Namespace) -> int:
    def work(bar: ProgressBar) -> Coroutine[Any, Any, str]:
        async def go() -> str:
            result = await upload(args.file, args.url, parallel=args.parallel, chunk_size=args.chunk_size,
                                  tus=args.tus, ietf=args.ietf, token=_token(args), progress=bar)
            how = "already on the server, nothing sent" if result.instant else f"via {result.method}"
            if result.resumed_bytes:
                how += f", resumed: {result.resumed_bytes} bytes were already there"
            return f"{result.path}: {result.size} bytes, sha256 {result.sha256} ({how})"
        return go()
    return _run(work, label=Path(args.file).name)


def _token(args: argparse.Namespace) -> str | None:
    return args.token or os.environ.get(TOKEN_ENV) or None


def _run(work: Callable[[ProgressBar], Coroutine[Any, Any, str]], *, label: str) -> int:
    logging.basicConfig(level=logging.WARNING, format="asgi-xfer: %(message)s")
    bar = ProgressBar(label)
    try:
        message = _run_loop(work(bar))
    except KeyboardInterrupt:
        bar.close()
        print("asgi-xfer: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as exc:  # noqa: BLE001 - every failure gets a line and a code
        bar.close()
        code = exit_code_for(exc)
        print(f"asgi-xfer: error: {exc}", file=sys.stderr)
        if code == EXIT_BUG:
            traceback.print_exc()
        return code
    bar.close()
    print(message, file=sys.stderr)
    return EXIT_OK


def _run_loop(coro: Coroutine[Any, Any, str]) -> str:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for a failure."""
    table: list[tuple[type[BaseException], int]] = [
        (InvalidURL, EXIT_USAGE), (ValueError, EXIT_USAGE),
        (IntegrityError, EXIT_INTEGRITY), (RepresentationChanged, EXIT_CHANGED),
        (HTTPStatusError, EXIT_HTTP), (TimeoutError, EXIT_NETWORK), (NetworkError, EXIT_NETWORK),
        (ProtocolError, EXIT_NETWORK), (ClientError, EXIT_NETWORK), (OSError, EXIT_LOCAL),
    ]
    for kind, code in table:
        if isinstance(exc, kind):
            return code
    return EXIT_BUG
