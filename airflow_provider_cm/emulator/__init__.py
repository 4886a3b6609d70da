"""A local UiPath Communications Mining API, for running DAGs and tests without a tenant.

Start it as a process::

    python -m airflow_provider_cm.emulator --host 127.0.0.1 --port 8765 --token <token> [--state FILE]

or in-process with :class:`EmulatorServer`. It serves real HTTP under any path prefix, so a
connection host of ``http://127.0.0.1:8765`` and one of ``http://127.0.0.1:8765/org/tenant/reinfer_``
both work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_cm.emulator.server import EmulatorServer

__all__ = ["EmulatorServer"]


def __getattr__(name: str) -> Any:
    if name == "EmulatorServer":
        from airflow_provider_cm.emulator.server import EmulatorServer

        return EmulatorServer
    raise AttributeError(name)
