"""What every handler may use: settings, the file store, the signing key, the clock.

Owns: nothing but the bundle; built once per app by `XferApp`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import Settings
from .store import FileStore


@dataclass
class Context:
    settings: Settings
    store: FileStore
    secret: bytes
    clock: Callable[[], float] = field(default=time.time)
