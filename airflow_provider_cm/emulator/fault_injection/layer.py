"""Fault injection: the ASGI layer applying the test knobs' fault rules and rate limit to requests.

See :mod:`airflow_provider_cm.emulator.fault_injection.rules` for the rules. Emulator-only routes
(``/_emulator/...``) are never faulted; the API's routes and the identity server's token route are.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from airflow_provider_cm.emulator.fault_injection.knobs import Knobs
from airflow_provider_cm.emulator.fault_injection.rules import FaultRule, TokenBucket


class FaultInjection:
    """ASGI middleware applying the knobs' fault rules and rate limit."""

    def __init__(self, app: Any, knobs: Knobs) -> None:
        self.app = app
        self.knobs = knobs

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Throttle, inject the first matching rule's fault, or pass the request on."""
        if scope["type"] != "http" or scope["path"].startswith("/_emulator/"):
            await self.app(scope, receive, send)
            return
        if await self._throttled(scope, send):
            return
        rule = self.knobs.take_fault(scope["method"], scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.kind in ("truncate", "drop_after"):
            await self._cut_response(rule, scope, receive, send)
        else:
            await self._before_route(rule, scope, receive, send)

    async def _throttled(self, scope: dict[str, Any], send: Any) -> bool:
        limiter: TokenBucket | None = self.knobs.rate_limit
        if limiter is None:
            return False
        key = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        wait = limiter.retry_after(key)
        if wait is None:
            return False
        await _send_json(send, 429, {"status": "error", "message": "429 Too Many Requests"}, wait)
        return True

    async def _before_route(self, rule: FaultRule, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if rule.kind == "status":
            envelope = {"status": "error", "message": f"{rule.status} injected fault"}
            await _send_json(send, rule.status, envelope, rule.retry_after)
        elif rule.kind == "latency":
            await asyncio.sleep(rule.delay)
            await self.app(scope, receive, send)
        elif rule.kind == "hang":
            await asyncio.sleep(rule.delay)
            raise ConnectionAbortedError("injected fault: hang")
        else:  # drop
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
            raise ConnectionAbortedError("injected fault: connection dropped before the body")

    async def _cut_response(self, rule: FaultRule, scope: dict[str, Any], receive: Any, send: Any) -> None:
        status, headers, body = await _run(self.app, scope, receive)
        if rule.kind == "truncate":
            cut = body[: max(1, len(body) // 2)]
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(cut)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": cut})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        raise ConnectionAbortedError("injected fault: connection dropped in the middle of the body")


async def _run(app: Any, scope: dict[str, Any], receive: Any) -> tuple[int, list[Any], bytes]:
    """Run the route and capture its response instead of sending it."""
    captured: dict[str, Any] = {"status": 500, "headers": [], "body": b""}

    async def capture(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            captured["status"] = message["status"]
            captured["headers"] = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            captured["body"] += message.get("body", b"")

    await app(scope, receive, capture)
    return captured["status"], captured["headers"], captured["body"]


async def _send_json(send: Any, status: int, payload: dict[str, Any], retry_after: Any = None) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
