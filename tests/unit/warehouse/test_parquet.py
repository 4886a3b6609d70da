"""Parquet files of the warehouse model: one per table per window, atomic, read back equal (and by DuckDB)."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from upath import UPath

from airflow_provider_cm.pipelines.warehouse.model import COMMENTS, DATA_TABLES, LOADS
from airflow_provider_cm.pipelines.warehouse.parquet import (
    ParquetWindowWriter,
    arrow_schema,
    read_rows,
    window_name,
)
from airflow_provider_cm.pipelines.warehouse.rows import CommentRows, page_rows

AT = datetime(2026, 11, 1, 3, tzinfo=timezone.utc)
WINDOW = window_name(datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 10, 2, tzinfo=timezone.utc))


def pages_of(exported, size=40):
    return [page_rows(exported[i : i + size], load_id="l1", extracted_at=AT) for i in range(0, len(exported), size)]


def all_rows(pages):
    rows = CommentRows()
    for page in pages:
        rows.extend(page)
    return rows


def test_window_names_are_safe_file_names():
    assert WINDOW == "20261001T000000Z_20261002T000000Z"


def test_every_table_is_written_and_read_back_equal(banking, tmp_path):
    _, exported = banking
    pages = pages_of(exported)
    with ParquetWindowWriter(tmp_path, WINDOW) as writer:
        for page in pages:
            writer.write(page)
    expected = all_rows(pages)
    for spec in DATA_TABLES:
        path = tmp_path / spec.name / f"{WINDOW}.parquet"
        assert writer.paths[spec.name] == path
        assert read_rows(path, spec) == expected.tables[spec.name], spec.name
        assert pq.read_schema(path).equals(arrow_schema(spec))
    assert writer.rows_written["comments"] == len(exported)
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        [spec.name for spec in DATA_TABLES] + [f"{WINDOW}.parquet"] * len(DATA_TABLES)
    )


def test_the_types_are_the_models(banking, tmp_path):
    _, exported = banking
    with ParquetWindowWriter(tmp_path, WINDOW) as writer:
        writer.write(pages_of(exported)[0])
    schema = pq.read_schema(tmp_path / "comments" / f"{WINDOW}.parquet")
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("has_annotations").type == pa.bool_() and schema.field("model_version").type == pa.int64()
    labels = pq.read_schema(tmp_path / "comment_labels" / f"{WINDOW}.parquet")
    assert labels.field("probability").type == pa.float64() and not labels.field("uid").nullable


def test_a_window_that_fails_leaves_the_previous_files(banking, tmp_path):
    _, exported = banking
    pages = pages_of(exported)
    with ParquetWindowWriter(tmp_path, WINDOW) as writer:
        writer.write(pages[0])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.parquet")}
    with pytest.raises(ConnectionError), ParquetWindowWriter(tmp_path, WINDOW) as failing:
        failing.write(pages[1])
        raise ConnectionError("the API went away")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.parquet")} == before
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_the_target_may_be_object_storage(banking):
    _, exported = banking
    target = UPath("memory://warehouse/nightly")
    page = pages_of(exported)[0]
    with ParquetWindowWriter(target, WINDOW) as writer:
        writer.write(page)
        writer.write_loads(
            [
                {
                    "load_id": "l1",
                    "dataset": "p/d",
                    "mode": "window",
                    "rows_read": 40,
                    "rows_written": 40,
                    "rows_unchanged": 0,
                    "rows_marked_deleted": 0,
                    "pages": 1,
                    "started_at": AT,
                    "finished_at": AT,
                }
            ]
        )
    assert read_rows(target / "comments" / f"{WINDOW}.parquet", COMMENTS) == page.tables["comments"]
    assert read_rows(target / "loads" / f"{WINDOW}.parquet", LOADS)[0]["rows_read"] == 40


def test_duckdb_reads_the_files_as_they_are(banking, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    _, exported = banking
    with ParquetWindowWriter(tmp_path, WINDOW) as writer:
        for page in pages_of(exported):
            writer.write(page)
    connection = duckdb.connect()
    comments = connection.execute(
        f"SELECT count(*), min(timestamp), bool_and(has_annotations) FROM read_parquet('{tmp_path}/comments/*.parquet')"
    ).fetchone()
    assert comments[0] == len(exported) and comments[2] is True
    assert comments[1] == datetime(2026, 10, 1, 0, 3, 35, tzinfo=timezone.utc)
    top = connection.execute(
        f"SELECT label, json(metadata)->>'user_id' FROM read_parquet('{tmp_path}/comment_labels/*.parquet')"
        " WHERE kind = 'assigned' AND depth = 2 ORDER BY uid LIMIT 1"
    ).fetchone()
    assert top[1] == "analyst"
    types = dict(
        connection.execute(
            "SELECT column_name, column_type FROM"
            f" (DESCRIBE SELECT * FROM read_parquet('{tmp_path}/comment_labels/*.parquet'))"
        ).fetchall()
    )
    assert types["probability"] == "DOUBLE" and types["_cm_extracted_at"] == "TIMESTAMP WITH TIME ZONE"
