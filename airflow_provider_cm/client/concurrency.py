"""How many requests to keep in flight, learned from the server's answers (AIMD).

A tenant's capacity is not published (the API reference finds no rate limit), and it differs
between tenants and over the day. :class:`AdaptiveConcurrency` finds it the way TCP finds a
link's: it starts at a moderate number of requests in flight and, after each *window* (as many
completed requests as the limit, about one round trip), adds :attr:`~AdaptiveConcurrency.increase`
while the window was busy (the limit, not the caller, held requests back), saw no throttling and
its mean latency stayed within :attr:`~AdaptiveConcurrency.latency_tolerance` times the lowest
window mean seen (the server is not queueing). When the server answers **429** (rate limited) or
**503** (unavailable), the limit is multiplied by :attr:`~AdaptiveConcurrency.decrease` at once,
once per window: answers to requests sent before that cut were sent under the old limit and do
not cut it again. After a cut the limit grows back quickly to just below the limit that was cut,
then probes past it one request at a time, every :attr:`~AdaptiveConcurrency.probe_windows`
windows, so a steady rate limit costs few 429s; once it is ``2 * increase`` past that limit
without a cut, the capacity has grown and the quick growth resumes. The limit stays between
``minimum`` and ``maximum``.

Callers hold a :class:`Slot` for each request (``with limiter.slot() as slot: ...``) and pass
:meth:`Slot.observe` to the hook as the request's attempt observer, so the controller sees every
429 and 503, including those the hook's retry policy retries, when they arrive; a throttling error
that escapes the block is seen there too. Thread-safe: one instance serves every worker thread of
a task.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from airflow_provider_cm.client.pacing import RatePacer
from airflow_provider_cm.exceptions import CommunicationsMiningRateLimitError, CommunicationsMiningServerError

T = TypeVar("T")

#: Statuses that mean "send less": rate limited, and unavailable (overloaded or in maintenance).
THROTTLING_STATUSES = frozenset({429, 503})


def is_throttling(error: BaseException) -> bool:
    """Whether an error is the server asking for fewer requests (HTTP 429 or 503)."""
    if isinstance(error, CommunicationsMiningRateLimitError):
        return True
    return isinstance(error, CommunicationsMiningServerError) and error.status_code in THROTTLING_STATUSES


@dataclass(frozen=True)
class ConcurrencyReport:
    """What a limiter did, for the task's log.

    :param initial: the limit it started at.
    :param maximum: the most it could reach.
    :param final: the limit at the end.
    :param highest_limit: the highest the limit reached.
    :param most_in_flight: the most requests that were in flight at once.
    :param throttled: answers that were 429 or 503 (attempts, retried ones included).
    :param decreases: times the limit was cut.
    :param requests: requests (slots) completed.
    """

    initial: int
    maximum: int
    final: int
    highest_limit: int
    most_in_flight: int
    throttled: int
    decreases: int
    requests: int

    def text(self) -> str:
        """One line for the log, e.g. ``"up to 48 in flight (limit 16 -> 48, maximum 64); ..."``."""
        return (
            f"up to {self.most_in_flight} requests in flight (limit started at {self.initial}, reached "
            f"{self.highest_limit}, ended at {self.final}; maximum {self.maximum}); {self.requests} requests, "
            f"{self.throttled} answered 429/503, {self.decreases} backoff(s)"
        )


class AdaptiveConcurrency:
    """An AIMD limit on requests in flight, shared by threads.

    :param initial: the limit to start at (requests in flight).
    :param maximum: the most requests in flight it may allow.
    :param minimum: the fewest it keeps allowing after cuts (at least 1).
    :param increase: requests added to the limit after a busy, unthrottled, flat-latency window.
    :param decrease: factor the limit is multiplied by on a 429 or 503 (between 0 and 1).
    :param latency_tolerance: a window whose mean latency exceeds this multiple of the lowest
        window mean seen holds the limit instead of raising it.
    :param probe_windows: near the limit last cut, windows between raises of one request.
    :param pacer: also space request starts below the rate the server serves, and hold every
        thread for a Retry-After (:class:`~airflow_provider_cm.client.pacing.RatePacer`); ``None``
        limits requests in flight only.
    :param clock: seconds, monotonic (for tests).
    :raises ValueError: for bounds that cannot hold (``1 <= minimum <= initial <= maximum``), a
        ``decrease`` outside (0, 1), an ``increase`` below 1 or a ``latency_tolerance`` below 1.
    """

    def __init__(
        self,
        initial: int,
        maximum: int,
        *,
        minimum: int = 1,
        increase: int = 2,
        decrease: float = 0.5,
        latency_tolerance: float = 1.5,
        probe_windows: int = 4,
        pacer: RatePacer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError(f"need 1 <= minimum <= initial <= maximum, got {minimum}, {initial}, {maximum}")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease must be between 0 and 1, got {decrease}")
        if increase < 1:
            raise ValueError(f"increase must be at least 1, got {increase}")
        if latency_tolerance < 1:
            raise ValueError(f"latency_tolerance must be at least 1, got {latency_tolerance}")
        if probe_windows < 1:
            raise ValueError(f"probe_windows must be at least 1, got {probe_windows}")
        self.initial = initial
        self.maximum = maximum
        self.minimum = minimum
        self.increase = increase
        self.decrease = decrease
        self.latency_tolerance = latency_tolerance
        self.probe_windows = probe_windows
        self.pacer = pacer
        self.clock = clock
        self._cond = threading.Condition()
        self._limit = initial
        self._in_flight = 0
        self._epoch = 0
        self._baseline: float | None = None
        #: The limit when it was last cut (``None``: no cut, or the capacity has grown past it).
        self._ceiling: int | None = None
        self._probe = 0
        self._highest_limit = initial
        self._most_in_flight = 0
        self._throttled = 0
        self._decreases = 0
        self._requests = 0
        self._new_window()

    # -- state, read under the lock ---------------------------------------------------------------

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        with self._cond:
            return self._limit

    @property
    def in_flight(self) -> int:
        """Requests in flight now."""
        with self._cond:
            return self._in_flight

    def report(self) -> ConcurrencyReport:
        """What the limiter did so far."""
        with self._cond:
            return ConcurrencyReport(
                initial=self.initial,
                maximum=self.maximum,
                final=self._limit,
                highest_limit=self._highest_limit,
                most_in_flight=self._most_in_flight,
                throttled=self._throttled,
                decreases=self._decreases,
                requests=self._requests,
            )

    # -- slots --------------------------------------------------------------------------------------

    def slot(self) -> Slot:
        """Wait until a request may go (a place in flight, then its start time if paced); hold the place until
        the ``with`` block ends."""
        with self._cond:
            while self._in_flight >= self._limit:
                self._cond.wait()
            self._in_flight += 1
            self._most_in_flight = max(self._most_in_flight, self._in_flight)
            if self._in_flight >= self._limit:
                self._window_busy = True
            epoch = self._epoch
        if self.pacer is not None:
            self.pacer.wait()
        return Slot(self, epoch, self.clock())

    def _throttle(self, slot: Slot, retry_after: float | None = None) -> None:
        """A 429 or 503 arrived for ``slot``'s request: cut the limit, once per window; tell the pacer."""
        if self.pacer is not None:
            self.pacer.refused(retry_after)
        with self._cond:
            self._throttled += 1
            if slot.epoch == self._epoch:
                self._ceiling = self._limit
                self._probe = 0
                self._limit = max(self.minimum, int(self._limit * self.decrease))
                self._decreases += 1
                self._epoch += 1
                self._new_window()
            # A retry of this request goes out under the new limit: a throttle then counts again.
            slot.epoch = self._epoch

    def _release(self, slot: Slot, *, succeeded: bool) -> None:
        if succeeded and self.pacer is not None:
            self.pacer.served()
        with self._cond:
            self._in_flight -= 1
            self._requests += 1
            if slot.epoch == self._epoch:
                self._window_done += 1
                if succeeded and slot.clean:
                    self._window_latency += self.clock() - slot.started
                    self._window_samples += 1
                if self._window_done >= self._limit:
                    self._end_window()
            free = self._limit - self._in_flight
            if free > 0:
                self._cond.notify(free)

    def _new_window(self) -> None:
        self._window_done = 0
        self._window_samples = 0
        self._window_latency = 0.0
        self._window_busy = self._in_flight >= self._limit

    def _end_window(self) -> None:
        """Raise the limit after a busy window whose latency stayed flat; start the next window."""
        if self._window_samples:
            mean = self._window_latency / self._window_samples
            self._baseline = mean if self._baseline is None else min(self._baseline, mean)
            flat = mean <= self._baseline * self.latency_tolerance
            if flat and self._window_busy and self._limit < self.maximum:
                self._limit = min(self.maximum, self._limit + self._step())
                self._highest_limit = max(self._highest_limit, self._limit)
        self._new_window()

    def _step(self) -> int:
        """How much a good window raises the limit: ``increase``, or near the last cut a probe."""
        ceiling = self._ceiling
        if ceiling is None or self._limit + self.increase < ceiling:
            return self.increase
        if self._limit >= ceiling + 2 * self.increase:
            self._ceiling = None  # well past the old limit without a cut: the capacity grew
            return self.increase
        self._probe += 1
        if self._probe < self.probe_windows:
            return 0
        self._probe = 0
        return 1


