"""The typed warehouse through the operators: a tenant's days of activity caught up by the example set-up
(nightly lookback, weekly reconcile) on SQLite and PostgreSQL, Parquet files read back by DuckDB, and the
reconcile the pinned model version's move starts by itself."""

from __future__ import annotations

import importlib.util
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_provider_cm.exceptions import CommunicationsMiningTagError
from airflow_provider_cm.operators.datasets import CommunicationsMiningExportDatasetOperator
from airflow_provider_cm.pipelines.warehouse.model import COMMENT_LABELS, COMMENTS, LOADS
from airflow_provider_cm.pipelines.warehouse.parquet import read_rows
from airflow_provider_cm.pipelines.warehouse.sql_writer import SqlWarehouse, WarehouseSchemaError
from airflow_provider_cm.transfers.communications_mining_to_sql import CommunicationsMiningToSqlOperator
from tests.conftest import POSTGRES_URI, FakeTaskInstance, new_workspace, postgres_test_database
from tests.tenant_month import build_tenant, export_all
from tests.unit.warehouse.warehouse_checks import assert_equals_tenant, dump, live_labels

ROOT = Path(__file__).resolve().parents[3]
UTC = timezone.utc
OCT1 = datetime(2026, 10, 1, tzinfo=UTC)
#: Days of replayed activity: after the tenant's comments were uploaded (now), as the emulator's replay needs.
LATER = datetime(2099, 3, 1, tzinfo=UTC)
CONN_ID = "cm_typed_warehouse"


def run(operator: Any, day: datetime | None = None) -> dict[str, Any]:
    """``operator.execute`` with a context whose data interval is ``day`` (none if not given)."""
    context: dict[str, Any] = {"ti": FakeTaskInstance(), "dag_id": "cm_test", "run_id": f"run-{uuid.uuid4().hex[:6]}"}
    if day is not None:
        context.update(data_interval_start=day, data_interval_end=day + timedelta(days=1))
    return operator.execute(context)


class Target:
    """A database behind an Airflow connection, and the typed warehouse's view of it (for the checks)."""

    def __init__(self, engine: sa.Engine, schema: str | None) -> None:
        self.schema = schema
        self.warehouse = SqlWarehouse(engine, schema=schema, prefix="cm_")

    def transfer(self, task_id: str, dataset: str, **kwargs: Any) -> CommunicationsMiningToSqlOperator:
        return CommunicationsMiningToSqlOperator(
            task_id=task_id, dataset=dataset, sql_conn_id=CONN_ID, schema=self.schema, **kwargs
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        path = tmp_path / "warehouse.db"
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)}))
        engine = sa.create_engine(f"sqlite:///{path}")
        yield Target(engine, None)
        engine.dispose()
        return
    postgres_test_database().close()  # creates cm_test, or skips when PostgreSQL is not reachable
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", POSTGRES_URI)
    engine = sa.create_engine(POSTGRES_URI.replace("postgresql://", "postgresql+psycopg2://", 1))
    schema = "op_" + uuid.uuid4().hex[:12]
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield Target(engine, schema)
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@pytest.fixture
def tenant(hook, emulator):
    """60 BANKING77 comments of 2026-10-01, labelled, version 1 tagged ``live``."""
    workspace = new_workspace(hook)
    build_tenant(hook, emulator, workspace, 60)
    return workspace


def activity(emulator: Any, dataset: str, day: datetime, seed: int, **changes: Any) -> dict[str, Any]:
    body = {"day": day.date().isoformat(), "seed": seed, **changes}
    return emulator.admin("POST", f"datasets/{dataset}/activity", body)


