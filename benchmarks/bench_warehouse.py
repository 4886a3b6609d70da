"""Warehouse: a reconcile of a dataset with 1 % of its comments relabelled, and Parquet's writing rate.

The dataset holds ``count`` comments (BANKING77 texts repeated with new ids, October 2026), the
first 300 labelled through the annotation route and a model version pinned, so every exported
comment carries the latest predictions. A first reconcile loads it into each warehouse (SQLite
file, and PostgreSQL in a throwaway database on 127.0.0.1:5432 when it answers); then the
emulator replays a day in which 1 % of the comments are relabelled (nothing else changes), and
at ``latency`` (100 ms a request by default) the benchmark measures, each in a fresh process:

* **the baseline**: the export operator with its defaults (time slices side by side) writing the
  same dataset to a JSONL file, measured right before each reconcile;
* **the reconcile** (``load_dataset(mode="reconcile")`` with its defaults): its time as a ratio
  to the baseline (goal: at most 1.2 times), the rows it wrote as a share of the rows it read (goal ≤ 2 %,
  plus the ``loads`` row), and its peak RSS growth (``VmHWM`` after resetting it, as the export
  benchmark measures it); at ``count / 4`` comments too (SQLite), so the two peaks show whether
  memory follows the dataset's size or the pages in flight;
* **Parquet**: :func:`~airflow_provider_cm.pipelines.warehouse.freshness.export_rows` into a
  :class:`~airflow_provider_cm.pipelines.warehouse.parquet.ParquetWindowWriter`: rows of
  ``comments`` and ``comment_labels`` written per second of the writer's own time, against the
  rate at which the export delivers those rows (rows over the whole run's time).

    python benchmarks/run.py --only warehouse [--warehouse-comments 200000]
    CM_BENCH_WAREHOUSE_COMMENTS=20000 python benchmarks/run.py --only warehouse
    CM_BENCH_WAREHOUSE_TARGETS=postgresql python benchmarks/run.py --only warehouse
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, Emulator, banking77_records, timed_result

#: The comments of the default run (``--warehouse-comments`` or this variable change it).
DEFAULT_COMMENTS = int(os.environ.get("CM_BENCH_WAREHOUSE_COMMENTS", "200000"))
POSTGRES_SERVER = os.environ.get("CM_BENCH_POSTGRES_SERVER", "postgresql://postgres@127.0.0.1:5432")
#: The warehouses measured at full size: ``sqlite``, ``postgresql`` or both (comma-separated).
TARGETS = set(os.environ.get("CM_BENCH_WAREHOUSE_TARGETS", "sqlite,postgresql").split(","))
LABELLED = 300
START, END = "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"

_CHILD = """
import json, os, sys
sys.path.insert(0, {root!r})
from benchmarks import bench_warehouse
print("RESULT " + json.dumps(bench_warehouse.{function}(*{args!r})))
"""


def _status(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> float:
    """Reset the peak resident size to the current one; the current one, in MB."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")
    return _status("VmRSS")


def in_child(function: str, *args: Any) -> dict[str, Any]:
    """``function(*args)`` of this module in a fresh process (its memory is its own): its result."""
    script = _CHILD.format(root=str(ROOT), function=function, args=args)
    done = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    [line] = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line[len("RESULT ") :])


# -- the tenant ------------------------------------------------------------------------------------------


