"""Every night, load yesterday's comments of a dataset straight into a warehouse table.

``load_into_warehouse`` (``CommunicationsMiningToSqlOperator``) exports the comments whose
timestamp falls in the run's data interval (``[start, end)``, so consecutive nights never overlap)
and, in one transaction, replaces the day's rows of the table with them: one row per comment,
keyed by ``uid``, with the flat export's columns (``uid, comment_id, source_id, timestamp,
created_at, subject, body, sender, user_properties, assigned_labels, predicted_labels``). A
rerun or a backfill of a day leaves exactly that day's comments; the other days are never
touched. The table is created when it does not exist.

The warehouse is any common-sql connection: SQLite by default, PostgreSQL, MySQL, Snowflake, ...
For a load that is not SQL, see ``cm_nightly_export_to_files``.

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_DATASET`` | ``demo/support`` | the dataset, ``project/dataset`` |
| ``CM_CONN_ID`` | ``communications_mining_default`` | the Communications Mining connection |
| ``CM_WAREHOUSE_CONN_ID`` | ``cm_warehouse`` | a SQL connection (a ``DbApiHook``); param ``warehouse_conn_id`` |
| ``CM_WAREHOUSE_TABLE`` | ``cm_comments`` | ``table`` or ``schema.table`` |

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
WAREHOUSE_TABLE = os.environ.get("CM_WAREHOUSE_TABLE", "cm_comments")

with DAG(
    dag_id="cm_nightly_export",
    description="Load each day's comments of a Communications Mining dataset into a warehouse table",
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
        table=WAREHOUSE_TABLE,
        # One load at a time across runs: SQLite has a single writer. With a server database
        # (PostgreSQL, Snowflake, ...) the days of a backfill can load side by side: remove it.
        max_active_tis_per_dag=1,
    )
    # [END howto_transfer_cm_to_sql]
