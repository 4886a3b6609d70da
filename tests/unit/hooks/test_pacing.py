"""The rate policy on its own: a fake clock the tests move, so every figure is exact and nothing sleeps.

A token bucket is modelled where the policy's claims depend on one (:class:`Bucket`); the limiter and
the real HTTP path are in ``tests/unit/upload/test_label_overlap.py`` and ``tests/integration/test_pacing.py``.
"""

from __future__ import annotations

import heapq
import itertools

import pytest

from airflow_provider_cm.client.concurrency import AdaptiveConcurrency
from airflow_provider_cm.client.pacing import HOLDING, LEARNING, PROBING, UNPACED, RatePacer
from airflow_provider_cm.exceptions import CommunicationsMiningRateLimitError

ROUTE = "POST /api/_private/datasets/p/d/labellings/u"


class Clock:
    """A clock the test moves; ``sleep`` moves it too, and records the waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


class Bucket:
    """The emulator's token bucket (``rate`` tokens a second, at most ``burst``), on the test's clock."""

    def __init__(self, clock: Clock, rate: float, burst: float) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = clock.now
        self.refused = 0

    def take(self) -> bool:
        now = self.clock.now
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.refused += 1
        return False


def pacer(clock: Clock, **kwargs) -> RatePacer:
    return RatePacer(clock=clock, sleep=clock.sleep, **kwargs)


def serve(p: RatePacer, clock: Clock, count: int, every: float) -> None:
    """``count`` requests served, one every ``every`` seconds (each waits for the pacer first)."""
    for _ in range(count):
        p.wait()
        clock.now += every
        p.served()


def run_against(
    p: RatePacer,
    clock: Clock,
    bucket: Bucket,
    seconds: float,
    *,
    threads: int,
    latency: float,
    retry_after: float = 1.0,
) -> list[float]:
    """``threads`` workers sending requests one after another for ``seconds``, each paced by ``p`` and
    answered ``latency`` seconds after it starts, when the bucket checks it (as the emulator does); a refused
    one is sent again after its Retry-After and :meth:`RatePacer.wait_to_retry`, as the hook does. Events run
    in time order on the test's clock. Returns the start times."""
    p.sleep = lambda seconds: None  # every wait is an event here; the clock moves from event to event
    end = clock.now + seconds
    events: list[tuple[float, int, str]] = []
    order = itertools.count()

    def start(at: float) -> None:
        starts.append(at)
        heapq.heappush(events, (at + latency, next(order), "answer"))

    starts: list[float] = []
    for n in range(threads):  # the workers begin one after another over a round trip
        heapq.heappush(events, (clock.now + n * latency / threads, next(order), "want"))
    while events:
        at, _, kind = heapq.heappop(events)
        clock.now = at
        if kind == "want":
            if at < end:
                start(at + p.wait())
        elif bucket.take():
            p.served()
            heapq.heappush(events, (at, next(order), "want"))
        else:
            p.refused(retry_after)
            start(at + retry_after + p.wait_to_retry(retry_after))
    return starts


def first_contact(p: RatePacer, clock: Clock, *, sending: float, rate: float, depth: int) -> None:
    """A burst at ``sending`` requests/s drained the bucket: the ``depth`` requests in flight then answer over
    one round trip, the server letting ``rate`` a second through (a refusal first, then mixed)."""
    served = 0.0
    for i in range(depth):
        clock.now += 1 / sending
        served += rate / sending
        if i and served >= 1:
            served -= 1
            p.served()
        else:
            p.refused(None)


def test_nothing_is_paced_until_the_server_refuses_a_request():
    clock = Clock()
    p = pacer(clock)
    serve(p, clock, 100, 0.001)
    assert clock.slept == [] and p.rate is None and p.phase == UNPACED
    assert p.report().text() == "met 0 refusals (HTTP 429/503); not paced"


def test_the_rate_is_learned_from_what_was_served_between_refusals_not_from_the_burst_before():
    """500 requests/s were served while the bucket's credit lasted; once it is empty, the answers between the
    first refusal and the last say the tenant's rate (140/s), and the pace is 90% of it."""
    clock = Clock()
    p = pacer(clock, headroom=0.9, window=2.0)
    serve(p, clock, 500, 0.002)  # 500 requests/s for a second
    first_contact(p, clock, sending=500, rate=140, depth=60)
    report = p.report()
    assert p.phase == LEARNING
    assert report.learned == pytest.approx(140, rel=0.1)
    assert p.rate == pytest.approx(0.9 * report.learned)
    assert p.rate < 0.9 * 140 * 1.1  # not 90% of the 500/s the burst was served at


