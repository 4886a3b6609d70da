"""Drain a Communications Mining stream into a warehouse table, exactly once in effect.

1. ``wait_for_results`` (deferrable sensor): waits in the triggerer until new results arrive.
2. ``fetch_results``: writes the next batch (comments with predicted labels) to a JSONL file,
   without moving the stream.
3. ``load_into_warehouse``: upserts one row per comment, keyed by uid; rows the warehouse
   refuses (here: messages with no text) are returned, not loaded.
4. ``advance_stream``: acknowledges the batch only after the load succeeded. If anything before
   fails, the next run fetches the same comments again; the upsert makes the redelivery harmless.
5. ``tag_exceptions``: marks the refused comments as exceptions on the stream.

Configuration (environment variables read when the DAG is parsed): ``CM_DATASET``, ``CM_STREAM``,
``CM_CONN_ID``, ``CM_EXPORT_ROOT`` (where batches are written), ``CM_WAREHOUSE_CONN_ID`` and
``CM_STREAM_TABLE``.
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, BaseHook, task

from airflow_provider_cm.operators.storage import to_storage_path
from airflow_provider_cm.operators.streams import (
    CommunicationsMiningStreamAdvanceOperator,
    CommunicationsMiningStreamFetchOperator,
    CommunicationsMiningTagExceptionsOperator,
)
from airflow_provider_cm.sensors.streams import CommunicationsMiningStreamSensor

DATASET = os.environ.get("CM_DATASET", "demo/support")
STREAM = os.environ.get("CM_STREAM", "new-messages")
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
EXPORT_ROOT = os.environ.get("CM_EXPORT_ROOT", "/tmp/cm-demo/exports").rstrip("/")
WAREHOUSE_CONN_ID = os.environ.get("CM_WAREHOUSE_CONN_ID", "cm_warehouse")
TABLE = os.environ.get("CM_STREAM_TABLE", "cm_stream_results")

if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", TABLE):
    raise ValueError(f"CM_STREAM_TABLE must be a plain SQL identifier, got {TABLE!r}")

COLUMNS = ("uid", "comment_id", "timestamp", "body", "top_label", "top_probability", "predicted_labels")

with DAG(
    dag_id="cm_stream_to_warehouse",
    description="Drain a Communications Mining stream into a warehouse, advancing only after the load",
    schedule=timedelta(minutes=15),
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["communications-mining", "example"],
) as dag:
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

    # [START howto_operator_cm_stream_fetch]
    fetch_results = CommunicationsMiningStreamFetchOperator(
        task_id="fetch_results",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        stream=STREAM,
        output_path=f"{EXPORT_ROOT}/streams/{STREAM}/{{{{ run_id | replace(':', '_') }}}}.jsonl",
        batch_size=1024,
        advance=False,
    )
    # [END howto_operator_cm_stream_fetch]

    @task
    def load_into_warehouse(fetched: dict[str, Any]) -> dict[str, Any]:
        """Upsert the batch keyed by uid; return the uids the warehouse refuses."""
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        hook = BaseHook.get_hook(WAREHOUSE_CONN_ID)
        if not isinstance(hook, DbApiHook):
            raise TypeError(f"connection {WAREHOUSE_CONN_ID!r} is not a SQL database connection")
        columns = ", ".join(f"{c} TEXT" for c in COLUMNS if c != "uid")
        hook.run(f"CREATE TABLE IF NOT EXISTS {TABLE} (uid TEXT PRIMARY KEY, {columns})")
        rows, refused = [], []
        with to_storage_path(fetched["path"]).open("r", encoding="utf-8") as handle:
            for line in handle:
                result = json.loads(line)
                comment = result["comment"]
                body = "\n\n".join(m["body"]["text"] for m in comment["messages"] if m.get("body", {}).get("text"))
                if not body.strip():
                    refused.append(result["uid"])
                    continue
                leaves = [label for label in result["labels"] if " > " in label["name"]] or result["labels"]
                top = max(leaves, key=lambda label: label["probability"], default=None)
                rows.append(
                    (
                        result["uid"],
                        comment["id"],
                        comment["timestamp"],
                        body,
                        top["name"] if top else None,
                        str(top["probability"]) if top else None,
                        json.dumps(result["labels"]),
                    )
                )
        if rows:
            hook.insert_rows(
                TABLE, rows, target_fields=list(COLUMNS), replace=True, replace_index="uid", executemany=True
            )
        return {"loaded": len(rows), "refused_uids": refused}

    loaded = load_into_warehouse(fetch_results.output)

    # [START howto_operator_cm_stream_advance]
    advance_stream = CommunicationsMiningStreamAdvanceOperator(
        task_id="advance_stream",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        stream=STREAM,
        sequence_id=fetch_results.output["sequence_id"],
    )
    # [END howto_operator_cm_stream_advance]

    tag_exceptions = CommunicationsMiningTagExceptionsOperator(
        task_id="tag_exceptions",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        stream=STREAM,
        uids="{{ ti.xcom_pull(task_ids='load_into_warehouse')['refused_uids'] | tojson }}",
        exception_type="Refused by warehouse: empty message",
    )

    wait_for_results >> fetch_results
    loaded >> advance_stream
    loaded >> tag_exceptions
