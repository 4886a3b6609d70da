"""The export of a dataset between two times: one continuation chain, or time slices side by side, paced.

Calls ``POST /api/v1/datasets/<project>/<name>/export``
(https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/export-a-dataset)
through the hook's ``export_page`` and ``iter_export_pages``. The route's ``to`` is inclusive; the
comments exactly at the window's end are dropped
(:func:`~airflow_provider_cm.client.windows.before_end`), so consecutive windows hold each
comment once.

Every export of the provider reads through :class:`WindowExport`: the export operator's files, the
SQL transfer's flat layout and the typed loads (``pipelines/warehouse/freshness.py``), so the
slices' pacing after a refusal, the continuation check and the search for a dataset's own bounds
are written once. No Airflow here: the hook is used through those two methods and its ``log``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, TypeVar

from airflow_provider_cm.api.limits import MAX_EXPORT_LIMIT
from airflow_provider_cm.api.times import api_time, parse_time
from airflow_provider_cm.client.concurrency import is_throttling
from airflow_provider_cm.client.export_slices import SlicedExport, check_concurrency, check_continuation
from airflow_provider_cm.client.pacing import RatePacer
from airflow_provider_cm.client.windows import before_end

T = TypeVar("T")
Page = list[dict[str, Any]]

#: The earliest and the latest time the API writes: an export with an open side reads up to them.
EARLIEST = datetime(1, 1, 1, tzinfo=timezone.utc)
LATEST = datetime.max.replace(tzinfo=timezone.utc)
#: Without an end, the slices reach this long after now; past it, one probe decides.
HORIZON = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)
_LOG = logging.getLogger(__name__)


def _as_is(page: Page) -> Any:
    return page


class WindowExport(Generic[T]):
    """Pages of the exported comments whose ``order_by`` time is in ``[start, end)``, in the export's order.

    Iterate over it (once) for the pages::

        for page in WindowExport(hook, "acme/support", start, end, concurrency=8):
            ...

    With ``concurrency=1`` one ``continuation`` chain runs over the window and each page is
    yielded as it comes (possibly shorter than ``page_size``, or empty, once the comments at
    ``end`` are dropped). With ``concurrency=N`` the window is cut into time slices exported
    ``N`` at a time (:class:`~airflow_provider_cm.client.export_slices.SlicedExport`); their
    pages are yielded slice after slice in time order, so the comments come in exactly the
    order, ties included, of the serial export; pages are not empty but may be shorter. The
    slices' requests are paced after a refusal (HTTP 429/503): every slice waits out its
    ``Retry-After`` and requests start below the rate the tenant was serving
    (:class:`~airflow_provider_cm.client.pacing.RatePacer`); the log says how many refusals
    the export met.
    Memory holds about one page per slice in flight; pages fetched ahead of the consumer wait
    in temporary files (deleted as they are read, and when the iteration stops).

    **Open bounds** (``start`` or ``end`` ``None``: every comment on that side, as a reconcile of
    the whole dataset reads). Sliced, one request of one comment finds the earliest comment and
    another whether any lies more than :data:`HORIZON` after now; the slices then cover
    ``[earliest, now + HORIZON)``, and the far future up to the latest time the API writes
    (inclusive) only if that probe found a comment there. The two probes run at once.

    :param hook: the hook whose connection is used (``export_page``, ``iter_export_pages``, ``log``).
    :param dataset: ``"project/dataset"``.
    :param start: window start, inclusive (timezone-aware, or UTC); ``None``: the earliest comment.
    :param end: window end, exclusive; ``None``: the latest comment, inclusive.
    :param order_by: ``"timestamp"`` or ``"created_at"``: the time the window applies to.
    :param source_ids: only comments of these source ids.
    :param page_size: comments per request, 1 to 256.
    :param concurrency: slices exported at once, 1 to 64.
    :param transform: if given, each page (a list of exported comments) is passed through it
        and its result yielded instead; with slices it runs in the worker threads, before the
        page waits on disk (so it must be thread-safe and its result must pickle): render
        output there, and what waits is the rendered text.
    :raises ValueError: for a bad argument (at once) or an empty window (when iterated).
    :raises CommunicationsMiningApiError: (or another :class:`CommunicationsMiningError`) if a
        request fails after retries; with slices, the first failure stops the others, and its
        message names the slice, ``(export slice [<from>, <to>))``.
    """

    def __init__(
        self,
        hook: Any,
        dataset: str,
        start: datetime | None,
        end: datetime | None,
        *,
        order_by: str = "timestamp",
        source_ids: Sequence[str] | None = None,
        page_size: int | None = None,
        concurrency: int = 1,
        transform: Callable[[Page], T] | None = None,
    ) -> None:
        page_size = MAX_EXPORT_LIMIT if page_size is None else page_size
        check_concurrency(concurrency)
        if not 1 <= page_size <= MAX_EXPORT_LIMIT:
            raise ValueError(f"page_size must be between 1 and {MAX_EXPORT_LIMIT}, got {page_size}")
        self.hook = hook
        self.dataset = dataset
        self.start = start
        self.end = end
        self.order_by = order_by
        self.source_ids = list(source_ids) if source_ids else None
        self.page_size = page_size
        self.concurrency = concurrency
        self.transform: Callable[[Page], T] = transform or _as_is
        self.pacer = RatePacer()
        self.log = getattr(hook, "log", _LOG)

    def __iter__(self) -> Iterator[T]:
        if self.concurrency == 1:
            yield from self._serial()
        else:
            yield from self._sliced()

    def _serial(self) -> Iterator[T]:
        bounds: dict[str, str] = {}
        if self.start is not None:
            bounds["start"] = api_time(self.start)
        if self.end is not None:
            bounds["end"] = api_time(self.end)
        pages = self.hook.iter_export_pages(
            self.dataset, order_by=self.order_by, source_ids=self.source_ids, limit=self.page_size, **bounds
        )
        for page in pages:
            if self.end is not None:
                page = before_end(page, self.end, self.order_by, bounds["end"])
            yield self.transform(page)

    def _first_after(self, low: datetime, high: datetime) -> datetime | None:
        """The ``order_by`` time of the first comment in ``[low, high]`` (one comment), ``None`` if none."""
        pages = self.hook.iter_export_pages(
            self.dataset,
            start=api_time(low),
            end=api_time(high),
            order_by=self.order_by,
            source_ids=self.source_ids,
            limit=1,
        )
        try:
            for page in pages:
                return parse_time(page[0]["comment"][self.order_by], self.order_by)
            return None
        finally:
            pages.close()

    def bounds(self) -> tuple[datetime, datetime, list[datetime], bool] | None:
        """``(start, end, cuts, closed)`` of the slices; ``None`` if an open window holds no comment.

        Bounds given are used as they are (no request). Without a start, the earliest comment's
        time; without an end, ``now + HORIZON`` if no comment lies after it, else the latest time
        the API writes (inclusive: ``closed``), cut at ``now + HORIZON``.
        """
        start, end = self.start, self.end
        if start is not None and end is not None:
            return start, end, [], False
        horizon = datetime.now(timezone.utc) + HORIZON
        with ThreadPoolExecutor(2, thread_name_prefix="cm-export-probe") as probes:
            first = (
                probes.submit(self._first_after, EARLIEST, (end - _MICROSECOND) if end else LATEST)
                if start is None
                else None
            )
            later = probes.submit(self._first_after, horizon, LATEST) if end is None else None
            if first is not None:
                start = first.result()
                if start is None:
                    return None
            assert start is not None
            if end is not None:
                return start, end, [], False
            assert later is not None
            if later.result() is None and start < horizon:
                return start, horizon, [], False
            return start, LATEST, [horizon], True

    def _sliced(self) -> Iterator[T]:
        found = self.bounds()
        if found is None:
            return
        start, end, cuts, closed = found
        try:
            yield from SlicedExport(
                self._fetch,
                self._check,
                start,
                end,
                order_by=self.order_by,
                page_size=self.page_size,
                concurrency=self.concurrency,
                transform=self.transform,
                log=self.log,
                cuts=cuts,
                closed=closed,
            )
        finally:
            if self.pacer.report().refusals:
                self.log.info("Export slices: %s", self.pacer.report().text())

    def _refused(self, error: BaseException) -> None:
        if is_throttling(error):
            self.pacer.refused(getattr(error, "retry_after", None))

    def _fetch(self, low: datetime, high: datetime, continuation: str | None) -> dict[str, Any]:
        """One page of one slice, paced (called from the slices' threads)."""
        self.pacer.wait()
        page: dict[str, Any] = self.hook.export_page(
            self.dataset,
            start=api_time(low),
            end=api_time(high),
            order_by=self.order_by,
            source_ids=self.source_ids,
            limit=self.page_size,
            continuation=continuation,
            observer=self._refused,
        )
        self.pacer.served()
        return page

    def _check(self, previous: str | None, following: str | None) -> None:
        if following:
            check_continuation(self.dataset, previous, following)
