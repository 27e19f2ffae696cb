"""asgi_xfer: a framework-free ASGI large-file transfer server and client."""

from __future__ import annotations

from .app import XferApp, create_app
from .config import Settings

__all__ = ["Settings", "XferApp", "create_app"]
