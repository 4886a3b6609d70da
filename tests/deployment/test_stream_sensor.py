"""``cm_stream_to_warehouse`` in a real deployment: the deferrable stream sensor waits in the triggerer.

Each case starts from a fresh, empty stream, starts a run through the REST API and waits until
the sensor is ``deferred`` and the trigger has polled the stream again (so that what changes next
is seen by a running trigger, not raced against the deferral).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_cm.exceptions import CommunicationsMiningNotFoundError
from tests.deployment.conftest import STREAM, Deployment, Postgres, deployment_hook, read_banking77, wait_for

pytestmark = pytest.mark.deployment

DAG_ID = "cm_stream_to_warehouse"
SENSOR = "wait_for_results"
UPSTREAM = ("create_table",)
DOWNSTREAM = ("drain_into_warehouse",)
#: The example DAG polls every 30 s; one poll after the deferral is seen, plus start-up slack.
POLL_WAIT = 120
#: Comments that "arrive" while the sensor waits: a day no other case uploads.
ARRIVING_DAY = "2026-10-15"


@pytest.fixture
def stream(deployment: Deployment) -> Iterator[Any]:
    """A new, empty stream on the deployment's dataset (a new stream starts at its creation time)."""
    hook = deployment_hook()
    with contextlib.suppress(CommunicationsMiningNotFoundError):
        hook.delete_stream(deployment.dataset, STREAM)
    hook.put_stream(deployment.dataset, STREAM, model_version=deployment.model_version)
    assert hook.fetch_stream(deployment.dataset, STREAM, size=16)["results"] == []
    yield hook
    hook.close()
    deployment.fail_unfinished_runs(DAG_ID)


def deferred_sensor(deployment: Deployment) -> str:
    """Start a run; return its id once its sensor is deferred and the trigger has polled since."""
    run_id = deployment.start_run(DAG_ID)
    instance = deployment.wait_for_task(
        DAG_ID, run_id, SENSOR, {"deferred", "success", "failed", "skipped", "up_for_retry"}, timeout=180
    )
    assert instance["state"] == "deferred", f"the sensor should wait deferred, it is {instance['state']}"
    polls = deployment.emulator_requests("/fetch")
    wait_for("the trigger to poll the stream again", lambda: deployment.emulator_requests("/fetch") > polls, POLL_WAIT)
    assert deployment.task_instance(DAG_ID, run_id, SENSOR)["state"] == "deferred"
    return run_id


def test_deferred_sensor_holds_no_worker_slot_and_resumes_when_comments_arrive(deployment: Deployment, stream):
    run_id = deferred_sensor(deployment)

    pool = deployment.default_pool()
    assert (pool["running_slots"], pool["queued_slots"], pool["occupied_slots"]) == (0, 0, 0), pool
    assert pool["deferred_slots"] == 1, pool  # counted, but not occupying: include_deferred is off
    assert deployment.task_instance(DAG_ID, run_id, SENSOR)["state"] == "deferred"

    arriving = [r["comment"] for r in read_banking77() if r["comment"]["timestamp"].startswith(ARRIVING_DAY)][:5]
    assert stream.sync_comments(deployment.source, arriving)["new"] == len(arriving)

    run = deployment.wait_for_run(DAG_ID, run_id, timeout=POLL_WAIT + 120)
    states = deployment.task_states(DAG_ID, run_id)
    assert run["state"] == "success", states
    assert states == {SENSOR: "success", **dict.fromkeys(UPSTREAM + DOWNSTREAM, "success")}
    sensor = deployment.task_instance(DAG_ID, run_id, SENSOR)
    assert sensor["try_number"] == 1  # resumed from the deferral, not retried

    rows = Postgres.execute("SELECT comment_id FROM cm_stream_results", deployment.warehouse_db)
    assert sorted(row[0] for row in rows) == sorted(c["id"] for c in arriving)
    drained = deployment.xcom(DAG_ID, run_id, "drain_into_warehouse")
    assert (drained["rows_written"], drained["refused_uids"], drained["caught_up"]) == (len(arriving), [], True)
    # Advanced after the commit: the stream is drained.
    assert stream.fetch_stream(deployment.dataset, STREAM, size=16)["results"] == []


def resumed_part(log: str) -> str:
    """The part of a sensor's log written after its trigger completed: the resumed task's own lines."""
    lines = log.splitlines()
    ends = [n for n, line in enumerate(lines) if "trigger completed" in line]
    assert ends, f"the sensor's log shows no trigger completing:\n{log[-3000:]}"
    return "\n".join(lines[ends[-1] + 1 :])


def assert_sensor_failed(deployment: Deployment, run_id: str, *clues: str) -> None:
    """The sensor FAILED (soft_fail=True must not turn an API error into a skip); nothing ran after it.

    The resumed task's own log must show the failure and its cause, not only the task state: in
    Airflow 3.3 a stale event can finish a task instance (apache/airflow#72716).
    """
    run = deployment.wait_for_run(DAG_ID, run_id, timeout=POLL_WAIT + 120)
    states = deployment.task_states(DAG_ID, run_id)
    sensor = deployment.task_instance(DAG_ID, run_id, SENSOR)
    log = deployment.task_log(DAG_ID, run_id, SENSOR, sensor["try_number"])
    assert sensor["state"] == "failed", f"sensor {sensor['state']} (run {run['state']}), its log:\n{log[-3000:]}"
    assert run["state"] == "failed"
    assert {states[task] for task in DOWNSTREAM} == {"upstream_failed"}, states
    resumed = resumed_part(log)
    assert "Task failed with exception" in resumed, resumed[-3000:]
    assert any(clue in resumed for clue in clues), f"the resumed sensor's log names none of {clues}:\n{resumed[-3000:]}"


def test_stream_deleted_while_the_sensor_waits_fails_the_task(deployment: Deployment, stream):
    run_id = deferred_sensor(deployment)
    stream.delete_stream(deployment.dataset, STREAM)
    assert_sensor_failed(deployment, run_id, "HTTP 404", "Not Found")


def test_token_changed_while_the_sensor_waits_fails_the_task(deployment: Deployment, stream):
    run_id = deferred_sensor(deployment)
    # The emulator comes back on its saved state with another token: the connection's is refused.
    deployment.stop("emulator")
    deployment.start_emulator(token="cm-rotated-" + secrets.token_hex(16))
    try:
        assert_sensor_failed(deployment, run_id, "HTTP 401", "Unauthorized")
    finally:
        deployment.stop("emulator")
        deployment.start_emulator()