def test_the_example_set_up_keeps_the_tables_equal_to_the_tenant_over_days_of_activity(hook, emulator, tenant, target):
    """Nightly lookback loads (2 days) over five days of activity (new comments, late uploads, relabels,
    deletions, a retrain), then the weekly reconcile: the tables equal the tenant (labels, predictions,
    deletions marked), and the loads table accounts for every run."""
    nightly = target.transfer("nightly", tenant.dataset, mode="lookback", lookback_days=2)
    first = run(nightly, OCT1)
    assert (first["mode"], first["rows_read"], first["rows_marked_deleted"]) == ("lookback", 60, 0)
    assert first["start"] == "2026-09-29T00:00:00.000000Z" and first["tables"][0].endswith("cm_comments")
    deleted: set[str] = set()
    caught_late: set[str] = set()
    # The emulator replays changes of comments uploaded before the day: days after the tenant was built.
    for n in range(1, 6):
        day = LATER + timedelta(days=n)
        changes = activity(
            emulator,
            tenant.dataset,
            day,
            seed=n,
            new_comments=5,
            late_uploads=1,
            late_by_days=1 if n % 2 else 4,  # inside the 2-day lookback, or before it
            relabels=2,
            deletions=1,
            retrain=n == 3,
        )
        deleted |= set(changes["deleted"])
        result = run(nightly, day)
        assert result["mode"] == "lookback" and result["rows_read"] >= 5
        if n % 2:
            caught_late |= set(changes["late"])
    with target.warehouse.engine.connect() as connection:
        comments = target.warehouse.tables["comments"]
        live = set(connection.execute(sa.select(comments.c.uid).where(comments.c._cm_deleted_at.is_(None))).scalars())
    # A lookback cannot see a deletion; it catches late uploads within its days, not those before them.
    assert len(deleted) == 5 and deleted <= live
    assert caught_late and caught_late <= live

    weekly = run(target.transfer("weekly", tenant.dataset, mode="reconcile"))
    assert weekly["mode"] == "reconcile" and weekly["start"] is None and weekly["end"] is None
    assert weekly["by_table"]["comments"]["marked_deleted"] == len(deleted)
    assert_equals_tenant(target.warehouse, export_all(hook, tenant), deleted=deleted)
    again = run(target.transfer("weekly", tenant.dataset, mode="reconcile"))
    assert (again["rows_written"], again["rows_marked_deleted"]) == (0, 0)

    with target.warehouse.engine.connect() as connection:
        loads = target.warehouse.tables["loads"]
        recorded = connection.execute(sa.select(loads).order_by(loads.c.started_at)).mappings().all()
    assert [r["mode"] for r in recorded] == ["lookback"] * 6 + ["reconcile"] * 2
    assert [r["rows_written"] for r in recorded][-2:] == [weekly["rows_written"], 0]
    assert all(r["dag_id"] == "cm_test" and r["task_id"] in ("nightly", "weekly") for r in recorded)


def test_typed_columns_hold_times_numbers_and_booleans(hook, tenant, target):
    run(target.transfer("load", tenant.dataset, mode="reconcile"))
    with target.warehouse.engine.connect() as connection:
        columns = {
            c["name"]: c["type"] for c in sa.inspect(connection).get_columns("cm_comments", schema=target.schema)
        }
        labels = {
            c["name"]: c["type"] for c in sa.inspect(connection).get_columns("cm_comment_labels", schema=target.schema)
        }
        row = connection.execute(sa.select(target.warehouse.tables["comments"]).limit(1)).mappings().one()
    assert isinstance(columns["timestamp"], sa.DateTime) and isinstance(columns["has_annotations"], sa.Boolean)
    assert isinstance(labels["probability"], sa.Float)
    assert row["timestamp"].tzinfo is not None and row["timestamp"].utcoffset() == timedelta(0)


def test_when_the_pinned_tag_moves_a_window_load_reconciles_the_whole_dataset(hook, emulator, tenant, target):
    nightly = target.transfer("nightly", tenant.dataset, model_version="live")
    first = run(nightly, OCT1)
    assert (first["mode"], first["model_version"], first["mode_reason"]) == ("window", 1, None)
    activity(
        emulator, tenant.dataset, LATER, seed=3, new_comments=3, late_uploads=0, relabels=0, deletions=0, retrain=True
    )
    moved = run(nightly, OCT1 + timedelta(days=1))
    assert (moved["requested_mode"], moved["mode"], moved["model_version"]) == ("window", "reconcile", 2)
    assert "version 1" in moved["mode_reason"] and moved["rows_read"] == len(export_all(hook, tenant)) == 63
    with target.warehouse.engine.connect() as connection:
        labels = target.warehouse.tables["comment_labels"]
        live = sa.select(labels.c.model_version).where(labels.c.kind == "predicted", labels.c._cm_deleted_at.is_(None))
        assert set(connection.execute(live).scalars()) == {2}
    steady = run(nightly, OCT1 + timedelta(days=2))
    assert (steady["mode"], steady["rows_read"]) == ("window", 0)
    kept = run(target.transfer("kept", tenant.dataset, model_version=1, reconcile_on_model_change=False), OCT1)
    assert (kept["mode"], kept["model_version"]) == ("window", 1)


def test_a_tag_that_cannot_be_resolved_fails_before_anything_is_written(tenant, target):
    with pytest.raises(CommunicationsMiningTagError, match="staging"):
        run(target.transfer("load", tenant.dataset, model_version="staging"), OCT1)
    assert dump(target.warehouse) == {}


