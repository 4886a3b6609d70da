"""Deprecated: moved to :mod:`airflow_provider_cm.common.links`; this alias goes in the next release."""

# layers-move: deprecated alias
from __future__ import annotations

import importlib
import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    warnings.warn(
        "airflow_provider_cm.links moved to airflow_provider_cm.common.links; import " + name + " from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module("airflow_provider_cm.common.links"), name)
