"""The export of a time window of a dataset: one continuation chain, or time slices side by side.

Calls ``POST /api/v1/datasets/<project>/<name>/export``
(https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/export-a-dataset)
through :meth:`~airflow_provider_cm.hooks.communications_mining.CommunicationsMiningHook.export_page`.
The route's ``to`` is inclusive; the comments exactly at the window's end are dropped
(:func:`~airflow_provider_cm.client.windows.before_end`), so consecutive windows hold each comment once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from airflow_provider_cm.api.times import api_time
from airflow_provider_cm.client.concurrency import is_throttling
from airflow_provider_cm.client.export_slices import SlicedExport, check_concurrency
from airflow_provider_cm.client.pacing import RatePacer
from airflow_provider_cm.client.windows import before_end
from airflow_provider_cm.hooks.communications_mining import (
    MAX_EXPORT_LIMIT,
    CommunicationsMiningHook,
    check_continuation,
)

T = TypeVar("T")
Page = list[dict[str, Any]]


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
    (:class:`~airflow_provider_cm.client.pacing.RatePacer`).
    Memory holds about one page per slice in flight; pages fetched ahead of the consumer wait
    in temporary files (deleted as they are read, and when the iteration stops).

    :param hook: the hook whose connection is used.
    :param dataset: ``"project/dataset"``.
    :param start: window start, inclusive (timezone-aware, or UTC).
    :param end: window end, exclusive.
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
        hook: CommunicationsMiningHook,
        dataset: str,
        start: datetime,
        end: datetime,
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

    def __iter__(self) -> Iterator[T]:
        if self.concurrency == 1:
            yield from self._serial()
        else:
            yield from self._sliced()

    def _serial(self) -> Iterator[T]:
        end_key = api_time(self.end)
        pages = self.hook.iter_export_pages(
            self.dataset,
            start=api_time(self.start),
            end=end_key,
            order_by=self.order_by,
            source_ids=self.source_ids,
            limit=self.page_size,
        )
        for page in pages:
            yield self.transform(before_end(page, self.end, self.order_by, end_key))

    def _sliced(self) -> Iterator[T]:
        try:
            yield from SlicedExport(
                self._fetch,
                self._check,
                self.start,
                self.end,
                order_by=self.order_by,
                page_size=self.page_size,
                concurrency=self.concurrency,
                transform=self.transform,
                log=self.hook.log,
            )
        finally:
            if self.pacer.report().refusals:
                self.hook.log.info("Export slices: %s", self.pacer.report().text())

    def _refused(self, error: BaseException) -> None:
        if is_throttling(error):
            self.pacer.refused(getattr(error, "retry_after", None))

    def _fetch(self, low: datetime, high: datetime, continuation: str | None) -> dict[str, Any]:
        """One page of one slice, paced (called from the slices' threads)."""
        self.pacer.wait()
        page = self.hook.export_page(
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
