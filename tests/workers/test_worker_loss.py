"""A worker lost mid-task (SIGKILL to it and every process it started); the retry runs on the other one.

Each case sends the task to ``worker-a`` alone (``worker-b`` stops taking tasks from the default
queue), slows the emulator so that the task is killed mid-way, kills ``worker-a`` once the task
has done part of its work, and lets ``worker-b`` take the default queue again. The scheduler
fails the silent task after its heartbeat timeout and the retry runs on ``worker-b``, whose disk
holds nothing of the first try. Then ``worker-a`` is started again for the next case.

What must hold: nothing the first try acknowledged (stream) or stored (upload) is lost, nothing
is billed twice, and what a retry had to do again is said in its XCom and its log.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_cm.exceptions import CommunicationsMiningNotFoundError
from tests.deployment.conftest import STREAM, deployment_hook, read_banking77, upload_comments, wait_for
from tests.workers.conftest import BUCKET, CeleryDeployment

pytestmark = pytest.mark.workers

DRAIN = "cm_stream_drain"
UPLOAD = "cm_upload_comments"
#: Days of BANKING77 each case uploads (no other case of the tier uploads them).
LOCAL_DRAIN_DAYS = ("2026-10-03", "2026-10-04")
S3_DRAIN_DAYS = ("2026-10-05", "2026-10-06")
UPLOAD_DAYS = ("2026-10-07", "2026-10-08")
#: Seconds the emulator waits before each answer while the first try runs: long enough to kill it mid-way.
LATENCY = 0.25
#: The tier's drain batch (``CM_DRAIN_BATCH_SIZE``).
BATCH = 50


def records_of(days: tuple[str, ...]) -> list[dict[str, Any]]:
    return [r for r in read_banking77() if r["comment"]["timestamp"][:10] in days]


@pytest.fixture
def lose_worker_a(workers: CeleryDeployment) -> Iterator[Callable[[Callable[[], bool]], None]]:
    """Send the next task to worker-a alone; the function returned kills worker-a once ``progressed()``
    and hands the default queue back to worker-b. Afterwards worker-a is started again, faults cleared."""
    caught_up_stream(workers)  # before the drain DAG is first unpaused: its scheduled run needs the stream
    workers.settle(DRAIN)
    caught_up_stream(workers)
    workers.set_consuming_default("worker-b", False)

    def kill_when(progressed: Callable[[], bool]) -> None:
        wait_for("the first try to make progress", progressed, timeout=180, interval=0.2)
        workers.kill_worker("worker-a")
        workers.emulator_faults(None)
        workers.set_consuming_default("worker-b", True)

    yield kill_when
    workers.emulator_faults(None)
    if "worker-a" not in workers.processes:
        workers.start_worker("worker-a")
    workers.set_consuming_default("worker-b", True)


def assert_retried_on_worker_b(workers: CeleryDeployment, dag_id: str, run_id: str, task_id: str) -> str:
    """The run succeeded on its second try, which ran on worker-b after try 1 on worker-a; its log."""
    run = workers.wait_for_run(dag_id, run_id, timeout=360)
    instance = workers.task_instance(dag_id, run_id, task_id)
    assert run["state"] == "success", workers.failures(dag_id, run_id)
    first = workers.task_try(dag_id, run_id, task_id, 1)
    assert (first["hostname"], first["state"]) == ("worker-a", "failed"), first
    assert (instance["try_number"], instance["hostname"]) == (2, "worker-b"), instance
    return workers.task_log(dag_id, run_id, task_id, 2)


def caught_up_stream(workers: CeleryDeployment) -> None:
    """The stream ``cm_setup`` creates (created here when this module runs alone), with nothing left in it
    by earlier cases: a case's drain must hold exactly the comments it uploads."""
    hook = deployment_hook()
    try:
        try:
            hook.get_stream(workers.dataset, STREAM)
        except CommunicationsMiningNotFoundError:
            hook.put_stream(workers.dataset, STREAM, model_version=workers.model_version)
        while (batch := hook.fetch_stream(workers.dataset, STREAM, size=1024))["results"]:
            hook.advance_stream(workers.dataset, STREAM, batch["sequence_id"])
    finally:
        hook.close()


def upload_to_stream(workers: CeleryDeployment, days: tuple[str, ...]) -> list[str]:
    """Upload ``days`` to the source (so to the stream); return their comment ids."""
    comments = [r["comment"] for r in records_of(days)]
    upload_comments(workers, comments)
    hook = deployment_hook()
    try:
        assert hook.fetch_stream(workers.dataset, STREAM, size=1)["results"], "nothing in the stream"
    finally:
        hook.close()
    return [c["id"] for c in comments]


def advances_from(workers: CeleryDeployment, count: int) -> Callable[[], bool]:
    """Whether ``count`` more advances than now reached the emulator (the first try acknowledged them)."""
    before = workers.emulator_requests("/advance")
    return lambda: workers.emulator_requests("/advance") >= before + count


