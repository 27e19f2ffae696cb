"""Expiry and sweeping with an injected clock: no sleeps."""

from __future__ import annotations

import asyncio
from pathlib import Path

from asgi_xfer import Settings, XferApp
from asgi_xfer.storage import committer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_idle_session_expires_and_is_swept(tmp_path: Path) -> None:
    clock = Clock()
    app = XferApp(settings=Settings(root=tmp_path, no_auth=True, session_ttl_s=3600), clock=clock)
    ctx = app.ctx

    async def scenario() -> None:
        session = await ctx.sessions.create(kind="chunked", path="a.bin", size=10, chunk_size=65536,
                                            sha256=None, owner="t", now=clock())
        await committer.allocate_staging(ctx.tree.session_staging_path(session.id), 10)
        clock.now += 1800
        await ctx.sessions.mark_chunk(session.id, 0, None, clock())  # activity restarts the idle timer
        clock.now += 3000
        assert await ctx.sessions.get(session.id, clock()) is not None
        assert await committer.sweep_expired(ctx) == 0
        clock.now += 700
        assert await ctx.sessions.get(session.id, clock()) is None
        assert await committer.sweep_expired(ctx) == 1
        assert not Path(ctx.tree.session_staging_path(session.id)).exists()

    asyncio.run(scenario())
