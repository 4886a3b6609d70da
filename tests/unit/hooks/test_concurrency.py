"""The AIMD limiter on its own: growth, backoff, bounds, and that threads never exceed the limit.

Time is a fake clock the tests move, so latencies are exact; the thread test uses real threads.
"""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_cm.client.concurrency import AdaptiveConcurrency, is_throttling
from airflow_provider_cm.exceptions import (
    CommunicationsMiningBadRequestError,
    CommunicationsMiningRateLimitError,
    CommunicationsMiningServerError,
)

ROUTE = "POST /api/_private/datasets/p/d/labellings/u"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rate_limited() -> CommunicationsMiningRateLimitError:
    return CommunicationsMiningRateLimitError(429, ROUTE, "429 Too Many Requests", retry_after=1.0)


def window(limiter: AdaptiveConcurrency, clock: Clock, latency: float) -> None:
    """One full window: ``limit`` requests all in flight at once, each taking ``latency`` seconds."""
    slots = [limiter.slot() for _ in range(limiter.limit)]
    clock.now += latency
    for slot in slots:
        with slot:
            pass


def test_grows_additively_while_throughput_follows_the_limit_up_to_the_maximum():
    clock = Clock()
    limiter = AdaptiveConcurrency(4, 12, increase=2, clock=clock)
    limits = []
    for _ in range(6):
        window(limiter, clock, 0.1)
        limits.append(limiter.limit)
    assert limits == [6, 8, 10, 12, 12, 12]
    report = limiter.report()
    assert (report.initial, report.highest_limit, report.final, report.most_in_flight) == (4, 12, 12, 12)


def test_holds_where_more_in_flight_serves_no_more_then_probes_and_comes_back():
    """A server that serves 60 requests a second whatever the number in flight: the limit stops where
    throughput stops following it, probes one step higher every ``probe_windows`` windows and comes back."""
    clock = Clock()
    limiter = AdaptiveConcurrency(4, 64, increase=2, probe_windows=3, clock=clock)
    limits = []
    for _ in range(12):
        window(limiter, clock, limiter.limit / 60 if limiter.limit > 6 else 0.1)
        limits.append(limiter.limit)
    # 4 and 6 serve 40 and 60 a second; 8 serves 60 too (not the 70 it must): held at 8 for three windows,
    # raised to 10 to measure again, which serves 60 too: back to 8.
    assert limits == [6, 8, 8, 8, 10, 8, 8, 8, 10, 8, 8, 8]
    assert limiter.report().highest_limit == 10


def test_latency_that_rises_with_other_work_holds_growth_only_until_throughput_is_measured_again():
    """Latency doubles for every request (a loaded machine, a slow network): the limit holds, then measures
    what it serves now and grows again while more in flight serves more, at twice the best window's latency."""
    clock = Clock()
    limiter = AdaptiveConcurrency(4, 64, increase=2, probe_windows=2, clock=clock)
    window(limiter, clock, 0.1)  # 40 a second
    limits = []
    for _ in range(4):
        window(limiter, clock, 0.2)
        limits.append(limiter.limit)
    # 6 serves 30 a second, less than 4 did before: held twice, then 8 to measure again serves 40 (more
    # than 6's 30 by a sixth at least): kept, and 10 serves 50.
    assert limits == [6, 8, 10, 12]


def test_a_window_not_limited_by_the_limit_does_not_grow_it():
    """Fewer requests than the limit allows say nothing about whether more would be fine."""
    clock = Clock()
    limiter = AdaptiveConcurrency(8, 64, clock=clock)
    for _ in range(5):
        for _ in range(8):  # one request at a time
            with limiter.slot():
                clock.now += 0.1
    assert limiter.limit == 8
    assert limiter.report().most_in_flight == 1


def test_halves_once_per_window_on_429_and_503_however_many_arrive():
    clock = Clock()
    limiter = AdaptiveConcurrency(32, 64, clock=clock)
    slots = [limiter.slot() for _ in range(32)]
    for slot in slots[:10]:  # ten answers to requests sent under the old limit
        slot.observe(rate_limited())
    assert limiter.limit == 16
    slots[10].observe(CommunicationsMiningServerError(503, ROUTE, "503 Service Unavailable"))
    assert limiter.limit == 16
    # The first throttled request's retry was sent under the new limit: a 429 to it cuts again.
    slots[0].observe(rate_limited())
    assert limiter.limit == 8
    for slot in slots:
        with slot:
            pass
    report = limiter.report()
    assert (report.throttled, report.decreases, report.final) == (12, 2, 8)


