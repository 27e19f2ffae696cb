"""What every handler may use: settings, the files tree, the state, the clock.

Owns: the bundle, built once per app by `XferApp`, and the set of background
tasks (kept referenced so they are not collected mid-flight). It satisfies
`storage.backends.Backends`, which is all that storage code asks of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ..storage.state import ContentIndex, CrcCache, SessionStore, StateBackend
from ..storage.tree import FilesTree
from .config import Settings
from .peers import PeerLink


@dataclass
class Context:
    settings: Settings
    tree: FilesTree
    state: StateBackend
    clock: Callable[[], float] = field(default=time.time)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    peers: PeerLink = field(init=False)

    def __post_init__(self) -> None:
        self.peers = PeerLink(self.settings)  # the cluster's peers (SPEC "Cluster")

    @property
    def sessions(self) -> SessionStore:
        return self.state.sessions

    @property
    def index(self) -> ContentIndex:
        return self.state.index

    @property
    def crcs(self) -> CrcCache:
        return self.state.crcs

    @property
    def secret(self) -> bytes:
        return self.state.signing_key()

    def background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task
