"""A tenant of real BANKING77 comments in the in-process emulator, built once per module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import new_workspace


@pytest.fixture(scope="module")
def module_hook(emulator) -> Iterator[Any]:
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def banking(module_hook, emulator):
    """``(workspace, exported comments)``: 150 BANKING77 comments, labelled, version 1 tagged live."""
    from tests.tenant_month import build_tenant, export_all

    workspace = new_workspace(module_hook)
    build_tenant(module_hook, emulator, workspace, 150)
    return workspace, export_all(module_hook, workspace)