def test_with_too_few_served_between_refusals_the_pace_is_below_the_rate_served_before_them():
    clock = Clock()
    p = pacer(clock, headroom=0.9, window=2.0, min_samples=10)
    serve(p, clock, 100, 0.02)  # 50 requests/s served over the last 2 s
    p.refused(retry_after=None)
    assert p.rate == pytest.approx(45.0) and p.report().learned is None
    serve(p, clock, 3, 0.01)
    p.refused(retry_after=None)  # 3 served since the first refusal: too few to learn from
    assert p.rate == pytest.approx(45.0) and p.report().learned is None


def test_evenly_spaced_starts_at_the_pace():
    clock = Clock()
    p = pacer(clock)
    serve(p, clock, 100, 0.02)
    p.refused(retry_after=None)
    clock.slept.clear()
    starts = []
    for _ in range(10):  # ten requests wanting to start at once: spaced 1/45 s apart
        p.wait()
        starts.append(clock.now)
    assert [round(b - a, 6) for a, b in itertools.pairwise(starts)] == [round(1 / 45, 6)] * 9


def test_retry_after_holds_every_request_and_the_refused_ones_retry_at_their_paced_times():
    clock = Clock()
    p = pacer(clock)
    serve(p, clock, 100, 0.02)
    p.sleep = lambda seconds: None  # three threads wait at once: the clock stands still
    for _ in range(3):  # three requests refused at once, each told to come back in 2 s
        p.refused(retry_after=2.0)
    extra = [p.wait_to_retry(2.0) for _ in range(3)]
    # The hook waits the 2 s itself: the retries start at the hold's end, then 1/45 s apart, and another
    # thread's next request after them.
    assert extra == pytest.approx([0.0, 1 / 45, 2 / 45])
    assert p.wait() == pytest.approx(2.0 + 3 / 45)
    p.refused(retry_after=1000.0)  # cut to max_hold
    assert p.report().held == pytest.approx(120.0)


def test_a_quiet_period_makes_the_learned_pace_good_then_probes_raise_it_only_where_requests_kept_to_it():
    clock = Clock()
    p = pacer(clock, quiet=10.0, growth=0.05)
    serve(p, clock, 100, 0.02)
    p.refused(None)
    assert p.rate == pytest.approx(45.0)
    serve(p, clock, 1, 9.9)  # not yet quiet long enough
    assert p.phase == LEARNING
    serve(p, clock, 1, 0.2)
    assert p.phase == HOLDING and p.rate == pytest.approx(45.0)
    # Requests wanted at 10/s, under the 45/s pace: no start waited for it, so it is not raised.
    serve(p, clock, 300, 0.1)
    assert p.phase == HOLDING and p.rate == pytest.approx(45.0) and p.report().probes == 0
    # Requests wanted as fast as they can go: they keep to the pace, and after a quiet period it is probed.
    serve(p, clock, int(45 * 10.5), 0.0)
    assert p.phase == PROBING and p.rate == pytest.approx(45.0 * 1.05)
    serve(p, clock, int(47.25 * 10.5), 0.0)  # a whole quiet period without a refusal: the probed pace is good
    assert p.phase == HOLDING and p.rate == pytest.approx(45.0 * 1.05)
    assert p.report().rate == pytest.approx(45.0 * 1.05)


def test_a_refusal_during_a_probe_brings_the_pace_back_at_once_and_the_next_probe_waits_twice_as_long():
    clock = Clock()
    p = pacer(clock, quiet=10.0, growth=0.05, max_quiet=25.0)
    serve(p, clock, 100, 0.02)
    p.refused(None)
    serve(p, clock, 1, 10.0)
    serve(p, clock, int(45 * 10.5), 0.0)
    assert p.phase == PROBING
    p.refused(None)
    assert p.phase == HOLDING and p.rate == pytest.approx(45.0)  # the good pace, not a new cut
    serve(p, clock, 45 * 15, 0.0)  # 15 s: the first probe came after 10, the next needs 20
    assert p.phase == HOLDING
    serve(p, clock, 45 * 6, 0.0)
    assert p.phase == PROBING
    p.refused(None)
    serve(p, clock, 45 * 26, 0.0)  # capped at max_quiet (25 s), not 40
    assert p.phase == PROBING
    report = p.report()
    assert (report.probes, report.refused_probes, report.rate) == (3, 2, pytest.approx(45.0))
    assert report.probing == pytest.approx(45.0 * 1.05)


def test_a_refusal_while_holding_learns_the_rate_again():
    """The tenant's limit fell (or another task took a share): the pace follows it down."""
    clock = Clock()
    p = pacer(clock, quiet=10.0)
    serve(p, clock, 100, 0.02)
    p.refused(None)
    serve(p, clock, 1, 10.0)
    assert p.phase == HOLDING
    serve(p, clock, 90, 0.0)  # kept to 45/s for 2 s
    p.refused(None)
    assert p.phase == LEARNING and p.rate == pytest.approx(0.9 * 45.0, rel=0.05)
    for _ in range(4):  # then 20/s get through between refusals a quarter of a second apart
        for _ in range(5):
            clock.now += 0.05
            p.served()
        p.refused(None)
    assert p.report().learned == pytest.approx(20.0) and p.rate == pytest.approx(18.0)


