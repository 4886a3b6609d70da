"""Every example DAG parses in the deployment's dag-processor, with the settings it reads from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deployment.conftest import ROOT, Deployment

pytestmark = pytest.mark.deployment


def test_every_example_dag_is_parsed_without_import_errors(deployment: Deployment):
    files = sorted(path.stem for path in (ROOT / "example_dags").glob("*.py") if not path.name.startswith("_"))
    assert files, "no example DAGs found"
    for dag_id in files:  # each example file defines the DAG named after it
        deployment.wait_for_dag(dag_id, timeout=120)
    errors = deployment.api("GET", "importErrors")
    assert errors["total_entries"] == 0, [(e["filename"], e["stack_trace"][-500:]) for e in errors["import_errors"]]
    dags = deployment.api("GET", "dags?limit=100")["dags"]
    assert sorted(d["dag_id"] for d in dags) == files
    assert {Path(d["fileloc"]).parent for d in dags} == {ROOT / "example_dags"}
