"""Fault injection and rate limiting for the emulator, for reliability tests.

A fault rule (JSON, from ``--fault`` on the command line or ``POST /_emulator/faults``)::

    {"kind": "status", "status": 503, "retry_after": "2",      # what happens
     "method": "POST", "path_contains": "/sync",                # which requests (default: all)
     "count": 3}                                                # when: the next 3 matching calls,
                                                                # or "every": k (each k-th call),
                                                                # or "rate": 0.1, "seed": 7 (random)

Kinds:

* ``status``: answer ``status`` (429, 500, 502, 503, 504, 409, ...) with the error envelope and,
  when ``retry_after`` is given, a ``Retry-After`` header (seconds or an HTTP-date) — before the
  route runs, so nothing changes.
* ``drop``: send the response headers, then close the connection before any body — before the
  route runs.
* ``drop_after``: run the route (its changes are kept), then send half the body and close: the
  client cannot know whether the request took effect.
* ``truncate``: run the route, then answer 200 with a JSON body cut in half.
* ``hang``: accept the request and answer nothing for ``delay`` seconds (default 300), then close.
* ``latency``: wait ``delay`` seconds, then answer normally.

A rate limit (``{"requests_per_second": 20, "burst": 5}``) is a token bucket per API token:
beyond it requests get 429 with ``Retry-After`` in whole seconds.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

KINDS = ("status", "drop", "drop_after", "truncate", "hang", "latency")


class FaultError(ValueError):
    """A fault rule that cannot be used."""


@dataclass
class FaultRule:
    kind: str = "status"
    status: int = 503
    retry_after: str | None = None
    method: str | None = None
    path_contains: str = ""
    count: int | None = None
    every: int | None = None
    rate: float | None = None
    seed: int = 0
    delay: float = 300.0
    seen: int = 0
    injected: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def parse(cls, data: Any) -> FaultRule:
        if not isinstance(data, dict):
            raise FaultError("a fault rule must be a JSON object")
        unknown = set(data) - {f for f in cls.__dataclass_fields__ if f not in ("seen", "injected", "rng")}
        if unknown:
            raise FaultError(f"unknown fault rule field(s): {', '.join(sorted(unknown))}")
        rule = cls(**data)
        if rule.kind not in KINDS:
            raise FaultError(f"kind must be one of {', '.join(KINDS)}")
        if sum(x is not None for x in (rule.count, rule.every, rule.rate)) > 1:
            raise FaultError("give at most one of count, every and rate")
        if rule.retry_after is not None:
            rule.retry_after = str(rule.retry_after)
        rule.rng = random.Random(rule.seed)
        return rule

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.path_contains in path

    def fires(self) -> bool:
        """Count a matching request; whether this one gets the fault."""
        self.seen += 1
        if self.count is not None:
            fire = self.count > 0
            self.count -= 1
        elif self.every is not None:
            fire = self.seen % self.every == 0
        elif self.rate is not None:
            fire = self.rng.random() < self.rate
        else:
            fire = True
        self.injected += fire
        return fire

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.count <= 0


class TokenBucket:
    """``requests_per_second`` with bursts of ``burst``, per API token."""

    def __init__(self, requests_per_second: float, burst: float | None = None) -> None:
        if requests_per_second <= 0:
            raise FaultError("requests_per_second must be positive")
        self.rate = float(requests_per_second)
        self.capacity = float(burst if burst is not None else max(1.0, requests_per_second))
        self.buckets: dict[bytes, tuple[float, float]] = {}
        self.throttled = 0

    def retry_after(self, key: bytes) -> int | None:
        """``None`` if the request may go now, else whole seconds to wait."""
        now = time.monotonic()
        tokens, last = self.buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self.buckets[key] = (tokens - 1, now)
            return None
        self.buckets[key] = (tokens, now)
        self.throttled += 1
        return max(1, math.ceil((1 - tokens) / self.rate))


class FaultInjection:
    """ASGI middleware applying the state's fault rules and rate limit to API requests."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_emulator/"):
            await self.app(scope, receive, send)
            return
        limiter: TokenBucket | None = self.state.rate_limit
        if limiter is not None:
            key = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            wait = limiter.retry_after(key)
            if wait is not None:
                await _send_json(send, 429, {"status": "error", "message": "429 Too Many Requests"}, wait)
                return
        rule = next((r for r in self.state.fault_rules if r.matches(scope["method"], scope["path"])), None)
        if rule is None or not rule.fires():
            await self.app(scope, receive, send)
            return
        if rule.exhausted:
            self.state.fault_rules.remove(rule)
        self.state.faults_injected[rule.kind] = self.state.faults_injected.get(rule.kind, 0) + 1
        if rule.kind == "status":
            envelope = {"status": "error", "message": f"{rule.status} injected fault"}
            await _send_json(send, rule.status, envelope, rule.retry_after)
        elif rule.kind == "latency":
            await asyncio.sleep(rule.delay)
            await self.app(scope, receive, send)
        elif rule.kind == "hang":
            await asyncio.sleep(rule.delay)
            raise ConnectionAbortedError("injected fault: hang")
        elif rule.kind == "drop":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
            raise ConnectionAbortedError("injected fault: connection dropped before the body")
        else:
            status, headers, body = await _run(self.app, scope, receive)
            if rule.kind == "truncate":
                cut = body[: max(1, len(body) // 2)]
                headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(cut)).encode()))
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": cut})
            else:  # drop_after
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
