"""The SQLite state backend (the default): sessions, content index, CRC cache
and signing key of one ROOT, shared by its worker processes. `SqliteState`
builds them all."""

from .state import SqliteState

__all__ = ["SqliteState"]
