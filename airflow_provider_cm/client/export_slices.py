"""A dataset export split into time slices fetched concurrently, yielded in the order of a serial export.

One ``continuation`` chain fetches one page at a time, so a serial export of ``P`` pages takes at
least ``P`` round trips. :class:`SlicedExport` cuts the window ``[start, end)`` into consecutive
half-open time slices, each its own chain, and runs up to ``concurrency`` of them at once.

**Order.** The export route lists comments in ``order_by`` time order (§3.6.1 of the API
reference; the emulator breaks ties by ``uid``; the platform's continuation token, a time and a
hash, points the same way). A slice edge is one instant: every comment at that instant belongs to
the slice that starts there (``from`` is inclusive; the slice that ends there drops it, as the
window's own end is dropped). Comments sharing a time therefore never straddle two slices, each
slice lists its comments in the route's own order, and the slices concatenated in time order give
exactly the sequence one chain over the whole window gives, ties included, whatever the route's
tie order is. The consumer is handed slice after slice in time order, never in completion order.

**Balance.** The export starts as one slice. Its first page tells how dense the window is; from
then on a worker with nothing to do halves the remaining time of the running slice with the most
comments still expected (its own density, or the window's until it has one), and takes the later
half, until no slice has more than one page left. Comments clustered in time are thus still spread
over the workers (finding a cluster in a long empty stretch costs about one request per halving,
made by workers that would otherwise wait), and a window that fits one page costs one request, as
a serial export does. Comments sharing one instant cannot be split: they stay one chain.

**Cuts and a closed end.** A caller that knows where the comments are may give ``cuts``: the
window starts as those slices instead of one (a reconcile of a whole dataset cuts at "now", so
the far future, probed empty or nearly so, stays one slice and does not skew the density of
the rest). With ``closed=True`` the window's end is inclusive: the last slice keeps the comments
exactly at ``end`` (the latest time the API writes, ``9999-12-31T23:59:59.999999Z``, has no
later instant to stop before).

**Memory.** Each slice appends its pages to its own temporary file, pickled, after the caller's
``transform`` if it gave one (run in the worker: an export renders its lines there, so what waits
on disk is text); the consumer reads a finished slice back one page at a time and deletes its
file. Memory holds at most one page per worker plus the page being consumed; the temporary files
hold, at most, the slices fetched but not consumed yet (up to the whole export).

**Failure.** The first slice that fails (after the transport's retries) stops the others: no new
requests are sent, the temporary files are deleted, and the consumer gets the error with the slice
named, e.g. ``... (export slice [2026-10-01T06:00:00.000000Z, 2026-10-01T09:00:00.000000Z))``.
"""

from __future__ import annotations

import copy
import logging
import pickle
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

from airflow_provider_cm.api.times import api_time
from airflow_provider_cm.client.user_times import to_utc
from airflow_provider_cm.client.windows import before_end, comment_time
from airflow_provider_cm.exceptions import CommunicationsMiningError, CommunicationsMiningProtocolError

#: Slices exported at once by default.
DEFAULT_EXPORT_CONCURRENCY = 8
#: Most slices exported at once.
MAX_EXPORT_CONCURRENCY = 64
#: Seconds to wait for workers to finish their request in flight once the export stopped.
STOP_WAIT = 10.0

_MICROSECOND = timedelta(microseconds=1)
T = TypeVar("T")

#: ``fetch(start, to, continuation)``: one page of the export route for ``from=start``,
#: ``to=to`` (inclusive), as ``{"comments": [...], "continuation": str | None}``.
FetchPage = Callable[[datetime, datetime, "str | None"], dict[str, Any]]
#: ``check(previous, following)``: raises if a continuation did not advance.
CheckContinuation = Callable[["str | None", "str | None"], None]


