"""asgi_xfer: a framework-free ASGI large-file transfer server and client.

`XferApp`, `create_app` and `Settings` load on first use, so that the client
commands (`asgi-xfer get/put`) do not pay for importing the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import XferApp, create_app
    from .config import Settings

__all__ = ["Settings", "XferApp", "create_app"]


def __getattr__(name: str) -> Any:
    if name in ("XferApp", "create_app"):
        from . import app

        return getattr(app, name)
    if name == "Settings":
        from .config import Settings

        return Settings
    raise AttributeError(f"module 'asgi_xfer' has no attribute {name!r}")
