"""The one batch-sync loop: records upserted in batches, a refused batch halved down to the records
the API refuses, every outcome counted.

Used by the comment upload (``POST /api/v1/sources/<project>/<source>/sync``,
https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/sync-comments;
:class:`~airflow_provider_cm.pipelines.comments.engine.UploadEngine`) and the e-mail upload
(``POST /api/v1/sources/<project>/<source>/sync-raw-emails``;
:class:`~airflow_provider_cm.pipelines.emails.upload.EmailUploadEngine`). It needs no Airflow and no hook:
the caller passes the request as a callable (:data:`Send`) that takes the batch's encoded records.

For each batch, :class:`BatchSync`:

1. **batches** the records by count (``batch_size``) and by bytes (``max_batch_bytes``: a batch is
   sent as soon as its records' encoded size, plus one byte each, reaches it), ``concurrency``
   requests in flight; with ``overlap``, that many more batches may still be in ``after_sync``
   (the comment upload's label writes) while the next ones are sent, so the requests of one never
   wait for the other's; at most ``concurrency + overlap + 1`` batches are held in memory;
2. **halves a refused batch**: when the API refuses a request as a whole (HTTP 400,
   :class:`~airflow_provider_cm.exceptions.CommunicationsMiningBadRequestError`), each half is sent
   again, down to single records; a record refused alone goes to ``on_refused`` (the caller's
   dead-letter line, :class:`DeadLetters`) and counts as ``rejected``, and every other record is
   stored;
3. **accounts for a lost answer**: when a request fails after it may have reached the server (a
   connection dropped after sending, a truncated answer, HTTP 500/502/504:
   :func:`~airflow_provider_cm.client.retry.may_have_taken_effect`), what is known stays exact
   (the batches answered before) and the batch whose answer was lost is counted as possibly
   billed (:meth:`~airflow_provider_cm.pipelines.comments.upload_tally.UploadTally.add_lost_sync`: billed
   comments become a range); the error propagates;
4. runs the caller's ``after_sync`` on the records stored, as soon as their request succeeded and
   never for a record it did not store (the comment upload writes their annotations there), then
   adds the batch's counts to the run's in one step and logs the **progress line**
   ``Progress: <done> of <total> <noun> (<percent>%): <summary>``, so a line
   never mixes a batch still in flight with those done.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, Generic, Protocol, TypeVar

from airflow_provider_cm.client.concurrency import run_bounded
from airflow_provider_cm.client.retry import may_have_taken_effect
from airflow_provider_cm.exceptions import CommunicationsMiningApiError, CommunicationsMiningBadRequestError
from airflow_provider_cm.pipelines.comments.upload_tally import UploadTally


class SyncRecord(Protocol):
    """What the loop needs of a record: its comment id and its encoded body (UTF-8 JSON)."""

    @property
    def id(self) -> str: ...

    @property
    def payload(self) -> bytes: ...


R = TypeVar("R", bound=SyncRecord)

#: The request: the batch's encoded records in, the answer ``{"new", "updated", "unchanged",
#: "maybe_committed_earlier"?}`` out (e.g. ``lambda bodies: hook.sync_comments(source, bodies)``).
Send = Callable[[list[bytes]], Mapping[str, Any]]


def batches(records: Iterable[R], batch_size: int, max_batch_bytes: int) -> Iterator[list[R]]:
    """``records`` in batches of at most ``batch_size``, closed early once their payloads (plus one
    byte each) reach ``max_batch_bytes``; read lazily, one batch at a time."""
    batch: list[R] = []
    size = 0
    for record in records:
        batch.append(record)
        size += len(record.payload) + 1
        if len(batch) >= batch_size or size >= max_batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class DeadLetters:
    """The dead-letter writer: one JSON line per record not uploaded, each written whole with its
    warning under one lock (any thread may write), counted.

    :param file: a text file the caller opens (and places at the end: a temporary file copied to
        the dead-letter path); ``None`` until it is given.
    :param log: where each dead letter's warning goes.
    """

    def __init__(self, file: IO[str] | None = None, log: logging.Logger | Any = None) -> None:
        self.file = file
        self.log = log if log is not None else logging.getLogger(__name__)
        self.count = 0
        self.lock = threading.Lock()

    def write(self, entry: Mapping[str, Any], warning: str, *args: Any) -> None:
        """Log ``warning % args`` and append ``entry`` as one JSON line.

        :raises RuntimeError: if no file was given.
        """
        if self.file is None:
            raise RuntimeError("the dead-letter file was not opened")
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self.lock:
            self.log.warning(warning, *args)
            self.file.write(line)
            self.count += 1


class BatchSync(Generic[R]):
    """One upload's batch-sync loop (see the module's description).

    :param send: the request (:data:`Send`); called from ``concurrency`` threads at once.
    :param batch_size: most records per request.
    :param max_batch_bytes: most bytes of records per request (approximate: a batch closes once it reaches it).
    :param concurrency: requests in flight (1 keeps the records' order: a later record updates an earlier one).
    :param overlap: batches whose ``after_sync`` may still run while the next ``concurrency`` are sent
        (0: a batch's ``after_sync`` holds its sender until it ends). Keep 0 where a later batch's
        ``after_sync`` must follow an earlier one's (records of one id in several batches).
    :param log: where the progress lines and the bisection warnings go.
    :param noun: what the records are, in log lines (``"comments"``, ``"e-mails"``).
    :param total: the records the run will hand to :meth:`run`, for the progress line.
    :param on_refused: called with each record the API refuses alone and the API's error (from a
        sender thread; write the dead letter there). The loop counts it as ``rejected``.
    :param after_sync: called with each batch's stored records and the batch's own counts
        (:class:`~airflow_provider_cm.pipelines.comments.upload_tally.UploadTally`) before they join the run's.
    :param summary: the counts on the progress line, from the run's tally (default
        :meth:`~airflow_provider_cm.pipelines.comments.upload_tally.UploadTally.summary`).
    :param tally: the run's counts to add to (e.g. holding records refused before sending); a new one by default.
    :param thread_name_prefix: the sender threads' name prefix.

    After :meth:`run` (or its error): :attr:`tally` the run's counts; :attr:`done` the records
    whose outcome is known (the answers' ``new + updated + unchanged``, plus those refused);
    :attr:`refused` the records refused, in the order found.
    """

    def __init__(
        self,
        send: Send,
        *,
        batch_size: int,
        max_batch_bytes: int,
        concurrency: int,
        overlap: int = 0,
        log: logging.Logger | Any,
        noun: str,
        total: int,
        on_refused: Callable[[R, CommunicationsMiningApiError], None],
        after_sync: Callable[[list[R], UploadTally], None] | None = None,
        summary: Callable[[UploadTally], str] = UploadTally.summary,
        tally: UploadTally | None = None,
        thread_name_prefix: str = "cm-sync",
    ) -> None:
        if batch_size < 1 or max_batch_bytes < 1 or concurrency < 1:
            raise ValueError("batch_size, max_batch_bytes and concurrency must be at least 1")
        if overlap < 0:
            raise ValueError(f"overlap must not be negative, got {overlap}")
        self.send = send
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.concurrency = concurrency
        self.overlap = overlap
        self.log = log
        self.noun = noun
        self.total = total
        self.on_refused = on_refused
        self.after_sync = after_sync
        self.summary = summary
        self.tally = tally if tally is not None else UploadTally()
        self.thread_name_prefix = thread_name_prefix
        self.done = 0
        self.refused: list[R] = []
        self.lock = threading.Lock()
        #: Requests in flight (a batch halved sends several, one at a time).
        self._sending = threading.Semaphore(concurrency)

    def run(self, records: Iterable[R]) -> None:
        """Send ``records`` in batches, ``concurrency`` at a time; preparing the next batch overlaps sending,
        and sending overlaps the ``after_sync`` of up to ``overlap`` batches sent before.

        :raises CommunicationsMiningError: as ``send`` (or ``after_sync``) raises it for a request that
            failed for good (a refused record is handed to ``on_refused`` instead); what was done before
            is counted, and batches already sent finish their ``after_sync`` first.
        """
        workers = self.concurrency + self.overlap
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=self.thread_name_prefix) as pool:
            run_bounded(pool, self._flush, batches(records, self.batch_size, self.max_batch_bytes), workers)

    def _flush(self, batch: list[R]) -> None:
        """Send one batch (and the caller's ``after_sync``); add its counts to the run's in one step, then log them."""
        tally = UploadTally()
        try:
            stored = self._sync(batch, tally)
            if self.after_sync is not None:
                self.after_sync(stored, tally)
        finally:
            with self.lock:
                self.tally.add(tally)
                self.done += tally.done
                self.log.info(
                    "Progress: %d of %d %s (%.0f%%): %s",
                    self.done,
                    self.total,
                    self.noun,
                    100.0 * self.done / max(self.total, 1),
                    self.summary(self.tally),
                )

    def _sync(self, records: list[R], tally: UploadTally) -> list[R]:
        """Send the records, halving a refused request; return those stored."""
        try:
            with self._sending:
                answer = self.send([record.payload for record in records])
        except CommunicationsMiningBadRequestError as exc:
            if len(records) == 1:
                self.on_refused(records[0], exc)
                with self.lock:
                    self.refused.append(records[0])
                tally.rejected += 1
                return []
            self.log.warning(
                "The API refused a batch of %d %s (%s); bisecting to find the %s it refuses",
                len(records),
                self.noun,
                exc.message,
                self.noun,
            )
            middle = len(records) // 2
            return self._sync(records[:middle], tally) + self._sync(records[middle:], tally)
        except Exception as exc:
            if may_have_taken_effect(exc):
                tally.add_lost_sync(len(records))
            raise
        tally.add_sync(answer)
        return records
