"""The "Communications Mining" extra link: its URL from both tenant forms, and its round trip through a task run."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from airflow_provider_cm.common.links import LINK_XCOM_KEY, CommunicationsMiningTenantLink, tenant_ui_url
from tests.in_process import HOST


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        # Automation Cloud: https://cloud.uipath.com/<organisation>/<tenant>/reinfer_
        (
            "https://cloud.uipath.com/acme/DefaultTenant/reinfer_",
            "https://cloud.uipath.com/acme/DefaultTenant/reinfer_",
        ),
        ("https://cloud.uipath.com/acme/prod/reinfer_/", "https://cloud.uipath.com/acme/prod/reinfer_"),
        ("https://cloud.uipath.com/acme/prod/reinfer_/api", "https://cloud.uipath.com/acme/prod/reinfer_"),
        ("https://cloud.uipath.com/acme/prod/reinfer_/api/v1/datasets", "https://cloud.uipath.com/acme/prod/reinfer_"),
        # Legacy tenants: https://<mydomain>.reinfer.io, whatever path the connection carries.
        ("https://example.reinfer.io", "https://example.reinfer.io"),
        ("https://example.reinfer.io/", "https://example.reinfer.io"),
        ("https://Example.Reinfer.io/api", "https://Example.Reinfer.io"),
        # Another host in the Automation Cloud form (dedicated cloud, the emulator) and any other endpoint.
        (
            "https://acme.dedicated.uipath.com/acme/prod/reinfer_",
            "https://acme.dedicated.uipath.com/acme/prod/reinfer_",
        ),
        ("http://127.0.0.1:8080/acme/production/reinfer_", "http://127.0.0.1:8080/acme/production/reinfer_"),
        ("https://cm.example.com/api", "https://cm.example.com"),
        ("https://cm.example.com:8443/prefix", "https://cm.example.com:8443/prefix"),
    ],
)
def test_tenant_ui_url_from_both_tenant_forms(endpoint: str, expected: str):
    assert tenant_ui_url(endpoint) == expected


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        # Names with spaces, reserved or non-ASCII characters are percent-encoded, and only once.
        (
            "https://cloud.uipath.com/Acme Corp/Tenant 1/reinfer_",
            "https://cloud.uipath.com/Acme%20Corp/Tenant%201/reinfer_",
        ),
        (
            "https://cloud.uipath.com/Acme%20Corp/T%C3%A9nant/reinfer_",
            "https://cloud.uipath.com/Acme%20Corp/T%C3%A9nant/reinfer_",
        ),
        ("https://cloud.uipath.com/Acmé/t&u+v/reinfer_", "https://cloud.uipath.com/Acm%C3%A9/t%26u%2Bv/reinfer_"),
        ("https://cloud.uipath.com/a%2Fb/t/reinfer_", "https://cloud.uipath.com/a%2Fb/t/reinfer_"),
        ("https://cm.example.com/a b/api", "https://cm.example.com/a%20b"),
    ],
)
def test_special_characters_are_quoted_once(endpoint: str, expected: str):
    assert tenant_ui_url(endpoint) == expected


def test_a_fragment_or_query_never_reaches_the_link():
    # "#" starts a fragment and "?" a query: what follows is not part of the tenant's path, and is dropped.
    assert tenant_ui_url("https://cloud.uipath.com/acme/prod/reinfer_?x=1#frag") == (
        "https://cloud.uipath.com/acme/prod/reinfer_"
    )


@pytest.mark.parametrize(
    "endpoint", ["", "cloud.uipath.com/acme/prod/reinfer_", "ftp://example.reinfer.io", "https://"]
)
def test_an_endpoint_that_is_not_an_http_url_is_refused(endpoint: str):
    with pytest.raises(ValueError, match="not an http"):
        tenant_ui_url(endpoint)


class _RecordingTaskInstance:
    """What ``persist`` needs of a task instance: ``xcom_push``, recorded."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_persist_stores_the_endpoint_and_checks_it_first():
    ti = _RecordingTaskInstance()
    CommunicationsMiningTenantLink.persist({"ti": ti}, endpoint="https://example.reinfer.io")
    assert ti.pushed == {LINK_XCOM_KEY: {"endpoint": "https://example.reinfer.io"}}
    with pytest.raises(ValueError):
        CommunicationsMiningTenantLink.persist({"ti": ti}, endpoint="example.reinfer.io")
    CommunicationsMiningTenantLink.persist({}, endpoint="https://example.reinfer.io")  # no task instance: nothing


def test_every_operator_and_the_sensor_carry_the_link_and_the_provider_registers_it():
    import airflow_provider_cm
    from airflow_provider_cm.operators.base import CommunicationsMiningBaseOperator
    from airflow_provider_cm.sensors.streams import CommunicationsMiningStreamSensor

    for cls in (CommunicationsMiningBaseOperator, CommunicationsMiningStreamSensor):
        assert [type(link) for link in cls.operator_extra_links] == [CommunicationsMiningTenantLink]
    info = airflow_provider_cm.get_provider_info()
    assert info["extra-links"] == ["airflow_provider_cm.common.links.CommunicationsMiningTenantLink"]


def _xcoms(dag_run: Any, task_id: str) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id)
        return {row.key: row.value for row in rows}


def test_a_finished_task_stores_its_link_for_the_ui(emulator, airflow_db, hook, monkeypatch):
    """A real run of ``cm_setup`` (``dag.test()``): ``pre_execute`` persists the endpoint, the runner the link."""
    from tests.system.test_example_dags import load_dag

    project = "links" + uuid.uuid4().hex[:10]
    monkeypatch.setenv("CM_SOURCE", f"{project}/inbox")
    monkeypatch.setenv("CM_DATASET", f"{project}/support")
    monkeypatch.setenv("CM_STREAM", "new-messages")
    monkeypatch.delenv("CM_STREAM_MODEL_TAG", raising=False)
    run = load_dag("cm_setup").test()
    assert run.state == "success"
    link = CommunicationsMiningTenantLink()
    for task_id in ("create_project", "create_source", "create_dataset", "create_stream"):
        stored = _xcoms(run, task_id)
        assert stored[LINK_XCOM_KEY] == {"endpoint": f"{HOST}/acme/production/reinfer_"}, task_id
        assert stored[link.xcom_key] == f"{HOST}/acme/production/reinfer_", task_id
    assert [d["name"] for d in hook.list_datasets(project)] == ["support"]
