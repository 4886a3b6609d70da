"""The hook over real HTTP against the emulator: endpoints, auth, typed errors, retries, pagination."""

from __future__ import annotations

import json
import os
import time
from unittest import mock

import pytest

from airflow_provider_cm.client.retry import RetryPolicy, parse_retry_after
from airflow_provider_cm.exceptions import (
    CommunicationsMiningAuthError,
    CommunicationsMiningBadRequestError,
    CommunicationsMiningConflictError,
    CommunicationsMiningConnectionError,
    CommunicationsMiningNotFoundError,
    CommunicationsMiningServerError,
)
from airflow_provider_cm.hooks.communications_mining import (
    CommunicationsMiningHook,
    endpoint_from_connection,
    split_full_name,
)
from tests.conftest import TOKEN, connection_json, free_port, make_record


def hook_for(conn_json: str, conn_id: str = "cm_custom", **kwargs) -> CommunicationsMiningHook:
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = conn_json
    return CommunicationsMiningHook(conn_id, **kwargs)


@pytest.mark.parametrize("prefix", ["", "/acme/production/reinfer_", "/acme/production/reinfer_/"])
def test_connection_works_with_and_without_path_prefix(emulator, prefix):
    hook = hook_for(connection_json(emulator.url + prefix))
    ok, message = hook.test_connection()
    assert ok, message
    assert "emulator" in message
    assert hook.endpoint == emulator.url + prefix.rstrip("/")


def test_wrong_token_is_an_auth_error_without_the_token(emulator):
    hook = hook_for(connection_json(emulator.url, token="not-the-right-token-123"))
    with pytest.raises(CommunicationsMiningAuthError) as info:
        hook.get_current_user()
    assert info.value.status_code == 401
    assert info.value.route == "GET /auth/user"
    assert "not-the-right-token-123" not in str(info.value)
    ok, message = hook.test_connection()
    assert not ok and "401" in message and "not-the-right-token-123" not in message


def test_endpoint_forms():
    from airflow.sdk import Connection

    def endpoint(**fields):
        return endpoint_from_connection(Connection(conn_id="x", conn_type="communications_mining", **fields))

    assert (
        endpoint(host="https://cloud.uipath.com/org/tenant/reinfer_/") == "https://cloud.uipath.com/org/tenant/reinfer_"
    )
    assert endpoint(host="acme.reinfer.io") == "https://acme.reinfer.io"
    assert endpoint(host="https://acme.reinfer.io/api") == "https://acme.reinfer.io"
    assert endpoint(host="localhost", schema="http", port=8080) == "http://localhost:8080"
    with pytest.raises(ValueError, match="no host"):
        endpoint(host="")


def test_split_full_name_rejects_bad_names():
    assert split_full_name("p/s", "source") == ("p", "s")
    for bad in ("p", "p/s/x", "/s", "p/"):
        with pytest.raises(ValueError, match="project/name"):
            split_full_name(bad, "source")


def test_sources_datasets_and_typed_errors(hook, workspace):
    assert hook.get_source(workspace.source)["id"] == workspace.source_id
    assert hook.get_source(f"id:{workspace.source_id}")["name"] == "inbox"
    assert [s["name"] for s in hook.list_sources(workspace.project)] == ["inbox"]
    dataset = hook.get_dataset(workspace.dataset)
    assert dataset["source_ids"] == [workspace.source_id]
    assert any(p["name"] == workspace.project for p in hook.list_projects())

    with pytest.raises(CommunicationsMiningNotFoundError) as info:
        hook.get_source(f"{workspace.project}/missing")
    assert info.value.status_code == 404 and info.value.message == "404 Not Found"
    with pytest.raises(CommunicationsMiningConflictError):
        hook.create_source(workspace.source)
    with pytest.raises(CommunicationsMiningBadRequestError, match="does not exist"):
        hook.create_source("no-such-project/inbox")

    hook.create_dataset(f"{workspace.project}/scratch", source_ids=[workspace.source_id])
    hook.delete_dataset(f"{workspace.project}/scratch")
    with pytest.raises(CommunicationsMiningNotFoundError):
        hook.get_dataset(f"{workspace.project}/scratch")


