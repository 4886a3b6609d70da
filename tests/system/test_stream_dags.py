"""The stream and model-gate example DAGs end to end with ``dag.test()`` on BANKING77.

The first 20 days are uploaded with labels, a model is pinned and tagged ``live``, two streams are
created on it, and the remaining days are uploaded without labels. ``cm_stream_to_warehouse``
drains every later comment into the warehouse exactly once in one run (a failed advance between
two batches is made good by the next run), with predicted labels whose accuracy against the
held-back labels is reported; ``cm_stream_to_files`` delivers them batch by batch into an outbox,
advancing only after each delivery.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
import requests

from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from tests.conftest import BANKING77_JSONL, TOKEN, connection_json, new_workspace, read_jsonl, write_jsonl
from tests.system.test_example_dags import load_dag, xcom_values

SPLIT = "2026-10-21T00:00:00Z"


@pytest.fixture(scope="module")
def stream_setup(emulator, airflow_db, tmp_path_factory) -> dict[str, Any]:
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    tmp = tmp_path_factory.mktemp("stream")
    records = read_jsonl(BANKING77_JSONL)
    early = [r for r in records if r["comment"]["timestamp"] < SPLIT]
    late = [r for r in records if r["comment"]["timestamp"] >= SPLIT]
    workspace = new_workspace(hook)
    CommunicationsMiningUploadCommentsOperator(
        task_id="early", source=workspace.source, dataset=workspace.dataset,
        input_path=str(write_jsonl(tmp / "early.jsonl", early)),
    ).execute({})  # fmt: skip
    version = emulator.admin("POST", f"datasets/{workspace.dataset}/models", {"tag": "live"})["version"]
    hook.put_stream(workspace.dataset, "new-messages", model_version=version)
    hook.put_stream(workspace.dataset, "to-files", model_version=version)
    # The later days go to the source only: their labels are held back to score the predictions.
    CommunicationsMiningUploadCommentsOperator(
        task_id="late", source=workspace.source, input_path=str(write_jsonl(tmp / "late.jsonl", late))
    ).execute({})
    return {"hook": hook, "workspace": workspace, "late": late, "tmp": tmp, "version": version}


def stream_env(monkeypatch, setup, warehouse_conn: str, table: str = "cm_stream_results") -> None:
    monkeypatch.setenv("CM_DATASET", setup["workspace"].dataset)
    monkeypatch.setenv("CM_STREAM", "new-messages")
    monkeypatch.setenv("CM_EXPORT_ROOT", str(setup["tmp"] / "exports"))
    monkeypatch.setenv("CM_WAREHOUSE_CONN_ID", "cm_stream_warehouse")
    monkeypatch.setenv("CM_STREAM_TABLE", table)
    monkeypatch.setenv("AIRFLOW_CONN_CM_STREAM_WAREHOUSE", warehouse_conn)


def xcom_value(dag_run, task_id: str, key: str):
    """One XCom of a finished run, read from the metadata database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key)
        return row.one().value


def run_stream_dag(expect: str = "success", dag_id: str = "cm_stream_to_warehouse"):
    dag_run = load_dag(dag_id).test()
    assert dag_run.state == expect
    return dag_run


