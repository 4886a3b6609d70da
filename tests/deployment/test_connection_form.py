"""The connection form of the Airflow 3.3 UI, filled in a real (headless) browser, and the connection it stores.

The browser is Debian's Chromium (``make browser`` installs it), driven by playwright with
``executable_path``: playwright's own browser download is not used. The deployment runs the
simple auth manager with every user an admin (see ``Deployment.environment``), so the UI needs
no login form: the browser is an admin as soon as it opens a page, as the REST client is once it
has a token from ``/auth/token``.

The case fills every field of the Communications Mining connection type, saves, and reads the
connection back twice: through the REST API (the keys, the types, and the values Airflow redacts)
and from the metadata database (the exact values). Then the stored connection is tested the way
that works in 3.3.2, with ``POST /api/v2/connections/test`` and ``airflow connections test``,
against the emulator's identity server and API through a real forward proxy.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests

from airflow_provider_cm.common.connection_form import CONN_FIELDS
from tests.deployment.conftest import BIN, Deployment, Postgres
from tests.relays import ForwardProxy

pytestmark = pytest.mark.deployment

CHROMIUM = "/usr/bin/chromium"
#: Flags that work on this machine: no sandbox (root), no GPU, and nothing that reaches the internet.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CLIENT_ID = "cm-form-app"
CLIENT_SECRET = "cm-form-secret-" + uuid.uuid4().hex
#: Where the case saves a screenshot of the filled form, when set (for a person to look at).
SCREENSHOT_ENV = "CM_FORM_SCREENSHOT"


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    """A page of a fresh headless Chromium profile."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 3400},  # the whole dialog in one screenshot
        )
        context.set_default_timeout(60_000)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    relay = ForwardProxy()
    yield relay
    relay.close()


def fill_monaco(page: Any, editor: Any, text: str) -> None:
    """Replace the text of a Monaco editor (the UI's JSON field); what it closes by itself is removed."""
    editor.locator(".view-lines").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(text)
    page.keyboard.press("Shift+Control+End")
    page.keyboard.press("Delete")


