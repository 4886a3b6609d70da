"""Airflow internals the tests reach into, found where each supported minor keeps them.

The provider itself reaches only public APIs, through ``airflow_provider_cm.common.compat`` where they
differ; the tests also drive internals (the triggerer's in-process execution API), which move
between minors. Each lookup tries the locations newest-first and names them all when none works.
"""

from __future__ import annotations

import importlib
from typing import Any


def _first(name: str, *modules: str) -> Any:
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"{name} is in none of {', '.join(modules)}")


def in_process_api_server() -> Any:
    """The in-process execution API the triggerer's supervisor answers its runner with.

    In ``airflow.jobs.triggerer_job_runner`` up to Airflow 3.3; in
    ``airflow.sdk.execution_time.supervisor`` from 3.4.
    """
    return _first(
        "in_process_api_server", "airflow.sdk.execution_time.supervisor", "airflow.jobs.triggerer_job_runner"
    )()


def dag_bag(folder: str) -> Any:
    """The DAGs of ``folder`` parsed as the DAG processor parses them (example DAGs per ``[core] load_examples``).

    ``DagBag`` lives in ``airflow.dag_processing.dagbag`` in every supported minor (its old
    location warns); its ``include_examples`` argument is gone from 3.3.
    """
    bag = _first("DagBag", "airflow.dag_processing.dagbag", "airflow.models.dagbag")(dag_folder=folder)
    for path, reason in unavailable_example_dags().items():
        error = bag.import_errors.get(path, "")
        if reason in error:  # expected here, and only for that reason: anything else stays an import error
            del bag.import_errors[path]
    return bag


def unavailable_example_dags() -> dict[str, str]:
    """``{path: the missing module}`` of the example DAGs this Python cannot import, by design.

    ``cm_parquet_to_duckdb`` loads into DuckDB with the official provider, which needs Python 3.11
    (the ``duckdb`` extra's marker leaves it out on 3.10).
    """
    import sys
    from pathlib import Path

    if sys.version_info >= (3, 11):
        return {}
    example = Path(__file__).resolve().parents[1] / "example_dags" / "cm_parquet_to_duckdb.py"
    return {str(example): "No module named 'airflow.providers.duckdb'"}
