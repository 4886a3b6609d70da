"""A 14-day backfill of ``cm_nightly_export_to_files`` spread over both workers, each day exact.

Fourteen days of BANKING77 are uploaded, then backfilled through the REST API with the API's
default concurrency (10 runs at once): each run's ``export_day`` writes the day's file to S3 and
its ``count_labels`` reads it back, often on the other worker. Each day's object must hold exactly
that day's comments, and the count read downstream must match what was written.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, timedelta

import pytest

from tests.deployment.conftest import read_banking77, upload_comments
from tests.workers.conftest import BUCKET, WORKERS, CeleryDeployment

pytestmark = pytest.mark.workers

DAG_ID = "cm_nightly_export_to_files"
DAYS = [(date(2026, 10, 10) + timedelta(days=n)).isoformat() for n in range(14)]


def test_fourteen_day_backfill_over_both_workers_exports_each_day_exactly(workers: CeleryDeployment, report):
    expected: dict[str, set[str]] = defaultdict(set)
    comments = [r["comment"] for r in read_banking77() if r["comment"]["timestamp"][:10] in DAYS]
    for comment in comments:
        expected[comment["timestamp"][:10]].add(comment["id"])
    upload_comments(workers, comments)

    backfill = workers.backfill(DAG_ID, DAYS[0], DAYS[-1])
    runs = {
        run["data_interval_start"][:10]: run_id
        for run_id, run in workers.run_ids(DAG_ID, run_type="backfill").items()
        if run["data_interval_start"][:10] in DAYS
    }
    assert sorted(runs) == DAYS, backfill

    handed_over = 0
    exporters: set[str] = set()
    for day, run_id in sorted(runs.items()):
        run = workers.api("GET", f"dags/{DAG_ID}/dagRuns/{run_id}")
        assert run["state"] == "success", workers.failures(DAG_ID, run_id)
        export = workers.xcom(DAG_ID, run_id, "export_day")
        assert export["path"].startswith(workers.s3_root), export
        key = export["path"].split(f"{BUCKET}/", 1)[1]
        ids = [json.loads(line)["comment"]["id"] for line in workers.s3_text(key).splitlines() if line.strip()]
        assert sorted(ids) == sorted(expected[day]), day
        counted = workers.xcom(DAG_ID, run_id, "count_labels")
        assert counted["comments"] == len(expected[day]), (day, counted)
        hosts = workers.hosts(DAG_ID, run_id)
        exporters.add(hosts["export_day"])
        handed_over += hosts["export_day"] != hosts["count_labels"]

    assert exporters == set(WORKERS), f"every export ran on {exporters}: the backfill was not spread"
    report(f"workers: 14-day backfill exact; {handed_over} of 14 files read back on the other worker")
