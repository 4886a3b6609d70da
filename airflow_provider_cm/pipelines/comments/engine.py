"""The upload engine: spooled records to a source (``sync``) and their annotations to a dataset.

Calls ``POST /api/v1/sources/<project>/<source>/sync``
(https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/sync-comments)
and the annotation routes ``GET``/``POST /api/_private/datasets/<project>/<dataset>/labellings``
through :class:`~airflow_provider_cm.hooks.communications_mining.CommunicationsMiningHook`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_cm.client.annotation_reads import annotation_read_chunks
from airflow_provider_cm.client.concurrency import AdaptiveConcurrency, is_throttling
from airflow_provider_cm.client.pacing import RatePacer
from airflow_provider_cm.exceptions import (
    CommunicationsMiningApiError,
    CommunicationsMiningBadRequestError,
    CommunicationsMiningError,
    CommunicationsMiningNotFoundError,
)
from airflow_provider_cm.pipelines.batch_sync import BatchSync, DeadLetters
from airflow_provider_cm.pipelines.comments.annotation_changes import needs_write
from airflow_provider_cm.pipelines.comments.spool import SpooledRecord, one_write_per_comment
from airflow_provider_cm.pipelines.comments.upload_tally import UploadTally

if TYPE_CHECKING:
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

#: Annotation-write requests in flight at the start (the official CLI's 32 threads: a pace tenants already see
#: from it; the refusals of a first contact with a rate limit are about the requests in flight then), and at
#: most, unless the settings say otherwise. Between the two the limit grows while each round trip serves more
#: than the last at a lower limit (see :class:`~airflow_provider_cm.client.concurrency.AdaptiveConcurrency`).
DEFAULT_ANNOTATION_CONCURRENCY = 32
DEFAULT_MAX_ANNOTATION_CONCURRENCY = 128
#: Batches whose label writes may still run while the next ones are sent (``sync``).
LABEL_OVERLAP_BATCHES = 2


def annotation_limits(start: int | None, most: int | None) -> tuple[int, int]:
    """The annotation-write limits: ``(requests in flight at the start, the most in flight)``.

    Neither given: 32 growing to 128. ``start`` alone: that many, never more (it still halves on
    429 or 503, then grows back). ``most`` alone: ``min(32, most)`` growing to ``most``.

    :raises ValueError: for a value below 1, or a start above the most.
    """
    if (start is not None and start < 1) or (most is not None and most < 1):
        raise ValueError("annotation_concurrency and max_annotation_concurrency must be at least 1")
    if start is None:
        most = DEFAULT_MAX_ANNOTATION_CONCURRENCY if most is None else most
        return min(DEFAULT_ANNOTATION_CONCURRENCY, most), most
    if most is None:
        return start, start
    if start > most:
        raise ValueError(
            f"annotation_concurrency ({start}) is the number of annotation writes in flight at the start: "
            f"it cannot exceed max_annotation_concurrency ({most})"
        )
    return start, most


@dataclass(frozen=True)
class UploadSettings:
    """What one upload does: where to, and how many comments and requests at once.

    :param source: ``"project/source"`` the comments are upserted to (``sync``).
    :param dataset: ``"project/dataset"`` their annotations are written to, or ``None`` for none.
    :param batch_size: most comments per ``sync`` request.
    :param max_batch_bytes: most bytes of comments per ``sync`` request.
    :param sync_concurrency: ``sync`` requests in flight (1 with ``allow_duplicate_ids``).
    :param annotation_concurrency: label requests in flight at the start (the limiter adapts from there).
    :param max_annotation_concurrency: most label requests in flight.
    :param allow_duplicate_ids: one id on several records: send in file order, one batch at a time.
    """

    source: str
    dataset: str | None
    batch_size: int
    max_batch_bytes: int
    sync_concurrency: int
    annotation_concurrency: int
    max_annotation_concurrency: int
    allow_duplicate_ids: bool


class UploadEngine:
    """One upload run over the hook: the batch-sync loop (:class:`~airflow_provider_cm.pipelines.batch_sync.BatchSync`)
    over ``sync``, then each batch's annotations, and the counts.

    It needs no task context: the operator gives it a hook, the settings and a logger, opens the
    dead-letter file (``dead_letters.file``: refused records are written there as JSON lines),
    runs it over the spooled records (:meth:`run`) and reads ``tally``, ``dead_lettered`` and the refused ids.
    """

    def __init__(
        self,
        hook: CommunicationsMiningHook,
        settings: UploadSettings,
        log: logging.Logger | Any,
        *,
        source_id: str,
        total: int,
    ) -> None:
        self.hook = hook
        self.settings = settings
        self.log = log
        self.source_id = source_id
        self.total = total
        self.unannotated_ids: list[str] = []
        self.dead_letters = DeadLetters(log=log)
        self.pool: ThreadPoolExecutor
        #: One pace for every request of the upload (``sync`` and labels share the tenant's rate limit).
        self.pacer = RatePacer()
        #: How many label requests (reads and writes) go at once, learned from the tenant's answers.
        self.limiter = AdaptiveConcurrency(
            settings.annotation_concurrency,
            settings.max_annotation_concurrency,
            pacer=self.pacer,
        )
        self.sync: BatchSync[SpooledRecord] = BatchSync(
            self._send_sync,
            batch_size=settings.batch_size,
            max_batch_bytes=settings.max_batch_bytes,
            # With allow_duplicate_ids one batch at a time, in file order, so a later line updates an earlier one
            # (and its labels are written after the earlier one's).
            concurrency=1 if settings.allow_duplicate_ids else settings.sync_concurrency,
            overlap=0 if settings.allow_duplicate_ids or not settings.dataset else LABEL_OVERLAP_BATCHES,
            log=log,
            noun="comments",
            total=total,
            on_refused=lambda record, error: self._dead_letter(record, "sync", error, stored=False),
            after_sync=self._annotate_stored if settings.dataset else None,
            thread_name_prefix="cm-upload",
        )

    @property
    def tally(self) -> UploadTally:
        """The run's counts (comments, annotations, billed)."""
        return self.sync.tally

    @property
    def refused_ids(self) -> list[str]:
        """Ids of the comments the API refused (not stored, not billed), in the order found."""
        return [record.id for record in self.sync.refused]

    @property
    def dead_lettered(self) -> int:
        """Lines written to the dead-letter file."""
        return self.dead_letters.count

    def run(self, records: Iterator[SpooledRecord]) -> None:
        """Batch the records and upload them, ``sync_concurrency`` batches at a time (see
        :class:`~airflow_provider_cm.pipelines.batch_sync.BatchSync`); each batch's annotations are
        written as soon as its ``sync`` succeeded, while the next batches are sent, and only for the
        comments it stored; its counts join the run's once they are written.
        """
        with ThreadPoolExecutor(max_workers=self.settings.max_annotation_concurrency) as self.pool:
            try:
                self.sync.run(records)
            finally:
                self._log_label_concurrency()

    def _annotate_stored(self, stored: list[SpooledRecord], tally: UploadTally) -> None:
        self._annotate([r for r in stored if r.annotations_json], tally)

    def _annotate(self, records: list[SpooledRecord], tally: UploadTally) -> None:
        """Write the annotations of stored records that the dataset does not hold yet; count the rest.

        Counts are per comment: records of one id (``allow_duplicate_ids``) make one write with
        the effect of theirs in file order.
        """
        writes = one_write_per_comment(records)
        if tally.new == tally.stored:
            changed = writes  # sync created every comment of the batch: none has annotations yet
        else:
            changed = self._changed(writes)
        tally.annotations_unchanged += len(writes) - len(changed)
        futures = [(record, self.pool.submit(self._write_annotations, record)) for record in changed]
        failure: BaseException | None = None
        for record, future in futures:
            error = future.exception()
            if error is None:
                tally.annotated += 1
            elif isinstance(error, CommunicationsMiningBadRequestError | CommunicationsMiningNotFoundError):
                self._dead_letter(record, "annotations", error, stored=True)
                tally.annotations_rejected += 1
            elif failure is None:
                failure = error
        if failure is not None:
            raise failure

    def _log_label_concurrency(self) -> None:
        """Log what the label requests' limiter did (so far, if the upload stops on an error)."""
        if self.settings.dataset:
            self.log.info("Label reads and writes: %s", self.limiter.report().text())

    def pacing_text(self) -> str:
        """The refusals (429/503) the upload's requests met and the pace they settled at, for its last log line."""
        return self.pacer.report().text()

    def _send_sync(self, comments: list[bytes]) -> Any:
        """One ``sync`` request, paced with the label requests."""
        self.pacer.wait()
        answer = self.hook.sync_comments(self.settings.source, comments, observer=self._sync_failed)
        self.pacer.served()
        return answer

    def _sync_failed(self, error: BaseException) -> None:
        if is_throttling(error):
            self.pacer.refused(getattr(error, "retry_after", None))
            self.pacer.wait_to_retry(getattr(error, "retry_after", None))

    def _uid(self, record: SpooledRecord) -> str:
        return f"{self.source_id}.{record.id}"

    def _changed(self, records: list[SpooledRecord]) -> list[SpooledRecord]:
        """The records whose annotations differ from the dataset's, read in bulk (a few dozen uids a request).

        A comment whose current annotations could not be read counts as changed (it is written).
        """
        uids = [self._uid(record) for record in records]
        reads = [self.pool.submit(self._read_annotations, chunk) for chunk in annotation_read_chunks(uids)]
        current: dict[str, dict[str, Any]] = {}
        for read in reads:
            for annotated in read.result():
                uid = annotated.get("comment", {}).get("uid")
                if isinstance(uid, str):
                    current[uid] = annotated
        return [r for r, uid in zip(records, uids, strict=True) if needs_write(r.annotations or {}, current.get(uid))]

    def _read_annotations(self, uids: list[str]) -> list[dict[str, Any]]:
        """The dataset's annotations of ``uids``; none (so they are all written) if the read fails."""
        try:
            with self.limiter.slot() as slot:
                return self.hook.get_annotations(self.settings.dataset, uids, observer=slot.observe)  # type: ignore[arg-type]
        except CommunicationsMiningError as exc:
            self.log.warning(
                "Could not read the current labels of %d comments (%s); writing all of them", len(uids), exc
            )
            return []

    def _write_annotations(self, record: SpooledRecord) -> None:
        with self.limiter.slot() as slot:
            self.hook.update_annotations(
                self.settings.dataset,  # type: ignore[arg-type]
                self._uid(record),
                observer=slot.observe,
                **(record.annotations or {}),
            )

    def _dead_letter(
        self, record: SpooledRecord, stage: str, error: CommunicationsMiningApiError, *, stored: bool
    ) -> None:
        """Write a refused record to the dead-letter file with what happened to it."""
        if stored:
            outcome = "stored in the source (billed if new or its text changed); its labels were not written"
            self.unannotated_ids.append(record.id)
        else:
            outcome = "not stored (not billed)"
        entry = {
            "line": record.line,
            "id": record.id,
            "stage": stage,
            "stored": stored,
            "outcome": outcome,
            "status_code": error.status_code,
            "error": error.message,
            "record": record.as_input(),
        }
        self.dead_letters.write(
            entry,
            "The API refused comment %r (line %d) at %s: %s; the comment was %s",
            record.id,
            record.line,
            stage,
            error.message,
            outcome,
        )
