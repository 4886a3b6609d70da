"""Drain a Communications Mining stream into a warehouse table with Airflow's ``MessageQueueTrigger``.

The ``cm_stream_events`` DAG written with the common-messaging provider's unified trigger instead of
the provider's trigger class: ``MessageQueueTrigger(scheme="communications-mining", ...)`` is
dispatched to ``CommunicationsMiningStreamEventTrigger`` (registered in the provider info's
``queues``), which polls the stream in the triggerer and updates the Asset once for each batch of
new results; each run drains exactly that batch and advances the stream past it. N batches give
N runs; a failed run's batch is delivered again after ``CM_EVENTS_REDELIVERY_TIMEOUT`` seconds.
Needs the ``messaging`` extra: ``pip install "airflow-provider-cm[messaging]"``
(``apache-airflow-providers-common-messaging``). Without it this file defines no DAG, and parses
without an import error (no broken DAG in the UI).

The keyword arguments beside ``scheme`` are the stream event trigger's. Use one consumer per
stream: this DAG, ``cm_stream_events`` and ``cm_stream_to_warehouse`` on the same stream would each
take the others' batches, hence a stream and a table of its own.

Table columns (created when missing): ``uid`` (primary key), ``comment_id``, ``timestamp``,
``body``, ``predicted_labels`` (JSON), ``top_label``, ``top_probability``, ``sequence_id``.

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_DATASET`` | ``demo/support`` | the dataset, ``project/dataset`` |
| ``CM_QUEUE_STREAM`` | ``CM_STREAM``, else ``new-messages`` | the stream's name |
| ``CM_STREAM`` | ``new-messages`` | the stream, when ``CM_QUEUE_STREAM`` is not set |
| ``CM_CONN_ID`` | ``communications_mining_default`` | the Communications Mining connection |
| ``CM_WAREHOUSE_CONN_ID`` | ``cm_warehouse`` | a SQL connection (its hook a ``DbApiHook``) |
| ``CM_QUEUE_TABLE`` | ``CM_STREAM_TABLE``, else ``cm_stream_results`` | ``table`` or ``schema.table`` |
| ``CM_STREAM_TABLE`` | ``cm_stream_results`` | the table, when ``CM_QUEUE_TABLE`` is not set |
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

DATASET = os.environ.get("CM_DATASET", "demo/support")
STREAM = os.environ.get("CM_QUEUE_STREAM") or os.environ.get("CM_STREAM", "new-messages")
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
WAREHOUSE_CONN_ID = os.environ.get("CM_WAREHOUSE_CONN_ID", "cm_warehouse")
TABLE = check_table_name(os.environ.get("CM_QUEUE_TABLE") or os.environ.get("CM_STREAM_TABLE", "cm_stream_results"))
BATCH_SIZE = int(os.environ.get("CM_EVENTS_BATCH_SIZE", "1024"))
POLL_INTERVAL = float(os.environ.get("CM_EVENTS_POLL_INTERVAL", "60"))
REDELIVERY_TIMEOUT = float(os.environ.get("CM_EVENTS_REDELIVERY_TIMEOUT", "3600"))

try:  # the messaging extra (apache-airflow-providers-common-messaging)
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
except ImportError:  # not installed: no DAG here, rather than a broken one
    MessageQueueTrigger = None

if MessageQueueTrigger is not None:
    # [START howto_trigger_cm_message_queue]
    new_results = stream_asset(
        DATASET,
        STREAM,
        watchers=[
            AssetWatcher(
                name="cm_stream_queue",
                trigger=MessageQueueTrigger(
                    scheme="communications-mining",
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
        dag_id="cm_stream_queue_events",
        description="Drain a Communications Mining stream through MessageQueueTrigger, one run per batch",
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
    # [END howto_trigger_cm_message_queue]