def test_sync_counts_and_billing(hook, workspace, emulator):
    before = emulator.billed()
    comments = [make_record(f"c{i}", "2026-10-01T10:00:00Z")["comment"] for i in range(5)]
    assert hook.sync_comments(workspace.source, comments) == {
        "new": 5,
        "updated": 0,
        "unchanged": 0,
        "maybe_committed_earlier": False,
    }
    assert hook.sync_comments(workspace.source, comments) == {
        "new": 0,
        "updated": 0,
        "unchanged": 5,
        "maybe_committed_earlier": False,
    }
    # A metadata-only change is an update that is not billed; a text change is billed.
    comments[0]["user_properties"] = {"string:Channel": "email"}
    comments[1]["messages"][0]["body"]["text"] = "changed"
    assert hook.sync_comments(workspace.source, comments[:2]) == {
        "new": 0,
        "updated": 2,
        "unchanged": 0,
        "maybe_committed_earlier": False,
    }
    assert emulator.billed() - before == 6
    stored = hook.get_comment(workspace.source, "c1")
    assert stored["uid"] == f"{workspace.source_id}.c1"
    assert stored["messages"][0]["body"]["text"] == "changed"
    with pytest.raises(ValueError, match="16384"):
        hook.sync_comments(workspace.source, comments * 3300)


def test_annotations_missing_key_keeps_and_empty_list_removes(hook, workspace):
    hook.sync_comments(workspace.source, [make_record("a", "2026-10-01T10:00:00Z")["comment"]])
    uid = f"{workspace.source_id}.a"
    entity = {
        "name": "org",
        "formatted_value": "hello",
        "span": {"content_part": "body", "message_index": 0, "utf16_byte_start": 0, "utf16_byte_end": 10},
    }
    hook.update_annotations(
        workspace.dataset,
        uid,
        labelling=[{"group": "default", "assigned": [{"name": "A > B", "sentiment": "positive"}]}],
        entities={"assigned": [entity]},
    )
    hook.update_annotations(workspace.dataset, uid, entities={"assigned": []})
    [annotated] = hook.get_annotations(workspace.dataset, [uid])
    assert annotated["labelling"][0]["assigned"] == [{"name": "A > B", "sentiment": "positive"}]
    assert annotated["entities"]["assigned"] == []
    hook.update_annotations(workspace.dataset, uid, labelling=[])
    [annotated] = hook.get_annotations(workspace.dataset, [uid])
    assert annotated["labelling"] == []
    with pytest.raises(CommunicationsMiningNotFoundError):
        hook.update_annotations(workspace.dataset, f"{workspace.source_id}.missing", labelling=[])


def test_iter_export_follows_continuation(hook, workspace):
    comments = [make_record(f"e{i:03d}", f"2026-10-02T00:{i // 60:02d}:{i % 60:02d}Z")["comment"] for i in range(130)]
    hook.sync_comments(workspace.source, comments)
    pages = list(hook.iter_export_pages(workspace.dataset, limit=50))
    assert [len(p) for p in pages] == [50, 50, 30]
    ids = [c["comment"]["id"] for page in pages for c in page]
    assert ids == sorted(ids) and len(set(ids)) == 130
    window = list(hook.iter_export(workspace.dataset, start="2026-10-02T00:00:10Z", end="2026-10-02T00:00:20Z"))
    assert [c["comment"]["id"] for c in window] == [f"e{i:03d}" for i in range(10, 21)]  # `to` is inclusive
    with pytest.raises(ValueError, match="limit"):
        hook.export_page(workspace.dataset, limit=257)


def test_retries_server_errors_and_honours_retry_after(hook, workspace, emulator, capfd):
    emulator.admin(
        "POST",
        "faults",
        {"fail_next": {"count": 2, "status": 503, "method": "GET", "path_contains": "/sources/", "retry_after": "0"}},
    )
    started = time.monotonic()
    assert hook.get_source(workspace.source)["id"] == workspace.source_id
    assert time.monotonic() - started < 5  # Retry-After: 0 was honoured instead of the backoff
    retries = [line for line in capfd.readouterr().out.splitlines() if "retrying in" in line]
    assert len(retries) == 2 and "503" in retries[0]


def test_gives_up_after_max_attempts(emulator, workspace):
    hook = hook_for(connection_json(emulator.url, retry_initial_wait=0.01, retry_max_wait=0.02), retry_max_attempts=3)
    emulator.admin("POST", "faults", {"fail_next": {"count": 5, "status": 500, "path_contains": "/sources/"}})
    try:
        with pytest.raises(CommunicationsMiningServerError) as info:
            hook.get_source(workspace.source)
        assert info.value.status_code == 500
        assert emulator.stats()  # the emulator still answers
    finally:
        emulator.admin("DELETE", "faults")


