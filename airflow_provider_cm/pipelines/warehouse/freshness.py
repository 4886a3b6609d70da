"""Loading a dataset into the warehouse in a freshness mode, with predictions of a known model version.

The API cannot list the comments changed since a time, so what a load catches depends on what it
re-reads (see ``docs/warehouse.md``):

* ``window``: the comments whose ``timestamp`` lies in ``[start, end)``: each comment as first seen;
* ``lookback``: ``[start - lookback_days, end)``: labels and predictions changed within that many
  days arrive;
* ``reconcile``: the whole dataset (or ``[start, end)`` if both are given), merged by uid, and every
  comment not seen any more (in that range) marked deleted.

With ``model_version`` (a pinned number, or a tag such as ``live`` resolved once per load through
``model-tags``), each page's predictions come from ``predict-comments`` on that version and every
predicted row names it; without it, the export's own predictions are loaded with a null version.
The hook is passed in; nothing here imports Airflow.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_cm.api.labels import label_name
from airflow_provider_cm.pipelines.warehouse.rows import CommentRows, page_rows
from airflow_provider_cm.pipelines.warehouse.sql_writer import LoadCounts, LoadInfo, SqlWarehouse

MODES = ("window", "lookback", "reconcile")
#: Predicted labels at or above this probability are loaded from ``predict-comments``.
DEFAULT_PREDICTION_THRESHOLD = 0.01


@dataclass(frozen=True)
class ExportRange:
    """What a load exports (``start`` inclusive, ``end`` exclusive; ``None``: unbounded) and whether it reconciles."""

    start: datetime | None
    end: datetime | None
    reconcile: bool


def export_range(mode: str, start: datetime | None, end: datetime | None, *, lookback_days: int = 0) -> ExportRange:
    """The range a mode exports.

    :raises ValueError: for an unknown mode, a window or lookback without both bounds, a negative
        ``lookback_days``, or ``start`` not before ``end``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if lookback_days < 0:
        raise ValueError(f"lookback_days must be 0 or more, got {lookback_days}")
    if start is not None and end is not None and start >= end:
        raise ValueError(f"start {start.isoformat()} must be before end {end.isoformat()}")
    if mode == "reconcile":
        return ExportRange(start, end, True)
    if start is None or end is None:
        raise ValueError(f"mode {mode!r} needs a window: give start and end")
    if mode == "lookback":
        return ExportRange(start - timedelta(days=lookback_days), end, False)
    return ExportRange(start, end, False)


def _api_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def resolve_version(hook: Any, dataset: str, model_version: int | str | None) -> int | None:
    """A pinned version number from a number, a numeric string or a tag (``live``, ``staging``).

    :raises CommunicationsMiningTagError: if the tag cannot be resolved (the hook's reason).
    """
    if model_version is None or isinstance(model_version, int):
        return model_version
    if model_version.isdigit():
        return int(model_version)
    return int(hook.resolve_model_tag(dataset, model_version))


def _pages(
    hook: Any,
    dataset: str,
    span: ExportRange,
    *,
    load_id: str,
    version: int | None,
    page_size: int,
    threshold: float,
) -> Iterator[CommentRows]:
    bounds: dict[str, Any] = {}
    if span.start is not None:
        bounds["start"] = _api_time(span.start)
    if span.end is not None:  # the export's ``to`` is inclusive: stop one microsecond before ``end``
        bounds["end"] = _api_time(span.end - timedelta(microseconds=1))
    for page in hook.iter_export_pages(dataset, limit=page_size, **bounds):
        extracted_at = datetime.now(timezone.utc)
        predictions = None
        if version is not None:
            uids = [item["comment"]["uid"] for item in page]
            answer = hook.predict_comments(dataset, version, uids, threshold=threshold)
            predictions = {
                p["uid"]: {"labels": [{**label, "name": label_name(label["name"])} for label in p.get("labels") or []]}
                for p in answer
            }
        yield page_rows(
            page, load_id=load_id, extracted_at=extracted_at, model_version=version, predictions_by_uid=predictions
        )


def load_dataset(
    hook: Any,
    warehouse: SqlWarehouse,
    dataset: str,
    *,
    mode: str = "window",
    start: datetime | None = None,
    end: datetime | None = None,
    lookback_days: int = 0,
    model_version: int | str | None = None,
    page_size: int = 256,
    prediction_threshold: float = DEFAULT_PREDICTION_THRESHOLD,
    dag_id: str | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
) -> tuple[LoadInfo, LoadCounts]:
    """Export ``dataset`` in ``mode`` into ``warehouse`` (one transaction; see :class:`SqlWarehouse`).

    :param hook: a ``CommunicationsMiningHook`` (``iter_export_pages``, ``predict_comments``,
        ``resolve_model_tag``).
    :param start: window start (aware), inclusive; with ``reconcile``, the start of the range reconciled.
    :param end: window end, exclusive.
    :param lookback_days: with ``lookback``, how many days before ``start`` are re-read.
    :param model_version: a pinned version number or tag: predictions from ``predict-comments``
        on it; ``None``: the export's latest predictions, with a null version.
    :param page_size: comments per export page, 1 to 256.
    :param prediction_threshold: the lowest probability loaded from ``predict-comments``.
    :return: the ``loads`` row's description and the counts written to it.
    :raises ValueError: for a bad mode or window (before anything is read).
    :raises CommunicationsMiningTagError: if the tag cannot be resolved (before anything is read).
    :raises WarehouseSchemaError: if the tables cannot hold the model (before anything is written).
    """
    span = export_range(mode, start, end, lookback_days=lookback_days)
    version = resolve_version(hook, dataset, model_version)
    load_id = uuid.uuid4().hex
    info = LoadInfo(
        load_id=load_id,
        dataset=dataset,
        mode=mode,
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        window_start=span.start,
        window_end=span.end,
        model_version=version,
    )
    pages = _pages(
        hook, dataset, span, load_id=load_id, version=version, page_size=page_size, threshold=prediction_threshold
    )
    counts = warehouse.load(pages, info, reconcile=span.reconcile, reconcile_range=(span.start, span.end))
    return info, counts