def seed(emulator: Emulator, count: int) -> str:
    """A dataset of ``count`` comments, the first :data:`LABELLED` labelled, a model version pinned."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    name = f"wh{count}x{uuid.uuid4().hex[:6]}"
    hook.create_project(name)
    source = hook.create_source(f"{name}/inbox")
    dataset = f"{name}/all"
    hook.create_dataset(dataset, source_ids=[source["id"]])
    records = banking77_records()
    batch = []
    for i in range(count):
        record = records[i % len(records)]
        batch.append(dict(record["comment"], id=f"{record['comment']['id']}-{i // len(records)}"))
        if len(batch) == 8192:
            hook.sync_comments(f"{name}/inbox", batch)
            batch = []
    if batch:
        hook.sync_comments(f"{name}/inbox", batch)
    for i in range(min(LABELLED, count)):
        record = records[i % len(records)]
        uid = f"{source['id']}.{record['comment']['id']}-{i // len(records)}"
        hook.update_annotations(dataset, uid, labelling=record["labelling"])
    emulator.admin_pin(dataset)
    hook.close()
    return dataset


def relabel(emulator: Emulator, dataset: str, count: int) -> int:
    """Replay a day in which ``count`` comments are relabelled and nothing else changes."""
    import requests

    from benchmarks.harness import TOKEN

    # The replayed day's clock must come after the comments' upload (now): relabels pick older comments.
    day = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    body = {"day": day, "seed": 1, "new_comments": 0, "late_uploads": 0, "relabels": count, "deletions": 0}
    response = requests.post(
        f"{emulator.url}/_emulator/datasets/{dataset}/activity",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=600,
    )
    response.raise_for_status()
    return len(response.json()["relabelled"])


# -- what runs in a fresh process ------------------------------------------------------------------------


def child_export(dataset: str, count: int) -> dict[str, Any]:
    """The baseline: the export operator with its defaults, the dataset to a JSONL file."""
    from benchmarks.bench_export import operator_export

    with tempfile.TemporaryDirectory() as tmp:
        operator_export(dataset, Path(tmp) / "warm.jsonl", "2026-10-01T00:00:00Z", "2026-10-01T01:00:00Z")
        seconds, got = timed_result(operator_export, dataset, Path(tmp) / "out.jsonl", START, END)
    assert got == count, (got, count)
    return {"seconds": seconds}


def child_reconcile(dataset: str, url: str, schema: str | None) -> dict[str, Any]:
    """A reconcile with its defaults into the warehouse at ``url``: time, counts, peak RSS growth."""
    import sqlalchemy as sa

    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook
    from airflow_provider_cm.pipelines.warehouse.freshness import export_rows, load_dataset
    from airflow_provider_cm.pipelines.warehouse.sql_writer import SqlWarehouse

    hook = CommunicationsMiningHook()
    engine = sa.create_engine(url)
    warehouse = SqlWarehouse(engine, schema=schema)
    # Warm-up: imports, the connections, first allocations (an hour of comments, not written).
    hour = export_rows(hook, dataset, start=_utc(START), end=_utc("2026-10-01T01:00:00Z"))
    assert sum(len(rows.uids) for rows in hour) > 0
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
    before = _reset_peak()
    seconds, (_, counts) = timed_result(lambda: load_dataset(hook, warehouse, dataset, mode="reconcile"))
    peak = _status("VmHWM") - before
    engine.dispose()
    hook.close()
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "rows_read": counts.rows_read,
        "pages": counts.pages,
        "written": counts.rows_written,
        "unchanged": counts.rows_unchanged,
        "marked_deleted": counts.rows_marked_deleted,
        "by_table": counts.by_table,
    }


def child_parquet(dataset: str) -> dict[str, Any]:
    """The dataset's rows into Parquet files: the writer's own time and the whole run's."""
    import time

    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook
    from airflow_provider_cm.pipelines.warehouse.freshness import export_rows
    from airflow_provider_cm.pipelines.warehouse.parquet import ParquetWindowWriter

    hook = CommunicationsMiningHook()
    writing = 0.0
    rows = {"comments": 0, "comment_labels": 0, "all": 0}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with ParquetWindowWriter(Path(tmp), "bench") as writer:
            for page in export_rows(hook, dataset, mode="reconcile"):
                before = time.perf_counter()
                writer.write(page)
                writing += time.perf_counter() - before
                for name in ("comments", "comment_labels"):
                    rows[name] += len(page.tables[name])
                rows["all"] += sum(len(found) for found in page.tables.values())
        total = time.perf_counter() - started
        size = sum(path.stat().st_size for path in Path(tmp).rglob("*.parquet"))
    hook.close()
    return {"seconds": total, "writing": writing, "rows": rows, "mb": size / 2**20}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- the warehouses --------------------------------------------------------------------------------------


def postgres_database() -> str | None:
    """A new throwaway database's URL, or ``None`` if PostgreSQL does not answer."""
    try:
        import psycopg2
    except ImportError:
        return None
    name = "cm_bench_" + uuid.uuid4().hex[:10]
    try:
        connection = psycopg2.connect(f"{POSTGRES_SERVER}/postgres", connect_timeout=5)
    except psycopg2.OperationalError:
        return None
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    connection.close()
    return POSTGRES_SERVER.replace("postgresql://", "postgresql+psycopg2://", 1) + f"/{name}"


def drop_postgres_database(url: str) -> None:
    import psycopg2

    name = url.rsplit("/", 1)[1]
    connection = psycopg2.connect(f"{POSTGRES_SERVER}/postgres", connect_timeout=5)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    connection.close()


# -- the benchmark ---------------------------------------------------------------------------------------


def _row(benchmark: str, latency: float, baseline: str, figure: str, ratio: float | None, goal: str) -> dict:
    return {
        "benchmark": benchmark,
        "latency": f"{latency * 1000:.0f} ms",
        "bare": baseline,
        "cli": "",
        "operator": figure,
        "vs_bare": ratio,
        "vs_cli": None,
        "goal": goal,
    }


