"""The "Communications Mining" extra link of finished tasks, read through the REST API as the Airflow UI reads it.

``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links`` returns what the task
runner stored when the task ended: the tenant's web UI, built from the connection's endpoint (the
deployment's connection has the Automation Cloud form ``<emulator>/acme/production/reinfer_``).
"""

from __future__ import annotations

import pytest

from tests.deployment.conftest import Deployment

pytestmark = pytest.mark.deployment

#: The tasks of ``cm_setup``: one per kind of object (project, source, dataset, stream).
SETUP_TASKS = ("create_project", "create_source", "create_dataset", "create_stream")


def links(deployment: Deployment, dag_id: str, run_id: str, task_id: str) -> dict[str, object]:
    return deployment.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links")


def test_finished_tasks_link_to_the_tenant_web_ui(deployment: Deployment):
    dag_id = "cm_setup"
    run_id = deployment.trigger(dag_id, {})
    run = deployment.wait_for_run(dag_id, run_id, timeout=180)
    states = deployment.task_states(dag_id, run_id)
    assert (run["state"], set(states.values())) == ("success", {"success"}), states

    tenant = f"{deployment.emulator_url}/acme/production/reinfer_"
    for task_id in SETUP_TASKS:
        assert links(deployment, dag_id, run_id, task_id) == {
            "extra_links": {"Communications Mining": tenant},
            "total_entries": 1,
        }, task_id
        # What the link was built from, stored by the task before it ran.
        assert deployment.xcom(dag_id, run_id, task_id, key="communications_mining_link") == {"endpoint": tenant}
