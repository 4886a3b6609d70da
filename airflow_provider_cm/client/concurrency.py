"""How many requests to keep in flight, learned from the server's answers (AIMD).

A tenant's capacity is not published (the API reference finds no rate limit), and it differs
between tenants and over the day. :class:`AdaptiveConcurrency` finds it the way TCP finds a
link's: it starts at a moderate number of requests in flight and, after each *window* (as many
completed requests as the limit, about one round trip), adds :attr:`~AdaptiveConcurrency.increase`
while the window was busy (the limit, not the caller, held requests back), saw no throttling and
served more requests per second than the last window at a lower limit, by at least
:attr:`~AdaptiveConcurrency.throughput_gain` of the limit's relative rise. By Little's law a
server that is not queueing serves in proportion to the requests in flight, at the same latency:
once more in flight no longer buys throughput (the server, the network or this client's own CPU
queues them), latency rises with the limit and the limit holds there; after
:attr:`~AdaptiveConcurrency.probe_windows` such windows it rises once to measure again, against
what the limit serves now, and comes back at once if that bought too little. Throughput is
measured, not latency against the best window seen, so latency that rises and falls with other
work on the machine or the network holds the growth only while more in flight does not serve
more. When the server answers **429** (rate limited) or
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
    :param probe_windows: windows between probes: near the limit last cut, raises of one request;
        where more in flight bought too little, a raise to measure again (undone if it buys too little).
    :param throughput_gain: a window raises the limit only if it served more requests per second
        than the last window at a lower limit by this fraction of the limit's relative rise at
        least (0.5: a limit a tenth higher must serve a twentieth more).
    :param pacer: also space request starts below the rate the server serves, and hold every
        thread for a Retry-After (:class:`~airflow_provider_cm.client.pacing.RatePacer`); ``None``
        limits requests in flight only.
    :param clock: seconds, monotonic (for tests).
    :raises ValueError: for bounds that cannot hold (``1 <= minimum <= initial <= maximum``), a
        ``decrease`` outside (0, 1), an ``increase`` below 1, or a ``throughput_gain`` below 0.
    """

    def __init__(
        self,
        initial: int,
        maximum: int,
        *,
        minimum: int = 1,
        increase: int = 2,
        decrease: float = 0.5,
        probe_windows: int = 4,
        throughput_gain: float = 0.5,
        pacer: RatePacer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError(f"need 1 <= minimum <= initial <= maximum, got {minimum}, {initial}, {maximum}")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease must be between 0 and 1, got {decrease}")
        if increase < 1:
            raise ValueError(f"increase must be at least 1, got {increase}")
        if probe_windows < 1:
            raise ValueError(f"probe_windows must be at least 1, got {probe_windows}")
        if throughput_gain < 0:
            raise ValueError(f"throughput_gain must not be negative, got {throughput_gain}")
        self.initial = initial
        self.maximum = maximum
        self.minimum = minimum
        self.increase = increase
        self.decrease = decrease
        self.probe_windows = probe_windows
        self.throughput_gain = throughput_gain
        self.pacer = pacer
        self.clock = clock
        self._cond = threading.Condition()
        self._limit = initial
        self._in_flight = 0
        self._epoch = 0
        #: When the window's first request started (``None``: none yet: time without requests serves nothing).
        self._window_started: float | None = None
        #: The limit when it was last cut (``None``: no cut, or the capacity has grown past it).
        self._ceiling: int | None = None
        self._probe = 0
        #: The limit of the last window at a lower limit than now, and the requests per second it served.
        self._reference: tuple[int, float] | None = None
        #: Windows in a row that gained too little, and whether the limit was raised to measure again.
        self._holds = 0
        self._trial = False
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
            if self._window_started is None:
                self._window_started = self.clock()
            self._most_in_flight = max(self._most_in_flight, self._in_flight)
            if self._in_flight >= self._limit:
                self._window_busy = True
            epoch = self._epoch
        if self.pacer is not None:
            self.pacer.wait()
        return Slot(self, epoch)

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
                self._reference = None
                self._trial = False
                self._holds = 0
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
                if succeeded:
                    self._window_served += 1
                if self._window_done >= self._limit:
                    self._end_window()
            free = self._limit - self._in_flight
            if free > 0:
                self._cond.notify(free)

    def _new_window(self) -> None:
        self._window_started = self.clock() if self._in_flight else None
        self._window_done = 0
        self._window_served = 0
        self._window_busy = self._in_flight >= self._limit

    def _end_window(self) -> None:
        """Judge a busy window by what it served (see :meth:`_judge`); start the next window."""
        if self._window_served and self._window_busy:
            now = self.clock()
            started = now if self._window_started is None else self._window_started
            self._judge(self._window_served / max(now - started, 1e-9))
        self._new_window()

    def _judge(self, rate: float) -> None:
        """Raise the limit after a window that served enough more per second than the last at a lower limit;
        else hold it, and after ``probe_windows`` such windows raise it once to measure again, back at once if
        that bought too little."""
        reference = self._reference
        if reference is None or (  # the first window (since a cut, or ever) has nothing to compare with
            reference[0] < self._limit
            and rate >= reference[1] * (1 + self.throughput_gain * (self._limit / reference[0] - 1))
        ):
            self._trial = False
            self._holds = 0
            self._raise(rate)
            return
        if self._trial:  # the raise made to measure again bought too little: back to the limit it was made from
            self._trial = False
            self._limit = reference[0]
            return
        self._holds += 1
        if self._holds >= self.probe_windows:
            # What the limit serves now (the machine, the network or the server may have changed since the
            # last raise) is the figure the next one must beat.
            self._holds = 0
            self._reference = (self._limit, rate)
            self._trial = self._raise(rate)

    def _raise(self, rate: float) -> bool:
        """Raise the limit by :meth:`_step` (if below the maximum), remembering what this one served; whether it
        rose."""
        step = self._step() if self._limit < self.maximum else 0
        if not step:
            return False
        self._reference = (self._limit, rate)
        self._limit = min(self.maximum, self._limit + step)
        self._highest_limit = max(self._highest_limit, self._limit)
        return True

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
    """

    def __init__(self, limiter: AdaptiveConcurrency, epoch: int) -> None:
        self.limiter = limiter
        self.epoch = epoch
        self._observed: BaseException | None = None

    def observe(self, error: BaseException) -> None:
        """Report a failed attempt (the hook's attempt observer): a 429 or 503 cuts the limit and, with a
        pacer, waits so that the hook's retry starts at its paced time rather than with every other refused
        request's when the Retry-After ends."""
        self._failed(error)
        if is_throttling(error) and self.limiter.pacer is not None:
            self.limiter.pacer.wait_to_retry(getattr(error, "retry_after", None))

    def _failed(self, error: BaseException) -> None:
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
