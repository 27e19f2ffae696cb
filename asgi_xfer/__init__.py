"""asgi_xfer: a framework-free ASGI large-file transfer server and client.

`XferApp`, `create_app` and `Settings` load on first use, so that the client
commands (`asgi-xfer get/put`) do not pay for importing the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server.app import XferApp
    from .server.config import Settings

__all__ = ["Settings", "XferApp", "create_app"]


def create_app() -> XferApp:
    """The app from `XFER_*` variables, for `uvicorn --factory
    asgi_xfer:create_app`, `hypercorn 'asgi_xfer:create_app()'` (which looks
    the name up in this module's namespace, so it is a real function here)."""
    from .server.app import create_app as create

    return create()


def __getattr__(name: str) -> Any:
    if name == "XferApp":
        from .server.app import XferApp

        return XferApp
    if name == "Settings":
        from .server.config import Settings

        return Settings
    raise AttributeError(f"module 'asgi_xfer' has no attribute {name!r}")
