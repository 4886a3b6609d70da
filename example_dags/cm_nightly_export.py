"""Every night, export yesterday's comments of a dataset to object storage and load them into a warehouse.

``export_day`` writes the comments whose timestamp falls in the run's data interval
(``[start, end)``, so consecutive nights never overlap) to one JSONL file per day, atomically.
``load_into_warehouse`` upserts one row per comment, keyed by ``uid``, into a table of any
common-sql connection (SQLite by default, PostgreSQL, Snowflake, ...), so rerunning a day
replaces its rows instead of duplicating them.

Configuration (environment variables read when the DAG is parsed, or edit the constants):
``CM_DATASET`` (``project/dataset``), ``CM_CONN_ID``, ``CM_EXPORT_ROOT`` (a local folder or an
object-storage URI such as ``s3://bucket/cm``), ``CM_WAREHOUSE_CONN_ID`` (a DbApiHook connection)
and ``CM_WAREHOUSE_TABLE``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, BaseHook, CronDataIntervalTimetable, task

from airflow_provider_cm.operators.datasets import (
    EXPORT_COLUMNS,
    CommunicationsMiningExportDatasetOperator,
    flatten_exported_comment,
)
from airflow_provider_cm.operators.storage import to_storage_path

DATASET = os.environ.get("CM_DATASET", "demo/support")
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
EXPORT_ROOT = os.environ.get("CM_EXPORT_ROOT", "/tmp/cm-demo/exports").rstrip("/")
WAREHOUSE_CONN_ID = os.environ.get("CM_WAREHOUSE_CONN_ID", "cm_warehouse")
WAREHOUSE_TABLE = os.environ.get("CM_WAREHOUSE_TABLE", "cm_comments")

if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", WAREHOUSE_TABLE):
    raise ValueError(f"CM_WAREHOUSE_TABLE must be a plain SQL identifier, got {WAREHOUSE_TABLE!r}")

EXPORT_FOLDER = f"{EXPORT_ROOT}/{DATASET.replace('/', '__')}"
EXPORTS = Asset(name=f"cm_export_{DATASET.replace('/', '__')}", uri=str(to_storage_path(EXPORT_FOLDER)))

with DAG(
    dag_id="cm_nightly_export",
    description="Export each day's comments of a Communications Mining dataset and upsert them into a warehouse",
    # Data intervals: each run covers the previous day, [00:00, 24:00) UTC.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["communications-mining", "example"],
) as dag:
    # [START howto_operator_cm_export_dataset]
    export_day = CommunicationsMiningExportDatasetOperator(
        task_id="export_day",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        output_path=EXPORT_FOLDER + "/{{ data_interval_start | ds }}.jsonl",
        output_format="jsonl",
        outlets=[EXPORTS],
    )
    # [END howto_operator_cm_export_dataset]

    # One load at a time across runs: a backfill runs several days at once, and concurrent
    # CREATE TABLE IF NOT EXISTS statements collide in PostgreSQL (a unique violation in pg_type).
    @task(max_active_tis_per_dag=1)
    def load_into_warehouse(export: dict[str, Any]) -> dict[str, Any]:
        """Upsert the exported day into the warehouse table, one row per comment keyed by uid."""
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        hook = BaseHook.get_hook(WAREHOUSE_CONN_ID)
        if not isinstance(hook, DbApiHook):
            raise TypeError(f"connection {WAREHOUSE_CONN_ID!r} is not a SQL database connection")
        columns = ", ".join(f"{c} TEXT" for c in EXPORT_COLUMNS if c != "uid")
        hook.run(f"CREATE TABLE IF NOT EXISTS {WAREHOUSE_TABLE} (uid TEXT PRIMARY KEY, {columns})")

        with to_storage_path(export["path"]).open("r", encoding="utf-8") as handle:
            rows = (
                tuple(flatten_exported_comment(json.loads(line))[c] for c in EXPORT_COLUMNS)
                for line in handle
                if line.strip()
            )
            hook.insert_rows(
                WAREHOUSE_TABLE,
                rows,
                target_fields=list(EXPORT_COLUMNS),
                commit_every=1000,
                replace=True,
                replace_index="uid",
                executemany=True,
            )
        return {"table": WAREHOUSE_TABLE, "rows": export["count"], "window": [export["start"], export["end"]]}

    load_into_warehouse(export_day.output)