class Slot:
    """One request's place in flight (from :meth:`AdaptiveConcurrency.slot`).

    :param epoch: the limiter's epoch when the request was sent (a cut starts a new one).
    :param started: the limiter's clock when the slot was granted.
    """

    def __init__(self, limiter: AdaptiveConcurrency, epoch: int, started: float) -> None:
        self.limiter = limiter
        self.epoch = epoch
        self.started = started
        #: No attempt failed: the request's latency is a clean sample.
        self.clean = True
        self._observed: BaseException | None = None

    def observe(self, error: BaseException) -> None:
        """Report a failed attempt (the hook's attempt observer): a 429 or 503 cuts the limit and, with a
        pacer, waits so that the hook's retry starts at its paced time rather than with every other refused
        request's when the Retry-After ends."""
        self._failed(error)
        if is_throttling(error) and self.limiter.pacer is not None:
            self.limiter.pacer.wait_to_retry(getattr(error, "retry_after", None))

    def _failed(self, error: BaseException) -> None:
        self.clean = False
        self._observed = error
        if is_throttling(error):
            self.limiter._throttle(self, getattr(error, "retry_after", None))

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and exc is not self._observed:
            self._failed(exc)  # final: no retry to wait for
        self.limiter._release(self, succeeded=exc is None)


def run_bounded(pool: Executor, work: Callable[[T], object], items: Iterable[T], limit: int) -> None:
    """Run ``work(item)`` on ``pool`` for each item, at most ``limit`` at a time, in item order.

    Items are drawn only as a slot frees up, so a generator of batches is never read far ahead.
    The first error cancels what has not started and is raised once what is running has ended
    (an executor's ``with`` block waits for them).

    :raises BaseException: the first error of ``work`` (or of the iteration).
    """
    in_flight: deque[Future[object]] = deque()
    try:
        for item in items:
            in_flight.append(pool.submit(work, item))
            while len(in_flight) > limit:
                in_flight.popleft().result()
        while in_flight:
            in_flight.popleft().result()
    except BaseException:
        for future in in_flight:
            future.cancel()
        raise
