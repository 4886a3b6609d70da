"""The emulator's test knobs: what a test or a demo sets to make the emulator misbehave or slow down,
and the counters it reads back. None of it is the tenant's data: it is never journaled or saved,
and a reset of the data (``POST /_emulator/reset``) leaves the fault rules in place.
"""

from __future__ import annotations

from airflow_provider_cm.emulator.fault_injection.rules import FaultRule, TokenBucket
from airflow_provider_cm.emulator.routes.oauth import OAuthServer


class Knobs:
    """Fault rules, rate limit, latency, refused comment ids, the identity server, request counters."""

    def __init__(self) -> None:
        #: Comment ids ``sync`` refuses with a 400, each with the reason it gives.
        self.reject_comment_ids: dict[str, str] = {}
        #: Fault rules, in the order they are matched (the first match fires).
        self.fault_rules: list[FaultRule] = []
        #: How many faults of each kind were injected.
        self.faults_injected: dict[str, int] = {}
        #: A token bucket per API token, or ``None`` for no rate limit.
        self.rate_limit: TokenBucket | None = None
        #: Seconds every API request waits before it is handled.
        self.latency = 0.0
        #: The OAuth identity server (client-credentials tokens).
        self.oauth = OAuthServer()
        #: Requests answered, by ``"<METHOD> <route path>"``.
        self.requests_by_route: dict[str, int] = {}

    def configure(
        self,
        *,
        rules: list[FaultRule],
        reject_comment_ids: dict[str, str] | None = None,
        latency: float | None = None,
        rate_limit: TokenBucket | None = None,
        set_rate_limit: bool = False,
    ) -> None:
        """Add fault rules and comment rejections; set the latency and (if ``set_rate_limit``) the rate limit."""
        self.reject_comment_ids.update(reject_comment_ids or {})
        if latency is not None:
            self.latency = latency
        self.fault_rules.extend(rules)
        if set_rate_limit:
            self.rate_limit = rate_limit

    def clear_faults(self) -> None:
        """Remove every fault rule, comment rejection, rate limit and latency."""
        self.reject_comment_ids.clear()
        self.fault_rules.clear()
        self.rate_limit = None
        self.latency = 0.0

    def forget_requests(self) -> None:
        """Zero the request counters and forget the comment rejections (with a reset of the data)."""
        self.requests_by_route.clear()
        self.reject_comment_ids.clear()

    def take_fault(self, method: str, path: str) -> FaultRule | None:
        """The fault to inject into this request, counted, or ``None``; a spent rule is removed."""
        rule = next((r for r in self.fault_rules if r.matches(method, path)), None)
        if rule is None or not rule.fires():
            return None
        if rule.exhausted:
            self.fault_rules.remove(rule)
        self.faults_injected[rule.kind] = self.faults_injected.get(rule.kind, 0) + 1
        return rule

    def count_request(self, route: str) -> None:
        """Count one answered request to ``route``."""
        self.requests_by_route[route] = self.requests_by_route.get(route, 0) + 1
