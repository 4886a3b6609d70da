"""The transfers into SQL over real HTTP against the emulator, on BANKING77, into SQLite and PostgreSQL.

* ``CommunicationsMiningToSqlOperator`` in the flat layout (deprecated): consecutive days into a
  table; a rerun of one day leaves that day's comments exactly once and the other days untouched;
  a failed load changes nothing.
* ``CommunicationsMiningStreamToSqlOperator``: a backlog of several batches drained in one run;
  a failure between two batches (the API, the database) followed by a rerun loses nothing and
  duplicates nothing; rows the database refuses become stream exceptions.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_cm.client.windows import window_key
from airflow_provider_cm.exceptions import CommunicationsMiningServerError
from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from airflow_provider_cm.operators.datasets import CommunicationsMiningExportDatasetOperator
from airflow_provider_cm.transfers.communications_mining_to_sql import (
    STREAM_COLUMNS,
    CommunicationsMiningStreamToSqlOperator,
    CommunicationsMiningToSqlOperator,
)
from tests.conftest import (
    BANKING77_JSONL,
    POSTGRES_URI,
    TOKEN,
    FakeTaskInstance,
    new_workspace,
    postgres_test_database,
    read_jsonl,
    write_jsonl,
)

#: The dataset transfer's tests here are of the flat one-table layout (deprecated; the typed layout's are in
#: tests/unit/warehouse/test_operators.py): its deprecation warning is expected, not an error.
pytestmark = pytest.mark.filterwarnings(r"ignore:CommunicationsMiningToSqlOperator\(table=:DeprecationWarning")

UTC = timezone.utc
#: Days of BANKING77 uploaded for the dataset transfer; the middle three are loaded.
UPLOADED_DAYS = [datetime(2026, 10, 4, tzinfo=UTC) + timedelta(days=n) for n in range(5)]
LOADED_DAYS = UPLOADED_DAYS[1:4]
#: Days uploaded before the model is pinned (with labels), and the later backlog of a stream.
TRAINING_DAYS = tuple(f"2026-10-{day:02d}" for day in range(1, 11))
BACKLOG_DAYS = ("2026-10-12", "2026-10-13")
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def day_of(record: dict[str, Any]) -> str:
    return record["comment"]["timestamp"][:10]


def upload(source: str, dataset: str | None, records: list[dict[str, Any]], path: Path) -> None:
    CommunicationsMiningUploadCommentsOperator(
        task_id="upload", source=source, dataset=dataset, input_path=str(write_jsonl(path, records))
    ).execute({})


def interval(day: datetime) -> dict[str, Any]:
    """A task context whose data interval is ``day``."""
    return {"ti": FakeTaskInstance(), "data_interval_start": day, "data_interval_end": day + timedelta(days=1)}


def inject(emulator: Any, **rule: Any) -> None:
    response = requests.post(f"{emulator.url}/_emulator/faults", json={"faults": [rule]}, headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text


def clear_faults(emulator: Any) -> None:
    requests.delete(f"{emulator.url}/_emulator/faults", headers=AUTH, timeout=10).raise_for_status()


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return read_jsonl(BANKING77_JSONL)


# -- warehouses --------------------------------------------------------------------------------------


class Warehouse:
    """A database behind an Airflow connection (``AIRFLOW_CONN_...``) and a way to query it."""

    def __init__(self, conn_id: str, query: Callable[[str], list[tuple[Any, ...]]], kind: str = "") -> None:
        self.conn_id = conn_id
        self.kind = kind
        self.query = query
        self.tables: list[str] = []

    def new_table(self) -> str:
        table = f"cm_t_{uuid.uuid4().hex[:10]}"
        self.tables.append(table)
        return table


def _postgres() -> Any:
    """An autocommit connection to the ``cm_test`` database (see :func:`postgres_test_database`)."""
    connection = postgres_test_database()
    connection.autocommit = True
    return connection


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request, tmp_path, monkeypatch) -> Iterator[Warehouse]:
    conn_id = "cm_transfer_warehouse"
    if request.param == "sqlite":
        path = tmp_path / "warehouse.db"
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)}))

        def query(sql: str) -> list[tuple[Any, ...]]:
            with sqlite3.connect(path) as db:
                return db.execute(sql).fetchall()

        yield Warehouse(conn_id, query, "SQLite")
        return
    connection = _postgres()
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", POSTGRES_URI)

    def pg_query(sql: str) -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []

    store = Warehouse(conn_id, pg_query, "PostgreSQL")
    try:
        yield store
    finally:
        for table in store.tables:
            pg_query(f"DROP TABLE IF EXISTS {table}")
        connection.close()


# -- the dataset transfer ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uploaded(emulator, records, tmp_path_factory) -> dict[str, Any]:
    """UPLOADED_DAYS of BANKING77, with labels, in a fresh workspace."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    workspace = new_workspace(hook)
    days = {day.date().isoformat() for day in UPLOADED_DAYS}
    chosen = [r for r in records if day_of(r) in days]
    upload(workspace.source, workspace.dataset, chosen, tmp_path_factory.mktemp("days") / "days.jsonl")
    by_day: dict[str, set[str]] = {}
    for record in chosen:
        by_day.setdefault(day_of(record), set()).add(f"{workspace.source_id}.{record['comment']['id']}")
    hook.close()
    return {"workspace": workspace, "uids_by_day": by_day, "records": {r["comment"]["id"]: r for r in chosen}}


