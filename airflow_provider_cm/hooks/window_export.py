"""The export of a time window of a dataset, for operators: :class:`WindowExport`.

The class lives in :mod:`airflow_provider_cm.client.window_export` (it needs no Airflow, and the
typed warehouse loads read through it too); this is its import path for DAG authors and operators.
"""

from __future__ import annotations

from airflow_provider_cm.client.window_export import WindowExport

__all__ = ["WindowExport"]
