"""The e-mail upload engine: e-mail files to checked documents, then to a source, with no task context.

Reads and checks every e-mail (:mod:`.readers`, :mod:`airflow_provider_cm.api.email_limits`), spools
the uploadable ones, then upserts them with the batch-sync loop
(:class:`~airflow_provider_cm.pipelines.batch_sync.BatchSync`: by count and by bytes, several requests
in flight, a refused batch bisected to find the documents the API refuses) over
``POST /api/v1/sources/<project>/<source>/sync-raw-emails`` (API reference section 3.4.4;
https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/introduction)
through :meth:`~airflow_provider_cm.hooks.communications_mining.CommunicationsMiningHook.sync_raw_emails`.

Needs no Airflow: the hook is given by the caller. The operator
(:class:`~airflow_provider_cm.operators.emails.CommunicationsMiningUploadEmailsOperator`) keeps
the parameters, the input path, XCom, the dead-letter file's place, lineage and the Asset.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_cm.api.email_limits import document_problems
from airflow_provider_cm.client.transport import encode_json
from airflow_provider_cm.exceptions import CommunicationsMiningApiError
from airflow_provider_cm.pipelines.batch_sync import BatchSync, DeadLetters
from airflow_provider_cm.pipelines.comments.upload_tally import UploadTally
from airflow_provider_cm.pipelines.emails.readers import EmailItem, EmailProblem, iter_emails

if TYPE_CHECKING:
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

#: E-mails between two progress lines while the input is read.
READ_PROGRESS_EVERY = 1000

#: The stage of a document the API refused, in its dead-letter line.
SYNC_STAGE = "sync-raw-emails"


@dataclass(frozen=True)
class EmailUploadSettings:
    """What one e-mail upload does: where to, with what, and how many documents and requests at once.

    :param source: ``"project/source"`` the e-mails are upserted to (``sync-raw-emails``).
    :param user_properties: ``{"string:<Name>": str, "number:<Name>": number}`` given to every
        e-mail (checked by the caller, :func:`~airflow_provider_cm.api.email_limits.user_properties_problems`).
    :param transform_tag: the tag of the e-mail integration.
    :param batch_size: most documents per request (1 to 16,384).
    :param max_batch_bytes: approximate bytes per request; a batch is sent early when its
        documents' encoded size reaches it.
    :param sync_concurrency: requests in flight at once (at least 1).
    """

    source: str
    user_properties: Mapping[str, Any]
    transform_tag: str
    batch_size: int
    max_batch_bytes: int
    sync_concurrency: int


@dataclass
class SpooledEmail:
    """A checked document waiting to be sent: where it came from, its id, its JSON."""

    file: str
    index: int
    id: str
    payload: bytes


@dataclass
class EmailUploadRun:
    """What one run found and did: the counts the caller reports and the dead letters it writes.

    ``dead_letters`` writes to a text file the caller opens: every e-mail (or file) not uploaded
    is written to it as one JSON line ``{"file", "index", "id", "stage", "field", "reason", "status_code"}``.
    ``sent`` counts the e-mails whose outcome is known after :meth:`EmailUploadEngine.send`
    (stored or refused), also when it stopped on an error.
    """

    read: int = 0
    valid: int = 0
    sent: int = 0
    truncated: int = 0
    tally: UploadTally = field(default_factory=UploadTally)
    spooled: int = 0
    #: comment id -> (position in the spool, "file#index") of the last e-mail read with it
    last: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: ("file#index" of an e-mail, of the later one with the same id that replaces it)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)
    unreadable: list[str] = field(default_factory=list)
    refused_ids: list[str] = field(default_factory=list)
    dead_letters: DeadLetters = field(default_factory=DeadLetters)

    @property
    def dead_lettered(self) -> int:
        """Lines written to the dead-letter file."""
        return self.dead_letters.count


class EmailUploadEngine:
    """One e-mail upload over the hook: reading and checking, batching, bisection of refused batches, counts.

    It needs no task context: the caller gives it a hook, the settings, a logger and the run to
    fill (with ``dead_letters`` open), calls :meth:`read` then :meth:`send` over the same spool,
    and reads the run's counts.
    """

    def __init__(
        self,
        hook: CommunicationsMiningHook,
        settings: EmailUploadSettings,
        log: logging.Logger | Any,
        run: EmailUploadRun,
    ) -> None:
        self.hook = hook
        self.settings = settings
        self.log = log
        self.run = run

    # -- reading and checking -------------------------------------------------------------------

    def read(self, files: Sequence[Any], shown: Callable[[Any], str], spool: IO[str], label: str) -> None:
        """Parse and check every e-mail of ``files``; spool the uploadable ones, dead-letter the others.

        :param files: the e-mail files, in the order to read them (any ``pathlib``-like paths).
        :param shown: how a file is named in logs and dead letters.
        :param spool: a text file the documents are written to (one JSON line each), for :meth:`send`.
        :param label: the input as the user gave it, for the log lines.
        """
        run = self.run
        for item in iter_emails(list(files), self.settings.user_properties, shown):
            run.read += 1
            if isinstance(item, EmailProblem):
                self._reject(item.file, item.index, None, "read", None, item.reason)
                run.tally.rejected += 1
            else:
                self._check(item, spool)
            if run.read % READ_PROGRESS_EVERY == 0:
                self.log.info(
                    "Read %d e-mails: %d to upload, %d not uploadable", run.read, run.valid, run.tally.rejected
                )
        if run.truncated:
            self.log.warning(
                "%d e-mail(s) had a plain body longer than the API's 65,536 characters: truncated to it", run.truncated
            )
        for note, count in sorted(run.notes.items()):
            self.log.info("Read leniently: %s (%d e-mail(s))", note, count)
        if run.duplicates:
            self.log.warning(
                "%d e-mail(s) have the comment id (the Message-ID) of an e-mail read later, which alone is sent: "
                "counted as duplicates, not sent, not billed; e.g. %s",
                len(run.duplicates),
                "; ".join(f"{earlier} (superseded by {later})" for earlier, later in run.duplicates[:5]),
            )
        self.log.info("%s holds %d e-mail(s) to upload and %d that cannot be", label, run.valid, run.tally.rejected)

    def _check(self, item: EmailItem, spool: IO[str]) -> None:
        run = self.run
        email = item.email
        problems = document_problems(email.document)
        if problems:
            field_name, reason = problems[0]
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            self._reject(item.file, item.index, email.comment_id, "check", field_name, reason + more)
            run.tally.rejected += 1
            return
        where = f"{item.file}#{item.index}"
        earlier = run.last.get(email.comment_id)
        if earlier is not None:
            run.duplicates.append((earlier[1], where))
        else:
            run.valid += 1
        run.last[email.comment_id] = (run.spooled, where)
        run.spooled += 1
        run.truncated += email.truncated
        for note in email.notes:
            run.notes[note.split(" (")[0]] += 1
        entry = {"file": item.file, "index": item.index, "id": email.comment_id, "document": email.document}
        spool.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def _reject(
        self,
        file: str,
        index: int | None,
        comment_id: str | None,
        stage: str,
        field_name: str | None,
        reason: str,
        status_code: int | None = None,
    ) -> None:
        """Dead-letter one e-mail (or file) with where it is and why (the caller counts it as rejected)."""
        entry = {
            "file": file,
            "index": index,
            "id": comment_id,
            "stage": stage,
            "field": field_name,
            "reason": reason,
            "status_code": status_code,
        }
        where = file if index is None else f"{file}#{index}"
        if stage == SYNC_STAGE:
            self.run.refused_ids.append(comment_id or where)
        else:
            self.run.unreadable.append(where)
        self.run.dead_letters.write(
            entry, "Not uploaded: %s (%s%s): %s", where, stage, f", {field_name}" if field_name else "", reason
        )

    # -- sending --------------------------------------------------------------------------------

    def send(self, spool: IO[str]) -> None:
        """Send the spooled documents in batches, ``sync_concurrency`` at a time (each comment id is in
        one batch only, the last e-mail read with it), with the batch-sync loop
        (:class:`~airflow_provider_cm.pipelines.batch_sync.BatchSync`).

        :param spool: the spool :meth:`read` wrote, positioned at its start.
        :raises CommunicationsMiningError: as the hook raises it for a request that failed for good
            (a refused document is dead-lettered instead); what was sent before is counted.
        """
        run, settings = self.run, self.settings
        sync: BatchSync[SpooledEmail] = BatchSync(
            lambda documents: self.hook.sync_raw_emails(
                settings.source, documents, transform_tag=settings.transform_tag
            ),
            batch_size=settings.batch_size,
            max_batch_bytes=settings.max_batch_bytes,
            concurrency=settings.sync_concurrency,
            log=self.log,
            noun="e-mails",
            total=run.valid,
            on_refused=self._refused,
            summary=progress_counts,
            tally=run.tally,
            thread_name_prefix="cm-emails",
        )
        try:
            sync.run(self._spooled(spool))
        finally:
            run.sent = sync.done

    def _spooled(self, spool: IO[str]) -> Iterator[SpooledEmail]:
        """The spooled documents to send: of several e-mails with one comment id, only the last read."""
        for position, line in enumerate(spool):
            entry = json.loads(line)
            if self.run.last[entry["id"]][0] != position:
                continue  # superseded by a later e-mail with the same comment id
            yield SpooledEmail(entry["file"], entry["index"], entry["id"], encode_json(entry["document"]))

    def _refused(self, item: SpooledEmail, error: CommunicationsMiningApiError) -> None:
        self._reject(item.file, item.index, item.id, SYNC_STAGE, None, error.message, error.status_code)


def progress_counts(tally: UploadTally) -> str:
    """The counts on an e-mail upload's progress line: ``new=N updated=N unchanged=N rejected=N; <billed>``."""
    return (
        f"new={tally.new} updated={tally.updated} unchanged={tally.unchanged} rejected={tally.rejected}; "
        f"{tally.billed_text()}"
    )
