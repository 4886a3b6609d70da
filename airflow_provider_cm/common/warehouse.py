"""What the typed warehouse's operators share: their arguments' checks, the range a mode reads,
the switch to a reconcile when the pinned model version moved, and the result they return.

The SQL transfer (``CommunicationsMiningToSqlOperator``) and the export operator's Parquet
output (``CommunicationsMiningExportDatasetOperator``) both load the model of
:mod:`airflow_provider_cm.pipelines.warehouse`; this module is their Airflow side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_cm.api.times import api_time
from airflow_provider_cm.client.user_times import to_utc
from airflow_provider_cm.client.window_export import EARLIEST, LATEST
from airflow_provider_cm.client.windows import export_window
from airflow_provider_cm.pipelines.warehouse.freshness import MODES

#: The lookback a ``lookback`` load re-reads when none is given (days before the window).
DEFAULT_LOOKBACK_DAYS = 7


def check_mode(mode: str, lookback_days: int, prediction_threshold: float) -> None:
    """Check a load's mode arguments when the DAG is parsed.

    :raises ValueError: for a mode that is not ``window``, ``lookback`` or ``reconcile``, a
        negative ``lookback_days``, or a ``prediction_threshold`` outside ``[0, 1]``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not isinstance(lookback_days, int) or lookback_days < 0:
        raise ValueError(f"lookback_days must be a whole number of days, 0 or more, got {lookback_days!r}")
    if not 0.0 <= prediction_threshold <= 1.0:
        raise ValueError(f"prediction_threshold must be between 0 and 1, got {prediction_threshold!r}")


def check_model_version(model_version: int | str | None) -> int | str | None:
    """A model version as given: a pinned number (``int`` or digits) or a tag name; ``None`` for none.

    :raises ValueError: for a version below 1 or an empty tag.
    """
    if model_version is None:
        return None
    if isinstance(model_version, bool) or not isinstance(model_version, (int, str)):
        raise ValueError(f"model_version must be a pinned version number or a tag name, got {model_version!r}")
    if isinstance(model_version, int) and model_version < 1:
        raise ValueError(f"model_version must be 1 or more, got {model_version}")
    if isinstance(model_version, str) and not model_version.strip():
        raise ValueError("model_version must be a pinned version number or a tag name, got an empty string")
    return model_version


def mode_range(
    mode: str, start: datetime | str | None, end: datetime | str | None, context: Mapping[str, Any]
) -> tuple[datetime | None, datetime | None]:
    """The ``[start, end)`` a load of ``mode`` is given (before a lookback widens it).

    ``window`` and ``lookback``: the arguments, else the run's data interval (as the window
    export's rules). ``reconcile``: the whole dataset ``(None, None)`` unless ``start`` or ``end``
    is given, then a range as for a window.

    :raises ValueError: for a window the run cannot give (see
        :func:`~airflow_provider_cm.client.windows.export_window`).
    """
    if mode == "reconcile" and start in (None, "") and end in (None, ""):
        return None, None
    return export_window(start, end, context)


@dataclass(frozen=True)
class ModeChoice:
    """The mode a load runs in: the one asked for, or ``reconcile`` because the model version moved."""

    mode: str
    start: datetime | None
    end: datetime | None
    reason: str | None = None


def choose_mode(
    mode: str,
    start: datetime | None,
    end: datetime | None,
    *,
    version: int | None,
    last_version: int | None,
    has_loads: bool,
) -> ModeChoice:
    """Reconcile the whole dataset when the pinned version differs from the last load's.

    A tag such as ``live`` that moved to a retrained model changes the predictions of every
    comment, not only the window's: a window or lookback load would leave the older comments'
    predicted rows at the previous version. With ``version`` set and a previous load of the
    dataset made with another version (or with the export's unversioned predictions), the load
    becomes a reconcile of the whole dataset.
    """
    if mode == "reconcile" or version is None or not has_loads or last_version == version:
        return ModeChoice(mode, start, end)
    before = "the export's unversioned predictions" if last_version is None else f"version {last_version}"
    return ModeChoice(
        "reconcile",
        None,
        None,
        f"the pinned model version is {version} but the last load of the dataset used {before}: "
        "reconciling the whole dataset so that every comment's predictions are of version "
        f"{version} (set reconcile_on_model_change=False to keep the {mode} load)",
    )


def load_result(
    *,
    dataset: str,
    mode: str,
    requested_mode: str,
    reason: str | None,
    info: Any,
    counts: Any,
    start: datetime | None,
    end: datetime | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The XCom of a typed load (JSON values only).

    ``start``/``end``: the range read (after a lookback), ``None`` when unbounded.
    """
    return {
        "dataset": dataset,
        "mode": mode,
        "requested_mode": requested_mode,
        "mode_reason": reason,
        "load_id": info.load_id,
        "start": api_time(to_utc(start, "start")) if start is not None else None,
        "end": api_time(to_utc(end, "end")) if end is not None else None,
        "model_version": info.model_version,
        "rows_read": counts.rows_read,
        "pages": counts.pages,
        "rows_written": counts.rows_written,
        "rows_unchanged": counts.rows_unchanged,
        "rows_marked_deleted": counts.rows_marked_deleted,
        "by_table": {name: dict(values) for name, values in counts.by_table.items()},
        **(extra or {}),
    }


def whole_dataset_bounds(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """``(start, end)`` with an open side replaced by the earliest or the latest time the API writes.

    What the export operator logs and returns as the range of a whole-dataset reconcile; the
    export itself finds the dataset's own bounds
    (:class:`~airflow_provider_cm.client.window_export.WindowExport` with open sides).
    """
    return start or EARLIEST, end or LATEST


def parquet_file_name(start: datetime | None, end: datetime | None, run_end: Any = None) -> str:
    """The ``<name>`` of a load's Parquet files: the window, or ``snapshot_<time>`` for a whole-dataset reconcile.

    A lookback's files are named after the run's window (not the days re-read), so each run
    writes its own files and a rerun replaces them. A snapshot is named after the run's data
    interval end (``run_end``; a rerun replaces it), else the time it was taken.
    """
    from airflow_provider_cm.pipelines.warehouse.parquet import window_name

    if start is None or end is None:
        moment = to_utc(run_end, "data interval end") if run_end is not None else datetime.now(timezone.utc)
        return f"snapshot_{moment.strftime('%Y%m%dT%H%M%SZ')}"
    return window_name(start, end)


def context_value(context: Mapping[str, Any], name: str) -> str | None:
    """The run's ``dag_id`` or ``run_id`` from the task context, if it has one (for the ``loads`` row)."""
    value = context.get(name)
    if value is None and name == "dag_id" and context.get("dag") is not None:
        value = getattr(context["dag"], "dag_id", None)
    if value is None and context.get("ti") is not None:
        value = getattr(context["ti"], name, None)
    return str(value) if value is not None else None