def check_concurrency(concurrency: int) -> int:
    """``concurrency`` itself if it is a number of slices that may be exported at once.

    :raises ValueError: unless it is an integer from 1 to :data:`MAX_EXPORT_CONCURRENCY`.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise ValueError(f"export concurrency must be an integer, got {concurrency!r}")
    if not 1 <= concurrency <= MAX_EXPORT_CONCURRENCY:
        raise ValueError(f"export concurrency must be between 1 and {MAX_EXPORT_CONCURRENCY}, got {concurrency}")
    return concurrency


@dataclass(eq=False)
class ExportSlice:
    """One slice ``[start, end)`` of the window and how far its chain got.

    ``end`` only ever moves earlier, when the slice is split: never before ``last``, the time of
    the last comment kept, so what the slice has kept stays its own.
    """

    start: datetime
    end: datetime
    #: The API's inclusive ``to`` of this slice's requests: its end when it started.
    to: datetime
    comments: int = 0
    last: datetime | None = None
    #: Comments per microsecond over the last page kept.
    recent: float = 0.0
    #: No more requests: the chain ended or passed ``end``.
    fetched: bool = False
    #: Fetched and its temporary file closed: ready to be read.
    done: bool = False
    spool: Path | None = None

    def __str__(self) -> str:
        return f"[{api_time(self.start)}, {api_time(self.end)})"

    def covered(self) -> timedelta:
        """The time the slice has fetched through."""
        if self.fetched:
            return self.end - self.start
        return (self.last - self.start) if self.last is not None else timedelta(0)

    def rest(self) -> timedelta:
        """The time still to fetch: after the last comment kept (or the start) up to ``end``."""
        return self.end - (self.last or self.start)

    def expected(self, window_density: float | None) -> float | None:
        """Comments still expected after ``last``, from the slice's density once it has comments
        (the higher of its whole and its last page's: comments cluster), else from the window's."""
        density: float | None = window_density
        if self.comments:
            covered = self.covered() / _MICROSECOND
            density = max(self.comments / covered if covered > 0 else float("inf"), self.recent)
        if density is None:
            return None
        rest = self.rest() / _MICROSECOND
        return density * rest if density != float("inf") else (float("inf") if rest > 0 else 0.0)


class SlicedExport(Generic[T]):
    """The pages of ``[start, end)`` from up to ``concurrency`` concurrent slices, in serial order.

    Iterate it once: it yields ``transform(page)`` for each non-empty list of exported comments,
    and runs its worker threads only while it is being iterated; closing the iterator early
    stops them.

    :param fetch: one page of the route (see :data:`FetchPage`), bound to the dataset, ``order_by``,
        ``source_ids`` and page size.
    :param check_continuation: raises when a continuation did not advance.
    :param start: window start, inclusive (UTC).
    :param end: window end, exclusive (UTC).
    :param order_by: ``"timestamp"`` or ``"created_at"``: the time the window and the slices cut.
    :param page_size: comments per request: a slice is split only while it has more than a page left.
    :param concurrency: slices exported at once, 1 to :data:`MAX_EXPORT_CONCURRENCY`.
    :param transform: what to make of each page, called in the worker that fetched it (from
        several threads at once); what it returns must pickle.
    :param log: where progress and stops are logged.
    :param cuts: times inside ``(start, end)`` where the window is cut into its first slices.
    :param closed: ``end`` is inclusive: the comments exactly at ``end`` are kept.
    """

    def __init__(
        self,
        fetch: FetchPage,
        check_continuation: CheckContinuation,
        start: datetime,
        end: datetime,
        *,
        order_by: str,
        page_size: int,
        concurrency: int,
        transform: Callable[[list[dict[str, Any]]], T],
        log: logging.Logger | Any,
        cuts: Sequence[datetime] = (),
        closed: bool = False,
    ) -> None:
        if start >= end:
            raise ValueError(f"the export window is empty: [{api_time(start)}, {api_time(end)})")
        self._fetch = fetch
        self._transform = transform
        self._check_continuation = check_continuation
        self.order_by = order_by
        self.page_size = page_size
        self.concurrency = check_concurrency(concurrency)
        self.log = log
        self.end = end
        self.closed = closed
        edges = [start, *sorted({cut for cut in cuts if start < cut < end}), end]
        #: Every slice so far, in time order (a split inserts the later half after its slice).
        self.slices: list[ExportSlice] = [ExportSlice(low, high, high) for low, high in pairwise(edges)]
        self._waiting: list[ExportSlice] = list(self.slices)
        self._condition = threading.Condition()
        self._failure: tuple[ExportSlice, BaseException] | None = None
        self._stopped = False
        self._directory: Path | None = None

    # -- the consumer -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[T]:
        self._directory = Path(tempfile.mkdtemp(prefix="cm-export-"))
        workers = [
            threading.Thread(target=self._work, name=f"cm-export-{i}", daemon=True) for i in range(self.concurrency)
        ]
        for worker in workers:
            worker.start()
        try:
            index = 0
            while (piece := self._next_done(index)) is not None:
                yield from self._read(piece)
                index += 1
        finally:
            self._stop(workers)

    def _next_done(self, index: int) -> ExportSlice | None:
        """The ``index``-th slice once it is done, ``None`` after the last; raises a slice's failure."""
        with self._condition:
            while True:
                if self._failure is not None:
                    piece, error = self._failure
                    raise naming_slice(error, piece) from error
                if index >= len(self.slices):
                    return None  # a slice is only split while running, so no slice can follow
                if self.slices[index].done:
                    return self.slices[index]
                self._condition.wait()

    def _read(self, piece: ExportSlice) -> Iterator[T]:
        if piece.spool is None:
            return
        with open(piece.spool, "rb") as spool:
            while True:
                try:
                    page = pickle.load(spool)
                except EOFError:
                    break
                yield page
        piece.spool.unlink()

    def _stop(self, workers: list[threading.Thread]) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
        deadline = time.monotonic() + STOP_WAIT
        in_flight = 0
        for worker in workers:
            worker.join(max(deadline - time.monotonic(), 0.0))
            in_flight += worker.is_alive()
        if in_flight:
            self.log.warning(
                "%d export worker(s) still wait for a request after %.0f s; each stops when its request ends",
                in_flight,
                STOP_WAIT,
            )
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    # -- the workers --------------------------------------------------------------------------------

    def _work(self) -> None:
        while (piece := self._next_slice()) is not None:
            try:
                self._export(piece)
            except BaseException as error:  # handed to the consumer, which raises it
                with self._condition:
                    if self._failure is None and not self._stopped:
                        self._failure = (piece, error)
                    self._stopped = True
                    self._condition.notify_all()
                return
            with self._condition:
                piece.done = True
                self._condition.notify_all()

    def _next_slice(self) -> ExportSlice | None:
        """A slice to export: one waiting, else the later half of a running one; ``None`` when all is fetched."""
        with self._condition:
            while not self._stopped:
                if self._waiting:
                    return self._waiting.pop(0)
                running = [piece for piece in self.slices if not piece.fetched]
                if not running:
                    return None
                later = self._split(running)
                if later is not None:
                    return later
                self._condition.wait()
            return None

    def _split(self, running: list[ExportSlice]) -> ExportSlice | None:
        """Halve the rest of the running slice with the most comments expected, if more than a page.

        Called with the lock held. The earlier half keeps the slice's chain; the later half is a
        new slice inserted right after it.
        """
        density = self._window_density()
        best: tuple[float, ExportSlice] | None = None
        for piece in running:
            expected = piece.expected(density)
            if expected is not None and expected > self.page_size and piece.rest() >= 2 * _MICROSECOND:
                if best is None or expected > best[0]:
                    best = (expected, piece)
        if best is None:
            return None
        piece = best[1]
        low = piece.last or piece.start
        middle = low + (piece.rest() // 2 // _MICROSECOND) * _MICROSECOND
        later = ExportSlice(middle, piece.end, piece.end)
        piece.end = middle
        self.slices.insert(self.slices.index(piece) + 1, later)
        return later

    def _window_density(self) -> float | None:
        """Comments per microsecond over what the slices fetched; ``None`` before any page."""
        comments = sum(piece.comments for piece in self.slices)
        covered = sum((piece.covered() for piece in self.slices), timedelta(0)) / _MICROSECOND
        if covered > 0:
            return comments / covered
        return float("inf") if comments else None

    def _export(self, piece: ExportSlice) -> None:
        """Follow the slice's chain to its end (or past ``end``), appending its pages to its file."""
        spool: BinaryIO | None = None
        continuation: str | None = None
        try:
            while True:
                with self._condition:
                    if self._stopped:
                        return
                page = self._fetch(piece.start, piece.to, continuation)
                following = page.get("continuation")
                self._check_continuation(continuation, following)
                kept = self._keep(piece, page["comments"], following)
                if kept:
                    if spool is None:
                        piece.spool = self._spool_path(piece)
                        spool = open(piece.spool, "wb")  # closed below
                    pickle.dump(self._transform(kept), spool, protocol=pickle.HIGHEST_PROTOCOL)
                if piece.fetched:
                    return
                continuation = following
        finally:
            if spool is not None:
                spool.close()

    def _keep(self, piece: ExportSlice, comments: list[dict[str, Any]], following: str | None) -> list[dict[str, Any]]:
        """The page's comments before the slice's end (read under the lock: a split may move it)."""
        with self._condition:
            if self.closed and piece.end == self.end:  # the route's ``to`` is the window's closed end
                kept = list(comments)
            else:
                kept = before_end(comments, piece.end, self.order_by)
            if kept:
                first, last = (comment_time(kept[i], self.order_by) for i in (0, -1))
                if first and last:
                    piece.last = to_utc(last, "comment time")
                    span = (piece.last - to_utc(first, "comment time")) / _MICROSECOND
                    piece.recent = len(kept) / max(span, 1.0)
                piece.comments += len(kept)
            # In time order, a comment at or after the end means the rest of the chain is too.
            piece.fetched = not following or len(kept) < len(comments)
            self._condition.notify_all()
            return kept

    def _spool_path(self, piece: ExportSlice) -> Path:
        assert self._directory is not None
        return self._directory / f"slice-{id(piece)}.pickle"


def naming_slice(error: BaseException, piece: ExportSlice) -> BaseException:
    """``error`` again, of the same class, its message naming the slice that failed.

    Errors of the provider keep their class (and so what catches them); anything else (a full
    disk under the temporary files) becomes a :class:`CommunicationsMiningError`.
    """
    where = f"export slice {piece}"
    if isinstance(error, CommunicationsMiningError):
        named = copy.copy(error)
        named.args = (f"{error} ({where})",)
        return named
    return CommunicationsMiningError(f"{where} failed: {type(error).__name__}: {error}")


def check_continuation(dataset: str, sent: str | None, received: str) -> None:
    """Raise if the export route answered a page with the continuation it was sent (it would loop).

    :raises CommunicationsMiningProtocolError: naming the dataset's export route.
    """
    if received == sent:
        raise CommunicationsMiningProtocolError(
            200, f"POST /api/v1/datasets/{dataset}/export", "continuation did not advance"
        )
