"""Upload a JSONL or CSV file of comments to a Communications Mining source, with labels to a dataset.

Trigger it with the file to upload::

    airflow dags trigger cm_upload_comments --conf '{"input_path": "s3://bucket/inbox/2026-10-05.jsonl"}'

The whole file is validated before anything is sent; comments are upserted with ``sync`` (a
rerun bills nothing twice) and their labels written to the dataset. The task's XCom holds the
counts and the billed comments (exact, or a range with the reasons).

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_SOURCE`` | ``demo/support-inbox`` | the source, ``project/source`` |
| ``CM_DATASET`` | ``demo/support`` | the dataset for the labels, ``project/dataset``; empty for none |
| ``CM_CONN_ID`` | ``communications_mining_default`` | the Communications Mining connection |
| ``CM_MAX_COMMENTS`` | ``100000`` | refuse a bigger (more expensive) file, before sending anything |
| ``CM_INPUT_PATH`` | ``/tmp/cm-demo/comments.jsonl`` | the default of the run's ``input_path`` param |
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_cm.operators.comments import CommunicationsMiningUploadCommentsOperator

SOURCE = os.environ.get("CM_SOURCE", "demo/support-inbox")
DATASET = os.environ.get("CM_DATASET", "demo/support") or None
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
MAX_COMMENTS = int(os.environ.get("CM_MAX_COMMENTS", "100000"))

with DAG(
    dag_id="cm_upload_comments",
    doc_md=__doc__,
    description="Upload comments (JSONL or CSV) to a Communications Mining source and their labels to a dataset",
    schedule=None,
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    # A retry is safe: comments already stored unchanged are skipped, so nothing is billed twice.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "input_path": Param(
            os.environ.get("CM_INPUT_PATH", "/tmp/cm-demo/comments.jsonl"),
            type="string",
            description="Local path or object-storage URI of a JSONL (re CLI format) or CSV file",
        ),
        "csv_columns": Param(
            {
                "id": "id",
                "timestamp": "timestamp",
                "text": "text",
                "labels": "label",
                "user_properties": {"string:Channel": "channel"},
            },
            type="object",
            description="For CSV input: comment field -> column",
        ),
        "dry_run": Param(False, type="boolean", description="Validate and count only"),
    },
    tags=["communications-mining", "example"],
) as dag:
    # [START howto_operator_cm_upload_comments]
    upload_comments = CommunicationsMiningUploadCommentsOperator(
        task_id="upload_comments",
        communications_mining_conn_id=CONN_ID,
        source=SOURCE,
        dataset=DATASET,
        input_path="{{ params.input_path }}",
        csv_columns="{{ params.csv_columns }}",
        dry_run="{{ params.dry_run }}",
        max_comments=MAX_COMMENTS,
        # The XCom's keys as of 0.2 only (annotated, annotations_unchanged, ...), without 0.1's names.
        deprecated_xcom_keys=False,
    )
    # [END howto_operator_cm_upload_comments]
