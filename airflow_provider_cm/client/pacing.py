"""How fast to start requests, learned from the server's 429s: a rate kept below the limit found.

A tenant's rate limit is shared by every task that calls it (a backfill over several workers, or
several DAGs), and it is not published. The in-flight limit of
:class:`~airflow_provider_cm.client.concurrency.AdaptiveConcurrency` finds how many requests the
server serves at once, but under a rate limit (a token bucket) more requests in flight only
means more refusals. :class:`RatePacer` adds what a polite client does:

* **Retry-After is honoured by every thread**: after a 429 (or 503) that says how long to wait,
  no request of the task starts before that time, not only the retry of the refused one.
* **The rate found is kept**: a 429 sets the pace to :attr:`~RatePacer.headroom` (90 %) of the
  rate the server was actually serving (successful requests over the last
  :attr:`~RatePacer.window` seconds), so requests start evenly spaced below the limit instead of
  in bursts above it. Each refusal sets it again from what was served (so refusals answering
  requests sent before a cut do not compound it), and only from enough served requests
  (:attr:`~RatePacer.min_samples`): a refusal with nothing measured yet only holds.
* **Never collapsing**: refusals that come whatever the rate (a flaky route, maintenance) would
  cut the pace again and again; it never goes below :attr:`~RatePacer.floor` (half) of the rate
  served when the first refusal came.
* **It grows back slowly**: after :attr:`~RatePacer.quiet` seconds without a refusal the pace
  rises by :attr:`~RatePacer.growth` (5 %) every :attr:`~RatePacer.quiet` seconds, so a limit
  that was raised (or other tasks that stopped) is found again, at a cost of one refusal now and
  then rather than one per request.

Before the first refusal nothing is paced. Thread-safe: one instance serves every worker thread
of a task. For several tasks on one tenant, cap how many run at once with an Airflow pool.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class PacingReport:
    """What a pacer did, for the task's log.

    :param refusals: 429/503 answers it saw.
    :param rate: requests per second it ended at (``None``: never paced).
    :param lowest_rate: the lowest pace it set.
    :param held: seconds every thread was held by Retry-After, added up.
    """

    refusals: int
    rate: float | None
    lowest_rate: float | None
    held: float

    def text(self) -> str:
        if self.rate is None or self.lowest_rate is None:
            return "not paced (no request was refused)"
        return (
            f"paced at {self.rate:.1f} requests/s at the end (lowest {self.lowest_rate:.1f}) after {self.refusals} "
            f"refusal(s); Retry-After held every request for {self.held:.1f} s in all"
        )


class RatePacer:
    """Start times for requests: unpaced until the server refuses one, then evenly spaced below its limit.

    :param window: seconds of successful requests the rate served is measured over.
    :param headroom: the fraction of that rate to keep to (between 0 and 1).
    :param growth: how much the pace rises (a fraction) after each ``quiet`` period without a refusal.
    :param quiet: seconds without a refusal before, and between, rises.
    :param minimum_rate: the slowest pace, requests per second.
    :param min_samples: served requests in the window needed to measure a rate.
    :param floor: the slowest pace, as a fraction of the rate served at the first refusal.
    :param max_hold: the longest Retry-After honoured, seconds (longer ones are cut to it).
    :param clock: seconds, monotonic (for tests).
    :param sleep: how to wait (for tests).
    :raises ValueError: for a ``headroom`` outside (0, 1], a negative ``growth`` or non-positive times.
    """

    def __init__(
        self,
        *,
        window: float = 2.0,
        headroom: float = 0.9,
        growth: float = 0.05,
        quiet: float = 5.0,
        minimum_rate: float = 0.5,
        min_samples: int = 10,
        floor: float = 0.5,
        max_hold: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom}")
        if growth < 0:
            raise ValueError(f"growth must not be negative, got {growth}")
        if min(window, quiet, minimum_rate, max_hold) <= 0:
            raise ValueError("window, quiet, minimum_rate and max_hold must be more than 0")
        self.window = window
        self.headroom = headroom
        self.growth = growth
        self.quiet = quiet
        self.minimum_rate = minimum_rate
        self.min_samples = min_samples
        self.floor = floor
        self.max_hold = max_hold
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._started = clock()
        self._served: deque[float] = deque()
        self._rate: float | None = None
        #: The slowest the pace may be set to (from the rate served at the first refusal).
        self._floor: float | None = None
        self._lowest: float | None = None
        self._next_start = 0.0
        self._hold_until = 0.0
        self._held = 0.0
        self._calm_since = self._started
        self._refusals = 0

    @property
    def rate(self) -> float | None:
        """Requests per second it keeps to (``None``: not paced)."""
        with self._lock:
            return self._rate

    def report(self) -> PacingReport:
        with self._lock:
            return PacingReport(self._refusals, self._rate, self._lowest, self._held)

    def wait(self) -> float:
        """Wait until a request may start; return the seconds waited. Call once per request, just before it."""
        with self._lock:
            now = self.clock()
            start = max(now, self._hold_until, self._next_start if self._rate else now)
            if self._rate:
                self._next_start = start + 1.0 / self._rate
        delay = start - now
        if delay > 0:
            self.sleep(delay)
        return max(delay, 0.0)

    def served(self) -> None:
        """A request was served (not refused): count it, and raise the pace after a quiet period."""
        with self._lock:
            now = self.clock()
            self._served.append(now)
            self._forget(now)
            if self._rate is not None and self.growth and now - self._calm_since >= self.quiet:
                self._rate *= 1 + self.growth
                self._calm_since = now

    def refused(self, retry_after: float | None) -> None:
        """The server refused a request (429/503): hold every request for its Retry-After; pace below the rate
        it was serving (from enough measured, never below the floor)."""
        with self._lock:
            now = self.clock()
            self._refusals += 1
            self._calm_since = now
            if retry_after is not None and retry_after > 0:
                hold = min(retry_after, self.max_hold)
                if now + hold > self._hold_until:
                    self._held += now + hold - max(now, self._hold_until)
                    self._hold_until = now + hold
            self._forget(now)
            if len(self._served) < self.min_samples:
                return  # nothing measured to pace by: the Retry-After hold is all
            serving = len(self._served) / min(self.window, max(now - self._started, 1e-3))
            if self._floor is None:  # refusals that come whatever the rate never slow it below this (measured
                # over a whole window, so that a burst the server allowed at first does not raise it)
                self._floor = self.floor * len(self._served) / self.window
            target = max(self.minimum_rate, self._floor, self.headroom * serving)
            if self._rate is None or target < self._rate:
                self._rate = target
                self._lowest = target if self._lowest is None else min(self._lowest, target)

    def _forget(self, now: float) -> None:
        """Drop what is older than the window (called under the lock)."""
        while self._served and self._served[0] < now - self.window:
            self._served.popleft()
