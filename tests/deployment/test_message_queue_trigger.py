"""``cm_stream_queue_events`` in a real deployment: ``MessageQueueTrigger(scheme="communications-mining")``
in an ``AssetWatcher`` runs the provider's stream event trigger in the triggerer, and N batches give N runs.

The DAG has its own stream and table (``QUEUE_STREAM``, ``QUEUE_TABLE``) and the batch size and poll
interval of ``cm_stream_events`` (``EVENTS_BATCH_SIZE``, ``EVENTS_POLL_INTERVAL``). Its finished
runs also show the task's "Communications Mining" extra link through the REST API.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_cm.exceptions import CommunicationsMiningNotFoundError
from tests.deployment.conftest import (
    EVENTS_BATCH_SIZE,
    EVENTS_POLL_INTERVAL,
    QUEUE_STREAM,
    QUEUE_TABLE,
    Deployment,
    Postgres,
    deployment_hook,
    read_banking77,
    wait_for,
)

pytestmark = pytest.mark.deployment

DAG_ID = "cm_stream_queue_events"
TASK = "drain_batch"
#: Batches seeded at once: one run each.
BATCHES = 3
#: Comments that arrive for this case: a day no other case uploads.
QUEUE_DAY = "2026-10-17"
#: Seconds to watch for a run that should not come: ten polls, and the scheduler's loop.
QUIET = 10 * EVENTS_POLL_INTERVAL + 10
#: Seconds for the runs of the seeded batches (parse, watcher start, and a run after each).
RUNS_WAIT = 420


@pytest.fixture
def queue_stream(deployment: Deployment) -> Iterator[Any]:
    """A new, empty stream for the DAG (it starts at its creation time); the DAG paused after."""
    hook = deployment_hook()
    with contextlib.suppress(CommunicationsMiningNotFoundError):
        hook.delete_stream(deployment.dataset, QUEUE_STREAM)
    hook.put_stream(deployment.dataset, QUEUE_STREAM, model_version=deployment.model_version)
    assert hook.fetch_stream(deployment.dataset, QUEUE_STREAM, size=16)["results"] == []
    deployment.wait_for_dag(DAG_ID)
    yield hook
    deployment.set_paused(DAG_ID, True)  # its watcher stops: nothing polls the stream after the case
    hook.close()
    deployment.fail_unfinished_runs(DAG_ID)


def runs(deployment: Deployment) -> list[dict[str, Any]]:
    """The DAG's runs, oldest first."""
    return sorted(deployment.run_ids(DAG_ID).values(), key=lambda run: run["run_after"])


def finished_runs(deployment: Deployment, count: int) -> list[dict[str, Any]] | None:
    """The runs once ``count`` have finished; fails at once if one failed."""
    seen = runs(deployment)
    failed = [run for run in seen if run["state"] not in ("queued", "running", "success")]
    assert not failed, [(run["dag_run_id"], deployment.task_states(DAG_ID, run["dag_run_id"])) for run in failed]
    done = [run for run in seen if run["state"] == "success"]
    return seen if len(done) >= count else None


def test_message_queue_trigger_starts_one_run_per_batch_and_each_takes_exactly_its_batch(
    deployment: Deployment, queue_stream: Any
):
    comments = [r["comment"] for r in read_banking77() if r["comment"]["timestamp"].startswith(QUEUE_DAY)]
    seeded = comments[: BATCHES * EVENTS_BATCH_SIZE]
    assert len(seeded) == BATCHES * EVENTS_BATCH_SIZE
    assert queue_stream.sync_comments(deployment.source, seeded)["new"] == len(seeded)
    deployment.set_paused(DAG_ID, False)

    done = wait_for(f"{BATCHES} runs", lambda: finished_runs(deployment, BATCHES), timeout=RUNS_WAIT, interval=2)
    time.sleep(QUIET)
    assert len(runs(deployment)) == BATCHES, "a run more than batches: " + str(runs(deployment))
    assert {run["run_type"] for run in done} == {"asset_triggered"}

    first_uids = set()
    for run in done:
        events = deployment.api("GET", f"dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")
        [event] = events["asset_events"]
        assert event["extra"]["from_trigger"] is True
        payload = event["extra"]["payload"]
        drained = deployment.xcom(DAG_ID, run["dag_run_id"], TASK)
        assert (drained["rows_written"], drained["batches"], drained["refused_uids"]) == (EVENTS_BATCH_SIZE, 1, [])
        assert payload["sequence_id"] == drained["sequence_id"], (payload, drained)  # the batch that fired
        assert (payload["stream"], payload["results"]) == (QUEUE_STREAM, EVENTS_BATCH_SIZE)
        assert payload["redelivered"] is False
        first_uids.add(payload["first_uid"])
    assert len(first_uids) == BATCHES

    rows = Postgres.execute(f"SELECT comment_id FROM {QUEUE_TABLE}", deployment.warehouse_db)
    assert sorted(row[0] for row in rows) == sorted(c["id"] for c in seeded)  # every comment once
    assert queue_stream.fetch_stream(deployment.dataset, QUEUE_STREAM, size=16)["results"] == []

    # The trigger that ran in the triggerer was the provider's, reached through the scheme: its own log lines.
    log = (deployment.logs / "triggerer.log").read_text(encoding="utf-8", errors="replace")
    fired = f"results (0 filtered) in stream {QUEUE_STREAM} of {deployment.dataset}"
    assert log.count(fired) == BATCHES, log[-3000:]

    # A finished task's extra link, as the Airflow UI reads it.
    links = deployment.api("GET", f"dags/{DAG_ID}/dagRuns/{done[0]['dag_run_id']}/taskInstances/{TASK}/links")
    assert links == {
        "extra_links": {"Communications Mining": f"{deployment.emulator_url}/acme/production/reinfer_"},
        "total_entries": 1,
    }
