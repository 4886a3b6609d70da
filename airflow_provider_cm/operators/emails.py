"""Upload raw e-mails (``.eml``, ``.msg``, mbox) into a Communications Mining source."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_cm import lineage
from airflow_provider_cm.assets import outlet_for, record_outlet_events, source_asset
from airflow_provider_cm.emails import (
    DEFAULT_TRANSFORM_TAG,
    MAX_SYNC_DOCUMENTS,
    EmailItem,
    EmailProblem,
    document_problems,
    email_files,
    iter_emails,
)
from airflow_provider_cm.emails.limits import user_properties_problems
from airflow_provider_cm.exceptions import (
    CommunicationsMiningBadRequestError,
    CommunicationsMiningNotFoundError,
    CommunicationsMiningRejectedEmailsError,
)
from airflow_provider_cm.flags import as_bool
from airflow_provider_cm.hooks.communications_mining import split_full_name
from airflow_provider_cm.hooks.retry import may_have_taken_effect
from airflow_provider_cm.hooks.transport import encode_json
from airflow_provider_cm.operators.base import CommunicationsMiningBaseOperator
from airflow_provider_cm.storage import atomic_write, path_as_given, shown_under, to_storage_path
from airflow_provider_cm.upload.upload_tally import UploadTally
from airflow_provider_cm.workers import missing_input, warn_if_worker_local

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context, ObjectStoragePath

#: E-mails between two progress lines while the input is read.
READ_PROGRESS_EVERY = 1000


class CommunicationsMiningUploadEmailsOperator(CommunicationsMiningBaseOperator):
    """Upload e-mails from ``.eml``, Outlook ``.msg`` and mbox files into a source.

    Every e-mail of the input (one file, or every file under a folder or object-storage prefix,
    recursively, in the order of their paths) is parsed first (:mod:`airflow_provider_cm.emails`:
    the standard library's ``email`` and ``mailbox``, extract-msg for ``.msg``) into the document
    the API takes (raw headers, the plain or else the HTML body, attachment metadata, never
    attachment content) and checked against the API's limits with the same function the
    emulator applies. Then the documents are upserted in batches (by count and by bytes) with
    ``POST /api/v1/sources/<project>/<source>/sync-raw-emails`` (API reference section 3.4.4;
    billing: https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/introduction).

    Comment ids come from the ``Message-ID`` header (normalised), else from a hash of the
    message's bytes, so a rerun finds every e-mail ``unchanged`` and bills nothing, and the same
    e-mail from an ``.eml`` file, an mbox or a ``.msg`` file is one comment.

    Nothing is dropped without a word: a file that is not an e-mail (another extension, empty, no
    header), an mbox without messages, a message that cannot be parsed or that breaks a limit,
    and a document the API refuses (a refused batch is bisected to find it) each get a line in
    the dead-letter file (``{"file", "index", "id", "stage", "field", "reason", "status_code"}``,
    ``index`` the message's 0-based position in its file, ``null`` for a whole file) and count as
    ``rejected``. A plain body longer than the API's 65,536 characters is truncated to it, counted
    (``truncated``) and logged, not refused: see :mod:`airflow_provider_cm.emails.documents`.

    :param source: ``"project/source"`` to upload into. Templated.
    :param input_path: a local path or an ``ObjectStoragePath`` URI (``s3://bucket/mail/``): one
        ``.eml``, ``.msg`` or ``.mbox`` file, or a folder or prefix holding them. Templated.
    :param user_properties: ``{"string:<Name>": str, "number:<Name>": number}`` given to every
        e-mail. Templated.
    :param transform_tag: the tag of the e-mail integration (default ``generic.0.CONVKER5``, the
        official CLI's). Templated.
    :param batch_size: documents per request (1 to 16,384).
    :param max_batch_bytes: approximate bytes per request; a batch is sent early when its
        documents' encoded size reaches it.
    :param sync_concurrency: requests in flight at once (each comment id is sent in one batch
        only, so their order does not matter).
    :param dead_letter_path: the JSONL file for the e-mails not uploaded; default beside the
        input, ``<name>.rejected.jsonl``. Written only if there are some (in a dry run too). Templated.
    :param fail_on_rejected: fail the task at the end if any e-mail was not uploaded (every other
        one is uploaded first).
    :param fail_on_empty: fail when the input holds no e-mail; by default a warning and zero counts.
    :param dry_run: parse, check, count and write the dead-letter file; send nothing. Templated.
    :param max_emails: refuse to start (before sending anything) if the input holds more
        uploadable e-mails than this: each new e-mail costs an AI Unit. Templated.
    :param communications_mining_conn_id: the Airflow connection.
    :return: (XCom) ``{"read", "new", "updated", "unchanged", "rejected", "invalid", "duplicates",
        "truncated", "billed", "dead_letter_path", "dry_run"}``. ``read`` counts the e-mails found
        plus each file that held none; ``read == new + updated + unchanged + rejected + duplicates``
        once everything was sent; ``invalid`` is the part of ``rejected`` found before sending;
        ``duplicates`` are e-mails whose comment id (Message-ID) an e-mail read later also has:
        only the last one read is sent (so one run stores each id once, and a rerun bills
        nothing), the others are logged, not sent, not billed; ``billed`` is
        ``{"at_least", "at_most", "exact", "why"}`` as for the comment upload.
    :raises AirflowFailException: if the source does not exist, ``user_properties`` are invalid,
        the input exceeds ``max_emails``, or it is empty with ``fail_on_empty``.
    :raises CommunicationsMiningRejectedEmailsError: if e-mails were not uploaded and
        ``fail_on_rejected`` is true.
    """

    template_fields: Sequence[str] = (
        "source",
        "input_path",
        "user_properties",
        "transform_tag",
        "dead_letter_path",
        "max_emails",
        "is_dry_run",
    )
    template_fields_renderers = {"user_properties": "json"}

    def __init__(
        self,
        *,
        source: str,
        input_path: str,
        user_properties: Mapping[str, Any] | None = None,
        transform_tag: str = DEFAULT_TRANSFORM_TAG,
        batch_size: int = 256,
        max_batch_bytes: int = 8 * 1024 * 1024,
        sync_concurrency: int = 2,
        dead_letter_path: str | None = None,
        fail_on_rejected: bool = True,
        fail_on_empty: bool = False,
        dry_run: bool | str = False,
        max_emails: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        if not 1 <= batch_size <= MAX_SYNC_DOCUMENTS:
            raise ValueError(f"batch_size must be between 1 and {MAX_SYNC_DOCUMENTS}, got {batch_size}")
        if sync_concurrency < 1:
            raise ValueError("sync_concurrency must be at least 1")
        if not kwargs.get("outlets"):
            kwargs["outlets"] = [
                outlet_for("source", str(kwargs.get("task_id")), [source], lambda: source_asset(source))
            ]
        super().__init__(**kwargs)
        self.source = source
        self.input_path = input_path
        self.user_properties = user_properties
        self.transform_tag = transform_tag
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.sync_concurrency = sync_concurrency
        self.dead_letter_path = dead_letter_path
        self.fail_on_rejected = fail_on_rejected
        self.fail_on_empty = fail_on_empty
        # Stored as is_dry_run: BaseOperator.dry_run() is a method of its own.
        self.is_dry_run = dry_run
        self.max_emails = max_emails

    # -- execution ------------------------------------------------------------------------------

    @lineage.records_result
    def execute(self, context: Context) -> dict[str, Any]:
        self.is_dry_run = as_bool(self.is_dry_run, "dry_run")
        split_full_name(self.source, "source")
        properties = dict(self.user_properties or {})
        problems = user_properties_problems(properties)
        if problems:
            raise AirflowFailException(
                "user_properties: " + "; ".join(f"{f}: {m}" for f, m in problems) + "; nothing was read or sent"
            )
        root = to_storage_path(self.input_path)
        warn_if_worker_local(self, root, "input_path")
        run = _Run()
        with (
            tempfile.TemporaryFile("w+", encoding="utf-8") as spool,
            tempfile.TemporaryFile("w+", encoding="utf-8") as dead_letters,
        ):
            run.dead_letters = dead_letters
            self._read(root, properties, spool, run)
            if not run.valid:
                self._nothing_to_upload(run)
            elif self.max_emails not in (None, "", "None") and run.valid > int(self.max_emails):  # type: ignore[arg-type]
                raise AirflowFailException(
                    f"{self.input_path} holds {run.valid} e-mails to upload, more than max_emails={self.max_emails}; "
                    "nothing was sent"
                )
            elif self.is_dry_run:
                self.log.info("Dry run: %d e-mails would be uploaded to %s; nothing was sent", run.valid, self.source)
            else:
                self._resolve_source()
                spool.seek(0)
                stopped = True
                try:
                    self._send(spool, run)
                    stopped = False
                finally:
                    if stopped:
                        self._report_stop(run, root, context)
            result = self._result(run)
            result["dead_letter_path"] = self._write_dead_letters(root, run) if run.dead_lettered else None
        self._log_outcome(run)
        if not self.is_dry_run:
            record_outlet_events(self.outlets, context, source_asset(self.source), result)
        if run.tally.rejected and self.fail_on_rejected:
            if context.get("ti") is not None:
                context["ti"].xcom_push(key="return_value", value=result)
            raise CommunicationsMiningRejectedEmailsError(result["dead_letter_path"], run.unreadable, run.refused_ids)
        return result

    def _read(self, root: ObjectStoragePath, properties: dict[str, Any], spool: IO[str], run: _Run) -> None:
        """Parse and check every e-mail; spool the uploadable ones, dead-letter the others."""
        try:
            files = email_files(root)
        except FileNotFoundError:
            raise missing_input(path_as_given(self.input_path), "input_path", self) from None
        self.log.info("Reading %d file(s) under %s", len(files), self.input_path)
        shown = shown_under(root, path_as_given(self.input_path))
        for item in iter_emails(files, properties, shown):
            run.read += 1
            if isinstance(item, EmailProblem):
                self._reject(run, item.file, item.index, None, "read", None, item.reason)
            else:
                self._check(item, spool, run)
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
        self.log.info(
            "%s holds %d e-mail(s) to upload and %d that cannot be", self.input_path, run.valid, run.tally.rejected
        )

    def _check(self, item: EmailItem, spool: IO[str], run: _Run) -> None:
        email = item.email
        problems = document_problems(email.document)
        if problems:
            field_name, reason = problems[0]
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            self._reject(run, item.file, item.index, email.comment_id, "check", field_name, reason + more)
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
        run: _Run,
        file: str,
        index: int | None,
        comment_id: str | None,
        stage: str,
        field_name: str | None,
        reason: str,
        status_code: int | None = None,
    ) -> None:
        """Dead-letter one e-mail (or file) with where it is and why; count it as rejected."""
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
        if stage == "sync-raw-emails":
            run.refused_ids.append(comment_id or where)
        else:
            run.unreadable.append(where)
        run.tally.rejected += 1
        run.dead_lettered += 1
        run.dead_letters.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.log.warning("Not uploaded: %s (%s%s): %s", where, stage, f", {field_name}" if field_name else "", reason)

    def _batches(self, spool: IO[str], run: _Run) -> Iterator[list[_Spooled]]:
        batch: list[_Spooled] = []
        size = 0
        for position, line in enumerate(spool):
            entry = json.loads(line)
            if run.last[entry["id"]][0] != position:
                continue  # superseded by a later e-mail with the same comment id
            item = _Spooled(entry["file"], entry["index"], entry["id"], encode_json(entry["document"]))
            batch.append(item)
            size += len(item.encoded) + 1
            if len(batch) >= self.batch_size or size >= self.max_batch_bytes:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def _send(self, spool: IO[str], run: _Run) -> None:
        """Send the batches, ``sync_concurrency`` at a time (each comment id is in one batch only)."""
        in_flight: deque[Future[None]] = deque()
        with ThreadPoolExecutor(max_workers=self.sync_concurrency, thread_name_prefix="cm-emails") as pool:
            try:
                for batch in self._batches(spool, run):
                    in_flight.append(pool.submit(self._flush, batch, run))
                    while len(in_flight) > self.sync_concurrency:
                        in_flight.popleft().result()
                while in_flight:
                    in_flight.popleft().result()
            except BaseException:
                for future in in_flight:
                    future.cancel()
                raise

    def _flush(self, batch: list[_Spooled], run: _Run) -> None:
        self._sync(batch, run)
        with run.lock:
            self.log.info(
                "Progress: %d of %d e-mails (%.0f%%): new=%d updated=%d unchanged=%d rejected=%d; %s",
                run.sent,
                run.valid,
                100.0 * run.sent / max(run.valid, 1),
                run.tally.new,
                run.tally.updated,
                run.tally.unchanged,
                run.tally.rejected,
                run.tally.billed_text(),
            )

    def _sync(self, batch: list[_Spooled], run: _Run) -> None:
        """Upsert a batch; bisect a refused one to dead-letter exactly the documents the API refuses."""
        try:
            answer = self.hook.sync_raw_emails(
                self.source, [item.encoded for item in batch], transform_tag=self.transform_tag
            )
        except CommunicationsMiningBadRequestError as exc:
            if len(batch) == 1:
                item = batch[0]
                with run.lock:
                    self._reject(
                        run, item.file, item.index, item.id, "sync-raw-emails", None, exc.message, exc.status_code
                    )
                    run.sent += 1
                return
            self.log.warning(
                "The API refused a batch of %d e-mails (%s); bisecting to find the e-mails it refuses",
                len(batch),
                exc.message,
            )
            middle = len(batch) // 2
            self._sync(batch[:middle], run)
            self._sync(batch[middle:], run)
            return
        except Exception as exc:
            if may_have_taken_effect(exc):
                with run.lock:
                    run.tally.add_lost_sync(len(batch))
            raise
        with run.lock:
            run.tally.add_sync(answer)
            run.sent += len(batch)

    def _result(self, run: _Run) -> dict[str, Any]:
        tally = run.tally.as_xcom()
        return {
            "read": run.read,
            "new": tally["new"],
            "updated": tally["updated"],
            "unchanged": tally["unchanged"],
            "rejected": tally["rejected"],
            "invalid": len(run.unreadable),
            "duplicates": len(run.duplicates),
            "truncated": run.truncated,
            "billed": tally["billed"],
            "dead_letter_path": None,
            "dry_run": self.is_dry_run,
        }

    def _nothing_to_upload(self, run: _Run) -> None:
        message = (
            f"{self.input_path} holds no e-mail to upload ({run.read} file(s) or message(s) read); nothing was sent"
        )
        if self.fail_on_empty:
            raise AirflowFailException(message)
        self.log.warning("%s (pass fail_on_empty=True to fail instead)", message)

    def _resolve_source(self) -> None:
        try:
            self.hook.get_source(self.source)
        except CommunicationsMiningNotFoundError:
            raise AirflowFailException(f"source {self.source!r} does not exist") from None

    def _report_stop(self, run: _Run, root: ObjectStoragePath, context: Context) -> None:
        self.log.error("The upload stopped after %d of %d e-mails: %s", run.sent, run.valid, run.tally.billed_text())
        for reason in run.tally.why:
            self.log.info("Billed e-mails are a range because %s", reason)
        result = self._result(run)
        if run.dead_lettered:
            result["dead_letter_path"] = self._write_dead_letters(root, run)
        if context.get("ti") is not None:
            context["ti"].xcom_push(key="return_value", value=result)

    def _log_outcome(self, run: _Run) -> None:
        tally = run.tally
        self.log.info(
            "%s %d e-mails from %s to %s: %d stored (%d new, %d updated, %d unchanged), %d not uploaded "
            "(%d unreadable or beyond the API's limits, %d refused by the API), %d truncated; %s",
            "Checked" if self.is_dry_run else "Uploaded",
            run.read,
            self.input_path,
            self.source,
            tally.stored,
            tally.new,
            tally.updated,
            tally.unchanged,
            tally.rejected,
            len(run.unreadable),
            len(run.refused_ids),
            run.truncated,
            tally.billed_text(),
        )
        for reason in tally.why:
            self.log.info("Billed e-mails are a range because %s", reason)

    def _write_dead_letters(self, root: ObjectStoragePath, run: _Run) -> str:
        if self.dead_letter_path:
            target = to_storage_path(self.dead_letter_path)
        else:
            name = root.name.rstrip("/") or "emails"
            stem = name.rsplit(".", 1)[0] if "." in name else name
            target = root.parent / f"{stem}.rejected.jsonl"
        warn_if_worker_local(self, target, "dead-letter file")
        run.dead_letters.seek(0)
        try:
            with atomic_write(target) as handle:
                shutil.copyfileobj(run.dead_letters, handle)
        except OSError as exc:
            raise AirflowFailException(
                f"could not write the dead-letter file {target} ({exc}); pass dead_letter_path to choose "
                "a writable place"
            ) from None
        run.dead_letters.seek(0, 2)
        shown = path_as_given(self.dead_letter_path or str(self.input_path), target)
        self.log.warning("E-mails not uploaded, and why, written to %s", shown)
        return shown

    # -- lineage --------------------------------------------------------------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the e-mail files (the file or folder given) read; the source written, with the
        e-mails it stored, and the dead-letter file. A dry run writes nothing to the source.
        """
        result = lineage.task_result(self)
        inputs = [lineage.file_dataset(to_storage_path(self.input_path))]
        outputs = []
        dry = result.get("dry_run") if isinstance(result, Mapping) else self.is_dry_run
        if not as_bool(dry, "dry_run"):
            stored = lineage.count(result, "new", "updated", "unchanged")
            outputs.append(lineage.written(lineage.source_dataset(self.hook, self.source), stored))
        dead_letter_path = result.get("dead_letter_path") if isinstance(result, Mapping) else None
        if dead_letter_path:
            lines = lineage.count(result, "rejected")
            outputs.append(lineage.written(lineage.file_dataset(to_storage_path(dead_letter_path)), lines))
        return lineage.operator_lineage(inputs, outputs)


@dataclass
class _Spooled:
    """A checked document waiting to be sent: where it came from, its id, its JSON."""

    file: str
    index: int
    id: str
    encoded: bytes


@dataclass
class _Run:
    """What one run found and did."""

    read: int = 0
    valid: int = 0
    sent: int = 0
    truncated: int = 0
    dead_lettered: int = 0
    tally: UploadTally = field(default_factory=UploadTally)
    spooled: int = 0
    #: comment id -> (position in the spool, "file#index") of the last e-mail read with it
    last: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: ("file#index" of an e-mail, of the later one with the same id that replaces it)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)
    unreadable: list[str] = field(default_factory=list)
    refused_ids: list[str] = field(default_factory=list)
    dead_letters: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)
