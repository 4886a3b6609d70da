"""Report on the stream's warehouse table each time new rows land in it: a DAG scheduled on an Asset.

``cm_stream_to_warehouse`` drains a stream into a table; its drain task's outlet resolves to the
table's Asset, ``table_asset(conn_id, table)`` (``communications_mining_table/<conn_id>/<table>``),
in each run that committed rows, and never after an empty drain. This DAG is scheduled on that
Asset, so the scheduler starts a run after each drain that landed rows. ``report`` stands for your
own step (a dashboard refresh, an alert, a dbt build): it returns (the task's log shows it) the
rows the triggering drains wrote (from their events' ``extra``) and the table's rows by top
predicted label.

Run by hand (``airflow dags test cm_stream_results_report``) it has no triggering events and
reports the table alone.

Configuration (environment variables read when the DAG is parsed, or edit the constants):

| variable | default | meaning |
| --- | --- | --- |
| ``CM_WAREHOUSE_CONN_ID`` | ``cm_warehouse`` | the SQL connection the drain writes to |
| ``CM_STREAM_TABLE`` | ``cm_stream_results`` | the drain's table, ``table`` or ``schema.table`` |

Schedule: the table's Asset.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_cm.common.assets import table_asset
from airflow_provider_cm.transfers.sql_table import check_table_name, sql_hook

WAREHOUSE_CONN_ID = os.environ.get("CM_WAREHOUSE_CONN_ID", "cm_warehouse")
TABLE = check_table_name(os.environ.get("CM_STREAM_TABLE", "cm_stream_results"))

# [START howto_asset_cm_table_schedule]
stream_results = table_asset(WAREHOUSE_CONN_ID, TABLE)  # the Asset the stream drain's outlet resolves to

with DAG(
    dag_id="cm_stream_results_report",
    description="Report on the stream's warehouse table each time a drain lands new rows in it",
    doc_md=__doc__,
    schedule=[stream_results],
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    tags=["communications-mining", "example"],
) as dag:

    @task
    def report(*, triggering_asset_events: Any = None) -> dict[str, Any]:
        """The rows the triggering drains wrote, and the table's rows by top predicted label."""
        events = list((triggering_asset_events or {}).get(stream_results, []))
        landed = sum(int(event.extra.get("rows_written", 0)) for event in events)
        by_label = sql_hook(WAREHOUSE_CONN_ID).get_records(
            f"SELECT top_label, COUNT(*) FROM {TABLE} GROUP BY top_label ORDER BY COUNT(*) DESC, top_label"
        )
        rows = sum(count for _, count in by_label)
        return {"events": len(events), "rows_landed": landed, "rows": rows, "top_labels": dict(by_label[:10])}

    report()
# [END howto_asset_cm_table_schedule]
