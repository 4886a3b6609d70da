"""Fault rules: a rule the emulator does not understand is refused, and rules reach the identity
server's token route too, so the hook's token-refresh retries can be tested."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
import requests

from tests.conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLIENT_ID = "fault-test-app"
CLIENT_SECRET = "fault-test-secret-" + uuid.uuid4().hex
TOKEN_ROUTE = "/identity_/connect/token"
FORM = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}

REFUSED = [
    ({"fault": [{"kind": "status"}]}, "fault"),
    ({"faults": {"kind": "status"}}, "faults"),
    ({"faults": [{"kind": "explode"}]}, "kind"),
    ({"faults": [{"kind": "status", "path": "/sync"}]}, "path"),
    ({"faults": [{"kind": "status", "status": "503"}]}, "status"),
    ({"faults": [{"kind": "status", "status": 200}]}, "status"),
    ({"faults": [{"kind": "status", "count": "3"}]}, "count"),
    ({"faults": [{"kind": "status", "count": 0}]}, "count"),
    ({"faults": [{"kind": "status", "every": 0}]}, "every"),
    ({"faults": [{"kind": "status", "rate": 5}]}, "rate"),
    ({"faults": [{"kind": "status", "count": 1, "every": 2}]}, "at most one"),
    ({"faults": [{"kind": "status", "method": "get"}]}, "method"),
    ({"faults": [{"kind": "latency", "delay": "slow"}]}, "delay"),
    ({"faults": [{"kind": "status", "retry_after": [1]}]}, "retry_after"),
    ({"faults": [{"kind": "status", "seed": 1.5}]}, "seed"),
    ({"fail_next": {"count": 1, "status": 503, "paths": "/x"}}, "paths"),
    ({"rate_limit": {"rps": 5}}, "rps"),
    ({"rate_limit": {"requests_per_second": -1}}, "requests_per_second"),
    ({"latency": "slow"}, "latency"),
    ({"reject_comment_ids": ["a"]}, "reject_comment_ids"),
]


@pytest.mark.parametrize(("body", "field"), REFUSED, ids=[field for _, field in REFUSED])
def test_an_unknown_or_malformed_fault_rule_is_refused_naming_the_field(emulator, body, field):
    before = emulator.stats()["faults_injected"]
    response = requests.post(f"{emulator.url}/_emulator/faults", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["status"] == "error" and field in response.json()["message"]
    assert requests.get(f"{emulator.url}/auth/user", headers=AUTH, timeout=10).status_code == 200
    assert emulator.stats()["faults_injected"] == before  # nothing of the refused request was applied


def test_a_refused_request_applies_none_of_its_parts(emulator):
    body = {"latency": 5, "faults": [{"kind": "status", "status": 503}, {"kind": "nonsense"}]}
    assert requests.post(f"{emulator.url}/_emulator/faults", json=body, headers=AUTH, timeout=10).status_code == 400
    started = time.monotonic()
    assert requests.get(f"{emulator.url}/auth/user", headers=AUTH, timeout=10).status_code == 200
    assert time.monotonic() - started < 2


def test_a_bad_fault_on_the_command_line_stops_the_emulator():
    args = [sys.executable, "-m", "airflow_provider_cm.emulator", "--port", "0", "--token", TOKEN]
    result = subprocess.run([*args, "--fault", '{"kind": "status", "every": 0}'], capture_output=True, timeout=60)
    assert result.returncode == 2 and b"every" in result.stderr


@pytest.fixture
def identity(emulator):
    emulator.admin("POST", "oauth", {"clients": {CLIENT_ID: CLIENT_SECRET}})
    yield f"{emulator.url}/acme{TOKEN_ROUTE}"
    emulator.admin("DELETE", "faults")


def add_rule(emulator, **rule) -> None:
    emulator.admin("POST", "faults", {"faults": [{"path_contains": TOKEN_ROUTE, "count": 1, **rule}]})


@pytest.mark.parametrize(("status", "retry_after"), [(429, "2"), (502, None), (503, "1")])
def test_status_faults_reach_the_token_route(emulator, identity, status, retry_after):
    add_rule(emulator, kind="status", status=status, retry_after=retry_after)
    faulted = requests.post(identity, data=FORM, timeout=10)
    assert faulted.status_code == status
    assert faulted.headers.get("Retry-After") == retry_after
    assert requests.post(identity, data=FORM, timeout=10).json()["access_token"]  # only the next call


def test_a_dropped_connection_and_latency_reach_the_token_route(emulator, identity):
    add_rule(emulator, kind="drop")
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        requests.post(identity, data=FORM, timeout=10)
    add_rule(emulator, kind="latency", delay=0.5)
    started = time.monotonic()
    assert requests.post(identity, data=FORM, timeout=10).status_code == 200
    assert time.monotonic() - started >= 0.5


def test_the_hook_retries_a_throttled_token_request(emulator, identity):
    import json
    import os

    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    extra = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "retry_initial_wait": 0.01}
    os.environ["AIRFLOW_CONN_CM_FAULTED_TOKEN"] = json.dumps(
        {"conn_type": "communications_mining", "host": f"{emulator.url}/acme/production/reinfer_", "extra": extra}
    )
    add_rule(emulator, kind="status", status=503)
    before = emulator.stats()["token_requests"]
    hook = CommunicationsMiningHook("cm_faulted_token")
    try:
        assert hook.get_current_user()["username"] == "emulator"
    finally:
        hook.close()
    assert emulator.stats()["faults_injected"]["status"] >= 1
    assert emulator.stats()["token_requests"] - before == 1  # the faulted attempt never reached the server
