"""OpenLineage events of the example DAGs, captured as a lineage backend would receive them.

The example DAGs run with ``dag.test()`` in a process of their own (:mod:`tests.lineage_runner`)
started with the OpenLineage provider configured the way a deployment configures it:
``AIRFLOW__OPENLINEAGE__TRANSPORT`` names the openlineage-python client's ``file`` transport, which
appends every event the provider's listener emits to a JSONL file. The tests read the COMPLETE
events from it and check the inputs and outputs each task reported (namespace, name, facets)
against what the task did.

The data: one day of BANKING77 is uploaded with labels beforehand, a model is pinned on it and
three streams are opened; the runs then upload 60 comments of the next day and one message
without text (through ``cm_upload_comments``), export and load that day, drain the streams into
SQLite, PostgreSQL and files (the message without text is refused by the table's CHECK and by the
outbox, and tagged as a stream exception), and predict five messages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cm.common.lineage import api_namespace, dataset_name, source_name, stream_name
from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator
from airflow_provider_cm.pipelines.warehouse.flat_comments import EXPORT_COLUMNS
from airflow_provider_cm.pipelines.warehouse.model import COMMENTS
from airflow_provider_cm.transfers.communications_mining_to_sql import (
    STREAM_COLUMN_TYPES,
    STREAM_COLUMNS,
    typed_column_types,
)
from tests.conftest import (
    BANKING77_JSONL,
    POSTGRES_SERVER,
    ROOT,
    TOKEN,
    new_workspace,
    postgres_test_database,
    read_jsonl,
    write_jsonl,
)

UTC = timezone.utc
DAY = datetime(2026, 10, 5, tzinfo=UTC)
#: The message the outbox of ``cm_stream_to_files`` refuses (no text), tagged as a stream exception.
EMPTY_ID = "lineage-empty-message"


def day_of(record: dict[str, Any]) -> str:
    return record["comment"]["timestamp"][:10]


class Runs:
    """The workspace, the files and the captured events of the example-DAG runs."""

    def __init__(self, tmp: Path, workspace: Any, endpoint: str) -> None:
        self.tmp = tmp
        self.workspace = workspace
        self.namespace = api_namespace(endpoint)
        self.export_root = tmp / "exports"
        self.sqlite_path = tmp / "warehouse.db"
        self.day_file = tmp / "day.jsonl"
        self.messages = tmp / "messages.jsonl"
        self.predictions = tmp / "predictions.jsonl"
        self.events_path = tmp / "events.jsonl"
        self.day_count = 0
        self.postgres = False
        self.postgres_tables: dict[str, str] = {}
        self.events: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    def complete(self, dag_id: str, task_id: str, run: int | None = None) -> dict[str, Any]:
        """The COMPLETE event of a task; ``run`` picks the run (index into the plan) when a DAG ran twice."""
        run_ids = [r["run_id"] for r in self.results if r["dag_id"] == dag_id]
        wanted = run_ids if run is None else [self.results[run]["run_id"]]
        found = [
            event
            for event in self.events
            if event["eventType"] == "COMPLETE"
            and event["job"]["name"] == f"{dag_id}.{task_id}"
            and event["run"]["facets"]["airflow"]["dagRun"]["run_id"] in wanted
        ]
        assert len(found) == 1, f"{len(found)} COMPLETE events for {dag_id}.{task_id}"
        return found[0]


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def rows(dataset: dict[str, Any]) -> int | None:
    return dataset.get("outputFacets", {}).get("outputStatistics", {}).get("rowCount")


def schema(dataset: dict[str, Any]) -> list[tuple[str, str]]:
    return [(field["name"], field["type"]) for field in dataset["facets"]["schema"]["fields"]]


def plan_for(runs: Runs, postgres_uri: str | None) -> list[dict[str, Any]]:
    """The example-DAG runs, in order, with the environment each one reads."""
    ws = runs.workspace
    base = {
        "CM_SOURCE": ws.source,
        "CM_DATASET": ws.dataset,
        "CM_EXPORT_ROOT": str(runs.export_root),
        "CM_WAREHOUSE_CONN_ID": "cm_lineage_warehouse",
        "AIRFLOW_CONN_CM_LINEAGE_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(runs.sqlite_path)}),
        "CM_LOOKBACK_DAYS": "0",  # the nightly load reads its day only
        "CM_SENSOR_TIMEOUT": "120",
    }
    logical = (DAY + timedelta(days=1)).isoformat()
    plan: list[dict[str, Any]] = [
        {"dag": "cm_upload_comments", "env": base, "conf": {"input_path": str(runs.day_file)}},
        {"dag": "cm_nightly_export_to_files", "env": base, "logical_date": logical},
        {"dag": "cm_nightly_export", "env": base, "logical_date": logical},
        {"dag": "cm_stream_to_warehouse", "env": {**base, "CM_STREAM": "to-sqlite", "CM_STREAM_TABLE": "cm_stream"}},
        {"dag": "cm_stream_to_files", "env": {**base, "CM_STREAM": "to-files"}},
        {
            "dag": "cm_model_tag_gate",
            "env": base,
            "conf": {"input_path": str(runs.messages), "output_path": str(runs.predictions)},
        },
    ]
    if postgres_uri:
        warehouse = {**base, "AIRFLOW_CONN_CM_LINEAGE_WAREHOUSE": postgres_uri}
        comments, stream = runs.postgres_tables["comments"], runs.postgres_tables["stream"]
        plan += [
            {
                "dag": "cm_nightly_export",
                "env": {**warehouse, "CM_WAREHOUSE_PREFIX": comments},
                "logical_date": logical,
            },
            {
                "dag": "cm_stream_to_warehouse",
                "env": {**warehouse, "CM_STREAM": "to-postgres", "CM_STREAM_TABLE": stream},
            },
        ]
    return plan


def run_with_openlineage(runs: Runs, plan: list[dict[str, Any]]) -> None:
    """Run ``plan`` in a process of its own with the OpenLineage listener writing to the file transport."""
    plan_path, result_path = runs.tmp / "plan.json", runs.tmp / "result.json"
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(runs.events_path), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "cm-lineage-tests",
        # The listener gives each event 10 s by default; the test machine may be busy.
        "AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT": "120",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "tests.lineage_runner", str(plan_path), str(result_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stdout[-5000:] + completed.stderr[-5000:]
    runs.results = json.loads(result_path.read_text(encoding="utf-8"))
    assert [r["state"] for r in runs.results] == ["success"] * len(plan), runs.results
    runs.events = [json.loads(line) for line in runs.events_path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="module")
def runs(emulator, airflow_db, tmp_path_factory) -> Any:
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    tmp = tmp_path_factory.mktemp("lineage")
    runs = Runs(tmp, new_workspace(hook), hook.endpoint)
    records = read_jsonl(BANKING77_JSONL)
    early = [r for r in records if "2026-10-04" <= day_of(r) < DAY.date().isoformat()]
    day = [r for r in records if day_of(r) == DAY.date().isoformat()][:60]
    empty = {"comment": {"id": EMPTY_ID, "timestamp": "2026-10-05T12:00:00Z", "messages": [{"body": {"text": ""}}]}}
    write_jsonl(runs.day_file, [*day, empty])
    write_jsonl(runs.messages, [{"comment": r["comment"]} for r in day[:5]])
    CommunicationsMiningUploadCommentsOperator(
        task_id="early",
        source=runs.workspace.source,
        dataset=runs.workspace.dataset,
        input_path=str(write_jsonl(tmp / "early.jsonl", early)),
    ).execute({})
    version = emulator.admin("POST", f"datasets/{runs.workspace.dataset}/models", {"tag": "live"})["version"]
    for stream in ("to-sqlite", "to-postgres", "to-files"):
        hook.put_stream(runs.workspace.dataset, stream, model_version=version)
    runs.day_count = len(day) + 1
    postgres_uri = None
    if os.environ.get("CM_REQUIRE_POSTGRES") or _postgres_reachable():
        connection = postgres_test_database()
        connection.close()
        suffix = uuid.uuid4().hex[:8]
        # "comments": the typed tables' prefix (cm_lineage_<suffix>_comments, ...); "stream": a table.
        runs.postgres_tables = {"comments": f"cm_lineage_{suffix}_", "stream": f"cm_lineage_stream_{suffix}"}
        postgres_uri = f"{POSTGRES_SERVER}/cm_test"
        runs.postgres = True
    try:
        run_with_openlineage(runs, plan_for(runs, postgres_uri))
        yield runs
    finally:
        if runs.postgres:
            connection = postgres_test_database()
            with connection.cursor() as cursor:
                typed = ("comments", "comment_labels", "comment_entities", "comment_user_properties", "loads")
                prefix = runs.postgres_tables["comments"]
                for table in [runs.postgres_tables["stream"], *(prefix + name for name in typed)]:
                    cursor.execute(f"DROP TABLE IF EXISTS {table} CASCADE")  # and the BI view
            connection.commit()
            connection.close()
        hook.close()


def _postgres_reachable() -> bool:
    try:
        postgres_test_database().close()
        return True
    except BaseException:
        return False


def xcom(runs: Runs, dag_id: str, task_id: str, run: int | None = None) -> Any:
    [result] = [r for i, r in enumerate(runs.results) if r["dag_id"] == dag_id and run in (None, i)]
    return result["xcom"][task_id]


def run_index(runs: Runs, dag_id: str, postgres: bool) -> int:
    """Which run of a DAG that ran once into SQLite and once into PostgreSQL."""
    indexes = [i for i, r in enumerate(runs.results) if r["dag_id"] == dag_id]
    return indexes[1] if postgres else indexes[0]


# -- the events -----------------------------------------------------------------------------------


def test_upload_reads_the_file_and_writes_the_source_and_the_dataset(runs):
    event = runs.complete("cm_upload_comments", "upload_comments")
    ws = runs.workspace
    assert names(event["inputs"]) == [("file", str(runs.day_file))]
    assert names(event["outputs"]) == [
        (runs.namespace, f"sources/{ws.project}/inbox"),
        (runs.namespace, f"datasets/{ws.project}/support"),
    ]
    result = xcom(runs, "cm_upload_comments", "upload_comments")
    assert result["new"] == runs.day_count and result["annotated"] == runs.day_count - 1  # the empty one has none
    assert [rows(output) for output in event["outputs"]] == [runs.day_count, runs.day_count - 1]


def test_export_reads_the_dataset_and_writes_the_file(runs):
    event = runs.complete("cm_nightly_export_to_files", "export_day")
    result = xcom(runs, "cm_nightly_export_to_files", "export_day")
    assert names(event["inputs"]) == [(runs.namespace, f"datasets/{runs.workspace.project}/support")]
    assert names(event["outputs"]) == [("file", result["path"])]
    assert Path(result["path"]).is_file() and result["path"].endswith("/2026-10-05.jsonl")
    assert rows(event["outputs"][0]) == result["count"] == len(read_jsonl(result["path"])) == runs.day_count


def test_dataset_transfer_reads_the_dataset_and_writes_the_sqlite_table(runs):
    import sqlite3

    event = runs.complete("cm_nightly_export", "load_into_warehouse", run_index(runs, "cm_nightly_export", False))
    assert names(event["inputs"]) == [(runs.namespace, f"datasets/{runs.workspace.project}/support")]
    tables = ("cm_comments", "cm_comment_labels", "cm_comment_entities", "cm_comment_user_properties")
    assert names(event["outputs"]) == [("sqlite", f"{runs.sqlite_path}.main.{table}") for table in tables]
    assert schema(event["outputs"][0]) == list(typed_column_types(COMMENTS).items())
    assert ("timestamp", "TIMESTAMP WITH TIME ZONE") in schema(event["outputs"][0])
    with sqlite3.connect(runs.sqlite_path) as db:
        [(in_table,)] = db.execute("SELECT COUNT(*) FROM cm_comments").fetchall()
        [(labels,)] = db.execute("SELECT COUNT(*) FROM cm_comment_labels").fetchall()
    assert rows(event["outputs"][0]) == in_table == runs.day_count
    assert rows(event["outputs"][1]) == labels > in_table


def test_stream_transfer_reads_the_stream_and_writes_the_sqlite_table(runs):
    import sqlite3

    event = runs.complete(
        "cm_stream_to_warehouse", "drain_into_warehouse", run_index(runs, "cm_stream_to_warehouse", False)
    )
    assert names(event["inputs"]) == [(runs.namespace, f"datasets/{runs.workspace.project}/support/streams/to-sqlite")]
    assert names(event["outputs"]) == [("sqlite", f"{runs.sqlite_path}.main.cm_stream")]
    assert schema(event["outputs"][0]) == [(c, STREAM_COLUMN_TYPES.get(c, "TEXT")) for c in STREAM_COLUMNS]
    with sqlite3.connect(runs.sqlite_path) as db:
        [(in_table,)] = db.execute("SELECT COUNT(*) FROM cm_stream").fetchall()
    # The table's CHECK refuses the message without text: it is tagged as an exception, not written.
    assert rows(event["outputs"][0]) == in_table == runs.day_count - 1


def test_stream_fetch_reads_the_stream_and_writes_the_file(runs):
    event = runs.complete("cm_stream_to_files", "fetch_results")
    result = xcom(runs, "cm_stream_to_files", "fetch_results")
    assert names(event["inputs"]) == [(runs.namespace, f"datasets/{runs.workspace.project}/support/streams/to-files")]
    assert names(event["outputs"]) == [("file", result["path"])]
    assert rows(event["outputs"][0]) == result["count"] == len(read_jsonl(result["path"])) == runs.day_count


def test_tagging_exceptions_writes_the_stream(runs):
    event = runs.complete("cm_stream_to_files", "tag_exceptions")
    assert xcom(runs, "cm_stream_to_files", "tag_exceptions") == 1  # the message the outbox refused
    assert names(event["inputs"]) == []
    assert names(event["outputs"]) == [(runs.namespace, f"datasets/{runs.workspace.project}/support/streams/to-files")]
    assert rows(event["outputs"][0]) == 1


def test_predict_reads_the_messages_and_the_dataset_and_writes_the_predictions(runs):
    event = runs.complete("cm_model_tag_gate", "predict_new_messages")
    assert names(event["inputs"]) == [
        ("file", str(runs.messages)),
        (runs.namespace, f"datasets/{runs.workspace.project}/support"),
    ]
    assert names(event["outputs"]) == [("file", str(runs.predictions))]
    assert rows(event["outputs"][0]) == len(read_jsonl(runs.predictions)) == 5


@pytest.mark.parametrize(
    ("dag_id", "task_id"), [("cm_stream_to_files", "advance_stream"), ("cm_model_tag_gate", "check_live_model")]
)
def test_operators_that_move_no_data_report_no_communications_mining_dataset(runs, dag_id, task_id):
    """Advancing a stream and resolving a model tag move no data: they report no lineage of their own.

    (Files written by earlier tasks of the same test process can still show up through Airflow's
    hook-level lineage, which is process-wide; a worker runs each task in a process of its own.)
    """
    event = runs.complete(dag_id, task_id)
    reported = names(event.get("inputs", [])) + names(event.get("outputs", []))
    assert not [name for name in reported if name[0].startswith("communications-mining://")]


def test_no_credentials_reach_the_events(runs):
    text = runs.events_path.read_text(encoding="utf-8")
    assert TOKEN not in text
    namespaces = {d["namespace"] for e in runs.events for d in e.get("inputs", []) + e.get("outputs", [])}
    assert {ns for ns in namespaces if ns.startswith("communications-mining://")} == {runs.namespace}
    assert runs.namespace.startswith("communications-mining://127.0.0.1:") and runs.namespace.endswith(
        "/acme/production/reinfer_"
    )


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("dag_id", "task_id", "table"),
    [
        ("cm_nightly_export", "load_into_warehouse", "comments"),
        ("cm_stream_to_warehouse", "drain_into_warehouse", "stream"),
    ],
)
def test_transfers_name_the_postgres_table_as_common_sql_does(runs, dag_id, task_id, table):
    if not runs.postgres:
        pytest.skip("PostgreSQL is not reachable")
    event = runs.complete(dag_id, task_id, run_index(runs, dag_id, True))
    typed = dag_id == "cm_nightly_export"  # the typed tables: <prefix>comments first
    name = f"cm_test.public.{runs.postgres_tables[table]}" + ("comments" if typed else "")
    assert names(event["outputs"])[0] == ("postgres://127.0.0.1:5432", name)
    assert len(event["outputs"]) == (4 if typed else 1)
    result = xcom(runs, dag_id, task_id, run_index(runs, dag_id, True))
    written = result["by_table"]["comments"]["written"] if typed else result["rows_written"]
    assert rows(event["outputs"][0]) == written > 0
    if dag_id == "cm_stream_to_warehouse":
        # The DAG's create_table task is common-sql's SQLExecuteQueryOperator: its own lineage names the
        # same table, so the two tasks meet in a lineage graph.
        created = runs.complete(dag_id, "create_table", run_index(runs, dag_id, True))
        assert names(created["outputs"]) == [("postgres://127.0.0.1:5432", name)]


# -- the names, and the lineage of executed operators without a listener ----------------------------


@pytest.mark.parametrize(
    ("endpoint", "namespace"),
    [
        (
            "https://cloud.uipath.com/acme/production/reinfer_",
            "communications-mining://cloud.uipath.com/acme/production/reinfer_",
        ),
        ("https://Acme.Reinfer.io", "communications-mining://acme.reinfer.io"),
        ("https://user:secret@acme.reinfer.io:443/?token=x#part", "communications-mining://acme.reinfer.io"),
        ("http://acme.reinfer.io:80/", "communications-mining://acme.reinfer.io"),
        (
            "http://127.0.0.1:8765/acme/production/reinfer_/",
            "communications-mining://127.0.0.1:8765/acme/production/reinfer_",
        ),
        ("https://cm.internal:8443", "communications-mining://cm.internal:8443"),
        ("http://cm.internal:443", "communications-mining://cm.internal:443"),
        ("http://[::1]:8765", "communications-mining://[::1]:8765"),
    ],
)
def test_the_namespace_is_the_endpoint_without_credentials_query_or_default_port(endpoint, namespace):
    assert api_namespace(endpoint) == namespace


def test_names_follow_the_api_routes():
    assert source_name("demo/inbox") == "sources/demo/inbox"
    assert dataset_name("demo/support") == "datasets/demo/support"
    assert stream_name("demo/support", "new-messages") == "datasets/demo/support/streams/new-messages"
    for bad in ("demo", "demo/support/extra", "/support"):
        with pytest.raises(ValueError, match="project/name"):
            dataset_name(bad)
    with pytest.raises(ValueError, match="no host"):
        api_namespace("file:///tmp/x")


def test_the_namespace_comes_from_the_connection_as_the_hook_resolves_it(monkeypatch):
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_CM_LINEAGE_LEGACY",
        json.dumps({"conn_type": "communications_mining", "host": "Acme.Reinfer.io/", "password": TOKEN}),
    )
    hook = CommunicationsMiningHook("cm_lineage_legacy")
    assert api_namespace(hook.endpoint) == "communications-mining://acme.reinfer.io"


@pytest.mark.parametrize(
    ("uri", "namespace", "name"),
    [
        ("s3://bucket/cm/2026-10-05.jsonl", "s3://bucket", "cm/2026-10-05.jsonl"),
        # The Airflow connection named in the URI is how the file is read, not which file it is.
        ("s3://aws_default@bucket/cm/2026-10-05.jsonl", "s3://bucket", "cm/2026-10-05.jsonl"),
        ("gs://bucket/cm/day.csv", "gs://bucket", "cm/day.csv"),
        ("file:///data/cm/day.jsonl", "file", "/data/cm/day.jsonl"),
        ("/data/cm/day.jsonl", "file", "/data/cm/day.jsonl"),
    ],
)
def test_files_follow_openlineage_naming_for_files_and_object_storage(uri, namespace, name):
    from airflow_provider_cm.common.lineage import file_dataset
    from airflow_provider_cm.common.storage import to_storage_path

    dataset = file_dataset(to_storage_path(uri))
    assert (dataset.namespace, dataset.name) == (namespace, name)


def lineage_of(operator: Any) -> Any:
    return operator.get_openlineage_facets_on_complete(None)


def output_rows(dataset: Any) -> int | None:
    statistics = (dataset.outputFacets or {}).get("outputStatistics")
    return statistics.rowCount if statistics is not None else None


def test_upload_reports_its_dead_letter_file_and_what_was_stored(workspace, hook, emulator, tmp_path, context):
    from tests.conftest import make_record

    records = [make_record(f"q{i}", f"2026-10-01T00:00:{i:02d}Z", f"text {i}", "Billing") for i in range(8)]
    path = write_jsonl(tmp_path / "in.jsonl", records)
    operator = CommunicationsMiningUploadCommentsOperator(
        task_id="upload",
        source=workspace.source,
        dataset=workspace.dataset,
        input_path=str(path),
        fail_on_rejected=False,
        dead_letter_path=str(tmp_path / "rejected.jsonl"),
    )
    emulator.admin("POST", "faults", {"reject_comment_ids": {"q3": "refused"}})
    try:
        operator.execute(context)
    finally:
        emulator.admin("DELETE", "faults")
    lineage = lineage_of(operator)
    namespace = api_namespace(hook.endpoint)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(path))]
    assert [(d.namespace, d.name, output_rows(d)) for d in lineage.outputs] == [
        (namespace, f"sources/{workspace.project}/inbox", 7),
        (namespace, f"datasets/{workspace.project}/support", 7),
        ("file", str(tmp_path / "rejected.jsonl"), 1),
    ]


def test_a_dry_run_reports_the_file_read_and_nothing_written(workspace, tmp_path, context):
    from tests.conftest import make_record

    path = write_jsonl(tmp_path / "in.jsonl", [make_record("z1", "2026-10-01T00:00:00Z")])
    operator = CommunicationsMiningUploadCommentsOperator(
        task_id="upload", source=workspace.source, input_path=str(path), dry_run=True
    )
    operator.execute(context)
    lineage = lineage_of(operator)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(path))]
    assert lineage.outputs == []


def test_a_csv_export_reports_its_columns_and_an_unfinished_task_no_statistics(workspace, hook, tmp_path, context):
    from airflow_provider_cm.operators.datasets import CommunicationsMiningExportDatasetOperator
    from tests.conftest import make_record

    CommunicationsMiningUploadCommentsOperator(
        task_id="upload",
        source=workspace.source,
        input_path=str(write_jsonl(tmp_path / "in.jsonl", [make_record("c1", "2026-10-01T10:00:00Z")])),
    ).execute(context)
    operator = CommunicationsMiningExportDatasetOperator(
        task_id="export",
        dataset=workspace.dataset,
        output_path=str(tmp_path / "out" / "day.csv"),
        output_format="csv",
        start="2026-10-01T00:00:00Z",
        end="2026-10-02T00:00:00Z",
    )
    before = lineage_of(operator)  # not executed: the names, no figures
    assert output_rows(before.outputs[0]) is None
    operator.execute(context)
    [output] = lineage_of(operator).outputs
    assert (output.namespace, output.name, output_rows(output)) == ("file", str(tmp_path / "out" / "day.csv"), 1)
    assert [(f.name, f.type) for f in output.facets["schema"].fields] == [(c, "string") for c in EXPORT_COLUMNS]


def test_nothing_imports_openlineage_until_the_listener_asks():
    """The OpenLineage provider stays optional: importing and building operators loads none of it.

    (Airflow itself reads the installed provider's ``get_provider_info``; that is all.)
    """
    script = (
        "import json, sys\n"
        "import airflow_provider_cm.common.lineage, airflow_provider_cm.operators.comments, "
        "airflow_provider_cm.operators.datasets, airflow_provider_cm.operators.streams, "
        "airflow_provider_cm.operators.models, airflow_provider_cm.transfers.communications_mining_to_sql\n"
        "from airflow_provider_cm.operators.datasets import CommunicationsMiningExportDatasetOperator\n"
        "CommunicationsMiningExportDatasetOperator(task_id='e', dataset='p/d', output_path='/tmp/x.jsonl')\n"
        "print(json.dumps(sorted(m for m in sys.modules if 'openlineage' in m)))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    assert set(loaded) <= {"airflow.providers.openlineage", "airflow.providers.openlineage.get_provider_info"}
