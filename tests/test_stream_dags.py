"""The stream and model-gate example DAGs end to end with ``dag.test()`` on BANKING77.

The first 20 days are uploaded with labels, a model is pinned and tagged ``live``, a stream is
created on it, and the remaining days are uploaded without labels. ``cm_stream_to_warehouse``
then drains every later comment into the warehouse exactly once, with predicted labels whose
accuracy against the held-back labels is reported.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from tests.conftest import BANKING77_JSONL, new_workspace, read_jsonl, write_jsonl
from tests.test_example_dags import load_dag, xcom_values

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


def run_stream_dag(expect: str = "success"):
    dag_run = load_dag("cm_stream_to_warehouse").test()
    assert dag_run.state == expect
    return dag_run


def test_stream_dag_drains_every_later_comment_exactly_once_at_least_once_on_failure(stream_setup, monkeypatch, report):
    setup = stream_setup
    db_path = setup["tmp"] / "warehouse.db"
    stream_env(monkeypatch, setup, json.dumps({"conn_type": "sqlite", "host": str(db_path)}))
    monkeypatch.setenv("CM_SENSOR_TIMEOUT", "5")

    # A run whose load fails after the fetch: nothing is advanced, the batch comes back next run.
    monkeypatch.setenv("CM_WAREHOUSE_CONN_ID", "no_such_warehouse")
    failed = run_stream_dag(expect="failed")
    fetched = xcom_values(failed)["fetch_results"]
    assert fetched["count"] == 1024 and "advance_stream" not in xcom_values(failed)
    monkeypatch.setenv("CM_WAREHOUSE_CONN_ID", "cm_stream_warehouse")

    first = run_stream_dag()
    assert xcom_values(first)["fetch_results"]["sequence_id"] == fetched["sequence_id"]  # redelivered
    # Each key of the fetch result is an XCom of its own: the DAG advances with fetch.output["sequence_id"].
    assert xcom_value(first, "fetch_results", "sequence_id") == fetched["sequence_id"]
    assert xcom_value(first, "advance_stream", "return_value") == fetched["sequence_id"]
    assert not xcom_value(first, "fetch_results", "path").startswith("file://")
    runs = 1
    while not xcom_values(run_stream_dag()).get("fetch_results", {}).get("caught_up"):
        runs += 1
        assert runs < 10  # 3,549 comments in batches of 1,024
    hook = setup["hook"]
    ws = setup["workspace"]
    assert hook.fetch_stream(ws.dataset, "new-messages", size=10)["results"] == []
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT comment_id, top_label FROM cm_stream_results").fetchall()
    late = {r["comment"]["id"]: r["labelling"][0]["assigned"][0]["name"] for r in setup["late"]}
    ids = [comment_id for comment_id, _ in rows]
    assert len(ids) == len(set(ids)) == len(late) and set(ids) == set(late)
    accuracy = sum(late[comment_id] == label for comment_id, label in rows) / len(rows)
    report(
        f"BANKING77 stream: {len(rows)} later comments drained exactly once in {runs + 2} DAG runs; "
        f"top predicted label right for {accuracy:.1%} (77 intents, chance 1.3%)"
    )
    assert accuracy > 0.6  # 77 intents: chance is about 1.3%

    # Caught up: the deferrable sensor waits in the trigger, times out and soft-fails (skips).
    idle = run_stream_dag()
    assert idle.get_task_instance("wait_for_results").state == "skipped"


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
    values = xcom_values(run)
    assert values["load_into_warehouse"]["refused_uids"] == [f"{ws.source_id}.empty-1"]
    assert values["tag_exceptions"] == 1 and values["advance_stream"]
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
