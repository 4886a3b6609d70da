"""OAuth client credentials of an Automation Cloud external application, against the emulator's identity route."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_provider_cm.client.auth import default_token_url
from airflow_provider_cm.exceptions import CommunicationsMiningAuthError, CommunicationsMiningRateLimitError
from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook
from tests.conftest import read_jsonl, write_jsonl

CLIENT_ID = "cm-test-app"
CLIENT_SECRET = "cm-client-secret-" + uuid.uuid4().hex


def oauth_connection(url: str, conn_id: str = "cm_oauth", **extra) -> CommunicationsMiningHook:
    extras = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scope": "Reinfer.Api", **extra}
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
        {"conn_type": "communications_mining", "host": f"{url}/acme/production/reinfer_", "extra": extras}
    )
    return CommunicationsMiningHook(conn_id)


@pytest.fixture
def oauth(emulator):
    emulator.admin("POST", "oauth", {"clients": {CLIENT_ID: CLIENT_SECRET}, "token_lifetime": 3600})
    yield emulator
    emulator.admin("POST", "oauth", {"token_lifetime": 3600, "revoke": True})


def test_default_token_url():
    assert (
        default_token_url("https://cloud.uipath.com/acme/production/reinfer_")
        == "https://cloud.uipath.com/acme/identity_/connect/token"
    )
    with pytest.raises(ValueError, match="token_url"):
        default_token_url("https://acme.reinfer.io")


def test_token_is_fetched_once_and_cached(oauth):
    hook = oauth_connection(oauth.url)
    before = oauth.stats()["token_requests"]
    assert hook.test_connection()[0]
    hook.list_projects()
    assert oauth.stats()["token_requests"] - before == 1
    assert hook.client_credentials.token_url.endswith("/acme/identity_/connect/token")


def test_expired_token_is_replaced(oauth):
    oauth.admin("POST", "oauth", {"token_lifetime": 1})
    hook = oauth_connection(oauth.url)
    before = oauth.stats()["token_requests"]
    hook.get_current_user()
    time.sleep(1.2)
    hook.get_current_user()
    assert oauth.stats()["token_requests"] - before == 2


def test_revoked_token_is_refreshed_once_on_401(oauth):
    hook = oauth_connection(oauth.url)
    hook.get_current_user()
    oauth.admin("POST", "oauth", {"revoke": True})  # the cached token is still "valid" for the hook
    before = oauth.stats()["token_requests"]
    assert hook.get_current_user()["username"]
    assert oauth.stats()["token_requests"] - before == 1


def test_wrong_secret_is_a_clear_error_without_the_secret(oauth):
    hook = oauth_connection(oauth.url, client_secret="wrong-secret-value-123")
    with pytest.raises(CommunicationsMiningAuthError) as info:
        hook.get_current_user()
    assert "refused client 'cm-test-app'" in str(info.value)
    assert "wrong-secret-value-123" not in str(info.value) and CLIENT_SECRET not in str(info.value)


def test_async_path_uses_client_credentials(oauth, hook, workspace):
    hook.put_stream(workspace.dataset, "s")
    oauth_hook = oauth_connection(oauth.url)
    batch = asyncio.run(oauth_hook.afetch_stream(workspace.dataset, "s", size=1))
    assert batch["results"] == [] and batch["sequence_id"]


def test_example_dags_with_short_lived_oauth_tokens_leak_no_secret(
    oauth, airflow_db, hook, monkeypatch, tmp_path, capfd, emulator_log
):
    """Every example DAG on three days of BANKING77 (the exported day and one either side, 968 comments) with
    tokens living 1 s: the hook replaces a token after half of that, so they expire and are replaced mid-task.
    (The whole corpus through the same DAGs is ``make test-system``.)"""
    from tests.conftest import BANKING77_JSONL
    from tests.system.test_example_dags import DAY, Pipeline, load_dag, rendered_fields, xcom_values

    days = {(DAY + timedelta(days=shift)).date().isoformat() for shift in (-1, 0, 1)}
    records = [r for r in read_jsonl(BANKING77_JSONL) if r["comment"]["timestamp"][:10] in days]
    corpus = write_jsonl(tmp_path / "three-days.jsonl", records)
    oauth.admin("POST", "oauth", {"token_lifetime": 1})
    oauth_conn = json.dumps(
        {
            "conn_type": "communications_mining",
            "host": f"{oauth.url}/acme/production/reinfer_",
            "extra": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        }
    )
    pipeline = Pipeline(hook, tmp_path, json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")}), "t_")
    pipeline.apply(monkeypatch)
    monkeypatch.setenv("AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT", oauth_conn)
    before = oauth.stats()["token_requests"]
    upload_run, counts = pipeline.upload(corpus)
    assert counts["new"] == counts["annotated"] == len(records) == 968
    export_run, xcoms = pipeline.export_day(DAY)
    assert xcoms["export_day"]["count"] > 300
    load_run, loaded = pipeline.load_day(DAY)
    assert loaded["load_into_warehouse"]["rows_read"] == xcoms["export_day"]["count"]

    version = oauth.admin("POST", f"datasets/{pipeline.workspace.dataset}/models", {"tag": "live"})["version"]
    hook.put_stream(pipeline.workspace.dataset, "new-messages", model_version=version)
    hook.reset_stream(pipeline.workspace.dataset, "new-messages", "2000-01-01T00:00:00Z")
    monkeypatch.setenv("CM_STREAM", "new-messages")
    monkeypatch.setenv("CM_STREAM_TABLE", "stream_rows")
    stream_run = load_dag("cm_stream_to_warehouse").test()
    drained = xcom_values(stream_run)["drain_into_warehouse"]
    assert stream_run.state == "success" and (drained["rows_written"], drained["caught_up"]) == (len(records), True)
    monkeypatch.setenv("CM_EXPECTED_VERSION", str(version))
    messages = tmp_path / "new.jsonl"
    messages.write_text(BANKING77_JSONL.read_text().splitlines()[0] + "\n")
    gate_run = load_dag("cm_model_tag_gate").test(
        run_conf={"input_path": str(messages), "output_path": str(tmp_path / "p.jsonl")}
    )
    assert gate_run.state == "success"
    assert oauth.stats()["token_requests"] - before > 2  # tokens expired during the run and were replaced

    secrets = [CLIENT_SECRET, *oauth.admin("POST", "oauth", {"list_tokens": True})["tokens"]]
    captured = capfd.readouterr()
    runs = (upload_run, export_run, load_run, stream_run, gate_run)
    for secret in secrets:
        assert secret not in captured.out and secret not in captured.err
        for run in runs:
            assert secret not in json.dumps(xcom_values(run), default=str)
            assert secret not in json.dumps(rendered_fields(run), default=str)
    for path in [*tmp_path.rglob("*"), *Path(os.environ["AIRFLOW_HOME"]).rglob("*.log"), Path(emulator_log)]:
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not any(secret in text for secret in secrets), path


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 429, "retry_after": "1"},
        {"kind": "status", "status": 503},
        {"kind": "status", "status": 502},
        {"kind": "drop"},
    ],
    ids=["429", "503", "502", "drop"],
)
def test_token_requests_are_retried_like_every_request(oauth, workspace, fault, capfd):
    """A rate limit or an outage of the identity server delays a token refresh; it does not fail the task."""
    oauth.admin("POST", "faults", {"faults": [{**fault, "path_contains": "/identity_/connect/token", "count": 2}]})
    try:
        hook = oauth_connection(oauth.url, retry_initial_wait=0.05)
        assert hook.get_current_user()["username"]
        async_hook = oauth_connection(oauth.url, conn_id="cm_oauth_async", retry_initial_wait=0.05)
        CommunicationsMiningHook().put_stream(workspace.dataset, "s")
        oauth.admin("POST", "faults", {"faults": [{**fault, "path_contains": "/identity_/connect/token", "count": 2}]})
        assert asyncio.run(fetch_and_close(async_hook, workspace))["sequence_id"]
    finally:
        oauth.admin("DELETE", "faults")
    logged = capfd.readouterr()
    assert (logged.out + logged.err).count("identity_/connect/token: attempt") == 4


def test_identity_rate_limit_that_lasts_is_reported_as_a_rate_limit(oauth):
    oauth.admin("POST", "faults", {"faults": [{"kind": "status", "status": 429, "path_contains": "/identity_/"}]})
    try:
        hook = oauth_connection(oauth.url, retry_initial_wait=0.05, retry_max_attempts=2)
        with pytest.raises(CommunicationsMiningRateLimitError, match="rate limiting token requests"):
            hook.get_current_user()
    finally:
        oauth.admin("DELETE", "faults")


async def fetch_and_close(hook: CommunicationsMiningHook, workspace) -> dict:
    try:
        return await hook.afetch_stream(workspace.dataset, "s", size=1)
    finally:
        await hook.aclose()
