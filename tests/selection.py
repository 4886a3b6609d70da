"""Test tiers collected only when asked for (their folder on the command line, or their marker)."""

from __future__ import annotations

from pathlib import Path

import pytest


def collected_only_when_selected(config: pytest.Config, folder: Path, marker: str) -> bool | None:
    """For ``pytest_ignore_collect``: ``None`` (collect) when ``folder`` or ``-m <marker>`` was asked for,
    else ``True``."""
    if marker in (config.option.markexpr or ""):
        return None
    for arg in config.args:
        target = Path(arg.split("::")[0]).resolve()
        if target == folder or folder in target.parents:
            return None
    return True
