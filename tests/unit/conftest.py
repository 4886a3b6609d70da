"""Unit tests: no server process. The emulator's application runs in this process (tests.in_process).

The fixtures of ``tests/conftest.py`` (``hook``, ``workspace``, ``context``...) work here
unchanged: only ``emulator`` is replaced, and the default connection points at the in-process
application for every test of this folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import TOKEN, Emulator, connection_json
from tests.in_process import HOST, served_in_process

CONNECTION = connection_json(f"{HOST}/acme/production/reinfer_")


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """The emulator's application in this process, for the session (its address is :data:`HOST`)."""
    from airflow_provider_cm.emulator.app import create_app

    previous = os.environ.get("AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT")
    os.environ["AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT"] = CONNECTION  # for module-scoped fixtures too
    try:
        with served_in_process(create_app(TOKEN)):
            yield Emulator(HOST, None)
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT"] = previous


@pytest.fixture(scope="module", autouse=True)
def _default_connection_in_process(emulator: Emulator) -> Iterator[None]:
    """The default connection points at the in-process application for every module-scoped fixture too,
    whatever ran before in this pytest process (under pytest-xdist, an integration module may have)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT", CONNECTION)
        yield


@pytest.fixture(autouse=True)
def _default_connection(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The default connection points at the in-process application during each unit test."""
    monkeypatch.setenv("AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT", CONNECTION)
