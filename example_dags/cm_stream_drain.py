"""Drain a Communications Mining stream into one file per run, in one task, acknowledging as it goes.

``drain`` fetches batch after batch, writes each one durably and only then advances the stream
past it, until the stream is caught up (or ``CM_DRAIN_MAX_RESULTS`` results are written). The
file appears complete under its final name at the end; the XCom says how many results it holds.

Where the file goes decides what a retry can do (see the operator's documentation):

* an object store (``CM_DRAIN_ROOT=s3://bucket/drain``, with an Airflow connection): every try
  writes where the next one can read, on any worker;
* a local path: the batches are kept in a spool beside the file. A retry on the same worker
  extends it; a retry on another worker (CeleryExecutor, KubernetesExecutor) cannot see it, so it
  resets the stream to the first comment the earlier try acknowledged and drains again
  (``redelivered`` in the XCom), from what the earlier try recorded in Airflow's task state store.

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_DATASET`` | ``demo/support`` | the dataset, ``project/dataset`` |
| ``CM_STREAM`` | ``new-messages`` | the stream's name |
| ``CM_CONN_ID`` | ``communications_mining_default`` | the Communications Mining connection |
| ``CM_DRAIN_ROOT`` | ``$CM_EXPORT_ROOT/drain`` | a folder or URI prefix; param ``drain_root`` |
| ``CM_DRAIN_INTERVAL_MINUTES`` | ``60`` | minutes between scheduled drains |
| ``CM_DRAIN_MAX_RESULTS`` | ``100000`` | most results one run writes |
| ``CM_DRAIN_BATCH_SIZE`` | ``1024`` | results per fetch and advance |

Schedule: hourly (``CM_DRAIN_INTERVAL_MINUTES``), one run at a time, two retries. A manual run can drain
somewhere else: ``--conf '{"drain_root": "s3://aws_default@bucket/drain"}'``.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_cm.operators.streams import CommunicationsMiningStreamFetchOperator

DATASET = os.environ.get("CM_DATASET", "demo/support")
STREAM = os.environ.get("CM_STREAM", "new-messages")
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
EXPORT_ROOT = os.environ.get("CM_EXPORT_ROOT", "/tmp/cm-demo/exports").rstrip("/")
DRAIN_ROOT = os.environ.get("CM_DRAIN_ROOT", f"{EXPORT_ROOT}/drain").rstrip("/")
INTERVAL = timedelta(minutes=int(os.environ.get("CM_DRAIN_INTERVAL_MINUTES", "60")))

with DAG(
    dag_id="cm_stream_drain",
    description="Drain a Communications Mining stream into one file per run, advancing batch by batch",
    doc_md=__doc__,
    schedule=INTERVAL,
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "drain_root": Param(DRAIN_ROOT, type="string", description="Folder or object-store prefix of the files"),
    },
    tags=["communications-mining", "example"],
) as dag:
    # [START howto_operator_cm_stream_drain]
    drain = CommunicationsMiningStreamFetchOperator(
        task_id="drain",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        stream=STREAM,
        output_path=f"{{{{ params.drain_root.rstrip('/') }}}}/{STREAM}/{{{{ run_id | replace(':', '_') }}}}.jsonl",
        batch_size=int(os.environ.get("CM_DRAIN_BATCH_SIZE", "1024")),
        max_results=int(os.environ.get("CM_DRAIN_MAX_RESULTS", "100000")),
        advance=True,
        on_lost_output="redeliver",
    )
    # [END howto_operator_cm_stream_drain]
