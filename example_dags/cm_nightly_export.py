"""Every night, keep a dataset's typed warehouse tables true: the day's comments and the last week's changes.

``load_into_warehouse`` (``CommunicationsMiningToSqlOperator``) loads the typed warehouse model
(``cm_comments``, ``cm_comment_labels``, ``cm_comment_entities``, ``cm_comment_user_properties``
and ``cm_loads``; see the warehouse page of the docs) in ``lookback`` mode: it reads the comments
whose timestamp falls in the run's data interval **and the 7 days before**, merges them by
``uid`` and writes only the rows whose hash changed, in one transaction. Labels an analyst added
within the week, and predictions that changed, arrive the next night; an unchanged comment writes
nothing. Comments deleted from their source, and changes older than the lookback, are caught by
the weekly reconcile (``cm_weekly_reconcile``).

With ``CM_MODEL_VERSION`` set (a pinned version number, or a tag such as ``live``), predictions
come from that model version and every predicted row names it; when the tag moves to a
retrained model, the next load reconciles the whole dataset by itself, so no comment keeps the
old version's predictions. Without it, the export's latest predictions load with a null version.

The warehouse is any common-sql connection: SQLite by default, PostgreSQL, MySQL, Snowflake, ...
For object storage and Parquet, see ``cm_parquet_to_duckdb`` and ``cm_nightly_export_to_files``.

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_DATASET`` | ``demo/support`` | the dataset, ``project/dataset`` |
| ``CM_CONN_ID`` | ``communications_mining_default`` | the Communications Mining connection |
| ``CM_WAREHOUSE_CONN_ID`` | ``cm_warehouse`` | a SQL connection (a ``DbApiHook``); param ``warehouse_conn_id`` |
| ``CM_WAREHOUSE_PREFIX`` | ``cm_`` | put before every table name |
| ``CM_MODEL_VERSION`` | (none) | a pinned model version or tag for the predictions, e.g. ``live`` |
| ``CM_LOOKBACK_DAYS`` | ``7`` | days re-read before each night's window |

Schedule: daily at 00:00 UTC with data intervals (``CronDataIntervalTimetable``), each run
covering the day before; trigger backfills for earlier days.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from airflow_provider_cm.transfers.communications_mining_to_sql import CommunicationsMiningToSqlOperator

DATASET = os.environ.get("CM_DATASET", "demo/support")
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
WAREHOUSE_CONN_ID = os.environ.get("CM_WAREHOUSE_CONN_ID", "cm_warehouse")
TABLE_PREFIX = os.environ.get("CM_WAREHOUSE_PREFIX", "cm_")
MODEL_VERSION = os.environ.get("CM_MODEL_VERSION") or None
LOOKBACK_DAYS = int(os.environ.get("CM_LOOKBACK_DAYS", "7"))

with DAG(
    dag_id="cm_nightly_export",
    description="Load each day's comments of a Communications Mining dataset, and the last week's changes, "
    "into typed warehouse tables",
    doc_md=__doc__,
    # Data intervals: each run covers the previous day, [00:00, 24:00) UTC.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    params={
        "warehouse_conn_id": Param(WAREHOUSE_CONN_ID, type="string", description="The SQL connection to load into"),
    },
    tags=["communications-mining", "example"],
) as dag:
    # [START howto_transfer_cm_to_sql]
    load_into_warehouse = CommunicationsMiningToSqlOperator(
        task_id="load_into_warehouse",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        sql_conn_id="{{ params.warehouse_conn_id }}",
        table_prefix=TABLE_PREFIX,
        mode="lookback",
        lookback_days=LOOKBACK_DAYS,
        model_version=MODEL_VERSION,
        # One load at a time across runs: SQLite has a single writer, and the week re-read by
        # consecutive nights overlaps. Each load is one transaction either way.
        max_active_tis_per_dag=1,
    )
    # [END howto_transfer_cm_to_sql]
