"""Drain a Communications Mining stream into a system that is not SQL, at least once, never losing a result.

1. ``wait_for_results`` (deferrable sensor): waits in the triggerer until new results arrive.
2. ``fetch_results``: writes the next batch (comments with predicted labels) to a JSONL file,
   without moving the stream.
3. ``deliver``: your load. This one drops one JSON document per comment, named by its ``uid``,
   into an outbox folder (a stand-in for a ticketing system, a queue or a search index);
   delivering a comment twice rewrites the same document, so a redelivery is harmless.
   Messages with no text are refused and returned, not delivered.
4. ``advance_stream``: acknowledges the batch (``fetch_results.output["sequence_id"]``) only
   after the delivery succeeded. If anything before fails, the next run fetches the same
   comments again.
5. ``tag_exceptions``: marks the refused comments as exceptions on the stream.

For a SQL warehouse, ``cm_stream_to_warehouse`` does all of this in one task.

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_DATASET`` | ``demo/support`` | the dataset, ``project/dataset`` |
| ``CM_STREAM`` | ``new-messages`` | the stream's name |
| ``CM_CONN_ID`` | ``communications_mining_default`` | the Communications Mining connection |
| ``CM_EXPORT_ROOT`` | ``/tmp/cm-demo/exports`` | batches go to ``streams/<stream>/``, the outbox ``outbox/<stream>/`` |
| ``CM_SENSOR_TIMEOUT`` | ``3600`` | seconds the sensor waits before the run is skipped |

Schedule: every 15 minutes, one run at a time; each run delivers one batch of up to 1,024.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_cm.common.storage import to_storage_path
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
OUTBOX = f"{EXPORT_ROOT}/outbox/{STREAM}"

with DAG(
    dag_id="cm_stream_to_files",
    description="Drain a Communications Mining stream into an outbox, advancing only after the delivery",
    doc_md=__doc__,
    schedule=timedelta(minutes=15),
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["communications-mining", "example"],
) as dag:
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
    def deliver(fetched: dict[str, Any]) -> dict[str, Any]:
        """Drop one document per comment into the outbox, named by uid; return the uids refused."""
        outbox = to_storage_path(OUTBOX)
        outbox.mkdir(parents=True, exist_ok=True)
        delivered, refused = 0, []
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
                document = {
                    "uid": result["uid"],
                    "comment_id": comment["id"],
                    "timestamp": comment["timestamp"],
                    "body": body,
                    "top_label": top["name"] if top else None,
                    "labels": result["labels"],
                }
                (outbox / f"{result['uid']}.json").write_text(json.dumps(document), encoding="utf-8")
                delivered += 1
        return {"delivered": delivered, "refused_uids": refused}

    delivered = deliver(fetch_results.output)

    # [START howto_operator_cm_stream_advance]
    advance_stream = CommunicationsMiningStreamAdvanceOperator(
        task_id="advance_stream",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        stream=STREAM,
        sequence_id=fetch_results.output["sequence_id"],
    )
    # [END howto_operator_cm_stream_advance]

    # [START howto_operator_cm_tag_exceptions]
    tag_exceptions = CommunicationsMiningTagExceptionsOperator(
        task_id="tag_exceptions",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        stream=STREAM,
        uids="{{ ti.xcom_pull(task_ids='deliver')['refused_uids'] | tojson }}",
        exception_type="Refused by the outbox: empty message",
    )
    # [END howto_operator_cm_tag_exceptions]

    wait_for_results >> fetch_results
    delivered >> advance_stream
    delivered >> tag_exceptions
