"""The rate pacer on its own (a fake clock), and with the limiter against the emulator's token bucket."""

from __future__ import annotations

import itertools
import threading

import pytest

from airflow_provider_cm.client.concurrency import AdaptiveConcurrency
from airflow_provider_cm.client.pacing import RatePacer
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


def pacer(clock: Clock, **kwargs) -> RatePacer:
    return RatePacer(clock=clock, sleep=clock.sleep, **kwargs)


def serve(p: RatePacer, clock: Clock, count: int, every: float) -> None:
    """``count`` requests served, one every ``every`` seconds."""
    for _ in range(count):
        p.wait()
        clock.now += every
        p.served()


def test_nothing_is_paced_until_the_server_refuses_a_request():
    clock = Clock()
    p = pacer(clock)
    serve(p, clock, 100, 0.001)
    assert clock.slept == [] and p.rate is None
    assert p.report().text() == "not paced (no request was refused)"


def test_a_refusal_paces_requests_evenly_below_the_rate_the_server_was_serving():
    clock = Clock()
    p = pacer(clock, window=2.0, headroom=0.9)
    serve(p, clock, 100, 0.02)  # 50 requests/s served over the last 2 s
    p.refused(retry_after=None)
    assert p.rate == pytest.approx(45.0)
    clock.slept.clear()
    starts = []
    for _ in range(10):  # ten requests wanting to start at once: spaced 1/45 s apart
        p.wait()
        starts.append(clock.now)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(starts)]
    assert gaps == [round(1 / 45, 6)] * 9


def test_retry_after_holds_every_request_not_only_the_refused_one():
    clock = Clock()
    p = pacer(clock)
    serve(p, clock, 10, 0.1)
    p.refused(retry_after=3.0)
    start = clock.now
    assert p.wait() == pytest.approx(3.0)  # another thread's next request waits too
    assert clock.now == pytest.approx(start + 3.0)
    p.refused(retry_after=1000.0)  # cut to max_hold
    assert p.wait() == pytest.approx(120.0)
    assert p.report().held == pytest.approx(123.0)


def test_the_pace_grows_back_slowly_after_quiet_periods_and_never_jumps_back_above_the_limit():
    clock = Clock()
    p = pacer(clock, growth=0.05, quiet=5.0)
    serve(p, clock, 100, 0.02)
    p.refused(None)
    assert p.rate == pytest.approx(45.0)
    serve(p, clock, 1, 4.9)  # not yet quiet long enough
    assert p.rate == pytest.approx(45.0)
    serve(p, clock, 1, 0.2)
    assert p.rate == pytest.approx(45.0 * 1.05)
    serve(p, clock, 1, 1.0)  # the next rise needs another quiet period
    assert p.rate == pytest.approx(45.0 * 1.05)
    # A refusal soon after does not raise the pace to what was served in a burst, only lowers it.
    for _ in range(200):
        clock.now += 0.005
        p.served()
    p.refused(None)
    assert p.rate == pytest.approx(45.0 * 1.05)


def test_a_refusal_with_nothing_measured_only_holds_and_refusals_in_a_row_do_not_compound():
    clock = Clock()
    p = pacer(clock, window=2.0)
    serve(p, clock, 3, 0.1)
    p.refused(retry_after=1.0)  # three served: no rate to keep to, only the hold
    assert p.rate is None and p.wait() == pytest.approx(1.0)
    serve(p, clock, 100, 0.02)
    for _ in range(5):  # answers to requests sent before the pace was set
        p.refused(None)
    assert p.rate == pytest.approx(45.0)


def test_refusals_that_come_whatever_the_rate_never_slow_it_below_the_floor():
    """A route refusing every third request: each cut lowers the rate served, but the pace stops at half."""
    clock = Clock()
    p = pacer(clock, window=2.0, floor=0.5)
    serve(p, clock, 100, 0.02)  # 50 requests/s
    p.refused(None)
    assert p.rate == pytest.approx(45.0)
    for _ in range(10):  # then 10 served per second, and refused again and again
        for _ in range(20):
            clock.now += 0.1
            p.served()
        p.refused(None)
    assert p.rate == pytest.approx(25.0)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="headroom"):
        RatePacer(headroom=0)
    with pytest.raises(ValueError, match="growth"):
        RatePacer(growth=-1)
    with pytest.raises(ValueError, match="more than 0"):
        RatePacer(quiet=0)


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


@pytest.mark.parametrize("paced", [True, pytest.param(False, marks=pytest.mark.xfail(strict=True, reason="unpaced"))])
def test_paced_threads_against_the_emulators_token_bucket_meet_few_refusals(emulator, hook, workspace, paced):
    """Real HTTP: eight threads reading as fast as they can under 40 requests/s (burst 10). Unpaced (the
    in-flight limit alone), the same threads meet many more refusals: the check can fail."""
    emulator.admin("POST", "faults", {"rate_limit": {"requests_per_second": 40, "burst": 10}})
    limiter = AdaptiveConcurrency(8, 8, pacer=RatePacer(quiet=10.0) if paced else None)
    served = []

    def worker() -> None:
        for _ in range(25):
            while True:
                try:
                    with limiter.slot() as slot:
                        hook.send("GET", f"api/v1/sources/{workspace.source}", observer=slot.observe)
                    served.append(1)
                    break
                except CommunicationsMiningRateLimitError:
                    continue

    try:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        refusals = emulator.stats()["throttled"]  # the bucket's own count (a new bucket starts at 0)
    finally:
        emulator.admin("DELETE", "faults")
    assert len(served) == 200
    # Measured: 11 refusals paced, 35 unpaced (each refused request's own retry waits its Retry-After,
    # while the other threads go on being refused).
    assert refusals < 20, refusals