def load_day(dataset: str, warehouse: Warehouse, table: str, day: datetime, **kwargs: Any) -> dict[str, Any]:
    operator = CommunicationsMiningToSqlOperator(
        task_id="load_day", dataset=dataset, sql_conn_id=warehouse.conn_id, table=table, **kwargs
    )
    return operator.execute(interval(day))


def rows_by_day(warehouse: Warehouse, table: str) -> dict[str, list[tuple[Any, ...]]]:
    days: dict[str, list[tuple[Any, ...]]] = {}
    for row in warehouse.query(f"SELECT * FROM {table} ORDER BY uid"):
        days.setdefault(row[3][:10], []).append(tuple(row))
    return days


def test_consecutive_days_load_exactly_and_a_rerun_replaces_only_its_day(uploaded, warehouse):
    dataset = uploaded["workspace"].dataset
    table = warehouse.new_table()
    results = [load_day(dataset, warehouse, table, day, page_size=100) for day in LOADED_DAYS]

    assert [r["table_created"] for r in results] == [True, False, False]
    assert [r["rows_deleted"] for r in results] == [0, 0, 0]
    before = rows_by_day(warehouse, table)
    for day, result in zip(LOADED_DAYS, results, strict=True):
        want = uploaded["uids_by_day"][day.date().isoformat()]
        got = [row[0] for row in before[day.date().isoformat()]]
        assert len(got) == len(set(got)) == result["rows_written"] == len(want) > 250
        assert set(got) == want
        assert result["pages"] >= 3 and result["start"] == f"{day.date().isoformat()}T00:00:00.000000Z"
    assert sorted(before) == [day.date().isoformat() for day in LOADED_DAYS]  # nothing of the days around

    # The flat export columns, as the CSV export writes them, labels included.
    sample = before[LOADED_DAYS[0].date().isoformat()][0]
    record = uploaded["records"][sample[1]]
    assert sample[2] == uploaded["workspace"].source_id
    assert sample[3] == window_key(record["comment"]["timestamp"])
    assert sample[6] == record["comment"]["messages"][0]["body"]["text"]
    assert json.loads(sample[8]) == record["comment"]["user_properties"]
    assigned = {label["name"] for label in json.loads(sample[9])}
    assert record["labelling"][0]["assigned"][0]["name"] in assigned

    # A row the window no longer holds (a comment since deleted, say) is gone after the rerun;
    # a row of another source in the same window is not the dataset's and stays.
    middle = LOADED_DAYS[1]
    stamp = f"{middle.date().isoformat()}T12:00:00.000000Z"
    stale = (f"{uploaded['workspace'].source_id}.gone", "gone", uploaded["workspace"].source_id, stamp)
    foreign = ("othersource.x", "x", "othersource", stamp)
    for row in (stale, foreign):
        values = ", ".join(f"'{value}'" for value in row)
        warehouse.query(f"INSERT INTO {table} (uid, comment_id, source_id, timestamp) VALUES ({values})")
    rerun = load_day(dataset, warehouse, table, middle)
    after = rows_by_day(warehouse, table)
    want = uploaded["uids_by_day"][middle.date().isoformat()]
    assert rerun["rows_deleted"] == len(want) + 1 and rerun["rows_written"] == len(want)
    assert sorted(row[0] for row in after[middle.date().isoformat()]) == sorted(want | {"othersource.x"})
    for day in (LOADED_DAYS[0], LOADED_DAYS[2]):  # untouched, row for row
        assert after[day.date().isoformat()] == before[day.date().isoformat()]
    total, distinct = warehouse.query(f"SELECT COUNT(*), COUNT(DISTINCT uid) FROM {table}")[0]
    assert total == distinct == sum(len(rows) for rows in before.values()) + 1


