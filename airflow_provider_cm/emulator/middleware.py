"""The ASGI layers in front of the routes: path prefixes and raw-path routing, the token check
with per-route request counts, and the catch-all that answers any unexpected error with the
envelope.

Routing matches the path as sent: each segment is percent-decoded except ``/`` and ``%``, which
stay encoded (``%2F``, ``%25``), so a comment id holding ``/`` is one segment, as on a real server.
Routes that take a comment id or uid decode it once more (:func:`~airflow_provider_cm.emulator.wire.segment`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote, unquote

from airflow_provider_cm.api import routes as api
from airflow_provider_cm.emulator.fault_injection.knobs import Knobs
from airflow_provider_cm.emulator.routes.oauth import TOKEN_PATH
from airflow_provider_cm.emulator.wire import error

log = logging.getLogger(__name__)

_ROUTE_ROOTS = (*(f"/{root}/" for root in api.ROOTS), "/_emulator/")


def routing_path(raw_path: str) -> str:
    """The path routes match: segments decoded, except ``/`` and ``%`` inside a segment."""
    return "/".join(unquote(seg).replace("%", "%25").replace("/", "%2F") for seg in raw_path.split("/"))


def _without_prefix(path: str) -> str:
    if path.startswith(_ROUTE_ROOTS):
        return path
    positions = [p for p in (path.find(root) for root in _ROUTE_ROOTS) if p > 0]
    return path[min(positions) :] if positions else path


class RawPathRouting:
    """Drop any prefix before ``/api/``, ``/auth/`` or ``/_emulator/``; route on the raw path."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Rewrite ``path`` and ``raw_path`` of an HTTP request, then pass it on."""
        if scope["type"] == "http":
            raw = scope.get("raw_path")
            raw_text = raw.decode("utf-8", "surrogateescape") if raw else quote(scope["path"])
            raw_text = _without_prefix(raw_text)
            scope = dict(scope)
            scope["path"] = routing_path(raw_text)
            scope["raw_path"] = raw_text.encode("utf-8", "surrogateescape")
        await self.app(scope, receive, send)


class TokenCheck:
    """Answer 401 unless ``Authorization: Bearer <token>``; apply latency; count requests per route."""

    def __init__(self, app: Any, token: str, knobs: Knobs) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.knobs = knobs

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Check the token (the identity server's token route takes none), then pass it on."""
        if scope["type"] != "http" or scope["path"].endswith(TOKEN_PATH):
            await self.app(scope, receive, send)
            return
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if authorization != self.expected and not self.knobs.oauth.accepts(authorization):
            await error(401, "401 Unauthorized: missing or invalid API token")(scope, receive, send)
            return
        if self.knobs.latency and not scope["path"].startswith("/_emulator/"):
            await asyncio.sleep(self.knobs.latency)
        await self.app(scope, receive, send)
        route = scope.get("route")
        key = f"{scope['method']} {getattr(route, 'path', 'unknown')}"
        self.knobs.count_request(key)


class ErrorEnvelope:
    """Log any unexpected error; answer it with a 500 envelope if nothing was sent yet."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the application; never let an error reach the server as a bare 500."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("the emulator failed answering %s %s", scope["method"], scope["path"])
            if not started:
                await internal_error()(scope, receive, send)


def internal_error() -> Any:
    """The envelope of an error the emulator did not foresee."""
    return error(500, "500 Internal Server Error: the emulator failed; its log has the details")
