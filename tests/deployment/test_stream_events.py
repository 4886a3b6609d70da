"""``cm_stream_events`` in a real deployment: the stream's event trigger runs in the triggerer as an
``AssetWatcher`` (``dag.test()`` runs no watchers), and each batch of new comments starts one run.

The DAG has its own stream and table (``EVENTS_STREAM``, ``EVENTS_TABLE``), batches of
``EVENTS_BATCH_SIZE`` comments and a poll every ``EVENTS_POLL_INTERVAL`` seconds (set in the
deployment's environment), and a redelivery time-out (900 s) longer than the case.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_cm.exceptions import CommunicationsMiningNotFoundError
from tests.deployment.conftest import (
    BIN,
    EVENTS_BATCH_SIZE,
    EVENTS_POLL_INTERVAL,
    EVENTS_STREAM,
    EVENTS_TABLE,
    Deployment,
    Postgres,
    deployment_hook,
    read_banking77,
    wait_for,
)

pytestmark = pytest.mark.deployment

DAG_ID = "cm_stream_events"
TASK = "drain_batch"
#: Batches seeded at once: one run each.
BATCHES = 3
#: Comments that arrive for this case: a day no other case uploads.
EVENT_DAY = "2026-10-13"
#: Seconds to watch for a run that should not come: ten polls, and the scheduler's loop.
QUIET = 10 * EVENTS_POLL_INTERVAL + 10
#: Seconds for the runs of the seeded batches (parse, watcher start, and a run after each).
RUNS_WAIT = 420


@pytest.fixture
def events_stream(deployment: Deployment) -> Iterator[Any]:
    """A new, empty stream for ``cm_stream_events`` (it starts at its creation time); the DAG paused after."""
    hook = deployment_hook()
    with contextlib.suppress(CommunicationsMiningNotFoundError):
        hook.delete_stream(deployment.dataset, EVENTS_STREAM)
    hook.put_stream(deployment.dataset, EVENTS_STREAM, model_version=deployment.model_version)
    assert hook.fetch_stream(deployment.dataset, EVENTS_STREAM, size=16)["results"] == []
    deployment.wait_for_dag(DAG_ID)
    yield hook
    deployment.set_paused(DAG_ID, True)  # its watcher stops: nothing polls the stream after the case
    set_faults(deployment, [])
    hook.close()
    deployment.fail_unfinished_runs(DAG_ID)


def set_faults(deployment: Deployment, rules: list[dict[str, Any]]) -> None:
    """Replace the emulator's fault rules (``[]`` clears them)."""
    headers = {"Authorization": f"Bearer {deployment.token}"}
    url = f"{deployment.emulator_url}/_emulator/faults"
    response = (
        requests.post(url, json={"faults": rules}, headers=headers, timeout=30)
        if rules
        else requests.delete(url, headers=headers, timeout=30)
    )
    response.raise_for_status()


def runs(deployment: Deployment) -> list[dict[str, Any]]:
    """The DAG's runs, oldest first."""
    return sorted(deployment.run_ids(DAG_ID).values(), key=lambda run: run["run_after"])


def finished_runs(deployment: Deployment, count: int, expect: str = "success") -> list[dict[str, Any]] | None:
    """The runs once ``count`` have finished, all but those expected failed; fails at a surprise."""
    seen = runs(deployment)
    surprise = [run for run in seen if run["state"] not in ("queued", "running", expect, "success")]
    assert not surprise, [
        (run["dag_run_id"], run["state"], deployment.task_states(DAG_ID, run["dag_run_id"])) for run in surprise
    ]
    done = [run for run in seen if run["state"] in ("success", "failed")]
    return seen if len(done) >= count else None


def event_payload(deployment: Deployment, run_id: str) -> dict[str, Any]:
    """The payload of the one Asset event (from the trigger) that started a run."""
    events = deployment.api("GET", f"dags/{DAG_ID}/dagRuns/{run_id}/upstreamAssetEvents")["asset_events"]
    assert len(events) == 1, events
    assert events[0]["extra"]["from_trigger"] is True
    return events[0]["extra"]["payload"]


def table_ids(deployment: Deployment) -> list[str]:
    return sorted(row[0] for row in Postgres.execute(f"SELECT comment_id FROM {EVENTS_TABLE}", deployment.warehouse_db))


