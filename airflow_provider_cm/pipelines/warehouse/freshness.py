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

**Reading.** :func:`export_rows` reads the range through the export operator's own
:class:`~airflow_provider_cm.client.window_export.WindowExport` (time slices side by side,
``export_concurrency`` at once, paced after a refusal) and yields each page's rows in the order of
a serial export (time order, ties as the route orders them). ``predict-comments`` runs in the
slice's worker, right after its page, so its round trip overlaps the other slices' too. A
reconcile without bounds reads every comment whatever its timestamp (the export's probes find the
dataset's earliest comment and any in the far future).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_cm.api.labels import label_name
from airflow_provider_cm.api.limits import MAX_EXPORT_LIMIT
from airflow_provider_cm.client.export_slices import DEFAULT_EXPORT_CONCURRENCY, check_concurrency
from airflow_provider_cm.client.window_export import WindowExport
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


def resolve_version(hook: Any, dataset: str, model_version: int | str | None) -> int | None:
    """A pinned version number from a number, a numeric string or a tag (``live``, ``staging``).

    :raises CommunicationsMiningTagError: if the tag cannot be resolved (the hook's reason).
    """
    if model_version is None or isinstance(model_version, int):
        return model_version
    if model_version.isdigit():
        return int(model_version)
    return int(hook.resolve_model_tag(dataset, model_version))


class RowExport(Iterator[CommentRows]):
    """The rows of each page a load reads, in time order; made by :func:`export_rows`.

    The model version (a tag resolved once) and the range are known as soon as it is made,
    before anything is read: :attr:`model_version`, :attr:`range`, :attr:`load_id`;
    :attr:`pages` and :attr:`comments` count what was yielded so far. Iterate it once;
    :meth:`close` (or the end of the iteration) stops the slices' threads.
    """

    def __init__(
        self,
        hook: Any,
        dataset: str,
        *,
        mode: str = "window",
        start: datetime | None = None,
        end: datetime | None = None,
        lookback_days: int = 0,
        model_version: int | str | None = None,
        page_size: int = MAX_EXPORT_LIMIT,
        export_concurrency: int = DEFAULT_EXPORT_CONCURRENCY,
        prediction_threshold: float = DEFAULT_PREDICTION_THRESHOLD,
        load_id: str | None = None,
        source_ids: Sequence[str] | None = None,
        build_rows: bool = True,
    ) -> None:
        if not 1 <= page_size <= MAX_EXPORT_LIMIT:
            raise ValueError(f"page_size must be between 1 and {MAX_EXPORT_LIMIT}, got {page_size}")
        self.concurrency = check_concurrency(export_concurrency)
        self.range = export_range(mode, start, end, lookback_days=lookback_days)
        self.hook = hook
        self.dataset = dataset
        self.mode = mode
        self.page_size = page_size
        self.threshold = prediction_threshold
        self.source_ids = list(source_ids) if source_ids else None
        self.build_rows = build_rows
        self.model_version = resolve_version(hook, dataset, model_version)
        self.load_id = load_id or uuid.uuid4().hex
        self.pages = 0
        self.comments = 0
        self._rows: Iterator[CommentRows] | None = None

    def load_info(
        self, *, dag_id: str | None = None, run_id: str | None = None, task_id: str | None = None
    ) -> LoadInfo:
        """What the ``loads`` row of this export says (its id, mode, range and model version)."""
        return LoadInfo(
            load_id=self.load_id,
            dataset=self.dataset,
            mode=self.mode,
            dag_id=dag_id,
            run_id=run_id,
            task_id=task_id,
            window_start=self.range.start,
            window_end=self.range.end,
            model_version=self.model_version,
        )

    def __iter__(self) -> RowExport:
        return self

    def __next__(self) -> CommentRows:
        if self._rows is None:
            self._rows = self._read()
        rows = next(self._rows)
        self.pages += 1
        self.comments += len(rows.uids)
        return rows

    def close(self) -> None:
        """Stop reading: the slices' threads stop and their temporary files are deleted."""
        if self._rows is not None and hasattr(self._rows, "close"):
            self._rows.close()

    # -- reading ----------------------------------------------------------------------------------

    def _page_rows(self, page: list[dict[str, Any]]) -> CommentRows:
        """A page's rows, with its predictions from ``predict-comments`` if a version is pinned.

        Runs in the slice's worker thread (so the prediction's round trip overlaps the others).
        """
        extracted_at = datetime.now(timezone.utc)
        predictions = None
        if self.model_version is not None and page:
            uids = [item["comment"]["uid"] for item in page]
            answer = self.hook.predict_comments(self.dataset, self.model_version, uids, threshold=self.threshold)
            predictions = {
                p["uid"]: {"labels": [{**label, "name": label_name(label["name"])} for label in p.get("labels") or []]}
                for p in answer
            }
        rows = page_rows(
            page,
            load_id=self.load_id,
            extracted_at=extracted_at,
            model_version=self.model_version,
            predictions_by_uid=predictions,
        )
        if self.build_rows:
            rows.tables  # noqa: B018 (built here, in the worker)
        return rows

    def _read(self) -> Iterator[CommentRows]:
        yield from WindowExport(
            self.hook,
            self.dataset,
            self.range.start,
            self.range.end,
            order_by="timestamp",
            source_ids=self.source_ids,
            page_size=self.page_size,
            concurrency=self.concurrency,
            transform=self._page_rows,
        )


def export_rows(
    hook: Any,
    dataset: str,
    *,
    mode: str = "window",
    start: datetime | None = None,
    end: datetime | None = None,
    lookback_days: int = 0,
    model_version: int | str | None = None,
    page_size: int = MAX_EXPORT_LIMIT,
    export_concurrency: int = DEFAULT_EXPORT_CONCURRENCY,
    prediction_threshold: float = DEFAULT_PREDICTION_THRESHOLD,
    load_id: str | None = None,
    source_ids: Sequence[str] | None = None,
    build_rows: bool = True,
) -> RowExport:
    """The rows of every comment a load in ``mode`` reads, one :class:`CommentRows` per page, in time order.

    Reads ``POST /api/v1/datasets/<project>/<name>/export``
    (https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/export-a-dataset)
    in time slices, ``export_concurrency`` at once, and with ``model_version``
    ``POST .../labellers/<version>/predict-comments`` for each page, in the slice's worker. The
    version (a tag resolved once through ``GET .../model-tags``) is resolved here, before
    anything is read; the result's :attr:`~RowExport.model_version` names it.

    :param hook: a ``CommunicationsMiningHook`` (``export_page``, ``iter_export_pages``,
        ``predict_comments``, ``resolve_model_tag``).
    :param mode: ``window``, ``lookback`` or ``reconcile`` (see :func:`export_range`).
    :param start: window start (aware), inclusive.
    :param end: window end (aware), exclusive.
    :param lookback_days: with ``lookback``, days re-read before ``start``.
    :param model_version: a pinned version number or tag; ``None``: the export's own predictions.
    :param page_size: comments per export request, 1 to 256.
    :param export_concurrency: slices exported at once, 1 (one serial chain) to 64.
    :param prediction_threshold: the lowest probability loaded from ``predict-comments``.
    :param load_id: the id stamped on every row; a new one if not given.
    :param source_ids: only comments of these source ids (the export's ``source_ids`` filter).
    :param build_rows: build each page's rows in the slice's worker; ``False`` leaves them to be
        built when first read (a SQL load builds only the comments whose hash it has not stored).
    :return: an iterator of each page's rows (pages may be shorter than ``page_size``).
    :raises ValueError: for a bad mode, window, page size or concurrency (at once).
    :raises CommunicationsMiningTagError: if the tag cannot be resolved (at once).
    :raises CommunicationsMiningError: while iterating, if a request fails after retries (with
        slices, its message names the slice).
    """
    return RowExport(
        hook,
        dataset,
        mode=mode,
        start=start,
        end=end,
        lookback_days=lookback_days,
        model_version=model_version,
        page_size=page_size,
        export_concurrency=export_concurrency,
        prediction_threshold=prediction_threshold,
        load_id=load_id,
        source_ids=source_ids,
        build_rows=build_rows,
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
    page_size: int = MAX_EXPORT_LIMIT,
    prediction_threshold: float = DEFAULT_PREDICTION_THRESHOLD,
    export_concurrency: int = DEFAULT_EXPORT_CONCURRENCY,
    source_ids: Sequence[str] | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
) -> tuple[LoadInfo, LoadCounts]:
    """Export ``dataset`` in ``mode`` into ``warehouse`` (one transaction; see :class:`SqlWarehouse`).

    The pages are read as :func:`export_rows` reads them (time slices side by side) and merged
    as they come. A reconcile with ``source_ids`` marks deleted only comments of those sources.

    :param hook: a ``CommunicationsMiningHook`` (``export_page``, ``iter_export_pages``,
        ``predict_comments``, ``resolve_model_tag``).
    :param start: window start (aware), inclusive; with ``reconcile``, the start of the range reconciled.
    :param end: window end, exclusive.
    :param lookback_days: with ``lookback``, how many days before ``start`` are re-read.
    :param model_version: a pinned version number or tag: predictions from ``predict-comments``
        on it; ``None``: the export's latest predictions, with a null version.
    :param page_size: comments per export page, 1 to 256.
    :param prediction_threshold: the lowest probability loaded from ``predict-comments``.
    :param export_concurrency: export slices read at once, 1 to 64.
    :param source_ids: only comments of these sources are read (and, reconciling, marked deleted).
    :return: the ``loads`` row's description and the counts written to it.
    :raises ValueError: for a bad mode, window, page size or concurrency (before anything is read).
    :raises CommunicationsMiningTagError: if the tag cannot be resolved (before anything is read).
    :raises WarehouseSchemaError: if the tables cannot hold the model (before anything is written).
    """
    rows = export_rows(
        hook,
        dataset,
        mode=mode,
        start=start,
        end=end,
        lookback_days=lookback_days,
        model_version=model_version,
        page_size=page_size,
        export_concurrency=export_concurrency,
        prediction_threshold=prediction_threshold,
        source_ids=source_ids,
        build_rows=False,
    )
    info = rows.load_info(dag_id=dag_id, run_id=run_id, task_id=task_id)
    span = rows.range
    try:
        counts = warehouse.load(
            rows,
            info,
            reconcile=span.reconcile,
            reconcile_range=(span.start, span.end),
            reconcile_sources=rows.source_ids,
        )
    finally:
        rows.close()
    return info, counts
