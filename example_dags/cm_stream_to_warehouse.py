"""Drain a Communications Mining stream into a warehouse table, exactly once in effect, in one task.

1. ``create_table`` creates the table unless it exists, with the rules the warehouse imposes
   (here: a message must have text).
2. ``wait_for_results`` (deferrable sensor) waits in the triggerer until new results arrive.
3. ``drain_into_warehouse`` (``CommunicationsMiningStreamToSqlOperator``) fetches batch after
   batch until the stream is caught up: each batch is upserted by ``uid`` in one transaction and
   committed, and only then is the stream advanced past it. Rows the table refuses (the check
   above) are left out and tagged as exceptions on the stream with the database's reason. If
   anything fails, the stream stays at the last committed batch and the next run goes on from
   there; the upsert makes a redelivered batch harmless.

Table columns: ``uid`` (primary key), ``comment_id``, ``timestamp``, ``body`` (the messages'
text), ``predicted_labels`` (JSON), ``top_label``, ``top_probability``, ``sequence_id``. For a
load that is not SQL, see ``cm_stream_to_files``.

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_DATASET`` | ``demo/support`` | the dataset, ``project/dataset`` |
| ``CM_STREAM`` | ``new-messages`` | the stream's name |
| ``CM_CONN_ID`` | ``communications_mining_default`` | the Communications Mining connection |
| ``CM_WAREHOUSE_CONN_ID`` | ``cm_warehouse`` | a SQL connection (its hook a ``DbApiHook``) |
| ``CM_STREAM_TABLE`` | ``cm_stream_results`` | ``table`` or ``schema.table`` |
| ``CM_SENSOR_TIMEOUT`` | ``3600`` | seconds the sensor waits before the run is skipped |

Schedule: every 15 minutes, one run at a time.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import DAG

from airflow_provider_cm.sensors.streams import CommunicationsMiningStreamSensor
from airflow_provider_cm.transfers.communications_mining_to_sql import CommunicationsMiningStreamToSqlOperator
from airflow_provider_cm.transfers.sql_table import check_table_name

DATASET = os.environ.get("CM_DATASET", "demo/support")
STREAM = os.environ.get("CM_STREAM", "new-messages")
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
WAREHOUSE_CONN_ID = os.environ.get("CM_WAREHOUSE_CONN_ID", "cm_warehouse")
TABLE = check_table_name(os.environ.get("CM_STREAM_TABLE", "cm_stream_results"))

with DAG(
    dag_id="cm_stream_to_warehouse",
    description="Drain a Communications Mining stream into a warehouse table, advancing after each commit",
    doc_md=__doc__,
    schedule=timedelta(minutes=15),
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["communications-mining", "example"],
) as dag:
    create_table = SQLExecuteQueryOperator(
        task_id="create_table",
        conn_id=WAREHOUSE_CONN_ID,
        sql=f"""
            CREATE TABLE IF NOT EXISTS {TABLE} (
                uid TEXT PRIMARY KEY,
                comment_id TEXT,
                timestamp TEXT,
                body TEXT CHECK (length(trim(body)) > 0),
                predicted_labels TEXT,
                top_label TEXT,
                top_probability DOUBLE PRECISION,
                sequence_id TEXT
            )
        """,
    )

    # [START howto_sensor_cm_stream]
    wait_for_results = CommunicationsMiningStreamSensor(
        task_id="wait_for_results",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        stream=STREAM,
        min_results=1,
        deferrable=True,
        poke_interval=30,
        timeout=int(os.environ.get("CM_SENSOR_TIMEOUT", "3600")),
        soft_fail=True,
    )
    # [END howto_sensor_cm_stream]

    # [START howto_transfer_cm_stream_to_sql]
    drain_into_warehouse = CommunicationsMiningStreamToSqlOperator(
        task_id="drain_into_warehouse",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        stream=STREAM,
        sql_conn_id=WAREHOUSE_CONN_ID,
        table=TABLE,
        batch_size=1024,
        max_results=100_000,
    )
    # [END howto_transfer_cm_stream_to_sql]

    create_table >> wait_for_results >> drain_into_warehouse
