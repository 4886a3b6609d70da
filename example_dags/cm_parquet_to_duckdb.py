"""Every night, write a dataset's typed warehouse model as Parquet files, then load them into DuckDB.

``export_parquet`` (``CommunicationsMiningExportDatasetOperator`` with ``output_format="parquet"``)
writes one file per table for the run's window, ``<root>/<dataset>/<table>/<window>.parquet``
(``comments``, ``comment_labels``, ``comment_entities``, ``comment_user_properties``, ``loads``),
typed (timestamps in UTC, doubles, booleans), all moved into place only when every table is
written. In ``lookback`` mode each night's files also hold the 7 days before, so a label added
within the week arrives in a later file: the newest ``_cm_extracted_at`` of a key is its state.

``load_duckdb`` (``DuckDBExecuteQueryOperator`` of the official DuckDB provider, Airflow's
embedded analytics database) reads every file with ``read_parquet``: ``comments`` keeps each
comment's newest row, ``comment_labels`` the labels of the load that wrote it, so the DuckDB
tables are the dataset as last seen (deleted comments stay until a ``reconcile`` snapshot,
whose files hold every comment that exists). Snowflake (``CopyFromExternalStageToSnowflakeOperator``), BigQuery
(``GCSToBigQueryOperator(source_format="PARQUET")``) and Databricks (``DatabricksCopyIntoOperator``)
load the same folders; see the warehouse page of the docs.

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_DATASET`` | ``demo/support`` | the dataset, ``project/dataset`` |
| ``CM_CONN_ID`` | ``communications_mining_default`` | the Communications Mining connection |
| ``CM_PARQUET_ROOT`` | ``/tmp/cm-demo/parquet`` | a local folder DuckDB reads (a URI needs DuckDB's ``httpfs``) |
| ``CM_DUCKDB_PATH`` | ``/tmp/cm-demo/warehouse.duckdb`` | the DuckDB database file |
| ``CM_MODEL_VERSION`` | (none) | a pinned model version or tag for the predictions, e.g. ``live`` |

Needs the ``parquet`` and ``duckdb`` extras (``pip install "airflow-provider-cm[parquet,duckdb]"``;
the DuckDB provider needs Python 3.11 or later).

Schedule: daily at 00:00 UTC with data intervals (``CronDataIntervalTimetable``), each run
covering the day before.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.duckdb.operators.duckdb import DuckDBExecuteQueryOperator
from airflow.sdk import DAG, CronDataIntervalTimetable

from airflow_provider_cm.operators.datasets import CommunicationsMiningExportDatasetOperator

DATASET = os.environ.get("CM_DATASET", "demo/support")
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
PARQUET_ROOT = os.environ.get("CM_PARQUET_ROOT", "/tmp/cm-demo/parquet").rstrip("/")
DUCKDB_PATH = os.environ.get("CM_DUCKDB_PATH", "/tmp/cm-demo/warehouse.duckdb")
MODEL_VERSION = os.environ.get("CM_MODEL_VERSION") or None

FOLDER = f"{PARQUET_ROOT}/{DATASET.replace('/', '__')}"


#: DuckDB SQL: each comment as the newest file that holds it has it, then the labels that load wrote for it
#: (a label removed since is in no newer file of the comment, so it is gone here too).
LOAD_SQL = [
    f"""CREATE OR REPLACE TABLE comments AS
        SELECT * FROM read_parquet('{FOLDER}/comments/*.parquet', union_by_name = true)
        QUALIFY row_number() OVER (PARTITION BY uid ORDER BY _cm_extracted_at DESC, _cm_load_id DESC) = 1""",
    f"""CREATE OR REPLACE TABLE comment_labels AS
        SELECT l.* FROM read_parquet('{FOLDER}/comment_labels/*.parquet', union_by_name = true) AS l
        JOIN comments AS c ON l.uid = c.uid AND l._cm_load_id = c._cm_load_id""",
]


with DAG(
    dag_id="cm_parquet_to_duckdb",
    description="Write each day's typed warehouse model of a dataset as Parquet, then load it into DuckDB",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    tags=["communications-mining", "example"],
) as dag:
    # [START howto_operator_cm_export_parquet]
    export_parquet = CommunicationsMiningExportDatasetOperator(
        task_id="export_parquet",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        output_path=FOLDER,
        output_format="parquet",
        mode="lookback",
        lookback_days=7,
        model_version=MODEL_VERSION,
    )
    # [END howto_operator_cm_export_parquet]

    # [START howto_duckdb_read_parquet]
    load_duckdb = DuckDBExecuteQueryOperator(
        task_id="load_duckdb",
        database=DUCKDB_PATH,
        sql=LOAD_SQL,
        # One writer at a time: a DuckDB file has a single writer process.
        max_active_tis_per_dag=1,
    )
    # [END howto_duckdb_read_parquet]

    export_parquet >> load_duckdb
