"""The API token in no log the deployment wrote, after every case (errors included) has run."""

from __future__ import annotations

import pytest

from tests.deployment.conftest import Deployment

pytestmark = pytest.mark.deployment


def test_no_log_of_the_deployment_holds_the_api_token(deployment: Deployment):
    """Runs last (see ``RUNS_LAST``): component logs, task logs and trigger logs."""
    logs = [path for path in deployment.folder.rglob("*.log") if path.is_file()]
    assert any("dag_id=" in str(path) for path in logs), "no task log to search"
    leaks = [str(path) for path in logs if deployment.token in path.read_text(encoding="utf-8", errors="replace")]
    assert leaks == []