def test_each_batch_starts_one_run_that_takes_exactly_that_batch_even_across_a_triggerer_restart(
    deployment: Deployment, events_stream: Any
):
    comments = [r["comment"] for r in read_banking77() if r["comment"]["timestamp"].startswith(EVENT_DAY)]
    seeded, late = comments[: BATCHES * EVENTS_BATCH_SIZE], comments[BATCHES * EVENTS_BATCH_SIZE :][:EVENTS_BATCH_SIZE]
    assert len(late) == EVENTS_BATCH_SIZE
    assert events_stream.sync_comments(deployment.source, seeded)["new"] == len(seeded)
    deployment.set_paused(DAG_ID, False)

    # N batches waiting: exactly N runs, each taking the batch its event was for.
    done = wait_for(f"{BATCHES} runs", lambda: finished_runs(deployment, BATCHES), timeout=RUNS_WAIT, interval=2)
    time.sleep(QUIET)
    assert len(runs(deployment)) == BATCHES, "a run more than batches: " + str(runs(deployment))
    assert [run["state"] for run in done] == ["success"] * BATCHES
    assert {run["run_type"] for run in done} == {"asset_triggered"}
    first_uids = set()
    for run in done:
        drained = deployment.xcom(DAG_ID, run["dag_run_id"], TASK)
        payload = event_payload(deployment, run["dag_run_id"])
        assert (drained["rows_written"], drained["batches"], drained["refused_uids"]) == (EVENTS_BATCH_SIZE, 1, [])
        assert payload["sequence_id"] == drained["sequence_id"], (payload, drained)  # the batch that fired
        assert (payload["results"], payload["redelivered"]) == (EVENTS_BATCH_SIZE, False)
        first_uids.add(payload["first_uid"])
    assert len(first_uids) == BATCHES
    assert table_ids(deployment) == sorted(c["id"] for c in seeded)  # every comment once
    assert events_stream.fetch_stream(deployment.dataset, EVENTS_STREAM, size=16)["results"] == []

    # A batch whose run fails before advancing is not fired for again before the redelivery
    # time-out: not by the running trigger, not by the new trigger of a restarted triggerer.
    set_faults(deployment, [{"kind": "status", "status": 400, "path_contains": f"/streams/{EVENTS_STREAM}/advance"}])
    assert events_stream.sync_comments(deployment.source, late)["new"] == len(late)
    failed = wait_for("the failing run", lambda: finished_runs(deployment, BATCHES + 1, "failed"), RUNS_WAIT, 2)[-1]
    assert (failed["state"], deployment.task_states(DAG_ID, failed["dag_run_id"])) == ("failed", {TASK: "failed"})
    set_faults(deployment, [])
    assert len(events_stream.fetch_stream(deployment.dataset, EVENTS_STREAM, size=16)["results"]) == len(late)

    log = deployment.logs / "triggerer.log"
    restarted_at = log.stat().st_size
    polls = deployment.emulator_requests("/fetch")
    deployment.stop("triggerer")
    deployment.start("triggerer", [str(BIN / "airflow"), "triggerer"])
    wait_for(
        "the restarted triggerer's trigger to poll the stream a few times",
        lambda: deployment.emulator_requests("/fetch") >= polls + 3,
        timeout=180,
    )
    time.sleep(QUIET)
    assert len(runs(deployment)) == BATCHES + 1, "fired again for the unacknowledged batch: " + str(runs(deployment))
    after_restart = log.read_text(encoding="utf-8", errors="replace")[restarted_at:]
    assert "(from the asset state store)" in after_restart, after_restart[-3000:]

    # The batch is still there for the next run; a manual one takes it, and only it.
    manual = deployment.api("POST", f"dags/{DAG_ID}/dagRuns", {"logical_date": None})["dag_run_id"]
    assert deployment.wait_for_run(DAG_ID, manual, timeout=180)["state"] == "success"
    drained = deployment.xcom(DAG_ID, manual, TASK)
    assert (drained["rows_written"], drained["caught_up"]) == (len(late), True)
    assert table_ids(deployment) == sorted(c["id"] for c in seeded + late)
    assert events_stream.fetch_stream(deployment.dataset, EVENTS_STREAM, size=16)["results"] == []
