"""Predict new messages with the model version behind the ``live`` tag, failing if the tag moved.

``check_live_model`` resolves ``live`` to its pinned version and fails when it is not
``CM_EXPECTED_VERSION`` (a model-drift gate: a new model must be reviewed before this DAG uses
it). ``predict_new_messages`` then predicts a JSONL file of messages with exactly that version
and writes the predictions beside it. Predictions are billed per message.

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_DATASET`` | ``demo/support`` | the dataset whose ``live`` model predicts, ``project/dataset`` |
| ``CM_CONN_ID`` | ``communications_mining_default`` | the Communications Mining connection |
| ``CM_EXPECTED_VERSION`` | empty (no gate) | the model version this DAG was reviewed against |

Trigger it with ``{"input_path": "...", "output_path": "..."}`` (JSONL of messages in, predictions out).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_cm.operators.models import (
    CommunicationsMiningModelTagOperator,
    CommunicationsMiningPredictOperator,
)

DATASET = os.environ.get("CM_DATASET", "demo/support")
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
EXPECTED_VERSION = os.environ.get("CM_EXPECTED_VERSION") or None

with DAG(
    dag_id="cm_model_tag_gate",
    doc_md=__doc__,
    description="Predict with the live model version, failing when the live tag moved",
    schedule=None,
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    params={
        "input_path": Param("/tmp/cm-demo/new-messages.jsonl", type="string"),
        "output_path": Param("/tmp/cm-demo/new-messages.predictions.jsonl", type="string"),
    },
    tags=["communications-mining", "example"],
) as dag:
    # [START howto_operator_cm_model_tag]
    check_live_model = CommunicationsMiningModelTagOperator(
        task_id="check_live_model",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        tag="live",
        expected_version=EXPECTED_VERSION,
    )
    # [END howto_operator_cm_model_tag]

    # [START howto_operator_cm_predict]
    predict_new_messages = CommunicationsMiningPredictOperator(
        task_id="predict_new_messages",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        version="{{ ti.xcom_pull(task_ids='check_live_model') }}",
        input_path="{{ params.input_path }}",
        output_path="{{ params.output_path }}",
        threshold="auto",
        max_documents=5000,
    )
    # [END howto_operator_cm_predict]

    check_live_model >> predict_new_messages
