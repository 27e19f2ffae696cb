"""asgi_xfer.client: an async HTTP/1.1 client on h11 and the transfers built on it.

    result = await download(url, path, segments=8, sha256=None, token=None, progress=None)
    result = await upload(path, url, parallel=4, chunk_size=8 << 20, tus=False, token=None, progress=None)

`ConnectionPool` and `HTTPConnection` are the lower layer; every error is a
`ClientError` (see `errors`).
"""

from __future__ import annotations

from .connection import HTTPConnection, Response, Timeouts
from .download import DownloadResult, download
from .errors import ClientError, HTTPStatusError, IntegrityError, RepresentationChanged
from .pool import ConnectionPool
from .retry import RetryPolicy
from .upload import UploadResult, upload

__all__ = [
    "ClientError", "ConnectionPool", "DownloadResult", "HTTPConnection", "HTTPStatusError", "IntegrityError",
    "RepresentationChanged", "Response", "RetryPolicy", "Timeouts", "UploadResult", "download", "upload",
]
