"""The rate pacer with the limiter against the emulator's token bucket over real HTTP (the policy on its own,
with a fake clock, is tests/unit/hooks/test_pacing.py)."""

from __future__ import annotations

import threading

import pytest

from airflow_provider_cm.client.concurrency import AdaptiveConcurrency
from airflow_provider_cm.client.pacing import RatePacer
from airflow_provider_cm.exceptions import CommunicationsMiningRateLimitError

ROUTE = "POST /api/_private/datasets/p/d/labellings/u"


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
