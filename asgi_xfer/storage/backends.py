"""What storage code asks of the app: the files tree, the state, a clock and
a place for background tasks.

Owns: the `Backends` contract. The server's `Context` satisfies it, so the
committer and the session hash take the app's context without importing the
server layer. Must not: hold an implementation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from .state import ContentIndex, SessionStore
from .tree import FilesTree


class Backends(Protocol):
    @property
    def tree(self) -> FilesTree: ...

    @property
    def sessions(self) -> SessionStore: ...

    @property
    def index(self) -> ContentIndex: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    def background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
