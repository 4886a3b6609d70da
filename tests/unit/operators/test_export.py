"""The export operator over real HTTP: half-open windows, pagination, formats, atomic output."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone

import pytest

from airflow_provider_cm.operators.datasets import (
    EXPORT_COLUMNS,
    CommunicationsMiningExportDatasetOperator,
    flatten_exported_comment,
)
from tests.conftest import local_path, make_record, read_jsonl

UTC = timezone.utc


def export(workspace, output_path, **kwargs) -> CommunicationsMiningExportDatasetOperator:
    return CommunicationsMiningExportDatasetOperator(
        task_id="export", dataset=workspace.dataset, output_path=str(output_path), **kwargs
    )


@pytest.fixture
def boundary_workspace(workspace, hook):
    """Comments around the 2026-10-02 midnight boundary, one exactly on it, with labels."""
    times = ["2026-10-01T23:59:59.999999Z", "2026-10-02T00:00:00Z", "2026-10-02T12:00:00Z", "2026-10-03T00:00:00Z"]
    records = [make_record(f"b{i}", t, f"text {i}", "Card > Lost") for i, t in enumerate(times)]
    hook.sync_comments(workspace.source, [r["comment"] for r in records])
    for record in records:
        hook.update_annotations(
            workspace.dataset, f"{workspace.source_id}.{record['comment']['id']}", labelling=record["labelling"]
        )
    return workspace


def test_window_is_half_open(boundary_workspace, tmp_path, context):
    context |= {
        "data_interval_start": datetime(2026, 10, 2, tzinfo=UTC),
        "data_interval_end": datetime(2026, 10, 3, tzinfo=UTC),
    }
    result = export(boundary_workspace, tmp_path / "day.jsonl").execute(context)
    assert result["count"] == 2
    assert result["start"] == "2026-10-02T00:00:00.000000Z" and result["end"] == "2026-10-03T00:00:00.000000Z"
    lines = read_jsonl(result["path"])
    assert [line["comment"]["id"] for line in lines] == ["b1", "b2"]  # b3 sits on `end`: the next day's
    assigned = lines[0]["annotations"]["labels"]["assigned"]
    assert [label["name"] for label in assigned] == ["Card", "Card > Lost"]


def test_explicit_templated_window_overrides_the_interval(boundary_workspace, tmp_path, context):
    op = export(boundary_workspace, tmp_path / "all.jsonl", start="2026-10-01T00:00:00Z", end="2026-10-04")
    assert op.execute(context)["count"] == 4


def test_consecutive_windows_cover_each_comment_once(boundary_workspace, tmp_path, context):
    ids = []
    for day in (1, 2, 3):
        op = export(
            boundary_workspace,
            tmp_path / f"{day}.jsonl",
            start=datetime(2026, 10, day, tzinfo=UTC),
            end=datetime(2026, 10, day + 1, tzinfo=UTC),
            page_size=1,
        )
        ids += [line["comment"]["id"] for line in read_jsonl(op.execute(context)["path"])]
    assert sorted(ids) == ["b0", "b1", "b2", "b3"]


def test_csv_output_is_flat(boundary_workspace, tmp_path, context):
    op = export(boundary_workspace, tmp_path / "x.csv", output_format="csv", start="2026-10-01", end="2026-10-04")
    result = op.execute(context)
    with open(local_path(result["path"]), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert rows[0]["uid"] == f"{boundary_workspace.source_id}.b0" and rows[0]["body"] == "text 0"
    assert json.loads(rows[0]["assigned_labels"])[1] == {"name": "Card > Lost", "sentiment": "positive"}


def test_rerun_replaces_the_file_and_leaves_no_temporary(boundary_workspace, hook, tmp_path, context):
    target = tmp_path / "out" / "day.jsonl"
    op = export(boundary_workspace, target, start="2026-10-02", end="2026-10-03")
    assert op.execute(context)["count"] == 2
    hook.sync_comments(boundary_workspace.source, [make_record("late", "2026-10-02T06:00:00Z")["comment"]])
    assert op.execute(context)["count"] == 3
    assert len(read_jsonl(target)) == 3
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["day.jsonl"]


def test_failed_export_keeps_the_previous_file(boundary_workspace, emulator, tmp_path, context):
    target = tmp_path / "day.jsonl"
    target.write_text("previous\n")
    emulator.admin("POST", "faults", {"fail_next": {"count": 1, "status": 404, "path_contains": "/export"}})
    op = export(boundary_workspace, target, start="2026-10-01", end="2026-10-04", page_size=1)
    with pytest.raises(Exception, match="404"):
        op.execute(context)
    assert target.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["day.jsonl"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": "2026-10-02", "end": "2026-10-02"}, "window is empty"),
        ({"start": "yesterday", "end": "2026-10-02"}, "not an ISO-8601"),
        ({}, "no export window"),
    ],
)
def test_bad_windows_are_clear(workspace, tmp_path, context, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export(workspace, tmp_path / "x.jsonl", **kwargs).execute(context)


def test_bad_arguments_fail_at_parse_time(workspace, tmp_path):
    with pytest.raises(ValueError, match="output_format"):
        export(workspace, tmp_path / "x", output_format="xlsx")
    with pytest.raises(ValueError, match="order_by"):
        export(workspace, tmp_path / "x", order_by="updated_at")


def test_declares_an_asset_outlet(workspace, tmp_path):
    op = export(workspace, tmp_path / "x.jsonl")
    [asset] = op.outlets
    assert asset.uri == f"communications-mining://{workspace.dataset}"


def test_flatten_handles_predictions_and_missing_parts():
    row = flatten_exported_comment(
        {
            "comment": {"uid": "s1.c1", "id": "c1", "messages": [{"subject": {"text": "Hi"}, "body": {"text": "B"}}]},
            "predictions": {"labels": [{"name": ["A", "B"], "probability": 0.9}]},
        }
    )
    assert row["source_id"] == "s1" and row["subject"] == "Hi" and row["sender"] == ""
    assert json.loads(row["predicted_labels"]) == [{"name": "A > B", "probability": 0.9}]
    assert json.loads(row["assigned_labels"]) == []


@pytest.mark.parametrize(
    ("schedule", "works"),
    [
        ("timedelta", False),
        ("@daily", False),
        ("DeltaDataIntervalTimetable", True),
        ("CronDataIntervalTimetable", True),
    ],
)
def test_schedules_without_data_intervals_fail_saying_which_work(
    boundary_workspace, tmp_path, context, schedule, works
):
    """In Airflow 3 '@daily' and timedelta schedules give runs no data interval: the error says what to use."""
    from datetime import timedelta

    from airflow.sdk import DAG, CronDataIntervalTimetable, DeltaDataIntervalTimetable
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    schedules = {
        "timedelta": timedelta(days=1),
        "@daily": "@daily",
        "DeltaDataIntervalTimetable": DeltaDataIntervalTimetable(timedelta(days=1)),
        "CronDataIntervalTimetable": CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    }
    start = datetime(2026, 10, 2, tzinfo=UTC)
    dag = DAG("cm_export_schedule", schedule=schedules[schedule], start_date=start)
    # The data interval the scheduler gives the DAG's first scheduled run.
    run = coerce_to_core_timetable(dag.timetable).next_dagrun_info(
        last_automated_data_interval=None, restriction=TimeRestriction(earliest=start, latest=None, catchup=True)
    )
    assert run is not None
    context.update(dag=dag, data_interval_start=run.data_interval.start, data_interval_end=run.data_interval.end)
    op = export(boundary_workspace, tmp_path / "day.jsonl")
    if works:
        assert op.execute(context)["count"] == 2
        return
    with pytest.raises(ValueError, match="window is empty") as info:
        op.execute(context)
    assert type(dag.timetable).__name__ in str(info.value)
    assert "DeltaDataIntervalTimetable(timedelta(days=1))" in str(info.value) and "CronDataIntervalTimetable" in str(
        info.value
    )


def test_templated_dataset_declares_an_alias_resolved_to_the_rendered_dataset(boundary_workspace, tmp_path, context):
    """Two DAGs exporting different datasets through a templated argument do not share one Asset."""
    from airflow.sdk import AssetAlias
    from airflow.sdk.execution_time.context import OutletEventAccessors

    op = CommunicationsMiningExportDatasetOperator(
        task_id="export_any", dataset="{{ params.dataset }}", output_path=str(tmp_path / "x.jsonl")
    )
    [alias] = op.outlets
    assert isinstance(alias, AssetAlias) and alias.name == "communications_mining_export:export_any"
    op.dataset = boundary_workspace.dataset  # as rendered at run time
    events = OutletEventAccessors()
    context.update(outlet_events=events, data_interval_start="2026-10-02", data_interval_end="2026-10-03")
    result = op.execute(context)
    [event] = events[alias].asset_alias_events
    assert event.dest_asset_key.uri == f"communications-mining://{boundary_workspace.dataset}"
    assert event.extra["count"] == result["count"] == 2
    assert result["path"] == str(tmp_path / "x.jsonl")  # a local path stays a local path
