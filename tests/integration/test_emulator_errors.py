"""An error the emulator did not foresee is answered with the JSON error envelope (500) and logged.

Real HTTP: the emulator serves in this process (``EmulatorServer``) with one resource broken.
"""

from __future__ import annotations

from typing import Any

import requests

from airflow_provider_cm.emulator import EmulatorServer
from tests.conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_an_unforeseen_error_is_answered_with_the_envelope_and_logged(monkeypatch, caplog):
    from airflow_provider_cm.emulator.routes import sources

    def broken(*_args: Any) -> Any:
        raise RuntimeError("a bug in the emulator")

    monkeypatch.setattr(sources, "list_sources", broken)
    with EmulatorServer(token=TOKEN) as server:
        response = requests.get(f"{server.url}/api/v1/sources", headers=AUTH, timeout=10)
    assert response.status_code == 500
    assert response.json() == {
        "status": "error",
        "message": "500 Internal Server Error: the emulator failed; its log has the details",
    }
    assert any("a bug in the emulator" in (r.exc_text or "") for r in caplog.records)
