"""Every week, reconcile a dataset's typed warehouse tables with the platform: deletions, old relabels, retrains.

``reconcile_warehouse`` (``CommunicationsMiningToSqlOperator`` in ``reconcile`` mode) reads the
whole dataset, merges it by ``uid`` into the tables ``cm_nightly_export`` loads, writes only the
rows whose hash changed and gives a ``_cm_deleted_at`` to every comment it no longer sees (and to
its labels, entities and properties): nothing is hard-deleted. It catches what the nightly
lookback cannot: comments deleted from their source, labels changed on comments older than the
lookback, and comments uploaded late with an old timestamp. Its cost is one export of the whole
dataset (256 comments per page, sliced 8 at a time); what it writes is only what changed.

Configuration: the same variables as ``cm_nightly_export`` (``CM_DATASET``, ``CM_CONN_ID``,
``CM_WAREHOUSE_CONN_ID``, ``CM_WAREHOUSE_PREFIX``, ``CM_MODEL_VERSION``).

Schedule: Sundays at 03:00 UTC. The nightly DAG also reconciles by itself when the pinned model
tag moves, so this one is for deletions and old changes.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from airflow_provider_cm.transfers.communications_mining_to_sql import CommunicationsMiningToSqlOperator

DATASET = os.environ.get("CM_DATASET", "demo/support")
CONN_ID = os.environ.get("CM_CONN_ID", "communications_mining_default")
WAREHOUSE_CONN_ID = os.environ.get("CM_WAREHOUSE_CONN_ID", "cm_warehouse")
TABLE_PREFIX = os.environ.get("CM_WAREHOUSE_PREFIX", "cm_")
MODEL_VERSION = os.environ.get("CM_MODEL_VERSION") or None

with DAG(
    dag_id="cm_weekly_reconcile",
    description="Reconcile the typed warehouse tables with the whole Communications Mining dataset",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 3 * * 0", timezone="UTC"),
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    params={
        "warehouse_conn_id": Param(WAREHOUSE_CONN_ID, type="string", description="The SQL connection to load into"),
    },
    tags=["communications-mining", "example"],
) as dag:
    # [START howto_transfer_cm_to_sql_reconcile]
    reconcile_warehouse = CommunicationsMiningToSqlOperator(
        task_id="reconcile_warehouse",
        communications_mining_conn_id=CONN_ID,
        dataset=DATASET,
        sql_conn_id="{{ params.warehouse_conn_id }}",
        table_prefix=TABLE_PREFIX,
        mode="reconcile",
        model_version=MODEL_VERSION,
    )
    # [END howto_transfer_cm_to_sql_reconcile]
