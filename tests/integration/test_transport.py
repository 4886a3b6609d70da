"""The hook's one request pipeline over real HTTP: the same settings on the sync and async paths,
one OAuth token for both, and failures no retry can fix reported at once with what to change."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cm.exceptions import (
    CommunicationsMiningConfigError,
    CommunicationsMiningConnectionError,
)
from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook
from tests.conftest import TOKEN, free_port
from tests.integration.test_oauth import CLIENT_ID, CLIENT_SECRET
from tests.relays import ForwardProxy, TlsRelay

PREFIX = "/acme/production/reinfer_"


def hook_with(host: str, *, token: str | None = TOKEN, **extra: Any) -> CommunicationsMiningHook:
    conn_id = "cm_t_" + uuid.uuid4().hex[:8]
    conn = {"conn_type": "communications_mining", "host": host, "extra": extra}
    if token:
        conn["password"] = token
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    return CommunicationsMiningHook(conn_id, retry_max_attempts=3)


def logged(capfd: Any) -> str:
    captured = capfd.readouterr()
    return captured.out + captured.err


def oauth_extra(**extra: Any) -> dict[str, Any]:
    return {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **extra}


@pytest.fixture
def oauth(emulator):
    emulator.admin("POST", "oauth", {"clients": {CLIENT_ID: CLIENT_SECRET}, "token_lifetime": 3600})
    yield emulator
    emulator.admin("POST", "oauth", {"token_lifetime": 3600, "revoke": True})


@pytest.fixture
def stream(hook, workspace) -> str:
    hook.put_stream(workspace.dataset, "s")
    return workspace.dataset


@pytest.fixture
def tls(emulator, tmp_path) -> Iterator[TlsRelay]:
    relay = TlsRelay(int(emulator.url.rsplit(":", 1)[1]), tmp_path)
    yield relay
    relay.close()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    relay = ForwardProxy()
    yield relay
    relay.close()


def both_paths(hook: CommunicationsMiningHook, dataset: str, polls: int = 1) -> list[dict[str, Any]]:
    """One sync call, then ``polls`` async stream fetches on one event loop; the transports are closed."""

    async def poll() -> list[dict[str, Any]]:
        try:
            return [await hook.afetch_stream(dataset, "s", size=1) for _ in range(polls)]
        finally:
            await hook.aclose()

    hook.get_current_user()
    try:
        return asyncio.run(poll())
    finally:
        hook.close()


def test_sync_and_async_calls_share_one_oauth_token(oauth, stream):
    hook = hook_with(oauth.url + PREFIX, token=None, **oauth_extra())
    before = oauth.stats()["token_requests"]
    batches = both_paths(hook, stream, polls=5)
    assert all(batch["sequence_id"] for batch in batches)
    assert oauth.stats()["token_requests"] - before == 1


def test_async_transport_is_kept_until_closed(emulator, stream):
    hook = hook_with(emulator.url + PREFIX)

    async def run() -> tuple[bool, bool]:
        first = await hook.atransport()
        await hook.afetch_stream(stream, "s", size=1)
        same = first is await hook.atransport()
        await hook.aclose()
        return same, first.client.is_closed

    assert asyncio.run(run()) == (True, True)


def test_proxies_carry_api_and_token_requests_on_both_paths(oauth, stream, proxy):
    hook = hook_with(oauth.url + PREFIX, token=None, **oauth_extra(proxies={"http": proxy.url}))
    both_paths(hook, stream)
    assert "acme/identity_/connect/token" in proxy.paths
    assert any(path.endswith("auth/user") for path in proxy.paths)
    assert any(path.endswith("/streams/s/fetch") for path in proxy.paths), proxy.paths


def test_environment_proxies_apply_on_both_paths_where_the_connection_sets_none(emulator, stream, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    both_paths(hook_with(emulator.url + PREFIX), stream)
    assert any(path.endswith("auth/user") for path in proxy.paths), proxy.paths
    assert any(path.endswith("/streams/s/fetch") for path in proxy.paths), proxy.paths


def test_no_proxy_in_the_environment_bypasses_the_environment_proxy(emulator, stream, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    hook_with(emulator.url + PREFIX).get_current_user()
    assert proxy.paths == []


def test_the_connection_proxies_win_over_the_environment(emulator, stream, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    hook_with(emulator.url + PREFIX, proxies={"http": proxy.url}).get_current_user()
    assert any(path.endswith("auth/user") for path in proxy.paths), proxy.paths


def test_a_netrc_entry_for_the_host_never_replaces_the_api_token(emulator, stream, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password something-else\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert hook_with(emulator.url + PREFIX).get_current_user()


def test_verify_on_uses_the_ca_bundle_the_environment_names(emulator, stream, tls, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_path))
    assert hook_with(tls.url + PREFIX).get_current_user()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("verify", ["false", "False", False])
def test_verify_false_as_text_or_boolean_works_on_both_paths(emulator, stream, tls, verify):
    hook = hook_with(tls.url + PREFIX, verify=verify)
    assert both_paths(hook, stream)[0]["sequence_id"]


def test_ca_bundle_serves_api_and_token_requests_on_both_paths(oauth, stream, tls):
    hook = hook_with(tls.url + PREFIX, token=None, **oauth_extra(verify=str(tls.ca_path)))
    before = oauth.stats()["token_requests"]
    assert both_paths(hook, stream)[0]["sequence_id"]
    assert oauth.stats()["token_requests"] - before == 1


def test_tls_verification_failure_fails_at_once_saying_what_to_change(emulator, stream, tls, capfd):
    hook = hook_with(tls.url + PREFIX)
    with pytest.raises(CommunicationsMiningConnectionError) as info:
        hook.get_current_user()
    assert info.value.permanent and "failed verification" in str(info.value) and "ca_bundle" in str(info.value)
    with pytest.raises(CommunicationsMiningConnectionError, match="failed verification"):
        asyncio.run(hook.afetch_stream(stream, "s", size=1))
    assert "retrying" not in logged(capfd)


def test_https_endpoint_on_a_plain_http_server_suggests_http(emulator, stream, capfd):
    hook = hook_with(emulator.url.replace("http://", "https://") + PREFIX)
    with pytest.raises(CommunicationsMiningConnectionError, match="http:// instead of https://") as info:
        hook.get_current_user()
    assert info.value.permanent
    with pytest.raises(CommunicationsMiningConnectionError, match="http:// instead of https://"):
        asyncio.run(hook.afetch_stream(stream, "s", size=1))
    assert "retrying" not in logged(capfd)


def test_unresolvable_host_fails_at_once(capfd):
    hook = hook_with("https://cm-nowhere.invalid" + PREFIX)
    with pytest.raises(CommunicationsMiningConnectionError, match="does not resolve") as info:
        hook.get_current_user()
    assert info.value.permanent
    ok, message = hook.test_connection()
    assert not ok and "does not resolve" in message
    assert "retrying" not in logged(capfd)


def test_connection_without_credentials_sends_nothing(emulator):
    hook = hook_with(emulator.url + PREFIX, token=None)

    def api_requests() -> dict[str, int]:
        return {k: v for k, v in emulator.stats()["requests_by_route"].items() if "/_emulator/" not in k}

    before = api_requests()
    with pytest.raises(CommunicationsMiningConfigError, match="neither an API token"):
        hook.get_current_user()
    with pytest.raises(CommunicationsMiningConfigError, match="neither an API token"):
        asyncio.run(hook.afetch_stream("p/d", "s", size=1))
    ok, message = hook.test_connection()
    assert not ok and "neither an API token" in message and "401" not in message
    assert api_requests() == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"verify": "/no/such/ca-bundle.pem"}, "neither true/false nor an existing CA bundle path"),
        ({"proxies": "not json"}, "proxies must be a JSON object"),
        ({"proxies": {"https": 3128}}, "proxies must map schemes to proxy URLs"),
        ({"timeout": "soon"}, "timeout must be a positive number of seconds"),
    ],
)
def test_unusable_settings_are_named(emulator, extra, message):
    hook = hook_with(emulator.url + PREFIX, **extra)
    with pytest.raises(CommunicationsMiningConfigError, match=message):
        hook.get_current_user()


def test_connection_test_answers_after_two_attempts_at_most(capfd):
    hook = hook_with(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    hook.settings.retry_policy  # noqa: B018  # resolved: the Test button must not use the 5-attempt policy
    ok, message = hook.test_connection()
    assert not ok and "GET /auth/user failed" in message
    assert logged(capfd).count("retrying in") == 1


def test_relays_are_real(tmp_path: Path, emulator):
    """The relays really relay: a request through each reaches the emulator."""
    import requests

    proxy = ForwardProxy()
    tls = TlsRelay(int(emulator.url.rsplit(":", 1)[1]), tmp_path)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.get(f"{emulator.url}/auth/user", headers=headers, proxies={"http": proxy.url}).ok
        assert proxy.paths == ["auth/user"]
        assert requests.get(f"{tls.url}/auth/user", headers=headers, verify=str(tls.ca_path)).ok
    finally:
        proxy.close()
        tls.close()