def drained_ids(text: str) -> list[str]:
    return [json.loads(line)["comment"]["id"] for line in text.splitlines() if line.strip()]


def test_drain_to_a_local_path_redelivers_what_the_lost_worker_held(workers: CeleryDeployment, lose_worker_a):
    ids = upload_to_stream(workers, LOCAL_DRAIN_DAYS)
    workers.emulator_faults({"latency": LATENCY})
    progressed = advances_from(workers, 3)
    # A local folder: ~ is each worker's own HOME, as a local disk is each machine's own.
    run_id = workers.trigger(DRAIN, {"drain_root": "~/drain"})
    lose_worker_a(progressed)

    log = assert_retried_on_worker_b(workers, DRAIN, run_id, "drain")
    drained = workers.xcom(DRAIN, run_id, "drain")
    assert drained["redelivered"] >= 3 * BATCH, drained
    assert (drained["count"], drained["caught_up"]) == (len(ids), True), drained
    name = run_id.replace(":", "_") + ".jsonl"
    delivered = drained_ids((workers.local_files("worker-b") / "home" / "drain" / STREAM / name).read_text())
    assert sorted(delivered) == sorted(ids)  # every result, once: the retry started again from the first
    # What the first try acknowledged is still in the lost worker's spool, named in the retry's log.
    spool = workers.local_files("worker-a") / "home" / "drain" / STREAM / f".{name}.drain"
    assert len(drained_ids(spool.read_text())) >= 3 * BATCH
    assert f"results in {spool} on host worker-a" in log, log[-4000:]
    assert "of them delivered again: an earlier try's output was not on this worker" in log, log[-4000:]
    assert "uses a local output_path" in log and "under CeleryExecutor" in log, log[-4000:]


def test_drain_to_object_storage_keeps_what_the_lost_worker_wrote(workers: CeleryDeployment, lose_worker_a):
    ids = upload_to_stream(workers, S3_DRAIN_DAYS)
    workers.emulator_faults({"latency": LATENCY})
    progressed = advances_from(workers, 3)
    run_id = workers.trigger(DRAIN, {"drain_root": f"{workers.s3_root}/drain"})
    lose_worker_a(progressed)

    log = assert_retried_on_worker_b(workers, DRAIN, run_id, "drain")
    drained = workers.xcom(DRAIN, run_id, "drain")
    assert (drained["redelivered"], drained["caught_up"]) == (0, True), drained
    key = drained["path"].split(f"{BUCKET}/", 1)[1]
    delivered = drained_ids(workers.s3_text(key))
    # At least once: a batch written but not yet acknowledged when the worker died comes again.
    assert set(delivered) == set(ids) and drained["count"] == len(delivered), drained
    assert sum(n - 1 for n in Counter(delivered).values()) <= BATCH
    assert "Keeping the" in log and "results an earlier try wrote" in log, log[-4000:]
    assert "uses a local" not in log
    folder, name = key.rsplit("/", 1)
    assert workers.s3_keys(f"{folder}/.{name}.parts/") == []


def test_upload_retried_on_another_worker_bills_nothing_twice(workers: CeleryDeployment, lose_worker_a):
    records = records_of(UPLOAD_DAYS)
    key = "inbox/lost-worker.jsonl"
    body = "".join(json.dumps(record) + "\n" for record in records).encode("utf-8")
    workers.s3().put_object(Bucket=BUCKET, Key=key, Body=body)
    billed_before = workers.emulator_stats()["billed_comments"]
    writes_before = workers.emulator_requests("/labellings/{uid}")
    workers.emulator_faults({"latency": LATENCY})

    run_id = workers.trigger(UPLOAD, {"input_path": f"{workers.s3_root}/{key}"})
    # Killed once every comment is stored and some of their labels written.
    lose_worker_a(lambda: workers.emulator_requests("/labellings/{uid}") >= writes_before + 40)

    assert_retried_on_worker_b(workers, UPLOAD, run_id, "upload_comments")
    counts = workers.xcom(UPLOAD, run_id, "upload_comments")
    assert workers.emulator_stats()["billed_comments"] - billed_before == len(records), counts
    assert (counts["read"], counts["rejected"], counts["annotations_rejected"]) == (len(records), 0, 0), counts
    assert counts["new"] + counts["updated"] + counts["unchanged"] == len(records), counts
    assert counts["annotated"] + counts["annotations_unchanged"] == len(records), counts
    assert counts["annotations_unchanged"] >= 40, counts  # the first try's label writes were not sent again
    hook = deployment_hook()
    try:
        stored = [hook.get_comment(workers.source, r["comment"]["id"]) for r in records[:: max(1, len(records) // 20)]]
    finally:
        hook.close()
    assert all(comment["id"] for comment in stored)