def test_a_table_that_cannot_hold_the_model_fails_naming_the_column_before_writing(tenant, target):
    comments = target.warehouse.tables["comments"]
    with target.warehouse.engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {comments.fullname} (uid TEXT PRIMARY KEY, timestamp INTEGER)"))
    with pytest.raises(WarehouseSchemaError, match="column 'timestamp'"):
        run(target.transfer("load", tenant.dataset), OCT1)
    with target.warehouse.engine.connect() as connection:
        assert connection.execute(sa.text(f"SELECT count(*) FROM {comments.fullname}")).scalar() == 0
        assert not sa.inspect(connection).has_table("cm_loads", schema=target.schema)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "nightly"}, "mode must be one of"),
        ({"mode": "lookback", "lookback_days": -1}, "lookback_days"),
        ({"model_version": 0}, "1 or more"),
        ({"prediction_threshold": 2}, "between 0 and 1"),
        ({"table_prefix": "cm-"}, "letters, digits and underscores"),
        ({"order_by": "created_at"}, "flat layout"),
        ({"table": "flat", "mode": "reconcile"}, "deprecated flat layout"),
        ({"table": "flat", "schema": "analytics"}, "'schema.table'"),
    ],
)
def test_bad_arguments_are_refused_when_the_dag_is_parsed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CommunicationsMiningToSqlOperator(task_id="t", dataset="p/d", sql_conn_id="c", **kwargs)


def test_the_flat_layout_still_loads_and_warns_that_it_is_deprecated(tenant, target):
    with pytest.warns(DeprecationWarning, match=r"table=.*deprecated since airflow-provider-cm 0\.2\.0.*typed layout"):
        flat = CommunicationsMiningToSqlOperator(task_id="flat", dataset=tenant.dataset, sql_conn_id=CONN_ID, table="f")
    assert run(flat, OCT1)["rows_written"] == 60


def test_the_tables_are_assets_and_their_events_carry_the_result(tenant, target):
    operator = target.transfer("load", tenant.dataset)
    prefix = f"{target.schema}." if target.schema else ""
    assert [outlet.uri for outlet in operator.outlets] == [
        f"communications-mining-sql://{CONN_ID}/{prefix}cm_{name}"
        for name in ("comments", "comment_labels", "comment_entities", "comment_user_properties", "loads")
    ]


# -- Parquet --------------------------------------------------------------------------------------------------


def export_parquet(dataset: str, folder: Path, **kwargs: Any) -> CommunicationsMiningExportDatasetOperator:
    return CommunicationsMiningExportDatasetOperator(
        task_id="parquet", dataset=dataset, output_path=str(folder), output_format="parquet", **kwargs
    )


def test_parquet_files_read_back_equal_the_sql_tables_and_duckdb_reads_them(hook, tenant, tmp_path, target):
    result = run(export_parquet(tenant.dataset, tmp_path / "pq", mode="reconcile"), OCT1 + timedelta(days=1))
    assert result["count"] == 60 and result["mode"] == "reconcile" and result["model_version"] is None
    assert set(result["files"]) == {
        "comments",
        "comment_labels",
        "comment_entities",
        "comment_user_properties",
        "loads",
    }
    assert Path(result["files"]["comments"]).name == "snapshot_20261003T000000Z.parquet"
    run(target.transfer("load", tenant.dataset, mode="reconcile"))
    with target.warehouse.engine.connect() as connection:
        stored = {r.uid: r for r in connection.execute(sa.select(target.warehouse.tables["comments"]))}
    from_file = {row["uid"]: row for row in read_rows(Path(result["files"]["comments"]), COMMENTS)}
    assert set(from_file) == set(stored)
    for uid, row in from_file.items():
        for column in ("comment_id", "timestamp", "subject", "body", "has_annotations", "_cm_row_hash"):
            assert row[column] == getattr(stored[uid], column), (uid, column)
    (loads,) = read_rows(Path(result["files"]["loads"]), LOADS)
    assert (loads["rows_read"], loads["mode"], loads["load_id"]) == (60, "reconcile", result["load_id"])

    import duckdb

    labels = duckdb.sql(
        f"SELECT uid, label, probability FROM read_parquet('{tmp_path}/pq/comment_labels/*.parquet') "
        "WHERE kind = 'predicted'"
    ).fetchall()
    predicted = live_labels(target.warehouse, "predicted")
    assert {(uid, (label, probability)) for uid, label, probability in labels} == {
        (uid, item) for uid, items in predicted.items() for item in items
    }
    kind = duckdb.sql(f"SELECT typeof(timestamp) FROM read_parquet('{result['files']['comments']}') LIMIT 1")
    assert kind.fetchall()[0][0].startswith("TIMESTAMP WITH TIME ZONE")


