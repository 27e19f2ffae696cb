"""What every handler may use: settings, storage, sessions, the signing key, the clock.

Owns: the bundle, built once per app by `XferApp`, and the set of background
tasks (kept referenced so they are not collected mid-flight).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from ..storage.sqlite.contentindex import ContentIndex
from ..storage.sqlite.sessions import SessionStore
from ..storage.disktree import FileStore


@dataclass
class Context:
    settings: Settings
    store: FileStore
    secret: bytes
    sessions: SessionStore
    index: ContentIndex
    clock: Callable[[], float] = field(default=time.time)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task
