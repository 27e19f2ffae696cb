"""`GET|HEAD /archive/{path}`: a directory, file or `?path=` list as one archive.

Parses the request, collects the entries (`archivesource`, in a thread), lets
`archive.plan_archive` decide, and executes the plan with `archivebody`.
"""

from __future__ import annotations

import asyncio

from ...protocol.archiveerrors import ArchiveError
from ...protocol.archiveplan import BODY_NONE, BODY_STORED_ZIP, ArchiveRequest, parse_archive_kind, plan_archive
from ...protocol.errors import Conflict
from ...protocol.paths import parse_rel_path
from ...storage.archivesource import collect_sources
from ..context import Context
from ..exchange import Exchange
from ..metrics import METRICS
from .archivebody import send_stored_zip, send_streamed
from .pacing import Pacer

# The download name of ROOT's archive, or of one given by `?path=` values.
DEFAULT_ARCHIVE_NAME = "archive"


async def get_archive(ctx: Context, ex: Exchange, tail: str) -> None:
    kind = parse_archive_kind(ex.query_value("format"), ex.query_value("compress"))
    base = parse_rel_path(tail)
    paths = [parse_rel_path(value) for value in ex.query.get("path", [])]
    loop = asyncio.get_running_loop()
    sources = await loop.run_in_executor(None, collect_sources, ctx.tree, base, paths)
    name = base.name if base.segments and not paths else DEFAULT_ARCHIVE_NAME
    if len(paths) == 1 and paths[0].segments:
        name = paths[0].name
    req = ArchiveRequest(ex.method, ex.headers, kind, name)
    plan = plan_archive(req, [s.member for s in sources], now=ctx.clock())
    if plan.body == BODY_NONE:
        await ex.respond(plan.status, plan.headers)
        return
    rate = ctx.settings.rate_limit_bytes_per_s
    pacer = Pacer(rate) if rate > 0 else None
    METRICS.active_transfers += 1
    ex.watch_disconnect()
    try:
        if plan.body == BODY_STORED_ZIP:
            await send_stored_zip(ctx, ex, plan, sources, pacer)
        else:
            await send_streamed(ex, plan, sources, pacer)
    except ArchiveError as exc:
        # A file changed under us: 409 if nothing was sent yet; once the
        # response has started, the app drops the connection.
        raise Conflict(str(exc)) from None
    finally:
        METRICS.active_transfers -= 1