def test_refusals_that_come_whatever_the_rate_never_slow_it_below_the_floor():
    """A route refusing every third request however slowly they come: the rate served between refusals follows
    the pace down and down, but the pace stops at half the first rate learned."""
    clock = Clock()
    p = pacer(clock, window=2.0, floor=0.5, min_samples=10)
    serve(p, clock, 100, 0.02)  # 50 requests/s
    p.refused(None)
    for _ in range(200):  # requests as fast as the pace lets them, every third refused
        for _ in range(2):
            p.wait()
            p.served()
        p.wait()
        p.refused(None)
    report = p.report()
    # The first rate learned was about 30/s (two of every three at 45/s); what is served keeps falling below
    # the pace, but the pace stays at half that first rate.
    assert report.learned is not None and report.learned < p.rate
    assert p.rate == pytest.approx(0.5 * 30.0, rel=0.1) and report.lowest_rate == pytest.approx(p.rate)


def test_against_a_token_bucket_one_contact_then_no_refusal_and_the_reported_pace_is_the_one_kept_to():
    """Sixty threads at 100 ms a request (600 requests/s wanted) against a bucket of 140/s (burst 140): the
    refusals are the first contact's (the requests in flight when the bucket ran dry); for the minute after,
    none, and starts keep to the pace the report gives, below the bucket's rate."""
    clock = Clock()
    bucket = Bucket(clock, rate=140, burst=140)
    p = pacer(clock, quiet=10.0)
    run_against(p, clock, bucket, 3.0, threads=60, latency=0.1)
    contact = bucket.refused
    assert 0 < contact <= 60 - 0.1 * 140
    report = p.report()
    assert report.learned == pytest.approx(140, rel=0.15)
    starts = run_against(p, clock, bucket, 60.0, threads=60, latency=0.1)
    assert bucket.refused == contact
    report = p.report()
    assert report.refusals == bucket.refused
    assert report.probes >= 1 and report.refused_probes == 0
    last = [t for t in starts if t >= starts[-1] - 5.0]
    measured = (len(last) - 1) / (last[-1] - last[0])
    assert measured == pytest.approx(report.probing or report.rate, rel=0.02)
    assert measured < 140
    assert report.text().startswith(f"met {contact} refusals (HTTP 429/503); settled at {report.rate:.1f} requests/s")


def test_the_limiter_tells_its_pacer_of_refusals_with_their_retry_after_and_of_served_requests():
    clock = Clock()
    p = pacer(clock)
    limiter = AdaptiveConcurrency(4, 8, pacer=p, clock=clock)
    for _ in range(20):
        with limiter.slot():
            clock.now += 0.05
    refused = CommunicationsMiningRateLimitError(429, ROUTE, "429 Too Many Requests", retry_after=2.0)
    with pytest.raises(CommunicationsMiningRateLimitError), limiter.slot():
        raise refused
    assert p.report().refusals == 1 and p.rate == pytest.approx(0.9 * 20 / 1.0, rel=0.05)
    before = clock.now
    with limiter.slot():  # held for the Retry-After, then paced
        pass
    assert clock.now - before == pytest.approx(2.0, abs=0.01)


def test_a_refused_attempt_the_hook_retries_waits_for_its_paced_time_in_the_observer():
    clock = Clock()
    p = pacer(clock)
    limiter = AdaptiveConcurrency(4, 8, pacer=p, clock=clock)
    for _ in range(20):
        with limiter.slot():
            clock.now += 0.05
    refused = CommunicationsMiningRateLimitError(429, ROUTE, "429 Too Many Requests", retry_after=2.0)
    with limiter.slot() as first, limiter.slot() as second:
        slept = len(clock.slept)
        first.observe(refused)  # the hook then waits the 2 s and sends it again: nothing more to wait
        assert clock.slept[slept:] == []
        second.observe(refused)  # refused at the same moment: its retry goes one paced interval later
        assert clock.slept[slept:] == [round(1 / 18, 6)]
    assert limiter.report().throttled == 2


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="headroom"):
        RatePacer(headroom=0)
    with pytest.raises(ValueError, match="growth"):
        RatePacer(growth=-1)
    with pytest.raises(ValueError, match="more than 0"):
        RatePacer(quiet=0)
    with pytest.raises(ValueError, match="max_quiet"):
        RatePacer(quiet=10, max_quiet=5)
