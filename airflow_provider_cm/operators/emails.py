"""Upload raw e-mails (``.eml``, ``.msg``, mbox) into a Communications Mining source."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_cm.api.email_limits import user_properties_problems
from airflow_provider_cm.client.flags import as_bool
from airflow_provider_cm.common import lineage
from airflow_provider_cm.common.assets import outlet_for, record_outlet_events, source_asset
from airflow_provider_cm.common.storage import atomic_write, path_as_given, shown_under, to_storage_path
from airflow_provider_cm.common.workers import missing_input, warn_if_worker_local
from airflow_provider_cm.exceptions import CommunicationsMiningNotFoundError, CommunicationsMiningRejectedEmailsError
from airflow_provider_cm.hooks.communications_mining import split_full_name
from airflow_provider_cm.operators.base import CommunicationsMiningBaseOperator
from airflow_provider_cm.pipelines.batch_sync import DeadLetters
from airflow_provider_cm.pipelines.emails import DEFAULT_TRANSFORM_TAG, MAX_SYNC_DOCUMENTS, email_files
from airflow_provider_cm.pipelines.emails.upload import EmailUploadEngine, EmailUploadRun, EmailUploadSettings

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context, ObjectStoragePath


class CommunicationsMiningUploadEmailsOperator(CommunicationsMiningBaseOperator):
    """Upload e-mails from ``.eml``, Outlook ``.msg`` and mbox files into a source.

    Every e-mail of the input (one file, or every file under a folder or object-storage prefix,
    recursively, in the order of their paths) is parsed first (:mod:`airflow_provider_cm.pipelines.emails`:
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
    (``truncated``) and logged, not refused: see :mod:`airflow_provider_cm.pipelines.emails.documents`.

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
        with (
            tempfile.TemporaryFile("w+", encoding="utf-8") as spool,
            tempfile.TemporaryFile("w+", encoding="utf-8") as dead_letters,
        ):
            upload = self._engine(properties, EmailUploadRun(dead_letters=DeadLetters(dead_letters, self.log)))
            run = upload.run
            self._read(root, spool, upload)
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
                    upload.send(spool)
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

    def _engine(self, properties: dict[str, Any], run: EmailUploadRun) -> EmailUploadEngine:
        settings = EmailUploadSettings(
            source=self.source,
            user_properties=properties,
            transform_tag=self.transform_tag,
            batch_size=self.batch_size,
            max_batch_bytes=self.max_batch_bytes,
            sync_concurrency=self.sync_concurrency,
        )
        return EmailUploadEngine(self.hook, settings, self.log, run)

    def _read(self, root: ObjectStoragePath, spool: IO[str], upload: EmailUploadEngine) -> None:
        """Find the e-mail files under ``root``; the engine parses and checks them into ``spool``."""
        try:
            files = email_files(root)
        except FileNotFoundError:
            raise missing_input(path_as_given(self.input_path), "input_path", self) from None
        self.log.info("Reading %d file(s) under %s", len(files), self.input_path)
        upload.read(files, shown_under(root, path_as_given(self.input_path)), spool, str(self.input_path))

    def _result(self, run: EmailUploadRun) -> dict[str, Any]:
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

    def _nothing_to_upload(self, run: EmailUploadRun) -> None:
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

    def _report_stop(self, run: EmailUploadRun, root: ObjectStoragePath, context: Context) -> None:
        self.log.error("The upload stopped after %d of %d e-mails: %s", run.sent, run.valid, run.tally.billed_text())
        for reason in run.tally.why:
            self.log.info("Billed e-mails are a range because %s", reason)
        result = self._result(run)
        if run.dead_lettered:
            result["dead_letter_path"] = self._write_dead_letters(root, run)
        if context.get("ti") is not None:
            context["ti"].xcom_push(key="return_value", value=result)

    def _log_outcome(self, run: EmailUploadRun) -> None:
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

    def _write_dead_letters(self, root: ObjectStoragePath, run: EmailUploadRun) -> str:
        if self.dead_letter_path:
            target = to_storage_path(self.dead_letter_path)
        else:
            name = root.name.rstrip("/") or "emails"
            stem = name.rsplit(".", 1)[0] if "." in name else name
            target = root.parent / f"{stem}.rejected.jsonl"
        warn_if_worker_local(self, target, "dead-letter file")
        letters = run.dead_letters.file
        assert letters is not None  # opened by execute
        letters.seek(0)
        try:
            with atomic_write(target) as handle:
                shutil.copyfileobj(letters, handle)
        except OSError as exc:
            raise AirflowFailException(
                f"could not write the dead-letter file {target} ({exc}); pass dead_letter_path to choose "
                "a writable place"
            ) from None
        letters.seek(0, 2)
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
