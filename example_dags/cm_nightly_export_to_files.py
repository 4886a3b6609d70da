"""Every night, export yesterday's comments of a dataset to a file in object storage, for loads that are not SQL.

``export_day`` writes the comments whose timestamp falls in the run's data interval (``[start,
end)``, so consecutive nights never overlap) to one JSONL file per day, written atomically: a
rerun replaces the day's file. ``count_labels`` stands for your own load (a data lake, a search
index, an API): it reads the file from the path the export returns in XCom, exactly as the user
gave it, so a local path opens with ``open()`` and a URI with ``ObjectStoragePath``. The export
is also an Asset, the one the operator declares (``export_asset(DATASET)``,
``communications_mining_export/<project>/<dataset>``), so a DAG of yours can be scheduled on it
instead.

For a SQL warehouse, ``cm_nightly_export`` loads the window straight into a table.

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_DATASET`` | ``demo/support`` | the dataset, ``project/dataset`` |
| ``CM_CONN_ID`` | ``communications_mining_default`` | the Communications Mining connection |
| ``CM_EXPORT_ROOT`` | ``/tmp/cm-demo/exports`` | a local folder or a URI (``s3://aws_default@bucket/cm``) |

An object-storage URI may name its Airflow connection: ``s3://aws_default@bucket/cm``.

Schedule: daily at 00:00 UTC with data intervals (``CronDataIntervalTimetable``), each run
covering the day before; trigger backfills for earlier days.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, task

from airflow_provider_cm.common.storage import to_storage_path
from airflow_provider_cm.operators.datasets import CommunicationsMiningExportDatasetOperator

DATASET = os.environ.get("CM_DATASET", "demo/support")
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
EXPORT_ROOT = os.environ.get("CM_EXPORT_ROOT", "/tmp/cm-demo/exports").rstrip("/")

EXPORT_FOLDER = f"{EXPORT_ROOT}/{DATASET.replace('/', '__')}"

with DAG(
    dag_id="cm_nightly_export_to_files",
    description="Export each day's comments of a Communications Mining dataset to a file in object storage",
    doc_md=__doc__,
    # Data intervals: each run covers the previous day, [00:00, 24:00) UTC.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    tags=["communications-mining", "example"],
) as dag:
    # [START howto_operator_cm_export_dataset]
    export_day = CommunicationsMiningExportDatasetOperator(
        task_id="export_day",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        output_path=EXPORT_FOLDER + "/{{ data_interval_start | ds }}.jsonl",
        output_format="jsonl",
    )
    # [END howto_operator_cm_export_dataset]

    @task
    def count_labels(export: dict[str, Any]) -> dict[str, Any]:
        """Your load goes here: this one reads the day's file and counts its comments per assigned label."""
        labels: Counter[str] = Counter()
        comments = 0
        with to_storage_path(export["path"]).open("r", encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                exported = json.loads(line)
                comments += 1
                assigned = ((exported.get("annotations") or {}).get("labels") or {}).get("assigned") or []
                labels.update(label["name"] for label in assigned)
        return {"path": export["path"], "comments": comments, "labels": dict(labels.most_common())}

    count_labels(export_day.output)