def test_connection_refused_is_a_connection_error():
    hook = hook_for(connection_json(f"http://127.0.0.1:{free_port()}", retry_initial_wait=0.01), retry_max_attempts=2)
    with pytest.raises(CommunicationsMiningConnectionError) as info:
        hook.get_current_user()
    assert info.value.route == "GET /auth/user"
    assert TOKEN not in str(info.value)


def test_retry_policy_rules():
    policy = RetryPolicy()
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None
    server = CommunicationsMiningServerError(503, "POST /x", "down")
    assert policy.should_retry(server, idempotent=True)
    assert not policy.should_retry(server, idempotent=False)
    assert not policy.should_retry(CommunicationsMiningBadRequestError(400, "POST /x", "bad"), idempotent=True)
    refused = CommunicationsMiningConnectionError("POST /x", "refused", sent=False)
    assert policy.should_retry(refused, idempotent=False)
    assert policy.backoff(1, CommunicationsMiningServerError(429, "GET /x", "slow", retry_after=500)) == 120
    assert 0.5 <= policy.backoff(1) <= 1.0
    assert RetryPolicy.from_mapping({"retry_max_attempts": "2"}, max_elapsed=9).max_attempts == 2
    with pytest.raises(ValueError):
        RetryPolicy.from_mapping({"retry_max_attempts": 0})


def test_verify_false_warns(emulator, capfd):
    hook = hook_for(connection_json(emulator.url, verify=False))
    hook.get_current_user()
    assert "verification is disabled" in capfd.readouterr().out


def test_provider_info_is_registered():
    from importlib.metadata import entry_points

    [entry] = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("airflow_provider_cm")]
    info = entry.load()()
    [conn_type] = info["connection-types"]
    assert conn_type["connection-type"] == "communications_mining"
    assert conn_type["ui-field-behaviour"]["relabeling"] == {"host": "API endpoint", "password": "API token"}
    assert json.dumps(info)  # JSON-safe

    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    assert "airflow-provider-cm" in ProvidersManager().providers
    hook_info = ProvidersManagerTaskRuntime().hooks.get("communications_mining")
    assert hook_info is not None and hook_info.hook_class_name.endswith("CommunicationsMiningHook")


def test_import_does_no_network():
    with mock.patch("socket.socket.connect", side_effect=AssertionError("network at import")):
        import importlib

        import airflow_provider_cm

        importlib.reload(airflow_provider_cm)
        assert airflow_provider_cm.get_provider_info()["package-name"] == "airflow-provider-cm"


def test_create_only_upload_conflict_is_not_retried(hook, workspace, emulator):
    comment = make_record("c1", "2026-10-01T10:00:00Z")["comment"]
    hook.put_comments(workspace.source, [comment])
    hook.put_comments(workspace.source, [comment])  # identical data: accepted
    route = "PUT /api/_private/sources/{project}/{name}/comments"
    before = emulator.requests_to(route)
    changed = dict(comment, messages=[{"body": {"text": "different"}}])
    with pytest.raises(CommunicationsMiningConflictError, match="different data") as info:
        hook.put_comments(workspace.source, [changed])
    assert info.value.status_code == 409
    assert emulator.requests_to(route) - before == 1  # a genuine conflict is not retried
    assert hook.get_comment(workspace.source, "c1")["messages"][0]["body"]["text"] == "hello"


def test_operators_take_retry_settings(emulator, workspace, tmp_path, context):
    from airflow_provider_cm.operators.datasets import CommunicationsMiningExportDatasetOperator

    route = "POST /api/v1/datasets/{project}/{name}/export"
    served_before = emulator.requests_to(route)
    injected_before = emulator.stats()["faults_injected"].get("status", 0)
    emulator.admin("POST", "faults", {"fail_next": {"count": 5, "status": 503, "path_contains": "/export"}})
    try:
        export = CommunicationsMiningExportDatasetOperator(
            task_id="x",
            dataset=workspace.dataset,
            output_path=str(tmp_path / "x.jsonl"),
            start="2026-10-01",
            end="2026-10-02",
            retry_max_attempts=2,
        )
        assert export.hook.retry_policy.max_attempts == 2
        with pytest.raises(CommunicationsMiningServerError):
            export.execute(context)
        assert emulator.requests_to(route) == served_before  # neither attempt got through
        assert emulator.stats()["faults_injected"]["status"] - injected_before == 2  # two attempts, not five
    finally:
        emulator.admin("DELETE", "faults")
