"""The emulator as an HTTP server: envelope, status codes, prefixes, limits, persistence."""

from __future__ import annotations

import requests

from airflow_provider_cm.emulator import EmulatorServer
from tests.conftest import TOKEN, free_port, make_record, start_emulator_process

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_envelope_and_status_codes(emulator):
    unknown = requests.get(f"{emulator.url}/api/v1/no-such-route", headers=AUTH, timeout=10)
    assert unknown.status_code == 404 and unknown.json() == {"status": "error", "message": "404 Not Found"}
    no_token = requests.get(f"{emulator.url}/auth/user", timeout=10)
    assert no_token.status_code == 401 and no_token.json()["status"] == "error"
    user = requests.get(f"{emulator.url}/org/tenant/reinfer_/auth/user", headers=AUTH, timeout=10)
    assert user.status_code == 200 and user.json()["status"] == "ok" and user.json()["user"]["username"]
    bad_json = requests.put(
        f"{emulator.url}/api/_private/projects/x",
        data=b"{not json",
        headers=AUTH | {"Content-Type": "application/json"},
    )
    assert bad_json.status_code == 400 and bad_json.json()["status"] == "error"


def test_sync_validates_and_limits(hook, workspace, emulator):
    url = f"{emulator.url}/api/v1/sources/{workspace.source}/sync"
    too_many = {"comments": [make_record(f"x{i}", "2026-10-01T00:00:00Z")["comment"] for i in range(16385)]}
    response = requests.post(url, json=too_many, headers=AUTH, timeout=60)
    assert response.status_code == 400 and "16384" in response.json()["message"]
    bad = {"comments": [{"id": "a", "timestamp": "yesterday", "messages": [{"body": {"text": "x"}}]}]}
    response = requests.post(url, json=bad, headers=AUTH, timeout=10)
    assert response.status_code == 400 and "timestamp" in response.json()["message"]
    bad_property = make_record("b", "2026-10-01T00:00:00Z")["comment"] | {"user_properties": {"Channel": "x"}}
    response = requests.post(url, json={"comments": [bad_property]}, headers=AUTH, timeout=10)
    assert response.status_code == 400 and "string:" in response.json()["message"]


def test_export_rules(hook, workspace, emulator):
    url = f"{emulator.url}/api/v1/datasets/{workspace.dataset}/export"
    hook.sync_comments(workspace.source, [make_record(f"c{i}", f"2026-10-01T00:00:0{i}Z")["comment"] for i in range(3)])
    default_page = requests.post(url, json={}, headers=AUTH, timeout=10).json()
    assert len(default_page["comments"]) == 3 and "continuation" not in default_page
    assert requests.post(url, json={"limit": 257}, headers=AUTH, timeout=10).status_code == 400
    mixed = {"comment_uids": [f"{workspace.source_id}.c0"], "order_by": "timestamp"}
    assert requests.post(url, json=mixed, headers=AUTH, timeout=10).status_code == 400
    by_uid = requests.post(url, json={"comment_uids": [f"{workspace.source_id}.c1"]}, headers=AUTH, timeout=10)
    assert [c["comment"]["id"] for c in by_uid.json()["comments"]] == ["c1"]
    one = requests.post(url, json={"limit": 1}, headers=AUTH, timeout=10).json()
    assert len(one["comments"]) == 1 and one["continuation"]
    assert requests.post(url, json={"continuation": "garbage!"}, headers=AUTH, timeout=10).status_code == 400


def test_in_process_server_and_state_survive_a_restart(tmp_path):
    state = tmp_path / "state.json"
    with EmulatorServer(token=TOKEN, state_path=str(state)) as server:
        session = requests.Session()
        session.headers.update(AUTH)
        session.put(f"{server.url}/api/_private/projects/keep", json={"project": {}}).raise_for_status()
        source = session.put(f"{server.url}/api/v1/sources/keep/inbox", json={"source": {}}).json()["source"]
        session.post(
            f"{server.url}/api/v1/sources/keep/inbox/sync",
            json={"comments": [make_record("1", "2026-10-01T00:00:00Z")["comment"]]},
        ).raise_for_status()
    assert state.exists()
    # The same file behind a new emulator process: everything is still there, billing included.
    port = free_port()
    process = start_emulator_process(port, state=str(state))
    try:
        url = f"http://127.0.0.1:{port}"
        again = requests.get(f"{url}/api/v1/sources/keep/inbox", headers=AUTH, timeout=10).json()["source"]
        assert again["id"] == source["id"]
        comment = requests.get(f"{url}/api/v1/sources/keep/inbox/comments/1", headers=AUTH, timeout=10).json()
        assert comment["comment"]["uid"] == f"{source['id']}.1"
        assert requests.get(f"{url}/_emulator/stats", headers=AUTH, timeout=10).json()["stats"]["billed_comments"] == 1
    finally:
        process.terminate()
        process.wait(timeout=15)