def test_the_table_holds_what_the_export_operator_exports_for_the_window(uploaded, warehouse, tmp_path, context):
    dataset = uploaded["workspace"].dataset
    table = warehouse.new_table()
    start, end = LOADED_DAYS[0] + timedelta(hours=6), LOADED_DAYS[0] + timedelta(hours=18)
    result = CommunicationsMiningToSqlOperator(
        task_id="window", dataset=dataset, sql_conn_id=warehouse.conn_id, table=table, start=start, end=end
    ).execute(context)
    export = CommunicationsMiningExportDatasetOperator(
        task_id="export", dataset=dataset, output_path=str(tmp_path / "window.jsonl"), start=start, end=end
    ).execute(context)
    exported = {line["comment"]["uid"] for line in read_jsonl(export["path"])}
    assert {row[0] for row in warehouse.query(f"SELECT uid FROM {table}")} == exported
    assert result["rows_written"] == export["count"] == len(exported) > 50


def test_a_sliced_load_writes_exactly_the_rows_of_a_serial_load(uploaded, warehouse):
    dataset = uploaded["workspace"].dataset
    serial_table, sliced_table = warehouse.new_table(), warehouse.new_table()
    start, end = LOADED_DAYS[0] + timedelta(hours=3), LOADED_DAYS[2]
    results = [
        CommunicationsMiningToSqlOperator(
            task_id="window",
            dataset=dataset,
            sql_conn_id=warehouse.conn_id,
            table=table,
            start=start,
            end=end,
            page_size=16,
            export_concurrency=concurrency,
        ).execute(interval(LOADED_DAYS[0]))
        for table, concurrency in ((serial_table, 1), (sliced_table, 8))
    ]
    serial, sliced = (warehouse.query(f"SELECT * FROM {table} ORDER BY uid") for table in (serial_table, sliced_table))
    assert sliced == serial and len(serial) > 300
    assert results[0]["rows_written"] == results[1]["rows_written"] == len(serial)


@pytest.mark.parametrize("concurrency", [1, 8])
def test_a_load_that_fails_midway_leaves_the_table_as_it_was(uploaded, warehouse, emulator, concurrency):
    dataset = uploaded["workspace"].dataset
    table = warehouse.new_table()
    day = LOADED_DAYS[2]
    load_day(dataset, warehouse, table, day)
    before = warehouse.query(f"SELECT * FROM {table} ORDER BY uid")
    project = dataset.split("/")[0]
    # The first export page is answered, every later one fails: serially the task fails after
    # writing a page; in slices, once some slices have fetched pages.
    inject(emulator, kind="status", status=500, path_contains=f"/datasets/{project}/", method="POST", every=2)
    try:
        with pytest.raises(CommunicationsMiningServerError):
            load_day(dataset, warehouse, table, day, page_size=50, retry_max_attempts=1, export_concurrency=concurrency)
    finally:
        clear_faults(emulator)
    assert warehouse.query(f"SELECT * FROM {table} ORDER BY uid") == before


@pytest.mark.parametrize("table", ["cm comments", "cm_comments; DROP TABLE x", "1table", "a.b.c", "", 'q"uoted'])
def test_a_table_name_that_is_not_an_identifier_is_refused_when_the_dag_is_parsed(table):
    common = {"task_id": "t", "dataset": "p/d", "sql_conn_id": "c", "table": table}
    with pytest.raises(ValueError, match="plain SQL identifier"):
        CommunicationsMiningToSqlOperator(**common)
    with pytest.raises(ValueError, match="plain SQL identifier"):
        CommunicationsMiningStreamToSqlOperator(**common, stream="s")


