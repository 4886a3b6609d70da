"""How fast to start requests, learned from the server's 429s: a rate kept below the limit found.

A tenant's rate limit is shared by every task that calls it (a backfill over several workers, or
several DAGs), and it is not published. The in-flight limit of
:class:`~airflow_provider_cm.client.concurrency.AdaptiveConcurrency` finds how many requests the
server serves at once, but under a rate limit (a token bucket) more requests in flight only
means more refusals. :class:`RatePacer` adds what a polite client does, in four phases:

* **Unpaced** until the first refusal (HTTP 429, or 503): nothing about the limit is known yet.
* **Learning**: a refusal means the tenant's bucket is empty at that moment. Refusals that come
  close together (within :attr:`~RatePacer.contact_gap` seconds, or within the previous one's
  Retry-After: the answers to requests sent before the client stopped) are one *contact*: the
  bucket stayed empty from the first to the last, so what it served in between is exactly its
  rate. The rate learned is the requests served within contacts over their time, added up over
  every contact since learning began: a served rate over a window that grows with each refusal,
  never one sample, and never the burst served before the first refusal (the bucket's credit paid
  for it) nor what was served after a hold (a bucket refilled while the client waited). Starts are
  spaced evenly at :attr:`~RatePacer.headroom` (90 %) of it. Until :attr:`~RatePacer.min_samples`
  requests were served within contacts, each new contact sets the pace to that fraction of the
  rate served over the :attr:`~RatePacer.window` seconds before it (so a pace that is still too
  fast comes down by a tenth a contact).
* **Holding**: once :attr:`~RatePacer.quiet` seconds pass without a refusal, the pace is known
  to be good and is kept.
* **Probing**: after another quiet period at a pace requests actually kept to (enough starts
  waited for it: a pace the client did not reach proves nothing), the pace rises by
  :attr:`~RatePacer.growth` (5 %) for one quiet period; if no refusal comes, that pace is the
  good one and the next probe follows a quiet period later. A refusal during a probe brings the
  pace back to the good one at once and doubles the quiet period before the next probe (up to
  :attr:`~RatePacer.max_quiet`), so a steady limit costs a refusal less and less often. A
  refusal while holding (the limit fell, or other tasks took a share) starts learning again.

Throughout, **Retry-After is honoured by every thread**: after a refusal that says how long to
wait, no request of the task starts before that time, not only the retry of the refused one, and
the refused requests' retries start at their paced times after it, not all at once. The pace never
goes below :attr:`~RatePacer.floor` (half) of the first rate learned, so refusals that come
whatever the rate (a flaky route, maintenance) do not collapse it.

Thread-safe: one instance serves every worker thread of a task. For several tasks on one tenant,
cap how many run at once with an Airflow pool.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: The phases of a pacer (see the module's description).
UNPACED, LEARNING, HOLDING, PROBING = "unpaced", "learning", "holding", "probing"


@dataclass(frozen=True)
class PacingReport:
    """What a pacer did, for the task's log.

    :param refusals: 429/503 answers it saw.
    :param rate: requests per second it settled at: the last pace that met no refusal for a quiet
        period, or the pace it was still learning (``None``: never paced).
    :param learned: the tenant's rate it learned from the refusals, requests per second
        (``None``: too few requests were served between refusals to tell).
    :param lowest_rate: the lowest pace it set.
    :param held: seconds every thread was held by Retry-After, added up.
    :param probes: times it raised the pace past the good one.
    :param refused_probes: probes a refusal ended.
    :param probing: the pace it was probing when the report was taken (``None``: not probing).
    """

    refusals: int
    rate: float | None
    learned: float | None
    lowest_rate: float | None
    held: float
    probes: int = 0
    refused_probes: int = 0
    probing: float | None = None

    def text(self) -> str:
        """One clause for the log, e.g. ``"met 12 refusals (HTTP 429/503); settled at 126.0 requests/s ..."``."""
        if self.rate is None or self.lowest_rate is None:
            return f"met {self.refusals} refusals (HTTP 429/503); not paced"
        learned = (
            f"learned the tenant serves {self.learned:.1f} requests/s"
            if self.learned is not None
            else "too few requests were served within contacts (refusals close together) to learn the tenant's rate"
        )
        probes = f"{self.probes} probe(s) upward, {self.refused_probes} refused"
        if self.probing is not None:
            probes += f", one at {self.probing:.1f} requests/s when it ended"
        return (
            f"met {self.refusals} refusals (HTTP 429/503); settled at {self.rate:.1f} requests/s "
            f"(lowest {self.lowest_rate:.1f}; {learned}; {probes}); Retry-After held every request for "
            f"{self.held:.1f} s in all"
        )


class RatePacer:
    """Start times for requests: unpaced until the server refuses one, then evenly spaced below its limit.

    :param headroom: the fraction of the learned rate to keep to (between 0 and 1).
    :param contact_gap: refusals less than this many seconds apart (or within the previous one's
        Retry-After) belong to one contact.
    :param window: seconds of served requests before a contact measured while too few were served
        within contacts to learn from.
    :param min_samples: served requests needed to measure a rate (over either window).
    :param quiet: seconds without a refusal before the learned pace counts as good, before a probe
        and for how long a probe runs.
    :param growth: how much a probe raises the pace (a fraction; 0 never probes).
    :param max_quiet: the longest quiet period between probes (it doubles after a refused probe).
    :param minimum_rate: the slowest pace, requests per second.
    :param floor: the slowest pace, as a fraction of the first rate learned.
    :param max_hold: the longest Retry-After honoured, seconds (longer ones are cut to it).
    :param clock: seconds, monotonic (for tests).
    :param sleep: how to wait (for tests).
    :raises ValueError: for a ``headroom`` outside (0, 1], a negative ``growth``, non-positive times
        or a ``max_quiet`` below ``quiet``.
    """

    def __init__(
        self,
        *,
        headroom: float = 0.9,
        contact_gap: float = 0.5,
        window: float = 2.0,
        min_samples: int = 10,
        quiet: float = 10.0,
        growth: float = 0.05,
        max_quiet: float = 120.0,
        minimum_rate: float = 0.5,
        floor: float = 0.5,
        max_hold: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom}")
        if growth < 0:
            raise ValueError(f"growth must not be negative, got {growth}")
        if min(contact_gap, window, quiet, minimum_rate, max_hold) <= 0:
            raise ValueError("contact_gap, window, quiet, minimum_rate and max_hold must be more than 0")
        if max_quiet < quiet:
            raise ValueError(f"max_quiet ({max_quiet}) must be at least quiet ({quiet})")
        self.headroom = headroom
        self.contact_gap = contact_gap
        self.window = window
        self.min_samples = min_samples
        self.quiet = quiet
        self.growth = growth
        self.max_quiet = max_quiet
        self.minimum_rate = minimum_rate
        self.floor = floor
        self.max_hold = max_hold
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._started = clock()
        #: When requests were served over the last ``window`` seconds.
        self._served: deque[float] = deque()
        self._phase = UNPACED
        self._rate: float | None = None
        #: The last pace that met no refusal for a quiet period (``None``: none yet).
        self._good: float | None = None
        self._learned: float | None = None
        #: The slowest the pace may be set to (from the first rate learned).
        self._floor: float | None = None
        self._lowest: float | None = None
        #: The last refusal, the requests served since, and until when a refusal belongs to its contact.
        self._last_refusal: float | None = None
        self._served_since_refusal = 0
        self._contact_until = 0.0
        #: Requests served within contacts, and the contacts' seconds, since learning began.
        self._contact_served = 0
        self._contact_seconds = 0.0
        #: The pace the current contact began with: what it learns can lower it, not raise it.
        self._contact_cap: float | None = None
        #: When the current phase began, and the starts in it that waited for the pace.
        self._phase_since = self._started
        self._paced_starts = 0
        self._quiet_now = quiet
        self._next_start = 0.0
        self._hold_until = 0.0
        self._held = 0.0
        self._refusals = 0
        self._probes = 0
        self._refused_probes = 0

    @property
    def rate(self) -> float | None:
        """Requests per second it keeps to now (``None``: not paced)."""
        with self._lock:
            return self._rate

    @property
    def phase(self) -> str:
        """``"unpaced"``, ``"learning"``, ``"holding"`` or ``"probing"``."""
        with self._lock:
            self._advance(self.clock())
            return self._phase

    def report(self) -> PacingReport:
        """What the pacer did so far."""
        with self._lock:
            self._advance(self.clock())
            probing = self._rate if self._phase == PROBING else None
            settled = self._good if self._good is not None else self._rate
            return PacingReport(
                refusals=self._refusals,
                rate=settled,
                learned=self._learned,
                lowest_rate=self._lowest,
                held=self._held,
                probes=self._probes,
                refused_probes=self._refused_probes,
                probing=probing,
            )

    def wait(self) -> float:
        """Wait until a request may start; return the seconds waited. Call once per request, just before it."""
        with self._lock:
            now = self.clock()
            self._advance(now)
            start = max(now, self._hold_until)
            if self._rate:
                if self._next_start > start:
                    start = self._next_start
                    self._paced_starts += 1
                self._next_start = start + 1.0 / self._rate
        delay = start - now
        if delay > 0:
            self.sleep(delay)
        return max(delay, 0.0)

    def wait_to_retry(self, retry_after: float | None) -> float:
        """Wait so that the retry of a refused request, sent ``retry_after`` seconds from now (the hook's own
        wait), starts at its paced time instead of with every other refused request's at the end of the hold;
        return the seconds waited here. Call from the refused attempt's observer, after :meth:`refused`."""
        with self._lock:
            now = self.clock()
            after = now + max(retry_after or 0.0, 0.0)
            start = max(after, self._hold_until)
            if self._rate:
                start = max(start, self._next_start)
                self._next_start = start + 1.0 / self._rate
        delay = start - after
        if delay > 0:
            self.sleep(delay)
        return max(delay, 0.0)

    def served(self) -> None:
        """A request was served (not refused): count it."""
        with self._lock:
            now = self.clock()
            self._served.append(now)
            self._forget(now)
            self._served_since_refusal += 1
            self._advance(now)

    def refused(self, retry_after: float | None) -> None:
        """The server refused a request (429/503): hold every request for its Retry-After, and learn the
        tenant's rate (or, during a probe, go back to the good pace)."""
        with self._lock:
            now = self.clock()
            self._advance(now)
            self._refusals += 1
            same_contact = self._last_refusal is not None and now <= self._contact_until
            if same_contact:
                assert self._last_refusal is not None
                self._contact_served += self._served_since_refusal
                self._contact_seconds += now - self._last_refusal
            if retry_after is not None and retry_after > 0:
                hold = min(retry_after, self.max_hold)
                if now + hold > self._hold_until:
                    self._held += now + hold - max(now, self._hold_until)
                    self._hold_until = now + hold
            self._last_refusal = now
            self._served_since_refusal = 0
            self._contact_until = max(self._hold_until, now + self.contact_gap)
            self._forget(now)
            if self._phase == PROBING:
                if not same_contact:
                    assert self._good is not None
                    self._refused_probes += 1
                    self._quiet_now = min(self.max_quiet, 2 * self._quiet_now)
                    self._set(self._good, HOLDING, now)
                return
            if self._phase != LEARNING:  # unpaced, or holding a pace that met no refusal: the limit is here
                self._contact_served, self._contact_seconds = 0, 0.0
            self._learn(now, new_contact=not same_contact)

    # -- under the lock -----------------------------------------------------------------------------

    def _learn(self, now: float, *, new_contact: bool) -> None:
        """Set the pace from the rate served within contacts, or (too few served there yet) below the rate
        served before this contact."""
        target: float | None = None
        if self._contact_served >= self.min_samples and self._contact_seconds > 0:
            self._learned = self._contact_served / self._contact_seconds
            if self._floor is None:  # refusals that come whatever the rate never slow it below this
                self._floor = self.floor * self._learned
            target = self.headroom * self._learned
        if new_contact:  # the pace met the limit (or there was none): bring it below what was served
            served = len(self._served)
            if served:
                serving = self.headroom * served / min(self.window, max(now - self._started, 1e-3))
                target = serving if target is None else min(target, serving)
            if self._rate is not None:
                target = min(self._rate, target) if target is not None else self._rate
            self._contact_cap = target
        elif target is not None and self._contact_cap is not None:
            target = min(target, self._contact_cap)  # a later contact only lowers the pace it began with
        if target is None:
            self._phase, self._phase_since = LEARNING, now  # nothing measured: the Retry-After hold is all
        else:
            self._set(target, LEARNING, now)

    def _set(self, rate: float, phase: str, now: float) -> None:
        rate = max(rate, self.minimum_rate, self._floor or 0.0)
        self._rate = rate
        self._lowest = rate if self._lowest is None else min(self._lowest, rate)
        self._phase = phase
        self._phase_since = now
        self._paced_starts = 0

    def _advance(self, now: float) -> None:
        """Move on after a quiet period: learning -> holding; holding -> probing; a probe that held -> good."""
        if self._phase == UNPACED or now - self._phase_since < (
            self.quiet if self._phase == LEARNING else self._quiet_now
        ):
            return
        if self._rate is None:  # learning with nothing measured: still unpaced
            return
        if self._phase == LEARNING:
            self._good = self._rate
            self._set(self._rate, HOLDING, now)
        elif self._paced_starts < self.min_samples or not self.growth:
            # Requests did not keep to this pace (fewer were wanted): it is not tested, nor is a higher one.
            self._phase_since = now
            self._paced_starts = 0
        elif self._phase == HOLDING:
            self._probes += 1
            self._set(self._rate * (1 + self.growth), PROBING, now)
        else:  # a probe a whole quiet period long met no refusal
            self._good = self._rate
            self._set(self._rate, HOLDING, now)

    def _forget(self, now: float) -> None:
        """Drop what is older than the window."""
        while self._served and self._served[0] < now - self.window:
            self._served.popleft()
