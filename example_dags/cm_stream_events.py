"""Drain a Communications Mining stream into a warehouse table when new results arrive: one run per batch.

No sensor and no schedule: the DAG is scheduled on the stream's Asset, and an ``AssetWatcher``
with ``CommunicationsMiningStreamEventTrigger`` polls the stream in the triggerer (holding no
worker slot) and updates the Asset once for each batch of new results.

1. The trigger fetches the stream's next batch (never advancing it) and fires once when a new
   batch heads the stream; it does not fire again for that batch while it is unacknowledged.
2. Each run's ``drain_batch`` (``CommunicationsMiningStreamToSqlOperator`` with
   ``max_batches=1``) takes exactly that batch: it is upserted by ``uid`` and committed, and only
   then is the stream advanced past it. The next batch then heads the stream, and the trigger
   fires for it: N batches give N runs.
3. A run that fails leaves the stream where it was; the trigger fires again for the same batch
   after ``CM_EVENTS_REDELIVERY_TIMEOUT`` seconds, and the upsert makes the redelivery harmless.

The trigger's batch size and the drain's are the same setting (``CM_EVENTS_BATCH_SIZE``), so each
run takes the batch its event was for. Use one consumer per stream: this DAG and
``cm_stream_to_warehouse`` on the same stream would each take the other's batches.

Table columns (created when missing): ``uid`` (primary key), ``comment_id``, ``timestamp``,
``body``, ``predicted_labels`` (JSON), ``top_label``, ``top_probability``, ``sequence_id``.

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_DATASET`` | ``demo/support`` | the dataset, ``project/dataset`` |
| ``CM_EVENTS_STREAM`` | ``CM_STREAM``, else ``new-messages`` | the stream's name |
| ``CM_STREAM`` | ``new-messages`` | the stream, when ``CM_EVENTS_STREAM`` is not set |
| ``CM_CONN_ID`` | ``communications_mining_default`` | the Communications Mining connection |
| ``CM_WAREHOUSE_CONN_ID`` | ``cm_warehouse`` | a SQL connection (its hook a ``DbApiHook``) |
| ``CM_EVENTS_TABLE`` | ``CM_STREAM_TABLE``, else ``cm_stream_results`` | ``table`` or ``schema.table`` |
| ``CM_STREAM_TABLE`` | ``cm_stream_results`` | the table, when ``CM_EVENTS_TABLE`` is not set |
| ``CM_EVENTS_BATCH_SIZE`` | ``1024`` | comments per batch, 1 to 1,024: one run each |
| ``CM_EVENTS_POLL_INTERVAL`` | ``60`` | seconds between the trigger's polls |
| ``CM_EVENTS_REDELIVERY_TIMEOUT`` | ``3600`` | seconds after which an unacknowledged batch fires again |

Schedule: the stream's Asset (``communications_mining_stream/<project>/<dataset>/<stream>``), one
run at a time. The watcher runs only while the DAG is unpaused.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, AssetWatcher

from airflow_provider_cm.common.assets import stream_asset
from airflow_provider_cm.transfers.communications_mining_to_sql import CommunicationsMiningStreamToSqlOperator
from airflow_provider_cm.transfers.sql_table import check_table_name
from airflow_provider_cm.triggers.streams import CommunicationsMiningStreamEventTrigger

DATASET = os.environ.get("CM_DATASET", "demo/support")
STREAM = os.environ.get("CM_EVENTS_STREAM") or os.environ.get("CM_STREAM", "new-messages")
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
WAREHOUSE_CONN_ID = os.environ.get("CM_WAREHOUSE_CONN_ID", "cm_warehouse")
TABLE = check_table_name(os.environ.get("CM_EVENTS_TABLE") or os.environ.get("CM_STREAM_TABLE", "cm_stream_results"))
BATCH_SIZE = int(os.environ.get("CM_EVENTS_BATCH_SIZE", "1024"))
POLL_INTERVAL = float(os.environ.get("CM_EVENTS_POLL_INTERVAL", "60"))
REDELIVERY_TIMEOUT = float(os.environ.get("CM_EVENTS_REDELIVERY_TIMEOUT", "3600"))

# [START howto_trigger_cm_stream_events]
new_results = stream_asset(
    DATASET,
    STREAM,
    watchers=[
        AssetWatcher(
            name="cm_stream_batches",
            trigger=CommunicationsMiningStreamEventTrigger(
                dataset=DATASET,
                stream=STREAM,
                communications_mining_conn_id=CONN_ID,
                batch_size=BATCH_SIZE,  # the drain's batch_size: one run per batch
                poll_interval=POLL_INTERVAL,
                redelivery_timeout=REDELIVERY_TIMEOUT,
            ),
        )
    ],
)

with DAG(
    dag_id="cm_stream_events",
    description="Drain a Communications Mining stream into a warehouse table, one run per batch of new results",
    doc_md=__doc__,
    schedule=[new_results],
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["communications-mining", "example"],
) as dag:
    drain_batch = CommunicationsMiningStreamToSqlOperator(
        task_id="drain_batch",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        stream=STREAM,
        sql_conn_id=WAREHOUSE_CONN_ID,
        table=TABLE,
        batch_size=BATCH_SIZE,
        max_batches=1,
    )
# [END howto_trigger_cm_stream_events]
