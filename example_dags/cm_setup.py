"""Set up Communications Mining from nothing: a project, a source, a dataset over it, and a stream.

Every task creates its object unless it exists (``if_exists="ignore"``), so the DAG can run again
at any time: a second run changes nothing and logs, for each object, whether it still equals what
is asked here. The stream task uses ``if_exists="update"``: once a model is pinned and tagged
(``CM_STREAM_MODEL_TAG=live``), rerunning the DAG points the stream at the tagged version, keeping
its position.

Configuration (environment variables read when the DAG is parsed): ``CM_SOURCE``
(``project/source``, default ``demo/support-inbox``), ``CM_DATASET`` (``project/dataset``, default
``demo/support``; its project is the one created), ``CM_STREAM`` (default ``new-messages``),
``CM_STREAM_MODEL_TAG`` (``live`` or ``staging``; empty: a stream without predictions),
``CM_LABELS`` (the dataset's labels, separated by ``;``, e.g. ``Billing > Refund;Card > Lost``;
empty: labels come with the uploaded annotations) and ``CM_CONN_ID``.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_cm.operators.resources import (
    CommunicationsMiningCreateDatasetOperator,
    CommunicationsMiningCreateProjectOperator,
    CommunicationsMiningCreateSourceOperator,
    CommunicationsMiningCreateStreamOperator,
)

SOURCE = os.environ.get("CM_SOURCE", "demo/support-inbox")
DATASET = os.environ.get("CM_DATASET", "demo/support")
STREAM = os.environ.get("CM_STREAM", "new-messages")
MODEL_TAG = os.environ.get("CM_STREAM_MODEL_TAG") or None
LABELS = [label.strip() for label in os.environ.get("CM_LABELS", "").split(";") if label.strip()]
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
PROJECT = DATASET.split("/")[0]

with DAG(
    dag_id="cm_setup",
    description="Create the Communications Mining project, source, dataset and stream the other DAGs use",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    tags=["communications-mining", "example"],
) as dag:
    # [START howto_operator_cm_create_project]
    create_project = CommunicationsMiningCreateProjectOperator(
        task_id="create_project",
        communications_mining_conn_id=CONN_ID,
        project=PROJECT,
        title="Customer support",
    )
    # [END howto_operator_cm_create_project]

    # [START howto_operator_cm_create_source]
    create_source = CommunicationsMiningCreateSourceOperator(
        task_id="create_source",
        communications_mining_conn_id=CONN_ID,
        source=SOURCE,
        title="Support inbox",
        language="en",
    )
    # [END howto_operator_cm_create_source]

    # [START howto_operator_cm_create_dataset]
    create_dataset = CommunicationsMiningCreateDatasetOperator(
        task_id="create_dataset",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        sources=[SOURCE],
        title="Support",
        has_sentiment=True,
        label_defs=LABELS or None,
    )
    # [END howto_operator_cm_create_dataset]

    # [START howto_operator_cm_create_stream]
    create_stream = CommunicationsMiningCreateStreamOperator(
        task_id="create_stream",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        stream=STREAM,
        title="New messages",
        model_tag=MODEL_TAG,
        comment_filter={"sources": [create_source.output["id"]]},  # the source's id, from its XCom
        if_exists="update",
    )
    # [END howto_operator_cm_create_stream]

    create_project >> create_source >> create_dataset >> create_stream
