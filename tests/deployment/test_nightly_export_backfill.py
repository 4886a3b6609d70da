"""``cm_nightly_export`` in a real deployment: an Airflow 3 backfill (``POST /api/v2/backfills``) over days.

Seven days of BANKING77 are uploaded and the middle five are backfilled straight into the
warehouse table, so a window that is one second too wide or too narrow, or a day loaded twice,
shows up as a wrong or duplicated row.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any

import pytest

from tests.deployment.conftest import Deployment, Postgres, read_banking77, upload_comments, wait_for

pytestmark = pytest.mark.deployment

DAG_ID = "cm_nightly_export"
UPLOADED = [date(2026, 10, 4) + timedelta(days=n) for n in range(7)]
BACKFILLED = UPLOADED[1:-1]


def ids_by_day(records: list[dict[str, Any]]) -> dict[str, set[str]]:
    days: dict[str, set[str]] = defaultdict(set)
    for record in records:
        days[record["comment"]["timestamp"][:10]].add(record["comment"]["id"])
    return days


def upload_days(deployment: Deployment) -> dict[str, set[str]]:
    """Upload UPLOADED's comments to the source (in batches); return the ids of each day."""
    wanted = {day.isoformat() for day in UPLOADED}
    comments = [r["comment"] for r in read_banking77() if r["comment"]["timestamp"][:10] in wanted]
    upload_comments(deployment, comments)
    expected = ids_by_day([{"comment": c} for c in comments])
    assert sorted(expected) == sorted(wanted) and all(len(ids) > 100 for ids in expected.values())
    return expected


def backfill(deployment: Deployment) -> dict[str, Any]:
    """Backfill BACKFILLED through the REST API and wait until the backfill has completed.

    ``max_active_runs`` is left to the API's default (10), as a user's backfill would: every day
    runs at once, and their loads meet on the warehouse table.
    """
    if deployment.api("GET", f"dags/{DAG_ID}")["is_paused"]:
        deployment.set_paused(DAG_ID, False)  # backfill runs are only scheduled for an active DAG
        # Unpausing starts the latest night's run: let it finish first.
        wait_for("the latest night's run", lambda: deployment.run_ids(DAG_ID), timeout=60)
    for run_id in deployment.run_ids(DAG_ID):
        deployment.wait_for_run(DAG_ID, run_id, timeout=180)
    # A warehouse without the table: the backfill's first loads create it, as on a first install.
    Postgres.execute(
        "DROP TABLE IF EXISTS cm_comments, cm_comment_labels, cm_comment_entities, cm_comment_user_properties,"
        " cm_loads CASCADE",  # and the BI view on them
        deployment.warehouse_db,
    )
    body = {
        "dag_id": DAG_ID,
        "from_date": f"{BACKFILLED[0].isoformat()}T00:00:00Z",
        "to_date": f"{BACKFILLED[-1].isoformat()}T00:00:00Z",
        "reprocess_behavior": "none",
    }
    created = deployment.api("POST", "backfills", body)

    def completed() -> dict[str, Any] | None:
        state = deployment.api("GET", f"backfills/{created['id']}")
        return state if state["completed_at"] else None

    return wait_for(f"backfill {created['id']} to complete", completed, timeout=300, interval=2)


def assert_loads_never_overlapped(deployment: Deployment) -> None:
    """The DAG loads one day at a time, across all its runs (backfill and scheduled alike).

    Concurrent first loads race on ``CREATE TABLE IF NOT EXISTS`` in PostgreSQL: one of them fails
    with a unique violation in ``pg_type`` (seen in this tier before the DAG serialized its loads).
    The race itself is a matter of milliseconds; the overlap of the loads is not.
    """
    spans = sorted(
        (instance["start_date"], instance["end_date"], run_id)
        for run_id in deployment.run_ids(DAG_ID)
        for instance in [deployment.task_instance(DAG_ID, run_id, "load_into_warehouse")]
    )
    assert len(spans) >= len(BACKFILLED) and all(start and end for start, end, _ in spans), spans
    overlaps = [(a[2], b[2]) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
    assert overlaps == [], f"loads ran at the same time: {overlaps}"


def test_backfill_loads_exactly_each_days_comments(deployment: Deployment):
    expected = upload_days(deployment)
    backfill(deployment)

    runs = deployment.run_ids(DAG_ID, run_type="backfill")
    days = {run["data_interval_start"][:10]: run for run in runs.values()}
    assert sorted(days) == [day.isoformat() for day in BACKFILLED]
    for day, run in days.items():
        assert run["state"] == "success", (day, deployment.task_states(DAG_ID, run["dag_run_id"]))
        assert run["data_interval_end"][:10] == (date.fromisoformat(day) + timedelta(days=1)).isoformat()
        loaded = deployment.xcom(DAG_ID, run["dag_run_id"], "load_into_warehouse")
        assert loaded["rows_read"] == len(expected[day]), (day, loaded)
        assert loaded["start"][:10] == day and loaded["tables"][0] == "cm_comments", (day, loaded)

    assert_loads_never_overlapped(deployment)

    rows = Postgres.execute(
        "SELECT comment_id, to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM cm_comments",
        deployment.warehouse_db,
    )
    assert not [n for n in Counter(row[0] for row in rows).values() if n > 1], "a comment loaded twice"
    loaded = ids_by_day([{"comment": {"id": row[0], "timestamp": row[1]}} for row in rows])
    assert dict(loaded) == {day.isoformat(): expected[day.isoformat()] for day in BACKFILLED}
