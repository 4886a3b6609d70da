"""Replay a Communications Mining stream from an upload time: the comments uploaded since come again.

``reset_stream`` moves the stream back to the first comment uploaded (``created_at``) at or after
the time given, so the stream's consumers (``cm_stream_to_warehouse``, ``cm_stream_drain``, ...)
deliver those comments again, e.g. after a warehouse table was restored from a backup. Moving the
stream forward past results nobody has read would drop them: the task refuses that (the operator's
``allow_skipping_unread=True`` would allow it).

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_DATASET`` | ``demo/support`` | the dataset, ``project/dataset`` |
| ``CM_STREAM`` | ``new-messages`` | the stream's name |
| ``CM_CONN_ID`` | ``communications_mining_default`` | the Communications Mining connection |

Trigger it with ``{"to_comment_created_at": "2026-10-05T00:00:00Z"}``.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_cm.operators.streams import CommunicationsMiningStreamResetOperator

DATASET = os.environ.get("CM_DATASET", "demo/support")
STREAM = os.environ.get("CM_STREAM", "new-messages")
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")

with DAG(
    dag_id="cm_stream_replay",
    doc_md=__doc__,
    description="Move a stream back to an upload time, so its consumers deliver those comments again",
    schedule=None,
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    params={
        "to_comment_created_at": Param(
            "2026-10-01T00:00:00Z", type="string", description="Replay comments uploaded at or after this time"
        ),
    },
    tags=["communications-mining", "example"],
) as dag:
    # [START howto_operator_cm_stream_reset]
    reset_stream = CommunicationsMiningStreamResetOperator(
        task_id="reset_stream",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        stream=STREAM,
        to_comment_created_at="{{ params.to_comment_created_at }}",
        allow_skipping_unread=False,  # never move past results nobody has read
    )
    # [END howto_operator_cm_stream_reset]