def test_parquet_of_a_window_with_a_pinned_version_names_it_on_every_predicted_row(hook, tenant, tmp_path):
    result = run(export_parquet(tenant.dataset, tmp_path / "pq", model_version="live"), OCT1)
    assert (result["model_version"], result["count"]) == (1, 60)
    assert Path(result["files"]["comments"]).name == "20261001T000000Z_20261002T000000Z.parquet"
    rows = read_rows(Path(result["files"]["comment_labels"]), COMMENT_LABELS)
    assert {row["model_version"] for row in rows if row["kind"] == "predicted"} == {1}
    assert {row["model_version"] for row in rows if row["kind"] == "assigned"} == {None}


def example_module(name: str) -> Any:
    """An example DAG file imported afresh, so that it reads the current environment."""
    spec = importlib.util.spec_from_file_location(f"{name}_{uuid.uuid4().hex}", ROOT / "example_dags" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_duckdb_example_keeps_each_comments_newest_labels(hook, emulator, tenant, tmp_path, monkeypatch):
    """The example DAG's SQL over two nights of lookback files: a relabel replaces the comment's labels."""
    import duckdb

    folder = tmp_path / "pq"
    monkeypatch.setenv("CM_PARQUET_ROOT", str(folder))
    monkeypatch.setenv("CM_DATASET", tenant.dataset)
    example = example_module("cm_parquet_to_duckdb")
    run(export_parquet(tenant.dataset, Path(example.FOLDER), mode="lookback", lookback_days=1), OCT1)
    changes = activity(emulator, tenant.dataset, LATER, seed=4, new_comments=0, late_uploads=0, relabels=3, deletions=0)
    run(
        export_parquet(tenant.dataset, Path(example.FOLDER), mode="lookback", lookback_days=1), OCT1 + timedelta(days=1)
    )
    database = duckdb.connect(str(tmp_path / "w.duckdb"))
    for statement in example.LOAD_SQL:
        database.execute(statement)
    tenant_labels = {
        item["comment"]["uid"]: {label["name"] for label in item["annotations"]["labels"]["assigned"]}
        for item in export_all(hook, tenant)
    }
    loaded: dict[str, set[str]] = {}
    for uid, label in database.execute("SELECT uid, label FROM comment_labels WHERE kind = 'assigned'").fetchall():
        loaded.setdefault(uid, set()).add(label)
    assert changes["relabelled"] and all(loaded[uid] == tenant_labels[uid] for uid in changes["relabelled"])
    assert loaded == {uid: labels for uid, labels in tenant_labels.items() if labels}
    assert database.execute("SELECT count(*) FROM comments").fetchone()[0] == 60


def test_model_version_with_jsonl_is_refused_when_the_dag_is_parsed():
    with pytest.raises(ValueError, match="output_format='parquet'"):
        CommunicationsMiningExportDatasetOperator(task_id="t", dataset="p/d", output_path="x.jsonl", model_version=1)


def test_a_jsonl_export_reads_what_its_mode_says(hook, emulator, tenant, tmp_path):
    """``window`` the day; ``lookback`` the day and the days before; ``reconcile`` every comment, whatever its time."""
    activity(emulator, tenant.dataset, LATER, seed=9, new_comments=4, late_uploads=0, relabels=0, deletions=0)

    def export(mode: str, day: datetime, **kwargs: Any) -> dict[str, Any]:
        operator = CommunicationsMiningExportDatasetOperator(
            task_id="export", dataset=tenant.dataset, output_path=str(tmp_path / f"{mode}.jsonl"), mode=mode, **kwargs
        )
        return run(operator, day)

    assert export("window", OCT1 + timedelta(days=1))["count"] == 0
    lookback = export("lookback", OCT1 + timedelta(days=1), lookback_days=1)
    assert (lookback["count"], lookback["start"]) == (60, "2026-10-01T00:00:00.000000Z")
    everything = export("reconcile", OCT1)
    assert everything["count"] == 64 == len(export_all(hook, tenant))


def test_a_month_with_the_live_tag_keeps_predictions_of_the_pinned_version(hook, emulator, tenant, target):
    """30 days of activity with a retrain each week, a nightly lookback of 3 days on ``live`` and a weekly
    reconcile: every live comment's predicted rows are those ``predict-comments`` gives on the version ``live``
    names at the end, and they name it; assigned labels and deletions match the tenant."""
    nightly = target.transfer("nightly", tenant.dataset, mode="lookback", lookback_days=3, model_version="live")
    weekly = target.transfer("weekly", tenant.dataset, mode="reconcile", model_version="live")
    run(nightly, OCT1)
    deleted: set[str] = set()
    modes = []
    for n in range(1, 31):
        day = LATER + timedelta(days=n)
        changes = activity(
            emulator,
            tenant.dataset,
            day,
            seed=100 + n,
            new_comments=2,
            late_uploads=1,
            late_by_days=2,
            relabels=1,
            deletions=1 if n % 3 == 0 else 0,
            retrain=n % 7 == 0,
        )
        deleted |= set(changes["deleted"])
        modes.append(run(nightly, day)["mode"])
        if n % 7 == 6:
            modes.append(run(weekly)["mode"])
    final = run(weekly)
    # The four weekly reconciles, and the four retrains (days 7, 14, 21, 28) each made that night reconcile.
    assert modes.count("reconcile") == 4 + 4 and final["model_version"] == 5
    exported = export_all(hook, tenant)
    assert_equals_tenant(target.warehouse, exported, deleted=deleted, predictions=False)
    uids = [item["comment"]["uid"] for item in exported]
    expected = {}
    for start in range(0, len(uids), 256):
        for prediction in hook.predict_comments(tenant.dataset, 5, uids[start : start + 256], threshold=0.01):
            expected[prediction["uid"]] = {(" > ".join(p["name"]), p["probability"]) for p in prediction["labels"]}
    predicted = live_labels(target.warehouse, "predicted")
    assert {uid: predicted.get(uid, set()) for uid in uids} == expected
    with target.warehouse.engine.connect() as connection:
        labels = target.warehouse.tables["comment_labels"]
        live = sa.select(labels.c.model_version).where(labels.c.kind == "predicted", labels.c._cm_deleted_at.is_(None))
        assert set(connection.execute(live).scalars()) == {5}


def test_a_dataset_whose_labels_have_no_metadata_still_loads(hook, emulator, target):
    workspace = new_workspace(hook)
    build_tenant(hook, emulator, workspace, 20, metadata=False)
    result = run(target.transfer("load", workspace.dataset, mode="reconcile"))
    assert result["rows_read"] == 20
    with target.warehouse.engine.connect() as connection:
        labels = target.warehouse.tables["comment_labels"]
        found = connection.execute(sa.select(labels.c.metadata).where(labels.c.kind == "assigned")).scalars().all()
    assert len(found) >= 20 and set(found) == {None}


def test_a_second_dataset_is_refused_from_tables_that_hold_another(hook, emulator, tenant, target):
    """A reconcile would mark the other dataset's comments deleted: one dataset per schema or prefix."""
    run(target.transfer("first", tenant.dataset, mode="reconcile"))
    other = new_workspace(hook)
    build_tenant(hook, emulator, other, 5)
    with pytest.raises(WarehouseSchemaError, match=f"hold dataset '{tenant.dataset}'.*own schema or table prefix"):
        run(target.transfer("second", other.dataset, mode="reconcile"))
    assert run(target.transfer("again", tenant.dataset, mode="reconcile"))["rows_marked_deleted"] == 0
    elsewhere = target.transfer("second", other.dataset, mode="reconcile", table_prefix="cm_other_")
    assert run(elsewhere)["rows_read"] == 5


def test_each_load_refreshes_the_wide_view_for_bi_tools(hook, emulator, tenant, target):
    """``cm_comment_label_probabilities``: a row per live comment, a column per label (its probability, 0 if none)."""
    run(target.transfer("load", tenant.dataset, mode="reconcile"))
    changes = activity(emulator, tenant.dataset, LATER, seed=5, new_comments=0, late_uploads=0, relabels=0, deletions=2)
    run(target.transfer("load", tenant.dataset, mode="reconcile"))
    view = f"{target.schema}.cm_comment_label_probabilities" if target.schema else "cm_comment_label_probabilities"
    with target.warehouse.engine.connect() as connection:
        rows = {r.uid: r._mapping for r in connection.execute(sa.text(f"SELECT * FROM {view}"))}
    exported = export_all(hook, tenant)
    assert set(rows) == {item["comment"]["uid"] for item in exported} and not set(changes["deleted"]) & set(rows)
    with target.warehouse.engine.connect() as connection:
        labels = target.warehouse.view_labels(connection)
    assert len(labels) > 10
    for item in exported:
        predicted = {p["name"]: p["probability"] for p in item["predictions"]["labels"]}
        for label in labels:
            assert rows[item["comment"]["uid"]][label] == pytest.approx(predicted.get(label, 0.0)), label