def test_after_a_cut_grows_back_quickly_then_probes_past_the_old_limit_slowly():
    clock = Clock()
    limiter = AdaptiveConcurrency(20, 64, increase=2, probe_windows=4, clock=clock)
    with limiter.slot() as slot:
        slot.observe(rate_limited())
    limits = []
    for _ in range(16):
        window(limiter, clock, 0.1)
        limits.append(limiter.limit)
    # 10 -> 18 in four windows; then one request more every fourth window; 24 is past the old
    # limit by twice the increase: the capacity grew, quick growth resumes.
    assert limits[:4] == [12, 14, 16, 18]
    assert limits[4:12] == [18, 18, 18, 19, 19, 19, 19, 20]
    windows = 0
    while limiter.limit < 24:
        window(limiter, clock, 0.1)
        windows += 1
    assert (windows, limits[-1]) == (12, 21)  # 21 -> 24, one every fourth window
    window(limiter, clock, 0.1)
    window(limiter, clock, 0.1)
    assert limiter.limit == 28


def test_other_failures_do_not_cut_the_limit():
    clock = Clock()
    limiter = AdaptiveConcurrency(8, 64, clock=clock)
    with limiter.slot() as slot:
        slot.observe(CommunicationsMiningServerError(500, ROUTE, "boom"))
        slot.observe(CommunicationsMiningServerError(502, ROUTE, "bad gateway"))
    with pytest.raises(CommunicationsMiningBadRequestError), limiter.slot():
        raise CommunicationsMiningBadRequestError(400, ROUTE, "bad")
    assert limiter.limit == 8 and limiter.report().throttled == 0


def test_a_throttling_error_escaping_the_block_counts_once():
    """Seen by the observer and then raised from the block: one answer, one cut."""
    clock = Clock()
    limiter = AdaptiveConcurrency(8, 64, clock=clock)
    error = rate_limited()
    with pytest.raises(CommunicationsMiningRateLimitError), limiter.slot() as slot:
        slot.observe(error)
        raise error
    assert limiter.report().throttled == 1 and limiter.limit == 4
    with pytest.raises(CommunicationsMiningRateLimitError), limiter.slot():
        raise rate_limited()  # not observed (no observer passed): the block sees it
    assert limiter.report().throttled == 2 and limiter.limit == 2


def test_never_below_the_minimum_and_never_above_the_maximum():
    clock = Clock()
    limiter = AdaptiveConcurrency(4, 6, minimum=2, clock=clock)
    for _ in range(5):
        with limiter.slot() as slot:
            slot.observe(rate_limited())
    assert limiter.limit == 2
    for _ in range(30):
        window(limiter, clock, 0.1)
    assert limiter.limit == 6


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"initial": 0, "maximum": 4}, "minimum <= initial"),
        ({"initial": 8, "maximum": 4}, "initial <= maximum"),
        ({"initial": 4, "maximum": 8, "decrease": 1.0}, "decrease"),
        ({"initial": 4, "maximum": 8, "increase": 0}, "increase"),
        ({"initial": 4, "maximum": 8, "throughput_gain": -0.5}, "throughput_gain"),
    ],
)
def test_bounds_that_cannot_hold_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        AdaptiveConcurrency(**arguments)


def test_throttling_means_429_and_503_only():
    assert is_throttling(rate_limited())
    assert is_throttling(CommunicationsMiningServerError(503, ROUTE, "unavailable"))
    assert not is_throttling(CommunicationsMiningServerError(500, ROUTE, "boom"))
    assert not is_throttling(ValueError("x"))


def test_threads_never_hold_more_slots_than_the_limit_allows():
    """64 threads contend for slots while 429s cut the limit: in flight never exceeds the limit."""
    limiter = AdaptiveConcurrency(16, 32)
    lock = threading.Lock()
    state = {"in_flight": 0, "over": 0, "done": 0}

    def worker(n: int) -> None:
        for i in range(40):
            with limiter.slot() as slot:
                with lock:
                    state["in_flight"] += 1
                    if state["in_flight"] > limiter.maximum:
                        state["over"] += 1
                time.sleep(0.001)
                if (n * 40 + i) % 97 == 0:
                    slot.observe(rate_limited())
                with lock:
                    state["in_flight"] -= 1
                    state["done"] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    report = limiter.report()
    assert state == {"in_flight": 0, "over": 0, "done": 64 * 40}
    assert limiter.in_flight == 0 and report.requests == 64 * 40
    assert report.most_in_flight <= report.highest_limit <= 32
    assert report.throttled == sum(1 for k in range(64 * 40) if k % 97 == 0)
