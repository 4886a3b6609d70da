"""The retry policy the hook applies to every request.

One definition serves the synchronous and the asynchronous transport: which failures are worth
another attempt, how long to wait (exponential backoff with jitter, or the server's
``Retry-After``), and when to give up (attempts and total time, both bounded).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import tenacity

from airflow_provider_cm.exceptions import (
    CommunicationsMiningApiError,
    CommunicationsMiningConnectionError,
    CommunicationsMiningProtocolError,
    CommunicationsMiningRateLimitError,
    CommunicationsMiningServerError,
)

RETRYABLE_SERVER_STATUSES = frozenset({500, 502, 503, 504})
#: Server statuses that a gateway may send after the API did the work (503 and 429 refuse before it).
MAYBE_DONE_SERVER_STATUSES = frozenset({500, 502, 504})
#: Attribute set on an error that has already been retried as far as the policy allows.
RETRIES_EXHAUSTED = "cm_retries_exhausted"


def mark_exhausted(error: BaseException) -> BaseException:
    """Mark ``error`` as final, so an enclosing retry loop does not retry it again; returns it."""
    setattr(error, RETRIES_EXHAUSTED, True)
    return error


def may_have_taken_effect(error: BaseException) -> bool:
    """Whether a failed attempt may still have been carried out by the server.

    True for a connection that dropped after the request was sent, a truncated or malformed body,
    and HTTP 500, 502 or 504. A retry of such an attempt can find its work already done (a
    ``sync`` then counts the comments it created as ``unchanged``).
    """
    if isinstance(error, CommunicationsMiningConnectionError):
        return error.sent
    if isinstance(error, CommunicationsMiningProtocolError):
        return True
    return isinstance(error, CommunicationsMiningServerError) and error.status_code in MAYBE_DONE_SERVER_STATUSES


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date; ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """When and how the hook retries a failed request.

    :param max_attempts: attempts in all, the first included (1 disables retries).
    :param max_elapsed: seconds after the first attempt past which no new attempt starts.
    :param initial_wait: seconds before the first retry; doubles each retry, and each wait is drawn
        at random between half and all of that ceiling ("equal jitter").
    :param max_wait: cap in seconds on one backoff wait.
    :param retry_after_cap: cap in seconds on a wait the server asks for with ``Retry-After``.
    """

    max_attempts: int = 5
    max_elapsed: float = 300.0
    initial_wait: float = 1.0
    max_wait: float = 30.0
    retry_after_cap: float = 120.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, **overrides: Any) -> RetryPolicy:
        """Build a policy from connection extras (``retry_max_attempts`` …) and keyword overrides."""
        policy = cls()
        settings: dict[str, Any] = {}
        for f in fields(cls):
            if values and values.get(f"retry_{f.name}") is not None:
                settings[f.name] = type(getattr(policy, f.name))(values[f"retry_{f.name}"])
            if overrides.get(f.name) is not None:
                settings[f.name] = type(getattr(policy, f.name))(overrides[f.name])
        policy = replace(policy, **settings)
        if policy.max_attempts < 1:
            raise ValueError("retry max_attempts must be at least 1")
        return policy

    def should_retry(self, error: BaseException, *, idempotent: bool) -> bool:
        """Whether ``error`` is transient and the request safe to send again.

        Never for an error that has already been through its own retries (a token request the
        identity server kept refusing, marked by :func:`mark_exhausted`), nor for a connection
        failure no retry can fix (a host that does not resolve, a TLS verification failure).
        """
        if getattr(error, RETRIES_EXHAUSTED, False):
            return False
        if isinstance(error, CommunicationsMiningRateLimitError):
            return True  # the server refused the request before doing anything
        if isinstance(error, CommunicationsMiningConnectionError):
            return not error.permanent and (idempotent or not error.sent)
        if isinstance(error, CommunicationsMiningProtocolError):
            return idempotent
        if isinstance(error, CommunicationsMiningServerError):
            return idempotent and error.status_code in RETRYABLE_SERVER_STATUSES
        return False

    def backoff(self, retry_number: int, error: BaseException | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based) after ``error``."""
        if isinstance(error, CommunicationsMiningApiError) and error.retry_after is not None:
            return min(error.retry_after, self.retry_after_cap)
        ceiling = min(self.max_wait, self.initial_wait * 2 ** (retry_number - 1))
        return random.uniform(ceiling / 2, ceiling)

    def tenacity_kwargs(self, *, idempotent: bool, route: str, log: Any) -> dict[str, Any]:
        """Arguments for :class:`tenacity.Retrying` / :class:`tenacity.AsyncRetrying`.

        :param log: a logger (stdlib or Airflow's) that each retry is reported to.
        """

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.backoff(state.attempt_number, error)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait_for = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s: attempt %d of %d failed (%s); retrying in %.1f s",
                route,
                state.attempt_number,
                self.max_attempts,
                error,
                wait_for,
            )

        return {
            "retry": tenacity.retry_if_exception(lambda e: self.should_retry(e, idempotent=idempotent)),
            "stop": tenacity.stop_after_attempt(self.max_attempts) | tenacity.stop_after_delay(self.max_elapsed),
            "wait": wait,
            "before_sleep": before_sleep,
            "reraise": True,
        }
