"""`XferApp`: the ASGI 3 callable, its route table, lifespan and error boundary.

Owns: matching a path and method to a handler, the access level of each
route, turning any exception into the SPEC JSON error (or a dropped
connection once the response has started), and building the `Context`.
Must not: implement a resource; handlers do.
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ..protocol.auth import Access, authorize
from ..protocol.cluster import NODE_HEADER, is_forwarded
from ..protocol.errors import InternalError, MethodNotAllowed, NotFound, XferError
from ..storage import committer
from ..storage.disktree import DiskTree
from ..storage.sqlite import SqliteState
from .config import Settings, settings_from_env
from .context import Context
from .exchange import ClientDisconnected, Exchange, Receive, Scope, Send
from .handlers import archive, chunked, cluster, clusterarchive, download, form, ops, resumable, tus, upload
from .metrics import METRICS

log = logging.getLogger("asgi_xfer")

Handler = Callable[[Context, Exchange, str], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    path: str  # exact path, or a prefix when it ends with "/"
    methods: Mapping[str, Handler]
    read_access: Access = Access.READ  # GET/HEAD; other methods need WRITE
    # CORS preflights carry no credentials, so OPTIONS may need to be public.
    public_methods: frozenset[str] = frozenset()
    # tus: clients behind proxies that drop PATCH/DELETE send POST with
    # X-HTTP-Method-Override (tus core protocol).
    method_override: bool = False
    # Runs on every matched request before the method and access checks, so
    # that their errors carry the route's headers too (tus, CORS).
    on_match: Callable[[Exchange], None] | None = None

    def allowed(self) -> list[str]:
        names = list(self.methods)
        if "GET" in names and "HEAD" not in names:
            names.insert(names.index("GET") + 1, "HEAD")
        return names

    def access_for(self, method: str) -> Access:
        if method in self.public_methods:
            return Access.PUBLIC
        return self.read_access if method in ("GET", "HEAD") else Access.WRITE

    def handler_for(self, method: str) -> Handler | None:
        if method == "HEAD" and "HEAD" not in self.methods:
            method = "GET"
        return self.methods.get(method)


TUS_METHODS: Mapping[str, Handler] = {
    "OPTIONS": tus.options, "POST": tus.create, "HEAD": tus.head, "PATCH": tus.patch, "DELETE": tus.delete,
}

RESUMABLE_METHODS: Mapping[str, Handler] = {
    "OPTIONS": resumable.options, "POST": resumable.create, "PUT": resumable.create, "HEAD": resumable.head,
    "PATCH": resumable.patch, "DELETE": resumable.delete,
}

ROUTES: tuple[Route, ...] = (
    Route("/files/", {"GET": download.get_file, "PUT": upload.put_file, "POST": form.post_form, "DELETE": upload.delete_file}),
    Route("/archive/", {"GET": archive.get_archive}),
    Route("/cluster/files/", {"GET": cluster.get_file, "PUT": cluster.put_file}),
    Route("/cluster/nodes", {"GET": cluster.get_nodes}),
    Route("/cluster/archive/", {"GET": clusterarchive.get_archive}),
    Route(clusterarchive.MANIFEST_ROUTE, {"GET": clusterarchive.get_manifest}),
    Route("/healthz", {"GET": ops.healthz}, read_access=Access.PUBLIC),
    Route("/metrics", {"GET": ops.metrics}, read_access=Access.WRITE),
    Route("/sign", {"POST": ops.sign}),
    Route("/uploads", {"POST": chunked.create}),
    Route("/uploads/", {"GET": chunked.show, "PUT": chunked.put_chunk, "POST": chunked.complete, "DELETE": chunked.remove}),
    *(Route(path, TUS_METHODS, read_access=Access.WRITE, public_methods=frozenset({"OPTIONS"}),
            method_override=True, on_match=tus.set_response_headers)
      for path in ("/tus", "/tus/")),
    *(Route(path, RESUMABLE_METHODS, read_access=Access.WRITE, public_methods=frozenset({"OPTIONS"}))
      for path in ("/resumable", "/resumable/")),
)

# Collection paths given without their slash: redirect as nginx does.
SLASH_REDIRECTS = frozenset(r.path[:-1] for r in ROUTES if r.path.endswith("/"))


def match_route(path: str) -> tuple[Route, str] | None:
    for route in ROUTES:
        if route.path.endswith("/"):
            if path.startswith(route.path):
                return route, path[len(route.path):]
        elif path == route.path:
            return route, ""
    return None


class XferApp:
    """The asgi_xfer application; `XferApp(root="data", tokens=["t"])`."""

    def __init__(
        self,
        root: str | Path = "data",
        *,
        tokens: tuple[str, ...] | list[str] = (),
        public_read: bool = False,
        no_auth: bool = False,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings is None:
            settings = Settings(root=Path(root), tokens=tuple(tokens), public_read=public_read, no_auth=no_auth)
        self.generated_token: str | None = None
        if not settings.tokens and not settings.no_auth:
            # Never open by accident: no token and no --no-auth means a fresh one.
            self.generated_token = secrets.token_urlsafe(24)
            settings = replace(settings, tokens=(self.generated_token,))
            log.warning("asgi-xfer: no token configured; generated access token: %s", self.generated_token)
        if settings.cluster_token and settings.cluster_token not in settings.tokens:
            # Peers present the cluster token: it is accepted like any token.
            settings = replace(settings, tokens=(*settings.tokens, settings.cluster_token))
        if not settings.node_name:
            settings = replace(settings, node_name=socket.gethostname())
        settings.root.mkdir(parents=True, exist_ok=True)
        tree = DiskTree(settings.root)
        tree.ensure_layout()
        self.settings = settings
        state = SqliteState(tree.state_dir, settings.session_ttl_s)
        self.ctx = Context(settings, tree, state, clock)
        METRICS.open_sessions = state.sessions.count_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                committer.maybe_sweep(self.ctx)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.ctx.peers.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        ex = Exchange(scope, receive, send)
        try:
            await self._dispatch(ex)
        except ClientDisconnected:
            pass
        except XferError as exc:
            if ex.started:
                raise  # the server drops the connection: no short body that looks whole
            await ex.error(exc)
        except Exception:
            log.exception("unhandled error in %s %s", ex.method, ex.path)
            if ex.started:
                raise
            await ex.error(InternalError("internal server error"))
        finally:
            ex.close()

    async def _dispatch(self, ex: Exchange) -> None:
        found = match_route(ex.path)
        if found is None:
            if ex.path in SLASH_REDIRECTS:
                location = (ex.scope.get("root_path") or "") + ex.path + "/"
                await ex.json(308, {"location": location}, [("location", location)])
                return
            raise NotFound(f"no resource at {ex.path}")
        route, tail = found
        if is_forwarded(ex.headers):
            # A peer asking: tell it whose answer this is (it learns our name).
            ex.extra_headers.append((NODE_HEADER, self.settings.node_name))
        if route.on_match is not None:
            route.on_match(ex)
        override = ex.headers.get("x-http-method-override")
        if route.method_override and override and ex.method == "POST":
            ex.method = override.strip().upper()
        handler = route.handler_for(ex.method)
        if handler is None:
            raise MethodNotAllowed(route.allowed())
        access = route.access_for(ex.method)
        s = self.settings
        authorize(
            access, ex.method, ex.path, ex.headers, ex.query,
            tokens=s.tokens, no_auth=s.no_auth, public_read=s.public_read,
            secret=self.ctx.secret, now=self.ctx.clock(),
        )
        await handler(self.ctx, ex, tail)


def create_app() -> XferApp:
    """Factory for `uvicorn --factory asgi_xfer:create_app`, reading `XFER_*`."""
    return XferApp(settings=settings_from_env())
