"""The compatibility tier is collected only when asked for: its path given, or ``-m compat``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.selection import collected_only_when_selected

HERE = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    return collected_only_when_selected(config, HERE, "compat")
