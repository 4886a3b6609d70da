"""The example DAGs on two workers, every hand-off through S3 (``s3://aws_default@cm-workers/...``).

Each case runs one DAG as a user would (REST API, ``conf``) and checks its outcome exactly: what
was billed, what the stream and the warehouse hold, what each object in S3 holds. Tasks of one
run land on either worker, so a file handed over through a worker's disk would be missing; the
hosts each task ran on are reported.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter
from typing import Any

import pytest

from tests.deployment.conftest import STREAM, Postgres, deployment_hook, read_banking77, upload_comments
from tests.workers.conftest import BUCKET, SQLITE_FILE, WORKERS, CeleryDeployment

pytestmark = pytest.mark.workers

#: Days of BANKING77 each case uploads (no other case of the tier uploads them).
UPLOAD_DAY = "2026-10-01"
DRAIN_DAY = "2026-10-02"
PREDICT_DAY = "2026-10-22"
WAREHOUSE_DAYS = ("2026-10-01", "2026-10-02")
SQLITE_DAY = "2026-10-24"


def day_records(day: str) -> list[dict[str, Any]]:
    return [r for r in read_banking77() if r["comment"]["timestamp"].startswith(day)]


def put_jsonl(workers: CeleryDeployment, key: str, records: list[dict[str, Any]]) -> str:
    """Put ``records`` as JSONL at ``key`` in the bucket; return its URI with the connection."""
    body = "".join(json.dumps(record) + "\n" for record in records).encode("utf-8")
    workers.s3().put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"{workers.s3_root}/{key}"


def s3_key(uri: str) -> str:
    return uri.split(f"{BUCKET}/", 1)[1]


def billed(workers: CeleryDeployment) -> int:
    return int(workers.emulator_stats()["billed_comments"])


def assert_succeeded(workers: CeleryDeployment, dag_id: str, run_id: str, timeout: float = 240) -> dict[str, str]:
    run = workers.wait_for_run(dag_id, run_id, timeout=timeout)
    states = workers.task_states(dag_id, run_id)
    assert run["state"] == "success" and set(states.values()) == {"success"}, workers.failures(dag_id, run_id)
    return workers.hosts(dag_id, run_id)


def test_setup_then_upload_a_file_from_object_storage(workers: CeleryDeployment, report):
    hosts = assert_succeeded(workers, "cm_setup", workers.trigger("cm_setup", {}))
    report(f"workers: cm_setup ran on {sorted(set(hosts.values()))}")

    records = day_records(UPLOAD_DAY)
    input_path = put_jsonl(workers, f"inbox/{UPLOAD_DAY}.jsonl", records)
    before = billed(workers)
    run_id = workers.trigger("cm_upload_comments", {"input_path": input_path})
    assert_succeeded(workers, "cm_upload_comments", run_id)

    counts = workers.xcom("cm_upload_comments", run_id, "upload_comments")
    assert (counts["read"], counts["new"], counts["rejected"], counts["annotated"]) == (len(records),) * 2 + (
        0,
        len(records),
    ), counts
    assert billed(workers) - before == len(records)


def test_stream_to_files_hands_each_batch_over_through_object_storage(workers: CeleryDeployment, report):
    dag_id = "cm_stream_to_files"
    hook = deployment_hook()
    try:
        waiting = {r["comment"]["id"] for r in day_records(UPLOAD_DAY)}  # uploaded after the stream's creation
        run_id = workers.start_run(dag_id)
        hosts = assert_succeeded(workers, dag_id, run_id, timeout=300)
        workers.set_paused(dag_id, True)  # every 15 minutes: no later run may take the next cases' results
        workers.fail_unfinished_runs(dag_id)

        fetched = workers.xcom(dag_id, run_id, "fetch_results")
        delivered = workers.xcom(dag_id, run_id, "deliver")
        assert fetched["path"].startswith(workers.s3_root), fetched
        lines = workers.s3_text(s3_key(fetched["path"])).splitlines()
        assert {json.loads(line)["comment"]["id"] for line in lines} == waiting
        outbox = workers.s3_keys(f"exports/outbox/{STREAM}/")
        assert len(outbox) == delivered["delivered"] == len(waiting) - len(delivered["refused_uids"])
        assert hook.fetch_stream(workers.dataset, STREAM, size=16)["results"] == []  # advanced after delivery
        report(f"workers: cm_stream_to_files tasks ran on {hosts}")
    finally:
        hook.close()


def test_stream_drain_writes_one_object_through_part_objects(workers: CeleryDeployment):
    dag_id = "cm_stream_drain"
    hook = deployment_hook()
    try:
        comments = [r["comment"] for r in day_records(DRAIN_DAY)]
        upload_comments(workers, comments)
        run_id = workers.start_run(dag_id)
        assert_succeeded(workers, dag_id, run_id)
        drained = workers.xcom(dag_id, run_id, "drain")
        assert (drained["count"], drained["redelivered"], drained["caught_up"]) == (len(comments), 0, True)
        key = s3_key(drained["path"])
        ids = [json.loads(line)["comment"]["id"] for line in workers.s3_text(key).splitlines()]
        assert sorted(ids) == sorted(c["id"] for c in comments)
        folder, name = key.rsplit("/", 1)
        assert workers.s3_keys(f"{folder}/.{name}.parts/") == []  # assembled, then removed
        assert hook.fetch_stream(workers.dataset, STREAM, size=16)["results"] == []
    finally:
        hook.close()


def test_nightly_export_loads_a_server_warehouse_and_warns_about_sqlite(workers: CeleryDeployment):
    dag_id = "cm_nightly_export"
    expected = {day: {r["comment"]["id"] for r in day_records(day)} for day in WAREHOUSE_DAYS}
    backfill = workers.backfill(dag_id, WAREHOUSE_DAYS[0], WAREHOUSE_DAYS[-1])
    assert backfill["completed_at"], backfill
    for run_id, run in workers.run_ids(dag_id, run_type="backfill").items():
        if run["data_interval_start"][:10] in WAREHOUSE_DAYS:
            assert run["state"] == "success", workers.task_states(dag_id, run_id)
    rows = Postgres.execute(
        "SELECT comment_id, to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM cm_comments", workers.warehouse_db
    )
    assert not [n for n in Counter(row[0] for row in rows).values() if n > 1], "a comment loaded twice"
    loaded: dict[str, set[str]] = {}
    for comment_id, timestamp in rows:
        loaded.setdefault(str(timestamp)[:10], set()).add(comment_id)
    assert loaded == expected

    # The docs' first warehouse, SQLite: a file on the worker that runs the load. It works, and says why
    # it will not add up across workers.
    sqlite_ids = {r["comment"]["id"] for r in day_records(SQLITE_DAY)}
    upload_comments(workers, [r["comment"] for r in day_records(SQLITE_DAY)])
    workers.backfill(dag_id, SQLITE_DAY, SQLITE_DAY, conf={"warehouse_conn_id": "cm_sqlite"})
    runs = workers.run_ids(dag_id, run_type="backfill").items()
    run_id = next(run_id for run_id, run in runs if run["data_interval_start"].startswith(SQLITE_DAY))
    loader = assert_succeeded(workers, dag_id, run_id)["load_into_warehouse"]
    log = workers.task_log(dag_id, run_id, "load_into_warehouse", 1)
    assert "writes to the SQLite database of connection 'cm_sqlite' under CeleryExecutor" in log, log[-3000:]
    # The rows are in that worker's file only.
    with contextlib.closing(sqlite3.connect(workers.local_files(loader) / SQLITE_FILE)) as database:
        assert {row[0] for row in database.execute("SELECT comment_id FROM cm_comments")} == sqlite_ids
    assert not [name for name in WORKERS if name != loader and (workers.local_files(name) / SQLITE_FILE).exists()]


def test_model_tag_gate_reads_and_writes_object_storage(workers: CeleryDeployment):
    dag_id = "cm_model_tag_gate"
    messages = [{"comment": r["comment"]} for r in day_records(PREDICT_DAY)[:10]]
    conf = {
        "input_path": put_jsonl(workers, "predict/in.jsonl", messages),
        "output_path": f"{workers.s3_root}/predict/out.jsonl",
    }
    run_id = workers.trigger(dag_id, conf)
    assert_succeeded(workers, dag_id, run_id)
    lines = workers.s3_text("predict/out.jsonl").splitlines()
    assert len(lines) == len(messages)
