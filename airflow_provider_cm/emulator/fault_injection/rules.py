"""Fault rules and the rate limit: what to inject, on which requests, when; checked strictly.

A fault rule (JSON, from ``--fault`` on the command line or ``POST /_emulator/faults``)::

    {"kind": "status", "status": 503, "retry_after": "2",      # what happens
     "method": "POST", "path_contains": "/sync",                # which requests (default: all)
     "count": 3}                                                # when: the next 3 matching calls,
                                                                # or "every": k (each k-th call),
                                                                # or "rate": 0.1, "seed": 7 (random)

Kinds: ``status`` (answer ``status``, 400-599, with the error envelope and, with ``retry_after``,
a ``Retry-After`` header: seconds or an HTTP-date), ``drop`` (headers, then close before the
body), ``drop_after`` (run the route, send half the body, close), ``truncate`` (run the route,
answer 200 with half the body), ``hang`` (answer nothing for ``delay`` seconds, default 300, then
close), ``latency`` (wait ``delay`` seconds, then answer normally). Rules also apply to the
identity server's token route (``path_contains: "/identity_/connect/token"``).

A rule with an unknown field, an unknown kind or a value of the wrong type is refused with a
message naming the field (HTTP 400 on the admin route, an error on the command line).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_cm.emulator.errors import ApiError
from airflow_provider_cm.emulator.rules.checks import Check, either, integer, number, obj, string

KINDS = ("status", "drop", "drop_after", "truncate", "hang", "latency")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
RULE: Check = obj(
    {
        "kind": string(choices=KINDS),
        "status": integer(minimum=400, maximum=599),
        "retry_after": either(string(min_len=1), integer(minimum=0), describe="seconds or an HTTP-date"),
        "method": string(choices=METHODS),
        "path_contains": string(),
        "count": integer(minimum=1),
        "every": integer(minimum=1),
        "rate": number(minimum=0, maximum=1),
        "seed": integer(),
        "delay": number(minimum=0, maximum=3600),
    },
    closed=True,
)
RATE_LIMIT: Check = obj(
    {"requests_per_second": number(minimum=0.001), "burst": number(minimum=1)},
    required=("requests_per_second",),
    closed=True,
)


class FaultError(ValueError):
    """A fault rule or rate limit that cannot be used; the message names the field."""


def _checked(schema: Check, data: Any, where: str) -> None:
    try:
        schema(data, where)
    except ApiError as exc:
        raise FaultError(exc.message) from None


@dataclass
class FaultRule:
    """One checked rule and its counters."""

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
    def parse(cls, data: Any, where: str = "rule") -> FaultRule:
        """A rule from its JSON form.

        :raises FaultError: naming the field that is unknown or wrong.
        """
        _checked(RULE, data, where)
        if sum(data.get(k) is not None for k in ("count", "every", "rate")) > 1:
            raise FaultError(f"{where}: give at most one of count, every and rate")
        rule = cls(**{k: v for k, v in data.items() if v is not None})
        if rule.retry_after is not None:
            rule.retry_after = str(rule.retry_after)
        rule.rng = random.Random(rule.seed)
        return rule

    def matches(self, method: str, path: str) -> bool:
        """Whether the rule applies to a request."""
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
        """Whether a ``count`` rule has fired its last time."""
        return self.count is not None and self.count <= 0


class TokenBucket:
    """``requests_per_second`` with bursts of ``burst``, per API token."""

    def __init__(self, requests_per_second: float, burst: float | None = None) -> None:
        _checked(RATE_LIMIT, {"requests_per_second": requests_per_second, "burst": burst}, "rate_limit")
        self.rate = float(requests_per_second)
        self.capacity = float(burst if burst is not None else max(1.0, requests_per_second))
        self.buckets: dict[bytes, tuple[float, float]] = {}
        self.throttled = 0

    @classmethod
    def parse(cls, data: Any) -> TokenBucket:
        """A rate limit from ``{"requests_per_second": r, "burst": b}``.

        :raises FaultError: naming the field that is unknown or wrong.
        """
        _checked(RATE_LIMIT, data, "rate_limit")
        return cls(data["requests_per_second"], data.get("burst"))

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