def test_connection_form_stores_every_field_and_the_stored_connection_tests_ok(
    deployment: Deployment, page: Any, proxy: ForwardProxy
):
    emulator = deployment.emulator_url
    response = requests.post(
        f"{emulator}/_emulator/oauth",
        json={"clients": {CLIENT_ID: CLIENT_SECRET}},
        headers={"Authorization": f"Bearer {deployment.token}"},
        timeout=30,
    )
    response.raise_for_status()
    conn_id = "cm_form_" + uuid.uuid4().hex[:8]
    host = f"{emulator}/acme/production/reinfer_"
    typed: dict[str, Any] = {  # what is typed into each field, and what must be stored
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "Reinfer.Api",
        "token_url": f"{emulator}/acme/identity_/connect/token",
        "verify": True,
        "ca_bundle": certifi.where(),
        "connect_timeout": 7,
        "timeout": 45.5,
        "proxies": {"http": proxy.url},
        "retry_max_attempts": 3,
        "retry_max_elapsed": 90,
        "retry_initial_wait": 0.5,
        "retry_max_wait": 8,
        "retry_retry_after_cap": 60,
    }
    assert set(typed) == set(CONN_FIELDS), "the case must fill every field of the form"

    page.goto(f"{deployment.api_url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name=connection_id]").fill(conn_id)
    dialog.get_by_role("combobox").fill("Communications Mining")
    page.get_by_role("option", name="UiPath Communications Mining").click()
    # The relabelled standard fields; schema, login and port are hidden.
    assert dialog.get_by_text("API endpoint", exact=True).is_visible()
    assert dialog.get_by_text("API token", exact=True).is_visible()
    assert dialog.locator("input[name=port]").count() == 0 and dialog.locator("input[name=login]").count() == 0
    dialog.locator("input[name=host]").fill(host)

    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    for name, spec in CONN_FIELDS.items():  # every label, none marked required ("*"): each has a default
        label = dialog.locator("label").filter(has_text=re.compile(rf"^{re.escape(spec['label'])}\s*\*?$"))
        assert label.count() == 1 and label.is_visible(), name
        assert label.inner_text().strip() == spec["label"], f"{name} is marked required: {label.inner_text()!r}"
    for name in ("client_id", "client_secret", "scope", "token_url", "ca_bundle"):
        dialog.locator(f"#element_{name}").fill(typed[name])
    for name, value in typed.items():
        if CONN_FIELDS[name]["schema"]["type"][0] in ("number", "integer"):
            dialog.locator(f"input[name=element_{name}]").fill(str(value))
    fill_monaco(page, dialog.locator("#element_proxies"), json.dumps(typed["proxies"]))
    switch = dialog.locator("input[name=element_verify]")
    assert switch.is_checked()  # on by default
    dialog.locator("label#switch\\:element_verify").click()
    assert not switch.is_checked()
    dialog.locator("label#switch\\:element_verify").click()
    assert switch.is_checked()

    secret = dialog.locator("#element_client_secret")
    assert secret.get_attribute("type") == "password"  # masked while typed
    assert CLIENT_SECRET not in dialog.inner_text()
    if os.environ.get(SCREENSHOT_ENV):
        page.screenshot(path=os.environ[SCREENSHOT_ENV], full_page=True)

    with page.expect_response(lambda r: r.url.endswith("/api/v2/connections") and r.request.method == "POST") as post:
        dialog.get_by_role("button", name="Save").click()
    assert post.value.status == 201, post.value.text()
    page.get_by_role("dialog").wait_for(state="detached")

    # The REST API: every field under its own key with its type; what Airflow counts as sensitive
    # by its key (client_secret, token_url, proxies) comes back redacted.
    stored = deployment.api("GET", f"connections/{conn_id}")
    assert (stored["conn_type"], stored["host"], stored["password"]) == ("communications_mining", host, None)
    extra = json.loads(stored["extra"])
    redacted = {"client_secret": "***", "token_url": "***", "proxies": {"http": "***"}}
    assert extra == {**typed, **redacted}
    for name, value in typed.items():
        assert type(extra[name]) is type(value), (name, extra[name])

    # The metadata database: exactly what was typed, the secret included.
    [(raw_extra, is_encrypted)] = Postgres.execute(
        f"SELECT extra, is_extra_encrypted FROM connection WHERE conn_id = '{conn_id}'", deployment.name
    )
    assert not is_encrypted  # the deployment runs without a Fernet key
    assert json.loads(raw_extra) == typed

    # The UI never shows the secret: not in the list, not in the edit form (a masked, redacted field).
    page.get_by_text(conn_id, exact=True).wait_for()
    assert CLIENT_SECRET not in page.content()
    row = page.get_by_role("row").filter(has_text=conn_id)
    row.get_by_role("button", name="Edit Connection").click()
    edit = page.get_by_role("dialog")
    edit_secret = edit.locator("#element_client_secret")
    edit_secret.wait_for(state="attached")
    if not edit_secret.is_visible():
        edit.get_by_role("button", name="Extra Fields", exact=True).click()
    assert edit_secret.get_attribute("type") == "password"
    assert edit_secret.input_value() == "***" and CLIENT_SECRET not in page.content()
    # Saving the edit form with the redacted values untouched keeps what is stored; one change lands.
    edit.locator("input[name=element_timeout]").fill("50")
    with page.expect_response(
        lambda r: f"/api/v2/connections/{conn_id}" in r.url and r.request.method == "PATCH"
    ) as patch:
        edit.get_by_role("button", name="Save").click()
    assert patch.value.status == 200, patch.value.text()
    page.get_by_role("dialog").wait_for(state="detached")
    typed["timeout"] = 50
    [(raw_extra,)] = Postgres.execute(f"SELECT extra FROM connection WHERE conn_id = '{conn_id}'", deployment.name)
    assert json.loads(raw_extra) == typed

    # "Test", as the REST API and the CLI do it in 3.3.2, on the stored connection (the UI's own
    # button sends port 0 for a hidden port field; fixed after 3.3.2).
    before = len(proxy.paths)
    body = {"connection_id": conn_id, "conn_type": stored["conn_type"], "host": host, "extra": stored["extra"]}
    result = deployment.api("POST", "connections/test", body)
    assert result["status"] is True, result
    assert f"Connected to {host}" in result["message"]
    cli = subprocess.run(
        [str(BIN / "airflow"), "connections", "test", conn_id],
        env=deployment.environment(),
        cwd=deployment.folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0 and "Connection success!" in cli.stdout, cli.stdout + cli.stderr
    assert CLIENT_SECRET not in cli.stdout + cli.stderr
    # Both tests fetched a token from the token URL and called the API, through the proxy.
    relayed = proxy.paths[before:]
    assert relayed.count("acme/identity_/connect/token") == 2, relayed
    assert sum(path.endswith("auth/user") for path in relayed) == 2, relayed
    # Nor did any component (the api-server ran the REST test) write the secret to its log.
    leaks = [str(p) for p in deployment.folder.rglob("*.log") if CLIENT_SECRET in p.read_text(errors="replace")]
    assert leaks == []
