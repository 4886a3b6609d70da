"""The example DAGs end to end with ``dag.test()`` on the real BANKING77 corpus.

All 10,003 records go through ``cm_upload_comments`` into the emulator with their labels, come
back out day by day through ``cm_nightly_export_to_files`` into files and through
``cm_nightly_export`` straight into a warehouse table (SQLite, and the PostgreSQL server on
127.0.0.1:5432).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cm.operators.datasets import CommunicationsMiningExportDatasetOperator
from tests.conftest import (
    BANKING77_CSV,
    BANKING77_JSONL,
    POSTGRES_URI,
    ROOT,
    TOKEN,
    new_workspace,
    postgres_test_database,
    read_jsonl,
)

UTC = timezone.utc
DAY = datetime(2026, 10, 5, tzinfo=UTC)


def load_dag(name: str):
    """Import an example DAG file afresh, so it reads the current environment."""
    spec = importlib.util.spec_from_file_location(f"{name}_{uuid.uuid4().hex}", ROOT / "example_dags" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def xcom_values(dag_run) -> dict[str, Any]:
    """XCom return values of a finished run, by task id, read from the metadata database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return {row.task_id: row.value for row in rows if row.key == "return_value"}


def rendered_fields(dag_run) -> list[Any]:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id)
        return [row.rendered_fields for row in rows]