def measure_reconcile(
    emulator: Emulator, dataset: str, count: int, latency: float, warehouses: dict[str, tuple[str, str | None]]
) -> tuple[list[dict], dict[str, dict]]:
    """First loads (no latency), 1 % relabelled, then at ``latency`` baseline and reconcile per warehouse."""
    rows: list[dict] = []
    results: dict[str, dict] = {}
    for name, (url, schema) in warehouses.items():
        first = in_child("child_reconcile", dataset, url, schema)
        print(f"  first load of {count:,} into {name}: {first['seconds']:.1f} s, {first['written']:,} rows", flush=True)
    changed = relabel(emulator, dataset, max(1, count // 100))
    emulator.set_latency(latency)
    try:
        for name, (url, schema) in warehouses.items():
            baseline = in_child("child_export", dataset, count)["seconds"]
            result = in_child("child_reconcile", dataset, url, schema)
            results[name] = result
            read = result["written"] + result["unchanged"]
            share = result["written"] / read if read else float("nan")
            comments = result["by_table"]["comments"]
            labels = result["by_table"]["comment_labels"]
            print(f"  {name}: export {baseline:.1f} s, reconcile {json.dumps(result)}", flush=True)
            rows.append(
                _row(
                    f"reconcile {count:,} comments, {changed:,} relabelled, into {name}",
                    latency,
                    f"sliced export to JSONL {baseline:.1f} s",
                    f"{result['seconds']:.1f} s, {result['pages']:,} pages; wrote {result['written']:,} of"
                    f" {read:,} rows ({share:.2%}; comments {comments['written']:,}, labels"
                    f" {labels['written']:,}) + 1 loads row; peak RSS growth {result['peak_mb']:.0f} MB",
                    result["seconds"] / baseline,
                    "≤ 1.2× the sliced export; ≤ 2 % of rows written",
                )
            )
    finally:
        emulator.set_latency(0.0)
    return rows, results


def run(emulator: Emulator, latency: float = 0.1, count: int = DEFAULT_COMMENTS, quarter: bool = True) -> list[dict]:
    rows: list[dict] = []
    postgres = postgres_database()
    with tempfile.TemporaryDirectory() as tmp:
        warehouses: dict[str, tuple[str, str | None]] = {}
        if "sqlite" in TARGETS:
            warehouses["SQLite file"] = (f"sqlite:///{tmp}/warehouse.db", None)
        if postgres and "postgresql" in TARGETS:
            warehouses["PostgreSQL"] = (postgres, None)
        try:
            dataset = seed(emulator, count)
            found, results = measure_reconcile(emulator, dataset, count, latency, warehouses)
            rows += found
            name = "SQLite file"
            if quarter and count >= 4 * 256 and name in warehouses:  # its own file: a reconcile owns its tables
                small = seed(emulator, count // 4)
                quarter_url = {name: (f"sqlite:///{tmp}/quarter.db", None)}
                _, small_results = measure_reconcile(emulator, small, count // 4, latency, quarter_url)
                full, part = results[name], small_results[name]
                rows.append(
                    _row(
                        f"reconcile peak RSS growth at {count // 4:,} and {count:,} comments ({name})",
                        latency,
                        "",
                        f"{part['peak_mb']:.0f} MB at {count // 4:,}; {full['peak_mb']:.0f} MB at {count:,}",
                        None,
                        "bounded by pages in flight: about the same at N/4 and N",
                    )
                )
            emulator.set_latency(latency)
            try:
                baseline = in_child("child_export", dataset, count)["seconds"]
                parquet = in_child("child_parquet", dataset)
            finally:
                emulator.set_latency(0.0)
            written = parquet["rows"]["comments"] + parquet["rows"]["comment_labels"]
            print(f"  parquet: {json.dumps(parquet)}; export {baseline:.1f} s", flush=True)
            rows.append(
                _row(
                    f"Parquet: {count:,} comments' rows (comments + labels: {written:,})",
                    latency,
                    f"the export delivers {written / parquet['seconds']:,.0f} rows/s"
                    f" ({parquet['seconds']:.1f} s; JSONL export {baseline:.1f} s)",
                    f"writer {written / parquet['writing']:,.0f} rows/s ({parquet['writing']:.1f} s of the"
                    f" {parquet['seconds']:.1f} s; {parquet['mb']:.0f} MB of Parquet, all tables)",
                    parquet["writing"] / parquet["seconds"],
                    "the writer is not the bottleneck: its time a small share of the run",
                )
            )
        finally:
            if postgres:
                drop_postgres_database(postgres)
    return rows
