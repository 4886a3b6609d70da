"""Run example DAGs with ``dag.test()`` in a process of their own, as ``airflow dags test`` would.

``python -m tests.lineage_runner PLAN RESULT``: ``PLAN`` is a JSON list of runs, each
``{"dag": <example DAG file stem>, "env": {...}, "logical_date": <ISO time or null>, "conf": {...}}``,
run in order; each run's environment is applied before its DAG file is imported (the example DAGs
read their configuration when parsed). ``RESULT`` gets ``[{"dag_id", "run_id", "state", "xcom"}]``, ``xcom``
the tasks' return values by task id.

The test that uses it starts it with OpenLineage configured through ``AIRFLOW__OPENLINEAGE__*``:
the OpenLineage provider decides once per process whether its listener is on, so the runs need a
process that starts with that configuration. This module imports nothing of the test suite (its
conftest would give the process another Airflow home).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

EXAMPLE_DAGS = Path(__file__).resolve().parents[1] / "example_dags"


def load_dag(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"{name}_{uuid.uuid4().hex}", EXAMPLE_DAGS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def return_values(dag_run: Any) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, key="return_value")
        return {row.task_id: row.value for row in rows}


def main(plan_path: str, result_path: str) -> int:
    with open(plan_path, encoding="utf-8") as handle:
        plan = json.load(handle)
    results = []
    for run in plan:
        os.environ.update(run.get("env") or {})
        dag = load_dag(run["dag"])
        logical_date = datetime.fromisoformat(run["logical_date"]) if run.get("logical_date") else None
        dag_run = dag.test(logical_date=logical_date, run_conf=run.get("conf"))
        results.append(
            {
                "dag_id": dag_run.dag_id,
                "run_id": dag_run.run_id,
                "state": str(dag_run.state),
                "xcom": return_values(dag_run),
            }
        )
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(results, handle, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