def expected_ids(records: list[dict[str, Any]], start: datetime, end: datetime) -> set[str]:
    def moment(record: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(record["comment"]["timestamp"])

    return {r["comment"]["id"] for r in records if start <= moment(r) < end}


class Pipeline:
    """A workspace and the environment the example DAGs read, for one corpus upload."""

    def __init__(self, hook: Any, tmp: Path, warehouse_conn: str, prefix: str) -> None:
        self.workspace = new_workspace(hook)
        self.export_root = tmp / "exports"
        self.env = {
            "CM_SOURCE": self.workspace.source,
            "CM_DATASET": self.workspace.dataset,
            "CM_EXPORT_ROOT": str(self.export_root),
            "CM_WAREHOUSE_CONN_ID": "cm_test_warehouse",
            "CM_WAREHOUSE_PREFIX": prefix,
            # The nightly load re-reads the days before its window (7 by default); these tests load single days.
            "CM_LOOKBACK_DAYS": "0",
            "AIRFLOW_CONN_CM_TEST_WAREHOUSE": warehouse_conn,
        }

    def apply(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)

    def upload(self, input_path: Path):
        dag_run = load_dag("cm_upload_comments").test(run_conf={"input_path": str(input_path)})
        assert dag_run.state == "success"
        return dag_run, xcom_values(dag_run)["upload_comments"]

    def export_day(self, day: datetime):
        """A run of ``cm_nightly_export_to_files`` for ``day``: the day's file."""
        return self._run_day("cm_nightly_export_to_files", day)

    def load_day(self, day: datetime):
        """A run of ``cm_nightly_export`` for ``day``: the day's comments merged into the typed tables."""
        return self._run_day("cm_nightly_export", day)

    @staticmethod
    def _run_day(dag_id: str, day: datetime):
        # A daily data-interval run covers the day before its logical date.
        dag_run = load_dag(dag_id).test(logical_date=day + timedelta(days=1))
        assert dag_run.state == "success"
        assert dag_run.data_interval_start == day
        return dag_run, xcom_values(dag_run)


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return read_jsonl(BANKING77_JSONL)


@pytest.fixture(scope="module")
def sqlite_pipeline(emulator, airflow_db, tmp_path_factory) -> Iterator[tuple[Pipeline, dict[str, Any], int]]:
    """BANKING77 uploaded once through the upload DAG into a fresh workspace, SQLite as warehouse."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    tmp = tmp_path_factory.mktemp("sqlite-pipeline")
    warehouse = json.dumps({"conn_type": "sqlite", "host": str(tmp / "warehouse.db")})
    pipeline = Pipeline(CommunicationsMiningHook(), tmp, warehouse, "cm_")
    pipeline.warehouse_path = tmp / "warehouse.db"
    with pytest.MonkeyPatch.context() as monkeypatch:
        pipeline.apply(monkeypatch)
        billed_before = emulator.billed()
        _, counts = pipeline.upload(BANKING77_JSONL)
        yield pipeline, counts, emulator.billed() - billed_before


def test_upload_dag_uploads_every_record_with_labels(sqlite_pipeline, hook, records):
    pipeline, counts, billed = sqlite_pipeline
    assert counts["read"] == counts["new"] == counts["annotated"] == len(records) == 10003
    assert counts["rejected"] == 0 and billed == 10003
    sample = records[1234]
    uid = f"{pipeline.workspace.source_id}.{sample['comment']['id']}"
    [annotated] = hook.get_annotations(pipeline.workspace.dataset, [uid])
    assert annotated["labelling"][0]["assigned"] == sample["labelling"][0]["assigned"]


def test_uploading_the_same_file_again_bills_nothing(sqlite_pipeline, emulator, monkeypatch):
    pipeline, _, _ = sqlite_pipeline
    pipeline.apply(monkeypatch)
    billed_before = emulator.billed()
    _, counts = pipeline.upload(BANKING77_JSONL)
    assert counts["unchanged"] == 10003 and counts["new"] == counts["updated"] == 0
    assert emulator.billed() == billed_before


def test_nightly_export_of_one_day_is_exact(sqlite_pipeline, records, monkeypatch):
    pipeline, _, _ = sqlite_pipeline
    pipeline.apply(monkeypatch)
    _, xcoms = pipeline.export_day(DAY)
    export = xcoms["export_day"]
    exported = read_jsonl(export["path"])
    want = expected_ids(records, DAY, DAY + timedelta(days=1))
    got = [line["comment"]["id"] for line in exported]
    assert len(got) == len(set(got)) == export["count"]
    assert set(got) == want and len(want) > 300
    by_id = {r["comment"]["id"]: r for r in records}
    for line in exported:
        assigned = {label["name"] for label in line["annotations"]["labels"]["assigned"]}
        [label] = by_id[line["comment"]["id"]]["labelling"][0]["assigned"]
        assert assigned == {label["name"], label["name"].split(" > ")[0]}
    assert Path(export["path"]).name == "2026-10-05.jsonl" and Path(export["path"]).is_file()
    counted = xcoms["count_labels"]  # the downstream task read the file from the path in XCom
    assert counted["comments"] == len(want) and counted["path"] == export["path"]
    leaves = {name: n for name, n in counted["labels"].items() if " > " in name}
    assert sum(leaves.values()) == len(want)


def test_nightly_load_of_one_day_is_exact(sqlite_pipeline, records, monkeypatch):
    pipeline, _, _ = sqlite_pipeline
    pipeline.apply(monkeypatch)
    monkeypatch.setenv("CM_WAREHOUSE_PREFIX", "one_day_")
    _, xcoms = pipeline.load_day(DAY)
    loaded = xcoms["load_into_warehouse"]
    want = expected_ids(records, DAY, DAY + timedelta(days=1))
    with sqlite3.connect(pipeline.warehouse_path) as db:
        rows = db.execute("SELECT comment_id, uid FROM one_day_comments").fetchall()
        labelled = {uid for (uid,) in db.execute("SELECT uid FROM one_day_comment_labels WHERE kind = 'assigned'")}
        [(loads,)] = db.execute("SELECT count(*) FROM one_day_loads").fetchall()
    assert sorted(row[0] for row in rows) == sorted(want)
    assert labelled == {uid for _, uid in rows} and loads == 1
    assert (loaded["rows_read"], loaded["mode"], loaded["tables"][0]) == (len(want), "lookback", "one_day_comments")
    assert loaded["start"] == "2026-10-05T00:00:00.000000Z" and loaded["end"] == "2026-10-06T00:00:00.000000Z"


def test_three_days_equal_one_three_day_window_and_reruns_do_not_duplicate(
    sqlite_pipeline, records, monkeypatch, context
):
    pipeline, _, _ = sqlite_pipeline
    pipeline.apply(monkeypatch)
    daily: list[str] = []
    for offset in range(3):
        _, xcoms = pipeline.export_day(DAY + timedelta(days=offset))
        daily += [line["comment"]["id"] for line in read_jsonl(xcoms["export_day"]["path"])]
        pipeline.load_day(DAY + timedelta(days=offset))
    window = CommunicationsMiningExportDatasetOperator(
        task_id="window",
        dataset=pipeline.workspace.dataset,
        output_path=str(pipeline.export_root / "three-days.jsonl"),
        start=DAY,
        end=DAY + timedelta(days=3),
    ).execute(context)
    together = [line["comment"]["id"] for line in read_jsonl(window["path"])]
    assert len(daily) == len(set(daily)) == len(together)
    assert set(daily) == set(together) == expected_ids(records, DAY, DAY + timedelta(days=3))

    def warehouse() -> tuple[int, int]:
        with sqlite3.connect(pipeline.warehouse_path) as db:
            return db.execute("SELECT COUNT(*), COUNT(DISTINCT uid) FROM cm_comments").fetchone()

    assert warehouse() == (len(together), len(together))
    _, xcoms = pipeline.export_day(DAY)  # rerun a day: its file and rows are replaced, not duplicated
    _, loaded = pipeline.load_day(DAY)
    one_day = expected_ids(records, DAY, DAY + timedelta(days=1))
    # The day re-read: nothing changed on the platform, so nothing is written.
    assert loaded["load_into_warehouse"]["rows_read"] == len(one_day)
    assert loaded["load_into_warehouse"]["rows_written"] == 0
    assert xcoms["export_day"]["count"] == len(one_day)
    assert {line["comment"]["id"] for line in read_jsonl(xcoms["export_day"]["path"])} == one_day
    assert len(read_jsonl(xcoms["export_day"]["path"])) == len(one_day)
    assert warehouse() == (len(together), len(together))
    day_files = sorted(p.name for p in (pipeline.export_root / pipeline.workspace.dataset.replace("/", "__")).iterdir())
    assert day_files == ["2026-10-05.jsonl", "2026-10-06.jsonl", "2026-10-07.jsonl"]


def test_csv_upload_gives_the_same_result(emulator, airflow_db, hook, records, tmp_path, monkeypatch, context):
    pipeline = Pipeline(hook, tmp_path, json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")}), "t_")
    pipeline.apply(monkeypatch)
    billed_before = emulator.billed()
    _, counts = pipeline.upload(BANKING77_CSV)
    assert counts["new"] == counts["annotated"] == 10003 and emulator.billed() - billed_before == 10003
    result = CommunicationsMiningExportDatasetOperator(
        task_id="csv_day",
        dataset=pipeline.workspace.dataset,
        output_path=str(tmp_path / "day.jsonl"),
        start=DAY,
        end=DAY + timedelta(days=1),
    ).execute(context)
    exported = read_jsonl(result["path"])
    assert {line["comment"]["id"] for line in exported} == expected_ids(records, DAY, DAY + timedelta(days=1))
    by_id = {r["comment"]["id"]: r for r in records}
    for line in exported:
        source = by_id[line["comment"]["id"]]
        assert line["comment"]["messages"][0]["body"]["text"] == source["comment"]["messages"][0]["body"]["text"]
        assert line["comment"]["user_properties"] == source["comment"]["user_properties"]
        names = {label["name"] for label in line["annotations"]["labels"]["assigned"]}
        assert source["labelling"][0]["assigned"][0]["name"] in names


def test_weekly_reconcile_and_the_parquet_example_load_the_whole_corpus(
    sqlite_pipeline, records, tmp_path, monkeypatch
):
    """``cm_weekly_reconcile`` reads every comment into the typed tables; ``cm_parquet_to_duckdb`` writes the
    night's Parquet files (the day and the 7 before) and DuckDB holds them, typed, with their labels."""
    import duckdb

    pipeline, _, _ = sqlite_pipeline
    pipeline.apply(monkeypatch)
    monkeypatch.setenv("CM_WAREHOUSE_PREFIX", "weekly_")
    monkeypatch.setenv("CM_PARQUET_ROOT", str(tmp_path / "parquet"))
    monkeypatch.setenv("CM_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.delenv("CM_LOOKBACK_DAYS")
    weekly = load_dag("cm_weekly_reconcile").test(logical_date=DAY + timedelta(days=1))
    assert weekly.state == "success"
    reconciled = xcom_values(weekly)["reconcile_warehouse"]
    assert (reconciled["mode"], reconciled["rows_read"], reconciled["rows_marked_deleted"]) == ("reconcile", 10003, 0)
    with sqlite3.connect(pipeline.warehouse_path) as db:
        assert db.execute("SELECT count(*) FROM weekly_comments").fetchone()[0] == 10003

    _, xcoms = pipeline._run_day("cm_parquet_to_duckdb", DAY)
    written = xcoms["export_parquet"]
    week = expected_ids(records, DAY - timedelta(days=7), DAY + timedelta(days=1))
    assert (written["count"], written["mode"], written["format"]) == (len(week), "lookback", "parquet")
    database = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert {row[0] for row in database.execute("SELECT comment_id FROM comments").fetchall()} == week
    assigned = database.execute("SELECT count(DISTINCT uid) FROM comment_labels WHERE kind = 'assigned'").fetchone()
    assert assigned[0] == len(week)
    [(kind,)] = database.execute("SELECT typeof(timestamp) FROM comments LIMIT 1").fetchall()
    assert kind.startswith("TIMESTAMP WITH TIME ZONE")


@pytest.mark.postgres
def test_nightly_export_into_postgres(sqlite_pipeline, records, monkeypatch):
    pipeline, _, _ = sqlite_pipeline
    connection = postgres_test_database()
    prefix = f"cm_{uuid.uuid4().hex[:8]}_"
    table = f"{prefix}comments"
    pipeline.apply(monkeypatch)
    monkeypatch.setenv("CM_WAREHOUSE_PREFIX", prefix)
    monkeypatch.setenv("AIRFLOW_CONN_CM_TEST_WAREHOUSE", POSTGRES_URI)
    try:
        want = expected_ids(records, DAY, DAY + timedelta(days=1))
        for _ in range(2):  # the second run re-reads the day and writes nothing new
            pipeline.load_day(DAY)
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT COUNT(*), COUNT(DISTINCT uid) FROM {table}")
                assert cursor.fetchone() == (len(want), len(want))
                cursor.execute(f"SELECT comment_id FROM {table}")
                assert {row[0] for row in cursor.fetchall()} == want
            connection.commit()
    finally:
        with connection.cursor() as cursor:
            for name in ("comments", "comment_labels", "comment_entities", "comment_user_properties", "loads"):
                cursor.execute(f"DROP TABLE IF EXISTS {prefix}{name} CASCADE")  # and the BI view
        connection.commit()
        connection.close()


def test_token_never_reaches_logs_xcom_or_rendered_fields(sqlite_pipeline, emulator_log, monkeypatch, capfd):
    pipeline, _, _ = sqlite_pipeline
    pipeline.apply(monkeypatch)
    upload_run, _ = pipeline.upload(BANKING77_JSONL)
    export_run, _ = pipeline.export_day(DAY + timedelta(days=10))
    load_run, _ = pipeline.load_day(DAY + timedelta(days=10))
    captured = capfd.readouterr()
    assert "Uploaded 10003 comments" in captured.out  # the task logs were captured
    assert TOKEN not in captured.out and TOKEN not in captured.err
    for run in (upload_run, export_run, load_run):
        assert TOKEN not in json.dumps(xcom_values(run), default=str)
        assert TOKEN not in json.dumps(rendered_fields(run), default=str)
    logs = Path(os.environ["AIRFLOW_HOME"])
    for path in [*logs.rglob("*.log"), *logs.rglob("*.json"), *pipeline.export_root.rglob("*")]:
        if path.is_file():
            assert TOKEN not in path.read_text(errors="replace"), path
    assert Path(emulator_log).read_text(errors="replace").count(TOKEN) == 0


@pytest.mark.parametrize("path", sorted((ROOT / "example_dags").glob("cm_*.py")), ids=lambda p: p.stem)
def test_every_example_dag_documents_its_configuration(path):
    """Each example DAG's doc_md (shown in the Airflow UI) names every environment variable it reads."""
    import re

    dag = load_dag(path.stem)
    read = set(re.findall(r"os\.environ\.get\(\s*\"(CM_[A-Z_]+)\"", path.read_text(encoding="utf-8")))
    assert dag.doc_md and read, path
    missing = sorted(name for name in read if name not in dag.doc_md)
    assert not missing, f"{path.name}: doc_md does not mention {missing}"