def test_a_templated_table_is_checked_once_rendered_and_schema_tables_are_accepted(uploaded, emulator):
    CommunicationsMiningToSqlOperator(task_id="t", dataset="p/d", sql_conn_id="c", table="analytics.cm_comments")
    templated = CommunicationsMiningToSqlOperator(
        task_id="t", dataset=uploaded["workspace"].dataset, sql_conn_id="c", table="{{ params.table }}"
    )
    templated.table = "x; DROP TABLE y"  # what a bad rendering leaves
    with pytest.raises(ValueError, match="plain SQL identifier"):
        templated.execute(interval(LOADED_DAYS[0]))


def test_the_window_rules_and_messages_are_the_export_operators(uploaded, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CM_UNUSED", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "u.db")}))
    dataset = uploaded["workspace"].dataset
    common = {"task_id": "t", "dataset": dataset}
    transfer = CommunicationsMiningToSqlOperator(**common, sql_conn_id="cm_unused", table="t")
    export = CommunicationsMiningExportDatasetOperator(**common, output_path=str(tmp_path / "x.jsonl"))
    for context in ({"ti": FakeTaskInstance()}, {**interval(LOADED_DAYS[0]), "data_interval_end": LOADED_DAYS[0]}):
        messages = []
        for operator in (transfer, export):
            with pytest.raises(ValueError) as raised:
                operator.execute(context)
            messages.append(str(raised.value))
        assert messages[0] == messages[1] and "CronDataIntervalTimetable" in messages[0]
    assert not (tmp_path / "u.db").exists()  # refused before the database is touched
    with pytest.raises(ValueError, match="order_by"):
        CommunicationsMiningToSqlOperator(**common, sql_conn_id="c", table="t", order_by="updated_at")


def test_a_connection_that_is_not_a_database_is_refused(uploaded):
    operator = CommunicationsMiningToSqlOperator(
        task_id="t", dataset=uploaded["workspace"].dataset, sql_conn_id="communications_mining_default", table="t"
    )
    with pytest.raises(TypeError, match="not a SQL database connection"):
        operator.execute(interval(LOADED_DAYS[0]))


def test_a_sqlite_file_in_a_missing_folder_gets_its_folder_as_the_file_export_does(uploaded, tmp_path, monkeypatch):
    path = tmp_path / "not" / "yet" / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_CM_NEW_FOLDER", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    day = LOADED_DAYS[0]
    result = CommunicationsMiningToSqlOperator(
        task_id="load", dataset=uploaded["workspace"].dataset, sql_conn_id="cm_new_folder", table="cm_comments"
    ).execute(interval(day))
    with sqlite3.connect(path) as db:
        [(rows,)] = db.execute("SELECT COUNT(*) FROM cm_comments").fetchall()
    assert rows == result["rows_written"] == len(uploaded["uids_by_day"][day.date().isoformat()])
    # Read-only and in-memory databases create nothing.
    from airflow_provider_cm.transfers.sql_table import create_sqlite_folder, sql_hook

    elsewhere = tmp_path / "read-only" / "warehouse.db"
    for conn in ({"host": str(elsewhere), "extra": {"mode": "ro"}}, {"host": ":memory:"}):
        monkeypatch.setenv("AIRFLOW_CONN_CM_OTHER", json.dumps({"conn_type": "sqlite", **conn}))
        assert create_sqlite_folder(sql_hook("cm_other")) is None
    assert not elsewhere.parent.exists()


# -- the stream transfer -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backlog(emulator, records, tmp_path_factory) -> dict[str, Any]:
    """A dataset with a model trained on TRAINING_DAYS, then BACKLOG_DAYS uploaded without labels.

    Each test opens its own stream and resets it to the backlog's upload time, so every test
    drains the same backlog from the start.
    """
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    tmp = tmp_path_factory.mktemp("backlog")
    workspace = new_workspace(hook)
    training = [r for r in records if day_of(r) in TRAINING_DAYS]
    upload(workspace.source, workspace.dataset, training, tmp / "training.jsonl")
    version = emulator.admin("POST", f"datasets/{workspace.dataset}/models", {"tag": "live"})["version"]
    hook.put_stream(workspace.dataset, "probe", model_version=version)
    uploaded_from = hook.get_stream(workspace.dataset, "probe")["created_at"]
    late = [r for r in records if day_of(r) in BACKLOG_DAYS]
    upload(workspace.source, None, [{"comment": r["comment"]} for r in late], tmp / "late.jsonl")
    truth = {f"{workspace.source_id}.{r['comment']['id']}": r["labelling"][0]["assigned"][0]["name"] for r in late}
    return {"hook": hook, "workspace": workspace, "version": version, "from": uploaded_from, "truth": truth}


def new_stream(backlog: dict[str, Any]) -> str:
    """A stream over the backlog, positioned at its first comment."""
    name = "s" + uuid.uuid4().hex[:8]
    hook, dataset = backlog["hook"], backlog["workspace"].dataset
    hook.put_stream(dataset, name, model_version=backlog["version"])
    hook.reset_stream(dataset, name, backlog["from"])
    return name


def drain(backlog: dict[str, Any], stream: str, warehouse: Warehouse, table: str, **kwargs: Any) -> dict[str, Any]:
    operator = CommunicationsMiningStreamToSqlOperator(
        task_id="drain",
        dataset=backlog["workspace"].dataset,
        stream=stream,
        sql_conn_id=warehouse.conn_id,
        table=table,
        **kwargs,
    )
    return operator.execute({"ti": FakeTaskInstance()})


def assert_exactly_the_backlog(backlog: dict[str, Any], warehouse: Warehouse, table: str) -> list[tuple[Any, ...]]:
    rows = warehouse.query(f"SELECT uid, top_label, top_probability, sequence_id FROM {table}")
    uids = [row[0] for row in rows]
    assert len(uids) == len(set(uids)), "a comment is in the table twice"
    assert set(uids) == set(backlog["truth"]), (
        f"{len(set(backlog['truth']) - set(uids))} missing, {len(set(uids) - set(backlog['truth']))} extra"
    )
    return rows


def stream_is_drained(backlog: dict[str, Any], stream: str) -> bool:
    return backlog["hook"].fetch_stream(backlog["workspace"].dataset, stream, size=16)["results"] == []


def test_a_backlog_of_many_batches_is_drained_in_one_run(backlog, warehouse, report):
    stream, table = new_stream(backlog), warehouse.new_table()
    result = drain(backlog, stream, warehouse, table, batch_size=100)
    total = len(backlog["truth"])
    assert total > 600
    assert result["caught_up"] is True and result["refused_uids"] == []
    assert result["rows_written"] == total and result["batches"] == -(-total // 100)
    rows = assert_exactly_the_backlog(backlog, warehouse, table)
    assert stream_is_drained(backlog, stream)
    assert all(isinstance(row[2], float) and 0 < row[2] <= 1 and row[3] for row in rows)
    accuracy = sum(backlog["truth"][uid] == label for uid, label, _, _ in rows) / len(rows)
    assert accuracy > 0.6  # 77 intents: chance is 1.3%
    report(
        f"stream transfer into {warehouse.kind}: {total} comments in {result['batches']} batches, one run; "
        f"top label right for {accuracy:.1%}"
    )
    columns = [d for d in warehouse.query(f"SELECT * FROM {table} WHERE uid = '{rows[0][0]}'")[0]]
    assert len(columns) == len(STREAM_COLUMNS)
    # Caught up: another run writes nothing and says so.
    again = drain(backlog, stream, warehouse, table, batch_size=100)
    assert (again["rows_written"], again["batches"], again["caught_up"]) == (0, 0, True)


def test_max_results_bounds_a_run_and_the_next_run_goes_on(backlog, warehouse):
    stream, table = new_stream(backlog), warehouse.new_table()
    first = drain(backlog, stream, warehouse, table, batch_size=100, max_results=150)
    assert (first["rows_written"], first["batches"], first["caught_up"]) == (150, 2, False)
    rest = drain(backlog, stream, warehouse, table, batch_size=1024)
    assert rest["caught_up"] and first["rows_written"] + rest["rows_written"] == len(backlog["truth"])
    assert_exactly_the_backlog(backlog, warehouse, table)


def test_max_batches_one_takes_exactly_one_batch_per_run(backlog, warehouse):
    """What a DAG scheduled by the stream's event trigger does: one batch per run, N batches in N runs."""
    stream, table = new_stream(backlog), warehouse.new_table()
    total = len(backlog["truth"])
    runs: list[dict[str, Any]] = []
    while not runs or not runs[-1]["caught_up"]:
        head = backlog["hook"].fetch_stream(backlog["workspace"].dataset, stream, size=100)
        runs.append(drain(backlog, stream, warehouse, table, batch_size=100, max_batches=1))
        assert runs[-1]["sequence_id"] == head["sequence_id"]  # the batch a fetch before the run saw, no more
        assert len(runs) <= -(-total // 100), "more runs than batches"
    assert [run["batches"] for run in runs] == [1] * len(runs)
    assert [run["rows_written"] for run in runs] == [100] * (total // 100) + ([total % 100] if total % 100 else [])
    assert [run["caught_up"] for run in runs] == [False] * (len(runs) - 1) + [True]
    assert_exactly_the_backlog(backlog, warehouse, table)
    assert stream_is_drained(backlog, stream)
    with pytest.raises(ValueError, match="max_batches"):
        drain(backlog, stream, warehouse, table, max_batches=0)


def test_an_advance_failing_between_two_batches_then_a_rerun_loses_and_duplicates_nothing(backlog, warehouse, emulator):
    stream, table = new_stream(backlog), warehouse.new_table()
    # Every second advance of this stream fails (500), with no retry: batch 1 is committed and
    # acknowledged, batch 2 is committed and its advance fails.
    inject(emulator, kind="status", status=500, path_contains=f"/streams/{stream}/advance", every=2)
    try:
        with pytest.raises(CommunicationsMiningServerError):
            drain(backlog, stream, warehouse, table, batch_size=100, retry_max_attempts=1)
    finally:
        clear_faults(emulator)
    committed = {row[0] for row in warehouse.query(f"SELECT uid FROM {table}")}
    assert len(committed) == 200
    # The stream is still at batch 2: its first comment is committed, and comes back.
    redelivered = backlog["hook"].fetch_stream(backlog["workspace"].dataset, stream, size=100)["results"]
    assert {r["comment"]["uid"] for r in redelivered} <= committed and len(redelivered) == 100

    result = drain(backlog, stream, warehouse, table, batch_size=100)
    assert result["caught_up"] and result["rows_written"] == len(backlog["truth"]) - 100
    assert_exactly_the_backlog(backlog, warehouse, table)
    assert stream_is_drained(backlog, stream)


@pytest.mark.postgres
def test_a_database_failure_on_the_second_batch_then_a_rerun_loses_and_duplicates_nothing(backlog, monkeypatch):
    connection = _postgres()
    monkeypatch.setenv("AIRFLOW_CONN_CM_TRANSFER_PG", POSTGRES_URI)
    warehouse = Warehouse("cm_transfer_pg", lambda sql: [])
    table = warehouse.new_table()

    def query(sql: str) -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []

    warehouse.query = query
    stream = new_stream(backlog)
    first = backlog["hook"].fetch_stream(backlog["workspace"].dataset, stream, size=100)["results"]
    first_uids = {r["comment"]["uid"] for r in first}
    try:
        query(
            f"CREATE TABLE {table} (uid TEXT PRIMARY KEY, comment_id TEXT, timestamp TEXT, body TEXT, "
            "predicted_labels TEXT, top_label TEXT, top_probability DOUBLE PRECISION, sequence_id TEXT)"
        )
        # The database fails on batch 2 (an error raised by a trigger, not a refused row): on
        # any row that is not in batch 1.
        known = ", ".join(f"'{uid}'" for uid in first_uids)
        query(
            f"CREATE FUNCTION {table}_fail() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.uid NOT IN ({known}) THEN RAISE EXCEPTION 'warehouse offline'; END IF; RETURN NEW; END $$ "
            "LANGUAGE plpgsql"
        )
        query(f"CREATE TRIGGER {table}_fail BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_fail()")
        with pytest.raises(Exception, match="warehouse offline"):
            drain(backlog, stream, warehouse, table, batch_size=100)
        assert {row[0] for row in query(f"SELECT uid FROM {table}")} == first_uids
        query(f"DROP TRIGGER {table}_fail ON {table}")

        result = drain(backlog, stream, warehouse, table, batch_size=100)
        assert result["caught_up"] and result["refused_uids"] == []
        assert result["rows_written"] == len(backlog["truth"]) - 100
        assert_exactly_the_backlog(backlog, warehouse, table)
    finally:
        query(f"DROP TABLE IF EXISTS {table}")
        query(f"DROP FUNCTION IF EXISTS {table}_fail()")
        connection.close()


def test_rows_the_database_refuses_are_left_out_and_tagged_as_exceptions(workspace, hook, warehouse, monkeypatch):
    hook.put_stream(workspace.dataset, "refusals")
    table = warehouse.new_table()
    warehouse.query(
        f"CREATE TABLE {table} (uid TEXT PRIMARY KEY, comment_id TEXT, timestamp TEXT, "
        "body TEXT CHECK (length(trim(body)) > 0), predicted_labels TEXT, top_label TEXT, "
        "top_probability DOUBLE PRECISION, sequence_id TEXT)"
    )
    texts = ["card lost", " ", "refund please", "  ", "where is my money", "   ", "card arrived"]
    comments = [
        {"id": f"c{n}", "timestamp": f"2026-10-31T10:0{n}:00Z", "messages": [{"body": {"text": text}}]}
        for n, text in enumerate(texts)
    ]
    hook.sync_comments(workspace.source, comments)
    tagged: list[tuple[list[str], str]] = []
    real_tag = hook.tag_exceptions

    def recording_tag(dataset: str, stream: str, uids: list[str], exception_type: str) -> None:
        tagged.append((list(uids), exception_type))
        real_tag(dataset, stream, uids, exception_type)

    operator = CommunicationsMiningStreamToSqlOperator(
        task_id="drain", dataset=workspace.dataset, stream="refusals", sql_conn_id=warehouse.conn_id, table=table
    )
    monkeypatch.setattr(operator.hook, "tag_exceptions", recording_tag)
    result = operator.execute({"ti": FakeTaskInstance()})

    refused = sorted(f"{workspace.source_id}.c{n}" for n, text in enumerate(texts) if not text.strip())
    assert result["refused_uids"] == refused and result["rows_written"] == 4 and result["caught_up"]
    assert sorted(row[0] for row in warehouse.query(f"SELECT comment_id FROM {table}")) == ["c0", "c2", "c4", "c6"]
    assert sorted(uid for uids, _ in tagged for uid in uids) == refused
    [(_, exception_type)] = tagged
    assert exception_type.startswith(f"Refused by {table}: ") and "check" in exception_type.lower()
    assert hook.fetch_stream(workspace.dataset, "refusals", size=16)["results"] == []


def test_the_loaded_table_is_an_asset_with_the_result_in_its_event(uploaded, warehouse):
    """A DAG can be scheduled on the table: the dataset transfer records its Asset's event with the result."""
    from airflow.sdk import Asset, AssetAlias
    from airflow.sdk.execution_time.context import OutletEventAccessors

    table = warehouse.new_table()
    operator = CommunicationsMiningToSqlOperator(
        task_id="load_day", dataset=uploaded["workspace"].dataset, sql_conn_id=warehouse.conn_id, table=table
    )
    [asset] = operator.outlets
    assert isinstance(asset, Asset) and asset.uri == f"communications-mining-sql://{warehouse.conn_id}/{table}"
    events = OutletEventAccessors()
    result = operator.execute({**interval(LOADED_DAYS[0]), "outlet_events": events})
    assert events[asset].extra["rows_written"] == result["rows_written"] > 0
    templated = CommunicationsMiningToSqlOperator(
        task_id="load_any", dataset="p/d", sql_conn_id=warehouse.conn_id, table="{{ params.table }}"
    )
    assert templated.outlets == [AssetAlias(name="communications_mining_table:load_any")]


def test_a_stream_drain_records_a_table_event_only_when_rows_landed(backlog, warehouse):
    from airflow.sdk import AssetAlias
    from airflow.sdk.execution_time.context import OutletEventAccessors

    stream, table = new_stream(backlog), warehouse.new_table()
    operator = CommunicationsMiningStreamToSqlOperator(
        task_id="drain",
        dataset=backlog["workspace"].dataset,
        stream=stream,
        sql_conn_id=warehouse.conn_id,
        table=table,
    )
    [alias] = operator.outlets
    assert alias == AssetAlias(name="communications_mining_table:drain")
    first, again = OutletEventAccessors(), OutletEventAccessors()
    assert operator.execute({"ti": FakeTaskInstance(), "outlet_events": first})["rows_written"] > 0
    [event] = first[alias].asset_alias_events
    assert event.dest_asset_key.uri == f"communications-mining-sql://{warehouse.conn_id}/{table}"
    assert operator.execute({"ti": FakeTaskInstance(), "outlet_events": again})["rows_written"] == 0
    assert again[alias].asset_alias_events == []  # an empty drain wakes no downstream DAG