def test_stream_dag_drains_the_backlog_in_one_run_exactly_once_after_a_failure_between_batches(
    stream_setup, monkeypatch, report, emulator
):
    setup = stream_setup
    hook, ws = setup["hook"], setup["workspace"]
    db_path = setup["tmp"] / "warehouse.db"
    stream_env(monkeypatch, setup, json.dumps({"conn_type": "sqlite", "host": str(db_path)}))
    monkeypatch.setenv("CM_SENSOR_TIMEOUT", "5")
    late = {r["comment"]["id"]: r["labelling"][0]["assigned"][0]["name"] for r in setup["late"]}

    # A run whose second advance fails (500, no retry): batch 1 is committed and acknowledged,
    # batch 2 is committed but not acknowledged, and the run fails.
    monkeypatch.setenv(
        "AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT",
        connection_json(f"{emulator.url}/acme/production/reinfer_", retry_max_attempts=1),
    )
    rule = {"kind": "status", "status": 500, "path_contains": "/streams/new-messages/advance", "every": 2}
    response = requests.post(
        f"{emulator.url}/_emulator/faults", json={"faults": [rule]}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text
    try:
        failed = run_stream_dag(expect="failed")
    finally:
        requests.delete(f"{emulator.url}/_emulator/faults", headers={"Authorization": f"Bearer {TOKEN}"})
    assert failed.get_task_instance("drain_into_warehouse").state == "failed"
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM cm_stream_results").fetchone() == (2048,)
    assert len(hook.fetch_stream(ws.dataset, "new-messages", size=1024)["results"]) == 1024  # batch 2 again
    monkeypatch.undo()
    stream_env(monkeypatch, setup, json.dumps({"conn_type": "sqlite", "host": str(db_path)}))
    monkeypatch.setenv("CM_SENSOR_TIMEOUT", "5")

    # The next run drains everything that is left, in one task.
    run = run_stream_dag()
    drained = xcom_values(run)["drain_into_warehouse"]
    assert drained["caught_up"] is True and drained["refused_uids"] == []
    assert drained["rows_written"] == len(late) - 1024 and drained["batches"] == -(-(len(late) - 1024) // 1024)
    assert xcom_value(run, "drain_into_warehouse", "caught_up") is True  # each key is an XCom of its own
    assert hook.fetch_stream(ws.dataset, "new-messages", size=10)["results"] == []
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT comment_id, top_label FROM cm_stream_results").fetchall()
    ids = [comment_id for comment_id, _ in rows]
    assert len(ids) == len(set(ids)) == len(late) and set(ids) == set(late)
    accuracy = sum(late[comment_id] == label for comment_id, label in rows) / len(rows)
    report(
        f"BANKING77 stream: {len(rows)} later comments drained exactly once into SQL, the last "
        f"{drained['rows_written']} in one run of {drained['batches']} batches after a failed advance; "
        f"top predicted label right for {accuracy:.1%} (77 intents, chance 1.3%)"
    )
    assert accuracy > 0.6  # 77 intents: chance is about 1.3%

    # Caught up: the deferrable sensor waits in the trigger, times out and soft-fails (skips).
    idle = run_stream_dag()
    assert idle.get_task_instance("wait_for_results").state == "skipped"


def test_files_dag_delivers_every_later_comment_advancing_only_after_each_delivery(stream_setup, monkeypatch):
    setup = stream_setup
    stream_env(monkeypatch, setup, json.dumps({"conn_type": "sqlite", "host": str(setup["tmp"] / "unused.db")}))
    monkeypatch.setenv("CM_STREAM", "to-files")
    monkeypatch.setenv("CM_SENSOR_TIMEOUT", "5")
    outbox = setup["tmp"] / "exports" / "outbox" / "to-files"

    # A run whose delivery fails after the fetch (the outbox is a file): nothing is advanced,
    # the batch comes back next run.
    outbox.parent.mkdir(parents=True, exist_ok=True)
    outbox.write_text("in the way")
    failed = run_stream_dag(expect="failed", dag_id="cm_stream_to_files")
    fetched = xcom_values(failed)["fetch_results"]
    assert fetched["count"] == 1024 and "advance_stream" not in xcom_values(failed)
    outbox.unlink()

    first = run_stream_dag(dag_id="cm_stream_to_files")
    assert xcom_values(first)["fetch_results"]["sequence_id"] == fetched["sequence_id"]  # redelivered
    # Each key of the fetch result is an XCom of its own: the DAG advances with fetch.output["sequence_id"].
    assert xcom_value(first, "fetch_results", "sequence_id") == fetched["sequence_id"]
    assert xcom_value(first, "advance_stream", "return_value") == fetched["sequence_id"]
    assert not xcom_value(first, "fetch_results", "path").startswith("file://")
    runs = 1
    while not xcom_values(run_stream_dag(dag_id="cm_stream_to_files")).get("fetch_results", {}).get("caught_up"):
        runs += 1
        assert runs < 10  # 3,549 comments in batches of 1,024
    assert setup["hook"].fetch_stream(setup["workspace"].dataset, "to-files", size=10)["results"] == []
    late = {r["comment"]["id"] for r in setup["late"]}
    delivered = [json.loads(path.read_text())["comment_id"] for path in outbox.glob("*.json")]
    assert len(delivered) == len(set(delivered)) == len(late) and set(delivered) == late


def test_deferred_sensor_completes_when_comments_arrive_and_refused_rows_become_exceptions(stream_setup, monkeypatch):
    setup = stream_setup
    hook, ws = setup["hook"], setup["workspace"]
    db_path = setup["tmp"] / "warehouse-2.db"
    stream_env(monkeypatch, setup, json.dumps({"conn_type": "sqlite", "host": str(db_path)}), table="refusals")
    hook.put_stream(ws.dataset, "refusals", model_version=setup["version"])
    monkeypatch.setenv("CM_STREAM", "refusals")
    hook.sync_comments(
        ws.source,
        [
            {"id": "empty-1", "timestamp": "2026-10-31T10:00:00Z", "messages": [{"body": {"text": " "}}]},
            {"id": "ok-1", "timestamp": "2026-10-31T10:01:00Z", "messages": [{"body": {"text": "card lost"}}]},
        ],
    )
    run = run_stream_dag()
    assert run.get_task_instance("wait_for_results").state == "success"
    drained = xcom_values(run)["drain_into_warehouse"]
    # The table's CHECK refuses the message with no text: left out, tagged, and the stream moved on.
    assert drained["refused_uids"] == [f"{ws.source_id}.empty-1"] and drained["rows_written"] == 1
    assert drained["caught_up"] and hook.fetch_stream(ws.dataset, "refusals", size=4)["results"] == []
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT comment_id FROM refusals").fetchall() == [("ok-1",)]


def test_model_tag_gate_dag(stream_setup, monkeypatch, tmp_path, emulator):
    setup = stream_setup
    ws = setup["workspace"]
    monkeypatch.setenv("CM_DATASET", ws.dataset)
    monkeypatch.setenv("CM_EXPECTED_VERSION", str(setup["version"]))
    messages = write_jsonl(tmp_path / "new.jsonl", [{"comment": r["comment"]} for r in setup["late"][:50]])
    conf = {"input_path": str(messages), "output_path": str(tmp_path / "predictions.jsonl")}
    before = emulator.stats()["billed_predictions"]
    run = load_dag("cm_model_tag_gate").test(run_conf=conf)
    assert run.state == "success"
    assert len(read_jsonl(tmp_path / "predictions.jsonl")) == 50
    assert emulator.stats()["billed_predictions"] - before == 50
    # The live tag moves to a new version: the gate fails before anything is predicted (billed).
    emulator.admin("POST", f"datasets/{ws.dataset}/models", {"tag": "live"})
    drifted = load_dag("cm_model_tag_gate").test(run_conf=conf)
    assert drifted.state == "failed"
    assert drifted.get_task_instance("predict_new_messages").state in ("upstream_failed", None)
    assert emulator.stats()["billed_predictions"] - before == 50


def test_replay_dag_moves_a_stream_back_and_refuses_to_skip_unread_results(stream_setup, monkeypatch):
    setup = stream_setup
    hook, dataset = setup["hook"], setup["workspace"].dataset
    hook.put_stream(dataset, "replay", model_version=setup["version"])  # starts now: nothing to read yet
    monkeypatch.setenv("CM_DATASET", dataset)
    monkeypatch.setenv("CM_STREAM", "replay")
    assert hook.fetch_stream(dataset, "replay", size=1)["results"] == []

    back = load_dag("cm_stream_replay").test(run_conf={"to_comment_created_at": "2000-01-01T00:00:00Z"})
    assert back.state == "success"
    assert xcom_values(back)["reset_stream"]["to_comment_created_at"].startswith("2000-01-01T00:00:00")
    assert len(hook.fetch_stream(dataset, "replay", size=16)["results"]) == 16  # every upload comes again

    # Forward past the results now waiting would drop them unread: refused, the stream stays where it is.
    forward = load_dag("cm_stream_replay").test(run_conf={"to_comment_created_at": "2100-01-01T00:00:00Z"})
    assert forward.state == "failed"
    assert len(hook.fetch_stream(dataset, "replay", size=16)["results"]) == 16
