"""Integration tests: over real HTTP to the session's emulator process (``tests/conftest.py``).

Each module of this folder runs with the default connection pointing at that process, whatever
ran before it in the same pytest process: under pytest-xdist a worker may run a unit module
(whose default connection is the in-process application) between two integration modules.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Emulator, connection_json


@pytest.fixture(scope="module", autouse=True)
def _default_connection_to_the_process(emulator: Emulator) -> Iterator[None]:
    """The default connection points at the emulator process for every test and fixture of a module."""
    connection = connection_json(f"{emulator.url}/acme/production/reinfer_")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT", connection)
        yield
